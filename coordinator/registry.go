package coordinator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/isa-alliance/fedreport/internal/echo"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/yamlconf"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// Member is one registered member: its code and the address of its node.
// The node's certificate must carry the identity node/<Code>.
type Member struct {
	// Code is the member code: 2–8 upper-case letters or digits (FR, AE, ...).
	Code string `yaml:"code"`
	// Address is host:port of the member's node.
	Address string `yaml:"address"`
}

// String returns the member in the form ParseMember reads: CODE=host:port.
func (m Member) String() string { return m.Code + "=" + m.Address }

// ValidateMemberCode reports whether code is a valid member code, as
// identity.ValidMember defines it.
func ValidateMemberCode(code string) error {
	if !identity.ValidMember(code) {
		return fmt.Errorf("member code %s: want 2-8 upper-case letters or digits, as in FR or AE", echo.Quote(code))
	}
	return nil
}

// validateAddress checks that addr is host:port with a numeric port.
func validateAddress(code, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("member %s address %s: want host:port, as in 127.0.0.1:7443", code, echo.Quote(addr))
	}
	if host == "" {
		return fmt.Errorf("member %s address %s: host is empty; want host:port, as in 127.0.0.1:7443", code, echo.Quote(addr))
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("member %s address %s: port %s is not a number in 1-65535", code, echo.Quote(addr), echo.Quote(port))
	}
	return nil
}

// ParseMember parses a --member value of the form CODE=host:port, as in
// FR=127.0.0.1:7443.
func ParseMember(s string) (Member, error) {
	code, addr, ok := strings.Cut(s, "=")
	if !ok {
		return Member{}, fmt.Errorf("member %s: want CODE=host:port, as in FR=127.0.0.1:7443", echo.Quote(s))
	}
	m := Member{Code: strings.TrimSpace(code), Address: strings.TrimSpace(addr)}
	if err := ValidateMemberCode(m.Code); err != nil {
		return Member{}, err
	}
	if err := validateAddress(m.Code, m.Address); err != nil {
		return Member{}, err
	}
	return m, nil
}

// ValidateMembers checks every member and refuses duplicate codes. The
// registry needs at least one member.
func ValidateMembers(members []Member) error {
	if len(members) == 0 {
		return errors.New("no members: register at least one, as in --member FR=127.0.0.1:7443")
	}
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		if err := ValidateMemberCode(m.Code); err != nil {
			return err
		}
		if err := validateAddress(m.Code, m.Address); err != nil {
			return err
		}
		if seen[m.Code] {
			return fmt.Errorf("member %s is registered twice", m.Code)
		}
		seen[m.Code] = true
	}
	return nil
}

// MemberList is a repeatable --member flag value. It implements the
// pflag.Value interface (String, Set, Type), so cobra commands can bind it
// with FlagSet.Var; Set refuses malformed values and duplicate codes.
type MemberList []Member

// String implements pflag.Value.
func (l *MemberList) String() string {
	parts := make([]string, 0, len(*l))
	for _, m := range *l {
		parts = append(parts, m.String())
	}
	return strings.Join(parts, ",")
}

// Set implements pflag.Value: it parses and appends one CODE=host:port.
func (l *MemberList) Set(s string) error {
	m, err := ParseMember(s)
	if err != nil {
		return err
	}
	for _, have := range *l {
		if have.Code == m.Code {
			return fmt.Errorf("member %s is registered twice (%s and %s)", m.Code, have.Address, m.Address)
		}
	}
	*l = append(*l, m)
	return nil
}

// Type implements pflag.Value.
func (l *MemberList) Type() string { return "CODE=host:port" }

