// SPDX-License-Identifier: Apache-2.0

// Package fulldisk helps tests put a state bundle on a full filesystem: it pads a bundle's audit
// log to a page boundary (so that any further append needs a new page and a full tmpfs refuses it
// whole) and fills a filesystem to its last block. It is used by the hook's and the e2e suite's
// disk-full tests.
package fulldisk

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/state"
)

// Page is the allocation unit of tmpfs on the machines the tests run on.
const Page = 4096

// PadAuditToPage appends one event to the bundle's audit log, padded so the log ends on a page
// boundary, and returns the log's bytes.
func PadAuditToPage(tb testing.TB, bundle string) []byte {
	tb.Helper()
	path := filepath.Join(bundle, state.FileAudit)
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	} else if !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	ev := audit.Event{V: audit.SchemaVersion, TS: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Container: filepath.Base(bundle),
		Action: audit.ActionAllow, Target: "192.0.2.1", Source: "cli"}
	for n := 1; ; n++ {
		ev.Detail = strings.Repeat("x", n)
		line, err := json.Marshal(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if (size+int64(len(line))+1)%Page == 0 {
			break
		}
	}
	l, err := audit.Open(bundle, audit.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(ev); err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if len(data)%Page != 0 {
		tb.Fatalf("padded audit log is %d bytes, want a multiple of %d", len(data), Page)
	}
	return data
}

// Fill writes the new file path until its filesystem has no free block left.
func Fill(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for len(buf) > 0 {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				tb.Fatalf("fill %s: %v", path, err)
			}
			buf = buf[:len(buf)/2]
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		tb.Fatal(err)
	}
	if st.Bavail != 0 {
		tb.Fatalf("fill %s: %d blocks still free", path, st.Bavail)
	}
}
