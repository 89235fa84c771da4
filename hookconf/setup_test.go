// SPDX-License-Identifier: Apache-2.0

package hookconf

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type setupEnv struct {
	dir, conf, hooks, bin string
	env                   map[string]string
}

func newSetupEnv(t *testing.T) *setupEnv {
	t.Helper()
	dir := t.TempDir()
	e := &setupEnv{dir: dir, conf: filepath.Join(dir, "containers.conf"), hooks: filepath.Join(dir, "data", "hooks.d"), bin: filepath.Join(dir, "terok-shield")}
	if err := os.Mkdir(filepath.Dir(e.hooks), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.bin, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.env = map[string]string{"CONTAINERS_CONF": e.conf, "HOME": dir}
	return e
}

func (e *setupEnv) opts(uninstall, dryRun bool) Options {
	return Options{
		Scope: ScopeUser, HooksDir: e.hooks, Binary: e.bin, Rootless: true,
		Getenv:      func(k string) string { return e.env[k] },
		Uninstall:   uninstall,
		DryRun:      dryRun,
		CheckBinary: func(string, Scope) error { return nil }, // a script, not an ELF binary
	}
}

// snapshot is every file under the env dir with its content ("<dir>" for directories).
func (e *setupEnv) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.dir, p)
		if d.IsDir() {
			out[rel] = "<dir>"
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSetupIdempotentAndUninstall(t *testing.T) {
	for _, initial := range []*string{nil, ptr(""), ptr("# mine\r\n[engine]\r\nhooks_dir = [\"/site/hooks.d\"] # keep\r\nruntime = \"runc\"\r\n")} {
		name := "no file"
		if initial != nil {
			name = "file " + strings.ReplaceAll(*initial, "\n", "|")
		}
		t.Run(name, func(t *testing.T) {
			e := newSetupEnv(t)
			if initial != nil {
				if err := os.WriteFile(e.conf, []byte(*initial), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := e.snapshot(t)

			dry, err := Setup(e.opts(false, true))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(before, e.snapshot(t)); d != "" {
				t.Errorf("--dry-run changed files:\n%s", d)
			}
			first, err := Setup(e.opts(false, false))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(dry.Changes, first.Changes); d != "" {
				t.Errorf("dry run and run report different changes:\n%s", d)
			}
			if len(first.Changes) != 3 {
				t.Errorf("first setup: %d changes, want 2 descriptors and containers.conf: %+v", len(first.Changes), first.Changes)
			}
			wantDirs := []string{e.hooks, DefaultHooksDir}
			if initial != nil && strings.Contains(*initial, "/site/") {
				wantDirs = []string{e.hooks, "/site/hooks.d"}
			}
			if d := cmp.Diff(wantDirs, first.Effect); d != "" {
				t.Errorf("effective hooks dirs (-want +got):\n%s", d)
			}
			c := Conf{Getenv: e.opts(false, false).Getenv, Rootless: true}
			if dir, _, err := c.InEffect(); err != nil || dir != e.hooks {
				t.Errorf("InEffect = %q, %v; want %q", dir, err, e.hooks)
			}
			if bin, err := CheckBinary(e.hooks); err != nil || bin != e.bin {
				t.Errorf("CheckBinary = %q, %v", bin, err)
			}
			if fi, err := os.Stat(e.conf); err == nil && initial != nil && fi.Mode().Perm() != 0o600 {
				t.Errorf("containers.conf mode %v, want the original 0600", fi.Mode().Perm())
			}
			installed := e.snapshot(t)

			second, err := Setup(e.opts(false, false))
			if err != nil {
				t.Fatal(err)
			}
			if len(second.Changes) != 0 {
				t.Errorf("second setup changed %+v", second.Changes)
			}
			if d := cmp.Diff(installed, e.snapshot(t)); d != "" {
				t.Errorf("second setup changed files:\n%s", d)
			}

			if _, err := Setup(e.opts(true, true)); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(installed, e.snapshot(t)); d != "" {
				t.Errorf("uninstall --dry-run changed files:\n%s", d)
			}
			if _, err := Setup(e.opts(true, false)); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(before, e.snapshot(t)); d != "" {
				t.Errorf("uninstall did not restore the files byte for byte (-before +after):\n%s", d)
			}
			again, err := Setup(e.opts(true, false))
			if err != nil || len(again.Changes) != 0 {
				t.Errorf("second uninstall: %+v, %v", again.Changes, err)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestSetupOverridden: a drop-in read after the edited file sets hooks_dir, so the edit would
// not take effect; setup says so and writes nothing.
func TestSetupOverridden(t *testing.T) {
	e := newSetupEnv(t)
	cfg := filepath.Join(e.dir, "config")
	dropIn := filepath.Join(cfg, "containers", "containers.conf.d", "50-hooks.conf")
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, []byte("[engine]\nhooks_dir = [\"/mine\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.env = map[string]string{"XDG_CONFIG_HOME": cfg, "HOME": e.dir}
	before := e.snapshot(t)
	_, err := Setup(e.opts(false, false))
	if err == nil || !strings.Contains(err.Error(), "overridden by "+dropIn) {
		t.Errorf("Setup error = %v, want overridden by %s", err, dropIn)
	}
	if d := cmp.Diff(before, e.snapshot(t)); d != "" {
		t.Errorf("refused setup changed files:\n%s", d)
	}
}

func TestSetupScopeNotRead(t *testing.T) {
	e := newSetupEnv(t)
	e.env = map[string]string{"HOME": e.dir}
	o := e.opts(false, false)
	o.Rootless = false // rootful podman does not read the user's containers.conf
	if _, err := Setup(o); err == nil || !strings.Contains(err.Error(), "does not read") {
		t.Errorf("Setup = %v, want a does-not-read error", err)
	}
}

func TestCheckInstallable(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	script := write("script", []byte("#!/bin/sh\n"+strings.Repeat("# not an ELF file\n", 10)), 0o755)
	private := write("private", []byte("#!/bin/sh\n"), 0o700)
	plain := write("plain", []byte("x"), 0o644)
	cases := []struct {
		name, bin string
		scope     Scope
		want      string
	}{
		{"relative", "terok-shield", ScopeUser, "not an absolute path"},
		{"missing", filepath.Join(dir, "nope"), ScopeUser, "no such file"},
		{"not executable", plain, ScopeUser, "not an executable file"},
		{"not world executable", private, ScopeSystem, "readable and executable by everyone"},
		{"not ELF", script, ScopeUser, "bad magic"},
	}
	if sh, err := filepath.EvalSymlinks("/bin/sh"); err == nil {
		cases = append(cases, struct {
			name, bin string
			scope     Scope
			want      string
		}{"dynamic", sh, ScopeUser, "dynamically linked"})
	}
	for _, c := range cases {
		err := CheckInstallable(c.bin, c.scope)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: CheckInstallable(%s) = %v, want %q", c.name, c.bin, err, c.want)
		}
	}
	if err := CheckInstallable(filepath.Join(dir, "nope"), ScopeUser); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing binary error %v does not wrap ErrNotExist", err)
	}
}
