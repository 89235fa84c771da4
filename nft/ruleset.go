// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the one table this package owns, in the inet family.
const TableName = "terok_shield"

// Set names.
const (
	SetAllowV4    = "allow_v4"
	SetAllowV6    = "allow_v6"
	SetAllowNetV4 = "allow_net_v4"
	SetAllowNetV6 = "allow_net_v6"
	SetLearnedV4  = "learned_v4"
	SetLearnedV6  = "learned_v6"
	SetDenyV4     = "deny_v4"
	SetDenyV6     = "deny_v6"
)

// Log prefixes, each followed by ": " in the rules.
const (
	PrefixBlocked = "TEROK_SHIELD_BLOCKED: "
	PrefixDenied  = "TEROK_SHIELD_DENIED: "
	PrefixPrivate = "TEROK_SHIELD_PRIVATE: "
	PrefixAllowed = "TEROK_SHIELD_ALLOWED: "
	PrefixBypass  = "TEROK_SHIELD_BYPASS: "
)

// setKind is how a named set stores its elements.
type setKind uint8

const (
	setHash     setKind = iota // single addresses, permanent
	setInterval                // ranges, auto-merged in Go
	setTimeout                 // single addresses with a default timeout
)

// setSpec is one named set of the ruleset.
type setSpec struct {
	name    string
	v6      bool
	kind    setKind
	timeout time.Duration
	addrs   []netip.Addr // setHash; setTimeout when carried over (see carryLearned)
	ranges  []addrRange  // setInterval
	// timeouts are the per-element timeouts of addrs in a learned set carried over from the
	// table being replaced (their remaining lifetime); nil otherwise.
	timeouts []time.Duration
}

// rule is one rule: its nft text and its expression list, built together by
// the same primitives so preview and kernel state cannot disagree.
type rule struct {
	text  string
	exprs []expr.Any
}

type chainSpec struct {
	name   string
	hook   *nftables.ChainHook
	policy nftables.ChainPolicy
	rules  []rule
}

// Ruleset is a validated, built table ready to render or apply.
type Ruleset struct {
	mode   Mode
	policy normalized
	sets   []setSpec
	chains []chainSpec
}

// Mode returns the mode the ruleset was built for.
func (r *Ruleset) Mode() Mode { return r.mode }

// Build validates p and builds the table for p.Mode.
func Build(p Policy) (*Ruleset, error) {
	n, err := normalize(p)
	if err != nil {
		return nil, fmt.Errorf("build ruleset: %w", err)
	}
	r := &Ruleset{mode: n.Mode, policy: *n}
	if n.Mode != ModeBlock {
		r.sets = []setSpec{
			{name: SetAllowV4, kind: setHash, addrs: n.allow4},
			{name: SetAllowV6, v6: true, kind: setHash, addrs: n.allow6},
			{name: SetAllowNetV4, kind: setInterval, ranges: n.allowNet4},
			{name: SetAllowNetV6, v6: true, kind: setInterval, ranges: n.allowNet6},
			{name: SetLearnedV4, kind: setTimeout, timeout: n.LearnedTimeout},
			{name: SetLearnedV6, v6: true, kind: setTimeout, timeout: n.LearnedTimeout},
			{name: SetDenyV4, kind: setInterval, ranges: n.deny4},
			{name: SetDenyV6, v6: true, kind: setInterval, ranges: n.deny6},
		}
	}
	r.chains = []chainSpec{
		{name: "output", hook: nftables.ChainHookOutput, policy: outputPolicy(n.Mode), rules: outputRules(n)},
		{name: "input", hook: nftables.ChainHookInput, policy: nftables.ChainPolicyDrop, rules: inputRules(n)},
	}
	return r, nil
}

func outputPolicy(m Mode) nftables.ChainPolicy {
	if m == ModeDown || m == ModeDownAll {
		return nftables.ChainPolicyAccept
	}
	return nftables.ChainPolicyDrop
}

