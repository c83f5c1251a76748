package main

import (
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/isa-alliance/fedreport/coordinator"
	"github.com/isa-alliance/fedreport/internal/grpcsrv"
	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
	"github.com/isa-alliance/fedreport/node"
	fedreportv1 "github.com/isa-alliance/fedreport/proto/fedreport/v1"
)

// TestRateLimitSettingsRefuseBadValues runs node and coordinator through the
// root command with rates and bursts no limiter can use: each is refused
// before anything starts, naming the flag, its config key and what to give.
func TestRateLimitSettingsRefuseBadValues(t *testing.T) {
	t.Parallel()
	node := []string{"node", "--member", "FR", "--data", filepath.Join(t.TempDir(), "fr.db")}
	coord := []string{"coordinator", "--data", filepath.Join(t.TempDir(), "coord.db"), "--member", "FR=127.0.0.1:7443"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"a negative Aggregate rate", append(node, "--aggregate-rate", "-1"),
			[]string{"--aggregate-rate -1 (aggregate_rate in --config)", "above 0, or 0 for no limit"}},
		{"an Aggregate rate that is not a number", append(node, "--aggregate-rate", "NaN"), []string{"--aggregate-rate NaN"}},
		{"a zero Aggregate burst", append(node, "--aggregate-burst", "0"),
			[]string{"--aggregate-burst 0 (aggregate_burst in --config): give at least 1", "set --aggregate-rate 0 instead"}},
		{"a negative Aggregate burst in the file", append(node, "--config", writeFile(t, "node.yaml", "aggregate_burst: -5\n")),
			[]string{"--aggregate-burst -5 (aggregate_burst in --config)"}},
		{"a negative StartRollup rate", append(coord, "--start-rollup-rate", "-0.5"),
			[]string{"--start-rollup-rate -0.5 (start_rollup_rate in --config)", "or 0 for no limit"}},
		{"a zero StartRollup burst in the file", append(coord, "--config", writeFile(t, "coord.yaml", "start_rollup_burst: 0\n")),
			[]string{"--start-rollup-burst 0 (start_rollup_burst in --config): give at least 1"}},
		{"a zero ListMembers burst", append(coord, "--list-members-burst", "0"),
			[]string{"--list-members-burst 0 (list_members_burst in --config): give at least 1"}},
		{"a negative GetRollup rate in the file", append(coord, "--config", writeFile(t, "get.yaml", "get_rollup_rate: -2\n")),
			[]string{"--get-rollup-rate -2 (get_rollup_rate in --config)"}},
		{"a zero member burst", append(coord, "--member-burst", "0"),
			[]string{"--member-burst 0 (member_burst in --config): give at least 1"}},
		{"a misspelt rate key", append(coord, "--config", writeFile(t, "typo.yaml", "data: c.db\nstart_rolup_rate: 1\n")),
			[]string{`line 2: unknown key "start_rolup_rate"`}},
	} {
		_, _, err := runCLI(t, t.Context(), tc.args...)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: got %v, want an error containing %q", tc.name, err, want)
			}
		}
	}
}

