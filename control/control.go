// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/nft"
	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/state"
)

// Controller runs the control commands against the bundles of one state root.
type Controller struct {
	Root *state.Root
	// Exe is the terok-shield binary re-executed in a rootless container's namespaces
	// (serving OpCommand); empty means the running binary.
	Exe string
	// Nsenter is the nsenter binary; empty means look it up on PATH.
	Nsenter string
	// Dnsmasq is the resolver binary; empty means dnsmasq.Find.
	Dnsmasq string
	// StaticPort is the DNS port of the static tier's upstreams; 0 means 53.
	StaticPort uint16
	// Euid decides how namespaces are entered: 0 enters directly, anything else through
	// nsenter into the container's user namespace.
	Euid int
}

// New returns a Controller for root acting as the current effective user.
func New(root *state.Root) *Controller { return &Controller{Root: root, Euid: os.Geteuid()} }

// Find resolves a container by name, full ID or unique ID prefix (IDs as recorded by the hook)
// and returns its name.
func (c *Controller) Find(query string) (string, error) {
	if query == "" {
		return "", errors.New("empty container name")
	}
	if state.ValidateName(query) == nil {
		if _, err := os.Lstat(c.bundlePath(query)); err == nil {
			return query, nil
		}
	}
	names, err := c.Root.List()
	if err != nil {
		return "", err
	}
	var prefix []string
	for _, n := range names {
		d, err := c.load(n)
		if err != nil || d.NetNS == nil || d.NetNS.ContainerID == "" {
			continue
		}
		switch id := d.NetNS.ContainerID; {
		case id == query:
			return n, nil
		case strings.HasPrefix(id, query):
			prefix = append(prefix, n)
		}
	}
	switch len(prefix) {
	case 1:
		return prefix[0], nil
	case 0:
		return "", fmt.Errorf("no shielded container %q (no bundle in %s)", query, c.Root.Dir())
	}
	return "", fmt.Errorf("container ID prefix %q is ambiguous: %s", query, strings.Join(prefix, ", "))
}

// Names lists the containers that have bundles (for completion).
func (c *Controller) Names() ([]string, error) { return c.Root.List() }

func (c *Controller) bundlePath(name string) string {
	return c.Root.Dir() + "/containers/" + name
}

func (c *Controller) load(name string) (*state.Data, error) {
	b, err := c.Root.Open(name)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.Load()
}

// open finds and opens a container's bundle.
func (c *Controller) open(query string) (*state.Bundle, error) {
	name, err := c.Find(query)
	if err != nil {
		return nil, err
	}
	b, err := c.Root.Open(name)
	if err != nil {
		return nil, err
	}
	if _, err := b.Root().Stat(state.FileBundle); errors.Is(err, fs.ErrNotExist) {
		b.Close()
		return nil, fmt.Errorf("container %s is not shielded (its bundle has no %s)", name, state.FileBundle)
	}
	rotateResolverLog(b.Dir())
	return b, nil
}

// runnerFor checks that the container recorded in d still runs and returns how to reach its
// network namespace.
func (c *Controller) runnerFor(d *state.Data) (runner, error) {
	notRunning := fmt.Errorf("container %s is not running", d.Container)
	if d.NetNS == nil {
		return nil, notRunning
	}
	if err := d.NetNS.Check(); err != nil {
		return nil, notRunning
	}
	id := *d.NetNS
	var run runner
	if c.Euid == 0 {
		run = direct(id)
	} else {
		exe, nsenter := c.Exe, c.Nsenter
		if exe == "" {
			var err error
			if exe, err = executable(); err != nil {
				return nil, err
			}
		}
		run = viaHelper(exe, id, viaNsenter(nsenter, exe, id))
	}
	return func(ctx context.Context, op Op) (Result, error) {
		op.NetNSInode = id.NetNSInode
		res, err := run(ctx, op)
		if errors.Is(err, errNotRunning) {
			return res, notRunning
		}
		return res, err
	}, nil
}

