// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ErrNoTable reports that the namespace has no inet terok_shield table.
var ErrNoTable = errors.New("table inet " + TableName + " does not exist")

// snapshot is the live table as read from the kernel.
type snapshot struct {
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule
	sets   []*nftables.Set
	elems  map[string][]nftables.SetElement
}

// readSnapshot reads the table: its chains with their rules, its sets and
// the elements of every set for which withElems returns true (nil: all).
func readSnapshot(c *nftables.Conn, withElems func(*nftables.Set) bool) (*snapshot, error) {
	tbl := table()
	snap := &snapshot{rules: map[string][]*nftables.Rule{}, elems: map[string][]nftables.SetElement{}}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			snap.chains = append(snap.chains, ch)
		}
	}
	if len(snap.chains) == 0 {
		// Only a table without chains (never ours) needs the extra dump to
		// tell "no table" from "empty table".
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }) {
			return nil, ErrNoTable
		}
	}
	for _, ch := range snap.chains {
		rs, err := c.GetRules(tbl, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		snap.rules[ch.Name] = rs
	}
	snap.sets, err = c.GetSets(tbl)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range snap.sets {
		if withElems != nil && !withElems(s) {
			continue
		}
		es, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		snap.elems[s.Name] = es
	}
	return snap, nil
}

