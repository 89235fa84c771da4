// SPDX-License-Identifier: Apache-2.0

package profiles

import (
	"net/netip"
	"slices"
)

// privateRanges lists private and special-purpose ranges. The nft package
// rejects traffic to the same list unless explicitly allowed. The
// documentation ranges and the benchmarking range 198.18.0.0/15 are
// deliberately absent (see nft.PrivateRanges). It is built from literals
// (no parsing) because it is consulted for every prefix of a profile.
func privateRanges() [23]netip.Prefix {
	v4 := func(a, b, c, d byte, bits int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{a, b, c, d}), bits)
	}
	v6 := func(hi uint64, bits int) netip.Prefix {
		var b [16]byte
		for i := range 8 {
			b[i] = byte(hi >> (56 - 8*i))
		}
		return netip.PrefixFrom(netip.AddrFrom16(b), bits)
	}
	return [23]netip.Prefix{
		v4(0, 0, 0, 0, 8),
		v4(10, 0, 0, 0, 8),
		v4(100, 64, 0, 0, 10),
		v4(127, 0, 0, 0, 8),
		v4(169, 254, 0, 0, 16),
		v4(172, 16, 0, 0, 12),
		v4(192, 0, 0, 0, 24),
		v4(192, 168, 0, 0, 16),
		v4(224, 0, 0, 0, 4),
		v4(240, 0, 0, 0, 4),
		v6(0, 128),                                  // ::/128
		netip.PrefixFrom(netip.IPv6Loopback(), 128), // ::1/128
		netip.PrefixFrom(netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff}), 96), // ::ffff:0:0/96
		v6(0, 96),                     // ::/96
		v6(0x0064_ff9b_0000_0000, 96), // 64:ff9b::/96
		v6(0x0064_ff9b_0001_0000, 48), // 64:ff9b:1::/48
		v6(0x0100_0000_0000_0000, 64), // 100::/64
		v6(0x2001_0000_0000_0000, 32), // 2001::/32
		v6(0x2002_0000_0000_0000, 16), // 2002::/16
		v6(0xfc00_0000_0000_0000, 7),  // fc00::/7
		v6(0xfe80_0000_0000_0000, 10), // fe80::/10
		v6(0xfec0_0000_0000_0000, 10), // fec0::/10
		v6(0xff00_0000_0000_0000, 8),  // ff00::/8
	}
}

// PrivateRanges returns the private and special-purpose ranges used by
// [IsPrivate], in a fresh slice.
func PrivateRanges() []netip.Prefix {
	r := privateRanges()
	return r[:]
}

// IsPrivate reports whether p overlaps a private or special-purpose range.
func IsPrivate(p netip.Prefix) bool {
	r := privateRanges()
	return isPrivateIn(p, &r)
}

func isPrivateIn(p netip.Prefix, ranges *[23]netip.Prefix) bool {
	for _, r := range ranges {
		if r.Overlaps(p) {
			return true
		}
	}
	return false
}

// IsBroad reports whether p is shorter than /8 (IPv4) or /32 (IPv6).
func IsBroad(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() < 8
	}
	return p.Bits() < 32
}

// Notice reasons.
const (
	ReasonPrivate = "private range"
	ReasonBroad   = "broad prefix"
)

// noticeReason returns the notice reason for e, or "".
func noticeReason(e Entry, ranges *[23]netip.Prefix) string {
	if e.Kind != Prefix {
		return ""
	}
	if IsBroad(e.Prefix) {
		return ReasonBroad
	}
	if isPrivateIn(e.Prefix, ranges) {
		return ReasonPrivate
	}
	return ""
}

// ComparePrefix orders prefixes: IPv4 before IPv6, then by address, then
// shorter prefixes first.
func ComparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// MergePrefixes returns the masked prefixes sorted with [ComparePrefix],
// without duplicates and without prefixes contained in another one, and
// with adjacent sibling prefixes joined into their parent. The result
// covers exactly the same addresses as the input. The input is not
// modified.
func MergePrefixes(in []netip.Prefix) []netip.Prefix {
	ps := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if p.IsValid() {
			ps = append(ps, p.Masked())
		}
	}
	slices.SortFunc(ps, ComparePrefix)
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Contains(p.Addr()) && out[n-1].Bits() <= p.Bits() && out[n-1].Addr().Is4() == p.Addr().Is4() {
			continue
		}
		out = append(out, p)
		for len(out) >= 2 {
			a, b := out[len(out)-2], out[len(out)-1]
			if a.Bits() != b.Bits() || a.Bits() == 0 || a.Addr().Is4() != b.Addr().Is4() {
				break
			}
			parent, _ := a.Addr().Prefix(a.Bits() - 1)
			if parent.Addr() != a.Addr() || !parent.Contains(b.Addr()) {
				break
			}
			out = append(out[:len(out)-2], parent)
		}
	}
	return slices.Clip(out)
}
