// SPDX-License-Identifier: Apache-2.0

//go:build unix

package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/terok-ai/terok-shield/audit"
)

func TestBundleAuditLogFollowsRecordedSettings(t *testing.T) {
	r, err := OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := r.Create("web")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	logPath := filepath.Join(b.Dir(), FileAudit)
	ev := audit.Event{Container: "web", Action: audit.ActionSetup}

	// Defaults (no bundle.json yet): audited.
	if err := b.AuditLog().Append(ev); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(logPath); err != nil {
		t.Fatalf("default settings: %v, want an audit log", err)
	}

	// audit.enabled: false → nothing is written.
	if err := b.Update(func(d *Data) error { d.Audit = AuditSettings{Disabled: true}; return nil }); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(logPath)
	if err := b.AuditLog().Append(ev); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(logPath)
	if string(before) != string(after) {
		t.Errorf("audit disabled, but the log grew from %d to %d bytes", len(before), len(after))
	}

	// audit.max_bytes: the log rotates beyond it.
	if err := b.Update(func(d *Data) error { d.Audit = AuditSettings{MaxBytes: 4096}; return nil }); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := b.AuditLog().Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(logPath + ".1"); err != nil {
		t.Errorf("max_bytes 4096: no rotated log after 100 events: %v", err)
	}
}