func (s *snapshot) chain(name string) *nftables.Chain {
	for _, c := range s.chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (s *snapshot) set(name string) *nftables.Set {
	for _, x := range s.sets {
		if x.Name == name {
			return x
		}
	}
	return nil
}

// Verify reads the table back from t's namespace and compares it with r:
// chains (type, hook, priority, policy), every rule's expressions (ignoring
// handles and counter values), sets (key type, flags, timeout) and the
// elements of every permanent set. Learned sets are checked for existence and
// shape only, their content is dynamic. The error names each drift found.
func Verify(ctx context.Context, t Target, r *Ruleset) error {
	return t.do(ctx, func(s *session) error { return verify(s, r) })
}

func verify(s *session, r *Ruleset) error {
	if r == nil {
		return errors.New("verify table: nil ruleset")
	}
	for attempt := 1; ; attempt++ {
		snap, err := readSnapshot(s.c, r.permanentSet)
		if err != nil {
			return fmt.Errorf("verify table: %w", err)
		}
		drift, onlyMissingHash := diffSnapshot(r, snap)
		if len(drift) == 0 {
			return nil
		}
		// A dump of a hash set taken while the kernel resizes its
		// rhashtable (right after a bulk load) can skip elements; lookups
		// are unaffected. Missing hash elements are re-read for a while
		// before they count as drift.
		if !onlyMissingHash || attempt == verifyAttempts {
			return fmt.Errorf("verify table: %d difference(s): %s", len(drift), strings.Join(drift, "; "))
		}
		time.Sleep(verifyRetryDelay)
	}
}

const (
	verifyAttempts   = 20
	verifyRetryDelay = 50 * time.Millisecond
)

// diffSnapshot lists the differences between r and snap, and whether all of
// them are elements missing from hash sets.
func diffSnapshot(r *Ruleset, snap *snapshot) (drift []string, onlyMissingHash bool) {
	onlyMissingHash = true
	add := func(format string, args ...any) {
		drift = append(drift, fmt.Sprintf(format, args...))
		onlyMissingHash = false
	}
	for _, want := range r.chains {
		got := snap.chain(want.name)
		if got == nil {
			add("chain %s missing", want.name)
			continue
		}
		switch {
		case got.Type != nftables.ChainTypeFilter:
			add("chain %s: type %s, want filter", want.name, got.Type)
		case got.Hooknum == nil || *got.Hooknum != *want.hook:
			add("chain %s: hook %s, want %s", want.name, hookName(got.Hooknum), hookName(want.hook))
		case got.Priority == nil || *got.Priority != *nftables.ChainPriorityFilter:
			add("chain %s: priority is not filter (0)", want.name)
		case got.Policy == nil || *got.Policy != want.policy:
			gp := "none"
			if got.Policy != nil {
				gp = policyName(*got.Policy)
			}
			add("chain %s: policy %s, want %s", want.name, gp, policyName(want.policy))
		}
		rules := snap.rules[want.name]
		var canon canonBuf
		for i := 0; i < max(len(rules), len(want.rules)); i++ {
			switch {
			case i >= len(rules):
				add("chain %s rule %d missing: want %q", want.name, i+1, want.rules[i].text)
			case i >= len(want.rules):
				add("chain %s rule %d unexpected: %q", want.name, i+1, describe(rules[i].Exprs))
			case !canon.equal(rules[i].Exprs, want.rules[i].exprs):
				add("chain %s rule %d: got %q, want %q", want.name, i+1, describe(rules[i].Exprs), want.rules[i].text)
			}
		}
	}
	for _, got := range snap.chains {
		if !slices.ContainsFunc(r.chains, func(c chainSpec) bool { return c.name == got.Name }) {
			add("unexpected chain %s", got.Name)
		}
	}
	for _, want := range r.sets {
		got := snap.set(want.name)
		if got == nil {
			add("set %s missing", want.name)
			continue
		}
		ws := nlSet(want)
		if got.KeyType.Name != ws.KeyType.Name {
			add("set %s: key type %s, want %s", want.name, got.KeyType.Name, ws.KeyType.Name)
		}
		if got.Interval != ws.Interval || got.HasTimeout != ws.HasTimeout || got.Dynamic != ws.Dynamic || got.Constant || got.IsMap || got.Anonymous {
			add("set %s: flags %s, want %s", want.name, setFlags(got), setFlags(ws))
		}
		if got.Timeout != ws.Timeout {
			add("set %s: timeout %s, want %s", want.name, nftDuration(got.Timeout), nftDuration(ws.Timeout))
		}
		switch want.kind {
		case setHash:
			d, extra := diffElems(want.name, elemStrings(snap.elems[want.name]), addrStrings(want.addrs))
			drift = append(drift, d...)
			if extra {
				onlyMissingHash = false
			}
		case setInterval:
			if d, _ := diffElems(want.name, rangeStrings(elemsToRanges(snap.elems[want.name])), rangeStrings(want.ranges)); len(d) > 0 {
				drift = append(drift, d...)
				onlyMissingHash = false
			}
		}
	}
	for _, got := range snap.sets {
		if !slices.ContainsFunc(r.sets, func(s setSpec) bool { return s.name == got.Name }) {
			add("unexpected set %s", got.Name)
		}
	}
	return drift, onlyMissingHash
}

func setFlags(s *nftables.Set) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{s.Constant, "constant"}, {s.Dynamic, "dynamic"}, {s.Interval, "interval"}, {s.HasTimeout, "timeout"}, {s.IsMap, "map"}, {s.Anonymous, "anonymous"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ",")
}

