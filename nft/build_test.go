// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"encoding/binary"
	"flag"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.nft golden files")

func TestParseMode(t *testing.T) {
	for _, m := range allModes {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v, want %v", m.String(), got, err, m)
		}
	}
	for _, s := range []string{"", "UP", "inactive", "bypass", "down-all"} {
		if got, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) = %v, want error", s, got)
		}
	}
}

func TestBuildValidation(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name    string
		p       Policy
		wantErr string // empty: must succeed
	}{
		{"zero policy", Policy{}, ""},
		{"zero prefix", Policy{Allow: []netip.Prefix{{}}}, "allow entry 0: invalid prefix"},
		{"host bits set", Policy{Allow: []netip.Prefix{pfx("10.1.2.3/8")}}, "host bits set (canonical form 10.0.0.0/8)"},
		{"default route allow", Policy{Allow: []netip.Prefix{pfx("0.0.0.0/0")}}, "zero-length prefix"},
		{"default route deny v6", Policy{Deny: []netip.Prefix{pfx("::/0")}}, "deny entry 0"},
		{"zone stripped by netip", Policy{Allow: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("fe80::1%eth0"), 128)}}, ""},
		{"mapped short", Policy{Allow: []netip.Prefix{pfx("::ffff:0.0.0.0/95")}}, "host bits set"},
		{"mapped prefix", Policy{Allow: []netip.Prefix{pfx("::ffff:198.51.100.0/120")}}, ""},
		{"mapped ok", Policy{Allow: []netip.Prefix{pfx("::ffff:203.0.113.1/128")}}, ""},
		{"port zero", Policy{HostPorts: []uint16{0}}, "host port 0"},
		{"upstream unspecified", Policy{Upstreams: []netip.Addr{netip.IPv4Unspecified()}}, "unspecified address"},
		{"upstream zero", Policy{Upstreams: []netip.Addr{{}}}, "upstream 0: invalid address"},
		{"gateway zone", Policy{HostGateways: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}}, "zones are not allowed"},
		{"timeout negative", Policy{LearnedTimeout: -time.Second}, "learned timeout"},
		{"timeout fractional", Policy{LearnedTimeout: 1500 * time.Millisecond}, "whole number of seconds"},
		{"timeout huge", Policy{LearnedTimeout: 10000 * time.Hour}, "outside"},
		{"mode unknown", Policy{Mode: ModeInactive}, "unknown mode"},
		{"mode out of range", Policy{Mode: 42}, "unknown mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.p)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Build(%+v) = %v, want success", tc.p, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Build(%+v) = %v, want error containing %q", tc.p, err, tc.wantErr)
			}
		})
	}
}

func TestBuildNormalises(t *testing.T) {
	r, err := Build(Policy{
		Allow: prefixes("::ffff:203.0.113.1", "203.0.113.1", "198.51.100.0/25", "198.51.100.128/25", "198.51.100.7"),
		Deny:  prefixes("192.0.2.0/24", "192.0.2.9", "192.0.2.0/25"),
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	got := map[string][]string{}
	for _, s := range r.sets {
		got[s.name] = elementStrings(s)
	}
	want := map[string][]string{
		SetAllowV4: {"198.51.100.7", "203.0.113.1"}, SetAllowNetV4: {"198.51.100.0/24"},
		SetDenyV4:  {"192.0.2.0/24"},
		SetAllowV6: nil, SetAllowNetV6: nil, SetDenyV6: nil, SetLearnedV4: nil, SetLearnedV6: nil,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("set elements (-want +got):\n%s", diff)
	}
}

func TestGolden(t *testing.T) {
	cases := map[string]Policy{
		"up":       samplePolicy(ModeUp),
		"down":     samplePolicy(ModeDown),
		"down_all": samplePolicy(ModeDownAll),
		"block":    samplePolicy(ModeBlock),
		"up_empty": {},
		"up_custom": {Mode: ModeUp, ResolverMark: 0x42, LogGroup: 7, LearnedTimeout: 90 * time.Minute,
			Upstreams: []netip.Addr{netip.MustParseAddr("10.0.2.3")}},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			got := mustBuild(t, p).String()
			golden.Check(t, filepath.Join("testdata", name+".nft"), got, *update)
		})
	}
}

