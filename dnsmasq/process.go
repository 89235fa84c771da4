// SPDX-License-Identifier: Apache-2.0

package dnsmasq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Instance identifies one resolver process: the dnsmasq executable it was
// started from, its configuration and the pid file named in that
// configuration. A process is "ours" only if its command line is exactly
// [Binary, "--conf-file=" + ConfFile].
type Instance struct {
	Binary   string // absolute path of the dnsmasq executable
	ConfFile string // absolute path of the rendered configuration
	PIDFile  string // absolute path of the file Launch records the pid in (dnsmasq writes none)
	// ErrFile receives dnsmasq's standard output and error, where it reports why it could not
	// start (absolute path; empty: discarded).
	ErrFile string
}

// ReadyAddr is where a started resolver is checked for readiness: the first of the default
// listen addresses, which every configuration includes.
var ReadyAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 53)

// ReadyTimeout bounds Start's wait for a launched resolver to listen.
const ReadyTimeout = 10 * time.Second

func (in Instance) argv() []string { return []string{in.Binary, "--conf-file=" + in.ConfFile} }

func (in Instance) check() error {
	for _, p := range []string{in.Binary, in.ConfFile, in.PIDFile} {
		if err := checkPath(p); err != nil {
			return fmt.Errorf("dnsmasq instance: %w", err)
		}
	}
	if in.ErrFile != "" {
		if err := checkPath(in.ErrFile); err != nil {
			return fmt.Errorf("dnsmasq instance: %w", err)
		}
	}
	return nil
}

// Timeouts for Stop: SIGTERM, then SIGKILL.
const (
	termWait = 2 * time.Second
	killWait = time.Second
)

// Find returns the absolute path of a dnsmasq executable (PATH first, then
// /usr/sbin and /sbin) whose `--version` lists the nftset and conntrack
// compile options.
func Find() (string, error) { return find(checkFeatures) }

// FindCached is Find with the outcome of the feature check remembered in
// cacheFile, keyed by the executable's path, device, inode, size and change
// time: `dnsmasq --version` costs ~3 ms, which every shielded run would pay
// otherwise. An unreadable or unwritable cache costs only the check.
func FindCached(cacheFile string) (string, error) {
	return find(func(bin string) error {
		key, err := fileKey(bin)
		if err != nil {
			return err
		}
		if b, err := os.ReadFile(cacheFile); err == nil && string(b) == key+"\n" {
			return nil
		}
		if err := checkFeatures(bin); err != nil {
			return err
		}
		tmp := cacheFile + ".tmp-" + strconv.Itoa(os.Getpid())
		if os.WriteFile(tmp, []byte(key+"\n"), 0o600) == nil {
			_ = os.Rename(tmp, cacheFile) // a cache: losing it costs one more check
		}
		_ = os.Remove(tmp)
		return nil
	})
}

// fileKey identifies the content of the executable at path without reading
// it: a replaced or rewritten file gets a new inode or change time.
func fileKey(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	return fmt.Sprintf("%s\t%d:%d\t%d\t%d.%09d", path, st.Dev, st.Ino, st.Size, st.Ctim.Sec, st.Ctim.Nsec), nil
}

func find(check func(bin string) error) (string, error) {
	var candidates []string
	if p, err := exec.LookPath("dnsmasq"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/sbin/dnsmasq", "/sbin/dnsmasq")
	var errs []error
	for _, p := range candidates {
		abs, err := filepath.Abs(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := check(abs); err != nil {
			errs = append(errs, err)
			continue
		}
		return abs, nil
	}
	return "", fmt.Errorf("no usable dnsmasq: %w", errors.Join(errs...))
}

// checkFeatures runs `bin --version` and requires the nftset and conntrack
// compile options.
func checkFeatures(bin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.Env = []string{}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", bin, err)
	}
	var opts []string
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, "Compile time options:"); ok {
			opts = strings.Fields(rest)
		}
	}
	for _, want := range []string{"nftset", "conntrack"} {
		if !slices.Contains(opts, want) {
			return fmt.Errorf("%s: compiled without %s (options: %s)", bin, want, strings.Join(opts, " "))
		}
	}
	return nil
}

// Running returns the pid of the instance if its pid file names a live
// process that is this instance, and 0 otherwise.
func Running(in Instance) (int, error) {
	if err := in.check(); err != nil {
		return 0, err
	}
	pid, err := readPID(in.PIDFile)
	if err != nil || pid == 0 {
		return 0, err
	}
	ok, err := isInstance(pid, in)
	if err != nil || !ok {
		return 0, err
	}
	return pid, nil
}