func elemStrings(es []nftables.SetElement) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			out = append(out, a.String())
		}
	}
	return out
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func rangeStrings(rs []addrRange) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// diffElems reports missing and unexpected elements, naming up to five of
// each, and whether there were unexpected ones.
func diffElems(set string, got, want []string) ([]string, bool) {
	gs := make(map[string]bool, len(got))
	for _, g := range got {
		gs[g] = true
	}
	ws := make(map[string]bool, len(want))
	var missing, extra []string
	for _, w := range want {
		ws[w] = true
		if !gs[w] {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !ws[g] {
			extra = append(extra, g)
		}
	}
	var out []string
	if len(missing) > 0 {
		out = append(out, fmt.Sprintf("set %s: %d element(s) missing: %s", set, len(missing), sample(missing)))
	}
	if len(extra) > 0 {
		out = append(out, fmt.Sprintf("set %s: %d unexpected element(s): %s", set, len(extra), sample(extra)))
	}
	return out, len(extra) > 0
}

func sample(s []string) string {
	slices.Sort(s)
	if len(s) > 5 {
		return strings.Join(s[:5], ", ") + ", ..."
	}
	return strings.Join(s, ", ")
}

// permanentSet reports whether live set s is one whose elements the ruleset
// fixes (so verification reads them): learned sets change with traffic and
// are checked for shape only, and a set the ruleset lacks is drift by name.
func (r *Ruleset) permanentSet(s *nftables.Set) bool {
	i := slices.IndexFunc(r.sets, func(w setSpec) bool { return w.name == s.Name })
	return i >= 0 && r.sets[i].kind != setTimeout
}

// canonBuf holds two reusable buffers for comparing expression lists.
type canonBuf struct{ a, b []byte }

// equal reports whether two expression lists are the same rule: handles,
// counter values and set IDs are ignored.
func (c *canonBuf) equal(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	c.a = appendCanon(c.a[:0], got)
	c.b = appendCanon(c.b[:0], want)
	return string(c.a) == string(c.b)
}

// appendCanon appends the canonical form of es to b. Most expressions are
// compared in their netlink encoding (what the kernel received), which is
// ~10× cheaper to produce than formatted text; the few whose read-back
// differs from what was sent by design are normalised first.
func appendCanon(b []byte, es []expr.Any) []byte {
	for _, e := range es {
		switch x := e.(type) {
		case *expr.Counter:
			b = append(b, "counter;"...)
		case *expr.Ct:
			// google/nftables decodes NFTA_CT_DREG only: a ct set reads
			// back as Register 0, so compare the direction of use instead.
			set := x.SourceRegister || x.Register == 0
			b = fmt.Appendf(b, "ct{key=%d dir=%d set=%v};", x.Key, x.Direction, set)
		case *expr.Lookup:
			b = fmt.Appendf(b, "lookup{%d %s %v %v %d};", x.SourceRegister, x.SetName, x.Invert, x.IsDestRegSet, x.DestRegister)
		case *expr.Dynset:
			b = fmt.Appendf(b, "dynset{%d %d %s %d %s %v %d};", x.SrcRegKey, x.SrcRegData, x.SetName, x.Operation, x.Timeout, x.Invert, len(x.Exprs))
		default:
			data, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
			if err != nil {
				b = fmt.Appendf(b, "%T%+v;", e, e)
				continue
			}
			b = fmt.Appendf(b, "%T{", e)
			b = append(b, data...)
			b = append(b, "};"...)
		}
	}
	return b
}

// describe decompiles a rule into nft-like text. It recognises the
// expression shapes this package emits and prints anything else raw.
func describe(es []expr.Any) string {
	var parts []string
	for i := 0; i < len(es); {
		text, n := describeAt(es[i:])
		parts = append(parts, text)
		i += n
	}
	return strings.Join(parts, " ")
}

func describeAt(es []expr.Any) (string, int) {
	at := func(i int) expr.Any {
		if i < len(es) {
			return es[i]
		}
		return nil
	}
	cmpAt := func(i int) *expr.Cmp { c, _ := at(i).(*expr.Cmp); return c }
	switch x := es[0].(type) {
	case *expr.Meta:
		c := cmpAt(1)
		if c == nil || x.Register != c.Register {
			break
		}
		switch x.Key {
		case expr.MetaKeyOIFNAME, expr.MetaKeyIIFNAME:
			kw := map[expr.MetaKey]string{expr.MetaKeyOIFNAME: "oifname", expr.MetaKeyIIFNAME: "iifname"}[x.Key]
			return fmt.Sprintf("%s %s%q", kw, cmpOp(c.Op), strings.TrimRight(string(c.Data), "\x00")), 2
		case expr.MetaKeyMARK:
			if len(c.Data) == 4 {
				return fmt.Sprintf("meta mark %s0x%08x", cmpOp(c.Op), binaryutil.NativeEndian.Uint32(c.Data)), 2
			}
		case expr.MetaKeyNFPROTO:
			if t, n := describeDaddr(es); n > 0 {
				return t, n
			}
		case expr.MetaKeyL4PROTO:
			if t, n := describeL4(es); n > 0 {
				return t, n
			}
		}
	case *expr.Ct:
		if x.Key == expr.CtKeySTATE && x.Register != 0 {
			bw, ok1 := at(1).(*expr.Bitwise)
			c := cmpAt(2)
			if ok1 && c != nil && len(bw.Mask) == 4 && c.Op == expr.CmpOpNeq && isZero(c.Data) {
				return "ct state " + ctStateText(binaryutil.NativeEndian.Uint32(bw.Mask)), 3
			}
		}
	case *expr.Immediate:
		if ct, ok := at(1).(*expr.Ct); ok && (ct.SourceRegister || ct.Register == 0) && ct.Key == expr.CtKeyMARK && len(x.Data) == 4 {
			return fmt.Sprintf("ct mark set 0x%08x", binaryutil.NativeEndian.Uint32(x.Data)), 2
		}
	case *expr.Dynset:
		if x.Operation == unix.NFT_DYNSET_OP_UPDATE && x.SrcRegData == 0 && x.Timeout == 0 && len(x.Exprs) == 0 && !x.Invert {
			// Our sets are named by family; the key is the destination address in register 1.
			return fmt.Sprintf("update @%s { %s daddr }", x.SetName, ipKeyword(strings.HasSuffix(x.SetName, "_v6"))), 1
		}
	case *expr.Log:
		return fmt.Sprintf("log prefix %q group %d", x.Data, x.Group), 1
	case *expr.Counter:
		return fmt.Sprintf("counter packets %d bytes %d", x.Packets, x.Bytes), 1
	case *expr.Reject:
		if x.Type == unix.NFT_REJECT_ICMPX_UNREACH && x.Code == unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED {
			return "reject with icmpx admin-prohibited", 1
		}
		return fmt.Sprintf("reject type %d code %d", x.Type, x.Code), 1
	case *expr.Verdict:
		names := map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop",
			expr.VerdictReturn: "return", expr.VerdictContinue: "continue"}
		if n, ok := names[x.Kind]; ok {
			return n, 1
		}
		return fmt.Sprintf("verdict(%d) %s", x.Kind, x.Chain), 1
	}
	return fmt.Sprintf("[%T %+v]", es[0], es[0]), 1
}

