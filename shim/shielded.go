// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/config"
	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/hookconf"
	"github.com/terok-ai/terok-shield/inject"
	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/resolve"
	"github.com/terok-ai/terok-shield/state"
)

// EnvUpstream overrides the upstream DNS server(s) of shielded containers (comma-separated).
const EnvUpstream = "TEROK_SHIELD_UPSTREAM"

// prepareShielded writes the state bundle (and, without setup, the hooks.d descriptors) for a
// shielded run/create and returns the argv (without argv[0]) for the real podman.
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
	conf := podmanConf(getenv) // containers.conf, parsed once for this run
	prot := inject.Protected{Paths: protectedPaths(getenv, rootDir, userDir, self)}
	lookup := func(k string) (string, bool) { return os.LookupEnv(k) }
	if err := inject.Check(inv, argparse.RemoteFromEnv(lookup), prot); err != nil {
		return nil, err
	}

	set, err := profiles.Loader{Bundled: profiles.BundledFS(), UserDir: userDir}.Load(dec.Profiles...)
	if err != nil {
		return nil, fmt.Errorf("terok-shield: %w", err)
	}
	// The resolver's feature check (`dnsmasq --version`, ~3 ms) is cached next to the state.
	findResolver := func() (string, error) { return dnsmasq.FindCached(filepath.Join(rootDir, "dnsmasq-check")) }
	tier, dnsmasqBin, err := chooseTier(cfg.Resolver.Tier, findResolver)
	if err != nil {
		return nil, err
	}
	var upstreams []netip.Addr
	if tier == state.TierStatic {
		if err := checkStaticFlags(inv); err != nil {
			return nil, err
		}
		resolvConf, _ := os.ReadFile("/etc/resolv.conf")
		upstreams, err = staticUpstreams(getenv, cfg.Resolver.Upstream, resolvConf)
	} else {
		upstreams, err = upstreamsFor(getenv, cfg.Resolver.Upstream, func() string { return rootlessNet(inv, conf, getenv, rootDir) })
	}
	if err != nil {
		return nil, err
	}

	hp, err := planHooks(rootDir, conf)
	if err != nil {
		return nil, err
	}
	if hp.setupDir != "" {
		if err := checkHook(hp.setupDir); err != nil {
			return nil, err
		}
	}
	name := inject.UserName(inv)
	plan := inject.Plan{Binary: self, HooksDirs: hp.inject}
	if name != "" && !replacing(inv) && bundleExists(rootDir, name) {
		// The bundle of an existing container of this name must not be rewritten by a run that
		// podman is about to refuse ("name already in use"). Without a bundle there is nothing
		// to protect, and no podman call (~25 ms) is made: a run podman then refuses leaves an
		// empty bundle behind, which the next shielded container of that name replaces.
		exists, err := containerExists(inv, name, getenv)
		if err != nil {
			return nil, err
		}
		if exists {
			return nil, fmt.Errorf("terok-shield: a container named %q already exists; remove it or use --replace", name)
		}
	}
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
	resolver := state.Resolver{
		Tier:         tier,
		Binary:       dnsmasqBin,
		Upstreams:    upstreams,
		LearnedTTL:   state.Duration(cfg.Resolver.LearnedTTL),
		StaticMaxAge: state.Duration(cfg.Resolver.StaticMaxAge),
	}
	if len(cfg.LoopbackPorts) > 0 {
		resolver.HostGateways = hostGateways()
		for _, p := range cfg.LoopbackPorts {
			resolver.HostPorts = append(resolver.HostPorts, uint16(p))
		}
	}
	var static staticResolution
	if tier == state.TierStatic {
		// Resolved before the bundle's lock is taken: the network may be slow.
		prev, _ := b.Load()
		d := &state.Data{Resolved: state.EntriesOf(set), Mode: state.ModeUp, Resolver: resolver}
		ctx, cancel := context.WithTimeout(context.Background(), staticResolveTimeout)
		static = resolveStatic(ctx, d, prev, &resolve.Resolver{Servers: resolve.Servers(upstreams)}, time.Now())
		cancel()
	}
	err = b.Update(func(d *state.Data) error {
		d.Profiles = set.Profiles
		d.Resolved = state.EntriesOf(set)
		d.Mode = state.ModeUp
		d.Resolver = resolver
		// A new container of this name starts from its profiles: operator changes made to an
		// earlier container of the same name do not carry over (fresh resolved addresses do).
		d.Created = time.Now().UTC().Truncate(time.Millisecond)
		d.Allow, d.Deny, d.Static, d.NetNS = state.Entries{}, state.Entries{}, static.Static, nil
		d.AutoRemove = autoRemove(inv)
		d.Audit = state.AuditSettings{Disabled: !cfg.Audit.Enabled, MaxBytes: cfg.Audit.MaxBytes}
		return nil
	})
	if err != nil {
		return nil, err
	}
	al := b.AuditLog()
	for _, n := range set.Notices {
		ev := audit.Event{Container: name, Action: audit.ActionNotice, Target: n.Entry.String(), Reason: n.Reason, Source: n.Source}
		if err := al.Append(ev); err != nil {
			return nil, fmt.Errorf("terok-shield: audit: %w", err)
		}
	}
	// timeout:1 attempts:3: a query lost while the resolver restarts (a live name change)
	// is retried after a second, not glibc's default five.
	resolvConf := "nameserver 127.0.0.1\noptions ndots:0 timeout:1 attempts:3\n"
	var extra []string
	if tier == state.TierStatic {
		if err := auditStatic(al, name, static, os.Stderr); err != nil {
			return nil, err
		}
		// No resolver listens on 127.0.0.1 in a static-tier container: a lookup that misses
		// /etc/hosts fails at once (port unreachable) instead of waiting for a blocked upstream.
		resolvConf = "# terok-shield static resolver tier: names resolve only through /etc/hosts\nnameserver 127.0.0.1\noptions ndots:0\n"
		if err := b.WriteFile(state.FileHosts, resolve.Hosts(static.Static.Addrs), 0o644); err != nil {
			return nil, err
		}
		extra = []string{"--volume", b.Dir() + "/" + state.FileHosts + ":/etc/hosts:ro"}
	}
	if err := b.WriteFile(state.FileResolvConf, []byte(resolvConf), 0o644); err != nil {
		return nil, err
	}
	if err := b.Root().Mkdir(hook.GateDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("terok-shield: create gate dir: %w", err)
	}
	// A proof left from an earlier container of this name must not open the gate.
	if err := b.Root().Remove(filepath.Join(hook.GateDir, "proof.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("terok-shield: clear gate proof: %w", err)
	}
	if hp.setupDir == "" {
		if _, err := hookconf.WriteDescriptors(hp.stateDir, self); err != nil {
			return nil, fmt.Errorf("terok-shield: %w", err)
		}
	}
	return inv.Rewrite(inv.ImageIndex, append(inject.Args(inv, plan), extra...), dec.FlagIdx...), nil
}

