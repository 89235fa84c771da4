// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// gateProfile allows the canary as a raw address: a hit on it proves the workload ran.
var gateProfile = []string{testnet.CanaryV4}

// createCanary creates (not starts) a shielded container whose workload dials the canary.
func createCanary(t *testing.T, ctx context.Context, sp *ShieldedPodman) string {
	t.Helper()
	if err := sp.WriteProfile("gate", gateProfile...); err != nil {
		t.Fatal(err)
	}
	name := sp.Name("gate")
	r, err := sp.Run(ctx, "create", "--shield=gate", "--name", name, sp.H.ImageRef, "/bin/probe", "tcp", testnet.CanaryV4+":80")
	if err := mustExit(r, err, 0); err != nil {
		t.Fatal(err)
	}
	return name
}

// startResult is what a `podman start --attach` produced, reduced to what the tests compare.
type startResult struct {
	Exit         int
	GateRefused  bool // the gate's refusal line is on stderr
	WorkloadRan  bool // the probe printed its result
	CanaryHits   int
	StillRunning bool
}

func attachStart(t *testing.T, ctx context.Context, p *Podman, sp *ShieldedPodman, n *testnet.Net, name string) (startResult, RunResult) {
	t.Helper()
	n.ResetHits()
	r, err := p.Run(ctx, "start", "--attach", name)
	if err != nil {
		t.Fatal(err)
	}
	running, err := sp.Real.Run(ctx, "inspect", "--format", "{{.State.Running}}", name)
	if err := mustExit(running, err, 0); err != nil {
		t.Fatal(err)
	}
	return startResult{
		Exit:         r.Exit,
		GateRefused:  strings.Contains(r.Stderr+r.Stdout, "terok-shield gate: refusing to start the workload"),
		WorkloadRan:  strings.Contains(r.Stdout, `"cmd":"tcp"`),
		CanaryHits:   len(n.CanaryHits()),
		StillRunning: strings.TrimSpace(running.Stdout) == "true",
	}, r
}

// TestShieldedGate: a shielded container started by the real podman without terok-shield's
// hooks dir is stopped by its gate (exit 126) before the workload runs; started through the
// shim, the same container runs its workload (the positive control).
func TestShieldedGate(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		name := createCanary(t, ctx, sp)
		got, r := attachStart(t, ctx, sp.Real, sp, n, name)
		t.Logf("plain podman start: %s", r)
		if d := cmp.Diff(startResult{Exit: 126, GateRefused: true}, got); d != "" {
			t.Errorf("start without the hooks dir (-want +got):\n%s\n%s", d, r)
		}
		got, r = attachStart(t, ctx, &sp.Podman, sp, n, name)
		if d := cmp.Diff(startResult{Exit: 0, WorkloadRan: true, CanaryHits: 1}, got); d != "" {
			t.Errorf("start through the shim (-want +got):\n%s\n%s", d, r)
		}
		// And once more without hooks: the proof of the previous start must not open the gate.
		got, r = attachStart(t, ctx, sp.Real, sp, n, name)
		if d := cmp.Diff(startResult{Exit: 126, GateRefused: true}, got); d != "" {
			t.Errorf("second start without the hooks dir (-want +got):\n%s\n%s", d, r)
		}
	})
}

// TestShieldedHookMissing: the hooks.d descriptors point at a binary that does not exist (a
// moved or uninstalled terok-shield). Podman skips such a hook silently or fails the start;
// either way the workload must not run. The control is the same container after the
// descriptors are restored.
func TestShieldedHookMissing(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		name := createCanary(t, ctx, sp)
		restore := pointHooksAt(t, sp.HooksDir(), filepath.Join(sp.StateDir, "missing", "terok-shield"))
		got, r := attachStart(t, ctx, &sp.Podman, sp, n, name)
		t.Logf("start with a missing hook binary: %s", r)
		if got.Exit == 0 || got.WorkloadRan || got.CanaryHits != 0 || got.StillRunning {
			t.Errorf("workload ran although the hook binary is missing: %+v\n%s", got, r)
		}
		// Which of the two defences fired is reported, not required: the gate (podman 4.3
		// skips a hook whose path does not exist) or podman's own error.
		t.Logf("stopped by: gate=%v exit=%d", got.GateRefused, got.Exit)
		restore()
		got, r = attachStart(t, ctx, &sp.Podman, sp, n, name)
		if d := cmp.Diff(startResult{Exit: 0, WorkloadRan: true, CanaryHits: 1}, got); d != "" {
			t.Errorf("start after restoring the hook (-want +got):\n%s\n%s", d, r)
		}
	})
}

// pointHooksAt rewrites every hooks.d descriptor in dir to run path; the returned func puts the
// originals back.
func pointHooksAt(t *testing.T, dir, path string) (restore func()) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no hooks.d descriptors in %s: %v", dir, err)
	}
	orig := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		orig[f] = data
		var d map[string]any
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		h, ok := d["hook"].(map[string]any)
		if !ok {
			t.Fatalf("%s: no hook object", f)
		}
		h["path"] = path
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		for f, data := range orig {
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestShieldedRefusals: flags under which the firewall cannot hold make the shim exit 125 with a
// one-line reason before podman runs: no container, no state bundle, nothing sent. The control
// is the same command line without the flag.
func TestShieldedRefusals(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("gate", gateProfile...); err != nil {
			t.Fatal(err)
		}
		cases := []refusalCase{
			{name: "none"},
			{name: "privileged", reason: "--privileged", flags: []string{"--privileged"}},
			{name: "cap-add NET_RAW", reason: "--cap-add NET_RAW", flags: []string{"--cap-add", "NET_RAW"}},
			{name: "cap-add cap_net_admin", reason: "--cap-add NET_ADMIN", flags: []string{"--cap-add=cap_net_admin"}},
			{name: "network host", reason: "--network host", flags: []string{"--network", "host"}},
			{name: "dns", reason: "--dns", flags: []string{"--dns", "1.1.1.1"}},
			{name: "state dir volume", reason: "exposes", flags: []string{"-v", sp.StateDir + ":/x"}},
			{name: "state subdir mount", reason: "exposes", flags: []string{"--mount", "type=bind,src=" + filepath.Join(sp.StateDir, "containers") + ",dst=/x"}},
		}
		checkRefusals(t, ctx, n, sp, cases)
	})
}
