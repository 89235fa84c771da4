// SPDX-License-Identifier: Apache-2.0

package dnsmasq

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by [Render] to zero fields of [Config].
const (
	DefaultTable       = "terok_shield"
	DefaultSet4        = "learned_v4"
	DefaultSet6        = "learned_v6"
	DefaultUser        = "nobody"
	DefaultCacheSize   = 1000
	DefaultMaxCacheTTL = 15 * time.Minute // half of the 30 m learned-set timeout
)

// MaxLine is the longest line [Render] writes, in bytes without the newline.
// dnsmasq 2.90 reads its config with fgets into a 1025-byte buffer: a line of
// 1025 bytes or more is silently split and its tail parsed as a new line, so a
// long list could smuggle an option. MaxLine leaves a margin below 1024.
const MaxLine = 1000

// maxPath bounds file paths; with their option name they must fit in MaxLine.
const maxPath = 900

// Config describes one per-container resolver. Every field is validated by
// [Render]; zero fields take the defaults above.
type Config struct {
	// Names are the allowed DNS names: "example.com" allows exactly that name,
	// "*.example.com" exactly one label below example.com (not example.com
	// itself, not two labels below). Lower-case, no trailing dot.
	Names []string
	// Upstreams are the resolvers allowed names are forwarded to (at least one).
	Upstreams []netip.Addr
	// Listen are the loopback addresses dnsmasq binds on port 53
	// (default 127.0.0.1 and ::1).
	Listen []netip.Addr
	// Mark is the conntrack mark the ruleset puts on the workload's queries to
	// the resolver (non-zero). dnsmasq filters queries carrying it against
	// Names and copies it onto its upstream queries.
	Mark uint32
	// Table, Set4 and Set6 name the nftables table (family inet) and the sets
	// that receive the addresses of allowed names.
	Table, Set4, Set6 string
	// MaxCacheTTL caps how long dnsmasq caches an answer and the TTL it hands
	// out (whole seconds, at least 1 s). Keep it below the learned sets'
	// element timeout so addresses in use are re-learned before they expire.
	MaxCacheTTL time.Duration
	// LogFile, when set, turns on query logging to this file (absolute).
	LogFile string
	// User is the account dnsmasq switches to after start-up (default
	// "nobody"; "root" keeps root, needed where uid 65534 is not mapped).
	User string
	// CacheSize is the number of cached names (default DefaultCacheSize).
	CacheSize int
}

// Character checks (loops rather than regular expressions, which would be compiled in every
// hook run that renders a configuration).
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// identifier reports whether s matches ^[a-z_][a-z0-9_<extra>]*$.
func identifier(s string, extra byte) bool {
	if s == "" || !isLower(s[0]) && s[0] != '_' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isDigit(c) && c != '_' && (extra == 0 || c != extra) {
			return false
		}
	}
	return true
}

func nftName(s string) bool  { return identifier(s, 0) }
func userName(s string) bool { return identifier(s, '-') }

