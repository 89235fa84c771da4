// SPDX-License-Identifier: Apache-2.0

package netnstest

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	cliAddr4 = netip.MustParsePrefix("192.0.2.1/24")
	srvAddr4 = netip.MustParsePrefix("192.0.2.2/24")
	cliAddr6 = netip.MustParsePrefix("2001:db8::1/64")
	srvAddr6 = netip.MustParsePrefix("2001:db8::2/64")
)

// pair links two fresh namespaces, cli and srv, on 192.0.2.0/24 and
// 2001:db8::/64.
func pair(t *testing.T) (cli, srv *NS) {
	t.Helper()
	Require(t)
	cli, srv = New(t, "cli"), New(t, "srv")
	Link(t, cli, srv, []netip.Prefix{cliAddr4, cliAddr6}, []netip.Prefix{srvAddr4, srvAddr6})
	return cli, srv
}

func requireNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		if Mandatory() {
			t.Fatalf("the nft tool is required: %v", err)
		}
		t.Skipf("the nft tool is missing: %v", err)
	}
}

func nft(t *testing.T, n *NS, script string) {
	t.Helper()
	if out, err := n.Exec(t, "nft", script); err != nil {
		t.Fatalf("nft in %s: %v: %s", n.Name, err, out)
	}
}

func check(t *testing.T, name string, want, got Outcome) {
	t.Helper()
	if d := Diff(want, got); d != "" {
		t.Errorf("%s: %s", name, d)
	}
}

func TestEchoAcrossVeth(t *testing.T) {
	t.Parallel()
	cli, srv := pair(t)
	for _, a := range []netip.Addr{srvAddr4.Addr(), srvAddr6.Addr()} {
		tcp := netip.AddrPortFrom(a, 8080)
		udp := netip.AddrPortFrom(a, 5353)
		tcpID, udpID := srv.ServeTCP(t, tcp), srv.ServeUDP(t, udp)
		t.Run("tcp/"+a.String(), func(t *testing.T) { check(t, "tcp", Open(tcpID), cli.ProbeTCP(tcp)) })
		t.Run("udp/"+a.String(), func(t *testing.T) { check(t, "udp", Open(udpID), cli.ProbeUDP(udp)) })
		t.Run("ping/"+a.String(), func(t *testing.T) {
			want := Outcome{Result: ResultOpen, From: a, Reply: "echo reply from " + a.String()}
			check(t, "ping", want, cli.ProbePing(a))
		})
	}
}

func TestServerIdentityDistinguishesServers(t *testing.T) {
	t.Parallel()
	cli, srv := pair(t)
	a := netip.AddrPortFrom(srvAddr4.Addr(), 1000)
	b := netip.AddrPortFrom(srvAddr4.Addr(), 1001)
	idA, idB := srv.ServeTCP(t, a), srv.ServeTCP(t, b)
	if idA == idB {
		t.Fatalf("two servers share identity %q", idA)
	}
	check(t, "a", Open(idA), cli.ProbeTCP(a))
	check(t, "b", Open(idB), cli.ProbeTCP(b))
	if d := Diff(Open(idA), cli.ProbeTCP(b)); d == "" {
		t.Errorf("Diff accepted server %s as %s", idB, idA)
	}
}

func TestClosedPorts(t *testing.T) {
	t.Parallel()
	cli, _ := pair(t)
	for _, a := range []netip.Addr{srvAddr4.Addr(), srvAddr6.Addr()} {
		dst := netip.AddrPortFrom(a, 9)
		t.Run("udp/"+a.String(), func(t *testing.T) {
			want := PortUnreachable(a)
			want.From = a
			check(t, "udp", want, cli.ProbeUDP(dst))
		})
		t.Run("tcp/"+a.String(), func(t *testing.T) { check(t, "tcp", Refused(), cli.ProbeTCP(dst)) })
	}
}