// Start runs dnsmasq for in inside the network namespace at netnsPath (the
// mount and pid namespaces stay the caller's) and returns its pid once it
// listens ([Launch], then [WaitReady] for up to [ReadyTimeout]). An error
// carries dnsmasq's own message. If the instance already runs, Start returns
// its pid and changes nothing; use [Restart] to apply a new configuration.
func Start(ctx context.Context, netnsPath string, in Instance) (int, error) {
	p, err := Launch(netnsPath, in)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	if err := WaitReady(ctx, netnsPath, in, p.Pid); err != nil {
		_ = Stop(in)
		return 0, err
	}
	return p.Pid, nil
}

// Process is a resolver as Launch left it.
type Process struct {
	Pid   int
	ended chan struct{} // closed when the process this caller started has ended
	state *os.ProcessState
}

// Ended returns an error (with dnsmasq's own message from in.ErrFile) if the process this
// caller launched has already ended; it does not wait. A resolver that was found running is
// not this caller's child and is not tracked.
func (p *Process) Ended(in Instance) error {
	if p.ended == nil {
		return nil
	}
	select {
	case <-p.ended:
		return fmt.Errorf("dnsmasq %d ended at start-up (%v)%s", p.Pid, p.state, errorOutput(in))
	default:
		return nil
	}
}

// Launch starts dnsmasq for in inside the network namespace at netnsPath and
// returns its pid without waiting for it to listen: the configuration keeps
// dnsmasq in the foreground, so the process started is the resolver itself.
// It runs in a session of its own, with its output in in.ErrFile, and its pid
// is written to in.PIDFile at once (the configuration gives dnsmasq no pid
// file of its own), so a Stop right after Launch finds it. If the instance
// already runs, Launch returns its pid and changes nothing.
func Launch(netnsPath string, in Instance) (*Process, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if pid, err := Running(in); err != nil || pid != 0 {
		if err != nil {
			return nil, err
		}
		return &Process{Pid: pid}, nil
	}
	if err := os.Remove(in.PIDFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove stale pid file: %w", err)
	}
	out, err := openOutput(in.ErrFile)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	nsfd, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer unix.Close(nsfd)
	type result struct {
		proc *os.Process
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", netnsPath, err)}
			return
		}
		argv := in.argv()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			ch <- result{err: fmt.Errorf("start dnsmasq in %s: %w", netnsPath, err)}
			return
		}
		ch <- result{proc: cmd.Process}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	p := &Process{Pid: r.proc.Pid, ended: make(chan struct{})}
	// Reap the resolver when it ends, should this process outlive it (a long-running caller);
	// a short-lived one leaves it to be reparented.
	go func() {
		p.state, _ = r.proc.Wait()
		close(p.ended)
	}()
	if err := os.WriteFile(in.PIDFile, []byte(strconv.Itoa(p.Pid)+"\n"), 0o644); err != nil {
		_ = r.proc.Kill()
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	return p, nil
}

// openOutput opens the file dnsmasq's output goes to (truncated), or
// /dev/null for an empty path.
func openOutput(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open resolver output: %w", err)
	}
	return f, nil
}

// WaitReady waits until the resolver started as pid listens on [ReadyAddr]
// inside the network namespace at netnsPath: a listening TCP socket on that
// address that is one of pid's own file descriptors (another process's
// listener does not count). It fails at once if the process ends first, with
// dnsmasq's own message from in.ErrFile, and when ctx ends.
func WaitReady(ctx context.Context, netnsPath string, in Instance, pid int) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("dnsmasq %d: %w%s", pid, err, errorOutput(in))
	}
	defer unix.Close(pidfd)
	delay := 100 * time.Microsecond
	for {
		if listens(pid) {
			return nil
		}
		if exited(pidfd) {
			return fmt.Errorf("dnsmasq %d exited before it listened on %s%s", pid, ReadyAddr, errorOutput(in))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dnsmasq %d does not listen on %s in %s: %w%s", pid, ReadyAddr, netnsPath, ctx.Err(), errorOutput(in))
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// listens reports whether process pid holds a TCP socket listening on ReadyAddr. It reads the
// TCP table of pid's own network namespace (/proc/PID/net/tcp) and pid's descriptors.
func listens(pid int) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	tcp, err := os.ReadFile(proc + "/net/tcp")
	if err != nil {
		return false
	}
	a4 := ReadyAddr.Addr().As4()
	// /proc/net/tcp prints the address as the hex of its in-memory (network order) bytes read
	// as a host-order (little-endian here) integer: 127.0.0.1:53 is "0100007F:0035".
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", a4[3], a4[2], a4[1], a4[0], ReadyAddr.Port())
	var inodes []string
	for line := range strings.Lines(string(tcp)) {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "0A" { // 0A: LISTEN
			inodes = append(inodes, "socket:["+f[9]+"]")
		}
	}
	if len(inodes) == 0 {
		return false
	}
	fds, err := os.ReadDir(proc + "/fd")
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if link, err := os.Readlink(proc + "/fd/" + fd.Name()); err == nil && slices.Contains(inodes, link) {
			return true
		}
	}
	return false
}

