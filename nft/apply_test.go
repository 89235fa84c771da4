// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

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

func mustBuild(t testing.TB, p Policy) *Ruleset {
	t.Helper()
	r, err := Build(p)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return r
}

func TestApplyVerifyInspect(t *testing.T) {
	ctx := context.Background()
	for _, m := range allModes {
		t.Run(m.String(), func(t *testing.T) {
			target := newNetNS(t)
			st, err := Inspect(ctx, target)
			if err != nil {
				t.Fatalf("Inspect before Apply: %v", err)
			}
			if st.Mode != ModeInactive {
				t.Errorf("Inspect before Apply: mode %s, want inactive", st.Mode)
			}
			r := mustBuild(t, samplePolicy(m))
			if err := Apply(ctx, target, r); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if err := Verify(ctx, target, r); err != nil {
				t.Fatalf("Verify right after Apply: %v", err)
			}
			st, err = Inspect(ctx, target)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if st.Mode != m {
				t.Errorf("Inspect mode = %s, want %s", st.Mode, m)
			}
			// Re-applying (mode switch path) replaces the table atomically.
			if err := Apply(ctx, target, r); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if err := Verify(ctx, target, r); err != nil {
				t.Fatalf("Verify after second Apply: %v", err)
			}
			// List renders what nft itself would accept: feed it back.
			text, err := List(ctx, target)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if !strings.Contains(text, "table inet terok_shield {") {
				t.Errorf("List output lacks table header:\n%s", text)
			}
			ref := newNetNS(t)
			nftIn(t, ref, text, "-f", "-")
			if got, want := nftIn(t, ref, "", "list", "table", "inet", TableName), nftIn(t, target, "", "list", "table", "inet", TableName); got != want {
				t.Errorf("nft -f List() output lists differently:\n%s", cmp.Diff(want, got))
			}
		})
	}
}

func TestInspectCountersAndSets(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	r := mustBuild(t, samplePolicy(ModeUp))
	if err := Apply(ctx, target, r); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st, err := Inspect(ctx, target)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	var allowNet4 []string
	for _, s := range st.Sets {
		if s.Name == SetAllowNetV4 {
			for _, e := range s.Elements {
				allowNet4 = append(allowNet4, e.Prefix.String())
			}
		}
	}
	if diff := cmp.Diff([]string{"10.1.0.0/16", "198.51.100.0/24"}, allowNet4); diff != "" {
		t.Errorf("allow_net_v4 elements (-want +got):\n%s", diff)
	}
	// Counters: output deny x2, dns guard x4, allow x4, learned x2, terminal; input deny x2.
	if got, want := len(st.Counters), 15; got != want {
		t.Errorf("Inspect counters = %d, want %d: %+v", got, want, st.Counters)
	}
}

func TestVerifyDetectsDrift(t *testing.T) {
	ctx := context.Background()
	r := mustBuild(t, samplePolicy(ModeUp))
	tests := []struct {
		name   string
		mutate string // nft -f input run after Apply
		want   string // substring of the Verify error
	}{
		{"policy changed", "chain inet terok_shield output { type filter hook output priority filter; policy accept; }\n", "chain output: policy accept, want drop"},
		{"rule appended", "add rule inet terok_shield output accept\n", fmt.Sprintf("chain output rule %d unexpected", len(r.chains[0].rules)+1)},
		{"rule inserted", "insert rule inet terok_shield output ip daddr 192.0.2.99 accept\n", `chain output rule 1: got "ip daddr 192.0.2.99 accept"`},
		{"allow element added", "add element inet terok_shield allow_v4 { 192.0.2.77 }\n", "set allow_v4: 1 unexpected element(s): 192.0.2.77"},
		{"allow element removed", "delete element inet terok_shield allow_v4 { 203.0.113.10 }\n", "set allow_v4: 1 element(s) missing: 203.0.113.10"},
		{"deny element removed", "delete element inet terok_shield deny_v6 { 2001:db8:dead::/64 }\n", "set deny_v6: 1 element(s) missing: 2001:db8:dead::/64"},
		{"extra chain", "add chain inet terok_shield sneaky\n", "unexpected chain sneaky"},
		{"extra set", "add set inet terok_shield sneaky { type ipv4_addr; }\n", "unexpected set sneaky"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := newNetNS(t)
			if err := Apply(ctx, target, r); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			nftIn(t, target, tc.mutate, "-f", "-")
			err := Verify(ctx, target, r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify after %q = %v, want error containing %q", tc.mutate, err, tc.want)
			}
		})
	}
	t.Run("no table", func(t *testing.T) {
		err := Verify(ctx, newNetNS(t), r)
		if !errors.Is(err, ErrNoTable) {
			t.Errorf("Verify on empty netns = %v, want ErrNoTable", err)
		}
	})
	// A rule changed in place, keeping its shape: only one constant of one
	// expression differs, which the comparison must still see.
	for _, tc := range []struct{ name, replacement string }{
		{"verdict changed in place", `oifname "lo" drop`},
		{"constant changed in place", `oifname "lp" accept`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, handle := appliedWithHandle(t, r, `oifname "lo" accept`)
			nftIn(t, target, "", "replace", "rule", "inet", TableName, "output", "handle", handle, tc.replacement)
			err := Verify(ctx, target, r)
			want := fmt.Sprintf("got %q, want %q", tc.replacement, `oifname "lo" accept`)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Verify after replacing the loopback rule with %q = %v, want %s", tc.replacement, err, want)
			}
		})
	}
	t.Run("rule deleted by handle", func(t *testing.T) {
		target, handle := appliedWithHandle(t, r, "@deny_v4")
		nftIn(t, target, "", "delete", "rule", "inet", TableName, "output", "handle", handle)
		err := Verify(ctx, target, r)
		if err == nil || !strings.Contains(err.Error(), `want "ip daddr @deny_v4`) {
			t.Errorf("Verify after deleting the deny_v4 rule = %v, want it named", err)
		}
	})
}