func outputRules(n *normalized) []rule {
	g := n.LogGroup
	if n.Mode == ModeBlock {
		return []rule{
			mk(oifname("lo"), verdict(expr.VerdictAccept)),
			mk(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept)),
			mk(logTo(PrefixBlocked, g), verdict(expr.VerdictDrop)),
		}
	}
	enforce := n.Mode == ModeUp
	var rs []rule
	if len(n.upstreams) > 0 {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			rs = append(rs, mk(oifname("lo"), dport(proto, 53), ctMarkSet(n.ResolverMark)))
		}
	}
	rs = append(rs, mk(oifname("lo"), verdict(expr.VerdictAccept)))
	for _, s := range []struct {
		v6   bool
		name string
	}{{false, SetDenyV4}, {true, SetDenyV6}} {
		rs = append(rs, mk(daddrSet(s.v6, s.name), logTo(PrefixDenied, g), counter(), reject()))
	}
	rs = append(rs, mk(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept)))
	for _, u := range n.upstreams {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			rs = append(rs, mk(metaMark(n.ResolverMark), dport(proto, 53), daddr(netip.PrefixFrom(u, u.BitLen())), verdict(expr.VerdictAccept)))
		}
	}
	if enforce {
		// Invariant 7: no DNS or DoT to anything but the upstream path above,
		// not even to addresses in the allow sets.
		for _, port := range []uint16{53, 853} {
			for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
				rs = append(rs, mk(dport(proto, port), logTo(PrefixBlocked, g), counter(), reject()))
			}
		}
	}
	// Neighbour discovery, and the multicast listener reports every fresh interface sends to
	// ff02::16: link-local control traffic that would otherwise be rejected and logged as PRIVATE
	// at every container start.
	for _, t := range []byte{icmpv6NeighborSolicit, icmpv6NeighborAdvert, icmpv6RouterSolicit, icmpv6MLDReport, icmpv6MLD2Report} {
		rs = append(rs, mk(icmpv6Type(t), verdict(expr.VerdictAccept)))
	}
	for _, p := range n.ports {
		for _, gw := range n.gateways {
			rs = append(rs, mk(dport(unix.IPPROTO_TCP, p), daddr(netip.PrefixFrom(gw, gw.BitLen())), verdict(expr.VerdictAccept)))
		}
	}
	for _, s := range []struct {
		v6   bool
		name string
	}{{false, SetAllowV4}, {false, SetAllowNetV4}, {true, SetAllowV6}, {true, SetAllowNetV6}} {
		if enforce {
			rs = append(rs, mk(daddrSet(s.v6, s.name), logTo(PrefixAllowed, g), counter(), verdict(expr.VerdictAccept)))
		} else {
			rs = append(rs, mk(daddrSet(s.v6, s.name), verdict(expr.VerdictAccept)))
		}
	}
	if !enforce {
		rs = append(rs, mk(ctState(expr.CtStateBitNEW), logTo(PrefixBypass, g), counter()))
	}
	if n.Mode != ModeDownAll {
		for _, p := range privateRanges {
			rs = append(rs, mk(daddr(p), logTo(PrefixPrivate, g), reject()))
		}
	}
	if enforce {
		rs = append(rs,
			mk(daddrSet(false, SetLearnedV4), updateSet(false, SetLearnedV4), logTo(PrefixAllowed, g), counter(), verdict(expr.VerdictAccept)),
			mk(daddrSet(true, SetLearnedV6), updateSet(true, SetLearnedV6), logTo(PrefixAllowed, g), counter(), verdict(expr.VerdictAccept)),
			mk(logTo(PrefixBlocked, g), counter(), reject()),
		)
	}
	return rs
}

func inputRules(n *normalized) []rule {
	rs := []rule{mk(iifname("lo"), verdict(expr.VerdictAccept))}
	if n.Mode != ModeBlock {
		// Deny wins at once in both directions: packets from a denied
		// address on a flow opened before the deny are dropped too.
		rs = append(rs,
			mk(saddrSet(false, SetDenyV4), logTo(PrefixDenied, n.LogGroup), counter(), verdict(expr.VerdictDrop)),
			mk(saddrSet(true, SetDenyV6), logTo(PrefixDenied, n.LogGroup), counter(), verdict(expr.VerdictDrop)),
		)
	}
	return append(rs,
		mk(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept)),
		mk(icmpv6Type(icmpv6NeighborSolicit), verdict(expr.VerdictAccept)),
		mk(icmpv6Type(icmpv6NeighborAdvert), verdict(expr.VerdictAccept)),
		mk(icmpv6Type(icmpv6RouterAdvert), verdict(expr.VerdictAccept)),
		mk(verdict(expr.VerdictDrop)),
	)
}

