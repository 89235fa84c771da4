// SPDX-License-Identifier: Apache-2.0

package dnsmasq

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/golden"
	"github.com/terok-ai/terok-shield/internal/netnstest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.conf golden files")

func minimal() Config {
	return Config{
		Names:     []string{"example.com"},
		Upstreams: []netip.Addr{netip.MustParseAddr("169.254.1.1")},
		Mark:      0x5e1d,
	}
}

// manyNames returns n distinct names of about 20 bytes.
func manyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("host-%04d.example.org", n-i) // unsorted on purpose
	}
	return names
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"minimal", func(*Config) {}},
		{"full", func(c *Config) {
			c.Names = []string{"github.com", "*.github.com", "api.github.com", "*.githubusercontent.com", "github.com"}
			c.Upstreams = []netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("fd00::3")}
			c.Listen = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			c.Mark = 0xffffffff
			c.Table, c.Set4, c.Set6 = "shield", "dns4", "dns6"
			c.MaxCacheTTL = 5 * time.Minute
			c.LogFile = "/run/terok/ctr/dnsmasq.log"
			c.User = "root"
			c.CacheSize = 150
		}},
		{"no-names", func(c *Config) { c.Names = nil }},
		{"long-list", func(c *Config) { c.Names = manyNames(120) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := minimal()
			tc.edit(&c)
			got, err := Render(c)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			goldenPath := filepath.Join("testdata", tc.name+".conf")
			golden.Check(t, goldenPath, string(got), *update)
		})
	}
}

// TestRenderAcceptedByDnsmasq runs `dnsmasq --test` on every golden file.
func TestRenderAcceptedByDnsmasq(t *testing.T) {
	bin, err := Find()
	if err != nil {
		if netnstest.Mandatory() {
			t.Fatalf("no dnsmasq: %v", err)
		}
		t.Skipf("no dnsmasq: %v", err)
	}
	files, _ := filepath.Glob("testdata/*.conf")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		out, err := exec.Command(bin, "--test", "--conf-file="+f).CombinedOutput()
		if err != nil {
			t.Errorf("dnsmasq --test %s: %v: %s", f, err, out)
		}
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	a, b := minimal(), minimal()
	a.Names = manyNames(50)
	b.Names = manyNames(50)
	for i, j := 0, len(b.Names)-1; i < j; i, j = i+1, j-1 {
		b.Names[i], b.Names[j] = b.Names[j], b.Names[i]
	}
	ra, errA := Render(a)
	rb, errB := Render(b)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if !bytes.Equal(ra, rb) {
		t.Errorf("name order changes the output")
	}
	if a.Names[0] != "host-0050.example.org" {
		t.Errorf("Render reordered the caller's slice")
	}
}

