// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		if !strings.Contains(s, "/") {
			a := netip.MustParseAddr(s)
			out[i] = netip.PrefixFrom(a, a.BitLen())
			continue
		}
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// liveSet returns a set's elements as strings, via Inspect.
func liveSet(t *testing.T, target Target, name string) []string {
	t.Helper()
	st, err := Inspect(context.Background(), target)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	for _, s := range st.Sets {
		if s.Name == name {
			out := []string{}
			for _, e := range s.Elements {
				out = append(out, e.Prefix.String())
			}
			return out
		}
	}
	t.Fatalf("set %s not found", name)
	return nil
}

func TestOverlappingPrefixesLoad(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	p := Policy{
		Allow: prefixes("10.0.0.0/8", "10.1.2.3", "10.1.0.0/16", "10.2.0.0/16", "2001:db8::/32", "2001:db8:1::/48"),
		Deny: prefixes("192.0.2.0/24", "192.0.2.3", "192.0.2.0/25", "192.0.3.0/24",
			"0.0.0.0/8", "255.255.255.0/24", "ffff::/16", "2001:db8:ffff::/48", "2001:db8:ffff:1::/64"),
	}
	r := mustBuild(t, p)
	if err := Apply(ctx, target, r); err != nil {
		t.Fatalf("Apply with overlapping prefixes: %v", err)
	}
	if err := Verify(ctx, target, r); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, tc := range []struct {
		set  string
		want []string
	}{
		{SetAllowV4, []string{"10.1.2.3/32"}},
		{SetAllowNetV4, []string{"10.0.0.0/8"}},
		{SetAllowNetV6, []string{"2001:db8::/32"}},
		{SetDenyV4, []string{"0.0.0.0/8", "192.0.2.0/23", "255.255.255.0/24"}},
		{SetDenyV6, []string{"2001:db8:ffff::/48", "ffff::/16"}},
	} {
		if diff := cmp.Diff(tc.want, liveSet(t, target, tc.set)); diff != "" {
			t.Errorf("set %s (-want +got):\n%s", tc.set, diff)
		}
	}
}

func TestAddDeleteElements(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	if err := Apply(ctx, target, mustBuild(t, samplePolicy(ModeUp))); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	steps := []struct {
		name   string
		del    bool
		kind   SetKind
		prefix []netip.Prefix
		set    string
		want   []string
	}{
		{"allow single v4", false, KindAllow, prefixes("203.0.113.20", "203.0.113.10"), SetAllowV4, []string{"198.51.100.7/32", "203.0.113.10/32", "203.0.113.20/32"}},
		{"allow single v6", false, KindAllow, prefixes("2001:db8::20"), SetAllowV6, []string{"2001:db8::1/128", "2001:db8::20/128"}},
		{"allow cidr inside existing", false, KindAllow, prefixes("198.51.100.0/25"), SetAllowNetV4, []string{"10.1.0.0/16", "198.51.100.0/24"}},
		{"allow adjacent cidr merges", false, KindAllow, prefixes("198.51.101.0/24"), SetAllowNetV4, []string{"10.1.0.0/16", "198.51.100.0/23"}},
		{"allow cidr spanning two", false, KindAllow, prefixes("10.0.0.0/8"), SetAllowNetV4, []string{"10.0.0.0/8", "198.51.100.0/23"}},
		{"deny duplicate", false, KindDeny, prefixes("192.0.2.0/24"), SetDenyV4, []string{"192.0.2.0/24"}},
		{"deny covering", false, KindDeny, prefixes("192.0.2.0/23"), SetDenyV4, []string{"192.0.2.0/23"}},
		{"deny single inside", false, KindDeny, prefixes("192.0.3.7"), SetDenyV4, []string{"192.0.2.0/23"}},
		{"undeny splits", true, KindDeny, prefixes("192.0.2.0/24"), SetDenyV4, []string{"192.0.3.0/24"}},
		{"undeny absent", true, KindDeny, prefixes("198.18.0.1"), SetDenyV4, []string{"192.0.3.0/24"}},
		{"remove allow single", true, KindAllow, prefixes("203.0.113.10", "203.0.113.99"), SetAllowV4, []string{"198.51.100.7/32", "203.0.113.20/32"}},
		{"remove allow cidr part", true, KindAllow, prefixes("198.51.100.0/24"), SetAllowNetV4, []string{"10.0.0.0/8", "198.51.101.0/24"}},
		{"learned add", false, KindLearned, prefixes("203.0.113.30", "2001:db8::30"), SetLearnedV4, []string{"203.0.113.30/32"}},
		{"learned remove absent", true, KindLearned, prefixes("203.0.113.31"), SetLearnedV4, []string{"203.0.113.30/32"}},
		{"learned remove", true, KindLearned, prefixes("203.0.113.30"), SetLearnedV4, []string{}},
	}
	for _, s := range steps {
		op := AddElements
		if s.del {
			op = DeleteElements
		}
		if err := op(ctx, target, s.kind, s.prefix); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if diff := cmp.Diff(s.want, liveSet(t, target, s.set)); diff != "" {
			t.Errorf("%s: set %s (-want +got):\n%s", s.name, s.set, diff)
		}
	}
	// nft itself must still be able to list the sets we edited.
	out := nftIn(t, target, "", "list", "set", "inet", TableName, SetDenyV4)
	if !strings.Contains(out, "192.0.3.0/24") {
		t.Errorf("nft list set deny_v4 lacks 192.0.3.0/24:\n%s", out)
	}
	if err := AddElements(ctx, target, KindLearned, prefixes("203.0.113.0/24")); err == nil {
		t.Errorf("AddElements(KindLearned, CIDR) succeeded, want error")
	}
}

