// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/audit"
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
	n := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sp := NewShielded(t, harness, n, Rootful)
	if err := sp.EnsureImage(ctx); err != nil {
		t.Fatal(err)
	}
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
	before := padAuditToPage(t, sp.Bundle(name))
	filler := filepath.Join(sp.StateDir, "filler")
	fillFS(t, filler)

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

// padAuditToPage appends one event to the bundle's audit log, padded so the log ends on a page
// boundary (tmpfs allocates in pages: any further append then needs a free page, and a full
// filesystem refuses it whole rather than tearing it), and returns the log's bytes.
func padAuditToPage(t *testing.T, bundle string) []byte {
	t.Helper()
	const page = 4096
	path := filepath.Join(bundle, state.FileAudit)
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	ev := audit.Event{V: audit.SchemaVersion, TS: time.Now(), Container: filepath.Base(bundle), Action: audit.ActionAllow,
		Target: "192.0.2.1", Source: "cli"}
	for n := 1; ; n++ {
		ev.Detail = strings.Repeat("x", n)
		line, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if (size+int64(len(line))+1)%page == 0 {
			break
		}
	}
	l, err := audit.Open(bundle, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(ev); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)%page != 0 {
		t.Fatalf("padded audit log is %d bytes, want a multiple of %d", len(data), page)
	}
	return data
}

// fillFS writes path until its filesystem has no free block left.
func fillFS(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for len(buf) > 0 {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			buf = buf[:len(buf)/2]
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("fill %s: %d blocks still free", path, st.Bavail)
	}
}
