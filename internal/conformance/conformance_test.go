// SPDX-License-Identifier: Apache-2.0

package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFirstSentence(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"TestX", "TestX: the shim refuses. More text.\n", "The shim refuses."},
		{"TestX", "TestX checks that a\nwrapped line joins.\n\nSecond paragraph.", "Checks that a wrapped line joins."},
		{"TestX", "", "(no doc comment)"},
		{"TestX", "runs v1.2 of it", "Runs v1.2 of it"},
	}
	for _, c := range cases {
		if got := firstSentence(c.name, c.doc); got != c.want {
			t.Errorf("firstSentence(%q) = %q, want %q", c.doc, got, c.want)
		}
	}
}

func TestReadResults(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA/rootful"}
{"Action":"fail","Package":"p","Test":"TestA"}
not json: build output
{"Action":"skip","Package":"q","Test":"TestB"}
{"Action":"pass","Package":"q"}
`
	got, err := ReadResults(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[TestKey]string{{"p", "TestA"}: "fail", {"p", "TestA/rootful"}: "pass", {"q", "TestB"}: "skip"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestScenarios(t *testing.T) {
	dir := t.TempDir()
	src := "package x\n\n// TestOne: does one thing. Then more.\nfunc TestOne(t *testing.T) {}\n\nfunc TestMain(m *testing.M) {}\n\n// helper is not a test.\nfunc helper() {}\n\nfunc TestBare(t *testing.T) {}\n"
	if err := os.WriteFile(filepath.Join(dir, "a_test.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Scenarios(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Scenario{{"TestBare", "(no doc comment)"}, {"TestOne", "Does one thing."}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestRender checks the counts, the cell marks, the n/a notes, the failing-cell list and the
// fault table's lookups against a small input.
func TestRender(t *testing.T) {
	const pkg = "github.com/terok-ai/terok-shield/integration"
	in := Input{
		Package: pkg,
		Matrix: Matrix{States: []string{"fresh", "down"}, Cells: []Cell{
			{Mode: "rootful", State: "fresh", Class: "unlisted", Family: "v4", Proto: "tcp", Verdict: "ICMP 3/13", Status: "pass"},
			{Mode: "rootful", State: "down", Class: "unlisted", Family: "v4", Proto: "tcp", Verdict: "ok", Status: "fail",
				Dest: "198.18.100.20:80", Expected: "ok", Got: "timeout | x", Reason: "probe"},
			{Mode: "rootful", State: "fresh", Class: "unlisted", Family: "v6", Proto: "tcp", Verdict: "n/a", Status: "n/a", Reason: "n/a (no IPv6)"},
		}},
		Results: map[TestKey]string{
			{pkg, "TestShieldedHookMissing"}: "pass",
			{pkg, "TestFaultInjection"}:      "fail",
		},
		Scenarios: []Scenario{{"TestFaultInjection", "Breaks bundles."}, {"TestOther", "Other."}},
	}
	var b strings.Builder
	if err := Render(&b, in); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"**3 cells: 1 passed, 1 failed, 1 n/a.**",
		"| rootful | fresh | 2 | 1 | 0 | 1 |",
		"| rootful | down | 1 | 0 | 1 | 0 |",
		"| unlisted | v4 | tcp | ICMP 3/13 ✓ | ok ✗ |",
		"| unlisted | v6 | tcp | n/a | – |",
		"- rootful: n/a (no IPv6) — unlisted v6 tcp",
		"| rootful | down | 198.18.100.20:80 (unlisted) | v4 | tcp | ok | timeout \\| x | probe |",
		"| `TestFaultInjection` | ✗ **fail** | Breaks bundles. |",
		"| `TestOther` | not run | Other. |",
		"0 of 2 scenarios passed.",
		"| hook binary removed or moved | `integration.TestShieldedHookMissing` | ✓ pass |",
		"| dnsmasq missing at create (the shim refuses) | not covered yet | not covered yet: dnsmasq.Find falls back to /usr/sbin/dnsmasq, which a test may not remove |",
		"| disk full for the audit log (state dir on a full tmpfs) | `integration.TestFaultDiskFull`, `hook.TestFailClosedDiskFull` | not run, not run — the start",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q\n%s", want, out)
		}
	}
}
