// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/gate"
	"github.com/terok-ai/terok-shield/nft"
	"github.com/terok-ai/terok-shield/state"
)

// Stages the hook serves.
const (
	StageCreateRuntime = "createRuntime"
	StagePoststop      = "poststop"
)

// Timeout bounds one hook run; the hooks.d descriptor's timeout should be a little larger.
const Timeout = 20 * time.Second

// GateDir is the bundle subdirectory the shim mounts read-only at gate.ProofDir.
const GateDir = "gate"

// Env is what a hook run needs from its process.
type Env struct {
	Stdin io.Reader
	Log   *slog.Logger
	// Dnsmasq is the resolver binary; empty means look it up with dnsmasq.Find.
	Dnsmasq string
}

// Run executes one hook stage. A nil error means the container may proceed; a container
// without the shield annotation is not an error.
func Run(ctx context.Context, stage string, env Env) error {
	log := env.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	st, err := readState(env.Stdin)
	if err != nil {
		return err
	}
	dir, err := shieldBundlePath(st.Annotations)
	if errors.Is(err, ErrNotShielded) {
		return nil
	}
	if err != nil {
		return err
	}
	log = log.With("container", st.ID, "stage", stage)
	switch stage {
	case StageCreateRuntime:
		err := createRuntime(ctx, log, st.ID, st.Pid, st.Bundle, dir, env.Dnsmasq)
		if err != nil {
			auditFailure(dir, err)
		}
		return err
	case StagePoststop:
		return poststop(log, dir, st.ID)
	}
	return fmt.Errorf("unknown hook stage %q (want %s or %s)", stage, StageCreateRuntime, StagePoststop)
}

func createRuntime(ctx context.Context, log *slog.Logger, id string, pid int, ociBundle, dir, dnsmasqBin string) (err error) {
	spec, err := readSpec(ociBundle)
	if err != nil {
		return err
	}
	if err := checkSpec(spec); err != nil {
		return err
	}
	b, err := state.OpenDir(dir, os.Geteuid())
	if err != nil {
		return err
	}
	defer b.Close()
	data, err := b.Load()
	if err != nil {
		return err
	}
	if pid <= 0 {
		return fmt.Errorf("OCI state has no container pid")
	}
	ident, err := state.CurrentIdentity(pid, id)
	if err != nil {
		return err
	}
	own, err := gate.NetNSInode("/proc/self/ns/net")
	if err != nil {
		return err
	}
	if ident.NetNSInode == own {
		return errors.New("container runs in the hook's own (host) network namespace; refusing to firewall it")
	}
	netns := "/proc/" + strconv.Itoa(pid) + "/ns/net"

	policy, err := PolicyFor(data)
	if err != nil {
		return err
	}
	rs, err := nft.Build(policy)
	if err != nil {
		return fmt.Errorf("build ruleset: %w", err)
	}
	// The resolver is launched first and not waited for: dnsmasq's own start (6-8 ms, mostly
	// loading its libraries) overlaps the table's apply and verify, this hook's records and the
	// runtime's work up to the workload's start, where the gate waits until it listens
	// (gate.Proof.Resolver). Nothing can query it earlier, and it adds to the learned sets only
	// when answering a query. A resolver that cannot start makes the gate refuse the workload.
	var resolver *dnsmasq.Process // nil: no resolver
	var in dnsmasq.Instance
	if data.Resolver.Tier == state.TierDnsmasq && data.Mode != state.ModeBlock {
		if in, err = prepareResolver(b, data, policy, dnsmasqBin); err != nil {
			return err
		}
		if resolver, err = dnsmasq.Launch(netns, in); err != nil {
			return fmt.Errorf("start resolver: %w", err)
		}
		defer func() {
			if err != nil {
				_ = dnsmasq.Stop(in) // the container will not run: no resolver left behind
			}
		}()
	}
	if err := nft.ApplyVerified(ctx, nft.Target{NetNSPath: netns}, rs); err != nil {
		return err
	}
	log.Info("ruleset applied and verified", "mode", policy.Mode.String(), "allow", len(policy.Allow), "deny", len(policy.Deny))

	// The setup is recorded before anything lets the container run (its identity in the bundle,
	// the gate proof): a start the audit log cannot record is refused (fail closed).
	ev := audit.Event{
		Container: data.Container, Action: audit.ActionSetup, Mode: string(data.Mode), Profiles: data.Profiles,
		Source: "hook", Detail: fmt.Sprintf("ruleset applied and verified in netns %d (allow %d, deny %d); container %s", ident.NetNSInode, len(policy.Allow), len(policy.Deny), id),
	}
	if err := b.AuditLogFor(data).Append(ev); err != nil {
		return fmt.Errorf("record the setup in the audit log: %w", err)
	}
	if err := b.Update(func(d *state.Data) error { d.NetNS = &ident; return nil }); err != nil {
		return fmt.Errorf("record network namespace identity: %w", err)
	}
	// A resolver that already failed (a bad option, a missing library) is reported here, with
	// its message; one that fails later makes the gate refuse after its wait.
	proof := gate.Proof{NetNSInode: ident.NetNSInode, InitStartTime: ident.StartTime, ContainerID: id}
	if resolver != nil {
		if err := resolver.Ended(in); err != nil {
			return fmt.Errorf("start resolver: %w", err)
		}
		proof.Resolver = dnsmasq.ReadyAddr.String()
	}
	if err := writeProof(b.Root(), proof.Marshal()); err != nil {
		return err
	}
	return nil
}

