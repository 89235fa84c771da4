// SPDX-License-Identifier: Apache-2.0

// Package conformance renders docs/conformance.md from what `make e2e-report` collected: the
// adversarial matrix's JSON report (integration.TestAdversarialMatrix), the `go test -json`
// event stream of the integration tests (and the unit tests the fault table cites), and the
// doc comments of the integration tests (one line per scenario).
package conformance

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Cell is one matrix cell as TestAdversarialMatrix writes it.
type Cell struct {
	Mode     string `json:"mode"`
	State    string `json:"state"`
	Class    string `json:"class"`
	Family   string `json:"family"`
	Proto    string `json:"proto"`
	Dest     string `json:"dest"`
	Verdict  string `json:"verdict"`
	Expected string `json:"expected"`
	Got      string `json:"got"`
	Status   string `json:"status"` // pass, fail, n/a
	Reason   string `json:"reason,omitempty"`
}

// Matrix is the JSON report of TestAdversarialMatrix.
type Matrix struct {
	States []string `json:"states"`
	Cells  []Cell   `json:"cells"`
}

// ReadMatrix decodes a matrix report.
func ReadMatrix(r io.Reader) (Matrix, error) {
	var m Matrix
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return m, fmt.Errorf("matrix report: %w", err)
	}
	return m, nil
}

// TestKey names a test: its package import path and top-level name.
type TestKey struct{ Package, Test string }

// ReadResults reads `go test -json` events and returns the final action (pass, fail, skip)
// of every test and subtest, keyed by package and full test name. Non-JSON lines (build
// output) are ignored.
func ReadResults(r io.Reader) (map[TestKey]string, error) {
	res := map[TestKey]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct{ Action, Package, Test string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" {
			continue
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			res[TestKey{ev.Package, ev.Test}] = ev.Action
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("test events: %w", err)
	}
	return res, nil
}

// Scenario is one top-level test of the integration package.
type Scenario struct {
	Name, Summary string
}

// Scenarios lists the Test functions of the _test.go files in dir, sorted by name, each with
// the first sentence of its doc comment (the test's name prefix removed).
func Scenarios(dir string) ([]Scenario, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	fset := token.NewFileSet()
	var out []Scenario
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("scenarios: %w", err)
		}
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !strings.HasPrefix(fd.Name.Name, "Test") || fd.Name.Name == "TestMain" {
				continue
			}
			out = append(out, Scenario{Name: fd.Name.Name, Summary: firstSentence(fd.Name.Name, fd.Doc.Text())})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// firstSentence returns the first sentence of a doc comment on one line, without the leading
