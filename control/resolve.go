// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/resolve"
	"github.com/terok-ai/terok-shield/state"
)

// ResolveReport is the outcome of resolve for one container.
type ResolveReport struct {
	Container string `json:"container"`
	Tier      string `json:"tier"`
	// Refreshed is false when nothing was resolved: the dnsmasq tier, or fresh addresses
	// without --force.
	Refreshed  bool             `json:"refreshed"`
	ResolvedAt time.Time        `json:"resolved_at,omitzero"`
	Addresses  int              `json:"addresses"`
	Names      []resolve.Result `json:"names,omitempty"`
	// Synced is true when the running container's sets were updated (a stopped container
	// gets the addresses at its next start).
	Synced bool     `json:"synced"`
	Notes  []string `json:"notes,omitempty"`
}

// staticResolver returns the resolver of the static tier for d's recorded upstreams.
func (c *Controller) staticResolver(d *state.Data) *resolve.Resolver {
	servers := resolve.Servers(d.Resolver.Upstreams)
	if c.StaticPort != 0 {
		for i, s := range servers {
			servers[i] = netip.AddrPortFrom(s.Addr(), c.StaticPort)
		}
	}
	return &resolve.Resolver{Servers: servers}
}

// running reports whether the container recorded in d still runs.
func running(d *state.Data) bool { return d.NetNS != nil && d.NetNS.Check() == nil }

// Resolve re-resolves the names of a static-tier container on the host, unless its addresses
// are still fresh and force is false, and loads them: bundle, live sets (when it runs) and the
// container's /etc/hosts. A name that fails to resolve keeps its previous addresses. On the
// dnsmasq tier names are learned live and there is nothing to do.
func (c *Controller) Resolve(ctx context.Context, query string, force bool) (*ResolveReport, error) {
	b, err := c.open(query)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	d, err := b.Load()
	if err != nil {
		return nil, err
	}
	rep := &ResolveReport{Container: d.Container, Tier: d.Resolver.Tier}
	if d.Resolver.Tier != state.TierStatic {
		rep.Notes = append(rep.Notes, "not needed: the container's resolver learns the addresses of its names live")
		return rep, nil
	}
	now := time.Now()
	if !force && hook.StaticFresh(d, now) {
		rep.ResolvedAt = d.Static.ResolvedAt
		rep.Names, rep.Addresses = cachedResults(d)
		rep.Notes = append(rep.Notes, fmt.Sprintf("addresses are fresh (resolved %s ago, limit %s); --force resolves again",
			now.Sub(d.Static.ResolvedAt).Round(time.Second), hook.StaticMaxAge(d)))
		return rep, nil
	}
	names, wild := hook.StaticNames(d)
	results := c.staticResolver(d).Resolve(ctx, append(names, wild...))
	err = b.Update(func(d *state.Data) error {
		rep.Notes, rep.Synced = nil, false
		cur, _ := hook.StaticNames(d)
		prev := map[string][]netip.Addr{}
		if d.Static != nil {
			prev = d.Static.Addrs
		}
		st := &state.Static{Addrs: map[string][]netip.Addr{}, ResolvedAt: now.UTC().Truncate(time.Millisecond)}
		for _, n := range cur {
			if old, ok := prev[n]; ok {
				st.Addrs[n] = old // names allowed meanwhile, and failed ones, keep theirs
			}
		}
		for _, r := range results {
			if !slices.Contains(cur, r.Name) || r.Skipped {
				continue
			}
			if _, ok := st.Addrs[r.Name]; !ok || !r.Failed() {
				st.Addrs[r.Name] = slices.Clone(r.Addrs) // a failed name is recorded as tried
			}
		}
		d.Static = st
		rep.ResolvedAt = st.ResolvedAt
		if !running(d) {
			rep.Notes = append(rep.Notes, "container is not running: the addresses apply at its next start")
			return writeHosts(b, d)
		}
		run, err := c.runnerFor(d)
		if err != nil {
			return err
		}
		policy, err := hook.PolicyFor(d)
		if err != nil {
			return err
		}
		if _, err := run(ctx, Op{Sync: &policy}); err != nil {
			return err
		}
		rep.Synced = true
		return writeHosts(b, d)
	})
	if err != nil {
		return nil, err
	}
	rep.Refreshed = true
	rep.Names = results
	for _, r := range results {
		rep.Addresses += len(r.Addrs)
	}
	al := b.AuditLog()
	var errs []error
	for _, r := range results {
		ev := audit.Event{Container: rep.Container, Action: audit.ActionNotice, Target: r.Name, IPs: addrStrings(r.Addrs), Source: "cli",
			Detail: fmt.Sprintf("resolve (static tier): %d addresses", len(r.Addrs))}
		switch {
		case r.Skipped:
			ev.Reason = "wildcards cannot be resolved by the static tier"
		case r.Failed():
			ev.Reason = "not resolved, previous addresses kept: " + r.Err
		case len(r.Dropped) > 0:
			ev.Reason = "private answers dropped (DNS rebinding): " + strings.Join(addrStrings(r.Dropped), ", ")
		}
		errs = append(errs, al.Append(ev))
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("resolved, but the audit log failed: %w", err)
	}
	return rep, nil
}

