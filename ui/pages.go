package ui

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/records"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// page is what every page template gets.
type page struct {
	Title       string
	Identity    string
	Operator    bool
	Coordinator string
	CSRF        string
	Standalone  bool         // the report: styles inline, no navigation, no forms
	CSS         template.CSS // the inline styles of the report
	Generated   string
	Data        any
}

var funcs = template.FuncMap{
	"metric": func(m fedreportv1.Metric) string { return metricLabel(m) },
	"state": func(s fedreportv1.RollupState) string {
		return strings.ToLower(strings.TrimPrefix(s.String(), "ROLLUP_STATE_"))
	},
	"mstatus": func(s fedreportv1.MemberStatus) string {
		return strings.ToLower(strings.TrimPrefix(s.String(), "MEMBER_STATUS_"))
	},
	"dims": func(ds []fedreportv1.Dimension) string {
		if len(ds) == 0 {
			return "—"
		}
		return records.DimensionNames(ds)
	},
	"metrics": func(ms []fedreportv1.Metric) string {
		if len(ms) == 0 {
			return "all"
		}
		return records.MetricNames(ms)
	},
	"dimname": records.DimensionName,
	"ts": func(t *timestamppb.Timestamp) string {
		if t == nil {
			return "—"
		}
		return t.AsTime().UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"dur": func(d *durationpb.Duration) string {
		if d == nil {
			return "—"
		}
		return d.AsDuration().Round(100 * time.Microsecond).String()
	},
	"value":   func(c *fedreportv1.Cell) Value { return valueOf(c) },
	"cellkey": cellKey,
	"join":    strings.Join,
	"add":     func(a, b int) int { return a + b },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
}

// parseTemplates parses each page with the layout and the chart.
func parseTemplates() (map[string]*template.Template, template.CSS, error) {
	css, err := fs.ReadFile(assets, "static/style.css")
	if err != nil {
		return nil, "", err
	}
	out := map[string]*template.Template{}
	for _, name := range []string{"home", "members", "rollups", "rollup", "operation", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/chart.html", "templates/"+name+".html")
		if err != nil {
			return nil, "", fmt.Errorf("ui template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, template.CSS(css), nil
}

// render writes page name, or an error page when it cannot be rendered.
func (s *Server) render(w http.ResponseWriter, code int, name string, p page) {
	p.Identity, p.Operator, p.Coordinator, p.CSRF = s.id.String(), s.isOperator(), s.coordinator, s.csrf
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, p); err != nil {
		s.log.Error("render", "page", name, "err", err)
		http.Error(w, "fedreport ui: cannot render this page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// coordinatorError shows a coordinator's refusal or failure as it said it.
type coordinatorError struct {
	Doing   string
	Code    string
	Message string
}

// fail renders err of a call to the coordinator, with the HTTP status
// closest to its gRPC code.
func (s *Server) fail(w http.ResponseWriter, doing string, err error) {
	st := status.Convert(err)
	code := http.StatusBadGateway
	switch st.Code() {
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		code = http.StatusUnprocessableEntity
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	}
	s.render(w, code, "error", page{Title: "Refused", Data: coordinatorError{Doing: doing, Code: st.Code().String(), Message: st.Message()}})
}

func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.callTimeout)
}

func (s *Server) style(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = io.WriteString(w, string(s.css))
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	ops, err := listOperations(ctx, s.client)
	if err != nil {
		s.fail(w, "listing operations", err)
		return
	}
	s.render(w, http.StatusOK, "home", page{Title: "Operations", Data: ops})
}

func (s *Server) members(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	var all []*fedreportv1.Member
	req := &fedreportv1.ListMembersRequest{}
	for {
		resp, err := s.client.ListMembers(ctx, req)
		if err != nil {
			s.fail(w, "listing members", err)
			return
		}
		all = append(all, resp.GetMembers()...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	s.render(w, http.StatusOK, "members", page{Title: "Members", Data: all})
}

// rollupsPage is the rollups list with its filter and paging.
type rollupsPage struct {
	Rollups []*fedreportv1.Rollup
	State   string
	States  []string
	Next    string
	Paged   bool // not the first page
}

var stateFilters = []string{"running", "complete", "partial", "failed", "interrupted"}

func (s *Server) rollups(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &fedreportv1.ListRollupsRequest{PageSize: 20, PageToken: q.Get("page_token")}
	state := q.Get("state")
	if state != "" {
		v, ok := fedreportv1.RollupState_value["ROLLUP_STATE_"+strings.ToUpper(state)]
		if !ok || !slices.Contains(stateFilters, state) {
			http.Error(w, "fedreport ui: state: want one of "+strings.Join(stateFilters, ", "), http.StatusBadRequest)
			return
		}
		req.State = fedreportv1.RollupState(v)
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	resp, err := s.client.ListRollups(ctx, req)
	if err != nil {
		s.fail(w, "listing rollups", err)
		return
	}
	s.render(w, http.StatusOK, "rollups", page{Title: "Rollups", Data: rollupsPage{
		Rollups: resp.GetRollups(), State: state, States: stateFilters, Next: resp.GetNextPageToken(), Paged: req.PageToken != "",
	}})
}

func (s *Server) rollup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	resp, err := s.client.GetRollup(ctx, &fedreportv1.GetRollupRequest{Id: r.PathValue("id"), View: fedreportv1.RollupView_ROLLUP_VIEW_FULL})
	if err != nil {
		s.fail(w, "reading rollup "+r.PathValue("id"), err)
		return
	}
	s.render(w, http.StatusOK, "rollup", page{Title: "Rollup " + resp.GetRollup().GetId(), Data: resp.GetRollup()})
}

// startRollup starts a rollup with the user's certificate: the coordinator
// decides whether the identity may, and a refusal is shown as it said it.
func (s *Server) startRollup(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !s.checkCSRF(r) {
		http.Error(w, "fedreport ui: the form's CSRF token is missing or wrong; reload the page and submit again", http.StatusForbidden)
		return
	}
	spec := &fedreportv1.RollupSpec{From: r.PostFormValue("from"), To: r.PostFormValue("to")}
	var err error
	if spec.Metrics, err = records.ParseMetrics(r.PostFormValue("metrics")); err == nil {
		spec.GroupBy, err = records.ParseDimensions(r.PostFormValue("by"))
	}
	if err != nil {
		s.render(w, http.StatusUnprocessableEntity, "error", page{Title: "Refused", Data: coordinatorError{Doing: "starting a rollup", Code: "InvalidArgument", Message: err.Error()}})
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	resp, err := s.client.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: spec})
	if err != nil {
		s.fail(w, "starting a rollup", err)
		return
	}
	http.Redirect(w, r, "/rollups/"+resp.GetRollup().GetId(), http.StatusSeeOther)
}

func (s *Server) operation(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	v, err := s.operationView(ctx, r.PathValue("name"))
	if err != nil {
		s.fail(w, "reading operation "+r.PathValue("name"), err)
		return
	}
	s.render(w, http.StatusOK, "operation", page{Title: v.Op.GetTitle(), Data: v})
}

// report serves the operation's report, as `fedreport report` writes it.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	var buf bytes.Buffer
	if err := WriteReport(ctx, s.client, r.PathValue("name"), &buf); err != nil {
		s.fail(w, "writing the report of "+r.PathValue("name"), err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+r.PathValue("name")+`-report.html"`)
	_, _ = w.Write(buf.Bytes())
}

// operationView finds operation name and builds its view; an unknown name
// is NotFound, naming those there are.
func (s *Server) operationView(ctx context.Context, name string) (*OperationView, error) {
	return operationView(ctx, s.client, name)
}

func operationView(ctx context.Context, c fedreportv1.CoordinatorServiceClient, name string) (*OperationView, error) {
	op, all, err := findOperation(ctx, c, name)
	if err != nil {
		return nil, err
	}
	if op == nil {
		names := make([]string, len(all))
		for i, o := range all {
			names[i] = o.GetName()
		}
		return nil, status.Errorf(codes.NotFound, "the coordinator names no operation %q; it names: %s", name, strings.Join(names, ", "))
	}
	return buildOperationView(ctx, c, op)
}

// WriteReport writes the report of operation name: the operation view as
// one self-contained HTML file (styles inline, charts as inline SVG, no
// reference to anything outside it), with a print stylesheet.
func WriteReport(ctx context.Context, c fedreportv1.CoordinatorServiceClient, name string, w io.Writer) error {
	v, err := operationView(ctx, c, name)
	if err != nil {
		return err
	}
	pages, css, err := parseTemplates()
	if err != nil {
		return err
	}
	return pages["operation"].Execute(w, page{
		Title: v.Op.GetTitle(), Standalone: true, CSS: css, Data: v,
		Generated: time.Now().UTC().Format("2006-01-02 15:04:05 UTC"),
	})
}

// cellKey names a grouped cell by its dimension values, as "FR 2020-03".
func cellKey(c *fedreportv1.Cell) string {
	var parts []string
	for _, p := range []string{c.GetMember(), c.GetMonth(), c.GetOffence(), c.GetChannel(), c.GetVictimAge()} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "total"
	}
	return strings.Join(parts, " · ")
}
