// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSyncSets(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	start := Policy{Allow: prefixes("203.0.113.7", "198.51.100.0/24", "2001:db8::1"), Deny: prefixes("192.0.2.0/24")}
	if err := Apply(ctx, target, mustBuild(t, start)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := AddElements(ctx, target, KindLearned, prefixes("203.0.113.9", "198.18.0.1")); err != nil {
		t.Fatalf("AddElements learned: %v", err)
	}
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
			if err := SyncSets(ctx, target, r); err != nil {
				t.Fatalf("SyncSets: %v", err)
			}
			if err := Verify(ctx, target, r); err != nil {
				t.Fatalf("Verify after SyncSets: %v", err)
			}
			for set, want := range tt.want {
				if diff := cmp.Diff(want, liveSet(t, target, set)); diff != "" {
					t.Errorf("set %s (-want +got):\n%s", set, diff)
				}
			}
		})
	}
}
