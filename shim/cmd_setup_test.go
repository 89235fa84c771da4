// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/hookconf"
)

func TestSetupUsageErrors(t *testing.T) {
	env := []string{"HOME=" + t.TempDir(), "CONTAINERS_CONF=" + filepath.Join(t.TempDir(), "c.conf")}
	for _, args := range [][]string{
		{"setup", "--user", "--system"},
		{"setup", "extra"},
		{"setup", "--hooks-dir", "relative/dir"},
		{"setup", "--bogus"},
	} {
		var out, errb bytes.Buffer
		if code := runCLI(args, env, strings.NewReader(""), &out, &errb); code != 2 || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line", args, code, errb.String())
		}
	}
}

// setupFixture is a private CONTAINERS_CONF and hooks dir for the shim's hook logic.
type setupFixture struct {
	dir, conf, hooks, state string
	getenv                  func(string) string
}

func newSetupFixture(t *testing.T) *setupFixture {
	t.Helper()
	dir := t.TempDir()
	f := &setupFixture{dir: dir, conf: filepath.Join(dir, "containers.conf"), hooks: filepath.Join(dir, "hooks.d"), state: filepath.Join(dir, "state")}
	if err := os.WriteFile(f.conf, []byte("# test\n[engine]\nruntime = \"runc\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CONTAINERS_CONF": f.conf, "HOME": dir, "TEROK_SHIELD_STATE_DIR": f.state}
	f.getenv = func(k string) string { return env[k] }
	return f
}

// run runs `terok-shield ARGS` with a binary check that accepts the (dynamic) test binary.
func (f *setupFixture) run(t *testing.T, args ...string) string {
	t.Helper()
	deps := &cliDeps{getenv: f.getenv, checkBinary: func(string, hookconf.Scope) error { return nil }}
	root := newRootCmd(deps)
	var out, errb bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.Execute(); err != nil {
		t.Fatalf("%q: %v (%s)", args, err, errb.String())
	}
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	return strings.NewReplacer(f.dir, "$DIR", self, "$SELF").Replace(out.String())
}

func TestSetupCommand(t *testing.T) {
	f := newSetupFixture(t)
	orig, _ := os.ReadFile(f.conf)
	got := f.run(t, "setup", "--user", "--hooks-dir", f.hooks, "--dry-run")
	got += f.run(t, "setup", "--user", "--hooks-dir", f.hooks)
	installed, _ := os.ReadFile(f.conf)
	got += f.run(t, "setup", "--user", "--hooks-dir", f.hooks)
	if again, _ := os.ReadFile(f.conf); !bytes.Equal(again, installed) {
		t.Errorf("second setup changed containers.conf:\n%s", cmp.Diff(string(installed), string(again)))
	}
	got += f.run(t, "setup", "--user", "--hooks-dir", f.hooks, "--uninstall")
	golden(t, "setup.golden", got)
	if back, _ := os.ReadFile(f.conf); !bytes.Equal(back, orig) {
		t.Errorf("uninstall did not restore containers.conf:\n%s", cmp.Diff(string(orig), string(back)))
	}
	if _, err := os.Stat(f.hooks); !os.IsNotExist(err) {
		t.Errorf("hooks dir left after uninstall: %v", err)
	}
}

// TestHooksForStart: without setup a start gets --hooks-dir (once anything was shielded);
// after setup argv stays untouched; a shielded start whose hook binary is gone is refused.
func TestHooksForStart(t *testing.T) {
	f := newSetupFixture(t)
	bundle := filepath.Join(f.state, "containers", "web")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	start := func(args ...string) ([]string, error) {
		t.Helper()
		inv, err := argparse.Parse(args, argparse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return hooksForStart(append([]string{"podman"}, args...), inv, f.getenv, &bytes.Buffer{})
	}
	stateHooks := filepath.Join(f.state, "hooks.d")

	// Nothing shielded yet: untouched.
	if got, err := start("start", "web"); err != nil || !cmp.Equal(got, []string{"podman", "start", "web"}) {
		t.Errorf("before any shield: %q, %v", got, err)
	}
	// Shielded through the shim without setup: the state root's dir is injected.
	if _, err := hookconf.WriteDescriptors(stateHooks, self); err != nil {
		t.Fatal(err)
	}
	want := []string{"podman", "--hooks-dir", stateHooks, "--hooks-dir", hookconf.DefaultHooksDir, "start", "web"}
	if got, err := start("start", "web"); err != nil || !cmp.Equal(got, want) {
		t.Errorf("without setup: %q, %v; want %q", got, err, want)
	}
	// After setup: untouched.
	f.run(t, "setup", "--user", "--hooks-dir", f.hooks)
	if got, err := start("restart", "web"); err != nil || !cmp.Equal(got, []string{"podman", "restart", "web"}) {
		t.Errorf("after setup: %q, %v", got, err)
	}
	// The hook binary is gone: the shielded start is refused with the fix, others pass.
	if _, err := hookconf.WriteDescriptors(f.hooks, filepath.Join(f.dir, "moved", "terok-shield")); err != nil {
		t.Fatal(err)
	}
	_, err := start("start", "web")
	if err == nil || !strings.Contains(err.Error(), "run terok-shield setup") || strings.Contains(err.Error(), "\n") {
		t.Errorf("start with a missing hook binary: %v; want a one-line refusal naming the fix", err)
	}
	if got, err := start("start", "other"); err != nil || !cmp.Equal(got, []string{"podman", "start", "other"}) {
		t.Errorf("unshielded start with a missing hook binary: %q, %v", got, err)
	}
}
