// SPDX-License-Identifier: Apache-2.0

package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestParse(t *testing.T) {
	in := `
mode: hook
default_profiles: [dev-python, base, dev-python]
loopback_ports: [8080, 5432]
audit:
  enabled: false
  max_bytes: 0x100000
resolver:
  tier: static
  upstream: [10.0.2.3, "::ffff:1.1.1.1", 2606:4700:4700::1111]
  learned_ttl: 30m
  static_max_age: 10m
shield:
  default: true
  rules:
    - image: "docker.io/library/*"
      shield: false
    - name: "agent-*"
      image: "*python*"
      profiles: [dev-python]
    - &r
      name: "ci-?"
`
	got, err := Parse("config.yml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Mode:            "hook",
		DefaultProfiles: []string{"dev-python", "base"},
		LoopbackPorts:   []int{8080, 5432},
		Audit:           Audit{Enabled: false, MaxBytes: 1 << 20},
		Resolver:        Resolver{Tier: "static", Upstream: []netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2606:4700:4700::1111")}, LearnedTTL: 30 * time.Minute, StaticMaxAge: 10 * time.Minute},
		Shield: Shield{Default: true, Rules: []Rule{
			{Image: "docker.io/library/*", Shield: false},
			{Image: "*python*", Name: "agent-*", Profiles: []string{"dev-python"}, Shield: true},
			{Name: "ci-?", Shield: true},
		}},
	}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	want := Defaults()
	for _, tt := range []struct{ name, data string }{{"empty", ""}, {"comment only", "# nothing\n"}, {"null", "~\n"}, {"document marker", "---\n"}} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".yml")
			os.WriteFile(p, []byte(tt.data), 0o600)
			got, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, addrCmp); diff != "" {
				t.Errorf("Load(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
	got, err := Load(filepath.Join(dir, "missing.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("Load(missing) mismatch (-want +got):\n%s", diff)
	}
	if want.Audit.MaxBytes != 10<<20 || !want.Audit.Enabled || want.DefaultProfiles[0] != "dev-standard" || want.Resolver.LearnedTTL != time.Hour {
		t.Errorf("Defaults() = %+v", want)
	}
	if _, err := Load(dir); err == nil {
		t.Error("Load(a directory) succeeded")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"syntax", "a: [", "config.yml: yaml:"},
		{"top not mapping", "- a\n", "config.yml:1: expected a mapping, got a list"},
		{"unknown top", "mdoe: auto\n", "config.yml:1: mdoe: unknown key (known: audit, default_profiles, loopback_ports, mode, resolver, shield)"},
		{"duplicate", "mode: auto\nmode: hook\n", "mode"},
		{"bad mode", "mode: shim\n", `config.yml:1: mode: "shim" is not one of auto, hook`},
		{"profiles not list", "default_profiles: dev\n", "config.yml:1: default_profiles: expected a list, got str \"dev\""},
		{"profiles empty", "default_profiles: []\n", "config.yml:1: default_profiles: must not be empty"},
		{"profile bad name", "default_profiles: [ok, ../etc]\n", `config.yml:1: default_profiles[1]: invalid profile name "../etc"`},
		{"profile null", "default_profiles: [~]\n", "config.yml:1: default_profiles[0]: expected a string, got null"},
		{"port range", "loopback_ports: [80, 70000]\n", "config.yml:1: loopback_ports[1]: 70000 out of range 1..65535"},
		{"port zero", "loopback_ports: 0\n", "config.yml:1: loopback_ports: 0 out of range 1..65535"},
		{"port bool", "loopback_ports: [true]\n", "config.yml:1: loopback_ports[0]: expected an integer, got bool \"true\""},
		{"port string", "loopback_ports: [\"80\"]\n", "loopback_ports[0]: expected an integer, got str \"80\""},
		{"port map", "loopback_ports: {a: 1}\n", "loopback_ports: expected a list, got a mapping"},
		{"audit not map", "audit: true\n", "config.yml:1: audit: expected a mapping, got bool \"true\""},
		{"audit unknown", "audit:\n  enable: true\n", "config.yml:2: audit.enable: unknown key (known: enabled, max_bytes)"},
		{"audit yes", "audit:\n  enabled: yes-please\n", "audit.enabled: expected true or false, got str \"yes-please\""},
		{"audit max small", "audit:\n  max_bytes: 100\n", "audit.max_bytes: 100 out of range 4096..1099511627776"},
		{"audit max float", "audit:\n  max_bytes: 1.5\n", "audit.max_bytes: expected an integer, got float \"1.5\""},
		{"tier", "resolver:\n  tier: dig\n", `config.yml:2: resolver.tier: "dig" is not one of auto, dnsmasq, static`},
		{"upstream bad", "resolver:\n  upstream: [1.1.1.1, dns.google]\n", `config.yml:2: resolver.upstream[1]: invalid IP address "dns.google"`},
		{"upstream zone", "resolver:\n  upstream: [\"fe80::1%eth0\"]\n", `resolver.upstream[0]: invalid IP address`},
		{"ttl bad", "resolver:\n  learned_ttl: soon\n", `resolver.learned_ttl: invalid duration "soon"`},
		{"ttl int", "resolver:\n  learned_ttl: 60\n", `resolver.learned_ttl: expected a duration such as "1h" or "90s", got int "60"`},
		{"ttl negative", "resolver:\n  learned_ttl: -1m\n", `resolver.learned_ttl: duration must be positive`},
		{"static max age zero", "resolver:\n  static_max_age: 0s\n", `resolver.static_max_age: duration must be positive`},
		{"shield default", "shield:\n  default: 1\n", "shield.default: expected true or false, got int \"1\""},
		{"rules not list", "shield:\n  rules: {}\n", "config.yml:2: shield.rules: expected a list, got a mapping"},
		{"rule empty", "shield:\n  rules:\n    - image: a\n    - profiles: [base]\n", "config.yml:4: shield.rules[1]: a rule needs image and/or name"},
		{"rule unknown", "shield:\n  rules:\n    - image: a\n    - {image: b}\n    - imgae: c\n", "config.yml:5: shield.rules[2].imgae: unknown key (known: image, name, profiles, shield)"},
		{"rule glob", "shield:\n  rules:\n    - image: a\n    - image: b\n    - image: 'x\\'\n", `config.yml:5: shield.rules[2].image: invalid glob "x\\": trailing '\'`},
		{"rule glob empty", "shield:\n  rules:\n    - name: ''\n", `shield.rules[0].name: invalid glob "": empty glob`},
		{"rule glob control", "shield:\n  rules:\n    - name: \"a\\tb\"\n", `shield.rules[0].name: invalid glob`},
		{"rule profiles", "shield:\n  rules:\n    - name: a\n      profiles: [Dev]\n", `config.yml:4: shield.rules[0].profiles[0]: invalid profile name "Dev"`},
		{"rule shield", "shield:\n  rules:\n    - name: a\n      shield: no\n", `shield.rules[0].shield: expected true or false, got str "no"`},
		{"key not scalar", "? [a]\n: 1\n", "expected a key, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("config.yml", []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) = %+v, %v; want error containing %q", tt.in, c, err, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	c, err := Parse("config.yml", []byte(`
default_profiles: [dev-standard]
shield:
  default: false
  rules:
    - image: "docker.io/library/postgres*"
      shield: false
    - image: "*python*"
      name: "agent-*"
      profiles: [dev-python]
    - name: "agent-*"
    - image: "ghcr.io/org/*"
      profiles: [nvidia-hpc, dev-node]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image, name string
		profiles    []string
		shield      bool
		matched     bool
	}{
		{"docker.io/library/postgres:16", "agent-1", []string{"dev-standard"}, false, true},
		{"docker.io/library/python:3.12", "agent-1", []string{"dev-python"}, true, true},
		{"docker.io/library/python:3.12", "web", []string{"dev-standard"}, false, false},
		{"alpine", "agent-x", []string{"dev-standard"}, true, true},
		{"ghcr.io/org/team/tool:1", "", []string{"nvidia-hpc", "dev-node"}, true, true},
		{"ghcr.io/other/tool", "", []string{"dev-standard"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.image+"/"+tt.name, func(t *testing.T) {
			p, s, m := c.Match(tt.image, tt.name)
			if diff := cmp.Diff(tt.profiles, p); diff != "" || s != tt.shield || m != tt.matched {
				t.Errorf("Match(%q, %q) = %v, %v, %v; want %v, %v, %v", tt.image, tt.name, p, s, m, tt.profiles, tt.shield, tt.matched)
			}
		})
	}
	c.Shield.Default = true
	if _, s, m := c.Match("busybox", "x"); !s || m {
		t.Errorf("Match with shield.default = %v, %v; want true, false", s, m)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "a/b:c", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*b*", "abc", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aüc", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`a\`, "a", false},
		{"docker.io/*/python:*", "docker.io/library/python:3", true},
		{"**x", "yyx", true},
		{"abc", "abcd", false},
		{"abc", "ab", false},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"override", map[string]string{"TEROK_SHIELD_CONFIG_DIR": "/c", "XDG_CONFIG_HOME": "/x", "HOME": "/h"}, "/c/config.yml"},
		{"xdg", map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/h"}, "/x/terok/shield/config.yml"},
		{"home", map[string]string{"HOME": "/h"}, "/h/.config/terok/shield/config.yml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultPath(func(k string) string { return tt.env[k] })
			if err != nil || got != tt.want {
				t.Errorf("DefaultPath = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
	if got, err := DefaultPath(func(string) string { return "" }); err == nil {
		t.Errorf("DefaultPath(empty env) = %q, want error", got)
	}
}
