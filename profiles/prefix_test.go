// SPDX-License-Identifier: Apache-2.0

package profiles

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestMergePrefixes(t *testing.T) {
	tests := []struct {
		name    string
		in, out []netip.Prefix
	}{
		{"empty", nil, []netip.Prefix{}},
		{"dup", prefixes("192.0.2.1/32", "192.0.2.1/32"), prefixes("192.0.2.1/32")},
		{"contained", prefixes("192.0.2.7/32", "192.0.2.0/24", "192.0.2.128/25"), prefixes("192.0.2.0/24")},
		{"siblings", prefixes("192.0.2.0/25", "192.0.2.128/25"), prefixes("192.0.2.0/24")},
		{"cascade", prefixes("10.0.0.3/32", "10.0.0.0/32", "10.0.0.2/31", "10.0.0.1/32"), prefixes("10.0.0.0/30")},
		{"not siblings", prefixes("10.0.0.1/32", "10.0.0.2/32"), prefixes("10.0.0.1/32", "10.0.0.2/32")},
		{"unmasked", prefixes("10.1.2.3/8"), prefixes("10.0.0.0/8")},
		{"families", prefixes("::/0", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::/32"), prefixes("0.0.0.0/0", "::/0")},
		{"v6 siblings", prefixes("2001:db8::/33", "2001:db8:8000::/33"), prefixes("2001:db8::/32")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MergePrefixes(tt.in)
			if diff := cmp.Diff(tt.out, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("MergePrefixes(%v) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestMergePrefixesCoverage checks on random inputs inside a small space
// that merging keeps exactly the covered addresses and leaves no overlap.
func TestMergePrefixesCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 500 {
		var in []netip.Prefix
		for range 1 + rng.IntN(12) {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(256))})
			in = append(in, netip.PrefixFrom(a, 24+rng.IntN(9)).Masked())
		}
		out := MergePrefixes(in)
		for i := range 256 {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
			inCount, outCount := 0, 0
			for _, p := range in {
				if p.Contains(a) {
					inCount = 1
				}
			}
			for _, p := range out {
				if p.Contains(a) {
					outCount++
				}
			}
			if inCount != min(outCount, 1) || outCount > 1 {
				t.Fatalf("iteration %d: MergePrefixes(%v) = %v: %v covered %d times, want %d", iter, in, out, a, outCount, inCount)
			}
		}
		for i := 1; i < len(out); i++ {
			a, b := out[i-1], out[i]
			if a.Bits() == b.Bits() && a.Bits() > 0 {
				parent, _ := a.Addr().Prefix(a.Bits() - 1)
				if parent.Addr() == a.Addr() && parent.Contains(b.Addr()) {
					t.Fatalf("iteration %d: MergePrefixes(%v) = %v leaves siblings %v %v", iter, in, out, a, b)
				}
			}
		}
	}
}

func TestIsPrivate(t *testing.T) {
	tests := []struct {
		p              string
		private, broad bool
	}{
		{"10.1.2.3/32", true, false},
		{"169.254.169.254/32", true, false},
		{"100.64.0.1/32", true, false},
		{"127.0.0.1/32", true, false},
		{"224.0.0.1/32", true, false},
		{"8.8.8.8/32", false, false},
		{"192.0.2.1/32", false, false},
		{"198.51.100.0/24", false, false},
		{"203.0.113.9/32", false, false},
		{"2001:db8::1/128", false, false},
		{"0.0.0.0/0", true, true},
		{"8.0.0.0/7", false, true},
		{"11.0.0.0/8", false, false},
		{"::1/128", true, false},
		{"fd00::1/128", true, false},
		{"fe80::1/128", true, false},
		{"64:ff9b::808:808/128", true, false},
		{"2002::/16", true, true},
		{"2606:4700::/32", false, false},
		{"2606::/16", false, true},
		{"ff02::1/128", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.p, func(t *testing.T) {
			p := netip.MustParsePrefix(tt.p)
			if got := IsPrivate(p); got != tt.private {
				t.Errorf("IsPrivate(%v) = %v, want %v", p, got, tt.private)
			}
			if got := IsBroad(p); got != tt.broad {
				t.Errorf("IsBroad(%v) = %v, want %v", p, got, tt.broad)
			}
		})
	}
	want := []string{"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128",
		"::ffff:0.0.0.0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2002::/16",
		"fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"}
	var got []string
	for _, p := range PrivateRanges() {
		got = append(got, p.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PrivateRanges() mismatch (-want +got):\n%s", diff)
	}
}
