// SPDX-License-Identifier: Apache-2.0

//go:build unix

package state

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/internal/dirs"
)

// Files a bundle may contain. Nothing else can be opened through a Bundle.
const (
	FileBundle      = "bundle.json"
	FileLock        = "lock"
	FileDnsmasqConf = "dnsmasq.conf"
	FileDnsmasqPID  = "dnsmasq.pid"
	FileDnsmasqLog  = "dnsmasq.log"
	FileDnsmasqErr  = "dnsmasq.err" // the resolver's own output: why it could not start
	FileResolvConf  = "resolv.conf"
	FileAudit       = "audit.jsonl"
	FileHookLog     = "hook.log"
	FileHosts       = "hosts" // /etc/hosts of a static-tier container
)

var fileNames = []string{FileBundle, FileLock, FileDnsmasqConf, FileDnsmasqPID, FileDnsmasqLog, FileDnsmasqErr, FileResolvConf, FileAudit, FileHookLog, FileHosts}

func checkFileName(name string) error {
	if !slices.Contains(fileNames, name) {
		return fmt.Errorf("file %q is not a bundle file", name)
	}
	return nil
}

// ValidateName checks a container name (podman's rule, [a-zA-Z0-9][a-zA-Z0-9_.-]*, here
// at most 253 bytes). A loop, not a regular expression: compiling the bounded repetition
// cost ~0.65 ms, paid by every hook and control command.
func ValidateName(name string) error {
	ok := len(name) >= 1 && len(name) <= 253 && isAlnum(name[0])
	for i := 1; ok && i < len(name); i++ {
		c := name[i]
		ok = isAlnum(c) || c == '_' || c == '.' || c == '-'
	}
	if !ok {
		return fmt.Errorf("invalid container name %q: want 1-253 of letters, digits, '_', '.', '-', starting with a letter or digit", name)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// DefaultRoot returns the state root: $TEROK_SHIELD_STATE_DIR, else
// $XDG_STATE_HOME/terok/shield, else $HOME/.local/state/terok/shield.
func DefaultRoot(getenv func(string) string) (string, error) {
	d, err := dirs.State(getenv)
	if err != nil {
		return "", fmt.Errorf("locate state directory: %w", err)
	}
	return d, nil
}

// Root is an opened state root; its bundles live in <root>/containers.
type Root struct {
	dir        string
	containers *os.Root
}

// OpenRoot creates (0700) and opens the state root at path.
func OpenRoot(path string) (*Root, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open state root %s: %w", path, err)
	}
	cdir := filepath.Join(abs, "containers")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return nil, fmt.Errorf("open state root %s: %w", abs, err)
	}
	r, err := os.OpenRoot(cdir)
	if err != nil {
		return nil, fmt.Errorf("open state root %s: %w", abs, err)
	}
	if err := checkOwnerMode(r, cdir, os.Geteuid()); err != nil {
		r.Close()
		return nil, err
	}
	return &Root{dir: abs, containers: r}, nil
}

// Dir returns the absolute path of the state root.
func (r *Root) Dir() string { return r.dir }

// Close releases the root.
func (r *Root) Close() error { return r.containers.Close() }

// Create makes the bundle directory of container name (0700) if it does
// not exist and opens it.
func (r *Root) Create(name string) (*Bundle, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := r.containers.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create bundle %s: %w", name, err)
	}
	return r.Open(name)
}

// Open opens the existing bundle of container name.
func (r *Root) Open(name string) (*Bundle, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	fi, err := r.containers.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("open bundle %s: %w", name, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open bundle %s: not a directory (%s)", name, fi.Mode().Type())
	}
	br, err := r.containers.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("open bundle %s: %w", name, err)
	}
	dir := filepath.Join(r.containers.Name(), name)
	if err := sameFile(br, fi); err != nil {
		br.Close()
		return nil, fmt.Errorf("open bundle %s: %w", name, err)
	}
	if err := checkOwnerMode(br, dir, os.Geteuid()); err != nil {
		br.Close()
		return nil, err
	}
	return &Bundle{root: br, dir: dir, name: name}, nil
}

// List returns the names of the bundles, sorted.
func (r *Root) List() ([]string, error) {
	f, err := r.containers.Open(".")
	if err != nil {
		return nil, fmt.Errorf("list bundles: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list bundles: %w", err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return ValidateName(n) != nil })
	slices.Sort(names)
	return names, nil
}

// Remove deletes the bundle of container name.
func (r *Root) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := r.containers.RemoveAll(name); err != nil {
		return fmt.Errorf("remove bundle %s: %w", name, err)
	}
	return nil
}

// OpenDir opens a bundle directory by absolute path, as the hook does with
// the path from an annotation. The path must be absolute and clean, no
// component may be a symlink, and the directory must be owned by the
// effective uid or by uid and have no group or other permissions. Pass
// uid -1 to accept only the effective uid.
func OpenDir(path string, uid int) (*Bundle, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return nil, fmt.Errorf("open bundle %q: path must be absolute and clean", path)
	}
	name := filepath.Base(path)
	if err := ValidateName(name); err != nil {
		return nil, fmt.Errorf("open bundle %q: %w", path, err)
	}
	// Refuse symlinks in any component.
	p := "/"
	for _, c := range strings.Split(path[1:], "/") {
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("open bundle %q: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("open bundle %q: %s is a symlink", path, p)
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("open bundle %q: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open bundle %q: not a directory", path)
	}
	br, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("open bundle %q: %w", path, err)
	}
	if err := sameFile(br, fi); err != nil {
		br.Close()
		return nil, fmt.Errorf("open bundle %q: %w", path, err)
	}
	owner := os.Geteuid()
	if uid >= 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid {
			owner = uid
		}
	}
	if err := checkOwnerMode(br, path, owner); err != nil {
		br.Close()
		return nil, err
	}
	return &Bundle{root: br, dir: path, name: name}, nil
}

