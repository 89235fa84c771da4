// SPDX-License-Identifier: Apache-2.0

// Package inject decides whether a parsed podman run/create is shielded, refuses invocations
// that cannot be shielded safely, and computes the rewritten argv.
//
// Everything here is a pure function of the parsed command line and its inputs: no file is
// read or written and nothing is executed, so every decision and every argv rewrite has a
// table or golden test. The shim does the side effects (state bundle, hooks.d file, exec).
package inject

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/config"
)

// Environment variables that shield a run/create. They are not PODMAN_-prefixed on purpose:
// compose copies PODMAN_* variables from .env files.
const (
	EnvShield   = "TEROK_SHIELD"          // "1"/"true": shield with the default profiles
	EnvProfiles = "TEROK_SHIELD_PROFILES" // comma-separated profile names: shield with these
	ShimFlag    = "shield"                // --shield or --shield=PROFILES on run/create
)

// Decision says whether a run/create is shielded and with which profiles (nil = defaults).
type Decision struct {
	Shield   bool
	Profiles []string
	Source   string // "flag", "env" or "" when not shielded
	FlagIdx  []int  // argv indexes of the shim flag, to be dropped before podman sees them
}

// Decide applies the trigger precedence: the --shield flag, then TEROK_SHIELD_PROFILES, then
// TEROK_SHIELD, then the first matching rule of config.yml, then its shield.default. A
// --shield=false flag unshields even when the environment or the config asks for a shield. A
// trigger without profiles of its own uses the config's default profiles. cfg may be nil.
func Decide(inv *argparse.Invocation, getenv func(string) string, cfg *config.Config) (Decision, error) {
	d, err := decideTrigger(inv, getenv)
	if err != nil || cfg == nil {
		return d, err
	}
	if d.Source == "" && !slices.Contains([]string{"false", "0"}, lastShimValue(inv)) {
		if profs, shield, _ := cfg.Match(Image(inv), UserName(inv)); shield {
			d.Shield, d.Source, d.Profiles = true, "config", profs
		}
	}
	if d.Shield && len(d.Profiles) == 0 {
		d.Profiles = slices.Clone(cfg.DefaultProfiles)
	}
	return d, nil
}

func lastShimValue(inv *argparse.Invocation) string {
	fl := inv.Lookup(ShimFlag)
	if len(fl) == 0 {
		return ""
	}
	return strings.TrimSpace(fl[len(fl)-1].Value)
}

func decideTrigger(inv *argparse.Invocation, getenv func(string) string) (Decision, error) {
	var d Decision
	for _, f := range inv.Lookup(ShimFlag) {
		d.FlagIdx = append(d.FlagIdx, f.Tokens()...)
	}
	if fl := inv.Lookup(ShimFlag); len(fl) > 0 {
		last := fl[len(fl)-1]
		switch v := strings.TrimSpace(last.Value); v {
		case "", "true", "1":
			d.Shield, d.Source = true, "flag"
		case "false", "0":
			return Decision{FlagIdx: d.FlagIdx}, nil
		default:
			p, err := splitProfiles(v)
			if err != nil {
				return Decision{}, fmt.Errorf("--shield=%s: %w", v, err)
			}
			d.Shield, d.Source, d.Profiles = true, "flag", p
		}
		return d, nil
	}
	if v := getenv(EnvProfiles); v != "" {
		p, err := splitProfiles(v)
		if err != nil {
			return Decision{}, fmt.Errorf("%s=%s: %w", EnvProfiles, v, err)
		}
		d.Shield, d.Source, d.Profiles = true, "env", p
		return d, nil
	}
	switch strings.ToLower(getenv(EnvShield)) {
	case "1", "true", "yes":
		d.Shield, d.Source = true, "env"
	}
	return d, nil
}

