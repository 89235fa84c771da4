// SPDX-License-Identifier: Apache-2.0

package main

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
		files      map[string]string
		want       []netip.Addr
		errSub     string
	}{
		{"env wins", func(k string) string {
			if k == EnvUpstream {
				return "192.0.2.53, ::ffff:198.51.100.1"
			}
			return ""
		}, addrs("203.0.113.1"), true, nil, addrs("192.0.2.53", "198.51.100.1"), ""},
		{"bad env", func(k string) string {
			if k == EnvUpstream {
				return "dns.example"
			}
			return ""
		}, nil, false, nil, nil, "TEROK_SHIELD_UPSTREAM"},
		{"config", noenv, addrs("203.0.113.1"), false, nil, addrs("203.0.113.1"), ""},
		{"rootless slirp4netns", noenv, nil, true, map[string]string{"/etc/resolv.conf": "nameserver 192.0.2.1\n"}, addrs("10.0.2.3"), ""},
		{"rootful resolv.conf, all non-loopback servers", noenv, nil, false, map[string]string{
			"/etc/resolv.conf": "# x\nnameserver 127.0.0.1\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver 192.0.2.1\nsearch example\n",
		}, addrs("192.0.2.1", "2001:db8::1"), ""},
		{"systemd-resolved stub", noenv, nil, false, map[string]string{
			"/etc/resolv.conf":                 "nameserver 127.0.0.53\noptions edns0\n",
			"/run/systemd/resolve/resolv.conf": "nameserver 198.51.100.7\n",
		}, addrs("198.51.100.7"), ""},
		{"only loopback", noenv, nil, false, map[string]string{"/etc/resolv.conf": "nameserver 127.0.0.53\n"}, nil, "no upstream DNS server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := detectUpstreams(tt.env, tt.configured, tt.rootless, files(tt.files))
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
