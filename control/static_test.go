// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/resolve"
	"github.com/terok-ai/terok-shield/state"
)

// loopbackDNS is a small authoritative server on 127.0.0.1 (an ephemeral port, UDP and TCP)
// whose A records the test changes.
type loopbackDNS struct {
	mu   sync.Mutex
	a    map[string][]string // lower-case FQDN → IPv4 addresses
	port uint16
}

func serveLoopbackDNS(t *testing.T, a map[string][]string) *loopbackDNS {
	t.Helper()
	s := &loopbackDNS{a: a}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		s.mu.Lock()
		addrs, ok := s.a[strings.ToLower(q.Name)]
		s.mu.Unlock()
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, ip := range addrs {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
			}
		}
		_ = w.WriteMsg(m)
	})
	for try := 0; ; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			l.Close()
			if try == 20 {
				t.Fatal(err)
			}
			continue
		}
		udp, tcp := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: l, Handler: h}
		go func() { _ = udp.ActivateAndServe() }()
		go func() { _ = tcp.ActivateAndServe() }()
		t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
		s.port = uint16(port)
		return s
	}
}

func (s *loopbackDNS) set(name string, addrs ...string) {
	s.mu.Lock()
	s.a[dns.Fqdn(name)] = addrs
	s.mu.Unlock()
}