// TestCoordinatorConfigFile checks --config of the coordinator: its own keys
// and this command's rate keys set the flags of the same names, flags win,
// schedules and members come through, and the coordinator's checks still apply.
func TestCoordinatorConfigFile(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "coord.yaml", `listen: 127.0.0.1:7555
data: coord.db
cacert: ca.crt
cert: coordinator-main.crt
key: coordinator-main.key
crl: ca.crl
member_timeout: 3s
min_members: 2
shutdown_timeout: 20s
members:
  - {code: FR, address: 127.0.0.1:7443}
  - {code: IT, address: 127.0.0.1:7444}
schedules:
  - {name: weekly, every: weekly, metrics: [arrests], after: 6h}
start_rollup_rate: 0.1
start_rollup_burst: 3
get_rollup_rate: 7
get_rollup_burst: 70
list_rollups_rate: 0
list_members_burst: 4
max_connections: 100
max_connections_per_source: 10
member_rate: 4
member_burst: 60
`)
	o := &coordinatorOptions{}
	fs := pflag.NewFlagSet("coordinator", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--config", file, "--start-rollup-burst", "5"}); err != nil {
		t.Fatal(err)
	}
	if err := o.applyConfig(fs); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"listen": "127.0.0.1:7555", "data": "coord.db", "crl": "ca.crl", "member-timeout": "3s", "min-members": "2",
		"shutdown-timeout": "20s", "start-rollup-rate": "0.1", "start-rollup-burst": "5", // the flag wins
		"max-connections": "100", "max-connections-per-source": "10", "member-rate": "4", "member-burst": "60",
	} {
		if got := fs.Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s: got %q, want %q", flag, got, want)
		}
	}
	if got := o.members.String(); got != "FR=127.0.0.1:7443,IT=127.0.0.1:7444" {
		t.Errorf("members: got %s", got)
	}
	if len(o.schedules) != 1 || o.schedules[0].Name != "weekly" || o.schedules[0].After != 6*time.Hour || !slices.Equal(o.schedules[0].Metrics, []string{"arrests"}) {
		t.Errorf("schedules: got %+v", o.schedules)
	}
	limits := rateLimits(o.rates()...)
	for method, want := range map[string]grpcsrv.Rate{
		fedreportv1.CoordinatorService_StartRollup_FullMethodName: {PerSecond: 0.1, Burst: 5},
		fedreportv1.CoordinatorService_GetRollup_FullMethodName:   {PerSecond: 7, Burst: 70},
		fedreportv1.CoordinatorService_ListMembers_FullMethodName: {PerSecond: grpcsrv.DefaultRates[fedreportv1.CoordinatorService_ListMembers_FullMethodName].PerSecond, Burst: 4},
	} {
		if got := limits.Rates[method]; got != want {
			t.Errorf("%s rate: got %+v, want %+v", method, got, want)
		}
	}
	if got, ok := limits.Rates[fedreportv1.CoordinatorService_ListRollups_FullMethodName]; ok {
		t.Errorf("ListRollups with list_rollups_rate: 0: got %+v, want no limit", got)
	}
	if _, ok := limits.Rates[fedreportv1.AggregationService_Aggregate_FullMethodName]; !ok {
		t.Error("the member API's Aggregate lost its default rate")
	}

	// The coordinator's own checks of the file still run.
	o = &coordinatorOptions{}
	fs = pflag.NewFlagSet("coordinator", pflag.ContinueOnError)
	o.AddFlags(fs)
	o.config = writeFile(t, "bad.yaml", "min_members: 1\nrequire_all: true\n")
	if err := o.applyConfig(fs); err == nil || !strings.Contains(err.Error(), "give one quorum rule") {
		t.Errorf("min_members with require_all: got %v, want the coordinator's quorum error", err)
	}
}

func TestCoordinatorMemberFlagUpperCasesTheCode(t *testing.T) {
	t.Parallel()
	parse := func(args ...string) (*coordinatorOptions, error) {
		o := &coordinatorOptions{}
		fs := pflag.NewFlagSet("coordinator", pflag.ContinueOnError)
		o.AddFlags(fs)
		return o, fs.Parse(args)
	}
	o, err := parse("--member", "fr=127.0.0.1:7443", "--member", "It=127.0.0.1:7444")
	if err != nil {
		t.Fatal(err)
	}
	if got := o.members.String(); got != "FR=127.0.0.1:7443,IT=127.0.0.1:7444" {
		t.Errorf("members: got %s, want FR=127.0.0.1:7443,IT=127.0.0.1:7444", got)
	}
	if _, err := parse("--member", "fr=127.0.0.1:7443", "--member", "FR=127.0.0.1:7444"); err == nil || !strings.Contains(err.Error(), "member FR is registered twice") {
		t.Errorf("fr and FR: got %v, want FR registered twice", err)
	}
	if _, err := parse("--member", "f-r=127.0.0.1:7443"); err == nil || !strings.Contains(err.Error(), "2-8 upper-case letters or digits") {
		t.Errorf("a malformed code: got %v, want it refused", err)
	}
}

