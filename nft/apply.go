// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

func nlSet(s setSpec) *nftables.Set {
	ns := &nftables.Set{Table: table(), Name: s.name, KeyType: nftables.TypeIPAddr}
	if s.v6 {
		ns.KeyType = nftables.TypeIP6Addr
	}
	switch s.kind {
	case setInterval:
		ns.Interval, ns.AutoMerge = true, true
	case setTimeout:
		// Dynamic: the learned-accept rule refreshes an element's timeout on use.
		ns.HasTimeout, ns.Timeout, ns.Dynamic, ns.Size = true, s.timeout, true, LearnedSetSize
	}
	return ns
}

func addrElems(as []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, len(as))
	for i, a := range as {
		out[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	return out
}

// rangeElems encodes ranges as interval start/end element pairs. A range
// ending at the family's last address has no end element.
func rangeElems(rs []addrRange) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, 2*len(rs))
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.lo.AsSlice()})
		if end := r.hi.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// Apply replaces the table in t's namespace with r.
//
// The first transaction deletes any previous table and creates the new one.
// Up to bulkThreshold elements it is the only one. Above, the first
// transaction installs the output chain closed (policy drop, only loopback
// accepted), the elements follow in transactions sized to the socket send
// buffer (an unprivileged namespace cannot raise it past net.core.wmem_max),
// and the last one swaps in the real rules and policy. A failure part-way
// leaves the namespace closed, never open.
func Apply(ctx context.Context, t Target, r *Ruleset) error {
	if r == nil {
		return errors.New("apply table: nil ruleset")
	}
	return t.do(ctx, func(s *session) error { return apply(ctx, s, r) })
}

func apply(ctx context.Context, s *session, r *Ruleset) error {
	if r == nil {
		return errors.New("apply table: nil ruleset")
	}
	// Delete only an existing table: a delete in the batch makes the kernel
	// defer freeing behind an RCU grace period, which closing the socket
	// then waits for (several ms); a fresh namespace needs no delete.
	tables, err := s.c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("apply table: list tables: %w", err)
	}
	var tx rawTx
	sets := r.sets
	if slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }) {
		tx.delTable()
		if sets, err = carryLearned(s.c, r); err != nil {
			return fmt.Errorf("apply table: %w", err)
		}
	}
	tx.newTable()
	nelems := 0
	for _, spec := range sets {
		nelems += len(spec.addrs) + 2*len(spec.ranges)
	}
	bulk := nelems > bulkThreshold
	var payloads [][]byte
	for i, spec := range sets {
		tx.newSet(spec, uint32(i+1))
		payloads = append(payloads, elemPayloads(spec)...)
	}
	if !bulk {
		for _, p := range payloads {
			tx.newElems(p)
		}
	}
	for _, ch := range r.chains {
		policy, rules := ch.policy, ch.rules
		if bulk && ch.name == "output" {
			policy, rules = nftables.ChainPolicyDrop, []rule{mk(oifname("lo"), verdict(expr.VerdictAccept))}
		}
		tx.newChain(ch.name, ch.hook, policy)
		for i, rl := range rules {
			if err := tx.newRule(ch.name, rl.exprs); err != nil {
				return fmt.Errorf("apply table: chain %s rule %d: %w", ch.name, i+1, err)
			}
		}
	}
	if err := tx.commit(s); err != nil {
		return fmt.Errorf("apply table: create table %s: %w", TableName, err)
	}
	if !bulk {
		return nil
	}
	// Bulk: the table is in place but closed (output policy drop, only
	// loopback accepted). Load the elements in transactions that fit the
	// socket buffer, then swap in the real output rules and policy.
	txs := groupPayloads(payloads, s.rawBudget())
	for i, group := range txs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("apply table: load elements (table left closed): %w", err)
		}
		for _, p := range group {
			tx.newElems(p)
		}
		if err := tx.commit(s); err != nil {
			return fmt.Errorf("apply table: load elements batch %d/%d (table left closed): %w", i+1, len(txs), err)
		}
	}
	for _, ch := range r.chains {
		if ch.name != "output" {
			continue
		}
		tx.flushChain(ch.name)
		tx.newChain(ch.name, ch.hook, ch.policy) // updates the existing chain's policy
		for i, rl := range ch.rules {
			if err := tx.newRule(ch.name, rl.exprs); err != nil {
				return fmt.Errorf("apply table: chain %s rule %d: %w", ch.name, i+1, err)
			}
		}
	}
	if err := tx.commit(s); err != nil {
		return fmt.Errorf("apply table: install output rules (table left closed): %w", err)
	}
	return nil
}