// TestNftVerdicts sets up drops and rejects with nft in the server namespace:
// drops are timeouts, icmpx admin-prohibited rejects are reported with their
// ICMP type and code, and an untouched port is the positive control.
func TestNftVerdicts(t *testing.T) {
	t.Parallel()
	requireNft(t)
	cli, srv := pair(t)
	nft(t, srv, `add table inet t
add chain inet t in { type filter hook input priority 0; policy accept; }
add rule inet t in tcp dport 1 drop
add rule inet t in udp dport 1 drop
add rule inet t in tcp dport 2 reject with icmpx type admin-prohibited
add rule inet t in udp dport 2 reject with icmpx type admin-prohibited
add rule inet t in icmp type echo-request reject with icmpx type admin-prohibited
add rule inet t in icmpv6 type echo-request drop`)
	for _, a := range []netip.Addr{srvAddr4.Addr(), srvAddr6.Addr()} {
		ctlTCP, ctlUDP := netip.AddrPortFrom(a, 3), netip.AddrPortFrom(a, 3)
		idTCP, idUDP := srv.ServeTCP(t, ctlTCP), srv.ServeUDP(t, ctlUDP)
		for _, port := range []uint16{1, 2} {
			srv.ServeTCP(t, netip.AddrPortFrom(a, port))
			srv.ServeUDP(t, netip.AddrPortFrom(a, port))
		}
		rejected := AdminProhibited(a)
		rejected.From = a
		tests := []struct {
			name  string
			probe func() Outcome
			want  Outcome
		}{
			{"tcp/control", func() Outcome { return cli.ProbeTCP(ctlTCP) }, Open(idTCP)},
			{"udp/control", func() Outcome { return cli.ProbeUDP(ctlUDP) }, Open(idUDP)},
			{"tcp/drop", func() Outcome { return cli.ProbeTCP(netip.AddrPortFrom(a, 1)) }, Timeout()},
			{"udp/drop", func() Outcome { return cli.ProbeUDP(netip.AddrPortFrom(a, 1)) }, Timeout()},
			{"tcp/reject", func() Outcome { return cli.ProbeTCP(netip.AddrPortFrom(a, 2)) }, rejected},
			{"udp/reject", func() Outcome { return cli.ProbeUDP(netip.AddrPortFrom(a, 2)) }, rejected},
		}
		if a.Is4() {
			tests = append(tests, struct {
				name  string
				probe func() Outcome
				want  Outcome
			}{"ping/reject", func() Outcome { return cli.ProbePing(a) }, rejected})
		} else {
			tests = append(tests, struct {
				name  string
				probe func() Outcome
				want  Outcome
			}{"ping/drop", func() Outcome { return cli.ProbePing(a) }, Timeout()})
		}
		for _, tc := range tests {
			t.Run(a.String()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				got := tc.probe()
				check(t, tc.name, tc.want, got)
				if got.Result != ResultTimeout && time.Since(start) > DefaultTimeout/2 {
					t.Errorf("%s took %v; an answer should be immediate", tc.name, time.Since(start))
				}
			})
		}
	}
}

// TestRoutedTopology hosts a server address on the server's loopback and
// reaches it through default routes, like the nft traffic tests do.
func TestRoutedTopology(t *testing.T) {
	t.Parallel()
	cli, srv := pair(t)
	far4, far6 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("3fff::7")
	srv.AddAddr(t, "lo", netip.PrefixFrom(far4, 32), netip.PrefixFrom(far6, 128))
	cli.Route(t, netip.MustParsePrefix("0.0.0.0/0"), srvAddr4.Addr())
	cli.Route(t, netip.MustParsePrefix("::/0"), srvAddr6.Addr())
	for _, a := range []netip.Addr{far4, far6} {
		dst := netip.AddrPortFrom(a, 443)
		id := srv.ServeTCP(t, dst)
		t.Run(a.String(), func(t *testing.T) { check(t, "tcp", Open(id), cli.ProbeTCP(dst)) })
	}
}

