// SPDX-License-Identifier: Apache-2.0

package dnsmasq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
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
	PIDFile  string // absolute path; must equal the configuration's pid-file
}

func (in Instance) argv() []string { return []string{in.Binary, "--conf-file=" + in.ConfFile} }

func (in Instance) check() error {
	for _, p := range []string{in.Binary, in.ConfFile, in.PIDFile} {
		if err := checkPath(p); err != nil {
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
// mount and pid namespaces stay the caller's) and returns the pid of the
// daemon. dnsmasq daemonises and reports start-up errors before its first
// process exits, so when Start returns without error the resolver is
// listening. An error carries dnsmasq's own message. If the instance already
// runs, Start returns its pid and changes nothing; use [Restart] to apply a
// new configuration.
func Start(ctx context.Context, netnsPath string, in Instance) (int, error) {
	if err := in.check(); err != nil {
		return 0, err
	}
	if pid, err := Running(in); err != nil || pid != 0 {
		return pid, err
	}
	if err := os.Remove(in.PIDFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("remove stale pid file: %w", err)
	}
	if err := runInNetns(ctx, netnsPath, in.argv()); err != nil {
		return 0, err
	}
	pid, err := readPID(in.PIDFile)
	if err != nil {
		return 0, err
	}
	if pid == 0 {
		return 0, fmt.Errorf("dnsmasq started but wrote no pid file %s", in.PIDFile)
	}
	if ok, err := isInstance(pid, in); err != nil || !ok {
		return 0, fmt.Errorf("dnsmasq pid file %s names pid %d, which is not the instance just started (%v)", in.PIDFile, pid, err)
	}
	return pid, nil
}

// runInNetns runs argv to completion on a locked OS thread that has joined
// the network namespace at netnsPath, so the child is forked into it. The
// thread is never unlocked: the runtime discards it when the goroutine ends.
func runInNetns(ctx context.Context, netnsPath string, argv []string) error {
	nsfd, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer unix.Close(nsfd)
	// dnsmasq's output goes to a memory file, not a pipe: the daemon inherits
	// its stdio, and a pipe would keep exec.Cmd.Wait waiting for EOF.
	mfd, err := unix.MemfdCreate("dnsmasq-output", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	out := os.NewFile(uintptr(mfd), "dnsmasq-output")
	defer out.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", netnsPath, err)
			return
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = []string{}
		cmd.Stdout, cmd.Stderr = out, out
		errc <- cmd.Run()
	}()
	if err := <-errc; err != nil {
		msg, _ := io.ReadAll(io.NewSectionReader(out, 0, 4096))
		return fmt.Errorf("dnsmasq failed to start in %s: %w: %s", netnsPath, err, bytes.TrimSpace(msg))
	}
	return nil
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
