// SPDX-License-Identifier: Apache-2.0

package argparse

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// helpLineRE matches an option line of podman's --help: "  -a, --attach
// strings   text" (a value flag shows a type word, a boolean none).
var helpLineRE = regexp.MustCompile(`^ {2,}(?:-(\S), )?--([a-z0-9-]+)(?: (\S+))?(?: {2,}|$)`)

// TestTablesMatchInstalledPodman cross-checks the embedded table chosen for
// the installed podman against its --help output: every listed option must
// be in the table with the same shorthand and kind, and every visible flag
// of the table must be listed. It needs podman (required when CI is set).
func TestTablesMatchInstalledPodman(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("podman not found and CI is set: %v", err)
		}
		t.Skip("podman not installed")
	}
	out, err := exec.Command(podman, "--version").Output()
	if err != nil {
		t.Fatalf("podman --version: %v", err)
	}
	hint := strings.TrimSpace(string(out))
	version, err := TableFor(hint)
	if err != nil {
		t.Fatalf("TableFor(%q) error = %v", hint, err)
	}
	if !strings.HasPrefix(strings.TrimPrefix(hint, "podman version "), majorMinorOf(version)) {
		t.Skipf("no table for %q (nearest %s)", hint, version)
	}
	ve, _ := chooseVersion(hint)
	ts, err := ve.load()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"", "run", "create", "start", "restart", "exec", "pod create", "pod start", "pod restart", "kube play", "container run"} {
		t.Run("podman "+cmd, func(t *testing.T) {
			args := append(strings.Fields(cmd), "--help")
			b, err := exec.Command(podman, args...).Output()
			if err != nil {
				t.Fatalf("podman %q: %v", args, err)
			}
			sec := ts.byPath[cmd]
			if sec == nil {
				t.Fatalf("table %s has no command %q", ts.version, cmd)
			}
			fs := &flagSet{p: &parser{ts: ts}, sec: sec, leaf: true}
			listed := map[string]bool{}
			inOptions := false
			for _, line := range strings.Split(string(b), "\n") {
				if strings.HasSuffix(line, "Options:") {
					inOptions = true
					continue
				}
				m := helpLineRE.FindStringSubmatch(line)
				if !inOptions || m == nil {
					continue
				}
				name, short, hasType := m[2], m[1], m[3] != ""
				listed[name] = true
				f, _ := fs.long(name)
				if f == nil {
					t.Errorf("--help lists --%s, table %s [%s] has no such flag", name, ts.version, cmd)
					continue
				}
				if got := string(f.short); f.short != 0 && got != short || f.short == 0 && short != "" {
					t.Errorf("--%s shorthand: table %q, --help %q", name, got, short)
				}
				if isBool := f.noOpt != ""; isBool == hasType {
					t.Errorf("--%s kind: table bool=%v, --help shows type word %q", name, isBool, m[3])
				}
			}
			own, _ := sec.flags()
			for name, f := range own.long {
				if !f.hidden && !f.remote && !listed[name] {
					t.Errorf("table %s [%s] has visible --%s, --help does not list it", ts.version, cmd, name)
				}
			}
			if len(listed) == 0 {
				t.Errorf("parsed only %d options from podman %q", len(listed), args)
			}
		})
	}
}

func majorMinorOf(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1] + "."
}