func TestPrivateRanges(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true}, {"127.0.0.1", true}, {"169.254.169.254", true}, {"100.64.0.1", true},
		{"172.31.255.255", true}, {"172.32.0.0", false}, {"198.19.255.255", false}, {"224.0.0.1", true},
		{"255.255.255.255", true}, {"0.1.2.3", true}, {"192.0.0.8", true},
		{"192.0.2.1", false}, {"198.51.100.1", false}, {"203.0.113.1", false}, {"8.8.8.8", false},
		{"::", true}, {"::1", true}, {"::ffff:8.8.8.8", true}, {"::8.8.8.8", true}, {"64:ff9b::8.8.8.8", true},
		{"64:ff9b:1::1", true}, {"100::1", true}, {"2001::1", true}, {"2002:808:808::1", true},
		{"fd00::1", true}, {"fe80::1", true}, {"fec0::1", true}, {"ff02::1", true},
		{"2001:db8::1", false}, {"2606:4700::1111", false}, {"fe80::1%eth0", true},
	}
	for _, tc := range tests {
		if got := IsPrivate(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("IsPrivate(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	ps := PrivateRanges()
	ps[0] = netip.Prefix{}
	if PrivateRanges()[0] != netip.MustParsePrefix("0.0.0.0/8") {
		t.Errorf("PrivateRanges returned the internal slice")
	}
}

func TestRangeMath(t *testing.T) {
	r := func(lo, hi string) addrRange { return addrRange{netip.MustParseAddr(lo), netip.MustParseAddr(hi)} }
	got := rangeStrings(mergeRanges([]addrRange{
		r("10.0.0.0", "10.0.0.255"), r("10.0.1.0", "10.0.1.255"), r("10.0.0.5", "10.0.0.5"),
		r("255.255.255.0", "255.255.255.255"), r("255.255.254.0", "255.255.255.0"), r("1.0.0.0", "1.0.0.2"),
	}))
	if diff := cmp.Diff([]string{"1.0.0.0-1.0.0.2", "10.0.0.0/23", "255.255.254.0/23"}, got); diff != "" {
		t.Errorf("mergeRanges (-want +got):\n%s", diff)
	}
	sub := rangeStrings(subtractRanges([]addrRange{r("10.0.0.0", "10.0.0.255")}, []addrRange{r("10.0.0.0", "10.0.0.0"), r("10.0.0.128", "10.0.0.255")}))
	if diff := cmp.Diff([]string{"10.0.0.1-10.0.0.127"}, sub); diff != "" {
		t.Errorf("subtractRanges (-want +got):\n%s", diff)
	}
	var ps []string
	for _, p := range rangePrefixes(r("10.0.0.1", "10.0.0.127")) {
		ps = append(ps, p.String())
	}
	want := []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.8/29", "10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26"}
	if diff := cmp.Diff(want, ps); diff != "" {
		t.Errorf("rangePrefixes (-want +got):\n%s", diff)
	}
	if got := rangePrefixes(r("0.0.0.0", "255.255.255.255")); len(got) != 1 || got[0].Bits() != 0 {
		t.Errorf("rangePrefixes(all) = %v, want [0.0.0.0/0]", got)
	}
}

func TestElemPayloadsKeepIntervalPairs(t *testing.T) {
	rs := make([]addrRange, 5000)
	for i := range rs {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(i)*4+0x0a000000)
		lo := netip.AddrFrom4(b)
		rs[i] = addrRange{lo, lo.Next()}
	}
	payloads := elemPayloads(setSpec{name: SetDenyV4, kind: setInterval, ranges: rs})
	if len(payloads) < 2 {
		t.Fatalf("elemPayloads: %d payloads, want several", len(payloads))
	}
	total := 0
	for i, p := range payloads {
		attrs, err := netlink.UnmarshalAttributes(p[4:])
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		var names []string
		for _, a := range attrs {
			switch a.Type & ^uint16(unix.NLA_F_NESTED) {
			case unix.NFTA_SET_ELEM_LIST_TABLE, unix.NFTA_SET_ELEM_LIST_SET:
				names = append(names, strings.TrimRight(string(a.Data), "\x00"))
			case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
				elems, err := netlink.UnmarshalAttributes(a.Data)
				if err != nil {
					t.Fatalf("payload %d elements: %v", i, err)
				}
				if len(elems)%2 != 0 || len(a.Data) > msgBudget+64 {
					t.Errorf("payload %d: %d elements in %d bytes, want pairs within the budget", i, len(elems), len(a.Data))
				}
				total += len(elems)
			}
		}
		if diff := cmp.Diff([]string{TableName, SetDenyV4}, names); diff != "" {
			t.Errorf("payload %d names (-want +got):\n%s", i, diff)
		}
	}
	if total != 10_000 {
		t.Errorf("elemPayloads encoded %d elements, want 10000", total)
	}
	txs := groupPayloads(payloads, 3*msgBudget)
	n := 0
	for _, tx := range txs {
		n += len(tx)
	}
	if n != len(payloads) || len(txs) < 2 {
		t.Errorf("groupPayloads: %d payloads in %d transactions, want %d in several", n, len(txs), len(payloads))
	}
}

// safeText is what rendered text may consist of: the grammar's keywords,
// addresses, numbers and the fixed log prefixes.
var safeLine = regexp.MustCompile(`^[\t ]*([a-z0-9_:./,{}@;" =\-]|TEROK_SHIELD_[A-Z]+: )*$`)

func FuzzBuild(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 8, 192, 0, 2, 1, 32}, uint16(8080), uint8(0))
	f.Add([]byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 64}, uint16(1), uint8(3))
	f.Add([]byte{}, uint16(0), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, port uint16, mode uint8) {
		p := Policy{Mode: Mode(mode % 6), HostPorts: []uint16{port}, HostGateways: []netip.Addr{netip.MustParseAddr("10.0.2.2")}}
		for len(data) > 0 {
			n := 5
			if data[0]&1 == 1 {
				n = 17
			}
			if len(data) < n {
				break
			}
			a, _ := netip.AddrFromSlice(data[:n-1])
			pr := netip.PrefixFrom(a, int(data[n-1])%140)
			if data[0]&2 == 0 {
				p.Allow = append(p.Allow, pr)
			} else {
				p.Deny = append(p.Deny, pr)
			}
			data = data[n:]
		}
		r, err := Build(p)
		if err != nil {
			return
		}
		text := r.String()
		for _, line := range strings.Split(text, "\n") {
			if !safeLine.MatchString(line) {
				t.Fatalf("rendered line outside the grammar: %q", line)
			}
		}
		if strings.Count(text, "table inet terok_shield {") != 1 || !strings.HasSuffix(text, "}\n") {
			t.Fatalf("malformed table text:\n%s", text)
		}
	})
}
