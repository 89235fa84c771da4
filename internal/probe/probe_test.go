// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		in      []string
		want    Args
		wantErr string
	}{
		{[]string{"1.2.3.4:80"}, Args{Pos: []string{"1.2.3.4:80"}, Opts: map[string]string{}, Flags: map[string]bool{}}, ""},
		{[]string{"www.test", "--server", "192.0.2.53", "--tcp", "--type=AAAA"},
			Args{Pos: []string{"www.test"}, Opts: map[string]string{"server": "192.0.2.53", "type": "AAAA"}, Flags: map[string]bool{"tcp": true}}, ""},
		{[]string{"--timeout", "500ms", "x"}, Args{Pos: []string{"x"}, Opts: map[string]string{"timeout": "500ms"}, Flags: map[string]bool{}}, ""},
		{[]string{"x", "--server"}, Args{}, "--server needs a value"},
		{[]string{"--tcp=yes"}, Args{}, "--tcp takes no value"},
	}
	for _, c := range cases {
		got, err := ParseArgs(c.in)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("ParseArgs(%q) error %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseArgs(%q): %v", c.in, err)
			continue
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("ParseArgs(%q) (-want +got):\n%s", c.in, d)
		}
	}
}

func TestMainUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"bogus"}, 2},
		{[]string{"tcp"}, 2},
		{[]string{"caps", "extra"}, 2},
		{[]string{"tcp", "1.2.3.4:1", "--timeout", "soon"}, 2},
		{[]string{"tcp", "not-an-address"}, 0},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if got := Main(c.args, &out, &errb); got != c.code {
			t.Errorf("Main(%q) = %d, want %d (stderr %q)", c.args, got, c.code, errb.String())
		}
		if c.code == 0 {
			r, err := Decode(out.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if r.Result != Error || r.Cmd != "tcp" || r.Target != "not-an-address" {
				t.Errorf("Main(%q) result %+v", c.args, r)
			}
		}
	}
}

func TestDecodeCaps(t *testing.T) {
	cases := []struct {
		mask string
		want []string
	}{
		{"0000000000000000", []string{}},
		{"00000000a80425fb", []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
			"CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"}},
		{"0000000000003000", []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}},
		{"8000000000000000", []string{"cap_63"}},
	}
	for _, c := range cases {
		got, err := DecodeCaps(c.mask)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("DecodeCaps(%s) (-want +got):\n%s", c.mask, d)
		}
	}
	if _, err := DecodeCaps("xyz"); err == nil {
		t.Error("DecodeCaps(xyz) succeeded")
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tprobe\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t0000000000001000\n" +
		"CapEff:\t0000000000001000\nCapBnd:\t0000000000003000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
	got, err := ParseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := &Caps{Inh: "0000000000000000", Prm: "0000000000001000", Eff: "0000000000001000", Bnd: "0000000000003000",
		Amb: "0000000000000000", EffNames: []string{"CAP_NET_ADMIN"}, BndNames: []string{"CAP_NET_ADMIN", "CAP_NET_RAW"},
		NoNewPrivs: "1", Seccomp: "2", UID: "0 0 0 0"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseStatus (-want +got):\n%s", d)
	}
	if _, err := ParseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("ParseStatus without caps succeeded")
	}
}

// extErr builds a sock_extended_err followed by an offender sockaddr.
func extErr(errno uint32, origin, typ, code byte, offender []byte) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint32(b, errno)
	b[4], b[5], b[6] = origin, typ, code
	return append(b, offender...)
}

func TestParseExtendedErr(t *testing.T) {
	sin := make([]byte, 16)
	binary.NativeEndian.PutUint16(sin, unix.AF_INET)
	copy(sin[4:], []byte{192, 0, 2, 1})
	sin6 := make([]byte, 28)
	binary.NativeEndian.PutUint16(sin6, unix.AF_INET6)
	copy(sin6[8:], net.ParseIP("2001:db8::1"))
	cases := []struct {
		name       string
		level, typ int32
		data       []byte
		want       *ICMP
	}{
		{"v4 admin prohibited", unix.SOL_IP, unix.IP_RECVERR, extErr(113, unix.SO_EE_ORIGIN_ICMP, 3, 13, sin), &ICMP{Type: 3, Code: 13, From: "192.0.2.1"}},
		{"v6 port unreachable", unix.SOL_IPV6, unix.IPV6_RECVERR, extErr(111, unix.SO_EE_ORIGIN_ICMP6, 1, 4, sin6), &ICMP{V6: true, Type: 1, Code: 4, From: "2001:db8::1"}},
		{"no offender", unix.SOL_IP, unix.IP_RECVERR, extErr(113, unix.SO_EE_ORIGIN_ICMP, 3, 1, nil), &ICMP{Type: 3, Code: 1}},
		{"local origin ignored", unix.SOL_IP, unix.IP_RECVERR, extErr(90, unix.SO_EE_ORIGIN_LOCAL, 0, 0, sin), nil},
		{"other cmsg", unix.SOL_SOCKET, unix.SCM_RIGHTS, extErr(113, unix.SO_EE_ORIGIN_ICMP, 3, 13, sin), nil},
		{"short", unix.SOL_IP, unix.IP_RECVERR, []byte{1, 2, 3}, nil},
	}
	for _, c := range cases {
		if d := cmp.Diff(c.want, parseExtendedErr(c.level, c.typ, c.data)); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, d)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err        error
		res, errno string
	}{
		{nil, OK, ""},
		{unix.ECONNREFUSED, Refused, "ECONNREFUSED"},
		{fmt.Errorf("wrapped: %w", unix.EPERM), Refused, "EPERM"},
		{unix.EHOSTUNREACH, Error, "EHOSTUNREACH"},
		{unix.ETIMEDOUT, Timeout, "ETIMEDOUT"},
		{unix.EINVAL, Error, "EINVAL"},
		{fmt.Errorf("plain"), Error, ""},
	}
	for _, c := range cases {
		res, errno := classify(c.err)
		if res != c.res || errno != c.errno {
			t.Errorf("classify(%v) = %s %s, want %s %s", c.err, res, errno, c.res, c.errno)
		}
	}
}

