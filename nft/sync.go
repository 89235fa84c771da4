// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// SyncSets makes the permanent sets (allow_*, allow_net_*, deny_*) in t's
// namespace hold exactly r's elements, in one transaction: a deny and the
// removal of the same address from an allow set take effect together.
// Chains and rules are not touched; the live table must have r's sets
// (same mode family). Afterwards, learned elements covered by r's deny sets
// are destroyed in a second transaction (the deny sets, checked first,
// already block them). A ruleset without sets (block) changes nothing.
func SyncSets(ctx context.Context, t Target, r *Ruleset) error {
	return t.do(ctx, syncStep(r))
}

// syncStep is SyncSets' work on an open session.
func syncStep(r *Ruleset) func(s *session) error {
	return func(s *session) error {
		if r == nil {
			return errors.New("sync sets: nil ruleset")
		}
		if len(r.sets) == 0 {
			return nil
		}
		if err := syncSets(s, r, nil); err != nil {
			return fmt.Errorf("sync sets: %w", err)
		}
		return nil
	}
}

// SyncSetsFrom is SyncSets for a change from before to r (both of the same mode family): the
// live sets are taken to hold before's elements, so only the difference is sent, in one
// transaction, and no set is read back — a change costs the same with 10 or 100k entries.
// If that transaction fails (the live sets were not what before says), SyncSets runs.
func (c *Conn) SyncSetsFrom(ctx context.Context, before, r *Ruleset) error {
	return c.run(ctx, func(s *session) error {
		if before == nil || r == nil || len(before.sets) != len(r.sets) || len(r.sets) == 0 {
			return syncStep(r)(s)
		}
		if err := syncSets(s, r, before); err == nil {
			return nil
		}
		return syncStep(r)(s)
	})
}

// syncSets makes r's permanent sets live. The current content is read from the kernel, or,
// with before, taken from before's sets (same order).
func syncSets(s *session, r *Ruleset, before *Ruleset) error {
	c := s.c
	var deny []addrRange
	denyChanged := before == nil
	for i, spec := range r.sets {
		set := nlSet(spec)
		var prev *setSpec
		if before != nil {
			if prev = &before.sets[i]; prev.name != spec.name || prev.kind != spec.kind {
				return fmt.Errorf("set %s: the previous ruleset has %s there", spec.name, prev.name)
			}
		}
		switch spec.kind {
		case setHash:
			cur := map[netip.Addr]struct{}{}
			if prev != nil {
				for _, a := range prev.addrs {
					cur[a] = struct{}{}
				}
			} else {
				es, err := c.GetSetElements(set)
				if err != nil {
					return fmt.Errorf("read set %s: %w", set.Name, err)
				}
				for _, e := range es {
					if a, ok := netip.AddrFromSlice(e.Key); ok {
						cur[a] = struct{}{}
					}
				}
			}
			var add, del []netip.Addr
			for _, a := range spec.addrs {
				if _, ok := cur[a]; !ok {
					add = append(add, a)
				}
			}
			for a := range cur {
				if _, found := slices.BinarySearchFunc(spec.addrs, a, netip.Addr.Compare); !found {
					del = append(del, a)
				}
			}
			if len(del) > 0 {
				if err := c.SetDeleteElements(set, addrElems(del)); err != nil {
					return fmt.Errorf("encode delete from %s: %w", set.Name, err)
				}
			}
			if len(add) > 0 {
				if err := c.SetAddElements(set, addrElems(add)); err != nil {
					return fmt.Errorf("encode add to %s: %w", set.Name, err)
				}
			}
		case setInterval:
			var cur []addrRange
			if prev != nil {
				cur = prev.ranges
			} else {
				var err error
				if cur, err = readRanges(c, set); err != nil {
					return err
				}
			}
			if err := queueRangeDiff(c, set, cur, spec.ranges); err != nil {
				return err
			}
			if spec.name == SetDenyV4 || spec.name == SetDenyV6 {
				deny = append(deny, spec.ranges...)
				denyChanged = denyChanged || !slices.Equal(cur, spec.ranges)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if len(deny) == 0 || !denyChanged {
		return nil
	}
	var ops []rawOp
	for _, spec := range r.sets {
		if spec.kind != setTimeout {
			continue
		}
		es, err := c.GetSetElements(nlSet(spec))
		if err != nil {
			return fmt.Errorf("read set %s: %w", spec.name, err)
		}
		var keys [][]byte
		for _, e := range es {
			if a, ok := netip.AddrFromSlice(e.Key); ok && covers(deny, addrRange{a, a}) {
				keys = append(keys, a.AsSlice())
			}
		}
		if len(keys) > 0 {
			ops = append(ops, rawOp{msgDestroySetElem, spec.name, keys})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	return rawElemBatch(s, ops)
}