// dnsLabel reports whether s matches ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$.
func dnsLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLower(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

// ValidateName checks one allowed name as [Config.Names] requires. Besides
// the DNS rules (labels of 1–63 letters, digits and inner hyphens, at most
// 253 bytes) it enforces what dnsmasq's connmark-allowlist patterns accept:
// at least two labels, a last label that is neither all digits nor "local",
// no underscore, and a wildcard only as a whole leading "*." label followed
// by at least two labels.
func ValidateName(name string) error {
	base, wild := strings.CutPrefix(name, "*.")
	if len(name) > 253 {
		return fmt.Errorf("name %.40q...: longer than 253 bytes", name)
	}
	labels := strings.Split(base, ".")
	if len(labels) < 2 {
		if wild {
			return fmt.Errorf("name %q: a wildcard needs at least two labels after \"*.\"", name)
		}
		return fmt.Errorf("name %q: needs at least two labels", name)
	}
	for _, l := range labels {
		if len(l) > 63 || !dnsLabel(l) {
			return fmt.Errorf("name %q: label %q: want 1-63 of [a-z0-9-], not starting or ending with '-'", name, l)
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("name %q: last label is numeric", name)
	}
	if last == "local" {
		return fmt.Errorf("name %q: the \"local\" pseudo-TLD is not forwarded", name)
	}
	return nil
}

// withDefaults validates c and returns it with defaults filled in, names
// sorted and deduplicated, and upstreams and listen addresses deduplicated.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	names := slices.Clone(c.Names)
	for _, n := range names {
		if err := ValidateName(n); err != nil {
			errs = append(errs, err)
		}
	}
	slices.Sort(names)
	c.Names = slices.Compact(names)

	if len(c.Upstreams) == 0 {
		bad("no upstream resolver")
	}
	c.Upstreams = dedup(c.Upstreams)
	for _, a := range c.Upstreams {
		switch {
		case !a.IsValid(), a.IsUnspecified(), a.IsMulticast(), a.Is4In6(), a.Zone() != "":
			bad("upstream %v: want a unicast IPv4 or IPv6 address without zone", a)
		case a.IsLoopback():
			bad("upstream %v: loopback (the resolver itself listens there)", a)
		}
	}

	if len(c.Listen) == 0 {
		c.Listen = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	}
	c.Listen = dedup(c.Listen)
	for _, a := range c.Listen {
		if !a.IsLoopback() || a.Zone() != "" || a.Is4In6() {
			bad("listen address %v: want a loopback address", a)
		}
	}
	if !slices.Contains(c.Listen, ReadyAddr.Addr()) {
		bad("listen addresses %v: want %v among them (readiness is checked there)", c.Listen, ReadyAddr.Addr())
	}

	if c.Mark == 0 {
		bad("mark is zero (dnsmasq does not filter unmarked queries)")
	}

	for _, f := range []struct {
		field *string
		def   string
		what  string
	}{{&c.Table, DefaultTable, "table"}, {&c.Set4, DefaultSet4, "set4"}, {&c.Set6, DefaultSet6, "set6"}} {
		if *f.field == "" {
			*f.field = f.def
		}
		if len(*f.field) > 64 || !nftName(*f.field) {
			bad("%s name %q: want ^[a-z_][a-z0-9_]*$, at most 64 bytes", f.what, *f.field)
		}
	}

	if c.MaxCacheTTL == 0 {
		c.MaxCacheTTL = DefaultMaxCacheTTL
	}
	if c.MaxCacheTTL < time.Second || c.MaxCacheTTL%time.Second != 0 || c.MaxCacheTTL > 24*time.Hour {
		bad("max cache TTL %v: want whole seconds between 1s and 24h", c.MaxCacheTTL)
	}

	if c.LogFile != "" {
		if err := checkPath(c.LogFile); err != nil {
			bad("log file: %w", err)
		}
	}

	if c.User == "" {
		c.User = DefaultUser
	}
	if len(c.User) > 32 || !userName(c.User) {
		bad("user %q: want ^[a-z_][a-z0-9_-]*$, at most 32 bytes", c.User)
	}

	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.CacheSize < 0 || c.CacheSize > 1_000_000 {
		bad("cache size %d: want 1 to 1000000", c.CacheSize)
	}
	return c, errors.Join(errs...)
}

func dedup(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// checkPath accepts a clean absolute path without control characters.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > maxPath:
		return fmt.Errorf("path longer than %d bytes", maxPath)
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		return fmt.Errorf("path %q: want a clean absolute path", p)
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("path %q: contains a control character", p)
	}
	return nil
}