// String renders the table as `nft -f` input. The output is deterministic.
func (r *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	for _, s := range r.sets {
		writeSet(&b, s.name, s.v6, s.kind, s.timeout, elementStrings(s))
	}
	for i, c := range r.chains {
		if i > 0 || len(r.sets) > 0 {
			b.WriteString("\n")
		}
		writeChain(&b, c.name, hookName(c.hook), c.policy, ruleTexts(c.rules))
	}
	b.WriteString("}\n")
	return b.String()
}

func ruleTexts(rs []rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.text
	}
	return out
}

func elementStrings(s setSpec) []string {
	var out []string
	for _, a := range s.addrs {
		out = append(out, a.String())
	}
	for _, r := range s.ranges {
		out = append(out, r.String())
	}
	return out
}

func writeSet(b *strings.Builder, name string, v6 bool, kind setKind, timeout time.Duration, elems []string) {
	typ := "ipv4_addr"
	if v6 {
		typ = "ipv6_addr"
	}
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n", name, typ)
	switch kind {
	case setInterval:
		b.WriteString("\t\tflags interval\n\t\tauto-merge\n")
	case setTimeout:
		fmt.Fprintf(b, "\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %s\n", LearnedSetSize, nftDuration(timeout))
	}
	if len(elems) > 0 {
		b.WriteString("\t\telements = { ")
		for i, e := range elems {
			if i > 0 {
				b.WriteString(",\n\t\t\t     ")
			}
			b.WriteString(e)
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

func writeChain(b *strings.Builder, name, hook string, policy nftables.ChainPolicy, rules []string) {
	fmt.Fprintf(b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy %s;\n", name, hook, policyName(policy))
	for _, r := range rules {
		fmt.Fprintf(b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
}

func hookName(h *nftables.ChainHook) string {
	switch {
	case h == nil:
		return "none"
	case *h == *nftables.ChainHookOutput:
		return "output"
	case *h == *nftables.ChainHookInput:
		return "input"
	}
	return fmt.Sprintf("hook(%d)", *h)
}

func policyName(p nftables.ChainPolicy) string {
	switch p {
	case nftables.ChainPolicyAccept:
		return "accept"
	case nftables.ChainPolicyDrop:
		return "drop"
	}
	return fmt.Sprintf("policy(%d)", p)
}

// nftDuration renders d like nft does: 30m, 1h30m, 1d2h.
func nftDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	return b.String()
}

// Expression primitives. Each returns the nft text and the matching
// expressions; register 1 is the only register used.

type part struct {
	text  string
	exprs []expr.Any
}

func mk(parts ...part) rule {
	var r rule
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		texts = append(texts, p.text)
		r.exprs = append(r.exprs, p.exprs...)
	}
	r.text = strings.Join(texts, " ")
	return r
}

const (
	icmpv6MLDReport       = 131
	icmpv6MLD2Report      = 143
	icmpv6RouterSolicit   = 133
	icmpv6RouterAdvert    = 134
	icmpv6NeighborSolicit = 135
	icmpv6NeighborAdvert  = 136
)

var icmpv6Names = map[byte]string{
	icmpv6MLDReport:       "mld-listener-report",
	icmpv6MLD2Report:      "mld2-listener-report",
	icmpv6RouterSolicit:   "nd-router-solicit",
	icmpv6RouterAdvert:    "nd-router-advert",
	icmpv6NeighborSolicit: "nd-neighbor-solicit",
	icmpv6NeighborAdvert:  "nd-neighbor-advert",
}

func ifnameBytes(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

func oifname(name string) part {
	return part{fmt.Sprintf("oifname %q", name), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(name)},
	}}
}

func iifname(name string) part {
	return part{fmt.Sprintf("iifname %q", name), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(name)},
	}}
}

func nfproto(v6 bool) []expr.Any {
	proto := byte(unix.NFPROTO_IPV4)
	if v6 {
		proto = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

func ipKeyword(v6 bool) string {
	if v6 {
		return "ip6"
	}
	return "ip"
}

// daddr matches a destination prefix the way nft encodes it: a byte-aligned
// prefix loads only the bytes it covers, any other loads the whole address
// and masks it.
func daddr(p netip.Prefix) part {
	v6 := p.Addr().Is6()
	off := uint32(16)
	if v6 {
		off = 24
	}
	nbytes := uint32(p.Bits() / 8)
	if p.Bits()%8 != 0 {
		nbytes = uint32(p.Addr().BitLen() / 8)
	}
	addr := p.Masked().Addr().AsSlice()[:nbytes]
	ex := append(nfproto(v6), &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: nbytes})
	if p.Bits()%8 != 0 {
		mask := make([]byte, nbytes)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		ex = append(ex, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: nbytes, Mask: mask, Xor: make([]byte, nbytes)})
	}
	ex = append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr})
	text := p.Addr().String()
	if !p.IsSingleIP() {
		text = p.String()
	}
	return part{fmt.Sprintf("%s daddr %s", ipKeyword(v6), text), ex}
}