// FileConfig is the coordinator's YAML configuration file. Unknown keys are
// an error, so a misspelt key is never silently ignored.
//
//	listen: 127.0.0.1:7400
//	data: coord.db
//	trust_domain: isa
//	member_timeout: 10s
//	min_members: 0          # or require_all: true
//	shutdown_timeout: 15s
//	members:
//	  - {code: FR, address: 127.0.0.1:7443}
//	cacert: ca.crt
//	cert: coordinator-main.crt
//	key: coordinator-main.key
//	# as one member of a larger federation:
//	member_code: EU
//	member_listen: 127.0.0.1:7401
//	member_cert: node-EU.crt
//	member_key: node-EU.key
//	schedules:
//	  - {name: weekly, every: weekly, metrics: [arrests, victims_identified], group_by: [member]}
//	  - {name: monthly, every: monthly, after: 24h}
//	operations:
//	  - name: isa-2020
//	    title: Operation ISA 2020
//	    phases: [{from: 2020-01-01, to: 2020-05-30}, {from: 2020-06-01, to: 2020-09-30}]
//	    members: [FR, IT]
type FileConfig struct {
	// Listen is the host:port the coordinator serves on.
	Listen string `yaml:"listen"`
	// Data is the path of the coordinator's bbolt file.
	Data string `yaml:"data"`
	// TrustDomain is the SPIFFE trust domain of the alliance.
	TrustDomain string `yaml:"trust_domain"`
	// Members are the registered members, in registry order. Their codes
	// may be written in either case; ParseFileConfig upper-cases them.
	Members []Member `yaml:"members"`
	// MemberTimeout is the per-member deadline of a rollup. Absent, it is 0
	// and the default applies (DefaultMemberTimeout, 10s): Config takes a
	// 0 MemberTimeout as the default. `fedreport coordinator` refuses an
	// explicit member_timeout: 0s, as it refuses --member-timeout 0s, rather
	// than read it as the default.
	MemberTimeout time.Duration `yaml:"member_timeout"`
	// MinMembers is the quorum: with fewer members answering, a rollup fails.
	MinMembers int `yaml:"min_members"`
	// RequireAll makes every member the quorum (excludes MinMembers).
	RequireAll bool `yaml:"require_all"`
	// ShutdownTimeout bounds how long running rollups may finish on stop.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MemberCode makes the coordinator answer as this member to a
	// coordinator one level up, on MemberListen. It may be written in
	// either case; ParseFileConfig upper-cases it.
	MemberCode string `yaml:"member_code"`
	// MemberListen is the host:port of the member API.
	MemberListen string `yaml:"member_listen"`
	// MemberCert and MemberKey are the node certificate (node/<MemberCode>)
	// and key the member listener presents.
	MemberCert string `yaml:"member_cert"`
	// MemberKey is the member listener's private key (PEM).
	MemberKey string `yaml:"member_key"`
	// Schedules are rollups the coordinator runs by itself.
	Schedules []Schedule `yaml:"schedules"`
	// Operations are the alliance's operations (Operation), which
	// ListOperations lists and `fedreport rollup --operation` runs.
	Operations []Operation `yaml:"operations"`
	// CACert is the path of the CA bundle (PEM).
	CACert string `yaml:"cacert"`
	// Cert is the path of the coordinator's certificate (PEM).
	Cert string `yaml:"cert"`
	// Key is the path of the coordinator's private key (PEM).
	Key string `yaml:"key"`
	// CRL is the path of the revocation list (fedreport pki's ca.crl).
	CRL string `yaml:"crl"`
	// StartRollupRate and StartRollupBurst are the per-identity rate limit
	// of StartRollup (nil: the command's default; checked by the command).
	StartRollupRate  *float64 `yaml:"start_rollup_rate"`
	StartRollupBurst *int     `yaml:"start_rollup_burst"`
	// GetRollupRate, ListRollupsRate, ListMembersRate and their bursts are
	// the per-identity rate limits of the reads (nil: the command's default).
	GetRollupRate    *float64 `yaml:"get_rollup_rate"`
	GetRollupBurst   *int     `yaml:"get_rollup_burst"`
	ListRollupsRate  *float64 `yaml:"list_rollups_rate"`
	ListRollupsBurst *int     `yaml:"list_rollups_burst"`
	ListMembersRate  *float64 `yaml:"list_members_rate"`
	ListMembersBurst *int     `yaml:"list_members_burst"`
	// MaxConnections and MaxConnectionsPerSource cap the connections of
	// each mTLS listener, and from one source address (nil: the command's
	// default; 0: no cap).
	MaxConnections          *int `yaml:"max_connections"`
	MaxConnectionsPerSource *int `yaml:"max_connections_per_source"`
	// MemberRate and MemberBurst pace the coordinator's Aggregate calls to
	// each member (nil: DefaultMemberRate; rate 0: no pacing).
	MemberRate  *float64 `yaml:"member_rate"`
	MemberBurst *int     `yaml:"member_burst"`
}

