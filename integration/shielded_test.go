// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testnet"
	"github.com/terok-ai/terok-shield/state"
)

// e2eProfile is the user profile of the network tests: two names learned through the
// resolver (allowed.test on the benchmarking ranges; private.test answers 10.99.0.1, which the
// resolver must not hand out) and one raw address.
var e2eProfile = []string{
	"# e2e test profile",
	"allowed.test",
	"private.test",
	testnet.EchoV4 + "  # web4, allowed as a raw address",
}

// forModes runs fn for rootful and rootless podman as parallel subtests, each with its own
// topology (so hit and query records belong to one mode) and its own shim state.
func forModes(t *testing.T, timeout time.Duration, fn func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman)) {
	t.Helper()
	for _, mode := range []Mode{Rootful, Rootless} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx, n, sp := inMode(t, mode, timeout)
			fn(t, ctx, n, sp)
		})
	}
}

// inMode sets up a test network and a shielded podman of mode with its image, and a context
// that ends after timeout (or with the test).
func inMode(t *testing.T, mode Mode, timeout time.Duration) (context.Context, *testnet.Net, *ShieldedPodman) {
	t.Helper()
	n := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	sp := NewShielded(t, harness, n, mode)
	if err := sp.EnsureImage(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx, n, sp
}

// outcome is the comparable part of a probe result: the ICMP sender is dropped (it is the
// container's own address, which podman assigns).
type outcome struct {
	Result, Errno, Server, Rcode, ICMP string
	Answers                            []string
}

// String prints the fields; the conversion drops the method set, so %+v does not recurse.
func (o outcome) String() string {
	type plain outcome
	return fmt.Sprintf("%+v", plain(o))
}

func outcomeOf(t *testing.T, res probe.Result) outcome {
	t.Helper()
	o := outcome{Result: res.Result, Errno: res.Errno, Rcode: res.Rcode, Answers: res.Answers}
	if res.ICMP != nil {
		o.ICMP = fmt.Sprintf("%d/%d", res.ICMP.Type, res.ICMP.Code)
		if res.ICMP.V6 {
			o.ICMP = "v6 " + o.ICMP
		}
	}
	if res.Reply != "" {
		echo, err := testnet.ParseEcho(res.Reply)
		if err != nil {
			t.Fatal(err)
		}
		o.Server = echo.Server
	}
	return o
}

// Expected outcomes.
var (
	// reject with icmpx admin-prohibited, generated in the container's own netns.
	prohibited4 = outcome{Result: probe.ICMPErr, Errno: "EHOSTUNREACH", ICMP: "3/13"}
	prohibited6 = outcome{Result: probe.ICMPErr, Errno: "EACCES", ICMP: "v6 1/1"}
	// UDP: the ICMP error is reported on the send.
	prohibited4UDP = outcome{Result: probe.ICMPErr, Errno: "EPERM", ICMP: "3/13"}
	// podman 4.3's default rootful bridge has no IPv6 at all.
	noV6Route = outcome{Result: probe.Error, Errno: "ENETUNREACH"}
)

func echoed(server string) outcome { return outcome{Result: probe.OK, Server: server} }

type netCase struct {
	name     string
	args     []string
	want     outcome
	rootless *outcome // when the rootless (slirp4netns) outcome differs
}

func (c netCase) wantFor(m Mode) outcome {
	if m == Rootless && c.rootless != nil {
		return *c.rootless
	}
	return c.want
}

// runCases probes each case in order with `podman exec` in the running container name.
func runCases(t *testing.T, ctx context.Context, sp *ShieldedPodman, name string, cases []netCase) {
	t.Helper()
	for _, c := range cases {
		res, r, err := sp.ProbeIn(ctx, name, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := outcomeOf(t, res)
		t.Logf("%s: %s in %s", c.name, res.Result, r.Elapsed.Round(time.Millisecond))
		if d := cmp.Diff(c.wantFor(sp.Mode), got); d != "" {
			t.Errorf("%s (probe %s): (-want +got):\n%s\nfull result: %+v", c.name, strings.Join(c.args, " "), d, res)
		}
	}
}

// TestShieldedNetwork runs one long-lived shielded container per mode and probes what the
// firewall and resolver let through, in order (names are learned before their addresses are
// dialled), then restarts the container through the shim and probes again.
func TestShieldedNetwork(t *testing.T) {
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("net")
		start := time.Now()
		if err := sp.StartShielded(ctx, name, "e2e"); err != nil {
			t.Fatal(err)
		}
		t.Logf("shielded container up in %s", time.Since(start).Round(time.Millisecond))
		n.ResetHits()

		v6Learned, v6Unlisted := noV6Route, noV6Route
		if sp.Mode == Rootless {
			v6Learned, v6Unlisted = echoed("bench6"), prohibited6
		}
		cases := []netCase{
			// Positive controls first: the allowed name resolves through the container's
			// resolver and its addresses become reachable.
			{name: "dns allowed A", args: []string{"dns", "allowed.test"},
				want: outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchV4}}},
			{name: "dns allowed AAAA over TCP", args: []string{"dns", "allowed.test", "--type", "AAAA", "--tcp"},
				want: outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"AAAA " + testnet.BenchV6}}},
			{name: "tcp learned v4", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: echoed("bench4")},
			{name: "udp learned v4", args: []string{"udp", testnet.BenchV4 + ":9999"}, want: echoed("bench4")},
			{name: "tcp learned v6", args: []string{"tcp", "[" + testnet.BenchV6 + "]:80"}, want: v6Learned},
			{name: "tcp raw address from profile", args: []string{"tcp", testnet.EchoV4 + ":80"}, want: echoed("web4")},
			{name: "udp raw address from profile", args: []string{"udp", testnet.EchoV4 + ":8080"}, want: echoed("web4")},
			// Unlisted names are refused by the resolver, without asking upstream.
			{name: "dns unlisted", args: []string{"dns", "unlisted.test"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}},
			{name: "dns unlisted over TCP", args: []string{"dns", "unlisted.test", "--tcp"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}},
			// Unlisted addresses are rejected with admin-prohibited, in both modes from the
			// container's own netns (so slirp4netns never sees the SYN).
			{name: "tcp unlisted learnable range", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: prohibited4},
			{name: "udp unlisted learnable range", args: []string{"udp", testnet.BenchUnlistedV4 + ":80"}, want: prohibited4UDP},
			{name: "tcp unlisted v6", args: []string{"tcp", "[" + testnet.BenchUnlistedV6 + "]:80"}, want: v6Unlisted},
			{name: "tcp unlisted documentation address", args: []string{"tcp", testnet.TLSV4 + ":443"}, want: prohibited4},
			{name: "tcp canary", args: []string{"tcp", testnet.CanaryV4 + ":80"}, want: prohibited4},
			// Rebinding: a listed name answering with a private address gets no usable answer,
			// and the private address itself stays rejected.
			{name: "dns rebinding name", args: []string{"dns", "private.test"}, want: outcome{Result: probe.OK, Rcode: "NOERROR"}},
			{name: "tcp rebinding target", args: []string{"tcp", testnet.PrivateV4 + ":80"}, want: prohibited4},
			// DNS only through the resolver: direct DNS, DoT and DoH to the real server fail.
			{name: "direct dns udp", args: []string{"dns", "direct.test", "--server", testnet.DNSV4}, want: prohibited4UDP},
			{name: "direct dns tcp", args: []string{"dns", "direct.test", "--server", testnet.DNSV4, "--tcp"}, want: prohibited4},
			{name: "dot", args: []string{"dot", "direct.test", "--server", testnet.DNSV4}, want: prohibited4},
			{name: "doh", args: []string{"doh", "direct.test", "--url", "https://" + testnet.DNSV4 + "/dns-query"}, want: prohibited4},
		}
		runCases(t, ctx, sp, name, cases)

		// What the wan side saw: the allowed traffic, and nothing of the refused.
		if q := n.DNS.QueriesFor("allowed.test"); len(q) == 0 {
			t.Errorf("test DNS saw no query for allowed.test (positive control)")
		}
		for _, name := range []string{"unlisted.test", "direct.test", "private.test."} {
			if name == "private.test." {
				// Asked upstream (listed name), answered, then dropped by the resolver.
				if q := n.DNS.QueriesFor(name); len(q) == 0 {
					t.Errorf("test DNS saw no query for %s: the rebinding case tested nothing", name)
				}
				continue
			}
			if q := n.DNS.QueriesFor(name); len(q) != 0 {
				t.Errorf("test DNS saw queries for %s: %+v", name, q)
			}
		}
		if len(n.Hits("bench4")) == 0 || len(n.Hits("web4")) == 0 {
			t.Errorf("allowed servers saw no traffic (positive control): bench4 %d, web4 %d", len(n.Hits("bench4")), len(n.Hits("web4")))
		}
		for _, server := range []string{"bench4-unlisted", "bench6-unlisted", "tls4", "doh"} {
			if h := n.Hits(server); len(h) != 0 {
				t.Errorf("server %s was reached: %+v", server, h)
			}
		}
		if h := n.CanaryHits(); len(h) != 0 {
			t.Errorf("canary hit: %+v", h)
		}
		for _, h := range n.Hits("dns") {
			if h.Proto != "dns-udp" && h.Proto != "dns-tcp" {
				t.Errorf("DNS server reached over %s: %+v", h.Proto, h)
			}
		}

		// Restart through the shim: the new start gets the firewall again (the learned set
		// starts empty, so the name is resolved first).
		r, err := sp.Run(ctx, "restart", "--time", "5", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		t.Logf("restarted in %s", r.Elapsed.Round(time.Millisecond))
		runCases(t, ctx, sp, name, []netCase{
			{name: "after restart: dns allowed", args: []string{"dns", "allowed.test"},
				want: outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchV4}}},
			{name: "after restart: tcp learned", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: echoed("bench4")},
			{name: "after restart: dns unlisted", args: []string{"dns", "unlisted.test"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}},
			{name: "after restart: tcp unlisted", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: prohibited4},
			{name: "after restart: direct dns", args: []string{"dns", "direct.test", "--server", testnet.DNSV4}, want: prohibited4UDP},
		})
		if h := n.Hits("bench4-unlisted"); len(h) != 0 {
			t.Errorf("unlisted server reached after restart: %+v", h)
		}

		// Removing the container stops its resolver (poststop hook).
		pid := resolverPID(t, sp, name)
		r, err = sp.Run(ctx, "rm", "-f", "--time", "5", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "dnsmasq" {
			t.Errorf("resolver (pid %d) still running after podman rm", pid)
		}

		// Positive control for everything refused above: the same podman through the shim,
		// unshielded, reaches the unlisted name and address.
		n.ResetHits()
		res, _, err := sp.Probe(ctx, DefaultRunArgs(), "dns", "unlisted.test")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchUnlistedV4}}, outcomeOf(t, res)); d != "" {
			t.Errorf("unshielded dns unlisted (-want +got):\n%s", d)
		}
		res, _, err = sp.Probe(ctx, DefaultRunArgs(), "tcp", testnet.BenchUnlistedV4+":80")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(echoed("bench4-unlisted"), outcomeOf(t, res)); d != "" {
			t.Errorf("unshielded tcp unlisted (-want +got):\n%s", d)
		}
	})
}