// hostGateways returns the addresses under which a container reaches the host's loopback:
// slirp4netns's 10.0.2.2 for rootless podman (the shim never adds allow_host_loopback, so the
// ruleset's host-port rules only matter where the operator enabled it), pasta's mapped address.
func hostGateways() []netip.Addr {
	return []netip.Addr{netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("169.254.1.2")}
}

// protectedPaths are the host paths a shielded container must not mount (threat model item 10):
// through them the workload could rewrite its own rules or the hook configuration: the state
// root, terok-shield's config, the binary, podman's sockets, containers.conf and hooks dirs.
func protectedPaths(getenv func(string) string, rootDir, profilesDir, self string) []string {
	paths := []string{rootDir, filepath.Dir(profilesDir), self, "/run/podman", "/etc/containers",
		"/usr/share/containers/containers.conf", "/usr/share/containers/oci"}
	if rt := getenv("XDG_RUNTIME_DIR"); rt != "" {
		paths = append(paths, filepath.Join(rt, "podman"))
	}
	cfg := getenv("XDG_CONFIG_HOME")
	if cfg == "" && getenv("HOME") != "" {
		cfg = filepath.Join(getenv("HOME"), ".config")
	}
	if cfg != "" {
		paths = append(paths, filepath.Join(cfg, "containers"))
	}
	if data := getenv("XDG_DATA_HOME"); data != "" {
		paths = append(paths, filepath.Join(data, "terok", "shield"))
	} else if home := getenv("HOME"); home != "" {
		paths = append(paths, filepath.Join(home, ".local", "share", "terok", "shield"))
	}
	if cc := getenv("CONTAINERS_CONF"); cc != "" {
		paths = append(paths, cc)
	}
	return append(paths, "/usr/local/share/terok-shield")
}

// autoRemove reports whether podman removes the container when it exits (run --rm).
func autoRemove(inv *argparse.Invocation) bool {
	fl := inv.Lookup("rm")
	return inv.Canonical == "run" && len(fl) > 0 && fl[len(fl)-1].Value != "false"
}

// replacing reports whether the user asked podman to replace an existing container (--replace).
func replacing(inv *argparse.Invocation) bool {
	fl := inv.Lookup("replace")
	return len(fl) > 0 && fl[len(fl)-1].Value != "false"
}

// containerExists asks the real podman, with the user's global flags (storage, root, …),
// whether a container of this name exists.
// bundleExists reports whether the state root at rootDir has a bundle for container name.
func bundleExists(rootDir, name string) bool {
	_, err := os.Lstat(filepath.Join(rootDir, "containers", name, state.FileBundle))
	return err == nil
}