// TestCoordinatorConfigTakesMemberCodesInEitherCase runs the coordinator
// through the root command with members: and member_code written in lower
// and mixed case in its --config file, as the flags take them: it starts,
// and `fedreport members` lists FR and IT. A file with both fr and FR is
// refused, naming both, and so is --member ſe=..., which strings.ToUpper
// would have turned into SE.
func TestCoordinatorConfigTakesMemberCodesInEitherCase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	for _, issue := range [][]string{
		{"--role", "coordinator", "--name", "main"}, {"--role", "operator", "--name", "alice"}, {"--role", "node", "--member", "EU"},
	} {
		mustRunCLI(t, append([]string{"pki", "issue", "--dir", pkiDir}, issue...)...)
	}
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	addr := freeAddr(t)
	config := writeFile(t, "coord.yaml", "member_code: eu\nmember_listen: "+freeAddr(t)+
		"\nmember_cert: "+p("node-EU.crt")+"\nmember_key: "+p("node-EU.key")+
		"\nmembers:\n  - {code: fr, address: "+freeAddr(t)+"}\n  - {code: It, address: "+freeAddr(t)+"}\n")
	serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
		"coordinator", "--config", config, "--data", filepath.Join(dir, "coord.db"), "--listen", addr,
		"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
	out := mustRunCLI(t, "members", "--coordinator", addr, "--cacert", p("ca.crt"), "--cert", p("operator-alice.crt"), "--key", p("operator-alice.key"))
	for _, code := range []string{"FR", "IT"} {
		if !regexp.MustCompile(`(?m)^` + code + `\s`).MatchString(out) {
			t.Errorf("members: want a line for %s:\n%s", code, out)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"fr and FR in one file", []string{"--config", writeFile(t, "dup.yaml", "members:\n  - {code: fr, address: 127.0.0.1:7443}\n  - {code: FR, address: 127.0.0.1:7444}\n")},
			`members[1]: member FR is registered twice, as members[0] "fr" (127.0.0.1:7443) and members[1] "FR" (127.0.0.1:7444); a code is the same in either case, keep one`},
		{"a long s in --member", []string{"--member", "ſe=127.0.0.1:7443"}, `member code "ſE": want 2-8 upper-case letters or digits`},
	} {
		data := filepath.Join(t.TempDir(), "coord.db")
		_, _, err := runCLI(t, t.Context(), append([]string{"coordinator", "--data", data}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// serveCLI runs fedreport args through the root command until the test ends
// and waits for its listener at addr to serve health checks as id.
func serveCLI(t *testing.T, pkiDir, addr string, id, server identity.ID, args ...string) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var stderr string
	go func() {
		var err error
		_, stderr, err = runCLI(t, ctx, args...)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fedreport %s: %v\n%s", args[0], err, stderr)
		}
	})
	return waitHealthy(t, pkiDir, addr, id, server)
}

// waitHealthy waits for the server at addr to serve health checks as id,
// and returns the connection.
func waitHealthy(t *testing.T, pkiDir, addr string, id, server identity.ID) *grpc.ClientConn {
	t.Helper()
	base := filepath.Join(pkiDir, pki.FileBase(id))
	src, err := mtls.NewFiles(filepath.Join(pkiDir, "ca.crt"), base+".crt", base+".key")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(src, mtls.ExpectID(server)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hctx, hcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer hcancel()
	if _, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("the server at %s did not come up: %v", addr, err)
	}
	return conn
}

// rateLimited reports whether err is the limiter's refusal with a burst of burst.
func rateLimited(err error, burst string) bool {
	return status.Code(err) == codes.ResourceExhausted && strings.Contains(status.Convert(err).Message(), "bursts of "+burst+")")
}