// cachedResults reports d's static addresses as results.
func cachedResults(d *state.Data) ([]resolve.Result, int) {
	hosts := hook.StaticHosts(d)
	names, wild := hook.StaticNames(d)
	var out []resolve.Result
	n := 0
	for _, name := range slices.Sorted(slices.Values(append(names, wild...))) {
		r := resolve.Result{Name: name, Addrs: hosts[name], Skipped: resolve.IsWildcard(name)}
		n += len(r.Addrs)
		out = append(out, r)
	}
	return out, n
}

// writeHosts rewrites the container's /etc/hosts (the bundle's hosts file) in place: the
// container has it bind-mounted, so the file must stay the same inode.
func writeHosts(b *state.Bundle, d *state.Data) error {
	f, err := b.OpenFile(state.FileHosts, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write hosts file: %w", err)
	}
	_, werr := f.Write(resolve.Hosts(hook.StaticHosts(d)))
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("write hosts file: %w", err)
	}
	return nil
}

// WriteResolve prints a resolve report: a summary line, then each name and its addresses.
func WriteResolve(w io.Writer, r *ResolveReport) error {
	var b strings.Builder
	if r.Tier != state.TierStatic {
		fmt.Fprintf(&b, "Nothing to resolve for %s: resolver tier %s\n", r.Container, r.Tier)
	} else if r.Refreshed {
		fmt.Fprintf(&b, "Resolved %d addresses for %s\n", r.Addresses, r.Container)
	} else {
		fmt.Fprintf(&b, "%d addresses for %s, resolved at %s\n", r.Addresses, r.Container, r.ResolvedAt.Format(time.RFC3339))
	}
	for _, n := range r.Names {
		switch {
		case n.Skipped:
			fmt.Fprintf(&b, "  %s → (wildcard: not resolvable statically)\n", n.Name)
		case n.Failed():
			fmt.Fprintf(&b, "  %s → (failed, previous addresses kept: %s)\n", n.Name, n.Err)
		case len(n.Addrs) == 0:
			fmt.Fprintf(&b, "  %s → (no addresses)\n", n.Name)
		default:
			fmt.Fprintf(&b, "  %s → %s\n", n.Name, strings.Join(addrStrings(n.Addrs), ", "))
		}
		if len(n.Dropped) > 0 {
			fmt.Fprintf(&b, "    dropped (private): %s\n", strings.Join(addrStrings(n.Dropped), ", "))
		}
	}
	for _, note := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", note)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// resolveAllowed resolves, for a static-tier container, the names an allow adds (before the
// bundle's lock is taken: the network may be slow).
func (c *Controller) resolveAllowed(ctx context.Context, b *state.Bundle, entries []profiles.Entry, deny bool) (map[string]resolve.Result, error) {
	if deny {
		return nil, nil
	}
	var names []string
	for _, e := range entries {
		if e.Kind == profiles.Domain {
			names = append(names, e.Name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	d, err := b.Load()
	if err != nil {
		return nil, err
	}
	if d.Resolver.Tier != state.TierStatic {
		return nil, nil
	}
	out := map[string]resolve.Result{}
	for _, r := range c.staticResolver(d).Resolve(ctx, names) {
		out[r.Name] = r
	}
	return out, nil
}

// staticChange applies an allow or deny of a name to a static-tier container's addresses: an
// allowed name gets the addresses resolved for it, a denied one loses its addresses.
func staticChange(d *state.Data, e profiles.Entry, deny bool, pre map[string]resolve.Result, ch *Change) error {
	if e.Kind == profiles.Wildcard {
		if !deny {
			ch.Notes = append(ch.Notes, ch.Target+": the static resolver tier cannot resolve wildcards; no addresses were added")
		}
		return nil
	}
	if d.Static == nil {
		d.Static = &state.Static{}
	}
	if d.Static.Addrs == nil {
		d.Static.Addrs = map[string][]netip.Addr{}
	}
	if deny {
		ch.IPs = addrStrings(d.Static.Addrs[e.Name])
		delete(d.Static.Addrs, e.Name)
		return nil
	}
	r, ok := pre[e.Name]
	if !ok {
		return fmt.Errorf("allow %s: not resolved (the container's resolver tier changed meanwhile?)", e.Name)
	}
	if r.Failed() {
		return fmt.Errorf("allow %s: cannot resolve it (static resolver tier): %s", e.Name, r.Err)
	}
	d.Static.Addrs[e.Name] = slices.Clone(r.Addrs)
	ch.IPs = addrStrings(r.Addrs)
	if len(r.Addrs) == 0 {
		ch.Notes = append(ch.Notes, ch.Target+": resolved to no public addresses")
	}
	if len(r.Dropped) > 0 {
		ch.Notes = append(ch.Notes, ch.Target+": private answers dropped (DNS rebinding): "+strings.Join(addrStrings(r.Dropped), ", "))
	}
	return nil
}