func cmpOp(op expr.CmpOp) string {
	if op == expr.CmpOpEq {
		return ""
	}
	return map[expr.CmpOp]string{expr.CmpOpNeq: "!= ", expr.CmpOpLt: "< ", expr.CmpOpLte: "<= ", expr.CmpOpGt: "> ", expr.CmpOpGte: ">= "}[op]
}

func isZero(b []byte) bool { return !slices.ContainsFunc(b, func(x byte) bool { return x != 0 }) }

// describeDaddr decodes "meta nfproto; payload daddr; [bitwise]; cmp|lookup".
func describeDaddr(es []expr.Any) (string, int) {
	if len(es) < 4 {
		return "", 0
	}
	c, _ := es[1].(*expr.Cmp)
	pl, _ := es[2].(*expr.Payload)
	if c == nil || pl == nil || len(c.Data) != 1 || pl.Base != expr.PayloadBaseNetworkHeader || pl.OperationType != expr.PayloadLoad {
		return "", 0
	}
	v6 := c.Data[0] == unix.NFPROTO_IPV6
	width, off := uint32(4), uint32(16)
	if v6 {
		width, off = 16, 24
	}
	if c.Data[0] != unix.NFPROTO_IPV4 && !v6 {
		return "", 0
	}
	kw := ipKeyword(v6)
	if lk, ok := es[3].(*expr.Lookup); ok && pl.Len == width && (pl.Offset == off || pl.Offset == off-width) {
		neg, dir := "", "daddr"
		if lk.Invert {
			neg = "!= "
		}
		if pl.Offset != off {
			dir = "saddr"
		}
		return fmt.Sprintf("%s %s %s@%s", kw, dir, neg, lk.SetName), 4
	}
	if pl.Offset != off || pl.Len == 0 || pl.Len > width {
		return "", 0
	}
	nbits, i := int(pl.Len*8), 3
	if bw, ok := es[3].(*expr.Bitwise); ok && len(bw.Mask) == int(pl.Len) {
		nbits = 0
		for _, m := range bw.Mask {
			nbits += bits.OnesCount8(m)
		}
		i = 4
	}
	if i >= len(es) {
		return "", 0
	}
	cv, _ := es[i].(*expr.Cmp)
	if cv == nil || len(cv.Data) != int(pl.Len) {
		return "", 0
	}
	full := make([]byte, width)
	copy(full, cv.Data)
	a, _ := netip.AddrFromSlice(full)
	text := a.String()
	if nbits != a.BitLen() {
		text = netip.PrefixFrom(a, nbits).String()
	}
	return fmt.Sprintf("%s daddr %s%s", kw, cmpOp(cv.Op), text), i + 1
}