func containerExists(inv *argparse.Invocation, name string, getenv func(string) string) (bool, error) {
	self, _ := os.Executable()
	real, err := findRealPodman(getenv, self)
	if err != nil {
		return false, err
	}
	var args []string
	for _, g := range inv.Globals {
		args = append(args, inv.Argv[g.Index:g.Index+g.N]...)
	}
	args = append(args, "container", "exists", "--", name)
	err = exec.Command(real, args...).Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	}
	return false, fmt.Errorf("terok-shield: check whether container %q exists: %w", name, err)
}

// upstreamsFor picks the resolver's upstream: $TEROK_SHIELD_UPSTREAM, else config.yml's
// resolver.upstream, else the rootless network's DNS forwarder (slirp4netns 10.0.2.3, pasta
// 169.254.1.1), else the host's non-loopback nameservers (for systemd-resolved's 127.0.0.53
// stub, the servers behind it).
func upstreamsFor(getenv func(string) string, configured []netip.Addr, netCmd func() string) ([]netip.Addr, error) {
	rootless := os.Geteuid() != 0
	cmd := ""
	if rootless && getenv(EnvUpstream) == "" && len(configured) == 0 {
		cmd = netCmd()
	}
	return detectUpstreams(getenv, configured, rootless, cmd, os.ReadFile)
}

// Rootless DNS forwarders: slirp4netns's, and the address podman 5 has pasta forward.
var (
	slirpDNS = netip.MustParseAddr("10.0.2.3")
	pastaDNS = netip.MustParseAddr("169.254.1.1")
)

// rootlessNet tells which rootless network a run gets: its --network flag, else
// containers.conf's default_rootless_network_cmd, else podman's version default (pasta from
// 5.0), with the version read from the real podman once and cached in the state root.
func rootlessNet(inv *argparse.Invocation, conf hookconf.Conf, getenv func(string) string, rootDir string) string {
	if fl := inv.Lookup("network"); len(fl) > 0 {
		mode, _, _ := strings.Cut(fl[len(fl)-1].Value, ":")
		if mode == "pasta" || mode == "slirp4netns" {
			return mode
		}
	}
	if cmd, err := conf.RootlessNetworkCmd(); err == nil && cmd != "" {
		return cmd
	}
	if podmanMajor(getenv, rootDir) >= 5 {
		return "pasta"
	}
	return "slirp4netns"
}

// podmanMajor returns the real podman's major version (0 when unknown). `podman --version`
// costs a process start of podman, so the answer is cached next to the state, keyed by the
// binary's path, size and modification time.
func podmanMajor(getenv func(string) string, rootDir string) int {
	self, _ := os.Executable()
	real, err := findRealPodman(getenv, self)
	if err != nil {
		return 0
	}
	fi, err := os.Stat(real)
	if err != nil {
		return 0
	}
	key := fmt.Sprintf("%s %d %d", real, fi.Size(), fi.ModTime().UnixNano())
	cache := filepath.Join(rootDir, "podman-version")
	if data, err := os.ReadFile(cache); err == nil {
		if k, v, ok := strings.Cut(strings.TrimSpace(string(data)), "\t"); ok && k == key {
			return parseMajor(v)
		}
	}
	out, err := exec.Command(real, "--version").Output()
	if err != nil {
		return 0
	}
	v := strings.TrimSpace(string(out))
	_ = os.WriteFile(cache, []byte(key+"\t"+v+"\n"), 0o600) // a cache: losing it costs one more call
	return parseMajor(v)
}

// parseMajor reads the major version from "podman version 5.2.1".
func parseMajor(v string) int {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	major, _, _ := strings.Cut(f[len(f)-1], ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0
	}
	return n
}

// resolvConfs are read in order until one names a non-loopback nameserver: the host's file,
// then systemd-resolved's list of the servers behind its loopback stub.
var resolvConfs = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

func detectUpstreams(getenv func(string) string, configured []netip.Addr, rootless bool, rootlessNetCmd string, read func(string) ([]byte, error)) ([]netip.Addr, error) {
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
	if rootless {
		if rootlessNetCmd == "pasta" {
			return []netip.Addr{pastaDNS}, nil
		}
		return []netip.Addr{slirpDNS}, nil
	}
	for _, f := range resolvConfs {
		data, err := read(f)
		if err != nil {
			continue
		}
		var out []netip.Addr
		for _, line := range strings.Split(string(data), "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 2 && fs[0] == "nameserver" {
				if a, err := netip.ParseAddr(fs[1]); err == nil && !a.IsLoopback() && a.Zone() == "" && !slices.Contains(out, a.Unmap()) {
					out = append(out, a.Unmap())
				}
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("terok-shield: no upstream DNS server found (no non-loopback nameserver in %s); set %s or resolver.upstream in config.yml", strings.Join(resolvConfs, ", "), EnvUpstream)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