func daddrSet(v6 bool, set string) part { return addrSet(v6, false, set) }

func saddrSet(v6 bool, set string) part { return addrSet(v6, true, set) }

// addrSet matches the destination (or source) address against a named set.
func addrSet(v6, src bool, set string) part {
	off, n := uint32(16), uint32(4)
	if v6 {
		off, n = 24, 16
	}
	dir := "daddr"
	if src {
		off -= n
		dir = "saddr"
	}
	ex := append(nfproto(v6),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: set},
	)
	return part{fmt.Sprintf("%s %s @%s", ipKeyword(v6), dir, set), ex}
}

// updateSet refreshes the matched destination's element in a timeout set to the set's
// default timeout ("update @set { ip daddr }"): learned addresses in use do not expire, because
// dnsmasq's re-adds of an existing element do not reset its timeout. It follows addrSet, which
// leaves the address in register 1.
func updateSet(v6 bool, set string) part {
	return part{fmt.Sprintf("update @%s { %s daddr }", set, ipKeyword(v6)), []expr.Any{
		&expr.Dynset{SrcRegKey: 1, SetName: set, Operation: uint32(unix.NFT_DYNSET_OP_UPDATE)},
	}}
}

func protoName(p byte) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", p)
}

func dport(proto byte, port uint16) part {
	return part{fmt.Sprintf("%s dport %d", protoName(proto), port), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}}
}

func icmpv6Type(t byte) part {
	return part{"icmpv6 type " + icmpv6Names[t], []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{t}},
	}}
}

var ctStateNames = []struct {
	bit  uint32
	name string
}{
	{expr.CtStateBitINVALID, "invalid"},
	{expr.CtStateBitESTABLISHED, "established"},
	{expr.CtStateBitRELATED, "related"},
	{expr.CtStateBitNEW, "new"},
}

func ctStateText(mask uint32) string {
	var names []string
	for _, s := range ctStateNames {
		if mask&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

func ctState(mask uint32) part {
	return part{"ct state " + ctStateText(mask), []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}}
}

func metaMark(m uint32) part {
	return part{fmt.Sprintf("meta mark 0x%08x", m), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(m)},
	}}
}

func ctMarkSet(m uint32) part {
	return part{fmt.Sprintf("ct mark set 0x%08x", m), []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(m)},
		&expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyMARK},
	}}
}

func logTo(prefix string, group uint16) part {
	// Full slice expression: google/nftables appends a NUL when encoding,
	// which must not write into a shared backing array.
	data := []byte(prefix)
	return part{fmt.Sprintf("log prefix %q group %d", prefix, group), []expr.Any{
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: data[:len(data):len(data)]},
	}}
}

func counter() part {
	return part{"counter", []expr.Any{&expr.Counter{}}}
}

func reject() part {
	return part{"reject with icmpx admin-prohibited", []expr.Any{
		&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED},
	}}
}

func verdict(k expr.VerdictKind) part {
	name := map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop"}[k]
	return part{name, []expr.Any{&expr.Verdict{Kind: k}}}
}
