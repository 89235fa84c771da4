// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/state"
)

// Resolver states reported by Status (ContainerStatus.ResolverState).
const (
	ResolverRunning   = "running"   // the container's dnsmasq runs
	ResolverRestarted = "restarted" // it was not running; this command started it again
	ResolverDead      = "dead"      // it was not running and could not be started
)

// resolverNeeded reports whether d's running container should have a resolver: the dnsmasq
// tier in a mode that resolves.
func resolverNeeded(d *state.Data) bool {
	return d.Resolver.Tier == state.TierDnsmasq && d.Mode != state.ModeBlock && d.NetNS != nil
}

// resolverAlive reports whether the resolver of the bundle at dir runs: its pid file names a
// live process that dnsmasq.Running accepts as this bundle's instance (exactly
// [executable, --conf-file=<dir>/dnsmasq.conf]). The executable is taken from the process, so
// the check costs no `dnsmasq --version`.
func resolverAlive(dir string) bool {
	in := dnsmasq.Instance{ConfFile: filepath.Join(dir, state.FileDnsmasqConf), PIDFile: filepath.Join(dir, state.FileDnsmasqPID)}
	raw, err := os.ReadFile(in.PIDFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	if len(args) != 2 {
		return false
	}
	in.Binary = args[0]
	running, err := dnsmasq.Running(in)
	return err == nil && running == pid
}

// rotateResolverLog keeps the resolver's query log of the bundle at dir below
// dnsmasq.MaxLogBytes (one previous copy is kept as dnsmasq.log.1). Every command on a
// container and a running watch check it; a failure only leaves the log as it is.
func rotateResolverLog(dir string) {
	_, _ = dnsmasq.RotateLog(filepath.Join(dir, state.FileDnsmasqLog), dnsmasq.MaxLogBytes)
}

// ensureResolverOp returns op with a resolver step that starts the resolver, adding one (and
// rewriting its configuration from d) when op has none. Call it with the bundle locked.
func (c *Controller) ensureResolverOp(b *state.Bundle, d *state.Data, op Op) (Op, func(), error) {
	if op.Resolver != nil {
		return op, func() {}, nil
	}
	policy, err := hook.PolicyFor(d)
	if err != nil {
		return op, nil, err
	}
	restore, _, err := c.writeResolverConf(b, d, policy)
	if err != nil {
		return op, nil, err
	}
	in, _, err := hook.Resolver(b.Dir(), d, policy, c.Dnsmasq)
	if err != nil {
		restore()
		return op, nil, err
	}
	op.Resolver = &ResolverOp{Instance: in}
	return op, restore, nil
}

// auditRestart records that command found the resolver dead and started it again.
func auditRestart(b *state.Bundle, container, command string) error {
	ev := audit.Event{Container: container, Action: audit.ActionResolverRestart, Source: "cli",
		Reason: "dnsmasq was not running (found by " + command + ")"}
	if err := b.AuditLog().Append(ev); err != nil {
		return fmt.Errorf("resolver restarted, but the audit log failed: %w", err)
	}
	return nil
}

// superviseResolver checks the resolver of a running container for Status and starts it again
// when it should run but does not. It returns the resolver state and, for ResolverDead, why.
func (c *Controller) superviseResolver(ctx context.Context, b *state.Bundle, d *state.Data) (string, string) {
	if !resolverNeeded(d) {
		return "", ""
	}
	if resolverAlive(b.Dir()) {
		return ResolverRunning, ""
	}
	restarted := false
	err := b.Update(func(d *state.Data) error {
		// Another command may have changed the bundle or started the resolver meanwhile.
		if !resolverNeeded(d) || resolverAlive(b.Dir()) {
			return nil
		}
		run, err := c.runnerFor(d)
		if err != nil {
			return err
		}
		op, restore, err := c.ensureResolverOp(b, d, Op{})
		if err != nil {
			return err
		}
		if _, err := run(ctx, op); err != nil {
			restore()
			return err
		}
		restarted = true
		return nil
	})
	if err != nil {
		return ResolverDead, err.Error()
	}
	if !restarted {
		return ResolverRunning, ""
	}
	if err := auditRestart(b, d.Container, "status"); err != nil {
		return ResolverRestarted, err.Error()
	}
	return ResolverRestarted, ""
}
