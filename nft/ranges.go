// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"net/netip"
	"slices"
)

// addrRange is an inclusive address range of a single family, the unit an
// interval set stores.
type addrRange struct{ lo, hi netip.Addr }

// contains reports whether a lies in r (same family).
func (r addrRange) contains(a netip.Addr) bool {
	return a.Is4() == r.lo.Is4() && r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0
}

func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	return addrRange{lo: p.Addr(), hi: lastAddr(p)}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// mergeRanges sorts rs and merges overlapping and adjacent ranges, as nft's
// auto-merge does. It never fails: overlap is resolved here, not by the kernel.
func mergeRanges(rs []addrRange) []addrRange {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		next := last.hi.Next() // invalid when last.hi is the family's last address
		if !next.IsValid() || r.lo.Compare(next) <= 0 {
			if r.hi.Compare(last.hi) > 0 {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtractRanges returns rs minus every range in del.
func subtractRanges(rs, del []addrRange) []addrRange {
	out := slices.Clone(rs)
	for _, d := range del {
		var next []addrRange
		for _, r := range out {
			if d.hi.Compare(r.lo) < 0 || d.lo.Compare(r.hi) > 0 {
				next = append(next, r)
				continue
			}
			if r.lo.Compare(d.lo) < 0 {
				next = append(next, addrRange{r.lo, d.lo.Prev()})
			}
			if d.hi.Compare(r.hi) < 0 {
				next = append(next, addrRange{d.hi.Next(), r.hi})
			}
		}
		out = next
	}
	return out
}

// covers reports whether the merged, sorted ranges rs contain all of r.
func covers(rs []addrRange, r addrRange) bool {
	for _, x := range rs {
		if x.lo.Compare(r.lo) <= 0 && x.hi.Compare(r.hi) >= 0 {
			return true
		}
	}
	return false
}

// prefix returns the range as a prefix when it is exactly one.
func (r addrRange) prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= r.lo.BitLen(); bits++ {
		p := netip.PrefixFrom(r.lo, bits)
		if p.Masked().Addr() == r.lo && lastAddr(p) == r.hi {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// String renders the range in nft syntax: address, prefix, or lo-hi.
func (r addrRange) String() string {
	if r.lo == r.hi {
		return r.lo.String()
	}
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.lo.String() + "-" + r.hi.String()
}