// resolverPID returns the pid of container name's running resolver (from its bundle).
func resolverPID(t *testing.T, sp *ShieldedPodman, name string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sp.Bundle(name), state.FileDnsmasqPID))
	if err != nil {
		t.Fatalf("resolver pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("resolver pid: %v", err)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "dnsmasq" {
		t.Fatalf("resolver pid %d is not a running dnsmasq (%q, %v)", pid, comm, err)
	}
	return pid
}

// TestShieldedCNAME: a listed name that is a CNAME of an unlisted one resolves through the
// chain and the final address is learned (the alias is what the profile trusts), while the
// target name asked directly is refused.
func TestShieldedCNAME(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("alias", "allowed-alias.test"); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("alias")
		if err := sp.StartShielded(ctx, name, "alias"); err != nil {
			t.Fatal(err)
		}
		runCases(t, ctx, sp, name, []netCase{
			{name: "address not learned yet", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: prohibited4},
			{name: "dns target name", args: []string{"dns", "allowed.test"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}},
			{name: "dns listed alias", args: []string{"dns", "allowed-alias.test"},
				want: outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchV4, "CNAME allowed.test."}}},
			{name: "tcp learned through the alias", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: echoed("bench4")},
		})
	})
}

// TestShieldedEnvTriggers: the environment shields a run without the flag, with the default or
// the named profiles, and --shield=false overrides it.
func TestShieldedEnvTriggers(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
			t.Fatal(err)
		}
		refused := outcome{Result: probe.OK, Rcode: "REFUSED"}
		allowed := outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchV4}}
		cases := []struct {
			name    string
			env     []string
			runArgs []string
			probe   []string
			want    outcome
		}{
			{"profiles env: listed name", []string{"TEROK_SHIELD_PROFILES=e2e"}, []string{"--rm"}, []string{"dns", "allowed.test"}, allowed},
			{"profiles env: unlisted name", []string{"TEROK_SHIELD_PROFILES=e2e"}, []string{"--rm"}, []string{"dns", "unlisted.test"}, refused},
			{"profiles env: unlisted address", []string{"TEROK_SHIELD_PROFILES=e2e"}, []string{"--rm"}, []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, prohibited4},
			// The default profile (dev-standard) does not list allowed.test or web4.
			{"shield env: default profile", []string{"TEROK_SHIELD=1"}, []string{"--rm"}, []string{"dns", "allowed.test"}, refused},
			{"shield env: raw address not in default", []string{"TEROK_SHIELD=1"}, []string{"--rm"}, []string{"tcp", testnet.EchoV4 + ":80"}, prohibited4},
			// A user --init keeps its meaning (the gate stays PID 1 as a reaper) and the
			// firewall holds the same.
			{"--init: raw address from profile", nil, []string{"--rm", "--init", "--shield=e2e"}, []string{"tcp", testnet.EchoV4 + ":80"}, echoed("web4")},
			{"--init: unlisted address", nil, []string{"--rm", "--init", "--shield=e2e"}, []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, prohibited4},
			{"--shield=false beats the env", []string{"TEROK_SHIELD=1", "TEROK_SHIELD_PROFILES=e2e"}, []string{"--rm", "--shield=false"},
				[]string{"tcp", testnet.BenchUnlistedV4 + ":80"}, echoed("bench4-unlisted")},
		}
		for _, c := range cases {
			p := sp.Podman
			p.Env = append(slices.Clone(p.Env), c.env...)
			res, _, err := p.Probe(ctx, c.runArgs, c.probe...)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if d := cmp.Diff(c.want, outcomeOf(t, res)); d != "" {
				t.Errorf("%s (-want +got):\n%s", c.name, d)
			}
		}
	})
}

