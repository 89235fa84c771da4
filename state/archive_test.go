// SPDX-License-Identifier: Apache-2.0

//go:build unix

package state

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestArchiveAndRemove(t *testing.T) {
	r, err := OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, name := range []string{"web", "web.1"} {
		b, err := r.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Update(func(*Data) error { return nil }); err != nil {
			t.Fatal(err)
		}
		f, err := b.OpenFile(FileAudit, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(`{"v":1,"container":"` + name + `"}` + "\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		b.Close()
	}
	now := time.Date(2026, 12, 4, 18, 0, 0, 123e6, time.UTC)
	if err := r.ArchiveAndRemove("web", now); err != nil {
		t.Fatalf("ArchiveAndRemove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir(), "containers", "web")); !os.IsNotExist(err) {
		t.Errorf("bundle web still exists after ArchiveAndRemove (stat: %v)", err)
	}
	got, err := r.ArchivedAudits("web")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(r.Dir(), ArchiveDir, "web.20261204T180000-123Z.audit.jsonl")}
	if !slices.Equal(got, want) {
		t.Fatalf("ArchivedAudits(web) = %q, want %q", got, want)
	}
	data, err := os.ReadFile(want[0])
	if err != nil || string(data) != `{"v":1,"container":"web"}`+"\n" {
		t.Errorf("archived log = %q, %v", data, err)
	}
	if names, _ := r.List(); !slices.Equal(names, []string{"web.1"}) {
		t.Errorf("List() after archiving web = %q, want [web.1]", names)
	}
	if got, _ := r.ArchivedAudits("web.1"); len(got) != 0 {
		t.Errorf("ArchivedAudits(web.1) = %q, want none (web's log must not match)", got)
	}
	if err := r.ArchiveAndRemove("../x", now); err == nil {
		t.Error("ArchiveAndRemove(\"../x\") = nil error, want a name error")
	}
}

func TestPruneArchive(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		n := "c." + archiveStamp(base.Add(time.Duration(i)*time.Minute)) + "." + FileAudit
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneArchive(dir, 2); err != nil {
		t.Fatal(err)
	}
	des, _ := os.ReadDir(dir)
	var left []string
	for _, de := range des {
		left = append(left, de.Name())
	}
	want := []string{"c." + archiveStamp(base.Add(3*time.Minute)) + "." + FileAudit, "c." + archiveStamp(base.Add(4*time.Minute)) + "." + FileAudit}
	if !slices.Equal(left, want) {
		t.Errorf("after pruning to 2: %q, want %q", left, want)
	}
}
