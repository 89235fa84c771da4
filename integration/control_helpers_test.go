// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// The -update flag rewrites the golden files. Another file of this package may define it as
// well, so it is defined here only when missing and read back through flag.Lookup.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite testdata golden files")
	}
}

func updateGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// shieldRun runs `podman shield args...` through the shim and requires exit code want.
func shieldRun(t *testing.T, ctx context.Context, sp *ShieldedPodman, want int, args ...string) RunResult {
	t.Helper()
	r, err := sp.Run(ctx, append([]string{"shield"}, args...)...)
	if err := mustExit(r, err, want); err != nil {
		t.Fatal(err)
	}
	return r
}

// normaliser turns what varies between runs into fixed placeholders, so command output can
// be compared with a golden file: first the literal strings (in order), then the patterns.
type normaliser struct {
	literals [][2]string // {what, placeholder}
}

// add registers a literal to replace; empty values are ignored.
func (n *normaliser) add(what, placeholder string) {
	if what != "" {
		n.literals = append(n.literals, [2]string{what, placeholder})
	}
}

// volatilePatterns are the values no test controls: times and set element lifetimes.
type volatile struct {
	re          *regexp.Regexp
	placeholder string
}

var volatilePatterns = sync.OnceValue(func() []volatile {
	return []volatile{
		// audit timestamps (RFC 3339, with or without fraction and zone)
		{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?`), "<TS>"},
		// the remaining lifetime of a learned address ("expires 29m58s", "expires 1h2m3.4s")
		{regexp.MustCompile(`expires [0-9hms.]+`), "expires <T>"},
		// rule counters in a live table (what the probes send is checked at the servers)
		{regexp.MustCompile(`counter packets \d+ bytes \d+`), "counter packets <N> bytes <B>"},
	}
})

func (n *normaliser) apply(s string) string {
	for _, l := range n.literals {
		s = strings.ReplaceAll(s, l[0], l[1])
	}
	for _, p := range volatilePatterns() {
		s = p.re.ReplaceAllString(s, p.placeholder)
	}
	return s
}

// goldenText is how a command run is stored: the command line, its exit code, stdout and,
// when there is any, stderr.
func goldenText(r RunResult) string {
	var b strings.Builder
	b.WriteString("$ podman " + strings.Join(r.Args, " ") + "\n")
	b.WriteString("exit " + strconv.Itoa(r.Exit) + "\n")
	b.WriteString(r.Stdout)
	if r.Stderr != "" {
		b.WriteString("--- stderr\n" + r.Stderr)
	}
	return b.String()
}

// checkGolden compares the normalised run with testdata/control/<mode>/<name>.golden.
func checkGolden(t *testing.T, mode Mode, norm *normaliser, name string, r RunResult) {
	t.Helper()
	got := norm.apply(goldenText(r))
	path := filepath.Join("testdata", "control", mode.String(), name+".golden")
	if updateGoldens() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s (-want +got):\n%s", path, d)
	}
}

// serversHit returns the sorted names of the wan servers that saw traffic since the last
// ResetHits, but the DNS server (the resolver's upstream).
func serversHit(n *testnet.Net) []string {
	var out []string
	for _, h := range n.Hits("") {
		if h.Server != "dns" && !slices.Contains(out, h.Server) {
			out = append(out, h.Server)
		}
	}
	slices.Sort(out)
	return out
}

// checkHits compares the servers reached since the last ResetHits with want, then resets.
func checkHits(t *testing.T, n *testnet.Net, step string, want ...string) {
	t.Helper()
	if d := cmp.Diff(want, serversHit(n)); d != "" {
		t.Errorf("%s: servers reached (-want +got):\n%s", step, d)
	}
	n.ResetHits()
}
