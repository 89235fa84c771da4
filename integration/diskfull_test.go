// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/internal/fulldisk"
	"github.com/terok-ai/terok-shield/state"
)

// TestFaultDiskFull: the state dir's filesystem (an 8 MiB tmpfs) is full when a created
// shielded container starts (rootful, static resolver tier, so recording the setup in the
// audit log is the hook's first write). The start through the shim must fail in the
// createRuntime hook with a one-line reason naming the audit log and ENOSPC, before the
// workload runs (no canary hit, container not running), and the audit lines recorded before
// are intact, byte for byte. The control is the same container started again once space is
// freed: it runs, and its log continues after the earlier lines.
func TestFaultDiskFull(t *testing.T) {
	ctx, n, sp := inMode(t, Rootful, 2*time.Minute)
	// Registered after NewShielded's cleanup, so it runs first: Close then removes the emptied
	// mount point.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", sp.StateDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", sp.StateDir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", sp.StateDir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", sp.StateDir, err, out)
		}
	})
	if err := os.WriteFile(filepath.Join(sp.ConfigDir, "config.yml"), []byte("resolver:\n  tier: static\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := createCanary(t, ctx, sp)
	auditPath := filepath.Join(sp.Bundle(name), state.FileAudit)
	before := fulldisk.PadAuditToPage(t, sp.Bundle(name))
	filler := filepath.Join(sp.StateDir, "filler")
	fulldisk.Fill(t, filler)

	got, r := attachStart(t, ctx, &sp.Podman, sp, n, name)
	reason := hookReason(r)
	t.Logf("disk full: exit %d, hook: %s", got.Exit, reason)
	if got.Exit == 0 || got.WorkloadRan || got.CanaryHits != 0 || got.StillRunning {
		t.Errorf("disk full: the workload ran or the start succeeded: %+v\n%s", got, r)
	}
	if !strings.Contains(reason, "record the setup in the audit log: ") || !strings.HasSuffix(strings.TrimSpace(reason), "no space left on device") {
		t.Errorf("disk full: want the hook's one-line reason naming the audit log and ENOSPC, got %q\n%s", reason, r)
	}
	after, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(before), string(after)); d != "" {
		t.Errorf("disk full: audit log changed (-before +after):\n%s", d)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	got, r = attachStart(t, ctx, &sp.Podman, sp, n, name)
	if d := cmp.Diff(startResult{Exit: 0, WorkloadRan: true, CanaryHits: 1}, got); d != "" {
		t.Errorf("control start with space again (-want +got):\n%s\n%s", d, r)
	}
	after, err = os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(after, before) {
		t.Errorf("control: the earlier audit lines are not a prefix of the log:\n%s", after)
	}
	var setups int
	sc := bufio.NewScanner(bytes.NewReader(after))
	for sc.Scan() {
		var ev struct{ Action audit.Action }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Errorf("audit line %q: %v", sc.Text(), err)
		}
		if ev.Action == audit.ActionSetup {
			setups++
		}
	}
	if setups != 1 {
		t.Errorf("control: %d setup events in the audit log, want 1 (the control start's):\n%s", setups, after)
	}
}