// carryLearned returns r's sets with the learned sets holding what the live table's learned
// sets hold, each element with its remaining lifetime: a mode switch replaces the table, and
// the addresses the resolver taught it must not be forgotten (the resolver answers from its
// cache without teaching them again). Addresses r's deny sets cover are left out. A live
// table without learned sets (block mode) carries nothing.
func carryLearned(c *nftables.Conn, r *Ruleset) ([]setSpec, error) {
	live, err := c.GetSets(table())
	if err != nil {
		return nil, fmt.Errorf("list live sets: %w", err)
	}
	var deny []addrRange
	for _, spec := range r.sets {
		if spec.name == SetDenyV4 || spec.name == SetDenyV6 {
			deny = append(deny, spec.ranges...)
		}
	}
	out := slices.Clone(r.sets)
	for i, spec := range out {
		if spec.kind != setTimeout {
			continue
		}
		j := slices.IndexFunc(live, func(s *nftables.Set) bool { return s.Name == spec.name })
		if j < 0 || !live[j].HasTimeout {
			continue
		}
		es, err := c.GetSetElements(live[j])
		if err != nil {
			return nil, fmt.Errorf("read live set %s: %w", spec.name, err)
		}
		for _, e := range es {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok || e.Expires <= 0 || slices.ContainsFunc(deny, func(d addrRange) bool { return d.contains(a) }) {
				continue
			}
			out[i].addrs = append(out[i].addrs, a)
			out[i].timeouts = append(out[i].timeouts, e.Expires)
		}
	}
	return out, nil
}

// bulkThreshold is the element count above which Apply loads elements in
// separate, directly encoded transactions behind a closed output chain.
const bulkThreshold = 2048

// groupPayloads groups message payloads into transactions of at most
// budget bytes (at least one payload each).
func groupPayloads(payloads [][]byte, budget int) [][][]byte {
	var txs [][][]byte
	var cur [][]byte
	used := 0
	for _, p := range payloads {
		if len(cur) > 0 && used+len(p)+16 > budget {
			txs = append(txs, cur)
			cur, used = nil, 0
		}
		cur = append(cur, p)
		used += len(p) + 16
	}
	if len(cur) > 0 {
		txs = append(txs, cur)
	}
	return txs
}

// SetKind selects which sets AddElements and DeleteElements touch.
type SetKind uint8

// Set kinds.
const (
	KindAllow   SetKind = iota // allow_v4/v6 for single addresses, allow_net_v4/v6 for CIDRs
	KindDeny                   // deny_v4/v6
	KindLearned                // learned_v4/v6 (single addresses only)
)

func (k SetKind) String() string {
	switch k {
	case KindAllow:
		return "allow"
	case KindDeny:
		return "deny"
	case KindLearned:
		return "learned"
	}
	return fmt.Sprintf("SetKind(%d)", uint8(k))
}

// setDelta is what one Add/DeleteElements call changes in one set.
type setDelta struct {
	spec setSpec
	add  []netip.Prefix
}

