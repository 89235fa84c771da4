// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Mode selects which ruleset shape Build produces.
type Mode uint8

// The shield modes. ModeUp is the default-deny enforce mode.
const (
	ModeUp      Mode = iota // enforce: default deny, allow sets, learned sets
	ModeDown                // bypass: policy accept, deny + private ranges still enforced
	ModeDownAll             // bypass all: policy accept, only deny sets enforced
	ModeBlock               // block: everything but loopback and established flows dropped
	// ModeInactive is what Inspect reports when the table does not exist.
	// Build rejects it and ParseMode does not accept it.
	ModeInactive
)

var modeNames = [...]string{ModeUp: "up", ModeDown: "down", ModeDownAll: "down_all", ModeBlock: "block", ModeInactive: "inactive"}

// String returns the mode's name as used on the command line and in state files.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses the name returned by Mode.String.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if n == s && Mode(i) != ModeInactive {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("parse mode %q: unknown mode (want up, down, down_all or block)", s)
}

// Defaults applied by Build when the corresponding Policy field is zero.
const (
	DefaultResolverMark   uint32        = 0x5e1d
	DefaultLearnedTimeout time.Duration = 30 * time.Minute
	DefaultLogGroup       uint16        = 100
	// MaxElements bounds the number of allow plus deny entries one Policy may carry.
	MaxElements = 1 << 20
)

// Policy is everything Build needs to produce a container's ruleset.
type Policy struct {
	Mode           Mode
	Allow          []netip.Prefix // operator+profile; single addresses are /32 or /128; permanent
	Deny           []netip.Prefix
	Upstreams      []netip.Addr // resolver upstream(s), reachable only with ResolverMark
	ResolverMark   uint32       // DefaultResolverMark when zero
	HostGateways   []netip.Addr // addresses that map to the host's loopback (slirp 10.0.2.2, pasta 169.254.1.2)
	HostPorts      []uint16     // tcp ports on HostGateways the operator allows
	LearnedTimeout time.Duration
	LogGroup       uint16
}

// privateV4 and privateV6 are the special-purpose ranges the enforce and
// bypass rulesets reject unless an allow set matched first.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// PrivateRanges returns the private and special-purpose ranges that the
// ruleset rejects (log prefix TEROK_SHIELD_PRIVATE) unless explicitly allowed.
// Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32) and the benchmarking ranges 198.18.0.0/15 and 2001:2::/48
// are deliberately not included: they are not host- or site-internal, and the
// test networks use them as public stand-ins (dnsmasq's rebind protection
// drops answers in the documentation ranges, so DNS-learned test
// destinations live in the benchmarking ranges).
func PrivateRanges() []netip.Prefix { return slices.Clone(privateRanges) }

// IsPrivate reports whether a lies in one of PrivateRanges. IPv4-mapped IPv6
// addresses are private as a whole (::ffff:0:0/96).
func IsPrivate(a netip.Addr) bool {
	a = a.WithZone("")
	for _, p := range privateRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// normPrefix validates p and returns it with IPv4-mapped IPv6 turned into IPv4.
func normPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("invalid prefix")
	}
	a := p.Addr()
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("prefix %s: zones are not allowed", p)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("prefix %s: host bits set (canonical form %s)", p, p.Masked())
	}
	if a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("prefix %s: IPv4-mapped prefix shorter than /96", p)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("prefix %s: zero-length prefix would match every address", p)
	}
	return p, nil
}

// normAddr validates a and returns it with IPv4-mapped IPv6 turned into IPv4.
func normAddr(a netip.Addr) (netip.Addr, error) {
	if !a.IsValid() {
		return netip.Addr{}, errors.New("invalid address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %s: zones are not allowed", a)
	}
	a = a.Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("address %s: unspecified address", a)
	}
	return a, nil
}

// normalized is a validated Policy with defaults applied and entries split by family.
type normalized struct {
	Policy
	allow4, allow6       []netip.Addr // single addresses, sorted, unique
	allowNet4, allowNet6 []addrRange  // merged ranges
	deny4, deny6         []addrRange  // merged ranges
	upstreams            []netip.Addr // sorted, unique
	gateways             []netip.Addr // sorted, unique
	ports                []uint16     // sorted, unique
}

func normalize(p Policy) (*normalized, error) {
	if p.Mode > ModeBlock {
		return nil, fmt.Errorf("validate policy: unknown mode %d", p.Mode)
	}
	if n := len(p.Allow) + len(p.Deny); n > MaxElements {
		return nil, fmt.Errorf("validate policy: %d allow+deny entries exceed the limit of %d", n, MaxElements)
	}
	if p.ResolverMark == 0 {
		p.ResolverMark = DefaultResolverMark
	}
	if p.LogGroup == 0 {
		p.LogGroup = DefaultLogGroup
	}
	switch {
	case p.LearnedTimeout == 0:
		p.LearnedTimeout = DefaultLearnedTimeout
	case p.LearnedTimeout < time.Second || p.LearnedTimeout > 30*24*time.Hour:
		return nil, fmt.Errorf("validate policy: learned timeout %s outside 1s..720h", p.LearnedTimeout)
	case p.LearnedTimeout%time.Second != 0:
		return nil, fmt.Errorf("validate policy: learned timeout %s is not a whole number of seconds", p.LearnedTimeout)
	}
	n := &normalized{Policy: p}
	var net4, net6, deny4, deny6 []addrRange
	for i, a := range p.Allow {
		q, err := normPrefix(a)
		if err != nil {
			return nil, fmt.Errorf("validate policy: allow entry %d: %w", i, err)
		}
		switch {
		case q.IsSingleIP() && q.Addr().Is4():
			n.allow4 = append(n.allow4, q.Addr())
		case q.IsSingleIP():
			n.allow6 = append(n.allow6, q.Addr())
		case q.Addr().Is4():
			net4 = append(net4, prefixRange(q))
		default:
			net6 = append(net6, prefixRange(q))
		}
	}
	for i, d := range p.Deny {
		q, err := normPrefix(d)
		if err != nil {
			return nil, fmt.Errorf("validate policy: deny entry %d: %w", i, err)
		}
		if q.Addr().Is4() {
			deny4 = append(deny4, prefixRange(q))
		} else {
			deny6 = append(deny6, prefixRange(q))
		}
	}
	n.allow4, n.allow6 = sortedUnique(n.allow4), sortedUnique(n.allow6)
	n.allowNet4, n.allowNet6 = mergeRanges(net4), mergeRanges(net6)
	n.deny4, n.deny6 = mergeRanges(deny4), mergeRanges(deny6)
	for i, u := range p.Upstreams {
		a, err := normAddr(u)
		if err != nil {
			return nil, fmt.Errorf("validate policy: upstream %d: %w", i, err)
		}
		n.upstreams = append(n.upstreams, a)
	}
	for i, g := range p.HostGateways {
		a, err := normAddr(g)
		if err != nil {
			return nil, fmt.Errorf("validate policy: host gateway %d: %w", i, err)
		}
		n.gateways = append(n.gateways, a)
	}
	for _, port := range p.HostPorts {
		if port == 0 {
			return nil, errors.New("validate policy: host port 0 is not a valid tcp port")
		}
		n.ports = append(n.ports, port)
	}
	n.upstreams, n.gateways = sortedUnique(n.upstreams), sortedUnique(n.gateways)
	slices.Sort(n.ports)
	n.ports = slices.Compact(n.ports)
	return n, nil
}

func sortedUnique(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, netip.Addr.Compare)
	return slices.Compact(a)
}
