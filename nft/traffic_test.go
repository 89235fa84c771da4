// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/netnstest"
)

// The traffic tests apply the table in a "ctr" namespace whose default routes
// point at a "wan" namespace. wan holds echo servers (tcp/80, udp/5000) on
// stand-in public, private and special addresses, all on its loopback, so
// every probe is a real packet through the ctr output and input chains.
var (
	linkCtr4 = netip.MustParsePrefix("203.0.113.2/24")
	linkWan4 = netip.MustParsePrefix("203.0.113.1/24")
	linkCtr6 = netip.MustParsePrefix("2001:db8:ffff::2/64")
	linkWan6 = netip.MustParsePrefix("2001:db8:ffff::1/64")

	allowed4   = netip.MustParseAddr("192.0.2.10")
	unlisted4  = netip.MustParseAddr("192.0.2.20")
	learned4   = netip.MustParseAddr("192.0.2.30")
	denied4    = netip.MustParseAddr("192.0.2.40")
	upstream4  = netip.MustParseAddr("192.0.2.53")
	cidr4      = netip.MustParseAddr("198.51.100.5")
	private4   = netip.MustParseAddr("10.1.2.3")
	metadata4  = netip.MustParseAddr("169.254.169.254")
	gateway4   = netip.MustParseAddr("169.254.1.2")
	otherHost4 = netip.MustParseAddr("169.254.1.3")

	allowed6  = netip.MustParseAddr("2001:db8::10")
	unlisted6 = netip.MustParseAddr("2001:db8::20")
	learned6  = netip.MustParseAddr("2001:db8::30")
	denied6   = netip.MustParseAddr("2001:db8::40")
	upstream6 = netip.MustParseAddr("2001:db8::53")
	cidr6     = netip.MustParseAddr("2001:db8:100::5")
	ula6      = netip.MustParseAddr("fd00::10")

	allowNet4 = netip.MustParsePrefix("198.51.100.0/24")
	allowNet6 = netip.MustParsePrefix("2001:db8:100::/48")

	wanAddrs = []netip.Addr{allowed4, unlisted4, learned4, denied4, upstream4, cidr4, private4, metadata4,
		gateway4, otherHost4, allowed6, unlisted6, learned6, denied6, upstream6, cidr6, ula6}
)

const (
	tcpPort = 80
	udpPort = 5000
	// quick is the probe timeout for expected drops; answers are immediate.
	quick = 500 * time.Millisecond
)

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func hosts(as ...netip.Addr) []netip.Prefix {
	ps := make([]netip.Prefix, len(as))
	for i, a := range as {
		ps[i] = host(a)
	}
	return ps
}

type topo struct {
	ctr, wan *netnstest.NS
	target   Target
	ids      map[netip.AddrPort]string // server identities by "proto-less" address
	udpIDs   map[netip.AddrPort]string
}

// newTopo builds ctr <-> wan with servers on every wan address. No table is
// applied yet.
func newTopo(t *testing.T) *topo {
	t.Helper()
	netnstest.Require(t)
	requirePrivileged(t)
	tp := &topo{
		ctr:    netnstest.New(t, "ctr"),
		wan:    netnstest.New(t, "wan"),
		ids:    map[netip.AddrPort]string{},
		udpIDs: map[netip.AddrPort]string{},
	}
	tp.target = Target{NetNSPath: tp.ctr.Path}
	netnstest.Link(t, tp.ctr, tp.wan, []netip.Prefix{linkCtr4, linkCtr6}, []netip.Prefix{linkWan4, linkWan6})
	tp.ctr.Route(t, netip.MustParsePrefix("0.0.0.0/0"), linkWan4.Addr())
	tp.ctr.Route(t, netip.MustParsePrefix("::/0"), linkWan6.Addr())
	tp.wan.AddAddr(t, "lo", hosts(wanAddrs...)...)
	for _, a := range wanAddrs {
		tp.serveTCP(t, netip.AddrPortFrom(a, tcpPort))
		ua := netip.AddrPortFrom(a, udpPort)
		tp.udpIDs[ua] = tp.wan.ServeUDP(t, ua)
	}
	return tp
}

func (tp *topo) serveTCP(t *testing.T, ap netip.AddrPort) {
	tp.ids[ap] = tp.wan.ServeTCP(t, ap)
}

