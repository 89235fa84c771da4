// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
)

// ipv4 builds an IPv4 header (no options) for proto followed by l4.
func ipv4(proto uint8, src, dst string, l4 []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	h[8], h[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, l4...)
}

// ipv6 builds an IPv6 header with next header next followed by rest.
func ipv6(next uint8, src, dst string, rest []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(rest)))
	h[6], h[7] = next, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, rest...)
}

func ports(src, dst uint16, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b, src)
	binary.BigEndian.PutUint16(b[2:], dst)
	return b
}

func TestParsePacket(t *testing.T) {
	a4 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	fragment := ipv4(protoUDP, "10.0.0.2", "192.0.2.9", ports(1, 2, 8))
	binary.BigEndian.PutUint16(fragment[6:], 185) // fragment offset 185*8: not the first
	hopByHop := append([]byte{protoUDP, 0, 5, 2, 0, 0, 1, 0}, ports(40000, 53, 8)...)
	frag6 := append([]byte{protoTCP, 0, 0, 0, 0, 0, 0, 1}, ports(40000, 443, 20)...)
	laterFrag6 := append([]byte{protoTCP, 0, 0x05, 0x00, 0, 0, 0, 1}, ports(40000, 443, 20)...)
	tests := []struct {
		name string
		pkt  []byte
		want packetInfo
		err  string
	}{
		{"tcp4", ipv4(protoTCP, "10.0.0.2", "192.0.2.9", ports(40000, 443, 20)), packetInfo{Proto: "tcp", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9"), SPort: 40000, DPort: 443}, ""},
		{"udp4", ipv4(protoUDP, "10.0.0.2", "192.0.2.9", ports(5353, 53, 8)), packetInfo{Proto: "udp", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9"), SPort: 5353, DPort: 53}, ""},
		{"icmp4 echo", ipv4(protoICMP, "10.0.0.2", "192.0.2.9", []byte{8, 0, 0, 0}), packetInfo{Proto: "icmp", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9"), ICMPType: u8(8)}, ""},
		{"sctp4", ipv4(protoSCTP, "10.0.0.2", "192.0.2.9", ports(1000, 2000, 12)), packetInfo{Proto: "sctp", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9"), SPort: 1000, DPort: 2000}, ""},
		{"gre4 by number", ipv4(47, "10.0.0.2", "192.0.2.9", nil), packetInfo{Proto: "47", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9")}, ""},
		{"ipv4 options", func() []byte {
			p := ipv4(protoTCP, "10.0.0.2", "192.0.2.9", append([]byte{1, 1, 1, 0}, ports(1, 80, 20)...))
			p[0] = 0x46
			return p
		}(), packetInfo{Proto: "tcp", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9"), SPort: 1, DPort: 80}, ""},
		{"later fragment4", fragment, packetInfo{Proto: "udp", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9")}, ""},
		{"tcp4 cut in ports", ipv4(protoTCP, "10.0.0.2", "192.0.2.9", []byte{1, 2}), packetInfo{Proto: "tcp", Src: a4("10.0.0.2"), Dst: a4("192.0.2.9")}, ""},
		{"ipv4 header cut", ipv4(protoTCP, "10.0.0.2", "192.0.2.9", nil)[:19], packetInfo{}, "shorter than its IP header"},
		{"ipv4 bad ihl", func() []byte { p := ipv4(protoTCP, "10.0.0.2", "192.0.2.9", nil); p[0] = 0x4f; return p }(), packetInfo{}, "shorter than its IP header"},
		{"tcp6", ipv6(protoTCP, "2001:db8::2", "2001:db8::9", ports(40000, 443, 20)), packetInfo{Proto: "tcp", Src: a4("2001:db8::2"), Dst: a4("2001:db8::9"), SPort: 40000, DPort: 443}, ""},
		{"udp6 behind hop-by-hop", ipv6(0, "2001:db8::2", "2001:db8::9", hopByHop), packetInfo{Proto: "udp", Src: a4("2001:db8::2"), Dst: a4("2001:db8::9"), SPort: 40000, DPort: 53}, ""},
		{"tcp6 first fragment", ipv6(44, "2001:db8::2", "2001:db8::9", frag6), packetInfo{Proto: "tcp", Src: a4("2001:db8::2"), Dst: a4("2001:db8::9"), SPort: 40000, DPort: 443}, ""},
		{"tcp6 later fragment", ipv6(44, "2001:db8::2", "2001:db8::9", laterFrag6), packetInfo{Proto: "tcp", Src: a4("2001:db8::2"), Dst: a4("2001:db8::9")}, ""},
		{"icmpv6 echo", ipv6(protoICMPv6, "2001:db8::2", "2001:db8::9", []byte{128, 0, 0, 0}), packetInfo{Proto: "icmpv6", Src: a4("2001:db8::2"), Dst: a4("2001:db8::9"), ICMPType: u8(128)}, ""},
		{"hop-by-hop cut", ipv6(0, "2001:db8::2", "2001:db8::9", hopByHop[:6]), packetInfo{Proto: "udp", Src: a4("2001:db8::2"), Dst: a4("2001:db8::9")}, ""},
		{"ipv6 header cut", ipv6(protoTCP, "2001:db8::2", "2001:db8::9", nil)[:39], packetInfo{}, "shorter than its IP header"},
		{"empty", nil, packetInfo{}, "shorter than its IP header"},
		{"not ip", []byte{0x25, 0, 0, 0}, packetInfo{}, "not an IP packet (version 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePacket(tt.pkt)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseNFLOGGolden decodes NFLOG messages captured from the kernel (Linux 6.18, the
// ruleset of watch_traffic_test.go: a blocked TCP SYN, a blocked UDP/IPv6 datagram, a private
// ping, a multicast listener report behind a hop-by-hop header, and the NLMSG_DONE that ends a
// batch) into events.
func TestParseNFLOGGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/watch/*.hex")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures: %v", err)
	}
	now := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".hex")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
			if err != nil {
				t.Fatal(err)
			}
			var m netlink.Message
			if err := m.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			p, ok, err := parseNFLOG(m)
			switch {
			case err != nil:
				fmt.Fprintf(&out, "error: %v\n", err)
			case !ok:
				fmt.Fprintf(&out, "not a packet (type %#x)\n", uint16(m.Header.Type))
			default:
				fmt.Fprintf(&out, "family %d hook %d prefix %q payload %d bytes\n", p.Family, p.Hook, p.Prefix, len(p.Payload))
				ev, ok := eventOf(p, now)
				if !ok {
					fmt.Fprintln(&out, "no event")
					break
				}
				j, err := json.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				out.Write(append(j, '\n'))
			}
			golden(t, filepath.Join("watch", name+".golden"), out.String())
		})
	}
}

func TestParseNFLOGMalformed(t *testing.T) {
	typ := netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgPacket)
	tests := []struct {
		name string
		data []byte
		err  string
	}{
		{"no nfgenmsg", []byte{2, 0}, "shorter than its nfgenmsg header"},
		{"attribute overruns", []byte{2, 0, 0, 100, 8, 0, 10, 0, 'T'}, "nflog:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ok, err := parseNFLOG(netlink.Message{Header: netlink.Header{Type: typ}, Data: tt.data})
			if !ok || err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ok %v, err %v; want %q", ok, err, tt.err)
			}
		})
	}
}

// TestParseNFLOGInput covers what the output-path captures lack: a packet timestamp and the
// input hook (a denied source).
func TestParseNFLOGInput(t *testing.T) {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(nfulaPacketHdr, []byte{0x08, 0x00, nfInetLocalIn, 0})
	ts := make([]byte, 16)
	binary.BigEndian.PutUint64(ts, 1796403600)
	binary.BigEndian.PutUint64(ts[8:], 250000)
	ae.Bytes(nfulaTimestamp, ts)
	ae.Bytes(nfulaPrefix, []byte("TEROK_SHIELD_DENIED: \x00"))
	ae.Bytes(nfulaPayload, ipv4(protoTCP, "192.0.2.40", "203.0.113.2", ports(443, 50000, 20)))
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgPacket)}, Data: append([]byte{2, 0, 0, 100}, attrs...)}
	p, ok, err := parseNFLOG(m)
	if err != nil || !ok {
		t.Fatalf("parse: %v %v", ok, err)
	}
	ev, ok := eventOf(p, time.Now())
	if !ok {
		t.Fatal("no event")
	}
	want := WatchEvent{TS: time.Unix(1796403600, 250000000).UTC(), Action: "denied", Dir: "in", Proto: "tcp",
		Src: netip.MustParseAddr("192.0.2.40"), Dst: netip.MustParseAddr("203.0.113.2"), SPort: 443, DPort: 50000}
	if diff := cmp.Diff(want, ev, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := ev.remote(); got != want.Src {
		t.Errorf("remote end of an input packet = %v, want the source", got)
	}
}

func TestActionOf(t *testing.T) {
	tests := map[string]string{
		"TEROK_SHIELD_ALLOWED: ": "allowed", "TEROK_SHIELD_DENIED: ": "denied", "TEROK_SHIELD_BLOCKED: ": "blocked",
		"TEROK_SHIELD_PRIVATE: ": "private", "TEROK_SHIELD_BYPASS: ": "bypass", "TEROK_SHIELD_BYPASS:": "bypass",
		"": "", "OTHER: ": "", "TEROK_SHIELD_": "",
	}
	for in, want := range tests {
		if got := actionOf(in); got != want {
			t.Errorf("actionOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDnsmasqLine(t *testing.T) {
	const p = "Dec  4 17:44:03 dnsmasq[28669]: "
	tests := []struct {
		line, addr, name string
	}{
		{p + "reply example.com is 192.0.2.7", "192.0.2.7", "example.com"},
		{p + "cached Example.COM is 2001:db8::7", "2001:db8::7", "example.com"},
		{p + "config allowed.test is 198.18.0.10", "198.18.0.10", "allowed.test"},
		{p + "reply mapped.test is ::ffff:192.0.2.8", "192.0.2.8", "mapped.test"},
		{p + "nftset add 4 inet terok_shield learned_v4 198.18.0.10 allowed.test", "198.18.0.10", "allowed.test"},
		{p + "nftset add 6 inet terok_shield learned_v6 2001:db8::30 v6.test", "2001:db8::30", "v6.test"},
		{"Dec  4 17:44:03 dnsmasq[1]: 12 127.0.0.1/45678 reply extra.test is 192.0.2.9", "192.0.2.9", "extra.test"}, // log-queries=extra
		{p + "reply www.example.com is <CNAME>", "", ""},
		{p + "reply gone.test is NXDOMAIN", "", ""},
		{p + "reply v4only.test is NODATA-IPv6", "", ""},
		{p + "query[A] example.com from 127.0.0.1", "", ""},
		{p + "forwarded example.com to 192.0.2.53", "", ""},
		{p + "started, version 2.90 cachesize 150", "", ""},
		{"reply example.com is 192.0.2.7", "", ""}, // no dnsmasq prefix
		{p + "reply is 192.0.2.7", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		a, name, ok := parseDnsmasqLine(tt.line)
		if tt.addr == "" {
			if ok {
				t.Errorf("%q: got %v %q, want nothing", tt.line, a, name)
			}
			continue
		}
		if !ok || a != netip.MustParseAddr(tt.addr) || name != tt.name {
			t.Errorf("%q: got %v %q %v, want %s %s", tt.line, a, name, ok, tt.addr, tt.name)
		}
	}
}

func TestDomainMapBounded(t *testing.T) {
	m := newDomainMap(3)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := range 5 {
		m.set(addr(i), fmt.Sprintf("n%d.test", i))
	}
	m.set(addr(4), "renamed.test")
	got := map[string]string{}
	for i := range 5 {
		got[addr(i).String()] = m.get(addr(i))
	}
	want := map[string]string{"192.0.2.0": "", "192.0.2.1": "", "192.0.2.2": "n2.test", "192.0.2.3": "n3.test", "192.0.2.4": "renamed.test"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(m.names) != 3 {
		t.Errorf("map holds %d names, want 3", len(m.names))
	}
	if got := m.get(netip.MustParseAddr("::ffff:192.0.2.3")); got != "n3.test" {
		t.Errorf("mapped lookup = %q", got)
	}
}

func TestDomainTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dnsmasq.log")
	tail := newDomainTail(func() (*os.File, error) { return os.Open(path) })
	defer tail.Close()
	a := netip.MustParseAddr("192.0.2.7")
	b := netip.MustParseAddr("192.0.2.8")
	write := func(flag int, s string) {
		t.Helper()
		f, err := os.OpenFile(path, flag|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	const p = "Dec  4 17:44:03 dnsmasq[1]: "
	if got := tail.lookup(a); got != "" {
		t.Fatalf("no log yet: %q", got)
	}
	write(os.O_APPEND, p+"reply a.test is 192.0.2.7\n"+p+"reply b.te")
	if got := tail.lookup(a); got != "a.test" {
		t.Fatalf("after the first lines: %q", got)
	}
	if got := tail.lookup(b); got != "" {
		t.Fatalf("a partly written line counted: %q", got)
	}
	write(os.O_APPEND, "st is 192.0.2.8\n")
	if got := tail.lookup(b); got != "b.test" {
		t.Fatalf("completed line: %q", got)
	}
	write(os.O_TRUNC, p+"reply c.test is 192.0.2.7\n") // truncated, then written again
	if got := tail.lookup(a); got != "c.test" {
		t.Fatalf("after truncation: %q", got)
	}
}

func TestDomainTailStartsNearTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dnsmasq.log")
	const p = "Dec  4 17:44:03 dnsmasq[1]: "
	var log strings.Builder
	log.WriteString(p + "reply old.test is 192.0.2.1\n")
	for log.Len() < domainTailStart+100 {
		log.WriteString(p + "query[A] filler.test from 127.0.0.1\n")
	}
	log.WriteString(p + "reply new.test is 192.0.2.2\n")
	if err := os.WriteFile(path, []byte(log.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	tail := newDomainTail(func() (*os.File, error) { return os.Open(path) })
	defer tail.Close()
	if got := tail.lookup(netip.MustParseAddr("192.0.2.2")); got != "new.test" {
		t.Errorf("recent name: %q", got)
	}
	if got := tail.lookup(netip.MustParseAddr("192.0.2.1")); got != "" {
		t.Errorf("name from before the start window: %q", got)
	}
}
