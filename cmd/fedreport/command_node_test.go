package main

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestNodeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mustRunCLI(t, "pki", "init", "--dir", dir)
	mustRunCLI(t, "pki", "issue", "--dir", dir, "--role", "node", "--member", "IT")
	tlsArgs := []string{"--cacert", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "node-IT.crt"), "--key", filepath.Join(dir, "node-IT.key")}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown key in the config file", []string{"--config", writeFile(t, "node.yaml", "member: IT\nmin_cel_count: 3\n")}, `line 2: unknown key "min_cel_count"`},
		{"another member's certificate", append([]string{"--member", "FR", "--data", filepath.Join(dir, "fr.db")}, tlsArgs...), "a node of FR needs a certificate for spiffe://isa/node/FR"},
		{"an unknown dimension", append([]string{"--member", "IT", "--data", filepath.Join(dir, "it.db"), "--tables", "offence;colour"}, tlsArgs...), `"colour" is not a table dimension (want offence, channel, victim_age;`},
		{"member offered as a table dimension", append([]string{"--member", "IT", "--data", filepath.Join(dir, "it.db"), "--tables", "member"}, tlsArgs...), `"member" is not a table dimension (want offence, channel, victim_age;`},
		{"k below 3", append([]string{"--member", "IT", "--data", filepath.Join(dir, "it.db"), "--min-cell-count", "2"}, tlsArgs...), "min_cell_count: is 2; give 3 or more"},
		{"overlapping periods", append([]string{"--member", "IT", "--data", filepath.Join(dir, "it.db"), "--periods", "a=2020-01-01..2020-03-31,b=2020-03-01..2020-04-30"}, tlsArgs...), "overlap"},
		{"a period that is not NAME=FROM..TO", append([]string{"--member", "IT", "--data", filepath.Join(dir, "it.db"), "--periods", "phase-1"}, tlsArgs...), "is not NAME=FROM..TO"},
		{"no data file", []string{"--member", "IT"}, "--data"},
		{"a negative connection cap", append([]string{"--member", "IT", "--data", filepath.Join(dir, "it.db"), "--max-connections-per-source", "-1"}, tlsArgs...),
			"--max-connections-per-source -1 (max_connections_per_source in --config): give the connections allowed, a number above 0, or 0 for no cap"},
	} {
		_, _, err := runCLI(t, t.Context(), append([]string{"node"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestNodeConfigKeysAreFlagsAndDocumented checks the contract of --config:
// every YAML key sets the flag of the same name (with dashes), and the help
// shows every key and every flag.
func TestNodeConfigKeysAreFlagsAndDocumented(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "node.yaml", `member: FR
data: fr.db
listen: 127.0.0.1:7555
admin_socket: fr.sock
cacert: ca.crt
cert: node-FR.crt
key: node-FR.key
crl: ca.crl
min_cell_count: 7
tables: "offence,channel"
periods: "phase-1=2020-01-01..2020-05-30"
dominance_percent: 90
earliest_date: "2020-01-01"
log_format: json
log_level: debug
metrics_listen: 127.0.0.1:9555
aggregate_rate: 0.25
aggregate_burst: 4
ingest_idle_timeout: 90s
max_connections: 300
max_connections_per_source: 0
`)
	typ := reflect.TypeFor[nodeConfigFile]()
	var keys []string
	for i := range typ.NumField() {
		keys = append(keys, typ.Field(i).Tag.Get("yaml"))
	}
	opts := &nodeOptions{}
	fs := pflag.NewFlagSet("node", pflag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse([]string{"--config", file, "--listen", "127.0.0.1:7666"}); err != nil {
		t.Fatal(err)
	}
	if err := opts.applyConfig(fs); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"member": "FR", "data": "fr.db", "listen": "127.0.0.1:7666", // the flag wins
		"admin-socket": "fr.sock", "cacert": "ca.crt", "cert": "node-FR.crt", "key": "node-FR.key", "crl": "ca.crl",
		"min-cell-count": "7", "tables": "offence,channel", "periods": "phase-1=2020-01-01..2020-05-30", "dominance-percent": "90", "earliest-date": "2020-01-01",
		"log-format": "json", "log-level": "debug", "metrics-listen": "127.0.0.1:9555",
		"aggregate-rate": "0.25", "aggregate-burst": "4", "ingest-idle-timeout": "1m30s",
		"max-connections": "300", "max-connections-per-source": "0",
	}
	help := nodeLong + "\n" + fs.FlagUsages()
	for _, key := range keys {
		flag := strings.ReplaceAll(key, "_", "-")
		f := fs.Lookup(flag)
		if f == nil {
			t.Errorf("config key %s: no flag --%s", key, flag)
			continue
		}
		if got := f.Value.String(); got != want[flag] {
			t.Errorf("config key %s: --%s is %q, want %q", key, flag, got, want[flag])
		}
		if !strings.Contains(help, "\n  "+key+": ") {
			t.Errorf("the help shows no example of the key %s", key)
		}
	}
	if len(keys) != len(want) {
		t.Errorf("the test knows %d keys, the config file %d", len(want), len(keys))
	}

	// tables: none publishes totals only.
	if got, err := parseTables("none"); err != nil || len(got) != 0 || got == nil {
		t.Errorf(`parseTables("none") = %v, %v; want an empty list`, got, err)
	}
}

// TestServersRefuseACertificateTheirOwnCADoesNotVerify starts a node and a
// coordinator with certificates of another CA than their --cacert: each is
// refused at start, naming both files, instead of serving handshakes that
// every peer fails.
func TestServersRefuseACertificateTheirOwnCADoesNotVerify(t *testing.T) {
	t.Parallel()
	ours, theirs := t.TempDir(), t.TempDir()
	mustRunCLI(t, "pki", "init", "--dir", ours)
	mustRunCLI(t, "pki", "init", "--dir", theirs)
	mustRunCLI(t, "pki", "issue", "--dir", theirs, "--role", "node", "--member", "FR")
	mustRunCLI(t, "pki", "issue", "--dir", theirs, "--role", "coordinator", "--name", "main")
	ca := filepath.Join(ours, "ca.crt")
	data := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		cert string
	}{
		{"node", []string{"node", "--member", "FR", "--data", filepath.Join(data, "fr.db"), "--listen", "127.0.0.1:0"}, filepath.Join(theirs, "node-FR")},
		{"coordinator", []string{"coordinator", "--data", filepath.Join(data, "coord.db"), "--listen", "127.0.0.1:0", "--member", "FR=127.0.0.1:7443"}, filepath.Join(theirs, "coordinator-main")},
	} {
		err := startRefused(t, append(tc.args, "--cacert", ca, "--cert", tc.cert+".crt", "--key", tc.cert+".key")...)
		want := "tls: certificate " + tc.cert + ".crt is not verified by the CA bundle " + ca
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, want)
		}
	}
}