// describeL4 decodes "meta l4proto; payload th; cmp" as dport or icmpv6 type.
func describeL4(es []expr.Any) (string, int) {
	if len(es) < 4 {
		return "", 0
	}
	c, _ := es[1].(*expr.Cmp)
	pl, _ := es[2].(*expr.Payload)
	cv, _ := es[3].(*expr.Cmp)
	if c == nil || pl == nil || cv == nil || len(c.Data) != 1 || pl.Base != expr.PayloadBaseTransportHeader {
		return "", 0
	}
	switch proto := c.Data[0]; {
	case (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP) && pl.Offset == 2 && pl.Len == 2 && len(cv.Data) == 2:
		return fmt.Sprintf("%s dport %s%d", protoName(proto), cmpOp(cv.Op), binaryutil.BigEndian.Uint16(cv.Data)), 4
	case proto == unix.IPPROTO_ICMPV6 && pl.Offset == 0 && pl.Len == 1 && len(cv.Data) == 1:
		name, ok := icmpv6Names[cv.Data[0]]
		if !ok {
			name = fmt.Sprint(cv.Data[0])
		}
		return fmt.Sprintf("icmpv6 type %s%s", cmpOp(cv.Op), name), 4
	}
	return "", 0
}

// Element is one live set element. Expires is zero for permanent elements.
type Element struct {
	Prefix  netip.Prefix
	Expires time.Duration
}

// SetStatus lists one live set.
type SetStatus struct {
	Name     string
	Elements []Element
}

// RuleCounter is the counter of one live rule.
type RuleCounter struct {
	Chain   string
	Index   int    // 1-based position in the chain
	Rule    string // decompiled rule text
	Packets uint64
	Bytes   uint64
}

// Status is the live state of the table.
type Status struct {
	Mode     Mode // ModeInactive when the table does not exist
	Sets     []SetStatus
	Counters []RuleCounter
}

// Inspect reads the live table. The mode is derived from the structure:
// output policy accept means down (down_all without private-range rejects);
// policy drop without sets means block, otherwise up.
func Inspect(ctx context.Context, t Target) (st *Status, err error) {
	err = t.do(ctx, func(s *session) (err error) {
		st, err = inspect(s)
		return err
	})
	return st, err
}

func inspect(s *session) (*Status, error) {
	snap, err := readSnapshot(s.c, nil)
	if errors.Is(err, ErrNoTable) {
		return &Status{Mode: ModeInactive}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspect table: %w", err)
	}
	mode, err := detectMode(snap)
	if err != nil {
		return nil, fmt.Errorf("inspect table: %w", err)
	}
	st := &Status{Mode: mode}
	for _, s := range snap.sets {
		st.Sets = append(st.Sets, SetStatus{Name: s.Name, Elements: liveElements(s, snap.elems[s.Name])})
	}
	for _, ch := range snap.chains {
		for i, r := range snap.rules[ch.Name] {
			for _, e := range r.Exprs {
				if c, ok := e.(*expr.Counter); ok {
					st.Counters = append(st.Counters, RuleCounter{Chain: ch.Name, Index: i + 1, Rule: describe(r.Exprs), Packets: c.Packets, Bytes: c.Bytes})
				}
			}
		}
	}
	return st, nil
}

