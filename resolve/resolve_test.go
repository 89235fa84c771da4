// SPDX-License-Identifier: Apache-2.0

package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"
)

var addrCmp = cmp.Options{cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })}

// testZone is what the loopback test server answers; names not in it get NXDOMAIN.
func testZone() map[string][]string {
	return map[string][]string{
		"a.test.":        {"a.test. 60 IN A 198.51.100.1", "a.test. 60 IN AAAA 2001:db8::1"},
		"v4.test.":       {"v4.test. 60 IN A 203.0.113.4"},
		"mixed.test.":    {"mixed.test. 60 IN A 10.0.0.1", "mixed.test. 60 IN A 198.51.100.2", "mixed.test. 60 IN AAAA ::ffff:127.0.0.1"},
		"alias.test.":    {"alias.test. 60 IN CNAME alias2.test.", "alias2.test. 60 IN CNAME v4.test.", "v4.test. 60 IN A 203.0.113.4"},
		"leaving.test.":  {"leaving.test. 60 IN CNAME a.test."}, // the server leaves the target out
		"loop.test.":     {"loop.test. 60 IN CNAME loop.test."},
		"empty.test.":    {"empty.test. 60 IN TXT \"no addresses\""},
		"upper.test.":    {"UPPER.test. 60 IN A 198.51.100.9"},
		"truncated.test": nil, // see handler: TC over UDP, answer over TCP
	}
}

// serveDNS starts a UDP+TCP server on 127.0.0.1 (an ephemeral port, loopback only) and
// returns its address and the protocols of the queries it saw.
func serveDNS(t *testing.T) (netip.AddrPort, func() []string) {
	t.Helper()
	zone := map[string][]dns.RR{}
	for name, lines := range testZone() {
		for _, l := range lines {
			rr, err := dns.NewRR(l)
			if err != nil {
				t.Fatal(err)
			}
			zone[name] = append(zone[name], rr)
		}
	}
	var mu sync.Mutex
	var protos []string
	handler := func(proto string) dns.HandlerFunc {
		return func(w dns.ResponseWriter, req *dns.Msg) {
			q := req.Question[0]
			mu.Lock()
			protos = append(protos, proto+" "+q.Name)
			mu.Unlock()
			m := new(dns.Msg)
			m.SetReply(req)
			name := strings.ToLower(q.Name)
			switch {
			case name == "servfail.test.":
				m.Rcode = dns.RcodeServerFailure
			case name == "truncated.test." && proto == "udp":
				m.Truncated = true
			case name == "truncated.test.":
				rr, _ := dns.NewRR("truncated.test. 60 IN A 198.51.100.77")
				if q.Qtype == dns.TypeA {
					m.Answer = append(m.Answer, rr)
				}
			default:
				rrs, ok := zone[name]
				if !ok {
					m.Rcode = dns.RcodeNameError
				}
				for _, rr := range rrs {
					if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
						m.Answer = append(m.Answer, rr)
					}
				}
			}
			_ = w.WriteMsg(m)
		}
	}
	// One port for UDP and TCP: take a free TCP port, then the same UDP port (retried when
	// another process holds it).
	var pc net.PacketConn
	var l net.Listener
	var port int
	for try := 0; pc == nil; try++ {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		if pc, err = net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			l.Close()
			if try == 20 {
				t.Fatal(err)
			}
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: handler("udp")}
	tcp := &dns.Server{Listener: l, Handler: handler("tcp")}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), protos...)
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestResolve(t *testing.T) {
	srv, _ := serveDNS(t)
	r := &Resolver{Servers: []netip.AddrPort{srv}, Timeout: time.Second}
	tests := []struct {
		name string
		want Result
	}{
		{"a.test", Result{Name: "a.test", Addrs: addrs("198.51.100.1", "2001:db8::1")}},
		{"v4.test", Result{Name: "v4.test", Addrs: addrs("203.0.113.4")}},
		{"mixed.test", Result{Name: "mixed.test", Addrs: addrs("198.51.100.2"), Dropped: addrs("10.0.0.1", "127.0.0.1")}},
		{"alias.test", Result{Name: "alias.test", Addrs: addrs("203.0.113.4")}},
		{"leaving.test", Result{Name: "leaving.test", Addrs: addrs("198.51.100.1", "2001:db8::1")}},
		{"upper.test", Result{Name: "upper.test", Addrs: addrs("198.51.100.9")}},
		{"truncated.test", Result{Name: "truncated.test", Addrs: addrs("198.51.100.77")}},
		{"nx.test", Result{Name: "nx.test"}},
		{"empty.test", Result{Name: "empty.test"}},
		{"*.a.test", Result{Name: "*.a.test", Skipped: true}},
		{"loop.test", Result{Name: "loop.test", Err: "A: CNAME chain longer than 8 links; AAAA: CNAME chain longer than 8 links"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.Resolve(context.Background(), []string{tt.name})
			if d := cmp.Diff([]Result{tt.want}, got, addrCmp); d != "" {
				t.Errorf("Resolve(%q) (-want +got):\n%s", tt.name, d)
			}
		})
	}
}

