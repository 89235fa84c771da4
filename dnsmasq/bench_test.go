// SPDX-License-Identifier: Apache-2.0

package dnsmasq

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/internal/netnstest"
	nftpkg "github.com/terok-ai/terok-shield/nft"
)

// anyName answers every A query with benchAnswer (TTL one hour), so every name under
// miss.test is a real answer that dnsmasq caches and adds to the learned set.
type anyName struct{}

var benchAnswer = netip.MustParseAddr("198.18.0.10")

func (anyName) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if q := r.Question[0]; q.Qtype == dns.TypeA {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: benchAnswer.AsSlice()})
	}
	_ = w.WriteMsg(m)
}

// benchClient is one UDP socket created inside the container namespace, reused for every
// query (the dial, not the query, would otherwise dominate).
type benchClient struct{ conn *dns.Conn }

func dialIn(b *testing.B, ns *netnstest.NS, server netip.Addr, mark uint32) *benchClient {
	b.Helper()
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			if mark == 0 {
				return nil
			}
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)) }); err != nil {
				return err
			}
			return serr
		}}
		var err error
		c, err = d.Dial("udp", netip.AddrPortFrom(server, 53).String())
		return err
	})
	if err != nil {
		b.Fatalf("dial %s: %v", server, err)
	}
	b.Cleanup(func() { c.Close() })
	return &benchClient{conn: &dns.Conn{Conn: c}}
}

// ask sends one A query and requires the answer benchAnswer.
func (bc *benchClient) ask(name string) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	if err := bc.conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if err := bc.conn.WriteMsg(m); err != nil {
		return fmt.Errorf("query %s: %w", name, err)
	}
	r, err := bc.conn.ReadMsg()
	if err != nil {
		return fmt.Errorf("query %s: %w", name, err)
	}
	if r.Id != m.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return fmt.Errorf("query %s: unexpected reply %s", name, r)
	}
	return nil
}

// learnedMax is the learned-set size measured (the learned sets are declared with
// nft.LearnedSetSize; without a size the kernel caps a rule-updated set at 65,535).
const learnedMax = 100_000

// learnedPrefixes returns n distinct /32s from 198.18.0.0/15 (the benchmarking range).
func learnedPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0xc6120000+uint32(i))
		out[i] = netip.PrefixFrom(netip.AddrFrom4(a), 32)
	}
	return out
}

// BenchmarkResolver measures one DNS query from inside a container namespace that carries the
// real enforce ruleset: through the per-container dnsmasq ("resolver") versus straight to the
// upstream ("direct", with the resolver's mark so the ruleset lets it out), for a name never
// asked before ("miss": dnsmasq forwards it and adds the answer to the learned set) and for a
// cached one ("hit"), with the learned set empty and holding 100k addresses (see learnedMax). The learned-set
// size must not change the resolver's latency.
//
//	go test -run '^$' -bench BenchmarkResolver -benchtime 2000x ./dnsmasq
func BenchmarkResolver(b *testing.B) {
	netnstest.Require(b)
	bin, err := Find()
	if err != nil {
		if netnstest.Mandatory() {
			b.Fatalf("dnsmasq: %v", err)
		}
		b.Skipf("dnsmasq: %v", err)
	}
	ctx := context.Background()
	ctr, up := netnstest.New(b, "rctr"), netnstest.New(b, "rup")
	netnstest.Link(b, ctr, up, []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}, []netip.Prefix{netip.MustParsePrefix("192.0.2.53/24")})
	var pc net.PacketConn
	if err := up.Do(func() error { pc, err = net.ListenPacket("udp", "192.0.2.53:53"); return err }); err != nil {
		b.Fatalf("upstream listen: %v", err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: anyName{}}
	go func() { _ = srv.ActivateAndServe() }()
	b.Cleanup(func() { _ = srv.Shutdown() })

	target := nftpkg.Target{NetNSPath: ctr.Path}
	rs, err := nftpkg.Build(nftpkg.Policy{Mode: nftpkg.ModeUp, Upstreams: []netip.Addr{upstreamAddr}})
	if err != nil {
		b.Fatal(err)
	}
	if err := nftpkg.Apply(ctx, target, rs); err != nil {
		b.Fatal(err)
	}

	dir := b.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	in := Instance{Binary: bin, ConfFile: filepath.Join(dir, "dnsmasq.conf"), PIDFile: filepath.Join(dir, "dnsmasq.pid")}
	conf, err := Render(Config{Names: []string{"hit.test", "*.miss.test"}, Upstreams: []netip.Addr{upstreamAddr},
		Mark: nftpkg.DefaultResolverMark})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(in.ConfFile, conf, 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := Start(ctx, ctr.Path, in); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := Stop(in); err != nil {
			b.Errorf("stop dnsmasq: %v", err)
		}
	})

	clients := map[string]*benchClient{
		"resolver": dialIn(b, ctr, netip.MustParseAddr("127.0.0.1"), 0),
		"direct":   dialIn(b, ctr, upstreamAddr, nftpkg.DefaultResolverMark),
	}
	// Prime the cache, and prove the path works before timing it.
	for _, path := range []string{"resolver", "direct"} {
		if err := clients[path].ask("hit.test"); err != nil {
			b.Fatalf("%s: %v", path, err)
		}
	}
	missN := 0 // unique across all runs: a miss is never answered from the cache
	for _, size := range []struct {
		name string
		n    int
	}{{"empty", 0}, {"learned100k", learnedMax}} {
		if err := nftpkg.AddElements(ctx, target, nftpkg.KindLearned, learnedPrefixes(size.n)); err != nil {
			b.Fatalf("load learned set: %v", err)
		}
		for _, kind := range []string{"miss", "hit"} {
			for _, path := range []string{"direct", "resolver"} {
				c := clients[path]
				b.Run(size.name+"/"+kind+"/"+path, func(b *testing.B) {
					for b.Loop() {
						name := "hit.test"
						if kind == "miss" {
							missN++
							name = fmt.Sprintf("q%d.miss.test", missN)
						}
						if err := c.ask(name); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
	st, err := nftpkg.Inspect(ctx, target)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range st.Sets {
		if s.Name == "learned_v4" && len(s.Elements) < learnedMax {
			b.Errorf("learned_v4 holds %d elements, want at least %d", len(s.Elements), learnedMax)
		}
	}
}