func detectMode(snap *snapshot) (Mode, error) {
	out := snap.chain("output")
	if out == nil || out.Policy == nil {
		return 0, errors.New("detect mode: no output base chain")
	}
	hasPrefix := func(prefix string) bool {
		for _, r := range snap.rules["output"] {
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Log); ok && string(l.Data) == prefix {
					return true
				}
			}
		}
		return false
	}
	switch {
	case *out.Policy == nftables.ChainPolicyAccept && hasPrefix(PrefixPrivate):
		return ModeDown, nil
	case *out.Policy == nftables.ChainPolicyAccept:
		return ModeDownAll, nil
	case len(snap.sets) == 0:
		return ModeBlock, nil
	}
	return ModeUp, nil
}

func liveElements(s *nftables.Set, es []nftables.SetElement) []Element {
	var out []Element
	if s.Interval {
		for _, r := range elemsToRanges(es) {
			for _, p := range rangePrefixes(r) {
				out = append(out, Element{Prefix: p})
			}
		}
		return out
	}
	for _, e := range es {
		if a, ok := netip.AddrFromSlice(e.Key); ok {
			out = append(out, Element{Prefix: netip.PrefixFrom(a, a.BitLen()), Expires: e.Expires})
		}
	}
	slices.SortFunc(out, func(a, b Element) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out
}

// rangePrefixes splits a range into the minimal list of prefixes.
func rangePrefixes(r addrRange) []netip.Prefix {
	var out []netip.Prefix
	lo := r.lo
	for lo.IsValid() && lo.Compare(r.hi) <= 0 {
		b := lo.BitLen()
		for b > 0 {
			p := netip.PrefixFrom(lo, b-1)
			if p.Masked().Addr() != lo || lastAddr(p).Compare(r.hi) > 0 {
				break
			}
			b--
		}
		p := netip.PrefixFrom(lo, b)
		out = append(out, p)
		lo = lastAddr(p).Next()
	}
	return out
}

// List renders the live table as nft-like text, counters and element
// expiry included. It returns ErrNoTable when there is no table.
func List(ctx context.Context, t Target) (text string, err error) {
	err = t.do(ctx, func(s *session) (err error) {
		text, err = list(s)
		return err
	})
	return text, err
}

func list(s *session) (string, error) {
	snap, err := readSnapshot(s.c, nil)
	if err != nil {
		return "", fmt.Errorf("list table: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	for _, set := range snap.sets {
		s := set
		kind := setHash
		switch {
		case s.Interval:
			kind = setInterval
		case s.HasTimeout:
			kind = setTimeout
		}
		var elems []string
		if s.Interval {
			elems = rangeStrings(elemsToRanges(snap.elems[s.Name]))
		} else {
			for _, e := range liveElements(s, snap.elems[s.Name]) {
				text := e.Prefix.Addr().String()
				if e.Expires > 0 {
					text += " expires " + nftDuration(e.Expires)
				}
				elems = append(elems, text)
			}
		}
		writeSet(&b, s.Name, s.KeyType.Name == nftables.TypeIP6Addr.Name, kind, s.Timeout, elems)
	}
	for i, ch := range snap.chains {
		if i > 0 || len(snap.sets) > 0 {
			b.WriteString("\n")
		}
		policy := nftables.ChainPolicyAccept
		if ch.Policy != nil {
			policy = *ch.Policy
		}
		var rules []string
		for _, r := range snap.rules[ch.Name] {
			rules = append(rules, describe(r.Exprs))
		}
		writeChain(&b, ch.Name, hookName(ch.Hooknum), policy, rules)
	}
	b.WriteString("}\n")
	return b.String(), nil
}
