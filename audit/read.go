// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
)

// Read parses a log stream; malformed lines (bad JSON, missing required
// keys, over-long lines) are skipped and counted.
func Read(r io.Reader) (events []Event, malformed int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, rerr := br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			// Too long for one event: skip to the end of the line.
			malformed++
			line = nil
			for errors.Is(rerr, bufio.ErrBufferFull) {
				_, rerr = br.ReadSlice('\n')
			}
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return events, malformed, rerr
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			var e Event
			if json.Unmarshal(line, &e) != nil {
				malformed++
			} else {
				events = append(events, e)
			}
		}
		if rerr != nil {
			return events, malformed, nil
		}
	}
}

// readFile reads one log file; a missing file is empty.
func readFile(path string) ([]Event, int, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	ev, bad, err := Read(f)
	if err != nil {
		return nil, 0, fmt.Errorf("read audit log %s: %w", path, err)
	}
	return ev, bad, nil
}

// Tail returns the last n events (all if n <= 0) of the log at path,
// reading its rotations (path.1, path.2, ...) as far as needed, oldest
// first, and the number of malformed lines skipped.
func Tail(path string, n int) ([]Event, int, error) {
	events, malformed, err := readFile(path)
	if err != nil {
		return nil, 0, err
	}
	for i := 1; n <= 0 || len(events) < n; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			break
		}
		older, bad, err := readFile(p)
		if err != nil {
			return nil, 0, err
		}
		events = append(older, events...)
		malformed += bad
	}
	if n > 0 && len(events) > n {
		events = events[len(events)-n:]
	}
	return events, malformed, nil
}

// Merge returns the last n events (all if n <= 0) across several logs,
// ordered by time (ties keep the order of paths and of lines), and the
// number of malformed lines skipped.
func Merge(paths []string, n int) ([]Event, int, error) {
	var all []Event
	malformed := 0
	for _, p := range paths {
		ev, bad, err := Tail(p, n)
		if err != nil {
			return nil, 0, err
		}
		all = append(all, ev...)
		malformed += bad
	}
	slices.SortStableFunc(all, func(a, b Event) int { return a.TS.Compare(b.TS) })
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all, malformed, nil
}