// route validates prefixes and groups them by target set.
func route(kind SetKind, prefixes []netip.Prefix) ([]setDelta, error) {
	byName := map[string]*setDelta{}
	var order []string
	for i, p := range prefixes {
		q, err := normPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		v6 := q.Addr().Is6()
		var name string
		var sk setKind
		switch kind {
		case KindAllow:
			name, sk = pick(v6, SetAllowV4, SetAllowV6), setHash
			if !q.IsSingleIP() {
				name, sk = pick(v6, SetAllowNetV4, SetAllowNetV6), setInterval
			}
		case KindDeny:
			name, sk = pick(v6, SetDenyV4, SetDenyV6), setInterval
		case KindLearned:
			if !q.IsSingleIP() {
				return nil, fmt.Errorf("entry %d: learned entries must be single addresses, got %s", i, q)
			}
			name, sk = pick(v6, SetLearnedV4, SetLearnedV6), setTimeout
		default:
			return nil, fmt.Errorf("unknown set kind %d", kind)
		}
		d, ok := byName[name]
		if !ok {
			d = &setDelta{spec: setSpec{name: name, v6: v6, kind: sk}}
			byName[name] = d
			order = append(order, name)
		}
		d.add = append(d.add, q)
	}
	slices.Sort(order)
	out := make([]setDelta, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out, nil
}

// learnedChunk is how many learned addresses one refresh transaction carries.
const learnedChunk = 2048

// LearnedSetSize bounds the learned sets. The kernel caps a set that a rule updates
// (dynset) at 65,535 elements unless a size is given; addresses learned from DNS answers are
// bounded by this instead (hash sets allocate lazily, so the bound costs nothing until used).
const LearnedSetSize = 1 << 20

func pick(v6 bool, a, b string) string {
	if v6 {
		return b
	}
	return a
}

func prefixAddrs(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out
}

func prefixRanges(ps []netip.Prefix) []addrRange {
	out := make([]addrRange, len(ps))
	for i, p := range ps {
		out[i] = prefixRange(p)
	}
	return out
}

// AddElements adds prefixes to the sets of kind in one transaction.
// Re-adding an existing element is not an error. For interval sets the
// union with the existing content is computed here (overlap never fails).
// Learned elements get the set's default timeout, restarted for elements
// already present (see Refresh).
func AddElements(ctx context.Context, t Target, kind SetKind, prefixes []netip.Prefix) error {
	return t.do(ctx, func(s *session) error { return addElements(s, kind, prefixes) })
}

func addElements(s *session, kind SetKind, prefixes []netip.Prefix) error {
	deltas, err := route(kind, prefixes)
	if err != nil {
		return fmt.Errorf("add %s elements: %w", kind, err)
	}
	if err := addDeltas(s, deltas); err != nil {
		return fmt.Errorf("add %s elements: %w", kind, err)
	}
	return nil
}

func addDeltas(s *session, deltas []setDelta) error {
	c := s.c
	var learned []setDelta
	for _, d := range deltas {
		set := nlSet(d.spec)
		switch d.spec.kind {
		case setHash:
			if err := c.SetAddElements(set, addrElems(prefixAddrs(d.add))); err != nil {
				return fmt.Errorf("encode %s: %w", set.Name, err)
			}
		case setTimeout:
			learned = append(learned, d)
		case setInterval:
			cur, err := readRanges(c, set)
			if err != nil {
				return err
			}
			want := mergeRanges(append(slices.Clone(cur), prefixRanges(d.add)...))
			if err := queueRangeDiff(c, set, cur, want); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if len(learned) == 0 {
		return nil
	}
	// Destroy + add in one transaction restarts the timeout of elements
	// already present; a plain add would keep their old expiry. Large loads
	// go in chunks: learned entries need no atomicity across chunks, and one
	// message must fit the socket buffer (an unprivileged netns caps it).
	for _, d := range learned {
		keys := prefixKeys(d.add)
		for len(keys) > 0 {
			n := min(len(keys), learnedChunk)
			ops := []rawOp{{msgDestroySetElem, d.spec.name, keys[:n]}, {unix.NFT_MSG_NEWSETELEM, d.spec.name, keys[:n]}}
			if err := rawElemBatch(s, ops); err != nil {
				return err
			}
			keys = keys[n:]
		}
	}
	return nil
}

// queueRangeDiff queues deletes of ranges in cur but not in want and adds of
// ranges in want but not in cur. Both go into the same transaction.
func queueRangeDiff(c *nftables.Conn, set *nftables.Set, cur, want []addrRange) error {
	var del, add []addrRange
	for _, r := range cur {
		if !slices.Contains(want, r) {
			del = append(del, r)
		}
	}
	for _, r := range want {
		if !slices.Contains(cur, r) {
			add = append(add, r)
		}
	}
	if len(del) > 0 {
		if err := c.SetDeleteElements(set, rangeElems(del)); err != nil {
			return fmt.Errorf("encode delete from %s: %w", set.Name, err)
		}
	}
	if len(add) > 0 {
		if err := c.SetAddElements(set, rangeElems(add)); err != nil {
			return fmt.Errorf("encode add to %s: %w", set.Name, err)
		}
	}
	return nil
}

// readRanges reads an interval set's content as merged ranges.
func readRanges(c *nftables.Conn, set *nftables.Set) ([]addrRange, error) {
	es, err := c.GetSetElements(set)
	if err != nil {
		return nil, fmt.Errorf("read set %s: %w", set.Name, err)
	}
	return elemsToRanges(es), nil
}

// elemsToRanges decodes interval elements (start and end markers in any
// order) into sorted ranges.
func elemsToRanges(es []nftables.SetElement) []addrRange {
	type mark struct {
		a   netip.Addr
		end bool
	}
	ms := make([]mark, 0, len(es))
	for _, e := range es {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		ms = append(ms, mark{a, e.IntervalEnd})
	}
	slices.SortFunc(ms, func(x, y mark) int {
		if c := x.a.Compare(y.a); c != 0 {
			return c
		}
		switch {
		case x.end == y.end:
			return 0
		case x.end:
			return -1
		}
		return 1
	})
	var out []addrRange
	for i, m := range ms {
		if m.end {
			continue
		}
		hi := lastOfFamily(m.a)
		if i+1 < len(ms) && ms[i+1].end {
			hi = ms[i+1].a.Prev()
		}
		out = append(out, addrRange{m.a, hi})
	}
	return out
}

func lastOfFamily(a netip.Addr) netip.Addr {
	return lastAddr(netip.PrefixFrom(a, 0))
}

// DeleteElements removes prefixes from the sets of kind in one transaction.
// Removing an absent element is not an error. For interval sets the prefix is
// subtracted: deleting 10.0.0.5 from a set holding 10.0.0.0/24 leaves the
// rest of the /24.
func DeleteElements(ctx context.Context, t Target, kind SetKind, prefixes []netip.Prefix) error {
	return t.do(ctx, func(s *session) error { return deleteElements(s, kind, prefixes) })
}

func deleteElements(s *session, kind SetKind, prefixes []netip.Prefix) error {
	deltas, err := route(kind, prefixes)
	if err != nil {
		return fmt.Errorf("delete %s elements: %w", kind, err)
	}
	if err := deleteDeltas(s, deltas); err != nil {
		return fmt.Errorf("delete %s elements: %w", kind, err)
	}
	return nil
}

func deleteDeltas(s *session, deltas []setDelta) error {
	c := s.c
	var destroy []setDelta
	for _, d := range deltas {
		set := nlSet(d.spec)
		if d.spec.kind != setInterval {
			destroy = append(destroy, d)
			continue
		}
		cur, err := readRanges(c, set)
		if err != nil {
			return err
		}
		if err := queueRangeDiff(c, set, cur, subtractRanges(cur, mergeRanges(prefixRanges(d.add)))); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if len(destroy) == 0 {
		return nil
	}
	return destroyElements(s, destroy)
}

// msgDestroySetElem is NFT_MSG_DESTROYSETELEM (Linux 6.3+): delete elements,
// ignoring absent ones. golang.org/x/sys does not define it yet.
const msgDestroySetElem = 0x1e

// rawOp is one element message of a hand-built batch.
type rawOp struct {
	msgType uint16 // unix.NFT_MSG_NEWSETELEM or msgDestroySetElem
	set     string
	keys    [][]byte
}

func destroyElements(s *session, deltas []setDelta) error {
	var ops []rawOp
	for _, d := range deltas {
		ops = append(ops, rawOp{msgDestroySetElem, d.spec.name, prefixKeys(d.add)})
	}
	return rawElemBatch(s, ops)
}

func prefixKeys(ps []netip.Prefix) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		out[i] = p.Addr().AsSlice()
	}
	return out
}

// rawElemBatch sends element messages in one transaction on the session's
// raw socket: google/nftables has no destroy operation.
func rawElemBatch(s *session, ops []rawOp) error {
	nc, err := s.rawConn()
	if err != nil {
		return err
	}
	batchHdr := []byte{unix.AF_UNSPEC, 0, 0, unix.NFNL_SUBSYS_NFTABLES}
	msgs := []netlink.Message{{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request}, Data: batchHdr}}
	for _, op := range ops {
		var items []netlink.Attribute
		for i, k := range op.keys {
			key, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: k}})
			if err != nil {
				return fmt.Errorf("encode key: %w", err)
			}
			item, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_KEY, Data: key}})
			if err != nil {
				return fmt.Errorf("encode element: %w", err)
			}
			items = append(items, netlink.Attribute{Type: unix.NLA_F_NESTED | uint16(i+1), Data: item})
		}
		list, err := netlink.MarshalAttributes(items)
		if err != nil {
			return fmt.Errorf("encode element list: %w", err)
		}
		data, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(TableName + "\x00")},
			{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(op.set + "\x00")},
			{Type: unix.NLA_F_NESTED | unix.NFTA_SET_ELEM_LIST_ELEMENTS, Data: list},
		})
		if err != nil {
			return fmt.Errorf("encode message: %w", err)
		}
		flags := netlink.Request | netlink.Acknowledge
		if op.msgType == unix.NFT_MSG_NEWSETELEM {
			flags |= netlink.Create
		}
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | op.msgType), Flags: flags},
			Data:   append([]byte{unix.NFPROTO_INET, 0, 0, 0}, data...),
		})
	}
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request}, Data: batchHdr})
	if _, err := nc.SendMessages(msgs); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	for range len(msgs) - 2 {
		if _, err := nc.Receive(); err != nil {
			return fmt.Errorf("commit batch: %w", err)
		}
	}
	return nil
}

// Refresh resets the expiry of learned addresses to the set's timeout,
// adding those that are absent. It is AddElements(KindLearned): each address
// is destroyed and re-added in one transaction, which restarts its timeout on
// any kernel with NFT_MSG_DESTROYSETELEM (6.3+). A plain re-add, as dnsmasq's
// nftset does, leaves the original expiry in place; see the package doc.
func Refresh(ctx context.Context, t Target, addrs []netip.Addr) error {
	ps := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		ps[i] = netip.PrefixFrom(a, a.BitLen())
	}
	return AddElements(ctx, t, KindLearned, ps)
}

// ApplyVerified applies r in t's namespace and verifies it by reading it back,
// through one netlink socket: what a hook does before a container may run.
func ApplyVerified(ctx context.Context, t Target, r *Ruleset) error {
	if r == nil {
		return errors.New("apply table: nil ruleset")
	}
	return t.do(ctx, func(s *session) error {
		if err := apply(ctx, s, r); err != nil {
			return fmt.Errorf("apply ruleset: %w", err)
		}
		if err := verify(s, r); err != nil {
			return fmt.Errorf("verify ruleset: %w", err)
		}
		return nil
	})
}
