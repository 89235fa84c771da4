// SPDX-License-Identifier: Apache-2.0

package hookconf

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/BurntSushi/toml"
)

// Scope is where `terok-shield setup` installs the hook.
type Scope string

// Scopes.
const (
	ScopeUser   Scope = "user"   // the user's containers.conf, descriptors under $XDG_DATA_HOME
	ScopeSystem Scope = "system" // /etc/containers/containers.conf, descriptors under /usr/local/share
)

// Options of Setup.
type Options struct {
	Scope Scope
	// HooksDir is where the descriptors go; "" means the scope's default.
	HooksDir string
	// Binary is the absolute, symlink-resolved terok-shield the hook runs.
	Binary string
	Getenv func(string) string
	// Rootless is podman's view: true when setup runs as a regular user.
	Rootless  bool
	Uninstall bool
	DryRun    bool
	// CheckBinary vets Binary for the scope; nil means CheckInstallable.
	CheckBinary func(binary string, scope Scope) error
}

// Change is one file setup wrote, edited or removed (or would, with DryRun).
type Change struct {
	Path   string `json:"path"`
	Action string `json:"action"` // write, edit, create, remove
	Detail string `json:"detail,omitempty"`
}

// Result is what Setup did.
type Result struct {
	Scope    Scope    `json:"scope"`
	ConfFile string   `json:"containers_conf"`
	HooksDir string   `json:"hooks_dir"`
	Binary   string   `json:"binary,omitempty"`
	Effect   []string `json:"effective_hooks_dirs"` // podman's hooks_dir afterwards
	DryRun   bool     `json:"dry_run,omitempty"`
	Changes  []Change `json:"changes"`
}

// Setup installs (or, with Uninstall, removes) terok-shield's hook descriptors and points
// podman's engine.hooks_dir at them, keeping the previously effective dirs after ours. It is
// idempotent: a second run changes nothing.
func Setup(o Options) (Result, error) {
	res := Result{Scope: o.Scope, DryRun: o.DryRun, Binary: o.Binary, Changes: []Change{}}
	var err error
	if res.ConfFile, res.HooksDir, err = scopePaths(o); err != nil {
		return res, err
	}
	src, err := os.ReadFile(res.ConfFile)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("read %s: %w", res.ConfFile, err)
	}
	base, gone, _, err := Revert(src)
	if err != nil {
		return res, fmt.Errorf("%s: %w", res.ConfFile, err)
	}
	baseExists := exists && !gone
	conf := Conf{Getenv: o.Getenv, Rootless: o.Rootless}
	with := func(content []byte, present bool) Conf {
		c := conf
		c.Read = func(p string) ([]byte, error) {
			if p == res.ConfFile {
				if !present {
					return nil, fs.ErrNotExist
				}
				return content, nil
			}
			return os.ReadFile(p)
		}
		return c
	}
	if !slices.Contains(conf.Files(), res.ConfFile) {
		return res, fmt.Errorf("podman (%s) does not read %s; use the other scope or set CONTAINERS_CONF", podmanKind(o.Rootless), res.ConfFile)
	}

	if o.Uninstall {
		prev, err := with(base, baseExists).HooksDirs()
		if err != nil {
			return res, err
		}
		res.Effect = prev.Dirs
		if exists && !bytes.Equal(base, src) {
			if gone {
				res.Changes = append(res.Changes, Change{Path: res.ConfFile, Action: "remove", Detail: "created by setup"})
			} else {
				res.Changes = append(res.Changes, Change{Path: res.ConfFile, Action: "edit", Detail: "engine.hooks_dir restored"})
			}
		}
		for _, stage := range stages {
			p := filepath.Join(res.HooksDir, DescriptorName(stage))
			if _, err := os.Lstat(p); err == nil {
				res.Changes = append(res.Changes, Change{Path: p, Action: "remove"})
			}
		}
		if o.DryRun {
			return res, nil
		}
		if exists && !bytes.Equal(base, src) {
			if gone {
				err = os.Remove(res.ConfFile)
			} else {
				err = writeConf(res.ConfFile, base)
			}
			if err != nil {
				return res, fmt.Errorf("restore %s: %w", res.ConfFile, err)
			}
		}
		_, err = RemoveDescriptors(res.HooksDir)
		return res, err
	}

	check := o.CheckBinary
	if check == nil {
		check = CheckInstallable
	}
	if err := check(o.Binary, o.Scope); err != nil {
		return res, err
	}
	prev, err := with(base, baseExists).HooksDirs()
	if err != nil {
		return res, err
	}
	dirs := WithOurs(res.HooksDir, prev.Dirs)
	out, err := Install(base, baseExists, dirs)
	if err != nil {
		return res, fmt.Errorf("%s: %w", res.ConfFile, err)
	}
	if err := toml.Unmarshal(out, new(map[string]any)); err != nil {
		return res, fmt.Errorf("%s: the edit would not be valid TOML (%v): %w", res.ConfFile, err, ErrUnsafe)
	}
	after, err := with(out, true).HooksDirs()
	if err != nil {
		return res, err
	}
	if !slices.Equal(after.Dirs, dirs) {
		return res, fmt.Errorf("engine.hooks_dir in %s is overridden by %s; add %s to it there (keep the other dirs)", res.ConfFile, after.Source, res.HooksDir)
	}
	res.Effect = after.Dirs

	for _, stage := range stages {
		want, err := Descriptor(stage, o.Binary)
		if err != nil {
			return res, err
		}
		p := filepath.Join(res.HooksDir, DescriptorName(stage))
		if old, err := os.ReadFile(p); err != nil || !bytes.Equal(old, want) {
			res.Changes = append(res.Changes, Change{Path: p, Action: "write", Detail: "runs " + o.Binary})
		}
	}
	if !bytes.Equal(out, src) || !exists {
		action := "edit"
		if !exists {
			action = "create"
		}
		res.Changes = append(res.Changes, Change{Path: res.ConfFile, Action: action, Detail: "engine.hooks_dir = " + tomlArray(dirs)})
	}
	if o.DryRun {
		return res, nil
	}
	// Descriptors first: containers.conf never names a dir without them.
	if _, err := WriteDescriptors(res.HooksDir, o.Binary); err != nil {
		return res, err
	}
	if !bytes.Equal(out, src) || !exists {
		if err := os.MkdirAll(filepath.Dir(res.ConfFile), 0o755); err != nil {
			return res, fmt.Errorf("create %s: %w", filepath.Dir(res.ConfFile), err)
		}
		if err := writeConf(res.ConfFile, out); err != nil {
			return res, fmt.Errorf("write %s: %w", res.ConfFile, err)
		}
	}
	return res, nil
}

