// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"fmt"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/nft"
	"github.com/terok-ai/terok-shield/state"
)

// ModeChange is the outcome of up, down or block.
type ModeChange struct {
	Container string `json:"container"`
	From      string `json:"from"`
	Mode      string `json:"mode"`
}

// SetMode switches a running container to mode: the bundle's mode and the full table rebuilt
// from the bundle (as the hook builds it) replace the old ones in one transaction each, the
// table is verified, and the change is audited. The resolver is started when a mode that
// resolves follows block.
func (c *Controller) SetMode(ctx context.Context, query string, mode state.Mode) (*ModeChange, error) {
	if !mode.Valid() {
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	b, err := c.open(query)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	var mc ModeChange
	var restarted bool
	err = b.Update(func(d *state.Data) error {
		run, err := c.runnerFor(d)
		if err != nil {
			return err
		}
		dead := resolverNeeded(d) && !resolverAlive(b.Dir())
		mc = ModeChange{Container: d.Container, From: string(d.Mode), Mode: string(mode)}
		d.Mode = mode
		policy, err := hook.PolicyFor(d)
		if err != nil {
			return err
		}
		op := Op{Apply: &policy}
		restore := func() {}
		if d.Resolver.Tier == state.TierDnsmasq && mode != state.ModeBlock {
			var changed bool
			if restore, changed, err = c.writeResolverConf(b, d, policy); err != nil {
				return err
			}
			in, _, _ := hook.Resolver(b.Dir(), d, policy, c.Dnsmasq)
			// The new table keeps the learned addresses of the old one (nft.Apply carries them
			// over), so a running resolver's cache still matches the learned sets and it keeps
			// running. Coming from block, whose table has no learned sets, it is restarted:
			// dnsmasq adds to the sets only when it forwards, never on a cache hit. A changed
			// configuration is applied by a restart too.
			restart := changed || mc.From == string(state.ModeBlock)
			op.Resolver = &ResolverOp{Instance: in, Restart: restart}
		}
		if _, err := run(ctx, op); err != nil {
			restore()
			return err
		}
		restarted = dead && op.Resolver != nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	if restarted {
		if err := auditRestart(b, mc.Container, string(mode)); err != nil {
			return &mc, err
		}
	}
	act := map[state.Mode]audit.Action{state.ModeUp: audit.ActionUp, state.ModeDown: audit.ActionDown,
		state.ModeDownAll: audit.ActionDown, state.ModeBlock: audit.ActionBlock}[mode]
	ev := audit.Event{Container: mc.Container, Action: act, Mode: mc.Mode, Source: "cli", Detail: "from " + mc.From}
	if err := b.AuditLog().Append(ev); err != nil {
		return &mc, fmt.Errorf("mode changed, but the audit log failed: %w", err)
	}
	return &mc, nil
}

// Container states reported by Status, besides the modes.
const (
	StateInactive = "inactive" // container not running, or no table in its namespace
	StateError    = "error"    // the live table does not match what the bundle says
)

// ContainerStatus is one container's firewall state.
type ContainerStatus struct {
	Container string   `json:"container"`
	ID        string   `json:"id,omitempty"`
	State     string   `json:"state"` // up, down, down_all, block, inactive or error
	Mode      string   `json:"mode"`  // the mode the bundle asks for
	Detail    string   `json:"detail,omitempty"`
	Profiles  []string `json:"profiles,omitempty"`
	Resolver  string   `json:"resolver,omitempty"`
	// ResolverState is ResolverRunning, ResolverRestarted or ResolverDead for a running
	// container whose mode resolves (empty otherwise); ResolverError says why it is dead.
	ResolverState string       `json:"resolver_state,omitempty"`
	ResolverError string       `json:"resolver_error,omitempty"`
	Rootless      bool         `json:"rootless"`
	Listing       string       `json:"ruleset,omitempty"` // Rules only
	Sets          []SetContent `json:"sets,omitempty"`    // Rules only
}

// SetContent is one live set for JSON output.
type SetContent struct {
	Name     string   `json:"name"`
	Elements []string `json:"elements"`
}

// Status reports a container's state from its live table, verified against the table its
// bundle implies. It also supervises the resolver: a container whose mode resolves but whose
// dnsmasq is not running gets it started again (audited as resolver_restart).
func (c *Controller) Status(ctx context.Context, query string) (*ContainerStatus, error) {
	return c.inspect(ctx, query, false)
}

// Rules is Status plus the live table as read from the kernel.
func (c *Controller) Rules(ctx context.Context, query string) (*ContainerStatus, error) {
	return c.inspect(ctx, query, true)
}

func (c *Controller) inspect(ctx context.Context, query string, list bool) (*ContainerStatus, error) {
	b, err := c.open(query)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	d, err := b.Load()
	if err != nil {
		return nil, err
	}
	st := &ContainerStatus{Container: d.Container, Mode: string(d.Mode), Profiles: d.Profiles, Resolver: d.Resolver.Tier, Rootless: c.Euid != 0}
	if d.NetNS != nil {
		st.ID = d.NetNS.ContainerID
	}
	run, err := c.runnerFor(d)
	if err != nil {
		st.State, st.Detail = StateInactive, "container is not running"
		return st, nil
	}
	policy, err := hook.PolicyFor(d)
	if err != nil {
		return nil, err
	}
	res, err := run(ctx, Op{Inspect: &policy, List: list})
	if err != nil {
		st.State, st.Detail = StateError, err.Error()
		return st, nil
	}
	st.Listing = res.Listing
	for _, s := range res.Sets {
		sc := SetContent{Name: s.Name, Elements: []string{}}
		for _, e := range s.Elements {
			sc.Elements = append(sc.Elements, elementString(e))
		}
		st.Sets = append(st.Sets, sc)
	}
	switch {
	case res.Mode == nft.ModeInactive.String():
		st.State, st.Detail = StateInactive, "no terok_shield table in the container's network namespace"
	case res.Drift != "":
		st.State, st.Detail = StateError, res.Drift
	default:
		st.State = res.Mode
	}
	if st.State != StateInactive {
		st.ResolverState, st.ResolverError = c.superviseResolver(ctx, b, d)
	}
	return st, nil
}

func elementString(e nft.Element) string {
	s := e.Prefix.String()
	if e.Prefix.IsSingleIP() {
		s = e.Prefix.Addr().String()
	}
	if e.Expires > 0 {
		s += " expires " + e.Expires.Truncate(1e9).String()
	}
	return s
}