// appliedWithHandle applies r in a fresh namespace and returns the handle of the output
// chain's rule whose listing contains marker.
func appliedWithHandle(t *testing.T, r *Ruleset, marker string) (Target, string) {
	t.Helper()
	target := newNetNS(t)
	if err := Apply(context.Background(), target, r); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	out := nftIn(t, target, "", "-a", "list", "chain", "inet", TableName, "output")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, marker) {
			return target, line[strings.LastIndex(line, " ")+1:]
		}
	}
	t.Fatalf("no rule with %q in:\n%s", marker, out)
	return target, ""
}

// TestApplyCarriesLearned: replacing the table (a mode switch) keeps what the learned sets
// hold, with the remaining lifetime, except addresses the new table denies; a table without
// learned sets (block) carries nothing over.
func TestApplyCarriesLearned(t *testing.T) {
	requirePrivileged(t)
	ctx := context.Background()
	target := newNetNS(t)
	up := samplePolicy(ModeUp)
	up.LearnedTimeout = time.Hour
	if err := Apply(ctx, target, mustBuild(t, up)); err != nil {
		t.Fatal(err)
	}
	learned := []netip.Prefix{
		netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("198.18.0.2/32"),
		netip.MustParsePrefix("2001:db8:5::1/128"),
	}
	if err := AddElements(ctx, target, KindLearned, learned); err != nil {
		t.Fatal(err)
	}
	learnedOf := func() map[string]time.Duration {
		t.Helper()
		st, err := Inspect(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]time.Duration{}
		for _, s := range st.Sets {
			if s.Name == SetLearnedV4 || s.Name == SetLearnedV6 {
				for _, e := range s.Elements {
					got[e.Prefix.Addr().String()] = e.Expires
				}
			}
		}
		return got
	}
	down := samplePolicy(ModeDown)
	down.LearnedTimeout = time.Hour
	down.Deny = append(down.Deny, netip.MustParsePrefix("198.18.0.2/32"))
	rdown := mustBuild(t, down)
	if err := Apply(ctx, target, rdown); err != nil {
		t.Fatal(err)
	}
	got := learnedOf()
	if len(got) != 2 || got["198.18.0.1"] == 0 || got["2001:db8:5::1"] == 0 {
		t.Errorf("learned after the switch to down = %v, want 198.18.0.1 and 2001:db8:5::1 (198.18.0.2 is denied now)", got)
	}
	for a, left := range got {
		if left > time.Hour || left < 59*time.Minute {
			t.Errorf("%s expires in %v, want its remaining lifetime (just under 1h)", a, left)
		}
	}
	if err := Verify(ctx, target, rdown); err != nil {
		t.Errorf("Verify after carrying learned entries: %v", err)
	}
	if err := Apply(ctx, target, mustBuild(t, samplePolicy(ModeBlock))); err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, target, mustBuild(t, up)); err != nil {
		t.Fatal(err)
	}
	if got := learnedOf(); len(got) != 0 {
		t.Errorf("learned after block → up = %v, want none (block has no learned sets)", got)
	}
}