func splitProfiles(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, errors.New("empty profile name")
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Protected are host paths a shielded container must not mount: the workload could rewrite
// its own rules (threat model item 10).
type Protected struct {
	Paths []string // absolute: state root, config dir, the terok-shield binary, hooks dirs, podman sockets
}

// unsafeCaps may not be added to a shielded container.
var unsafeCaps = []string{"ALL", "NET_ADMIN", "NET_RAW", "SYS_ADMIN"}

// Refusal is an invocation that cannot be shielded safely.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return "terok-shield: cannot shield this container: " + r.Reason }

func refuse(format string, args ...any) error { return &Refusal{Reason: fmt.Sprintf(format, args...)} }

// Check refuses flags under which the firewall cannot hold. It runs only for shielded
// invocations; unshielded ones pass through untouched.
func Check(inv *argparse.Invocation, remoteEnv bool, prot Protected) error {
	if inv.Remote || remoteEnv {
		return refuse("podman runs in remote mode (--remote, --url, --connection, CONTAINER_HOST): the hook cannot be installed on the remote side")
	}
	if inv.ImageIndex < 0 {
		return refuse("no image given")
	}
	for _, f := range inv.Flags {
		v := f.Value
		switch f.Name {
		case "privileged":
			if v != "false" {
				return refuse("--privileged gives the workload every capability (it could change or bypass the firewall)")
			}
		case "cap-add":
			for _, c := range strings.Split(v, ",") {
				c = strings.ToUpper(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_"))
				if slices.Contains(unsafeCaps, c) {
					return refuse("--cap-add %s would let the workload change or bypass the firewall", c)
				}
			}
		case "network":
			mode, _, _ := strings.Cut(v, ":")
			switch mode {
			case "host", "container", "ns", "none":
				if mode != "none" {
					return refuse("--network %s: a shielded container needs its own network namespace", v)
				}
			}
		case "pod", "pod-id-file":
			return refuse("--%s: containers of a pod share one network namespace; shielded pods are not supported", f.Name)
		case "runtime":
			if b := filepath.Base(v); b != "runc" && b != "crun" {
				return refuse("--runtime %s: only runc and crun run OCI hooks in the kernel's packet path", v)
			}
		case "security-opt":
			if strings.HasSuffix(v, "=unconfined") || v == "label=disable" || strings.HasPrefix(v, "seccomp=unconfined") {
				return refuse("--security-opt %s disables confinement the firewall relies on", v)
			}
		case "dns", "dns-option", "dns-search":
			return refuse("--%s: DNS of a shielded container goes through its own resolver", f.Name)
		case "init-path":
			return refuse("--init-path: the shim uses the init slot for its start gate")
		case "volume", "mount":
			if err := checkMount(f.Name, v, prot); err != nil {
				return err
			}
		case "userns":
			if v == "host" {
				return refuse("--userns host with a shielded rootless container is not supported")
			}
		}
	}
	return nil
}

func checkMount(flag, v string, prot Protected) error {
	var src, dst string
	if flag == "volume" {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			src, dst = parts[0], parts[1]
		} else {
			dst = parts[0]
		}
	} else {
		for _, kv := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "src", "source":
				src = val
			case "dst", "destination", "target":
				dst = val
			}
		}
	}
	if filepath.Clean(dst) == "/etc/resolv.conf" {
		return refuse("--%s %s: a shielded container's /etc/resolv.conf points at its own resolver", flag, v)
	}
	if src == "" || !filepath.IsAbs(src) {
		return nil // a named volume or anonymous volume
	}
	src = filepath.Clean(src)
	for _, p := range prot.Paths {
		if p == "" {
			continue
		}
		if src == p || strings.HasPrefix(src+"/", p+"/") || strings.HasPrefix(p+"/", src+"/") {
			return refuse("--%s %s exposes %s, which would let the workload rewrite its own firewall", flag, v, p)
		}
	}
	return nil
}

// Plan is what the shim prepared for one shielded container.
type Plan struct {
	BundleDir string   // absolute state bundle directory
	Binary    string   // absolute path of the terok-shield binary (hook and gate)
	Name      string   // container name to add ("" when the user gave --name)
	HooksDirs []string // --hooks-dir values: terok-shield's dir plus the configured defaults
}

// Args returns the arguments the shim inserts before the image. No value contains a comma
// outside the volume options (podman 4.3 splits some flags on commas).
func Args(inv *argparse.Invocation, p Plan) []string {
	var out []string
	for _, d := range p.HooksDirs {
		out = append(out, "--hooks-dir", d)
	}
	if p.Name != "" {
		out = append(out, "--name", p.Name)
	}
	out = append(out,
		"--annotation", "terok.shield.bundle="+p.BundleDir,
		"--annotation", "terok.shield.version=1",
		"--cap-drop", "NET_ADMIN", "--cap-drop", "NET_RAW", "--cap-drop", "SYS_ADMIN",
		"--volume", p.BundleDir+"/resolv.conf:/etc/resolv.conf:ro",
		"--volume", p.BundleDir+"/gate:/run/terok-shield:ro",
		"--init-path", p.Binary,
	)
	if !userInit(inv) {
		out = append(out, "--init")
	} else {
		out = append(out, "--env", "TEROK_SHIELD_GATE_REAPER=1")
	}
	return out
}

func userInit(inv *argparse.Invocation) bool {
	fl := inv.Lookup("init")
	return len(fl) > 0 && fl[len(fl)-1].Value != "false"
}

// Rewrite returns the argv (without argv[0]) podman receives: the shim flag dropped and the
// injected arguments placed just before the image; every user token is kept byte for byte.
func Rewrite(inv *argparse.Invocation, d Decision, p Plan) []string {
	return inv.Rewrite(inv.ImageIndex, Args(inv, p), d.FlagIdx...)
}

// UserName returns the --name the user gave, or "".
func UserName(inv *argparse.Invocation) string {
	fl := inv.Lookup("name")
	if len(fl) == 0 {
		return ""
	}
	return fl[len(fl)-1].Value
}

// Image returns the image argument.
func Image(inv *argparse.Invocation) string {
	if inv.ImageIndex < 0 {
		return ""
	}
	return inv.Argv[inv.ImageIndex]
}