// LoadFileConfig reads and checks the YAML configuration file at path.
func LoadFileConfig(path string) (*FileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	fc, err := ParseFileConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return fc, nil
}

// ParseFileConfig parses a YAML configuration strictly: unknown keys, a
// malformed member or duration, duplicate member codes (fr and FR are one
// code: codes are upper-cased, as the --member flag does) and a negative
// timeout or quorum are errors. Missing members are left for the caller to
// merge with --member flags and check with ValidateMembers.
func ParseFileConfig(b []byte) (*FileConfig, error) {
	fc := &FileConfig{}
	if err := yamlconf.Decode(b, fc); err != nil {
		return nil, err
	}
	// Codes are upper-cased as the --member flag does, so fr is FR; typed
	// keeps each code as written, for the messages.
	typed := make([]string, len(fc.Members))
	first := make(map[string]int, len(fc.Members)) // code → index of its first entry
	for i := range fc.Members {
		m := &fc.Members[i]
		typed[i], m.Code = m.Code, identity.UpperMember(m.Code)
		if !identity.ValidMember(m.Code) {
			return nil, fmt.Errorf("members[%d]: member code %s: want 2-8 letters or digits, as in FR or AE", i, echo.Quote(typed[i]))
		}
		if err := validateAddress(m.Code, m.Address); err != nil {
			return nil, fmt.Errorf("members[%d]: %w", i, err)
		}
		if j, ok := first[m.Code]; ok {
			return nil, fmt.Errorf("members[%d]: member %s is registered twice, as members[%d] %q (%s) and members[%d] %q (%s); a code is the same in either case, keep one",
				i, m.Code, j, typed[j], fc.Members[j].Address, i, typed[i], m.Address)
		}
		first[m.Code] = i
	}
	if fc.MemberTimeout < 0 {
		return nil, fmt.Errorf("member_timeout %v: must not be negative", fc.MemberTimeout)
	}
	if fc.MinMembers < 0 {
		return nil, fmt.Errorf("min_members %d: must not be negative", fc.MinMembers)
	}
	if fc.RequireAll && fc.MinMembers > 0 {
		return nil, fmt.Errorf("min_members %d and require_all: give one quorum rule, not both", fc.MinMembers)
	}
	if fc.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("shutdown_timeout %v: must not be negative", fc.ShutdownTimeout)
	}
	if fc.MemberCode != "" {
		typed := fc.MemberCode
		if fc.MemberCode = identity.UpperMember(typed); !identity.ValidMember(fc.MemberCode) {
			return nil, fmt.Errorf("member_code %s: want 2-8 letters or digits, as in EU", echo.Quote(typed))
		}
		if fc.MemberListen == "" || fc.MemberCert == "" || fc.MemberKey == "" {
			return nil, fmt.Errorf("member_code %s: also give member_listen, member_cert and member_key (a node certificate for %s)", fc.MemberCode, fc.MemberCode)
		}
	}
	if err := ValidateSchedules(fc.Schedules); err != nil {
		return nil, err
	}
	// Members are checked against the registry by Open, once --member
	// flags and members: are merged.
	if err := ValidateOperations(fc.Operations, nil); err != nil {
		return nil, err
	}
	return fc, nil
}

// memberBackoff keeps reconnection to a member that was down short: rollups
// are rare, and a member that came back should count in the next one rather
// than after grpc's default backoff of up to two minutes.
var memberBackoff = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  250 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   5 * time.Second,
	},
	MinConnectTimeout: 20 * time.Second, // grpc's default; each call's deadline is shorter anyway
}

