// SPDX-License-Identifier: Apache-2.0

package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/config"
	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/inject"
	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/state"
)

// EnvUpstream overrides the upstream DNS server(s) of shielded containers (comma-separated).
const EnvUpstream = "TEROK_SHIELD_UPSTREAM"

// defaultHooksDir is podman's compiled-in hooks dir. --hooks-dir replaces the configured list,
// so the shim passes it along with its own.
const defaultHooksDir = "/usr/share/containers/oci/hooks.d"

// prepareShielded writes the state bundle and hooks.d descriptors for a shielded run/create
// and returns the argv (without argv[0]) for the real podman.
func prepareShielded(inv *argparse.Invocation, dec inject.Decision, cfg *config.Config, getenv func(string) string) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("terok-shield: locate own binary: %w", err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return nil, fmt.Errorf("terok-shield: locate own binary: %w", err)
	}
	rootDir, err := state.DefaultRoot(getenv)
	if err != nil {
		return nil, err
	}
	userDir, err := profiles.DefaultUserDir(getenv)
	if err != nil {
		return nil, err
	}
	hooksDir := filepath.Join(rootDir, "hooks.d")
	prot := inject.Protected{Paths: []string{rootDir, filepath.Dir(userDir), self, "/run/podman", filepath.Join(getenv("XDG_RUNTIME_DIR"), "podman")}}
	lookup := func(k string) (string, bool) { return os.LookupEnv(k) }
	if err := inject.Check(inv, argparse.RemoteFromEnv(lookup), prot); err != nil {
		return nil, err
	}

	set, err := profiles.Loader{Bundled: profiles.BundledFS(), UserDir: userDir}.Load(dec.Profiles...)
	if err != nil {
		return nil, fmt.Errorf("terok-shield: %w", err)
	}
	upstreams, err := upstreamsFor(getenv, cfg.Resolver.Upstream)
	if err != nil {
		return nil, err
	}
	if cfg.Resolver.Tier == "static" {
		return nil, errors.New("terok-shield: resolver tier \"static\" (config.yml resolver.tier) is not implemented yet; use auto or dnsmasq")
	}
	if _, err := dnsmasq.Find(); err != nil {
		return nil, fmt.Errorf("terok-shield: the resolver is required for shielded containers: %w", err)
	}

	name := inject.UserName(inv)
	dirs, err := hooksDirs(hooksDir, getenv)
	if err != nil {
		return nil, err
	}
	plan := inject.Plan{Binary: self, HooksDirs: dirs}
	if name == "" {
		name = "shield-" + randomHex(6)
		plan.Name = name
	}
	root, err := state.OpenRoot(rootDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, err := root.Create(name)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	plan.BundleDir = b.Dir()
	err = b.Update(func(d *state.Data) error {
		d.Profiles = set.Profiles
		d.Resolved = state.EntriesOf(set)
		d.Mode = state.ModeUp
		d.Resolver = state.Resolver{
			Tier:       state.TierDnsmasq,
			Upstreams:  upstreams,
			LearnedTTL: state.Duration(cfg.Resolver.LearnedTTL),
		}
		if len(cfg.LoopbackPorts) > 0 {
			d.Resolver.HostGateways = hostGateways()
			for _, p := range cfg.LoopbackPorts {
				d.Resolver.HostPorts = append(d.Resolver.HostPorts, uint16(p))
			}
		}
		d.NetNS = nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	al := audit.New(b.Root(), audit.Options{})
	for _, n := range set.Notices {
		ev := audit.Event{Container: name, Action: audit.ActionNotice, Target: n.Entry.String(), Reason: n.Reason, Source: n.Source}
		if err := al.Append(ev); err != nil {
			return nil, fmt.Errorf("terok-shield: audit: %w", err)
		}
	}
	if err := b.WriteFile(state.FileResolvConf, []byte("nameserver 127.0.0.1\noptions ndots:0\n"), 0o644); err != nil {
		return nil, err
	}
	if err := b.Root().Mkdir(hook.GateDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("terok-shield: create gate dir: %w", err)
	}
	// A proof left from an earlier container of this name must not open the gate.
	if err := b.Root().Remove(filepath.Join(hook.GateDir, "proof.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("terok-shield: clear gate proof: %w", err)
	}
	if err := writeHooksDir(hooksDir, self); err != nil {
		return nil, err
	}
	return inject.Rewrite(inv, dec, plan), nil
}

// hostGateways returns the addresses under which a container reaches the host's loopback:
// slirp4netns's 10.0.2.2 for rootless podman (the shim never adds allow_host_loopback, so the
// ruleset's host-port rules only matter where the operator enabled it), pasta's mapped address.
func hostGateways() []netip.Addr {
	return []netip.Addr{netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("169.254.1.2")}
}

// upstreamsFor picks the resolver's upstream: $TEROK_SHIELD_UPSTREAM, else config.yml's
// resolver.upstream, else slirp4netns's DNS forwarder for rootless podman, else the host's first
// non-loopback nameserver.
func upstreamsFor(getenv func(string) string, configured []netip.Addr) ([]netip.Addr, error) {
	if v := getenv(EnvUpstream); v != "" {
		var out []netip.Addr
		for _, s := range strings.Split(v, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("terok-shield: %s=%q: %w", EnvUpstream, v, err)
			}
			out = append(out, a.Unmap())
		}
		return out, nil
	}
	if len(configured) > 0 {
		return configured, nil
	}
	if os.Geteuid() != 0 {
		return []netip.Addr{netip.MustParseAddr("10.0.2.3")}, nil
	}
	data, err := os.ReadFile("/etc/resolv.conf")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "nameserver" {
				if a, err := netip.ParseAddr(f[1]); err == nil && !a.IsLoopback() {
					return []netip.Addr{a.Unmap()}, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("terok-shield: no upstream DNS server found; set %s", EnvUpstream)
}

// hooksDescriptor is a hooks.d file (containers/common pkg/hooks 1.0.0 schema).
type hooksDescriptor struct {
	Version string `json:"version"`
	Hook    struct {
		Path    string   `json:"path"`
		Args    []string `json:"args"`
		Env     []string `json:"env"`
		Timeout int      `json:"timeout"`
	} `json:"hook"`
	When struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"when"`
	Stages []string `json:"stages"`
}

// writeHooksDir makes sure dir holds the descriptors for both stages, pointing at binary.
func writeHooksDir(dir, binary string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("terok-shield: create hooks dir: %w", err)
	}
	for _, stage := range []string{hook.StageCreateRuntime, hook.StagePoststop} {
		var d hooksDescriptor
		d.Version = "1.0.0"
		d.Hook.Path = binary
		d.Hook.Args = []string{"terok-shield", "hook", stage}
		d.Hook.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		d.Hook.Timeout = int(hook.Timeout.Seconds()) + 10
		d.When.Annotations = map[string]string{`^terok\.shield\.bundle$`: ".+"}
		d.Stages = []string{stage}
		data, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return err
		}
		path := filepath.Join(dir, "terok-shield-"+stage+".json")
		if old, err := os.ReadFile(path); err == nil && string(old) == string(data)+"\n" {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("terok-shield: write hook descriptor: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("terok-shield: write hook descriptor: %w", err)
		}
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
