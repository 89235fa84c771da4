// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSyncSets runs the same changes through SyncSets (reads the live sets) and through
// Conn.SyncSetsFrom (sends the difference from the previous ruleset).
func TestSyncSets(t *testing.T) {
	for _, delta := range []bool{false, true} {
		name := "full"
		if delta {
			name = "from previous"
		}
		t.Run(name, func(t *testing.T) { testSyncSets(t, delta) })
	}
}

func testSyncSets(t *testing.T, delta bool) {
	ctx := context.Background()
	target := newNetNS(t)
	start := Policy{Allow: prefixes("203.0.113.7", "198.51.100.0/24", "2001:db8::1"), Deny: prefixes("192.0.2.0/24")}
	prev := mustBuild(t, start)
	if err := Apply(ctx, target, prev); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := AddElements(ctx, target, KindLearned, prefixes("203.0.113.9", "198.18.0.1")); err != nil {
		t.Fatalf("AddElements learned: %v", err)
	}
	c, err := Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		name string
		p    Policy
		want map[string][]string
	}{
		{"add allow", Policy{Allow: prefixes("203.0.113.7", "203.0.113.8", "198.51.100.0/24", "2001:db8::1"), Deny: prefixes("192.0.2.0/24")},
			map[string][]string{SetAllowV4: {"203.0.113.7/32", "203.0.113.8/32"}, SetLearnedV4: {"198.18.0.1/32", "203.0.113.9/32"}}},
		{"deny moves address and purges learned", Policy{Allow: prefixes("203.0.113.8", "198.51.100.0/24", "2001:db8::1"), Deny: prefixes("192.0.2.0/24", "203.0.113.0/28")},
			map[string][]string{SetAllowV4: {"203.0.113.8/32"}, SetDenyV4: {"192.0.2.0/24", "203.0.113.0/28"}, SetLearnedV4: {"198.18.0.1/32"}}},
		{"shrink interval sets", Policy{Allow: prefixes("198.51.100.0/25"), Deny: prefixes("203.0.113.0/28")},
			map[string][]string{SetAllowV4: {}, SetAllowNetV4: {"198.51.100.0/25"}, SetAllowV6: {}, SetDenyV4: {"203.0.113.0/28"}}},
		{"no change", Policy{Allow: prefixes("198.51.100.0/25"), Deny: prefixes("203.0.113.0/28")},
			map[string][]string{SetAllowNetV4: {"198.51.100.0/25"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustBuild(t, tt.p)
			if delta {
				err = c.SyncSetsFrom(ctx, prev, r)
			} else {
				err = SyncSets(ctx, target, r)
			}
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
			prev = r
			if err := Verify(ctx, target, r); err != nil {
				t.Fatalf("Verify after the sync: %v", err)
			}
			for set, want := range tt.want {
				if diff := cmp.Diff(want, liveSet(t, target, set)); diff != "" {
					t.Errorf("set %s (-want +got):\n%s", set, diff)
				}
			}
		})
	}
}

// TestSyncSetsFromDrift: when the live sets are not what the previous ruleset says (changed
// behind the tool's back), the difference cannot be applied as such and a full sync runs:
// the result is still exactly the new ruleset's sets.
func TestSyncSetsFromDrift(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	before := mustBuild(t, Policy{Allow: prefixes("203.0.113.7", "203.0.113.8"), Deny: prefixes("192.0.2.0/24")})
	if err := Apply(ctx, target, before); err != nil {
		t.Fatal(err)
	}
	nftIn(t, target, "delete element inet terok_shield allow_v4 { 203.0.113.8 }\nadd element inet terok_shield allow_v4 { 203.0.113.99 }\n", "-f", "-")
	after := mustBuild(t, Policy{Allow: prefixes("203.0.113.7"), Deny: prefixes("192.0.2.0/24", "198.18.0.0/16")})
	c, err := Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SyncSetsFrom(ctx, before, after); err != nil {
		t.Fatalf("SyncSetsFrom over drift: %v", err)
	}
	if err := Verify(ctx, target, after); err != nil {
		t.Errorf("Verify after SyncSetsFrom over drift: %v", err)
	}
}