// TestRateLimitFlagsReachTheServers runs a node and a coordinator through
// the root command with their rate settings (node: flags; coordinator: its
// config file) and checks the servers enforce them: a burst of 2 refuses the
// third Aggregate, rate 0 lifts the limit, a burst of 1 the second rollup.
func TestRateLimitFlagsReachTheServers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	mustRunCLI(t, "pki", "init", "--dir", pkiDir)
	for _, issue := range [][]string{
		{"--role", "node", "--member", "FR"}, {"--role", "node", "--member", "IT"},
		{"--role", "member-admin", "--member", "FR", "--name", "ops"}, {"--role", "member-admin", "--member", "IT", "--name", "ops"},
		{"--role", "coordinator", "--name", "main"}, {"--role", "operator", "--name", "alice"},
	} {
		mustRunCLI(t, append([]string{"pki", "issue", "--dir", pkiDir}, issue...)...)
	}
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	node := func(member string, rate ...string) fedreportv1.AggregationServiceClient {
		addr := freeAddr(t)
		args := append([]string{"node", "--member", member, "--data", filepath.Join(dir, member+".db"), "--listen", addr,
			"--min-cell-count", "3", "--cacert", p("ca.crt"), "--cert", p("node-" + member + ".crt"), "--key", p("node-" + member + ".key")}, rate...)
		conn := serveCLI(t, pkiDir, addr, identity.MemberAdmin("isa", member, "ops"), identity.Node("isa", member), args...)
		return fedreportv1.NewAggregationServiceClient(conn)
	}
	aggregate := func(c fedreportv1.AggregationServiceClient) error {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := c.Aggregate(ctx, &fedreportv1.AggregateRequest{From: "2020-01-01", To: "2020-01-31"})
		return err
	}

	limited := node("FR", "--aggregate-rate", "0.01", "--aggregate-burst", "2")
	for i := range 2 {
		if err := aggregate(limited); err != nil {
			t.Fatalf("Aggregate %d of a burst of 2: %v", i+1, err)
		}
	}
	if err := aggregate(limited); !rateLimited(err, "2") {
		t.Errorf("third Aggregate with --aggregate-burst 2: got %v, want RESOURCE_EXHAUSTED naming bursts of 2", err)
	}
	unlimited := node("IT", "--aggregate-rate", "0")
	for i := range 70 { // more than the default burst of 60
		if err := aggregate(unlimited); err != nil {
			t.Fatalf("Aggregate %d with --aggregate-rate 0: %v", i+1, err)
		}
	}

	addr := freeAddr(t)
	config := writeFile(t, "coord.yaml", "member_timeout: 500ms\nstart_rollup_rate: 0.01\nstart_rollup_burst: 1\nlist_rollups_rate: 0.01\nlist_rollups_burst: 2\nmembers:\n  - {code: FR, address: "+freeAddr(t)+"}\n")
	conn := serveCLI(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"),
		"coordinator", "--config", config, "--data", filepath.Join(dir, "coord.db"), "--listen", addr,
		"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
	c := fedreportv1.NewCoordinatorServiceClient(conn)
	startRollup := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := c.StartRollup(ctx, &fedreportv1.StartRollupRequest{Spec: &fedreportv1.RollupSpec{From: "2020-01-01", To: "2020-01-31"}})
		return err
	}
	if err := startRollup(); err != nil {
		t.Fatalf("first rollup: %v", err)
	}
	if err := startRollup(); !rateLimited(err, "1") {
		t.Errorf("second rollup with start_rollup_burst: 1: got %v, want RESOURCE_EXHAUSTED naming bursts of 1", err)
	}
	listRollups := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := c.ListRollups(ctx, &fedreportv1.ListRollupsRequest{})
		return err
	}
	for i := range 2 {
		if err := listRollups(); err != nil {
			t.Fatalf("ListRollups %d of a burst of 2: %v", i+1, err)
		}
	}
	if err := listRollups(); !rateLimited(err, "2") {
		t.Errorf("third ListRollups with list_rollups_burst: 2: got %v, want RESOURCE_EXHAUSTED naming bursts of 2", err)
	}
}