// "TestName:" or "TestName".
func firstSentence(name, doc string) string {
	para, _, _ := strings.Cut(strings.TrimSpace(doc), "\n\n")
	s := strings.Join(strings.Fields(para), " ")
	s = strings.TrimPrefix(s, name)
	s = strings.TrimLeft(s, ": ")
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	if s == "" {
		return "(no doc comment)"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Fault is one row of the fault-injection table: the fault and the tests that inject it
// ("pkg/path.TestName[/subtest]"), empty when none does yet.
type Fault struct {
	Fault string
	Tests []string
	Note  string
}

// Faults is the fault-injection table's content.
func Faults() []Fault {
	const integ = "github.com/terok-ai/terok-shield/integration."
	const hookPkg = "github.com/terok-ai/terok-shield/hook."
	return []Fault{
		{Fault: "hook binary removed or moved", Tests: []string{integ + "TestShieldedHookMissing"}},
		{Fault: "hooks dir not in effect (plain podman start)", Tests: []string{integ + "TestShieldedGate", integ + "TestSetupPlainStart"}},
		{Fault: "resolver (dnsmasq) killed", Tests: []string{integ + "TestResolverDiesClosed", integ + "TestAdversarialMatrix"}},
		{Fault: "state bundle corrupted (bundle.json garbage)", Tests: []string{integ + "TestFaultInjection"}},
		{Fault: "state bundle with wrong permissions (dir 0755)", Tests: []string{integ + "TestFaultInjection"}},
		{Fault: "nft failure mid-apply (split load)", Tests: []string{"github.com/terok-ai/terok-shield/nft.TestBulkApplySplitAndFailClosed"}},
		{Fault: "recorded dnsmasq gone between create and start", Tests: []string{integ + "TestFaultDnsmasqVanished"},
			Note: "the hook looks dnsmasq up again; the container starts with firewall and resolver"},
		{Fault: "dnsmasq missing at create (the shim refuses)",
			Note: "not covered yet: dnsmasq.Find falls back to /usr/sbin/dnsmasq, which a test may not remove"},
		{Fault: "disk full for the audit log (state dir on a full tmpfs)",
			Tests: []string{integ + "TestFaultDiskFull", hookPkg + "TestFailClosedDiskFull"},
			Note:  "the start is refused in the hook's audit append (no gate proof); earlier audit lines intact"},
		{Fault: "hook inputs and state (original §6.4 and ours): bad OCI state, bundle path/owner/mode/format, version, stage, pid, config.json, --network host/joined netns, NET_ADMIN/NET_RAW/SYS_ADMIN, dnsmasq start, audit log unwritable",
			Tests: []string{hookPkg + "TestFailClosed"},
			Note:  "the real hook binary against a fake container: non-zero exit, one line naming the cause, no gate proof"},
	}
}

// Input is everything Render needs.
type Input struct {
	Matrix    Matrix
	Results   map[TestKey]string
	Scenarios []Scenario
	// Package is the integration package's import path (scenario results are looked up there).
	Package string
}

// result returns the recorded result of "pkg.Test" or "" when it did not run.
func (in Input) result(qualified string) string {
	i := strings.LastIndex(qualified, ".")
	return in.Results[TestKey{qualified[:i], qualified[i+1:]}]
}

// Render writes docs/conformance.md.
func Render(w io.Writer, in Input) error {
	var b strings.Builder
	b.WriteString("# Conformance\n\n_Generated by `make e2e-report` (scripts/e2e-report.sh, internal/conformance); do not edit._\n\n")
	renderMatrix(&b, in.Matrix)
	renderScenarios(&b, in)
	renderFaults(&b, in)
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	return nil
}

type counts struct{ cells, passed, failed, na int }

func (c *counts) add(cell Cell) {
	c.cells++
	switch cell.Status {
	case "pass":
		c.passed++
	case "n/a":
		c.na++
	default:
		c.failed++
	}
}

func modesOf(cells []Cell) []string {
	var modes []string
	for _, c := range cells {
		if !slices.Contains(modes, c.Mode) {
			modes = append(modes, c.Mode)
		}
	}
	return modes
}

func renderMatrix(b *strings.Builder, m Matrix) {
	b.WriteString("## Adversarial matrix\n\n")
	b.WriteString("`integration.TestAdversarialMatrix`: real probes from inside one long-running shielded container per mode, " +
		"all probes of a state in one `podman exec` of `probe batch`. Each cell asserts the outcome's reason " +
		"(ICMP admin-prohibited type/code, errno, DNS rcode) and whether the wan server saw the traffic; every state " +
		"has positive controls in the same batch (a listed address that must answer; in block, the loopback resolver, " +
		"the container being alive and the wan server answering from the host netns), and a failed control fails every cell of that state.\n\n")
	if len(m.Cells) == 0 {
		b.WriteString("**No matrix results: the matrix test did not run.**\n\n")
		return
	}
	var total counts
	for _, c := range m.Cells {
		total.add(c)
	}
	fmt.Fprintf(b, "**%d cells: %d passed, %d failed, %d n/a.**\n\n", total.cells, total.passed, total.failed, total.na)
	modes := modesOf(m.Cells)
	b.WriteString("| mode | state | cells | passed | failed | n/a |\n|---|---|---:|---:|---:|---:|\n")
	for _, mode := range modes {
		for _, st := range m.States {
			var c counts
			for _, cell := range m.Cells {
				if cell.Mode == mode && cell.State == st {
					c.add(cell)
				}
			}
			fmt.Fprintf(b, "| %s | %s | %d | %d | %d | %d |\n", mode, st, c.cells, c.passed, c.failed, c.na)
		}
	}
	b.WriteString("\nCell legend: the expected outcome, then ✓ (passed), ✗ (failed: see the list below) or n/a. " +
		"`ok`: the server answered; `ICMP 3/13` / `ICMP v6 1/1`: rejected with admin-prohibited in the container's own netns; " +
		"`EPERM` / `ETIMEDOUT`: dropped on output (block; TCP's SYN is retried until the probe's 1 s timeout); " +
		"`REFUSED` / `NOERROR`: the rcode of the container's resolver; `ICMP 3/3`: nothing listens on 127.0.0.1:53 (resolver killed).\n\n")
	var notes []string             // "mode: reason", in first-seen order
	noted := map[string][]string{} // note -> "class family proto"
	for _, mode := range modes {
		fmt.Fprintf(b, "### %s\n\n| destination | family | proto |", mode)
		for _, st := range m.States {
			fmt.Fprintf(b, " %s |", st)
		}
		b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(m.States)) + "\n")
		type row struct{ class, family, proto, dest string }
		var rows []row
		byRow := map[row]map[string]Cell{}
		for _, c := range m.Cells {
			if c.Mode != mode {
				continue
			}
			r := row{c.Class, c.Family, c.Proto, ""}
			if byRow[r] == nil {
				byRow[r] = map[string]Cell{}
				rows = append(rows, r)
			}
			byRow[r][c.State] = c
		}
		for _, r := range rows {
			fmt.Fprintf(b, "| %s | %s | %s |", r.class, r.family, r.proto)
			for _, st := range m.States {
				c, ok := byRow[r][st]
				switch {
				case !ok:
					b.WriteString(" – |")
				case c.Status == "n/a":
					b.WriteString(" n/a |")
					note := mode + ": " + c.Reason
					what := c.Class + " " + c.Family + " " + c.Proto
					if st != "" && !slices.Contains(noted[note], what) {
						if noted[note] == nil {
							notes = append(notes, note)
						}
						noted[note] = append(noted[note], what)
					}
				case c.Status == "pass":
					fmt.Fprintf(b, " %s ✓ |", c.Verdict)
				default:
					fmt.Fprintf(b, " %s ✗ |", c.Verdict)
				}
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("Cells marked n/a:\n\n")
		for _, n := range notes {
			fmt.Fprintf(b, "- %s — %s\n", n, strings.Join(noted[n], "; "))
		}
		b.WriteString("\n")
	}
	var failed []Cell
	for _, c := range m.Cells {
		if c.Status == "fail" {
			failed = append(failed, c)
		}
	}
	if len(failed) > 0 {
		b.WriteString("### Failing cells\n\n| mode | state | destination | family | proto | expected | got | reason |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range failed {
			fmt.Fprintf(b, "| %s | %s | %s (%s) | %s | %s | %s | %s | %s |\n", c.Mode, c.State, c.Dest, c.Class, c.Family, c.Proto,
				esc(c.Expected), esc(c.Got), esc(c.Reason))
		}
		b.WriteString("\n")
	}
}

// esc makes s safe inside a Markdown table cell.
func esc(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

func resultWord(r string) string {
	switch r {
	case "pass":
		return "✓ pass"
	case "fail":
		return "✗ **fail**"
	case "skip":
		return "skipped"
	}
	return "not run"
}

func renderScenarios(b *strings.Builder, in Input) {
	b.WriteString("## Scenarios\n\nEvery test of `integration/` (real podman, rootful and rootless, in a closed test network), with its result in this run.\n\n")
	b.WriteString("| test | result | what it checks |\n|---|---|---|\n")
	var pass, total int
	for _, s := range in.Scenarios {
		r := in.Results[TestKey{in.Package, s.Name}]
		total++
		if r == "pass" {
			pass++
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", s.Name, resultWord(r), esc(s.Summary))
	}
	fmt.Fprintf(b, "\n%d of %d scenarios passed.\n\n", pass, total)
}

func renderFaults(b *strings.Builder, in Input) {
	b.WriteString("## Fault injection\n\n| fault | covered by | result |\n|---|---|---|\n")
	for _, f := range Faults() {
		if len(f.Tests) == 0 {
			fmt.Fprintf(b, "| %s | not covered yet | %s |\n", f.Fault, esc(f.Note))
			continue
		}
		var names, results []string
		for _, t := range f.Tests {
			names = append(names, "`"+shortName(t)+"`")
			results = append(results, resultWord(in.result(t)))
		}
		res := strings.Join(results, ", ")
		if f.Note != "" {
			res += " — " + f.Note
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", f.Fault, strings.Join(names, ", "), esc(res))
	}
	b.WriteString("\n")
}

// shortName turns "github.com/x/y/pkg.TestName" into "pkg.TestName".
func shortName(q string) string {
	return q[strings.LastIndex(q, "/")+1:]
}

// Options are the command line of the generator.
type Options struct {
	Matrix, Tests, Src, Out, Package string
}

// Run reads the inputs named in o and writes o.Out. A missing matrix file renders a note that
// the matrix did not run (a failed build still gets a report).
func Run(o Options) error {
	in := Input{Package: o.Package}
	if f, err := os.Open(o.Matrix); err == nil {
		in.Matrix, err = ReadMatrix(f)
		f.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("matrix report: %w", err)
	}
	f, err := os.Open(o.Tests)
	if err != nil {
		return fmt.Errorf("test events: %w", err)
	}
	defer f.Close()
	if in.Results, err = ReadResults(f); err != nil {
		return err
	}
	if in.Scenarios, err = Scenarios(o.Src); err != nil {
		return err
	}
	var b strings.Builder
	if err := Render(&b, in); err != nil {
		return err
	}
	if err := os.WriteFile(o.Out, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.Out, err)
	}
	return nil
}