func TestChecksum(t *testing.T) {
	// Echo request id 0x7e57 seq 1, no payload: checksum must make the sum 0xffff.
	pkt := []byte{8, 0, 0, 0, 0x7e, 0x57, 0, 1, 'x'}
	cs := checksum(pkt)
	pkt[2], pkt[3] = byte(cs>>8), byte(cs)
	if got := checksum(pkt); got != 0 {
		t.Errorf("checksum over packet with checksum = %#x, want 0", got)
	}
}

func TestAnswerStrings(t *testing.T) {
	var rrs []dns.RR
	for _, s := range []string{"b.test. 60 IN CNAME a.test.", "a.test. 60 IN AAAA ::ffff:10.0.0.1", "a.test. 60 IN A 192.0.2.10", "a.test. 60 IN TXT \"hi\""} {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	want := []string{"A 192.0.2.10", "AAAA 10.0.0.1", "CNAME a.test.", "TXT \"hi\""}
	if d := cmp.Diff(want, answerStrings(rrs)); d != "" {
		t.Errorf("answerStrings (-want +got):\n%s", d)
	}
}

func TestResolvConfServer(t *testing.T) {
	p := t.TempDir() + "/resolv.conf"
	if err := writeFile(p, "# c\nsearch x\nnameserver 192.0.2.53\nnameserver 10.0.0.1\n"); err != nil {
		t.Fatal(err)
	}
	got, err := resolvConfServer(p)
	if err != nil || got != "192.0.2.53" {
		t.Errorf("resolvConfServer = %q, %v", got, err)
	}
	for _, c := range []struct{ in, want string }{{"192.0.2.53", "192.0.2.53:53"}, {"2001:db8::53", "[2001:db8::53]:53"}, {"1.2.3.4:5353", "1.2.3.4:5353"}} {
		if got := withPort(c.in, "53"); got != c.want {
			t.Errorf("withPort(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestLoopback exercises the real socket paths against loopback servers.
func TestLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			_, _ = c.Write(append([]byte("echo "), buf[:n]...))
			c.Close()
		}
	}()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("u "), buf[:n]...), from)
		}
	}()
	// A closed port: bind then close to get a free one.
	closed, _ := net.ListenPacket("udp", "127.0.0.1:0")
	closedAddr := closed.LocalAddr().String()
	closed.Close()

	cases := []struct {
		name   string
		got    Result
		result string
		reply  string
		errno  string
		icmp   *ICMP
	}{
		{"tcp ok", probeTCP(l.Addr().String(), "hi", time.Second), OK, "echo hi", "", nil},
		{"tcp refused", probeTCP(closedAddr, "", time.Second), Refused, "", "ECONNREFUSED", nil},
		{"udp ok", probeUDP(pc.LocalAddr().String(), "yo", time.Second), OK, "u yo", "", nil},
		{"udp port unreachable", probeUDP(closedAddr, "", time.Second), ICMPErr, "", "ECONNREFUSED", &ICMP{Type: 3, Code: 3, From: "127.0.0.1"}},
	}
	for _, c := range cases {
		if c.got.Result != c.result || c.got.Reply != c.reply || c.got.Errno != c.errno {
			t.Errorf("%s: got %+v, want result %s reply %q errno %s", c.name, c.got, c.result, c.reply, c.errno)
		}
		if d := cmp.Diff(c.icmp, c.got.ICMP); d != "" {
			t.Errorf("%s: icmp (-want +got):\n%s", c.name, d)
		}
	}
	if r := probeUDP(pc.LocalAddr().String()+"x", "", time.Second); r.Result != Error || !strings.Contains(r.Error, "address") {
		t.Errorf("bad address: %+v", r)
	}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}