// Render validates c and returns the dnsmasq configuration for it. The
// output depends only on c (names are sorted), and no line is longer than
// [MaxLine].
func Render(c Config) ([]byte, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("dnsmasq config: %w", err)
	}
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }

	add("# Generated by terok-shield; do not edit.")
	add("no-resolv")
	add("no-hosts")
	add("domain-needed")
	add("bind-interfaces")
	for _, a := range c.Listen {
		add("listen-address=%s", a)
	}
	add("port=53")
	// In the foreground, the process started is the resolver itself: its pid is known at once
	// (no daemonising fork to wait for), and readiness is checked separately (WaitReady).
	add("keep-in-foreground")
	add("user=%s", c.User)
	// No pid file of dnsmasq's own: Launch records the pid (Instance.PIDFile) the moment the
	// process exists. dnsmasq would unlink that file and recreate it with O_EXCL, which fails
	// when Launch's write lands in between.
	add("pid-file=")
	add("cache-size=%d", c.CacheSize)
	ttl := int64(c.MaxCacheTTL / time.Second)
	add("max-cache-ttl=%d", ttl)
	add("max-ttl=%d", ttl)
	add("stop-dns-rebind")
	add("conntrack")
	add("connmark-allowlist-enable")

	// One connmark-allowlist line per chunk of names. dnsmasq refuses two
	// lines with the same mark and mask, so line i carries its own mask:
	// all ones with some of the bits that are zero in the mark cleared.
	// Every mask keeps the mark's bits, so each line still matches queries
	// carrying exactly the mark.
	mark := strconv.FormatUint(uint64(c.Mark), 10) // dnsmasq rejects hex marks
	if len(c.Names) == 0 {
		add("connmark-allowlist=%s", mark) // marked queries: all refused
	}
	allow := chunk(c.Names, MaxLine-len("connmark-allowlist=4294967295/4294967295,"))
	for i, names := range allow {
		m, err := allowlistMask(c.Mark, i)
		if err != nil {
			return nil, fmt.Errorf("dnsmasq config: %d names: %w", len(c.Names), err)
		}
		suffix := ""
		if m != ^uint32(0) {
			suffix = "/" + strconv.FormatUint(uint64(m), 10)
		}
		add("connmark-allowlist=%s%s,%s", mark, suffix, strings.Join(names, "/"))
	}

	// Forwarding and set population match a domain and everything below it;
	// the allowlist above is what makes the match exact.
	var domains []string
	for _, n := range c.Names {
		domains = append(domains, strings.TrimPrefix(n, "*."))
	}
	slices.Sort(domains)
	domains = slices.Compact(domains)
	for _, u := range c.Upstreams {
		tail := "/" + u.String()
		for _, group := range chunk(domains, MaxLine-len("server=/")-len(tail)) {
			add("server=/%s%s", strings.Join(group, "/"), tail)
		}
	}
	sets := fmt.Sprintf("/4#inet#%s#%s,6#inet#%s#%s", c.Table, c.Set4, c.Table, c.Set6)
	for _, group := range chunk(domains, MaxLine-len("nftset=/")-len(sets)) {
		add("nftset=/%s%s", strings.Join(group, "/"), sets)
	}

	if c.LogFile != "" {
		add("log-queries")
		add("log-facility=%s", c.LogFile)
	}

	var b bytes.Buffer
	for _, l := range lines {
		if len(l) > MaxLine {
			return nil, fmt.Errorf("dnsmasq config: line of %d bytes exceeds %d: %.60q", len(l), MaxLine, l)
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// chunk splits items into groups whose "/"-joined length is at most budget.
// Every item fits alone: names are at most 253 bytes and budget is larger.
func chunk(items []string, budget int) [][]string {
	var groups [][]string
	var cur []string
	size := 0
	for _, it := range items {
		if len(cur) > 0 && size+1+len(it) > budget {
			groups = append(groups, cur)
			cur, size = nil, 0
		}
		if len(cur) > 0 {
			size++
		}
		cur = append(cur, it)
		size += len(it)
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// allowlistMask returns the mask of the i-th connmark-allowlist line for
// mark: all ones for i = 0, otherwise all ones with the zero bits of mark
// selected by the binary digits of i cleared.
func allowlistMask(mark uint32, i int) (uint32, error) {
	mask := ^uint32(0)
	free := 0 // index among the zero bits of mark
	for bit := range 32 {
		if mark&(1<<bit) != 0 {
			continue
		}
		if i>>free&1 == 1 {
			mask &^= 1 << bit
		}
		free++
	}
	if i>>free != 0 {
		return 0, fmt.Errorf("more allowlist lines (%d) than mark %#x has distinct masks (%d)", i+1, mark, 1<<free)
	}
	return mask, nil
}
