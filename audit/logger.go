// SPDX-License-Identifier: Apache-2.0

//go:build unix

package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// FileName is the log's name in a bundle directory.
const FileName = "audit.jsonl"

// Defaults of Options.
const (
	DefaultMaxBytes = 10 << 20
	DefaultKeep     = 3
	// MaxEventBytes bounds one encoded event, so one write stays one record.
	MaxEventBytes = 64 << 10
)

// Options tune a Logger. Zero values mean the defaults.
type Options struct {
	MaxBytes int64            // rotate when the file is larger; < 0 disables rotation
	Keep     int              // rotated files kept (audit.jsonl.1 .. .Keep)
	Now      func() time.Time // clock for events without TS
}

// Logger appends events to FileName in one directory.
type Logger struct {
	root     *os.Root
	ownsRoot bool
	opts     Options
}

// New returns a Logger writing into the directory of root (for example a
// state bundle's root). The caller keeps ownership of root.
func New(root *os.Root, opts Options) *Logger {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Logger{root: root, opts: opts}
}

// Open returns a Logger writing into dir.
func Open(dir string, opts Options) (*Logger, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open audit log in %s: %w", dir, err)
	}
	l := New(r, opts)
	l.ownsRoot = true
	return l, nil
}

// Close releases the directory if Open opened it.
func (l *Logger) Close() error {
	if l.ownsRoot {
		return l.root.Close()
	}
	return nil
}

// Append writes one event. V and TS are filled in when zero. The event is
// written with a single write; an error means it was not recorded.
func (l *Logger) Append(e Event) error {
	if e.V == 0 {
		e.V = SchemaVersion
	}
	if e.TS.IsZero() {
		e.TS = l.opts.Now()
	}
	if e.Container == "" || e.Action == "" {
		return fmt.Errorf("append audit event: container and action are required (got %q, %q)", e.Container, e.Action)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("append audit event %s: %w", e.Action, err)
	}
	if len(line)+1 > MaxEventBytes {
		return fmt.Errorf("append audit event %s: %d bytes, limit %d", e.Action, len(line)+1, MaxEventBytes)
	}
	line = append(line, '\n')

	lock, err := l.lock(unix.LOCK_SH)
	if err != nil {
		return err
	}
	size, werr := l.write(line)
	lock.Close()
	if werr != nil {
		return fmt.Errorf("append audit event %s to %s: %w", e.Action, l.path(), werr)
	}
	if l.opts.MaxBytes > 0 && size > l.opts.MaxBytes {
		if err := l.rotate(); err != nil {
			return fmt.Errorf("append audit event %s: %w", e.Action, err)
		}
	}
	return nil
}

func (l *Logger) path() string { return l.root.Name() + "/" + FileName }

// write appends line and returns the file size afterwards. A log whose last line was cut off
// (a write that a full disk took only in part) gets a newline first, so the cut line stays one
// malformed line and this event is not glued to it.
func (l *Logger) write(line []byte) (int64, error) {
	f, err := l.root.OpenFile(FileName, os.O_APPEND|os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, err
	}
	if fi, serr := f.Stat(); serr == nil && fi.Size() > 0 {
		var last [1]byte
		if _, rerr := f.ReadAt(last[:], fi.Size()-1); rerr == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	n, err := f.Write(line)
	if err == nil && n != len(line) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(line))
	}
	var size int64
	if err == nil {
		var fi fs.FileInfo
		if fi, err = f.Stat(); err == nil {
			size = fi.Size()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return size, err
}

// rotate shifts the files under the exclusive lock, if the log is still
// too large once the lock is held.
func (l *Logger) rotate() error {
	lock, err := l.lock(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lock.Close()
	fi, err := l.root.Lstat(FileName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rotate %s: %w", l.path(), err)
	}
	if fi.Size() <= l.opts.MaxBytes {
		return nil // another writer rotated it
	}
	for i := l.opts.Keep - 1; i >= 1; i-- {
		err := l.root.Rename(rotated(i), rotated(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate %s: %w", l.path(), err)
		}
	}
	if err := l.root.Rename(FileName, rotated(1)); err != nil {
		return fmt.Errorf("rotate %s: %w", l.path(), err)
	}
	return nil
}

func rotated(i int) string { return FileName + "." + strconv.Itoa(i) }

// lock takes a flock on FileName.lock.
func (l *Logger) lock(how int) (*os.File, error) {
	f, err := l.root.OpenFile(FileName+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", l.path(), err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", l.path(), err)
	}
	return f, nil
}