// exited reports, without waiting, whether the process behind pidfd has ended.
func exited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// errorOutput returns dnsmasq's recorded output as an error suffix.
func errorOutput(in Instance) string {
	if in.ErrFile == "" {
		return ""
	}
	f, err := os.Open(in.ErrFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	if msg := bytes.TrimSpace(b); len(msg) > 0 {
		return ": " + string(msg)
	}
	return ""
}

// Stop terminates the instance: SIGTERM, and SIGKILL if it has not exited
// after two seconds. It signals only a process whose command line is exactly
// the instance's (checked through a pidfd, so the pid cannot be reused in
// between). A pid file naming no process, or another process, is removed
// and nothing is signalled. Stop returns after the process has exited.
func Stop(in Instance) error {
	if err := in.check(); err != nil {
		return err
	}
	pid, err := readPID(in.PIDFile)
	if err != nil || pid == 0 {
		return err
	}
	if err := stopPID(pid, in); err != nil {
		return err
	}
	if err := os.Remove(in.PIDFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

func stopPID(pid int, in Instance) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	ok, err := isInstance(pid, in)
	if err != nil || !ok {
		return err // not ours: leave it alone
	}
	for _, step := range []struct {
		sig  unix.Signal
		wait time.Duration
	}{{unix.SIGTERM, termWait}, {unix.SIGKILL, killWait}} {
		if err := unix.PidfdSendSignal(pidfd, step.sig, nil, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return nil
			}
			return fmt.Errorf("signal dnsmasq %d: %w", pid, err)
		}
		exited, err := waitExit(pidfd, step.wait)
		if err != nil || exited {
			return err
		}
	}
	return fmt.Errorf("dnsmasq %d did not exit after SIGKILL", pid)
}

// waitExit reports whether the process behind pidfd exits within d.
func waitExit(pidfd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 {
			return true, nil
		}
	}
}

// Restart replaces the running instance with one reading the current
// configuration. dnsmasq does not re-read nftset= (nor connmark-allowlist=)
// on SIGHUP, and a second instance cannot bind the same addresses while the
// first runs, so Restart checks the new configuration with `dnsmasq --test`
// first (a bad file never costs the running resolver), then stops the old
// instance and starts a new one. Queries in between are answered with ICMP
// port unreachable, which clients see as an immediate failure.
func Restart(ctx context.Context, netnsPath string, in Instance) (int, error) {
	if err := in.check(); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, in.Binary, "--test", "--conf-file="+in.ConfFile)
	cmd.Env = []string{}
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("dnsmasq --test %s: %w: %s", in.ConfFile, err, bytes.TrimSpace(out))
	}
	if err := Stop(in); err != nil {
		return 0, fmt.Errorf("restart: %w", err)
	}
	return Start(ctx, netnsPath, in)
}

// MaxLogBytes is the size above which RotateLog rotates a resolver's query log.
const MaxLogBytes = 8 << 20

// RotateLog keeps the query log at path (the configuration's log-facility) bounded: when it
// is larger than limit bytes its content is copied to path+".1", replacing an older copy, and
// the file is truncated in place. dnsmasq keeps writing to its descriptor (opened with
// O_APPEND before it dropped its privileges: it could not reopen a file in the bundle
// directory afterwards), so no signal is needed; lines written between the copy and the
// truncation are lost. It reports whether it rotated.
func RotateLog(path string, limit int64) (bool, error) {
	if err := checkPath(path); err != nil {
		return false, fmt.Errorf("rotate resolver log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rotate resolver log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() <= limit {
		return false, err
	}
	tmp := path + ".1.tmp"
	old, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("rotate resolver log: %w", err)
	}
	_, cerr := io.Copy(old, f)
	if err := errors.Join(cerr, old.Close()); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("rotate resolver log: %w", err)
	}
	if err := os.Rename(tmp, path+".1"); err != nil {
		return false, fmt.Errorf("rotate resolver log: %w", err)
	}
	if err := f.Truncate(0); err != nil {
		return false, fmt.Errorf("rotate resolver log: %w", err)
	}
	return true, nil
}

// readPID returns the pid in file, or 0 if the file does not exist.
func readPID(file string) (int, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %.20q", file, b)
	}
	return pid, nil
}

// isInstance reports whether process pid runs exactly in's command line.
func isInstance(pid int, in Instance) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read cmdline of %d: %w", pid, err)
	}
	args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	return slices.Equal(args, in.argv()), nil
}
