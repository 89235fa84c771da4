// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// startControlled starts a shielded container with the e2e profile for the control tests and
// returns its name and a normaliser for its command output.
func startControlled(t *testing.T, ctx context.Context, sp *ShieldedPodman, prefix string) (string, *normaliser) {
	t.Helper()
	if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
		t.Fatal(err)
	}
	name := sp.Name(prefix)
	if err := sp.StartShielded(ctx, name, "e2e"); err != nil {
		t.Fatal(err)
	}
	r, err := sp.Real.Run(ctx, "inspect", "--format", "{{.Id}}", name)
	if err := mustExit(r, err, 0); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(r.Stdout)
	version := strings.TrimPrefix(strings.TrimSpace(shieldRun(t, ctx, sp, 0, "version").Stdout), "terok-shield ")
	norm := &normaliser{}
	norm.add(sp.StateDir, "<STATE>")
	norm.add(sp.ConfigDir, "<CONFIG>")
	norm.add(sp.H.Dir, "<WORK>")
	norm.add(id, "<ID>")
	if len(id) > 12 {
		norm.add(id[:12], "<ID12>")
	}
	norm.add(name, "<NAME>")
	norm.add(version, "<VERSION>")
	return name, norm
}

var dnsAllowed = outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchV4}}

// TestControlCommands runs every control command through the shim on a running shielded
// container and compares its output (human and --output json) with the goldens; allow and
// deny of an address, a prefix and a name are checked with real traffic.
func TestControlCommands(t *testing.T) {
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		name, norm := startControlled(t, ctx, sp, "ctl")
		prepared := sp.Name("prepared")
		norm.add(prepared, "<PREPARED>")
		golden := func(golden string, exit int, args ...string) {
			t.Helper()
			checkGolden(t, sp.Mode, norm, golden, shieldRun(t, ctx, sp, exit, args...))
		}

		golden("status-global", 0, "status")
		golden("status-global-json", 0, "status", "--output", "json")
		golden("status", 0, "status", name)
		golden("status-json", 0, "status", name, "--output", "json")
		golden("profiles", 0, "profiles")
		golden("profiles-json", 0, "profiles", "--output", "json")

		// Before any change: the unlisted name, address and prefix are refused (the positive
		// control of the allows below) and a listed address is reachable.
		n.ResetHits()
		runCases(t, ctx, sp, name, []netCase{
			{name: "before allow: dns unlisted name", args: []string{"dns", "unlisted.test"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}},
			{name: "before allow: tcp unlisted address", args: []string{"tcp", testnet.EchoV4c + ":80"}, want: prohibited4},
			{name: "before allow: tcp in unlisted prefix", args: []string{"tcp", testnet.EchoV4b + ":80"}, want: prohibited4},
			{name: "before allow: tcp listed address", args: []string{"tcp", testnet.EchoV4 + ":80"}, want: echoed("web4")},
		})
		checkHits(t, n, "before allow", "web4")

		golden("allow-ip-json", 0, "allow", name, testnet.EchoV4c, "--output", "json")
		golden("allow-cidr-json", 0, "allow", name, "198.51.100.0/24", "--output", "json")
		golden("allow-name", 0, "allow", name, "unlisted.test")
		golden("allow-name-again-json", 0, "allow", name, "unlisted.test", "--output", "json")
		runCases(t, ctx, sp, name, []netCase{
			{name: "allowed: tcp address", args: []string{"tcp", testnet.EchoV4c + ":80"}, want: echoed("web4c")},
			{name: "allowed: tcp in prefix", args: []string{"tcp", testnet.EchoV4b + ":80"}, want: echoed("web4b")},
			{name: "allowed: dns name", args: []string{"dns", "unlisted.test"},
				want: outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchUnlistedV4}}},
			{name: "allowed: tcp to the name's address", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: echoed("bench4-unlisted")},
			{name: "allowed: tcp still unlisted", args: []string{"tcp", testnet.CanaryV4 + ":80"}, want: prohibited4},
		})
		checkHits(t, n, "after allow", "bench4-unlisted", "web4b", "web4c")

		// The name first: denying it removes the addresses the resolver learned for it.
		golden("deny-name-json", 0, "deny", name, "unlisted.test", "--output", "json")
		golden("deny-name-again", 0, "deny", name, "unlisted.test")
		runCases(t, ctx, sp, name, []netCase{
			{name: "denied: dns name", args: []string{"dns", "unlisted.test"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}},
			{name: "denied: tcp to the address learned for the name", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: prohibited4},
			{name: "deny name: allowed address still reachable", args: []string{"tcp", testnet.EchoV4c + ":80"}, want: echoed("web4c")},
		})
		checkHits(t, n, "after deny of the name", "web4c")
		golden("deny-ip-json", 0, "deny", name, testnet.EchoV4c, "--output", "json")
		golden("deny-cidr-json", 0, "deny", name, "198.51.100.0/24", "--output", "json")
		runCases(t, ctx, sp, name, []netCase{
			{name: "denied: tcp address", args: []string{"tcp", testnet.EchoV4c + ":80"}, want: prohibited4},
			{name: "denied: tcp in prefix", args: []string{"tcp", testnet.EchoV4b + ":80"}, want: prohibited4},
			{name: "denied: listed address still reachable", args: []string{"tcp", testnet.EchoV4 + ":80"}, want: echoed("web4")},
		})
		checkHits(t, n, "after deny", "web4")

		golden("rules", 0, "rules", name)
		golden("rules-json", 0, "rules", name, "--output", "json")
		golden("logs-container-json", 0, "logs", "--container", name, "-n", "4", "--output", "json")
		golden("logs", 0, "logs", "-n", "3")
		golden("prepare-json", 0, "prepare", prepared, "--json")
		golden("prepare-profiles", 0, "prepare", prepared, "--profiles", "e2e")
		golden("doctor", 1, "doctor")
		golden("doctor-json", 1, "doctor", "--output", "json")
		golden("preview", 0, "preview")
		golden("preview-down-all", 0, "preview", "--down", "--all")
	})
}