// Change is the outcome of allow or deny for one target.
type Change struct {
	Container string   `json:"container"`
	Action    string   `json:"action"` // "allow" or "deny"
	Target    string   `json:"target"`
	Kind      string   `json:"kind"`          // ip, cidr, domain, wildcard
	IPs       []string `json:"ips,omitempty"` // addresses or prefixes now allowed or denied
	Changed   bool     `json:"changed"`       // false when the bundle already said so
	Notes     []string `json:"notes,omitempty"`
}

// ParseTargets parses allow/deny targets; any bad one fails them all.
func ParseTargets(targets []string) ([]profiles.Entry, error) {
	if len(targets) == 0 {
		return nil, errors.New("no target given")
	}
	out := make([]profiles.Entry, 0, len(targets))
	for _, t := range targets {
		e, err := profiles.ParseTarget(strings.TrimSpace(t))
		if err != nil {
			return nil, fmt.Errorf("bad target %q: %w", t, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func kindName(e profiles.Entry) string {
	switch e.Kind {
	case profiles.Domain:
		return "domain"
	case profiles.Wildcard:
		return "wildcard"
	}
	if e.Prefix.IsSingleIP() {
		return "ip"
	}
	return "cidr"
}

// Allow allows targets for a running container: at once in its table (and its resolver for
// names) and persistently in its bundle.
func (c *Controller) Allow(ctx context.Context, query string, targets []string) ([]Change, error) {
	return c.change(ctx, query, targets, false)
}

// Deny denies targets for a running container. A denied address or prefix is blocked at once,
// open connections included (the deny sets are checked before established flows), and wins
// over addresses the resolver learns. A denied name is dropped from the resolver, so it is
// never learned again, and the addresses the resolver had learned for it are removed.
func (c *Controller) Deny(ctx context.Context, query string, targets []string) ([]Change, error) {
	return c.change(ctx, query, targets, true)
}

func (c *Controller) change(ctx context.Context, query string, targets []string, deny bool) ([]Change, error) {
	entries, err := ParseTargets(targets)
	if err != nil {
		return nil, err
	}
	b, err := c.open(query)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	action := "allow"
	if deny {
		action = "deny"
	}
	pre, err := c.resolveAllowed(ctx, b, entries, deny)
	if err != nil {
		return nil, err
	}
	var changes []Change
	var restarted bool
	var written *state.Data // what Update wrote: its audit settings, without another read
	err = b.Update(func(d *state.Data) error {
		written = d
		changes = changes[:0]
		run, err := c.runnerFor(d)
		if err != nil {
			return err
		}
		dead := resolverNeeded(d) && !resolverAlive(b.Dir())
		oldNames := hook.ResolverNames(d)
		before, err := hook.PolicyFor(d)
		if err != nil {
			return err
		}
		var forget, lookup []string
		for _, e := range entries {
			ch := Change{Container: d.Container, Action: action, Target: e.String(), Kind: kindName(e)}
			wasAllowed, wasDenied := contains(d.Allow, e), contains(d.Deny, e)
			if deny {
				d.DenyEntry(e)
				ch.Changed = !wasDenied || wasAllowed
			} else {
				d.AllowEntry(e)
				ch.Changed = !wasAllowed || wasDenied
			}
			switch e.Kind {
			case profiles.Prefix:
				ch.IPs = []string{ch.Target}
			case profiles.Domain, profiles.Wildcard:
				if d.Resolver.Tier == state.TierStatic {
					if err := staticChange(d, e, deny, pre, &ch); err != nil {
						return err
					}
					break
				}
				if d.Resolver.Tier != state.TierDnsmasq {
					return fmt.Errorf("%s %s: names need the dnsmasq resolver tier (this container has %q)", action, ch.Target, d.Resolver.Tier)
				}
				if deny && e.Kind == profiles.Domain {
					if w := coveringWildcard(d, e.Name); w != "" {
						return fmt.Errorf("deny %s: the name stays allowed through *.%s (a wildcard cannot be narrowed); deny *.%s or the addresses instead", e.Name, w, w)
					}
					forget = append(forget, e.Name)
				}
				if !deny && e.Kind == profiles.Domain {
					lookup = append(lookup, e.Name)
				}
			}
			changes = append(changes, ch)
		}
		policy, err := hook.PolicyFor(d)
		if err != nil {
			return err
		}
		op := Op{Sync: &policy, SyncFrom: &before}
		restore := func() {}
		if !slices.Equal(oldNames, hook.ResolverNames(d)) && d.Resolver.Tier == state.TierDnsmasq && d.Mode != state.ModeBlock {
			if restore, _, err = c.writeResolverConf(b, d, policy); err != nil {
				return err
			}
			in, _, _ := hook.Resolver(b.Dir(), d, policy, c.Dnsmasq)
			op.Resolver = &ResolverOp{Instance: in, Restart: true, Forget: forget, Lookup: lookup}
		}
		if dead && resolverNeeded(d) {
			var restoreConf func()
			if op, restoreConf, err = c.ensureResolverOp(b, d, op); err != nil {
				restore()
				return err
			}
			prev := restore
			restore = func() { restoreConf(); prev() }
		}
		res, err := run(ctx, op)
		if err != nil {
			restore()
			return err
		}
		if d.Resolver.Tier == state.TierStatic {
			if err := writeHosts(b, d); err != nil {
				return err
			}
		}
		restarted = dead && op.Resolver != nil
		for i := range changes {
			ch := &changes[i]
			if addrs, ok := res.Learned[ch.Target]; ok {
				ch.IPs = addrStrings(addrs)
			}
			if deny && ch.Kind == "domain" && len(res.Purged) > 0 {
				ch.IPs = addrStrings(res.Purged)
			}
			for _, w := range res.Warnings {
				if strings.HasPrefix(w, ch.Target+":") {
					ch.Notes = append(ch.Notes, w)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	al := b.AuditLogFor(written)
	var errs []error
	if restarted {
		errs = append(errs, auditRestart(b, changes[0].Container, action))
	}
	for _, ch := range changes {
		ev := audit.Event{Container: ch.Container, Action: audit.ActionAllow, Target: ch.Target, IPs: ch.IPs, Source: "cli"}
		if deny {
			ev.Action = audit.ActionDeny
		}
		errs = append(errs, al.Append(ev))
	}
	if err := errors.Join(errs...); err != nil {
		return changes, fmt.Errorf("changed, but the audit log failed: %w", err)
	}
	return changes, nil
}

// writeResolverConf renders and writes the resolver configuration for d and returns a function
// that puts the previous file back (when the change fails).
func (c *Controller) writeResolverConf(b *state.Bundle, d *state.Data, policy nft.Policy) (restore func(), changed bool, err error) {
	_, conf, err := hook.Resolver(b.Dir(), d, policy, c.Dnsmasq)
	if err != nil {
		return nil, false, err
	}
	old, rerr := b.ReadFile(state.FileDnsmasqConf)
	if err := b.WriteFile(state.FileDnsmasqConf, conf, 0o600); err != nil {
		return nil, false, fmt.Errorf("write resolver config: %w", err)
	}
	return func() {
		if rerr == nil {
			_ = b.WriteFile(state.FileDnsmasqConf, old, 0o600)
		}
	}, rerr != nil || !bytes.Equal(old, conf), nil
}

func contains(es state.Entries, e profiles.Entry) bool {
	switch e.Kind {
	case profiles.Domain:
		return slices.Contains(es.Domains, e.Name)
	case profiles.Wildcard:
		return slices.Contains(es.Wildcards, e.Name)
	}
	return slices.Contains(es.Prefixes, e.Prefix)
}

// coveringWildcard returns the allowed wildcard base that still matches name, or "".
func coveringWildcard(d *state.Data, name string) string {
	for _, w := range d.EffectiveAllow().Wildcards {
		if profiles.CoveredByWildcard(name, map[string]struct{}{w: {}}) {
			return w
		}
	}
	return ""
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
