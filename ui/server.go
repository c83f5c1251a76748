// Package ui is fedreport's operator dashboard: a small web server an
// operator or analyst runs on their own machine (`fedreport ui`). It reads
// (and, for an operator, starts) rollups through the coordinator's gRPC API
// with the user's own certificate, as `kubectl proxy` does, so the
// coordinator's access matrix applies to the browser exactly as it does to
// the CLI. The same operation view, rendered standalone, is the HTML report
// (WriteReport).
//
// The server is for one person: it binds loopback unless told otherwise,
// admits a browser only with the random token of the URL it prints (then a
// cookie), refuses requests of other origins and Host headers, and checks a
// CSRF token on every form that changes anything. Every asset is embedded:
// it works without any network but the coordinator's.
package ui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

//go:embed templates/*.html static/*.css
var assets embed.FS

// Config configures a dashboard.
type Config struct {
	// Client reaches the coordinator with the user's certificate.
	Client fedreportv1.CoordinatorServiceClient
	// Coordinator is the coordinator's address, for the pages' header.
	Coordinator string
	// Identity is the user's own identity (the URI SAN of their
	// certificate): the dashboard offers the form that starts rollups only
	// to an operator. The coordinator decides; this only spares an analyst
	// a form that would be refused.
	Identity identity.ID
	// Token admits a browser; empty generates a random one.
	Token string
	// Logger receives lifecycle lines; nil discards them.
	Logger *slog.Logger
	// CallTimeout bounds each call to the coordinator; 0 is 30s (a rollup
	// runs within it).
	CallTimeout time.Duration
}

// Server is the dashboard's HTTP handler, with its token.
type Server struct {
	client      fedreportv1.CoordinatorServiceClient
	coordinator string
	id          identity.ID
	token       string
	session     string // the cookie's value, given once the token was shown
	csrf        string // the forms' token, derived from session
	log         *slog.Logger
	callTimeout time.Duration
	pages       map[string]*template.Template
	css         template.CSS
}

// ErrNoClient is returned by New without a coordinator client.
var ErrNoClient = errors.New("ui: no coordinator client")

// New returns a dashboard for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, ErrNoClient
	}
	s := &Server{client: cfg.Client, coordinator: cfg.Coordinator, id: cfg.Identity, token: cfg.Token,
		log: cfg.Logger, callTimeout: cfg.CallTimeout}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.callTimeout == 0 {
		s.callTimeout = 30 * time.Second
	}
	if s.token == "" {
		s.token = randomHex()
	}
	s.session = randomHex()
	mac := hmac.New(sha256.New, []byte(s.session))
	mac.Write([]byte("csrf"))
	s.csrf = hex.EncodeToString(mac.Sum(nil))
	var err error
	if s.pages, s.css, err = parseTemplates(); err != nil {
		return nil, err
	}
	return s, nil
}

// randomHex is 32 bytes from crypto/rand, in hex.
func randomHex() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// Token returns the token the first URL carries.
func (s *Server) Token() string { return s.token }

// URL returns the URL to open first: addr with the token.
func (s *Server) URL(addr string) string {
	return "http://" + addr + "/?token=" + url.QueryEscape(s.token)
}

// IsLoopback reports whether a listen address binds loopback only: an IP
// of 127.0.0.0/8 or ::1, or localhost. An empty host binds every interface.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve serves the dashboard on lis until ctx is done, then shuts down
// within two seconds.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(lis.Addr().String()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.callTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	s.log.Info("ui serving", "addr", lis.Addr().String(), "identity", s.id.String())
	select {
	case err := <-served:
		return fmt.Errorf("serve ui %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	// A browser keeps connections open, some without a request yet (a
	// preconnect), which Shutdown waits for: after a short wait they are
	// closed, which is no error of the dashboard's.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	<-served
	return err
}

// cookieName is per port: browsers do not keep cookies of two ports of a
// host apart, and two dashboards (an operator's, an analyst's) may run side
// by side.
func cookieName(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "fedreport_ui_" + port
}

// Handler returns the dashboard's handler for a server listening on addr:
// the host checks, the origin checks and the token guard every page.
func (s *Server) Handler(addr string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /members", s.members)
	mux.HandleFunc("GET /rollups", s.rollups)
	mux.HandleFunc("GET /rollups/{id}", s.rollup)
	mux.HandleFunc("POST /rollups", s.startRollup)
	mux.HandleFunc("GET /operations/{name}", s.operation)
	mux.HandleFunc("GET /operations/{name}/report.html", s.report)
	mux.HandleFunc("GET /static/style.css", s.style)
	// CrossOriginProtection refuses cross-origin POSTs by Sec-Fetch-Site
	// and Origin; the CSRF token covers browsers that send neither.
	cop := http.NewCrossOriginProtection()
	return s.guard(addr, cop.Handler(mux))
}

// guard admits a request only to a Host the server listens as, from its
// own origin, with the token or the session cookie.
func (s *Server) guard(addr string, next http.Handler) http.Handler {
	hosts := allowedHosts(addr)
	name := cookieName(addr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: under no-referrer Chromium sends
		// "Origin: null" with a form's POST, which the origin check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		// A DNS name that resolves to 127.0.0.1 must not reach the
		// dashboard from a page of that name (DNS rebinding).
		if hosts != nil && !hosts[strings.ToLower(r.Host)] {
			http.Error(w, "fedreport ui: unknown Host "+r.Host+"; open the URL fedreport ui printed", http.StatusMisdirectedRequest)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			http.Error(w, "fedreport ui: requests from another origin are refused", http.StatusForbidden)
			return
		}
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
		default:
			http.Error(w, "fedreport ui: requests from another site are refused", http.StatusForbidden)
			return
		}
		if tok := r.URL.Query().Get("token"); tok != "" {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) != 1 {
				s.unauthorized(w)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: name, Value: s.session, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			// The token leaves the address bar and the history.
			q := r.URL.Query()
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		c, err := r.Cookie(name)
		if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) != 1 {
			s.unauthorized(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) unauthorized(w http.ResponseWriter) {
	http.Error(w, "fedreport ui: open the URL `fedreport ui` printed; it carries the token that admits this browser", http.StatusUnauthorized)
}

// allowedHosts are the Host headers of a server on addr: addr itself, and
// for a loopback address, localhost and the loopback IPs on its port. nil
// allows any: a server on every interface (0.0.0.0, ::) cannot know the
// names it is reached by; the token and the cookie still guard it.
func allowedHosts(addr string) map[string]bool {
	out := map[string]bool{strings.ToLower(addr): true}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return out
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return nil
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
			out[h+":"+port] = true
		}
	}
	return out
}

// checkCSRF reports whether a form carries the session's CSRF token.
func (s *Server) checkCSRF(r *http.Request) bool {
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) == 1
}

// isOperator reports whether the user's certificate is an operator's.
func (s *Server) isOperator() bool { return s.id.Role == identity.RoleOperator }