// TestMarkOption proves ProbeOptions.Mark reaches the socket: an nft rule in
// the client's output chain rejects unmarked packets.
func TestMarkOption(t *testing.T) {
	t.Parallel()
	requireNft(t)
	cli, srv := pair(t)
	nft(t, cli, `add table inet t
add chain inet t out { type filter hook output priority 0; policy accept; }
add rule inet t out meta l4proto { tcp, udp } th dport 53 meta mark != 0x2a reject with icmpx type admin-prohibited`)
	dst := netip.AddrPortFrom(srvAddr4.Addr(), 53)
	tcpID, udpID := srv.ServeTCP(t, dst), srv.ServeUDP(t, dst)
	check(t, "tcp unmarked", AdminProhibited(dst.Addr()), cli.ProbeTCP(dst))
	check(t, "udp unmarked", AdminProhibited(dst.Addr()), cli.ProbeUDP(dst))
	check(t, "tcp marked", Open(tcpID), cli.ProbeTCPWith(dst, ProbeOptions{Mark: 0x2a}))
	check(t, "udp marked", Open(udpID), cli.ProbeUDPWith(dst, ProbeOptions{Mark: 0x2a}))
}

// TestDialTCPFailsFastOnICMP shows that an established connection from
// DialTCP fails at once when a reject rule starts matching its packets.
func TestDialTCPFailsFastOnICMP(t *testing.T) {
	t.Parallel()
	requireNft(t)
	cli, srv := pair(t)
	dst := netip.AddrPortFrom(srvAddr6.Addr(), 7000)
	id := srv.ServeTCP(t, dst)
	c, err := cli.DialTCP(dst, ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(line string) (string, error) {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			return "", err
		}
		buf := make([]byte, 512)
		m, err := c.Read(buf)
		return string(buf[:m]), err
	}
	if got, err := roundTrip("one"); err != nil || got != id+" one\n" {
		t.Fatalf("before reject: got %q, %v; want %q", got, err, id+" one\n")
	}
	nft(t, srv, `add table inet t
add chain inet t in { type filter hook input priority 0; policy accept; }
add rule inet t in tcp dport 7000 reject with icmpx type admin-prohibited`)
	start := time.Now()
	_, err = roundTrip("two")
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("after reject: got %v, want EACCES (ICMPv6 admin-prohibited)", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("failure took %v, want immediate", time.Since(start))
	}
}

func TestDoRunsInNamespaceOnly(t *testing.T) {
	t.Parallel()
	cli, _ := pair(t)
	self := func() string {
		s, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	nsIno := func(path string) string {
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return "net:[" + strconv.FormatUint(st.Ino, 10) + "]"
	}
	before := self()
	var inside string
	var names []string
	err := cli.Do(func() error {
		inside = self()
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := nsIno(cli.Path); inside != want {
		t.Errorf("inside Do: netns %s, want %s", inside, want)
	}
	if got := strings.Join(names, ","); got != "lo,veth0" {
		t.Errorf("interfaces inside Do: %s, want lo,veth0", got)
	}
	if err := cli.Do(func() error { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("panic in Do: got %v, want an error mentioning it", err)
	}
	// Many goroutines run and finish; none may now be in the namespace.
	for range 20 {
		if err := cli.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		if got := self(); got != before {
			t.Fatalf("test goroutine now in netns %s, was %s", got, before)
		}
		time.Sleep(time.Millisecond)
	}
	out, err := cli.Exec(t, "ip", "-o", "link", "show")
	if err != nil || !strings.Contains(out, "veth0") {
		t.Errorf("Exec ip link: %v, %q; want veth0 listed", err, out)
	}
}

func TestNamespacesAreRemoved(t *testing.T) {
	t.Parallel()
	Require(t)
	var a, b *NS
	t.Run("create", func(t *testing.T) {
		a, b = New(t, "x"), New(t, "x")
		if a.Name == b.Name {
			t.Fatalf("two namespaces named %s", a.Name)
		}
		Link(t, a, b, nil, nil)
		a.ServeTCP(t, netip.MustParseAddrPort("127.0.0.1:80"))
	})
	for _, n := range []*NS{a, b} {
		if _, err := os.Stat(n.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after its test ended: %v", n.Path, err)
		}
	}
}