func TestRenderSplitsLongLines(t *testing.T) {
	c := minimal()
	c.Names = manyNames(2000)
	c.Table, c.Set4, c.Set6 = strings.Repeat("t", 64), strings.Repeat("a", 64), strings.Repeat("b", 64)
	c.LogFile = "/" + strings.Repeat("l", maxPath-1)
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSuffix(line, "\n")
		if len(line) > MaxLine {
			t.Errorf("line of %d bytes: %.60q", len(line), line)
		}
		key, val, _ := strings.Cut(line, "=")
		switch key {
		case "connmark-allowlist":
			_, list, _ := strings.Cut(val, ",")
			seen[key] += len(strings.Split(list, "/"))
		case "server", "nftset":
			seen[key] += strings.Count(val, "/") - 1
		}
	}
	want := map[string]int{"connmark-allowlist": 2000, "server": 2000, "nftset": 2000}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("names per option (-want +got):\n%s", diff)
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"example.com", true},
		{"a.b", true},
		{"*.example.com", true},
		{"xn--bcher-kva.example", true},
		{"a--b.example.com", true},
		{"1.example.com", true},
		{"foo.example.123a", true},
		{strings.Repeat("a", 63) + ".com", true},
		{strings.Repeat("a.", 125) + "com", true}, // 253 bytes
		{strings.Repeat("a.", 126) + "com", false},
		{strings.Repeat("a", 64) + ".com", false},
		{"", false},
		{"com", false},
		{"localhost", false},
		{"*.com", false},
		{"*", false},
		{"*.*.example.com", false},
		{"a.*.example.com", false},
		{"*example.com", false},
		{"ex*ample.com", false},
		{"Example.com", false},
		{"example.com.", false},
		{".example.com", false},
		{"a..example.com", false},
		{"-a.example.com", false},
		{"a-.example.com", false},
		{"_dmarc.example.com", false}, // dnsmasq's allowlist patterns reject '_'
		{"example.123", false},
		{"printer.local", false},
		{"1.2.3.4", false},
		{"example.com\nserver=/#/1.2.3.4", false},
		{"example.com/evil.com", false},
		{"example.com#53", false},
		{"example.com,evil.com", false},
		{"example.com evil.com", false},
		{"exa\x00mple.com", false},
		{"bücher.example", false},
	}
	for _, tc := range tests {
		if err := ValidateName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestRenderRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error
	}{
		{"injected name", func(c *Config) { c.Names = []string{"a.com\naddress=/#/1.2.3.4"} }, "label"},
		{"slash in name", func(c *Config) { c.Names = []string{"a.com/1.2.3.4"} }, "label"},
		{"hash in name", func(c *Config) { c.Names = []string{"a.com#53"} }, "label"},
		{"comma in name", func(c *Config) { c.Names = []string{"a.com,b.com"} }, "label"},
		{"no upstream", func(c *Config) { c.Upstreams = nil }, "no upstream"},
		{"invalid upstream", func(c *Config) { c.Upstreams = []netip.Addr{{}} }, "upstream invalid IP"},
		{"unspecified upstream", func(c *Config) { c.Upstreams = []netip.Addr{netip.IPv4Unspecified()} }, "upstream 0.0.0.0"},
		{"loopback upstream", func(c *Config) { c.Upstreams = []netip.Addr{netip.MustParseAddr("127.0.0.53")} }, "loopback"},
		{"multicast upstream", func(c *Config) { c.Upstreams = []netip.Addr{netip.MustParseAddr("ff02::fb")} }, "upstream ff02::fb"},
		{"zoned upstream", func(c *Config) { c.Upstreams = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }, "without zone"},
		{"mapped upstream", func(c *Config) { c.Upstreams = []netip.Addr{netip.MustParseAddr("::ffff:10.0.2.3")} }, "::ffff:10.0.2.3"},
		{"non-loopback listen", func(c *Config) { c.Listen = []netip.Addr{netip.MustParseAddr("10.0.0.1")} }, "listen address"},
		{"zero mark", func(c *Config) { c.Mark = 0 }, "mark is zero"},
		{"bad table", func(c *Config) { c.Table = "terok-shield" }, "table name"},
		{"injected set", func(c *Config) { c.Set4 = "a#inet#x#y" }, "set4 name"},
		{"set starting with digit", func(c *Config) { c.Set6 = "6set" }, "set6 name"},
		{"long set", func(c *Config) { c.Set6 = strings.Repeat("s", 65) }, "set6 name"},
		{"sub-second TTL", func(c *Config) { c.MaxCacheTTL = 1500 * time.Millisecond }, "whole seconds"},
		{"negative TTL", func(c *Config) { c.MaxCacheTTL = -time.Second }, "whole seconds"},
		{"relative log file", func(c *Config) { c.LogFile = "run/dnsmasq.log" }, "absolute"},
		{"unclean log file", func(c *Config) { c.LogFile = "/run/../etc/dnsmasq.log" }, "absolute"},
		{"newline in log file", func(c *Config) { c.LogFile = "/run/x.log\nlog-queries" }, "control character"},
		{"NUL in log file", func(c *Config) { c.LogFile = "/run/x\x00.log" }, "control character"},
		{"long log file", func(c *Config) { c.LogFile = "/" + strings.Repeat("l", maxPath) }, "longer than"},
		{"bad user", func(c *Config) { c.User = "root\ngroup=root" }, "user"},
		{"negative cache", func(c *Config) { c.CacheSize = -1 }, "cache size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := minimal()
			tc.edit(&c)
			out, err := Render(c)
			if err == nil {
				t.Fatalf("Render accepted it:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestFindChecksFeatures(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, options string
		ok            bool
	}{
		{"complete", "IPv6 GNU-getopt conntrack ipset nftset auth", true},
		{"no nftset", "IPv6 GNU-getopt conntrack ipset no-nftset auth", false},
		{"no conntrack", "IPv6 GNU-getopt no-conntrack nftset", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			script := "#!/bin/sh\necho 'Dnsmasq version 2.90'\necho 'Compile time options: " + tc.options + "'\n"
			if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := checkFeatures(bin); (err == nil) != tc.ok {
				t.Errorf("checkFeatures = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestAllowlistMask(t *testing.T) {
	tests := []struct {
		mark uint32
		i    int
		want uint32
		ok   bool
	}{
		{0x5e1d, 0, 0xffffffff, true},
		{0x5e1d, 1, 0xfffffffd, true}, // lowest zero bit of 0x5e1d is bit 1
		{0x5e1d, 2, 0xffffffdf, true}, // next is bit 5
		{0x5e1d, 3, 0xffffffdd, true},
		{0x5e1d, 1<<23 - 1, 0x5e1d, true}, // every zero bit cleared
		{0x5e1d, 1 << 23, 0, false},
		{0xffffffff, 0, 0xffffffff, true},
		{0xffffffff, 1, 0, false},
	}
	for _, tc := range tests {
		got, err := allowlistMask(tc.mark, tc.i)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("allowlistMask(%#x, %d) = %#x, %v; want %#x, ok %v", tc.mark, tc.i, got, err, tc.want, tc.ok)
		}
		if err == nil && got&tc.mark != tc.mark {
			t.Errorf("allowlistMask(%#x, %d) = %#x drops bits of the mark", tc.mark, tc.i, got)
		}
	}
}

func TestRenderTooManyNamesForMark(t *testing.T) {
	c := minimal()
	c.Mark = 0xffffffff // no zero bit: a single allowlist line
	c.Names = manyNames(100)
	if _, err := Render(c); err == nil || !strings.Contains(err.Error(), "distinct masks") {
		t.Errorf("Render = %v, want an error about masks", err)
	}
}

func TestIdentifiers(t *testing.T) {
	tests := []struct {
		s         string
		nft, user bool
	}{
		{"terok_shield", true, true}, {"_x", true, true}, {"learned_v4", true, true},
		{"nobody", true, true}, {"sys-user", false, true},
		{"", false, false}, {"4set", false, false}, {"-x", false, false}, {"Set", false, false},
		{"a b", false, false}, {"a;b", false, false}, {"a\nb", false, false},
	}
	for _, tt := range tests {
		if got := nftName(tt.s); got != tt.nft {
			t.Errorf("nftName(%q) = %v, want %v", tt.s, got, tt.nft)
		}
		if got := userName(tt.s); got != tt.user {
			t.Errorf("userName(%q) = %v, want %v", tt.s, got, tt.user)
		}
	}
}

func TestFindCached(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "dnsmasq")
	runs := filepath.Join(dir, "runs")
	write := func(options string) {
		t.Helper()
		script := "#!/bin/sh\necho x >> " + runs + "\necho 'Dnsmasq version 2.90'\necho 'Compile time options: " + options + "'\n"
		// A new file each time, as a package upgrade installs one (new inode).
		if err := os.WriteFile(bin+".new", []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
	}
	checks := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "x")
	}
	t.Setenv("PATH", dir)
	cache := filepath.Join(dir, "cache")
	write("IPv6 conntrack nftset")
	for i := range 3 {
		got, err := FindCached(cache)
		if err != nil || got != bin {
			t.Fatalf("FindCached #%d = %q, %v; want %s", i+1, got, err, bin)
		}
	}
	if n := checks(); n != 1 {
		t.Errorf("the feature check ran %d times for three lookups, want 1", n)
	}
	write("IPv6 conntrack no-nftset")
	if got, _ := FindCached(cache); got == bin {
		t.Errorf("FindCached returned %s after it was replaced by a build without nftset", bin)
	}
	if n := checks(); n != 2 {
		t.Errorf("the replaced binary was checked %d times in all, want 2", n)
	}
}
