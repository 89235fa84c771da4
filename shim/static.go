// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/inject"
	"github.com/terok-ai/terok-shield/resolve"
	"github.com/terok-ai/terok-shield/state"
)

// staticResolveTimeout bounds the shim's resolution of a static-tier container's names.
const staticResolveTimeout = 10 * time.Second

// chooseTier picks the resolver tier from config.yml's resolver.tier: "dnsmasq" requires a
// usable dnsmasq, "static" never uses one, "auto" (or "") takes dnsmasq when find succeeds and
// the static tier otherwise. bin is the dnsmasq binary of the dnsmasq tier.
func chooseTier(configured string, find func() (string, error)) (tier, bin string, err error) {
	switch configured {
	case "static":
		return state.TierStatic, "", nil
	case "dnsmasq":
		bin, err := find()
		if err != nil {
			return "", "", fmt.Errorf("terok-shield: resolver.tier is dnsmasq, but the resolver is unusable: %w", err)
		}
		return state.TierDnsmasq, bin, nil
	case "auto", "":
		if bin, err := find(); err == nil {
			return state.TierDnsmasq, bin, nil
		}
		return state.TierStatic, "", nil
	}
	return "", "", fmt.Errorf("terok-shield: unknown resolver tier %q", configured)
}

// staticUpstreams picks the servers the shim (on the host) resolves static-tier names with:
// $TEROK_SHIELD_UPSTREAM, else config.yml's resolver.upstream, else every nameserver of the
// host's resolv.conf (loopback ones included: the shim runs in the host's network namespace,
// unlike dnsmasq, and slirp4netns's 10.0.2.3 is only reachable from inside a container).
func staticUpstreams(getenv func(string) string, configured []netip.Addr, resolvConf []byte) ([]netip.Addr, error) {
	if getenv(EnvUpstream) != "" || len(configured) > 0 {
		return detectUpstreams(getenv, configured, false, "", os.ReadFile)
	}
	var out []netip.Addr
	for _, line := range strings.Split(string(resolvConf), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.Zone() == "" {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("terok-shield: static resolver tier: no nameserver in /etc/resolv.conf; set %s", EnvUpstream)
	}
	return out, nil
}

// checkStaticFlags refuses what would undo the static tier's /etc/hosts: the container's
// allowlisted names resolve only through the hosts file the shim mounts.
func checkStaticFlags(inv *argparse.Invocation) error {
	for _, f := range inv.Flags {
		switch f.Name {
		case "add-host", "no-hosts":
			return &inject.Refusal{Reason: fmt.Sprintf("--%s: with the static resolver tier the container's /etc/hosts is terok-shield's (its allowlisted names resolve there)", f.Name)}
		case "volume", "mount":
			if mountsOn(f.Name, f.Value, "/etc/hosts") {
				return &inject.Refusal{Reason: fmt.Sprintf("--%s %s: with the static resolver tier the container's /etc/hosts is terok-shield's", f.Name, f.Value)}
			}
		}
	}
	return nil
}

// mountsOn reports whether a --volume or --mount value has destination dst.
func mountsOn(flag, v, dst string) bool {
	if flag == "volume" {
		parts := strings.Split(v, ":")
		return len(parts) >= 2 && filepath.Clean(parts[1]) == dst
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		if (k == "dst" || k == "destination" || k == "target") && filepath.Clean(val) == dst {
			return true
		}
	}
	return false
}

// staticResolution is what the shim resolved (or reused) for a static-tier container.
type staticResolution struct {
	Static    *state.Static
	Reused    bool
	Results   []resolve.Result // empty when reused
	Wildcards []string
}

// resolveStatic returns the static addresses for d's names: prev's (an earlier container of
// the same name) when they are fresh and cover every name, else a new resolution with res.
func resolveStatic(ctx context.Context, d, prev *state.Data, res *resolve.Resolver, now time.Time) staticResolution {
	names, wild := hook.StaticNames(d)
	if prev != nil && prev.Static != nil {
		cand := *d
		cand.Static = prev.Static
		if hook.StaticFresh(&cand, now) {
			addrs := map[string][]netip.Addr{}
			for _, n := range names {
				addrs[n] = prev.Static.Addrs[n]
			}
			return staticResolution{Static: &state.Static{Addrs: addrs, ResolvedAt: prev.Static.ResolvedAt}, Reused: true, Wildcards: wild}
		}
	}
	rs := res.Resolve(ctx, names)
	addrs := resolve.Addrs(rs)
	for _, r := range rs {
		if r.Failed() {
			addrs[r.Name] = nil // tried: no addresses until the cache expires or `resolve --force`
		}
	}
	return staticResolution{Static: &state.Static{Addrs: addrs, ResolvedAt: now.UTC().Truncate(time.Millisecond)}, Results: rs, Wildcards: wild}
}

// auditStatic records what the shim resolved for a static-tier container and warns on stderr
// about names without addresses it could not resolve and about wildcards.
func auditStatic(al state.AuditLog, name string, sr staticResolution, stderr io.Writer) error {
	n := 0
	for _, as := range sr.Static.Addrs {
		n += len(as)
	}
	detail := fmt.Sprintf("static resolver tier: resolved %d names to %d addresses", len(sr.Static.Addrs), n)
	if sr.Reused {
		detail = fmt.Sprintf("static resolver tier: reused %d addresses of %d names resolved at %s", n, len(sr.Static.Addrs), sr.Static.ResolvedAt.Format(time.RFC3339))
	}
	evs := []audit.Event{{Container: name, Action: audit.ActionNotice, Source: "shim", Detail: detail}}
	for _, r := range sr.Results {
		if r.Failed() {
			evs = append(evs, audit.Event{Container: name, Action: audit.ActionNotice, Target: r.Name, Source: "shim", Reason: "not resolved (no addresses until `resolve`): " + r.Err})
			fmt.Fprintf(stderr, "terok-shield: static resolver tier: %s not resolved: %s\n", r.Name, r.Err)
		}
		if len(r.Dropped) > 0 {
			evs = append(evs, audit.Event{Container: name, Action: audit.ActionNotice, Target: r.Name, IPs: addrStrings(r.Dropped), Source: "shim", Reason: "private answers dropped (DNS rebinding)"})
		}
	}
	for _, w := range sr.Wildcards {
		evs = append(evs, audit.Event{Container: name, Action: audit.ActionNotice, Target: w, Source: "shim", Reason: "the static resolver tier cannot resolve wildcards: no addresses"})
		fmt.Fprintf(stderr, "terok-shield: static resolver tier: %s is a wildcard and cannot be resolved; allow its names or addresses instead\n", w)
	}
	for _, ev := range evs {
		if err := al.Append(ev); err != nil {
			return fmt.Errorf("terok-shield: audit: %w", err)
		}
	}
	return nil
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