// TestControlModeCycle switches a running shielded container up → down → down --all →
// block → up through the shim and checks at each step, from inside the container, what is
// reachable, with the servers' records saying what got through. An address denied before the
// cycle stays refused in every mode.
func TestControlModeCycle(t *testing.T) {
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		name, norm := startControlled(t, ctx, sp, "cycle")
		shieldRun(t, ctx, sp, 0, "deny", name, testnet.EchoV4c)
		// A blocked connection times out (block drops): short probes.
		short := []string{"--timeout", "500ms"}
		blocked := outcome{Result: probe.Timeout, Errno: "ETIMEDOUT"}
		tcp := func(addr string) []string { return []string{"tcp", addr + ":80"} }
		steps := []struct {
			args   []string // the mode command after `podman shield` (nil: the initial up)
			state  string   // first line of status
			cases  []netCase
			reach  []string // the servers that saw traffic
			golden string
		}{
			{state: "up", cases: []netCase{
				{name: "dns listed name", args: []string{"dns", "allowed.test"}, want: dnsAllowed},
				{name: "tcp learned", args: tcp(testnet.BenchV4), want: echoed("bench4")},
				{name: "tcp listed address", args: tcp(testnet.EchoV4), want: echoed("web4")},
				{name: "tcp unlisted", args: tcp(testnet.BenchUnlistedV4), want: prohibited4},
				{name: "tcp private", args: tcp(testnet.PrivateV4), want: prohibited4},
				{name: "tcp denied", args: tcp(testnet.EchoV4c), want: prohibited4},
			}, reach: []string{"bench4", "web4"}},
			{args: []string{"down"}, state: "down", golden: "mode-down-json", cases: []netCase{
				{name: "tcp listed address", args: tcp(testnet.EchoV4), want: echoed("web4")},
				{name: "tcp unlisted", args: tcp(testnet.BenchUnlistedV4), want: echoed("bench4-unlisted")},
				{name: "tcp private", args: tcp(testnet.PrivateV4), want: prohibited4},
				{name: "tcp denied", args: tcp(testnet.EchoV4c), want: prohibited4},
			}, reach: []string{"bench4-unlisted", "web4"}},
			// Back up from down: the address learned before is still allowed without a new
			// lookup (the table switch carried the learned set over, and the resolver, whose
			// cache still holds the name, kept running).
			{args: []string{"up"}, state: "up", cases: []netCase{
				{name: "tcp learned, not looked up again", args: tcp(testnet.BenchV4), want: echoed("bench4")},
				{name: "tcp unlisted", args: tcp(testnet.BenchUnlistedV4), want: prohibited4},
			}, reach: []string{"bench4"}},
			{args: []string{"down"}, state: "down"},
			{args: []string{"down", "--all"}, state: "down_all", golden: "mode-down-all-json", cases: []netCase{
				{name: "tcp unlisted", args: tcp(testnet.BenchUnlistedV4), want: echoed("bench4-unlisted")},
				{name: "tcp private", args: tcp(testnet.PrivateV4), want: echoed("canary-private")},
				{name: "tcp denied", args: tcp(testnet.EchoV4c), want: prohibited4},
			}, reach: []string{"bench4-unlisted", "canary-private"}},
			{args: []string{"block"}, state: "block", golden: "mode-block-json", cases: []netCase{
				{name: "tcp listed address", args: append(tcp(testnet.EchoV4), short...), want: blocked},
				{name: "tcp learned", args: append(tcp(testnet.BenchV4), short...), want: blocked},
				{name: "tcp unlisted", args: append(tcp(testnet.BenchUnlistedV4), short...), want: blocked},
			}},
			{args: []string{"up"}, state: "up", golden: "mode-up-json", cases: []netCase{
				{name: "dns listed name", args: []string{"dns", "allowed.test"}, want: dnsAllowed},
				{name: "tcp learned", args: tcp(testnet.BenchV4), want: echoed("bench4")},
				{name: "tcp unlisted", args: tcp(testnet.BenchUnlistedV4), want: prohibited4},
				{name: "tcp private", args: tcp(testnet.PrivateV4), want: prohibited4},
				{name: "tcp denied", args: tcp(testnet.EchoV4c), want: prohibited4},
			}, reach: []string{"bench4"}},
		}
		for _, s := range steps {
			step := "up"
			if s.args != nil {
				step = strings.Join(s.args, " ")
				r := shieldRun(t, ctx, sp, 0, append(append([]string{}, s.args...), name, "--output", "json")...)
				if s.golden != "" {
					checkGolden(t, sp.Mode, norm, s.golden, r)
				}
			}
			n.ResetHits()
			cases := make([]netCase, len(s.cases))
			for i, c := range s.cases {
				c.name = step + ": " + c.name
				cases[i] = c
			}
			runCases(t, ctx, sp, name, cases)
			checkHits(t, n, step, s.reach...)
			if got := strings.SplitN(shieldRun(t, ctx, sp, 0, "status", name).Stdout, "\n", 2)[0]; got != s.state {
				t.Errorf("%s: status says %q, want %q", step, got, s.state)
			}
		}
	})
}