func podmanKind(rootless bool) string {
	if rootless {
		return "rootless"
	}
	return "rootful"
}

// scopePaths returns the containers.conf to edit ($CONTAINERS_CONF when set) and the
// descriptor dir.
func scopePaths(o Options) (conf, hooks string, err error) {
	conf, hooks = o.Getenv("CONTAINERS_CONF"), o.HooksDir
	switch o.Scope {
	case ScopeUser:
		if conf == "" {
			conf, err = UserConfFile(o.Getenv)
		}
		if err == nil && hooks == "" {
			hooks, err = UserHooksDir(o.Getenv)
		}
	case ScopeSystem:
		if conf == "" {
			conf = SystemConfFile
		}
		if hooks == "" {
			hooks = SystemHooksDir
		}
	default:
		err = fmt.Errorf("unknown scope %q", o.Scope)
	}
	if err != nil {
		return "", "", err
	}
	if !filepath.IsAbs(conf) || !filepath.IsAbs(hooks) {
		return "", "", fmt.Errorf("containers.conf %q and hooks dir %q must be absolute paths", conf, hooks)
	}
	return filepath.Clean(conf), filepath.Clean(hooks), nil
}

// writeConf writes a containers.conf atomically, keeping the mode of the file it replaces.
func writeConf(path string, data []byte) error {
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	return writeAtomic(path, data, perm)
}

// CheckInstallable refuses a binary the hook cannot run from: not absolute, not executable,
// not static (it is also the init inside containers), and for the system scope not readable
// and executable by every user (rootless podman of any user runs it).
func CheckInstallable(binary string, scope Scope) error {
	if !filepath.IsAbs(binary) {
		return fmt.Errorf("hook binary %q is not an absolute path", binary)
	}
	fi, err := os.Stat(binary)
	if err != nil {
		return fmt.Errorf("hook binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("hook binary %s is not an executable file", binary)
	}
	if scope == ScopeSystem && fi.Mode()&0o005 != 0o005 {
		return fmt.Errorf("hook binary %s (mode %v) must be readable and executable by everyone for the system scope; install it under /usr/local/bin with mode 0755", binary, fi.Mode().Perm())
	}
	f, err := elf.Open(binary)
	if err != nil {
		return fmt.Errorf("hook binary %s: %w", binary, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("hook binary %s is dynamically linked; terok-shield must be static (CGO_ENABLED=0): it is also the init inside containers", binary)
		}
	}
	return nil
}
