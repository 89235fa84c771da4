// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/state"
)

// auditPaths returns the audit logs of one container (by name, ID or prefix) or of all,
// including the archived logs of containers removed on exit (run --rm).
func (c *Controller) auditPaths(query string) ([]string, error) {
	if query == "" {
		names, err := c.Root.List()
		if err != nil {
			return nil, err
		}
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join(c.bundlePath(n), state.FileAudit))
		}
		archived, err := c.Root.ArchivedAudits("")
		if err != nil {
			return nil, err
		}
		return append(out, archived...), nil
	}
	n, findErr := c.Find(query)
	if findErr != nil {
		// A removed container is known only by its archived logs.
		if state.ValidateName(query) != nil {
			return nil, findErr
		}
		archived, err := c.Root.ArchivedAudits(query)
		if err != nil || len(archived) == 0 {
			return nil, findErr
		}
		return archived, nil
	}
	archived, err := c.Root.ArchivedAudits(n)
	if err != nil {
		return nil, err
	}
	return append([]string{filepath.Join(c.bundlePath(n), state.FileAudit)}, archived...), nil
}

// Logs returns the last n audit events (all if n <= 0) of one container or of all, merged by
// time.
func (c *Controller) Logs(query string, n int) ([]audit.Event, error) {
	paths, err := c.auditPaths(query)
	if err != nil {
		return nil, err
	}
	ev, _, err := audit.Merge(paths, n)
	return ev, err
}

// followInterval is how often Follow looks for new events.
const followInterval = 250 * time.Millisecond

// Follow calls emit for every event appended after the call, until ctx ends. With query ""
// it also picks up containers created meanwhile. Events of one poll are merged by time.
func (c *Controller) Follow(ctx context.Context, query string, emit func(audit.Event) error) error {
	offsets := map[string]int64{}
	scan := func(first bool) error {
		paths, err := c.auditPaths(query)
		if err != nil {
			return err
		}
		var batch []audit.Event
		for _, p := range paths {
			fi, err := os.Stat(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			off := offsets[p]
			if first {
				offsets[p] = fi.Size()
				continue
			}
			if fi.Size() < off { // rotated: the new file starts from scratch
				off = 0
			}
			if fi.Size() == off {
				continue
			}
			ev, n, err := readFrom(p, off)
			if err != nil {
				return err
			}
			offsets[p] = off + n
			batch = append(batch, ev...)
		}
		slices.SortStableFunc(batch, func(a, b audit.Event) int { return a.TS.Compare(b.TS) })
		for _, e := range batch {
			if err := emit(e); err != nil {
				return err
			}
		}
		return nil
	}
	if err := scan(true); err != nil {
		return err
	}
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := scan(false); err != nil {
				return err
			}
		}
	}
}

// readFrom parses the complete lines of path after offset and returns them with the number of
// bytes consumed (a partly written last line is left for the next poll).
func readFrom(path string, off int64) ([]audit.Event, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("follow %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, off, 64<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("follow %s: %w", path, err)
	}
	end := int64(len(b))
	for end > 0 && b[end-1] != '\n' {
		end--
	}
	ev, _, err := audit.Read(bytes.NewReader(b[:end]))
	return ev, end, err
}
