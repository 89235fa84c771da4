// SPDX-License-Identifier: Apache-2.0

//go:build unix

package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ArchiveDir is the directory under the state root that keeps the audit logs of removed
// containers, so removing a bundle never loses its record.
const ArchiveDir = "removed"

// MaxArchived bounds the number of archived audit logs; the oldest go first.
const MaxArchived = 500

// ArchiveAndRemove moves the audit log of container name (and its rotations) to
// <root>/removed/<name>.<stamp>.audit.jsonl[.N] and then removes the bundle. It is used for
// containers that podman removes when they stop (run --rm), whose bundles would otherwise
// accumulate.
func (r *Root) ArchiveAndRemove(name string, now time.Time) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	arch := filepath.Join(r.dir, ArchiveDir)
	if err := os.MkdirAll(arch, 0o700); err != nil {
		return fmt.Errorf("archive audit of %s: %w", name, err)
	}
	stamp := archiveStamp(now)
	for i := 0; ; i++ {
		src := FileAudit
		if i > 0 {
			src = fmt.Sprintf("%s.%d", FileAudit, i)
		}
		from := filepath.Join(r.dir, "containers", name, src)
		if fi, err := os.Lstat(from); err != nil || !fi.Mode().IsRegular() {
			if i > 0 || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if err != nil {
				return fmt.Errorf("archive audit of %s: %w", name, err)
			}
			break // not a regular file: never follow or move it
		}
		to := filepath.Join(arch, name+"."+stamp+"."+src)
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("archive audit of %s: %w", name, err)
		}
	}
	if err := r.Remove(name); err != nil {
		return err
	}
	return pruneArchive(arch, MaxArchived)
}

// ArchivedAudits returns the archived audit logs (current files, not rotations) whose
// container name is name, or all of them for name "".
func (r *Root) ArchivedAudits(name string) ([]string, error) {
	des, err := os.ReadDir(filepath.Join(r.dir, ArchiveDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list archived audit logs: %w", err)
	}
	var out []string
	for _, de := range des {
		n := de.Name()
		if !de.Type().IsRegular() || !strings.HasSuffix(n, "."+FileAudit) {
			continue
		}
		if name != "" {
			// <name>.<stamp>.audit.jsonl, where the stamp has no dots: "web" must not pick up
			// the logs of "web.1".
			rest, ok := strings.CutPrefix(n, name+".")
			if !ok || strings.Count(rest, ".") != strings.Count("x."+FileAudit, ".") {
				continue
			}
		}
		out = append(out, filepath.Join(r.dir, ArchiveDir, n))
	}
	return out, nil
}

// archiveStamp is a sortable UTC time stamp without dots (archived names are split on dots).
func archiveStamp(t time.Time) string {
	return strings.ReplaceAll(t.UTC().Format("20060102T150405.000Z"), ".", "-")
}

// pruneArchive keeps the newest max archived logs (by the stamp in their names).
func pruneArchive(dir string, max int) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune audit archive: %w", err)
	}
	type entry struct{ stamp, name string }
	var logs []entry
	for _, de := range des {
		n := de.Name()
		i := strings.Index(n, "."+FileAudit)
		if i < 0 {
			continue
		}
		parts := strings.Split(n[:i], ".")
		logs = append(logs, entry{parts[len(parts)-1], n})
	}
	if len(logs) <= max {
		return nil
	}
	slices.SortFunc(logs, func(a, b entry) int { return strings.Compare(a.stamp, b.stamp) })
	var errs []error
	for _, e := range logs[:len(logs)-max] {
		if err := os.Remove(filepath.Join(dir, e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