func (tp *topo) apply(t *testing.T, p Policy) {
	t.Helper()
	r, err := Build(p)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if err := Apply(context.Background(), tp.target, r); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func (tp *topo) add(t *testing.T, kind SetKind, ps ...netip.Prefix) {
	t.Helper()
	if err := AddElements(context.Background(), tp.target, kind, ps); err != nil {
		t.Fatalf("AddElements(%s, %v): %v", kind, ps, err)
	}
}

// probe is one expectation: a probe from ctr and the outcome it must have.
type probe struct {
	name string
	run  func() netnstest.Outcome
	want netnstest.Outcome
}

func (tp *topo) tcp(a netip.Addr) probe { return tp.tcpPort(a, tcpPort, netnstest.ProbeOptions{}) }

func (tp *topo) tcpPort(a netip.Addr, port uint16, o netnstest.ProbeOptions) probe {
	ap := netip.AddrPortFrom(a, port)
	return probe{name: "tcp " + ap.String(), run: func() netnstest.Outcome { return tp.ctr.ProbeTCPWith(ap, o) }}
}

func (tp *topo) udp(a netip.Addr) probe { return tp.udpPort(a, udpPort, netnstest.ProbeOptions{}) }

func (tp *topo) udpPort(a netip.Addr, port uint16, o netnstest.ProbeOptions) probe {
	ap := netip.AddrPortFrom(a, port)
	return probe{name: "udp " + ap.String(), run: func() netnstest.Outcome { return tp.ctr.ProbeUDPWith(ap, o) }}
}

func (tp *topo) ping(a netip.Addr) probe {
	return probe{name: "ping " + a.String(), run: func() netnstest.Outcome { return tp.ctr.ProbePing(a) }}
}

// open expects the probe to reach its server (for ping: the address itself).
func (tp *topo) open(p probe, a netip.Addr, proto string, port uint16) probe {
	switch proto {
	case "tcp":
		p.want = netnstest.Open(tp.ids[netip.AddrPortFrom(a, port)])
	case "udp":
		p.want = netnstest.Open(tp.udpIDs[netip.AddrPortFrom(a, port)])
	default:
		p.want = netnstest.Outcome{Result: netnstest.ResultOpen, From: a, Reply: "echo reply from " + a.String()}
	}
	p.name += " open"
	return p
}

// reachable expects tcp, udp and ping to a to work.
func (tp *topo) reachable(a netip.Addr) []probe {
	return []probe{
		tp.open(tp.tcp(a), a, "tcp", tcpPort),
		tp.open(tp.udp(a), a, "udp", udpPort),
		tp.open(tp.ping(a), a, "ping", 0),
	}
}

func rejected(p probe, a netip.Addr) probe {
	p.want = netnstest.AdminProhibited(a)
	p.name += " rejected"
	return p
}

// refused expects tcp, udp and ping to a to be rejected with admin-prohibited.
func (tp *topo) refused(a netip.Addr) []probe {
	return []probe{rejected(tp.tcp(a), a), rejected(tp.udp(a), a), rejected(tp.ping(a), a)}
}

func dropped(p probe) probe {
	p.want = netnstest.Timeout()
	p.name += " dropped"
	return p
}

// eperm expects a UDP or ping probe to be dropped in ctr's own output path.
func eperm(p probe) probe {
	p.want = netnstest.EPERM()
	p.name += " dropped locally"
	return p
}

func check(t *testing.T, probes ...probe) {
	t.Helper()
	for _, p := range probes {
		if d := netnstest.Diff(p.want, p.run()); d != "" {
			t.Errorf("%s: %s", p.name, d)
		}
	}
}

func flat(groups ...[]probe) []probe {
	var out []probe
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func TestTrafficEnforce(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	// Inbound control: a server in ctr that wan reaches before the table exists.
	inbound := netip.AddrPortFrom(linkCtr4.Addr(), 2222)
	inbound6 := netip.AddrPortFrom(linkCtr6.Addr(), 2222)
	inID, inID6 := tp.ctr.ServeTCP(t, inbound), tp.ctr.ServeTCP(t, inbound6)
	inUDP := tp.ctr.ServeUDP(t, inbound)
	// Before the table: everything is reachable, both ways.
	check(t, flat(tp.reachable(unlisted4), tp.reachable(unlisted6), tp.reachable(private4))...)
	for _, c := range []struct {
		name string
		got  netnstest.Outcome
		want netnstest.Outcome
	}{
		{"inbound tcp v4 before", tp.wan.ProbeTCP(inbound), netnstest.Open(inID)},
		{"inbound tcp v6 before", tp.wan.ProbeTCP(inbound6), netnstest.Open(inID6)},
		{"inbound udp v4 before", tp.wan.ProbeUDP(inbound), netnstest.Open(inUDP)},
	} {
		if d := netnstest.Diff(c.want, c.got); d != "" {
			t.Fatalf("%s (positive control): %s", c.name, d)
		}
	}

	tp.apply(t, Policy{Allow: []netip.Prefix{host(allowed4), host(allowed6), allowNet4, allowNet6}})
	check(t, flat(
		tp.reachable(allowed4), tp.reachable(allowed6),
		tp.reachable(cidr4), tp.reachable(cidr6),
		tp.refused(unlisted4), tp.refused(unlisted6),
		tp.refused(private4), tp.refused(ula6), tp.refused(metadata4),
	)...)

	quickOpts := netnstest.ProbeOptions{Timeout: quick}
	for _, c := range []struct {
		name string
		got  netnstest.Outcome
	}{
		{"inbound tcp v4", tp.wan.ProbeTCPWith(inbound, quickOpts)},
		{"inbound tcp v6", tp.wan.ProbeTCPWith(inbound6, quickOpts)},
		{"inbound udp v4", tp.wan.ProbeUDPWith(inbound, quickOpts)},
		{"inbound ping v4", tp.wan.ProbePingWith(inbound.Addr(), quickOpts)},
		{"inbound ping v6", tp.wan.ProbePingWith(inbound6.Addr(), quickOpts)},
	} {
		if d := netnstest.Diff(netnstest.Timeout(), c.got); d != "" {
			t.Errorf("%s: unsolicited inbound must be dropped: %s", c.name, d)
		}
	}
}

func TestTrafficPrivateRanges(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	privates := []netip.Addr{private4, metadata4, ula6}
	tp.apply(t, Policy{Allow: hosts(allowed4), LearnedTimeout: time.Minute})
	// Learned, including the IPv4-mapped form of a private address.
	tp.add(t, KindLearned, append(hosts(privates...), host(learned4), host(netip.AddrFrom16(private4.As16())))...)
	var probes []probe
	for _, a := range privates {
		probes = append(probes, tp.refused(a)...)
	}
	check(t, append(probes, tp.open(tp.tcp(learned4), learned4, "tcp", tcpPort), tp.open(tp.tcp(allowed4), allowed4, "tcp", tcpPort))...)

	// An explicit operator allow opens exactly those addresses.
	tp.apply(t, Policy{Allow: hosts(private4, metadata4, ula6)})
	probes = nil
	for _, a := range privates {
		probes = append(probes, tp.reachable(a)...)
	}
	check(t, append(probes, tp.refused(otherHost4)...)...)
}

func TestTrafficDenyWins(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	tp.apply(t, Policy{
		Allow: hosts(allowed4, allowed6, denied4, denied6),
		Deny:  hosts(denied4, denied6),
	})
	tp.add(t, KindLearned, host(learned4), host(learned6))
	check(t, flat(tp.reachable(allowed4), tp.reachable(learned6), tp.refused(denied4), tp.refused(denied6))...)

	t.Run("deny beats learned", func(t *testing.T) {
		tp.add(t, KindDeny, host(learned4), host(learned6))
		tp.add(t, KindLearned, host(learned4), host(learned6)) // learned again after the deny
		check(t, flat(tp.refused(learned4), tp.refused(learned6))...)
	})

	t.Run("open connection is cut", func(t *testing.T) {
		for _, c := range []struct {
			a     netip.Addr
			errno syscall.Errno
		}{{allowed4, syscall.EHOSTUNREACH}, {allowed6, syscall.EACCES}} {
			ap := netip.AddrPortFrom(c.a, tcpPort)
			conn, err := tp.ctr.DialTCP(ap, netnstest.ProbeOptions{})
			if err != nil {
				t.Fatalf("dial %s: %v", ap, err)
			}
			defer conn.Close()
			if got, err := roundTrip(conn, "before"); err != nil || got != tp.ids[ap]+" before\n" {
				t.Fatalf("%s before deny: %q, %v", ap, got, err)
			}
			tp.add(t, KindDeny, host(c.a))
			start := time.Now()
			if got, err := roundTrip(conn, "after"); !errors.Is(err, c.errno) {
				t.Errorf("%s after deny: got %q, %v; want %v from the ICMP admin-prohibited", ap, got, err, c.errno)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s: the cut took %v, want immediate", ap, d)
			}
			check(t, rejected(tp.tcp(c.a), c.a))
		}
	})
}

// roundTrip writes a line and reads the echo.
func roundTrip(c net.Conn, line string) (string, error) {
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	m, err := c.Read(buf)
	return string(buf[:m]), err
}

func TestTrafficLearnedExpires(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	const ttl = 2 * time.Second
	tp.apply(t, Policy{Allow: hosts(allowed4), LearnedTimeout: ttl})
	check(t, flat(tp.refused(learned4), tp.refused(learned6))...)
	added := time.Now()
	tp.add(t, KindLearned, host(learned4), host(learned6))
	check(t, flat(tp.reachable(learned4), tp.reachable(learned6))...)
	if d := time.Since(added); d > ttl/2 {
		t.Fatalf("probing took %v, too long to tell expiry apart", d)
	}
	time.Sleep(time.Until(added.Add(ttl + 300*time.Millisecond)))
	check(t, flat(tp.refused(learned4), tp.refused(learned6),
		[]probe{tp.open(tp.tcp(allowed4), allowed4, "tcp", tcpPort)})...)

	t.Run("delete allow", func(t *testing.T) {
		if err := DeleteElements(context.Background(), tp.target, KindAllow, hosts(allowed4)); err != nil {
			t.Fatal(err)
		}
		check(t, tp.refused(allowed4)...)
	})
}

// TestTrafficLearnedRefreshedInUse proves that a learned address stays reachable while new
// connections keep using it, past its timeout (the accept rule updates the element), and
// expires once it is left idle.
func TestTrafficLearnedRefreshedInUse(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	const ttl = 2 * time.Second
	tp.apply(t, Policy{Allow: hosts(allowed4), LearnedTimeout: ttl})
	added := time.Now()
	tp.add(t, KindLearned, host(learned4))
	for time.Since(added) < 2*ttl {
		check(t, tp.reachable(learned4)...)
		time.Sleep(ttl / 4)
	}
	idle := time.Now()
	time.Sleep(ttl + 300*time.Millisecond)
	check(t, flat(tp.refused(learned4), []probe{tp.open(tp.tcp(allowed4), allowed4, "tcp", tcpPort)})...)
	if d := time.Since(idle); d > 2*ttl {
		t.Fatalf("idle check took %v; too slow to tell expiry apart", d)
	}
}

func TestTrafficDNSControl(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	for _, a := range []netip.Addr{upstream4, upstream6, allowed4, allowed6} {
		for _, port := range []uint16{53, 853} {
			ap := netip.AddrPortFrom(a, port)
			tp.serveTCP(t, ap)
			tp.udpIDs[ap] = tp.wan.ServeUDP(t, ap)
		}
	}
	tp.apply(t, Policy{Allow: hosts(allowed4, allowed6), Upstreams: []netip.Addr{upstream4, upstream6}})
	mark := netnstest.ProbeOptions{Mark: DefaultResolverMark}
	wrongMark := netnstest.ProbeOptions{Mark: DefaultResolverMark + 1}
	none := netnstest.ProbeOptions{}
	var probes []probe
	for _, up := range []netip.Addr{upstream4, upstream6} {
		probes = append(probes,
			rejected(tp.udpPort(up, 53, none), up),
			rejected(tp.tcpPort(up, 53, none), up),
			rejected(tp.udpPort(up, 53, wrongMark), up),
			tp.open(tp.udpPort(up, 53, mark), up, "udp", 53),
			tp.open(tp.tcpPort(up, 53, mark), up, "tcp", 53),
			rejected(tp.tcpPort(up, 853, mark), up),
			rejected(tp.tcpPort(up, 853, none), up),
			rejected(tp.udpPort(up, 853, none), up),
		)
	}
	// Not even allowed addresses may be used as resolvers, marked or not.
	for _, a := range []netip.Addr{allowed4, allowed6} {
		probes = append(probes,
			tp.open(tp.tcp(a), a, "tcp", tcpPort),
			rejected(tp.udpPort(a, 53, none), a),
			rejected(tp.tcpPort(a, 53, none), a),
			rejected(tp.udpPort(a, 53, mark), a),
			rejected(tp.tcpPort(a, 853, none), a),
		)
	}
	check(t, probes...)
}

func TestTrafficIPv6NeighbourDiscovery(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	onLink := linkWan6.Addr()
	tp.serveTCP(t, netip.AddrPortFrom(onLink, tcpPort))
	tp.udpIDs[netip.AddrPortFrom(onLink, udpPort)] = tp.wan.ServeUDP(t, netip.AddrPortFrom(onLink, udpPort))
	// The table goes in before any IPv6 packet crosses the link, and the
	// neighbour caches are emptied, so the probes need fresh resolution both
	// ways (wan must resolve ctr for its replies, through ctr's input chain).
	tp.apply(t, Policy{Allow: hosts(allowed6, onLink)})
	for _, n := range []*netnstest.NS{tp.ctr, tp.wan} {
		n.IP(t, "neigh flush all")
	}
	check(t, flat(tp.reachable(onLink), tp.reachable(allowed6))...)
}

func TestTrafficModes(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	lo := netip.MustParseAddrPort("127.0.0.1:8000")
	loID := tp.ctr.ServeTCP(t, lo)
	base := Policy{Allow: hosts(allowed4, allowed6), Deny: hosts(denied4, denied6)}
	withMode := func(m Mode) Policy { p := base; p.Mode = m; return p }
	quickOpts := netnstest.ProbeOptions{Timeout: quick}
	loProbe := probe{name: "tcp " + lo.String() + " (loopback)", run: func() netnstest.Outcome { return tp.ctr.ProbeTCP(lo) }, want: netnstest.Open(loID)}
	steps := []struct {
		mode   Mode
		probes []probe
	}{
		{ModeUp, flat(tp.reachable(allowed4), tp.refused(unlisted4), tp.refused(unlisted6),
			tp.refused(private4), tp.refused(denied4), tp.refused(denied6))},
		{ModeDown, flat(tp.reachable(allowed4), tp.reachable(unlisted4), tp.reachable(unlisted6),
			tp.refused(private4), tp.refused(ula6), tp.refused(denied4), tp.refused(denied6))},
		{ModeDownAll, flat(tp.reachable(unlisted4), tp.reachable(private4), tp.reachable(ula6),
			tp.reachable(metadata4), tp.refused(denied4), tp.refused(denied6))},
		{ModeBlock, []probe{loProbe,
			dropped(tp.tcpPort(allowed4, tcpPort, quickOpts)), eperm(tp.udp(allowed6)), eperm(tp.ping(allowed4)),
			dropped(tp.tcpPort(unlisted4, tcpPort, quickOpts)), dropped(tp.tcpPort(private4, tcpPort, quickOpts)),
			dropped(tp.tcpPort(denied4, tcpPort, quickOpts))}},
		{ModeUp, flat(tp.reachable(allowed4), tp.reachable(allowed6), tp.refused(unlisted4),
			tp.refused(private4), tp.refused(denied4), []probe{loProbe})},
	}
	for i, s := range steps {
		tp.apply(t, withMode(s.mode))
		t.Run(s.mode.String()+"-"+string(rune('0'+i)), func(t *testing.T) { check(t, s.probes...) })
	}
}

func TestTrafficHostPorts(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	for _, ap := range []netip.AddrPort{
		netip.AddrPortFrom(gateway4, 8080), netip.AddrPortFrom(gateway4, 8081), netip.AddrPortFrom(otherHost4, 8080),
	} {
		tp.serveTCP(t, ap)
		tp.udpIDs[ap] = tp.wan.ServeUDP(t, ap)
	}
	none := netnstest.ProbeOptions{}
	p := Policy{HostGateways: []netip.Addr{gateway4}}
	tp.apply(t, p)
	check(t, rejected(tp.tcpPort(gateway4, 8080, none), gateway4)) // no port listed: closed

	p.HostPorts = []uint16{8080}
	tp.apply(t, p)
	check(t,
		tp.open(tp.tcpPort(gateway4, 8080, none), gateway4, "tcp", 8080),
		rejected(tp.tcpPort(gateway4, 8081, none), gateway4),
		rejected(tp.udpPort(gateway4, 8080, none), gateway4),
		rejected(tp.tcpPort(otherHost4, 8080, none), otherHost4),
		rejected(tp.tcpPort(unlisted4, 8080, none), unlisted4),
		rejected(tp.ping(gateway4), gateway4),
	)
}

// TestTrafficDenyCutsInbound checks invariant 5 from the other side: once an
// address is denied, it must not be able to keep sending into the container
// over a flow that was open before the deny (a command channel needs no
// outbound packets for UDP, and for TCP the data is delivered even though
// ctr's ACKs are rejected). The client sockets are plain ones, as a workload
// would use, without IP_RECVERR.
func TestTrafficDenyCutsInbound(t *testing.T) {
	t.Parallel()
	tp := newTopo(t)
	tp.apply(t, Policy{Allow: hosts(allowed4, allowed6)})
	for _, c := range []struct {
		network string
		a       netip.Addr
	}{{"udp", allowed4}, {"udp", allowed6}, {"tcp", allowed4}, {"tcp", allowed6}} {
		t.Run(c.network+" "+c.a.String(), func(t *testing.T) {
			srvAP := netip.AddrPortFrom(c.a, 6000)
			push, client := openFlow(t, tp, c.network, srvAP)
			if got := readWithin(client, time.Second); got != "one" {
				t.Fatalf("before deny: ctr read %q, want %q (positive control)", got, "one")
			}
			tp.add(t, KindDeny, host(c.a))
			defer func() {
				if err := DeleteElements(context.Background(), tp.target, KindDeny, hosts(c.a)); err != nil {
					t.Fatalf("DeleteElements: %v", err)
				}
			}()
			push("two")
			if got := readWithin(client, quick); got != "" {
				t.Errorf("after deny of %s: ctr still received %q from it on the open %s flow", c.a, got, c.network)
			}
		})
	}
	check(t, tp.open(tp.tcp(allowed4), allowed4, "tcp", tcpPort)) // deny lifted: still reachable
}

// openFlow opens a flow from ctr to a server at ap in wan, has the server
// send "one" on it, and returns a function that makes the server send more.
func openFlow(t *testing.T, tp *topo, network string, ap netip.AddrPort) (push func(string), client net.Conn) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	switch network {
	case "udp":
		var srv net.PacketConn
		must(tp.wan.Do(func() (err error) { srv, err = net.ListenPacket("udp", ap.String()); return err }))
		t.Cleanup(func() { srv.Close() })
		must(tp.ctr.Do(func() (err error) { client, err = net.Dial("udp", ap.String()); return err }))
		t.Cleanup(func() { client.Close() })
		_, err := client.Write([]byte("hello"))
		must(err)
		must(srv.SetReadDeadline(time.Now().Add(time.Second)))
		buf := make([]byte, 64)
		_, from, err := srv.ReadFrom(buf)
		must(err)
		push = func(s string) { _, err := srv.WriteTo([]byte(s), from); must(err) }
	default:
		var ln net.Listener
		must(tp.wan.Do(func() (err error) { ln, err = net.Listen("tcp", ap.String()); return err }))
		t.Cleanup(func() { ln.Close() })
		must(tp.ctr.Do(func() (err error) { client, err = net.Dial("tcp", ap.String()); return err }))
		t.Cleanup(func() { client.Close() })
		srv, err := ln.Accept()
		must(err)
		t.Cleanup(func() { srv.Close() })
		push = func(s string) { _, err := srv.Write([]byte(s)); must(err) }
	}
	push("one")
	return push, client
}

// readWithin returns what arrives on c within d ("" if nothing).
func readWithin(c net.Conn, d time.Duration) string {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return "set deadline: " + err.Error()
	}
	buf := make([]byte, 64)
	m, _ := c.Read(buf)
	return string(buf[:m])
}