// TestConfigTypeErrorsNameTheKey gives node and coordinator config files a
// value of the wrong type: the error names the key and what to write.
func TestConfigTypeErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a duration without a unit", []string{"coordinator", "--config", writeFile(t, "coord.yaml", "data: c.db\nmember_timeout: 10\n")},
			"line 2: member_timeout: want a duration such as 10s, not 10"},
		{"a count in words", []string{"node", "--config", writeFile(t, "node.yaml", "member: FR\nmin_cell_count: \"five\"\n")},
			"line 2: min_cell_count: want a whole number, 0 or more, not five"},
	} {
		_, _, err := runCLI(t, t.Context(), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestExplicitZerosAreRefused sets, on the command line and in config
// files, values the servers used to replace by their defaults without a
// word, and an earliest date no request could meet: each is refused before
// anything starts, saying what to give. Left unset, the defaults stay.
func TestExplicitZerosAreRefused(t *testing.T) {
	t.Parallel()
	nodeArgs := []string{"node", "--member", "FR", "--data", filepath.Join(t.TempDir(), "fr.db")}
	coordArgs := []string{"coordinator", "--data", filepath.Join(t.TempDir(), "coord.db"), "--member", "FR=127.0.0.1:7443"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"--min-cell-count 0", append(nodeArgs, "--min-cell-count", "0"),
			"--min-cell-count 0 (min_cell_count in --config): give 3 or more (the default is 5)"},
		{"min_cell_count: 0", append(nodeArgs, "--config", writeFile(t, "node.yaml", "min_cell_count: 0\n")),
			"--min-cell-count 0 (min_cell_count in --config): give 3 or more"},
		{"a future earliest date", append(nodeArgs, "--earliest-date", "2999-01-01"),
			"--earliest-date 2999-01-01 (earliest_date in --config) is in the future: the node would refuse every request; give a day on or before today"},
		{"an earliest date that is not a date", append(nodeArgs, "--earliest-date", "2020-13-01"),
			`--earliest-date 2020-13-01 (earliest_date in --config): date "2020-13-01" does not exist (months run 01 to 12)`},
		{"--member-timeout 0s", append(coordArgs, "--member-timeout", "0s"),
			"--member-timeout 0s (member_timeout in --config): give a duration above 0 and at most 15m0s (members answer a rollup for 15m0s after it starts), such as 10s (the default)"},
		{"--member-timeout 1h", append(coordArgs, "--member-timeout", "1h"),
			"--member-timeout 1h0m0s (member_timeout in --config): give a duration above 0 and at most 15m0s"},
		{"member_timeout: 0s", append(coordArgs, "--config", writeFile(t, "coord.yaml", "member_timeout: 0s\n")),
			"--member-timeout 0s (member_timeout in --config): give a duration above 0"},
	} {
		_, _, err := runCLI(t, t.Context(), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}

	o := &coordinatorOptions{}
	fs := pflag.NewFlagSet("coordinator", pflag.ContinueOnError)
	o.AddFlags(fs)
	o.config = writeFile(t, "unset.yaml", "data: c.db\n")
	if err := o.applyConfig(fs); err != nil {
		t.Fatal(err)
	}
	if o.memberTimeout != coordinator.DefaultMemberTimeout {
		t.Errorf("member timeout left unset: got %v, want the default %v", o.memberTimeout, coordinator.DefaultMemberTimeout)
	}
	n := &nodeOptions{}
	fs = pflag.NewFlagSet("node", pflag.ContinueOnError)
	n.AddFlags(fs)
	n.config = writeFile(t, "unset.yaml", "member: FR\n")
	if err := n.applyConfig(fs); err != nil {
		t.Fatal(err)
	}
	if err := n.validatePolicy(time.Now()); err != nil || n.minCellCount != node.DefaultMinCellCount {
		t.Errorf("min cell count left unset: got %d, %v, want the default %d", n.minCellCount, err, node.DefaultMinCellCount)
	}
}

// TestCoordinatorWarnsOfAMemberHostThatDoesNotResolve starts a coordinator
// whose member GB names a host that cannot resolve (.invalid, RFC 6761):
// it serves, and its log warns at start naming GB and the host.
func TestCoordinatorWarnsOfAMemberHostThatDoesNotResolve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := initPKI(t, filepath.Join(dir, "pki"),
		[]string{"--role", "coordinator", "--name", "main"}, []string{"--role", "operator", "--name", "alice"})
	p := func(name string) string { return filepath.Join(pkiDir, name) }
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan string, 1)
	go func() {
		_, stderr, _ := runCLI(t, ctx, "coordinator", "--data", filepath.Join(dir, "coord.db"), "--listen", addr,
			"--member", "FR=127.0.0.1:7443", "--member", "GB=gb-node.invalid:7443",
			"--cacert", p("ca.crt"), "--cert", p("coordinator-main.crt"), "--key", p("coordinator-main.key"))
		done <- stderr
	}()
	waitHealthy(t, pkiDir, addr, identity.Operator("isa", "alice"), identity.Coordinator("isa", "main"))
	cancel()
	stderr := <-done
	if !strings.Contains(stderr, `msg="member host does not resolve;`) || !strings.Contains(stderr, "member=GB host=gb-node.invalid") {
		t.Errorf("coordinator log: want a warning naming GB and gb-node.invalid:\n%s", stderr)
	}
	if strings.Contains(stderr, "member=FR host=") {
		t.Errorf("coordinator log: a warning for FR's IP address:\n%s", stderr)
	}
}