// TestLearnedTimeoutAndRefresh documents the kernel behaviour: learned
// elements expire after the set timeout; a plain re-add (dnsmasq's nftset,
// here `nft add element`) does not refresh the expiry; Refresh does.
func TestLearnedTimeoutAndRefresh(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	p := samplePolicy(ModeUp)
	p.LearnedTimeout = 3 * time.Second
	if err := Apply(ctx, target, mustBuild(t, p)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	refreshed, plain := netip.MustParseAddr("203.0.113.40"), netip.MustParseAddr("203.0.113.41")
	if err := Refresh(ctx, target, []netip.Addr{refreshed}); err != nil {
		t.Fatalf("Refresh (first add): %v", err)
	}
	nftIn(t, target, "", "add", "element", "inet", TableName, SetLearnedV4, "{ "+plain.String()+" }")
	time.Sleep(1500 * time.Millisecond)
	if err := Refresh(ctx, target, []netip.Addr{refreshed}); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	nftIn(t, target, "", "add", "element", "inet", TableName, SetLearnedV4, "{ "+plain.String()+" }")
	expires := map[netip.Addr]time.Duration{}
	st, err := Inspect(ctx, target)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	for _, s := range st.Sets {
		if s.Name == SetLearnedV4 {
			for _, e := range s.Elements {
				expires[e.Prefix.Addr()] = e.Expires
			}
		}
	}
	if got := expires[refreshed]; got < 2500*time.Millisecond {
		t.Errorf("after Refresh, %s expires in %s, want > 2.5s", refreshed, got)
	}
	if got := expires[plain]; got == 0 || got > 2*time.Second {
		t.Errorf("after plain re-add, %s expires in %s, want the original expiry (< 2s)", plain, got)
	}
	time.Sleep(3200 * time.Millisecond)
	if got := liveSet(t, target, SetLearnedV4); len(got) != 0 {
		t.Errorf("learned_v4 after timeout = %v, want empty", got)
	}
}

// TestLearnedLargeLoad: the learned sets take far more than the kernel's 65,535-element default
// for sets a rule updates, and a large add is chunked instead of failing as one message.
func TestLearnedLargeLoad(t *testing.T) {
	target := newNetNS(t)
	ctx := context.Background()
	if err := Apply(ctx, target, mustBuild(t, Policy{})); err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	ps := make([]netip.Prefix, n)
	for i := range ps {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		ps[i] = netip.PrefixFrom(a, 32)
	}
	if err := AddElements(ctx, target, KindLearned, ps); err != nil {
		t.Fatalf("AddElements(KindLearned, %d addresses): %v", n, err)
	}
	st, err := Inspect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Sets {
		if s.Name == SetLearnedV4 && len(s.Elements) != n {
			t.Errorf("%s holds %d elements, want %d", SetLearnedV4, len(s.Elements), n)
		}
	}
}