// memberWindow is the flow-control window of a member connection and of
// each call on it: an answer up to grpc's default message limit (4 MiB)
// arrives without waiting for a window update. A static window also turns
// off grpc's bandwidth estimation, which otherwise follows nearly every
// answer with a PING and its ack: two more writes and reads at each end
// per member and rollup, for a window that small answers never fill.
const memberWindow = 4 << 20

// memberDialOptions are the options of the coordinator's connection to a
// member, but for its TLS credentials: reconnection backoff and flow-control
// windows.
func memberDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(memberBackoff),
		grpc.WithStaticStreamWindowSize(memberWindow),
		grpc.WithStaticConnWindowSize(memberWindow),
	}
}

// memberConn is one registered member with its long-lived connection and
// what the coordinator last learned of it.
type memberConn struct {
	Member
	conn   *grpc.ClientConn
	client fedreportv1.AggregationServiceClient
	pace   *pacer // spaces this member's Aggregate calls (pace.go)

	mu        sync.Mutex // protects the fields below
	contacted bool       // an answer or an error was seen
	reachable bool
	lastSeen  time.Time // when the member last answered
	dataVer   uint64
	software  string
	kind      string // "node" or "coordinator", as last described; cleaned
	policy    *fedreportv1.Policy
	// describeFailed is when the member last failed to describe itself
	// (DescribeNode), so that a member that hangs is not asked again
	// before every rollup.
	describeFailed time.Time
	release        *release // from policy; nil when the member is not pre-checked (precheck.go)
	lastError      string
}

// registry is the coordinator's member list with one connection per member
// and the goroutines that call them.
//
// A registry's member list never changes: ReplaceMembers makes a new one,
// and a rollup keeps the registry it started with (users).
type registry struct {
	members []*memberConn
	callers *callers
	// users counts the rollups and calls using this registry; the
	// connections only it holds are closed once they are done.
	users sync.WaitGroup
}

// newRegistry opens one client connection per member. grpc.NewClient does
// not connect: the first call does, so an unreachable member never blocks start-up.
// Each member's Aggregate calls are paced at rate (pace.go).
func newRegistry(members []Member, memberTLS func(code string) (*tls.Config, error), rate grpcsrv.Rate) (*registry, error) {
	r := &registry{callers: newCallers(fanOutLimit)}
	for _, m := range members {
		mc, err := dialMember(m, memberTLS, rate)
		if err != nil {
			r.close()
			return nil, err
		}
		r.members = append(r.members, mc)
	}
	return r, nil
}

// dialMember makes the client connection of member m; grpc.NewClient does
// not connect.
func dialMember(m Member, memberTLS func(code string) (*tls.Config, error), rate grpcsrv.Rate) (*memberConn, error) {
	tc, err := memberTLS(m.Code)
	if err != nil {
		return nil, fmt.Errorf("member %s TLS: %w", m.Code, err)
	}
	conn, err := grpc.NewClient(m.Address, append(memberDialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))...)
	if err != nil {
		return nil, fmt.Errorf("member %s client: %w", m.Code, err)
	}
	return &memberConn{
		Member: m,
		conn:   conn,
		client: fedreportv1.NewAggregationServiceClient(conn),
		pace:   newPacer(rate),
	}, nil
}

// MemberChanges is what ReplaceMembers changed, by member code.
type MemberChanges struct {
	Added, Removed, Readdressed []string
}

// Empty reports whether nothing changed.
func (mc MemberChanges) Empty() bool {
	return len(mc.Added)+len(mc.Removed)+len(mc.Readdressed) == 0
}

