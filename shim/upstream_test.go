// SPDX-License-Identifier: Apache-2.0

package main

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/hookconf"
)

func TestDetectUpstreams(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, os.ErrNotExist
		}
	}
	noenv := func(string) string { return "" }
	tests := []struct {
		name       string
		env        func(string) string
		configured []netip.Addr
		rootless   bool
		netCmd     string
		files      map[string]string
		want       []netip.Addr
		errSub     string
	}{
		{"env wins", func(k string) string {
			if k == EnvUpstream {
				return "192.0.2.53, ::ffff:198.51.100.1"
			}
			return ""
		}, addrs("203.0.113.1"), true, "", nil, addrs("192.0.2.53", "198.51.100.1"), ""},
		{"bad env", func(k string) string {
			if k == EnvUpstream {
				return "dns.example"
			}
			return ""
		}, nil, false, "", nil, nil, "TEROK_SHIELD_UPSTREAM"},
		{"config", noenv, addrs("203.0.113.1"), false, "", nil, addrs("203.0.113.1"), ""},
		{"rootless slirp4netns", noenv, nil, true, "slirp4netns", map[string]string{"/etc/resolv.conf": "nameserver 192.0.2.1\n"}, addrs("10.0.2.3"), ""},
		{"rootless pasta", noenv, nil, true, "pasta", nil, addrs("169.254.1.1"), ""},
		{"rootful resolv.conf, all non-loopback servers", noenv, nil, false, "", map[string]string{
			"/etc/resolv.conf": "# x\nnameserver 127.0.0.1\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver 192.0.2.1\nsearch example\n",
		}, addrs("192.0.2.1", "2001:db8::1"), ""},
		{"systemd-resolved stub", noenv, nil, false, "", map[string]string{
			"/etc/resolv.conf":                 "nameserver 127.0.0.53\noptions edns0\n",
			"/run/systemd/resolve/resolv.conf": "nameserver 198.51.100.7\n",
		}, addrs("198.51.100.7"), ""},
		{"only loopback", noenv, nil, false, "", map[string]string{"/etc/resolv.conf": "nameserver 127.0.0.53\n"}, nil, "no upstream DNS server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := detectUpstreams(tt.env, tt.configured, tt.rootless, tt.netCmd, files(tt.files))
			if tt.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("detectUpstreams() = %v, %v; want error containing %q", got, err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("detectUpstreams() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMajor(t *testing.T) {
	for in, want := range map[string]int{"podman version 4.3.1": 4, "podman version 5.8.2": 5, "podman version 6.0.0-dev": 6, "": 0, "podman version x": 0} {
		if got := parseMajor(in); got != want {
			t.Errorf("parseMajor(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestRootlessNet(t *testing.T) {
	dir := t.TempDir()
	fake := dir + "/podman"
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho podman version 5.2.1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := dir + "/containers.conf"
	env := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return map[string]string{"TEROK_SHIELD_PODMAN": fake, "CONTAINERS_CONF": conf, "PATH": "/usr/bin:/bin"}[k]
		}
	}
	tests := []struct {
		name, conf string
		argv       []string
		want       string
	}{
		{"flag pasta", "", []string{"run", "--network", "pasta:--mtu,1500", "img"}, "pasta"},
		{"flag slirp4netns", "", []string{"run", "--network=slirp4netns", "img"}, "slirp4netns"},
		{"containers.conf", "[network]\ndefault_rootless_network_cmd = \"slirp4netns\"\n", []string{"run", "img"}, "slirp4netns"},
		{"podman 5 default", "", []string{"run", "img"}, "pasta"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(conf, []byte(tt.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			inv := mustParse(t, tt.argv...)
			if got := rootlessNet(inv, hookconf.Conf{Getenv: env(nil), Rootless: true}, env(nil), dir); got != tt.want {
				t.Errorf("rootlessNet(%q) = %q, want %q", tt.argv, got, tt.want)
			}
		})
	}
	// The version is cached next to the state, keyed by the binary.
	data, err := os.ReadFile(dir + "/podman-version")
	if err != nil || !strings.Contains(string(data), "podman version 5.2.1") {
		t.Errorf("version cache = %q, %v", data, err)
	}
}

func mustParse(t *testing.T, argv ...string) *argparse.Invocation {
	t.Helper()
	inv, err := argparse.Parse(argv, argparse.Options{})
	if err != nil {
		t.Fatalf("argparse.Parse(%q): %v", argv, err)
	}
	return inv
}

func TestProtectedPaths(t *testing.T) {
	env := map[string]string{"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1000", "CONTAINERS_CONF": "/etc/x/containers.conf"}
	got := protectedPaths(func(k string) string { return env[k] }, "/home/u/.local/state/terok/shield", "/home/u/.config/terok/shield/profiles", "/usr/local/bin/terok-shield")
	for _, want := range []string{
		"/home/u/.local/state/terok/shield", "/home/u/.config/terok/shield", "/usr/local/bin/terok-shield",
		"/run/podman", "/run/user/1000/podman", "/etc/containers", "/home/u/.config/containers",
		"/home/u/.local/share/terok/shield", "/etc/x/containers.conf", "/usr/share/containers/oci",
	} {
		found := false
		for _, p := range got {
			found = found || p == want
		}
		if !found {
			t.Errorf("protectedPaths() lacks %s: %q", want, got)
		}
	}
}