// TestShieldedPrivileges checks that a shielded workload has none of the capabilities that
// could change the firewall, and that raw sockets and nftables are refused. The positive
// control is an unshielded container given NET_RAW and NET_ADMIN, where both work.
func TestShieldedPrivileges(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
			t.Fatal(err)
		}
		forbidden := []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"}
		type privs struct {
			Forbidden    []string // forbidden capabilities in the effective or bounding set
			Chown        bool     // CAP_CHOWN in the bounding set (a capability podman grants by default)
			Rawsock, Nft string
		}
		measure := func(runArgs []string) privs {
			t.Helper()
			var p privs
			res, _, err := sp.Probe(ctx, runArgs, "caps")
			if err != nil || res.Caps == nil {
				t.Fatalf("caps: %v %+v", err, res)
			}
			for _, c := range forbidden {
				if slices.Contains(res.Caps.EffNames, c) || slices.Contains(res.Caps.BndNames, c) {
					p.Forbidden = append(p.Forbidden, c)
				}
			}
			p.Chown = slices.Contains(res.Caps.BndNames, "CAP_CHOWN")
			if res, _, err = sp.Probe(ctx, runArgs, "rawsock"); err != nil {
				t.Fatal(err)
			}
			p.Rawsock = res.Result
			if res, _, err = sp.Probe(ctx, runArgs, "nft"); err != nil {
				t.Fatal(err)
			}
			p.Nft = res.Result
			return p
		}
		shielded := measure([]string{"--rm", "--shield=e2e"})
		if d := cmp.Diff(privs{Chown: true, Rawsock: probe.Refused, Nft: probe.Refused}, shielded); d != "" {
			t.Errorf("shielded (-want +got):\n%s", d)
		}
		// The control: unshielded, with the capabilities added, the probe sees them and both
		// attempts succeed.
		control := measure(append(DefaultRunArgs(), "--cap-add", "NET_RAW,NET_ADMIN,SYS_ADMIN"))
		if d := cmp.Diff(privs{Forbidden: forbidden, Chown: true, Rawsock: probe.OK, Nft: probe.OK}, control); d != "" {
			t.Errorf("unshielded control with NET_RAW,NET_ADMIN,SYS_ADMIN (-want +got):\n%s", d)
		}
	})
}