// sameFile checks that the opened root is the directory that was checked.
func sameFile(r *os.Root, want fs.FileInfo) error {
	got, err := r.Stat(".")
	if err != nil {
		return err
	}
	if !os.SameFile(got, want) {
		return errors.New("directory was replaced while opening it")
	}
	return nil
}

// checkOwnerMode refuses a directory not owned by uid or accessible by
// group or others.
func checkOwnerMode(r *os.Root, path string, uid int) error {
	fi, err := r.Stat(".")
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("check %s: no owner information", path)
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("refusing %s: owned by uid %d, want %d", path, st.Uid, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("refusing %s: mode %#o allows group or others (want 0700)", path, perm)
	}
	return nil
}

// Bundle is one container's opened state directory.
type Bundle struct {
	root *os.Root
	dir  string
	name string
}

// Dir returns the absolute path of the bundle directory.
func (b *Bundle) Dir() string { return b.dir }

// Name returns the container name.
func (b *Bundle) Name() string { return b.name }

// Root returns the os.Root of the bundle directory, for packages such as
// audit that manage their own files in it (audit.jsonl and its rotations).
func (b *Bundle) Root() *os.Root { return b.root }

// Close releases the bundle.
func (b *Bundle) Close() error { return b.root.Close() }

// Remove deletes the bundle directory and closes the bundle.
func (b *Bundle) Remove() error {
	parent, err := os.OpenRoot(filepath.Dir(b.dir))
	if err != nil {
		return fmt.Errorf("remove bundle %s: %w", b.name, err)
	}
	defer parent.Close()
	if err := parent.RemoveAll(b.name); err != nil {
		return fmt.Errorf("remove bundle %s: %w", b.name, err)
	}
	return b.root.Close()
}

// ReadFile reads a bundle file.
func (b *Bundle) ReadFile(name string) ([]byte, error) {
	if err := checkFileName(name); err != nil {
		return nil, err
	}
	return b.root.ReadFile(name)
}

// OpenFile opens a bundle file; O_NOFOLLOW and O_CLOEXEC are always added.
func (b *Bundle) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if err := checkFileName(name); err != nil {
		return nil, err
	}
	return b.root.OpenFile(name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
}

// WriteFile atomically replaces a bundle file (temporary file, fsync,
// rename, directory fsync).
func (b *Bundle) WriteFile(name string, data []byte, perm fs.FileMode) error {
	if err := checkFileName(name); err != nil {
		return err
	}
	if name == FileBundle || name == FileLock {
		return fmt.Errorf("write %s: use Update", name)
	}
	return b.writeAtomic(name, data, perm)
}

// unsynced are the bundle files that are replaced atomically but not synced to disk (two
// fsyncs each, on every container creation or start): the resolver's configuration is rendered
// again at every start, and resolv.conf and hosts hold fixed content written at creation, whose
// loss in a crash fails closed (the container's names do not resolve, or podman cannot mount
// the file) until the container is created again. bundle.json, with the operator's changes, is
// always synced.
var unsynced = []string{FileDnsmasqConf, FileResolvConf, FileHosts}

func (b *Bundle) writeAtomic(name string, data []byte, perm fs.FileMode) error {
	durable := !slices.Contains(unsynced, name)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := "." + name + ".tmp-" + hex.EncodeToString(rnd[:])
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, werr := f.Write(data)
	if werr == nil && durable {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = b.root.Rename(tmp, name)
	}
	if werr != nil {
		b.root.Remove(tmp)
		return fmt.Errorf("write %s in %s: %w", name, b.dir, werr)
	}
	if !durable {
		return nil
	}
	d, err := b.root.Open(".")
	if err != nil {
		return fmt.Errorf("sync %s: %w", b.dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", b.dir, err)
	}
	return nil
}

// Load reads bundle.json.
func (b *Bundle) Load() (*Data, error) {
	raw, err := b.root.ReadFile(FileBundle)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", b.name, err)
	}
	d, err := decode(raw, b.name)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", b.name, err)
	}
	return d, nil
}

// Update changes bundle.json under an exclusive lock. If bundle.json does
// not exist yet, fn gets a fresh Data (format, container, creation time,
// mode up). If fn returns an error nothing is written.
func (b *Bundle) Update(fn func(*Data) error) error {
	unlock, err := b.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var d *Data
	raw, err := b.root.ReadFile(FileBundle)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d = &Data{Format: Format, Container: b.name, Created: time.Now().UTC().Truncate(time.Millisecond), Mode: ModeUp}
	case err != nil:
		return fmt.Errorf("update bundle %s: %w", b.name, err)
	default:
		if d, err = decode(raw, b.name); err != nil {
			return fmt.Errorf("update bundle %s: %w", b.name, err)
		}
	}
	if err := fn(d); err != nil {
		return err
	}
	d.Format = Format
	if err := d.validate(b.name); err != nil {
		return fmt.Errorf("update bundle %s: %w", b.name, err)
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("update bundle %s: %w", b.name, err)
	}
	return b.writeAtomic(FileBundle, append(out, '\n'), 0o600)
}

// lock takes the bundle's exclusive flock.
func (b *Bundle) lock() (func(), error) {
	f, err := b.root.OpenFile(FileLock, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock bundle %s: %w", b.name, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock bundle %s: %w", b.name, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}
