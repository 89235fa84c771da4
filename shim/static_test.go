// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/resolve"
	"github.com/terok-ai/terok-shield/state"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestChooseTier(t *testing.T) {
	found := func() (string, error) { return "/usr/sbin/dnsmasq", nil }
	missing := func() (string, error) { return "", errors.New("dnsmasq not found") }
	tests := []struct {
		configured string
		find       func() (string, error)
		tier, bin  string
		err        string
	}{
		{"auto", found, state.TierDnsmasq, "/usr/sbin/dnsmasq", ""},
		{"", found, state.TierDnsmasq, "/usr/sbin/dnsmasq", ""},
		{"auto", missing, state.TierStatic, "", ""},
		{"dnsmasq", found, state.TierDnsmasq, "/usr/sbin/dnsmasq", ""},
		{"dnsmasq", missing, "", "", "resolver.tier is dnsmasq, but the resolver is unusable: dnsmasq not found"},
		{"static", found, state.TierStatic, "", ""},
		{"static", missing, state.TierStatic, "", ""},
		{"bogus", found, "", "", `unknown resolver tier "bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.configured+"/"+tt.tier, func(t *testing.T) {
			tier, bin, err := chooseTier(tt.configured, tt.find)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("chooseTier(%q) error = %v, want %q", tt.configured, err, tt.err)
				}
				return
			}
			if err != nil || tier != tt.tier || bin != tt.bin {
				t.Fatalf("chooseTier(%q) = %q, %q, %v; want %q, %q", tt.configured, tier, bin, err, tt.tier, tt.bin)
			}
		})
	}
}

func TestStaticUpstreams(t *testing.T) {
	conf := []byte("# generated\nsearch example\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver ::ffff:192.0.2.1\nnameserver bogus\n")
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	tests := []struct {
		name       string
		env        map[string]string
		configured []netip.Addr
		conf       []byte
		want       []netip.Addr
		err        string
	}{
		{"env wins", map[string]string{EnvUpstream: "192.0.2.53, 2001:db8::53"}, []netip.Addr{netip.MustParseAddr("198.51.100.1")}, conf,
			[]netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}, ""},
		{"config", nil, []netip.Addr{netip.MustParseAddr("198.51.100.1")}, conf, []netip.Addr{netip.MustParseAddr("198.51.100.1")}, ""},
		// Loopback nameservers are fine on the host; scoped ones are left out.
		{"resolv.conf", nil, nil, conf, []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("192.0.2.1")}, ""},
		{"none", nil, nil, []byte("search x\n"), nil, "no nameserver in /etc/resolv.conf"},
		{"bad env", map[string]string{EnvUpstream: "nope"}, nil, conf, nil, "TEROK_SHIELD_UPSTREAM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := staticUpstreams(env(tt.env), tt.configured, tt.conf)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, addrCmp); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestCheckStaticFlags(t *testing.T) {
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"run", "alpine"}, ""},
		{[]string{"run", "-v", "/tmp/x:/data", "alpine"}, ""},
		{[]string{"run", "--add-host", "a.test:192.0.2.1", "alpine"}, "--add-host"},
		{[]string{"run", "--no-hosts", "alpine"}, "--no-hosts"},
		{[]string{"run", "-v", "/tmp/h:/etc/hosts:ro", "alpine"}, "/etc/hosts"},
		{[]string{"run", "--mount", "type=bind,src=/tmp/h,target=/etc//hosts", "alpine"}, "/etc/hosts"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			inv, err := argparse.Parse(tt.args, argparse.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = checkStaticFlags(inv)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected refusal: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "cannot shield this container") {
				t.Fatalf("error = %v, want a refusal naming %q", err, tt.err)
			}
		})
	}
}

// TestResolveStaticCache: an earlier container's addresses are reused while fresh and
// complete; otherwise the names are resolved again (here against no server, so every name
// fails and nothing is reused).
func TestResolveStaticCache(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	a := []netip.Addr{netip.MustParseAddr("198.51.100.1")}
	d := &state.Data{
		Resolved: state.Entries{Domains: []string{"a.test", "b.test"}, Wildcards: []string{"w.test"}},
		Mode:     state.ModeUp,
		Resolver: state.Resolver{Tier: state.TierStatic, StaticMaxAge: state.Duration(30 * time.Minute)},
	}
	prev := func(age time.Duration, names ...string) *state.Data {
		p := &state.Data{Static: &state.Static{Addrs: map[string][]netip.Addr{}, ResolvedAt: now.Add(-age)}}
		for _, n := range names {
			p.Static.Addrs[n] = a
		}
		return p
	}
	tests := []struct {
		name   string
		prev   *state.Data
		reused bool
	}{
		{"no earlier bundle", nil, false},
		{"earlier bundle without static", &state.Data{}, false},
		{"fresh and complete", prev(10*time.Minute, "a.test", "b.test", "old.test"), true},
		{"fresh, a name missing", prev(10*time.Minute, "a.test"), false},
		{"stale", prev(31*time.Minute, "a.test", "b.test"), false},
		{"from the future", prev(-time.Minute, "a.test", "b.test"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolveStatic(context.Background(), d, tt.prev, &resolve.Resolver{}, now)
			if got.Reused != tt.reused {
				t.Fatalf("Reused = %v, want %v", got.Reused, tt.reused)
			}
			if d := cmp.Diff([]string{"*.w.test"}, got.Wildcards); d != "" {
				t.Errorf("wildcards (-want +got):\n%s", d)
			}
			if tt.reused {
				want := &state.Static{Addrs: map[string][]netip.Addr{"a.test": a, "b.test": a}, ResolvedAt: tt.prev.Static.ResolvedAt}
				if d := cmp.Diff(want, got.Static, addrCmp); d != "" {
					t.Errorf("reused static (-want +got):\n%s", d)
				}
				if len(got.Results) != 0 {
					t.Errorf("reused, but resolved: %+v", got.Results)
				}
				return
			}
			// Failed names are recorded without addresses: they count as tried until the
			// addresses are stale (or `resolve --force`).
			wantAddrs := map[string][]netip.Addr{"a.test": nil, "b.test": nil}
			if len(got.Results) != 2 || !got.Results[0].Failed() || !got.Static.ResolvedAt.Equal(now) || !cmp.Equal(wantAddrs, got.Static.Addrs, addrCmp) {
				t.Errorf("resolved: %+v, static %+v", got.Results, got.Static)
			}
		})
	}
}