func readHosts(t *testing.T, r *state.Root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Dir(), "containers", name, state.FileHosts))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStaticTier: on a static-tier container `resolve` keeps fresh addresses, `resolve --force`
// loads a changed record into the live sets, the bundle and /etc/hosts (the same file, which
// the container has bind-mounted), and allow/deny of a name resolve it or drop its addresses.
func TestStaticTier(t *testing.T) {
	requirePrivileged(t)
	ctx := context.Background()
	srv := serveLoopbackDNS(t, map[string][]string{"a.test.": {"203.0.113.10"}, "b.test.": {"203.0.113.20", "10.0.0.1"}})
	r := newRoot(t)
	fc := startContainer(t, 0)
	shield(t, r, "web", fc, func(d *state.Data) {
		d.Resolved.Domains = []string{"a.test"}
		d.Resolver = state.Resolver{Tier: state.TierStatic, Upstreams: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
		d.Static = &state.Static{Addrs: map[string][]netip.Addr{"a.test": {netip.MustParseAddr("203.0.113.10")}}, ResolvedAt: time.Now()}
	})
	c := New(r)
	c.StaticPort = srv.port
	if got := liveSets(t, fc)["allow_v4"]; !slices.Equal(got, []string{"203.0.113.10/32"}) {
		t.Fatalf("allow_v4 at start = %v", got)
	}
	hostsPath := filepath.Join(r.Dir(), "containers", "web", state.FileHosts)
	if err := os.WriteFile(hostsPath, resolve.Hosts(map[string][]netip.Addr{"a.test": {netip.MustParseAddr("203.0.113.10")}}), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(hostsPath)
	if err != nil {
		t.Fatal(err)
	}

	srv.set("a.test", "203.0.113.11")
	rep, err := c.Resolve(ctx, "web", false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Refreshed || rep.Addresses != 1 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "fresh") {
		t.Errorf("resolve of fresh addresses: %+v", rep)
	}
	if got := liveSets(t, fc)["allow_v4"]; !slices.Equal(got, []string{"203.0.113.10/32"}) {
		t.Errorf("allow_v4 after resolve without --force = %v", got)
	}

	rep, err = c.Resolve(ctx, "web", true)
	if err != nil {
		t.Fatal(err)
	}
	want := []resolve.Result{{Name: "a.test", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.11")}}}
	if d := cmp.Diff(want, rep.Names, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" || !rep.Refreshed || !rep.Synced || rep.Addresses != 1 {
		t.Errorf("resolve --force: %+v (-want +got names):\n%s", rep, d)
	}
	if got := liveSets(t, fc)["allow_v4"]; !slices.Equal(got, []string{"203.0.113.11/32"}) {
		t.Errorf("allow_v4 after resolve --force = %v", got)
	}
	if d := loadData(t, r, "web"); d.Static == nil || time.Since(d.Static.ResolvedAt) > time.Minute || len(d.Static.Addrs["a.test"]) != 1 {
		t.Errorf("bundle static after resolve --force: %+v", d.Static)
	}
	if h := readHosts(t, r, "web"); !strings.Contains(h, "203.0.113.11\ta.test\n") || strings.Contains(h, "203.0.113.10") {
		t.Errorf("hosts after resolve --force:\n%s", h)
	}
	after, err := os.Stat(hostsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("hosts file was replaced, not rewritten in place: the container's bind mount would keep the old one")
	}
	var out bytes.Buffer
	if err := WriteResolve(&out, rep); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff("Resolved 1 addresses for web\n  a.test → 203.0.113.11\n", out.String()); d != "" {
		t.Errorf("WriteResolve (-want +got):\n%s", d)
	}

	// allow of a name resolves it now; its private answer is dropped.
	changes, err := c.Allow(ctx, "web", []string{"b.test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || !slices.Equal(changes[0].IPs, []string{"203.0.113.20"}) || len(changes[0].Notes) != 1 || !strings.Contains(changes[0].Notes[0], "10.0.0.1") {
		t.Errorf("allow b.test: %+v", changes)
	}
	if got := liveSets(t, fc)["allow_v4"]; !slices.Equal(got, []string{"203.0.113.11/32", "203.0.113.20/32"}) {
		t.Errorf("allow_v4 after allow b.test = %v", got)
	}
	if h := readHosts(t, r, "web"); !strings.Contains(h, "203.0.113.20\tb.test\n") || strings.Contains(h, "10.0.0.1") {
		t.Errorf("hosts after allow b.test:\n%s", h)
	}
	// deny drops the name's addresses.
	changes, err = c.Deny(ctx, "web", []string{"b.test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || !slices.Equal(changes[0].IPs, []string{"203.0.113.20"}) {
		t.Errorf("deny b.test: %+v", changes)
	}
	if got := liveSets(t, fc)["allow_v4"]; !slices.Equal(got, []string{"203.0.113.11/32"}) {
		t.Errorf("allow_v4 after deny b.test = %v", got)
	}
	if h := readHosts(t, r, "web"); strings.Contains(h, "b.test") {
		t.Errorf("hosts after deny b.test:\n%s", h)
	}

	// Every step is audited.
	evs, _, err := audit.Tail(filepath.Join(r.Dir(), "containers", "web", state.FileAudit), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, string(ev.Action)+" "+ev.Target+" "+strings.Join(ev.IPs, ","))
	}
	wantEvs := []string{"notice a.test 203.0.113.11", "allow b.test 203.0.113.20", "deny b.test 203.0.113.20"}
	if d := cmp.Diff(wantEvs, got); d != "" {
		t.Errorf("audit (-want +got):\n%s", d)
	}
}

// TestResolveOtherTiers: resolve is not needed on the dnsmasq tier; a stopped static-tier
// container gets its addresses in the bundle for the next start.
func TestResolveOtherTiers(t *testing.T) {
	srv := serveLoopbackDNS(t, map[string][]string{"a.test.": {"203.0.113.10"}})
	r := newRoot(t)
	shield(t, r, "dm", nil, func(d *state.Data) { d.Resolver.Tier = state.TierDnsmasq })
	shield(t, r, "stopped", nil, func(d *state.Data) {
		d.Resolved.Domains = []string{"a.test"}
		d.Resolved.Wildcards = []string{"w.test"}
		d.Resolver = state.Resolver{Tier: state.TierStatic, Upstreams: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	})
	c := New(r)
	c.StaticPort = srv.port
	rep, err := c.Resolve(context.Background(), "dm", true)
	if err != nil || rep.Refreshed || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "not needed") {
		t.Errorf("resolve on the dnsmasq tier: %+v, %v", rep, err)
	}
	var out bytes.Buffer
	if err := WriteResolve(&out, rep); err != nil || !strings.HasPrefix(out.String(), "Nothing to resolve for dm: resolver tier dnsmasq\n") {
		t.Errorf("WriteResolve: %q, %v", out.String(), err)
	}
	rep, err = c.Resolve(context.Background(), "stopped", false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Refreshed || rep.Synced || rep.Addresses != 1 || len(rep.Names) != 2 || !rep.Names[0].Skipped {
		t.Errorf("resolve of a stopped container: %+v", rep)
	}
	if d := loadData(t, r, "stopped"); d.Static == nil || !slices.Equal(d.Static.Addrs["a.test"], []netip.Addr{netip.MustParseAddr("203.0.113.10")}) {
		t.Errorf("bundle static: %+v", d.Static)
	}
	if h := readHosts(t, r, "stopped"); !strings.Contains(h, "203.0.113.10\ta.test\n") {
		t.Errorf("hosts:\n%s", h)
	}
}