// auditFailure records a refused start in the bundle's audit log, when the bundle can be
// opened at all. The hook's error itself reaches the user through podman.
func auditFailure(dir string, cause error) {
	b, err := state.OpenDir(dir, os.Geteuid())
	if err != nil {
		return
	}
	defer b.Close()
	_ = b.AuditLog().Append(audit.Event{
		Container: b.Name(), Action: audit.ActionError, Source: "hook", Reason: "start refused: " + cause.Error(),
	})
}

// PolicyFor turns a bundle's state into the ruleset policy, in one place.
func PolicyFor(d *state.Data) (nft.Policy, error) {
	mode, err := nft.ParseMode(string(d.Mode))
	if err != nil {
		return nft.Policy{}, err
	}
	// The static tier runs no resolver, so nothing may reach the upstreams: its upstreams
	// are what the host resolves with.
	upstreams := d.Resolver.Upstreams
	if d.Resolver.Tier == state.TierStatic {
		upstreams = nil
	}
	return nft.Policy{
		Mode:           mode,
		Allow:          d.EffectiveAllow().Prefixes,
		Deny:           d.EffectiveDeny().Prefixes,
		Upstreams:      upstreams,
		HostGateways:   d.Resolver.HostGateways,
		HostPorts:      d.Resolver.HostPorts,
		LearnedTimeout: time.Duration(d.Resolver.LearnedTTL),
	}, nil
}

// ResolverNames returns the names the per-container resolver answers for.
func ResolverNames(d *state.Data) []string {
	eff := d.EffectiveAllowNames()
	names := append([]string(nil), eff.Domains...)
	for _, w := range eff.Wildcards {
		names = append(names, "*."+w)
	}
	return names
}

// Resolver returns the per-container resolver instance of the bundle at dir and its
// configuration for d and policy; bin is the dnsmasq binary (empty: the one the shim checked
// and recorded in the bundle, else dnsmasq.Find, which runs `dnsmasq --version`: ~2 ms).
func Resolver(dir string, d *state.Data, policy nft.Policy, bin string) (dnsmasq.Instance, []byte, error) {
	if bin == "" && recordedBinaryOK(d.Resolver.Binary) {
		bin = d.Resolver.Binary
	}
	if bin == "" {
		var err error
		if bin, err = dnsmasq.Find(); err != nil {
			return dnsmasq.Instance{}, nil, fmt.Errorf("resolver: %w", err)
		}
	}
	timeout := policy.LearnedTimeout
	if timeout == 0 {
		timeout = nft.DefaultLearnedTimeout
	}
	upstreams := policy.Upstreams
	if len(upstreams) == 0 {
		return dnsmasq.Instance{}, nil, errors.New("resolver: no upstream DNS server recorded for this container")
	}
	in := dnsmasq.Instance{
		Binary:   bin,
		ConfFile: filepath.Join(dir, state.FileDnsmasqConf),
		PIDFile:  filepath.Join(dir, state.FileDnsmasqPID),
		ErrFile:  filepath.Join(dir, state.FileDnsmasqErr),
	}
	conf, err := dnsmasq.Render(dnsmasq.Config{
		Names:       ResolverNames(d),
		Upstreams:   upstreams,
		Mark:        nft.DefaultResolverMark,
		Table:       nft.TableName,
		Set4:        "learned_v4",
		Set6:        "learned_v6",
		MaxCacheTTL: cacheTTL(timeout),
		LogFile:     filepath.Join(dir, state.FileDnsmasqLog), // query log: `watch` names destinations
		User:        "nobody",                                 // dnsmasq keeps CAP_NET_ADMIN for nftset after the drop
	})
	if err != nil {
		return dnsmasq.Instance{}, nil, fmt.Errorf("resolver config: %w", err)
	}
	return in, conf, nil
}

