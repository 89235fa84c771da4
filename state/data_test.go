// SPDX-License-Identifier: Apache-2.0

package state

import (
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/terok-ai/terok-shield/profiles"
)

func mp(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func ma(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

var prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestEffective(t *testing.T) {
	tests := []struct {
		name     string
		data     Data
		allow    Entries
		wantDeny Entries
	}{
		{
			name:  "union",
			data:  Data{Resolved: Entries{Domains: []string{"b.com", "a.com"}, Prefixes: mp("192.0.2.0/25")}, Allow: Entries{Domains: []string{"a.com", "c.com"}, Prefixes: mp("192.0.2.128/25")}},
			allow: Entries{Domains: []string{"a.com", "b.com", "c.com"}, Prefixes: mp("192.0.2.0/24")},
		},
		{
			name: "deny wins",
			data: Data{
				Resolved: Entries{Domains: []string{"a.com", "x.svc.com", "svc.com"}, Wildcards: []string{"svc.com", "in.corp.com"}, Prefixes: mp("198.51.100.0/24", "203.0.113.7/32", "8.8.8.8/32")},
				Allow:    Entries{Domains: []string{"b.com"}, Prefixes: mp("203.0.113.8/32")},
				Deny:     Entries{Domains: []string{"a.com", "b.com"}, Wildcards: []string{"svc.com", "corp.com"}, Prefixes: mp("203.0.113.0/24", "198.51.100.1/32")},
			},
			// svc.com stays: a wildcard denies strictly below it. 198.51.100.0/24 stays (it contains the denied /32; the deny set blocks that part).
			allow:    Entries{Domains: []string{"svc.com"}, Prefixes: mp("8.8.8.8/32", "198.51.100.0/24")},
			wantDeny: Entries{Domains: []string{"a.com", "b.com"}, Wildcards: []string{"corp.com", "svc.com"}, Prefixes: mp("198.51.100.1/32", "203.0.113.0/24")},
		},
		{
			name: "static addresses",
			data: Data{
				Resolved: Entries{Domains: []string{"a.com", "gone.com"}, Wildcards: []string{"w.com"}},
				Deny:     Entries{Domains: []string{"gone.com"}},
				Static: &Static{Addrs: map[string][]netip.Addr{
					"a.com":    ma("140.82.112.3", "10.0.0.1", "::ffff:169.254.169.254", "2606:4700::1"),
					"x.w.com":  ma("1.1.1.1"),
					"gone.com": ma("9.9.9.9"),
				}},
			},
			allow:    Entries{Domains: []string{"a.com"}, Wildcards: []string{"w.com"}, Prefixes: mp("1.1.1.1/32", "140.82.112.3/32", "2606:4700::1/128")},
			wantDeny: Entries{Domains: []string{"gone.com"}},
		},
		{
			name:  "explicit private allow",
			data:  Data{Allow: Entries{Prefixes: mp("10.0.0.5/32")}},
			allow: Entries{Prefixes: mp("10.0.0.5/32")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.allow, tt.data.EffectiveAllow(), prefixCmp); diff != "" {
				t.Errorf("EffectiveAllow mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDeny, tt.data.EffectiveDeny(), prefixCmp); diff != "" {
				t.Errorf("EffectiveDeny mismatch (-want +got):\n%s", diff)
			}
			names := Entries{Domains: tt.allow.Domains, Wildcards: tt.allow.Wildcards}
			if diff := cmp.Diff(names, tt.data.EffectiveAllowNames(), prefixCmp); diff != "" {
				t.Errorf("EffectiveAllowNames mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAllowDenyEntry(t *testing.T) {
	var d Data
	e := profiles.Entry{Kind: profiles.Domain, Name: "x.com"}
	p := profiles.Entry{Kind: profiles.Prefix, Prefix: netip.MustParsePrefix("192.0.2.1/32")}
	d.AllowEntry(e)
	d.AllowEntry(e)
	d.AllowEntry(p)
	d.DenyEntry(e)
	want := Data{Allow: Entries{Domains: []string{}, Prefixes: mp("192.0.2.1/32")}, Deny: Entries{Domains: []string{"x.com"}}}
	if diff := cmp.Diff(want, d, prefixCmp); diff != "" {
		t.Errorf("after allow, allow, deny (-want +got):\n%s", diff)
	}
	if d.Allow.Remove(e) {
		t.Error("Remove of an absent entry reported true")
	}
}

func TestParseStartTime(t *testing.T) {
	tests := []struct {
		name, stat string
		want       uint64
		wantErr    bool
	}{
		{"plain", "1 (sleep) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3", 98765, false},
		{"hostile comm", "7 (a) b) S 1 2 ) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 555 1 2", 555, false},
		{"short", "1 (x) S 0 1", 0, true},
		{"no comm", "1 x S", 0, true},
		{"not a number", "1 (x) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 abc 1", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStartTime(%q) = %d, %v; want %d, error %v", tt.stat, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	id, err := CurrentIdentity(os.Getpid(), "cid")
	if err != nil {
		t.Fatal(err)
	}
	if id.StartTime == 0 || id.NetNSInode == 0 {
		t.Fatalf("CurrentIdentity = %+v", id)
	}
	if err := id.Check(); err != nil {
		t.Errorf("Check() of own identity = %v", err)
	}
	stale := id
	stale.StartTime++
	if err := stale.Check(); err == nil {
		t.Error("Check() with another start time succeeded")
	}
	other := id
	other.NetNSInode++
	if err := other.Check(); err == nil {
		t.Error("Check() with another netns succeeded")
	}
	gone := NetNSIdentity{PID: 1 << 30}
	if err := gone.Check(); err == nil {
		t.Error("Check() of a missing pid succeeded")
	}
}