// holdResult is one `probe hold` run in the container.
type holdResult struct {
	res probe.Result
	err error
}

// holdIn starts `probe hold addr` in container name for dur and returns where its result
// will arrive.
func holdIn(ctx context.Context, sp *ShieldedPodman, name, addr string, dur time.Duration) <-chan holdResult {
	ch := make(chan holdResult, 1)
	go func() {
		res, _, err := sp.ProbeIn(ctx, name, "hold", addr, "--for", dur.String(), "--timeout", "1s")
		ch <- holdResult{res, err}
	}()
	return ch
}

// waitHit waits until server has recorded a TCP connection.
func waitHit(t *testing.T, ctx context.Context, n *testnet.Net, server string) {
	t.Helper()
	for {
		for _, h := range n.Hits(server) {
			if h.Proto == "tcp" {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no connection reached %s", server)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// liveSet returns the elements of the named set from `podman shield rules --output json`.
func liveSet(t *testing.T, ctx context.Context, sp *ShieldedPodman, name, set string) []string {
	t.Helper()
	var st struct {
		Sets []struct {
			Name     string
			Elements []string
		}
	}
	r := shieldRun(t, ctx, sp, 0, "rules", name, "--output", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("rules --output json: %v\n%s", err, r.Stdout)
	}
	for _, s := range st.Sets {
		if s.Name == set {
			return s.Elements
		}
	}
	t.Fatalf("rules --output json has no set %s:\n%s", set, r.Stdout)
	return nil
}

// TestControlDeny denies the address of a live connection and checks that the connection
// breaks at once while another one stays up; that the deny wins over the resolver learning
// the address again; and that allow and deny changes survive a restart through the shim.
func TestControlDeny(t *testing.T) {
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		// A 1 s TTL, so the resolver forwards the query again after the deny (dnsmasq adds
		// to the learned sets only when it forwards).
		if err := n.DNS.Set("allowed.test", "allowed.test. 1 IN A "+testnet.BenchV4, "allowed.test. 1 IN AAAA "+testnet.BenchV6); err != nil {
			t.Fatal(err)
		}
		name, _ := startControlled(t, ctx, sp, "deny")
		runCases(t, ctx, sp, name, []netCase{{name: "dns listed name", args: []string{"dns", "allowed.test"}, want: dnsAllowed}})
		resolved := time.Now()
		n.ResetHits()

		// Two open connections, exchanging a line every 200 ms: one to the address about to
		// be denied, one (the control) to a listed address.
		const holdFor = 3 * time.Second
		denied := holdIn(ctx, sp, name, testnet.BenchV4+":80", holdFor)
		control := holdIn(ctx, sp, name, testnet.EchoV4+":80", holdFor)
		waitHit(t, ctx, n, "bench4")
		waitHit(t, ctx, n, "web4")
		time.Sleep(600 * time.Millisecond)
		denyStart := time.Now().UnixMilli()
		shieldRun(t, ctx, sp, 0, "deny", name, testnet.BenchV4)
		denyEnd := time.Now().UnixMilli()
		d, c := <-denied, <-control
		if d.err != nil || c.err != nil {
			t.Fatalf("hold: %v / %v", d.err, c.err)
		}
		t.Logf("deny took %d ms; denied connection %+v %+v; control %+v", denyEnd-denyStart, d.res, d.res.Hold, c.res.Hold)
		if h := d.res.Hold; h == nil || h.Exchanges < 2 || h.BrokeMS < denyStart || h.BrokeMS > denyEnd+1000 {
			t.Errorf("denied connection: want at least 2 exchanges and a break between the deny's start (%d) and 1 s after its end (%d); got %+v", denyStart, denyEnd, h)
		}
		// TCP reports the admin-prohibited ICMP error as the socket error (no error queue).
		cut := outcome{Result: probe.Error, Errno: "EHOSTUNREACH"}
		if diff := cmp.Diff(cut, outcomeOf(t, d.res)); diff != "" {
			t.Errorf("how the denied connection broke (-want +got):\n%s", diff)
		}
		if h := c.res.Hold; c.res.Result != probe.OK || h == nil || h.BrokeMS != 0 || h.LastOKMS < denyEnd {
			t.Errorf("control connection to a listed address: want it held past the deny (%d); got %s %+v", denyEnd, c.res.Result, h)
		}

		// New connections are refused; the name still resolves and the resolver learns its
		// address again (the positive control), which does not reopen it.
		time.Sleep(time.Until(resolved.Add(1100 * time.Millisecond))) // past the TTL
		n.ResetHits()
		runCases(t, ctx, sp, name, []netCase{
			{name: "denied: new connection", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: prohibited4},
			{name: "denied: the name still resolves", args: []string{"dns", "allowed.test"}, want: dnsAllowed},
		})
		if len(n.DNS.QueriesFor("allowed.test")) == 0 {
			t.Errorf("the resolver answered allowed.test from its cache: nothing was learned again")
		}
		if learned := liveSet(t, ctx, sp, name, "learned_v4"); !slices.ContainsFunc(learned, func(e string) bool { return strings.HasPrefix(e, testnet.BenchV4+" ") }) {
			t.Errorf("learned_v4 after the lookup: %q, want %s learned again", learned, testnet.BenchV4)
		}
		runCases(t, ctx, sp, name, []netCase{
			{name: "denied: after learning again", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: prohibited4},
		})
		checkHits(t, n, "after the deny")

		// Allow an unlisted address and deny a listed one, then restart through the shim.
		shieldRun(t, ctx, sp, 0, "allow", name, testnet.BenchUnlistedV4)
		shieldRun(t, ctx, sp, 0, "deny", name, testnet.EchoV4)
		changed := []netCase{
			{name: "allowed unlisted address", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: echoed("bench4-unlisted")},
			{name: "denied listed address", args: []string{"tcp", testnet.EchoV4 + ":80"}, want: prohibited4},
			{name: "still unlisted", args: []string{"tcp", testnet.EchoV4b + ":80"}, want: prohibited4},
		}
		runCases(t, ctx, sp, name, changed)
		checkHits(t, n, "before the restart", "bench4-unlisted")
		r, err := sp.Run(ctx, "restart", "--time", "5", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if got := shieldRun(t, ctx, sp, 0, "status", name).Stdout; !strings.HasPrefix(got, "up\n") {
			t.Errorf("status after the restart: %q, want up", got)
		}
		for i := range changed {
			changed[i].name = "after the restart: " + changed[i].name
		}
		runCases(t, ctx, sp, name, append(changed,
			netCase{name: "after the restart: dns listed name", args: []string{"dns", "allowed.test"}, want: dnsAllowed},
			netCase{name: "after the restart: denied learned address", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: prohibited4},
		))
		checkHits(t, n, "after the restart", "bench4-unlisted")
	})
}

// TestControlNestedUserNamespace: a rootless container run with --userns keep-id lives in a
// user namespace nested in podman's. Live allow and deny reach its table all the same: the
// socket helper joins the nested namespace, which the same user owns through podman's. The
// commands run without nsenter on PATH, so the nsenter fallback cannot stand in for it.
func TestControlNestedUserNamespace(t *testing.T) {
	ctx, _, sp := inMode(t, Rootless, 2*time.Minute)
	if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
		t.Fatal(err)
	}
	name := sp.Name("keepid")
	if err := sp.StartShielded(ctx, name, "e2e", "--userns", "keep-id"); err != nil {
		t.Fatal(err)
	}
	target := testnet.EchoV4c + ":80"
	runCases(t, ctx, sp, name, []netCase{{name: "unlisted before allow", args: []string{"tcp", target}, want: prohibited4}})
	// The harness's own wrapper needs setpriv; nothing else is on this PATH.
	tools := filepath.Join(filepath.Dir(sp.StateDir), "tools-without-nsenter")
	if err := os.Mkdir(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/setpriv", filepath.Join(tools, "setpriv")); err != nil {
		t.Fatal(err)
	}
	noNsenter := sp.Podman
	noNsenter.Env = append(slices.Clone(sp.Env), "PATH="+filepath.Dir(sp.Bin)+":"+tools)
	for _, cmd := range [][]string{{"allow", name, testnet.EchoV4c}, {"deny", name, testnet.EchoV4c}} {
		if cmd[0] == "deny" {
			runCases(t, ctx, sp, name, []netCase{{name: "after allow", args: []string{"tcp", target}, want: echoed("web4c")}})
		}
		r, err := noNsenter.Run(ctx, append([]string{"shield"}, cmd...)...)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatalf("without nsenter on PATH: %v", err)
		}
	}
	runCases(t, ctx, sp, name, []netCase{{name: "after deny", args: []string{"tcp", target}, want: prohibited4}})
}
