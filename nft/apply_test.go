// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func samplePolicy(m Mode) Policy {
	return Policy{
		Mode: m,
		Allow: []netip.Prefix{
			netip.MustParsePrefix("203.0.113.10/32"),
			netip.MustParsePrefix("198.51.100.0/24"),
			netip.MustParsePrefix("198.51.100.7/32"),
			netip.MustParsePrefix("2001:db8::1/128"),
			netip.MustParsePrefix("2001:db8:1::/48"),
			netip.MustParsePrefix("10.1.0.0/16"),
		},
		Deny: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.0/25"),
			netip.MustParsePrefix("192.0.2.128/25"),
			netip.MustParsePrefix("192.0.2.5/32"),
			netip.MustParsePrefix("2001:db8:dead::/64"),
		},
		Upstreams:    []netip.Addr{netip.MustParseAddr("169.254.1.1"), netip.MustParseAddr("fd00::3")},
		HostGateways: []netip.Addr{netip.MustParseAddr("169.254.1.2"), netip.MustParseAddr("10.0.2.2")},
		HostPorts:    []uint16{8080, 443},
	}
}

var allModes = []Mode{ModeUp, ModeDown, ModeDownAll, ModeBlock}

// TestApplyMatchesNftText applies each mode over netlink and loads the
// rendered text with `nft -f` into a second namespace: nft must list both
// identically, so String and the kernel encoding describe the same table.
func TestApplyMatchesNftText(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.String(), func(t *testing.T) {
			r, err := Build(samplePolicy(m))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			ours, ref := newNetNS(t), newNetNS(t)
			if err := Apply(context.Background(), ours, r); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			nftIn(t, ref, r.String(), "-f", "-")
			got := nftIn(t, ours, "", "list", "table", "inet", TableName)
			want := nftIn(t, ref, "", "list", "table", "inet", TableName)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("nft list after Apply differs from nft -f String() (-nft +ours):\n%s", diff)
			}
		})
	}
}