func TestResolveServfailAndDeadServer(t *testing.T) {
	srv, _ := serveDNS(t)
	// A UDP port nobody listens on (loopback): the kernel refuses at once.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()

	r := &Resolver{Servers: []netip.AddrPort{dead, srv}, Timeout: time.Second}
	got := r.Resolve(context.Background(), []string{"a.test"})
	if d := cmp.Diff([]Result{{Name: "a.test", Addrs: addrs("198.51.100.1", "2001:db8::1")}}, got, addrCmp); d != "" {
		t.Errorf("dead first server (-want +got):\n%s", d)
	}
	got = r.Resolve(context.Background(), []string{"servfail.test"})
	if len(got) != 1 || !got[0].Failed() || !strings.Contains(got[0].Err, "SERVFAIL") || len(got[0].Addrs) != 0 {
		t.Errorf("servfail: got %+v", got)
	}
	none := (&Resolver{}).Resolve(context.Background(), []string{"a.test"})
	if len(none) != 1 || !strings.Contains(none[0].Err, "no upstream DNS server") {
		t.Errorf("no servers: got %+v", none)
	}
}

func TestResolveTCPFallback(t *testing.T) {
	srv, seen := serveDNS(t)
	r := &Resolver{Servers: []netip.AddrPort{srv}, Timeout: time.Second}
	r.Resolve(context.Background(), []string{"truncated.test"})
	got := map[string]bool{}
	for _, s := range seen() {
		got[s] = true
	}
	want := map[string]bool{"udp truncated.test.": true, "tcp truncated.test.": true}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("protocols (-want +got):\n%s", d)
	}
}

func TestResolveOrderAndDuplicates(t *testing.T) {
	srv, _ := serveDNS(t)
	r := &Resolver{Servers: []netip.AddrPort{srv}, Timeout: time.Second, Parallel: 2}
	names := []string{"v4.test", "a.test", "nx.test", "v4.test", "alias.test", "*.x.test"}
	var got []string
	for _, res := range r.Resolve(context.Background(), names) {
		got = append(got, res.Name)
	}
	want := []string{"*.x.test", "a.test", "alias.test", "nx.test", "v4.test"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
}

func TestHostsAndAddrs(t *testing.T) {
	rs := []Result{
		{Name: "b.test", Addrs: addrs("2001:db8::2", "198.51.100.2")},
		{Name: "a.test", Addrs: addrs("198.51.100.1")},
		{Name: "nx.test"},
		{Name: "*.w.test", Skipped: true},
		{Name: "fail.test", Err: "A: SERVFAIL"},
	}
	m := Addrs(rs)
	if d := cmp.Diff(map[string][]netip.Addr{"nx.test": nil, "a.test": addrs("198.51.100.1"), "b.test": addrs("2001:db8::2", "198.51.100.2")}, m, addrCmp); d != "" {
		t.Errorf("Addrs (-want +got):\n%s", d)
	}
	want := "# written by terok-shield (static resolver tier): allowlisted names resolve only here\n" +
		"127.0.0.1\tlocalhost localhost.localdomain\n" +
		"::1\tlocalhost localhost.localdomain ip6-localhost ip6-loopback\n" +
		"198.51.100.1\ta.test\n" +
		"198.51.100.2\tb.test\n" +
		"2001:db8::2\tb.test\n"
	if d := cmp.Diff(want, string(Hosts(m))); d != "" {
		t.Errorf("Hosts (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53")},
		Servers(addrs("::ffff:192.0.2.53", "2001:db8::53")), addrCmp); d != "" {
		t.Errorf("Servers (-want +got):\n%s", d)
	}
}

// TestParseAnswerMatchesQuery: only a response to the very query (ID, question) is taken; a
// stray or spoofed datagram is skipped, and a truncated one asks for TCP.
func TestParseAnswerMatchesQuery(t *testing.T) {
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("allowed.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	response := func(h dnsmessage.Header, q dnsmessage.Question) []byte {
		b := dnsmessage.NewBuilder(nil, h)
		if err := errors.Join(b.StartQuestions(), b.Question(q), b.StartAnswers(),
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{198, 18, 0, 1}})); err != nil {
			t.Fatal(err)
		}
		msg, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	other := q
	other.Name = dnsmessage.MustNewName("other.test.")
	tests := []struct {
		name      string
		msg       []byte
		ours      bool
		truncated bool
	}{
		{"the answer", response(dnsmessage.Header{ID: 7, Response: true}, q), true, false},
		{"other id", response(dnsmessage.Header{ID: 8, Response: true}, q), false, false},
		{"a query, not a response", response(dnsmessage.Header{ID: 7}, q), false, false},
		{"other question", response(dnsmessage.Header{ID: 7, Response: true}, other), false, false},
		{"truncated", response(dnsmessage.Header{ID: 7, Response: true, Truncated: true}, q), true, true},
		{"garbage", []byte{1, 2, 3}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, truncated, err := parseAnswer(tt.msg, 7, q)
			if ours := !errors.Is(err, errNotOurs); ours != tt.ours || truncated != tt.truncated {
				t.Fatalf("parseAnswer = %v, truncated %v, %v; want ours %v, truncated %v", a, truncated, err, tt.ours, tt.truncated)
			}
			if tt.ours && !tt.truncated && (err != nil || len(addrsOf(a.answers, "allowed.test.", dnsmessage.TypeA)) != 1) {
				t.Errorf("answer = %+v, %v; want one A record", a, err)
			}
		})
	}
}
