// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/hookconf"
)

// Check is one prerequisite doctor examined.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// DoctorEnv is what Doctor needs from its caller.
type DoctorEnv struct {
	// Podman is the real podman binary, or PodmanErr why none was found.
	Podman    string
	PodmanErr error
	// LookPath finds helper programs; nil means exec.LookPath plus the usual libexec dirs.
	LookPath func(string) (string, error)
	// Getenv locates podman's containers.conf files; nil means os.Getenv.
	Getenv func(string) string
}

// Doctor checks every prerequisite of a shielded container and of the control commands, and
// says how to fix each failure.
func (c *Controller) Doctor(ctx context.Context, env DoctorEnv) []Check {
	look := env.LookPath
	if look == nil {
		look = lookPath
	}
	var out []Check
	add := func(name string, err error, detail, fix string) {
		if err != nil {
			out = append(out, Check{Name: name, Detail: err.Error(), Fix: fix})
			return
		}
		out = append(out, Check{Name: name, OK: true, Detail: detail})
	}

	add("state directory", nil, c.Root.Dir(), "")

	exe, exeErr := c.exe()
	err := exeErr
	if err == nil {
		err = c.probe(ctx, look, exe, true)
	}
	add("nftables in a user-namespaced network namespace", err, "inet table applied and verified in a fresh user+network namespace",
		"load nf_tables (modprobe nf_tables) and allow unprivileged user namespaces (sysctl user.max_user_namespaces=15000; on Debian/Ubuntu also kernel.unprivileged_userns_clone=1 and kernel.apparmor_restrict_unprivileged_userns=0)")
	if c.Euid == 0 {
		err := exeErr
		if err == nil {
			err = c.probe(ctx, look, exe, false)
		}
		add("nftables in a network namespace (rootful)", err, "inet table applied and verified in a fresh network namespace", "load nf_tables: modprobe nf_tables")
	}

	bin, err := dnsmasq.Find()
	add("dnsmasq with nftset and conntrack", err, bin,
		"install dnsmasq 2.87 or newer built with nftset and conntrack (Debian/Ubuntu: apt install dnsmasq-base; Fedora: dnf install dnsmasq)")

	out = append(out, c.hookChecks(env)...)

	p, err := look("nsenter")
	add("nsenter (reaches rootless containers)", err, p, "install util-linux (nsenter)")

	add("podman", env.PodmanErr, env.Podman, "install podman 4.3 or newer")

	p, err = firstOf(look, "crun", "runc")
	add("OCI runtime", err, p, "install crun (or runc)")

	if c.Euid == 0 {
		p, err = firstOf(look, "netavark", "bridge")
		add("network backend", err, p, "install netavark (podman's network backend) and aardvark-dns")
	} else {
		p, err = firstOf(look, "pasta", "slirp4netns")
		add("network backend (rootless)", err, p, "install passt (pasta) or slirp4netns")
	}
	return out
}

// setupFix is the fix of both hook checks.
const setupFix = "run terok-shield setup (until then only starts through the shim get the hook; starts by systemd, quadlet, compose or the API service are refused by the gate)"

// hookChecks examines how shielded containers get their OCI hook: a dir of podman's
// engine.hooks_dir holding terok-shield's descriptors (terok-shield setup), and a binary
// behind those descriptors (or, without setup, behind the state root's hooks.d) that exists.
func (c *Controller) hookChecks(env DoctorEnv) []Check {
	getenv := env.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var out []Check
	setupDir, hd, err := hookconf.Conf{Getenv: getenv, Rootless: c.Euid != 0}.InEffect()
	source := hd.Source
	if source == "" {
		source = "podman's default"
	}
	if err == nil && setupDir == "" {
		err = fmt.Errorf("no dir of podman's hooks_dir %q (%s) holds terok-shield's descriptors", hd.Dirs, source)
	}
	if err != nil {
		out = append(out, Check{Name: "hooks dir in containers.conf", Detail: err.Error(), Fix: setupFix})
	} else {
		out = append(out, Check{Name: "hooks dir in containers.conf", OK: true, Detail: setupDir + " (engine.hooks_dir of " + source + ")"})
	}

	dir, fix := setupDir, "run terok-shield setup again with an installed terok-shield"
	if dir == "" {
		dir, fix = filepath.Join(c.Root.Dir(), HooksDirName), setupFix
	}
	hb, err := hookconf.CheckBinary(dir)
	switch {
	case err == nil:
		if self, serr := c.exe(); serr == nil && !sameFile(self, hb) {
			err = fmt.Errorf("the hook runs %s, not this terok-shield (%s)", hb, self)
			fix = "run terok-shield setup with this terok-shield to point the hook at it, or reinstall it at " + hb
		}
	case setupDir == "" && errors.Is(err, os.ErrNotExist):
		if werr := dirWritable(filepath.Dir(dir)); werr != nil {
			err = fmt.Errorf("%w; and %v", err, werr)
			fix = "make " + filepath.Dir(dir) + " writable by you (mode 0700), then " + fix
		}
	}
	if err != nil {
		out = append(out, Check{Name: "hook binary exists", Detail: err.Error(), Fix: fix})
	} else {
		out = append(out, Check{Name: "hook binary exists", OK: true, Detail: hb + " via " + dir})
	}
	return out
}

func (c *Controller) exe() (string, error) {
	if c.Exe != "" {
		return c.Exe, nil
	}
	return executable()
}

// probe applies and verifies an enforce table in a fresh network namespace (inside a fresh
// user namespace when userns), through the OpCommand child.
func (c *Controller) probe(ctx context.Context, look func(string) (string, error), exe string, userns bool) error {
	unshare, err := look("unshare")
	if err != nil {
		return err
	}
	args := []string{"--net"}
	if userns {
		args = []string{"--user", "--map-root-user", "--net"}
	}
	args = append(args, "--", exe, OpCommand)
	_, err = runChild(ctx, exec.CommandContext(ctx, unshare, args...), Op{Probe: true})
	return err
}

// libexecDirs are where podman's helpers live besides PATH.
var libexecDirs = []string{"/usr/libexec/podman", "/usr/lib/podman", "/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/cni", "/opt/cni/bin", "/usr/sbin", "/sbin"}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range libexecDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s", name, strings.Join(libexecDirs, ", "))
}

func firstOf(look func(string) (string, error), names ...string) (string, error) {
	var errs []error
	for _, n := range names {
		p, err := look(n)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

func dirWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".terok-shield-doctor-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