// replaced returns a registry of members that keeps r's connection, pacer
// and last contact of every member whose code and address are unchanged,
// and dials the others; dropped are r's members the new one does not keep.
// The callers are shared.
func (r *registry) replaced(members []Member, memberTLS func(code string) (*tls.Config, error), rate grpcsrv.Rate) (next *registry, dropped []*memberConn, changes MemberChanges, err error) {
	old := make(map[string]*memberConn, len(r.members))
	for _, m := range r.members {
		old[m.Code] = m
	}
	next = &registry{callers: r.callers}
	kept := map[*memberConn]bool{}
	for _, m := range members {
		if prev, ok := old[m.Code]; ok && prev.Address == m.Address {
			next.members = append(next.members, prev)
			kept[prev] = true
			continue
		}
		mc, err := dialMember(m, memberTLS, rate)
		if err != nil {
			for _, n := range next.members {
				if !kept[n] {
					_ = n.conn.Close()
				}
			}
			return nil, nil, MemberChanges{}, err
		}
		next.members = append(next.members, mc)
		if _, ok := old[m.Code]; ok {
			changes.Readdressed = append(changes.Readdressed, m.Code)
		} else {
			changes.Added = append(changes.Added, m.Code)
		}
	}
	newCodes := map[string]bool{}
	for _, m := range members {
		newCodes[m.Code] = true
	}
	for _, m := range r.members {
		if !kept[m] {
			dropped = append(dropped, m)
		}
		if !newCodes[m.Code] {
			changes.Removed = append(changes.Removed, m.Code)
		}
	}
	return next, dropped, changes, nil
}

// close stops the callers and closes every member connection. No rollup
// may be running.
func (r *registry) close() error {
	r.callers.close()
	var errs []error
	for _, m := range r.members {
		if err := m.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close member %s connection: %w", m.Code, err))
		}
	}
	return errors.Join(errs...)
}

// codes returns the member codes in registry order.
func (r *registry) codes() []string {
	out := make([]string, len(r.members))
	for i, m := range r.members {
		out[i] = m.Code
	}
	return out
}

// noteAnswer records that the member answered at t with data version dv.
func (m *memberConn) noteAnswer(t time.Time, dv uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.contacted, m.reachable, m.lastSeen, m.dataVer, m.lastError = true, true, t, dv, ""
}

// noteFailure records that the last contact failed, and why.
func (m *memberConn) noteFailure(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.contacted, m.reachable, m.lastError = true, false, reason
}

// noteDescribe records what DescribeNode reported.
func (m *memberConn) noteDescribe(t time.Time, d *fedreportv1.DescribeNodeResponse) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.contacted, m.reachable, m.lastSeen, m.lastError = true, true, t, ""
	m.dataVer = d.GetDataVersion()
	m.software = clean(d.GetSoftwareVersion())
	m.kind = clean(d.GetKind())
	if d.GetPolicy() != nil {
		m.policy = proto.Clone(d.GetPolicy()).(*fedreportv1.Policy)
		// Shown by members and quoted in refusals as the member said it.
		m.policy.EarliestDate = clean(m.policy.EarliestDate)
	}
	m.release = nil
	if m.kind != KindCoordinator {
		// A coordinator's members are checked by that coordinator.
		m.release = newRelease(m.policy)
	}
}

// advertisedRelease returns the release the member last advertised, or nil
// when it is not pre-checked.
func (m *memberConn) advertisedRelease() *release {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.release
}

// describeRetry is how long a member that failed to describe itself is
// left alone by the pre-check before it is asked again.
const describeRetry = 30 * time.Second

// worthDescribing reports whether the pre-check should ask the member to
// describe itself before a rollup: its policy is unknown, and it did not
// just fail to describe itself (a hung member would delay every rollup by
// the probe's wait).
func (m *memberConn) worthDescribing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.policy == nil && time.Since(m.describeFailed) > describeRetry
}

// noteDescribeFailed records that DescribeNode failed, and why.
func (m *memberConn) noteDescribeFailed(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.contacted, m.reachable, m.lastError, m.describeFailed = true, false, reason, time.Now()
}

// softwareVersion returns the member's last reported software version.
func (m *memberConn) softwareVersion() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.software
}

// proto returns the member as ListMembers shows it.
func (m *memberConn) proto() *fedreportv1.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := &fedreportv1.Member{
		Code:            m.Code,
		Address:         m.Address,
		Reachable:       m.reachable,
		LastDataVersion: m.dataVer,
		SoftwareVersion: m.software,
		LastError:       m.lastError,
		Kind:            m.kind,
	}
	if !m.lastSeen.IsZero() {
		out.LastContact = timestamppb.New(m.lastSeen)
	}
	if m.policy != nil {
		out.Policy = proto.Clone(m.policy).(*fedreportv1.Policy)
	}
	return out
}