// cacheTTL is how long the resolver may cache an answer: half the learned-set timeout, in whole
// seconds (dnsmasq's unit), at least one, so an address in use is learned again before its set
// element would expire.
func cacheTTL(learned time.Duration) time.Duration {
	return max((learned / 2).Truncate(time.Second), time.Second)
}

// recordedBinaryOK reports whether the recorded dnsmasq path is still an absolute path to an
// executable regular file (the shim checked its nftset support when it recorded it).
func recordedBinaryOK(p string) bool {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// prepareResolver writes the resolver's configuration into the bundle and stops a resolver
// left over from an earlier start of this container.
func prepareResolver(b *state.Bundle, d *state.Data, policy nft.Policy, bin string) (dnsmasq.Instance, error) {
	in, conf, err := Resolver(b.Dir(), d, policy, bin)
	if err != nil {
		return in, err
	}
	if err := b.WriteFile(state.FileDnsmasqConf, conf, 0o600); err != nil {
		return in, fmt.Errorf("write resolver config: %w", err)
	}
	_ = dnsmasq.Stop(in)
	// The query log is bounded (control commands and watch rotate it while the container
	// runs, and so does a start). A failure only leaves it as it is.
	_, _ = dnsmasq.RotateLog(filepath.Join(b.Dir(), state.FileDnsmasqLog), dnsmasq.MaxLogBytes)
	return in, nil
}

func poststop(log *slog.Logger, dir, id string) error {
	b, err := state.OpenDir(dir, os.Geteuid())
	if err != nil {
		return err
	}
	defer b.Close()
	data, loadErr := b.Load()
	in := dnsmasq.Instance{
		ConfFile: filepath.Join(b.Dir(), state.FileDnsmasqConf),
		PIDFile:  filepath.Join(b.Dir(), state.FileDnsmasqPID),
	}
	var errs []error
	if loadErr == nil && recordedBinaryOK(data.Resolver.Binary) {
		in.Binary = data.Resolver.Binary
	} else if bin, err := dnsmasq.Find(); err == nil {
		in.Binary = bin
	}
	if in.Binary != "" {
		if err := dnsmasq.Stop(in); err != nil {
			errs = append(errs, fmt.Errorf("stop resolver: %w", err))
		}
	}
	if err := b.Root().Remove(filepath.Join(GateDir, gate.ProofFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove gate proof: %w", err))
	}
	log.Info("teardown")
	ev := audit.Event{Container: b.Name(), Action: audit.ActionTeardown, Source: "hook"}
	// A container podman removes on exit (run --rm) leaves no bundle behind: its audit log
	// moves to the state root's archive. Only the container the bundle was last set up for
	// may do this: a newer container of the same name owns the bundle otherwise.
	remove := loadErr == nil && data.AutoRemove && data.NetNS != nil && data.NetNS.ContainerID == id
	if remove {
		ev.Detail = "container removed on exit: audit log archived, bundle removed"
	}
	if len(errs) > 0 {
		ev.Reason = errors.Join(errs...).Error()
	}
	if loadErr != nil {
		data = nil
	}
	if err := b.AuditLogFor(data).Append(ev); err != nil {
		errs = append(errs, fmt.Errorf("audit: %w", err))
	}
	if remove {
		if err := archiveAndRemove(dir, b.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// archiveAndRemove removes the bundle at dir (<root>/containers/<name>) after archiving its
// audit log in <root>/removed.
func archiveAndRemove(dir, name string) error {
	containers := filepath.Dir(dir)
	if filepath.Base(containers) != "containers" || filepath.Base(dir) != name {
		return fmt.Errorf("remove bundle: %s is not <state root>/containers/%s", dir, name)
	}
	r, err := state.OpenRoot(filepath.Dir(containers))
	if err != nil {
		return fmt.Errorf("remove bundle: %w", err)
	}
	defer r.Close()
	if err := r.ArchiveAndRemove(name, time.Now()); err != nil {
		return fmt.Errorf("remove bundle: %w", err)
	}
	return nil
}

// writeProof writes the gate proof atomically into the bundle's gate directory.
func writeProof(root *os.Root, data []byte) error {
	if err := root.Mkdir(GateDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("write gate proof: %w", err)
	}
	tmp := filepath.Join(GateDir, "."+gate.ProofFile+".tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write gate proof: %w", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write gate proof: %w", err)
	}
	if err := root.Rename(tmp, filepath.Join(GateDir, gate.ProofFile)); err != nil {
		return fmt.Errorf("write gate proof: %w", err)
	}
	return nil
}
