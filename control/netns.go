// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/nft"
	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/state"
)

// OpCommand is the hidden subcommand that runs an [Op] inside a container's user and network
// namespaces (rootless containers, see [ServeOp]).
const OpCommand = "__netns-op"

// maxOpBytes bounds an Op or Result on the wire.
const maxOpBytes = 64 << 20

// Op is what one command does inside a container's network namespace. The steps run in the
// order of the fields: Apply (replace the table, then verify), Sync (set contents), Resolver,
// Inspect, List. Every value is validated again where the Op runs.
type Op struct {
	// NetNSInode is the recorded inode of the container's network namespace; the Op refuses
	// to run anywhere else.
	NetNSInode uint64      `json:"netns_inode"`
	Apply      *nft.Policy `json:"apply,omitempty"`
	Sync       *nft.Policy `json:"sync,omitempty"`
	// SyncFrom is the policy the live sets hold before Sync (the bundle's previous state):
	// Sync then sends only the difference and reads no set back (nft.Conn.SyncSetsFrom).
	SyncFrom *nft.Policy `json:"sync_from,omitempty"`
	Resolver *ResolverOp `json:"resolver,omitempty"`
	// Inspect reads the live table and verifies it against this policy.
	Inspect *nft.Policy `json:"inspect,omitempty"`
	List    bool        `json:"list,omitempty"`
	// Probe builds, applies and verifies an enforce table in the Op's own namespace and
	// ignores NetNSInode (doctor, in a fresh namespace).
	Probe bool `json:"probe,omitempty"`

	// The rulesets of Apply, Sync, SyncFrom and Inspect, built by validate.
	apply, sync, syncFrom, inspect *nft.Ruleset
}

// ResolverOp changes the per-container resolver. Its configuration file has been written.
type ResolverOp struct {
	Instance dnsmasq.Instance `json:"instance"`
	// Forget names are queried before the restart; their addresses are removed from the
	// learned sets afterwards (a denied name).
	Forget []string `json:"forget,omitempty"`
	// Restart replaces a running resolver; otherwise it is only started when not running.
	Restart bool `json:"restart,omitempty"`
	// Lookup names are queried after the restart, which also teaches the learned sets.
	Lookup []string `json:"lookup,omitempty"`
}

// Result is what an Op reports.
type Result struct {
	Err         string                  `json:"error,omitempty"`
	Mode        string                  `json:"mode,omitempty"`  // live mode (Inspect), "inactive" without table
	Drift       string                  `json:"drift,omitempty"` // Verify failure (Inspect)
	Sets        []nft.SetStatus         `json:"sets,omitempty"`
	Listing     string                  `json:"listing,omitempty"`
	ResolverPID int                     `json:"resolver_pid,omitempty"`
	Learned     map[string][]netip.Addr `json:"learned,omitempty"` // Lookup name → addresses
	Purged      []netip.Addr            `json:"purged,omitempty"`  // learned addresses removed (Forget)
	Warnings    []string                `json:"warnings,omitempty"`
}

// lookupTimeout bounds each resolver query an Op makes.
const lookupTimeout = 2 * time.Second

// validate checks an Op's values before anything runs.
func (op *Op) validate() error {
	for _, step := range []struct {
		p  *nft.Policy
		rs **nft.Ruleset
	}{{op.Apply, &op.apply}, {op.Sync, &op.sync}, {op.SyncFrom, &op.syncFrom}, {op.Inspect, &op.inspect}} {
		if step.p == nil {
			continue
		}
		rs, err := nft.Build(*step.p)
		if err != nil {
			return err
		}
		*step.rs = rs
	}
	if r := op.Resolver; r != nil {
		for _, n := range slices.Concat(r.Forget, r.Lookup) {
			if v, err := profiles.ValidateDomain(n); err != nil || v != n {
				return fmt.Errorf("resolver name %q is not a valid domain", n)
			}
		}
	}
	return nil
}

// RunOp executes op with the nft target t; netnsPath names the same namespace for processes
// started in it (the resolver). The caller has checked that t is the container's namespace.
func RunOp(ctx context.Context, t nft.Target, netnsPath string, op Op) Result {
	if err := op.validate(); err != nil {
		return Result{Err: err.Error()}
	}
	c, err := nft.Open(ctx, t)
	if err != nil {
		return Result{Err: err.Error()}
	}
	defer c.Close()
	return runOp(ctx, c, t, netnsPath, op)
}

// runOp executes an op that validate accepted (and built): its ruleset steps through c, its resolver steps in t and
// netnsPath (the same namespace).
func runOp(ctx context.Context, c *nft.Conn, t nft.Target, netnsPath string, op Op) Result {
	var res Result
	fail := func(err error) Result { res.Err = err.Error(); return res }
	if op.Probe {
		rs, _ := nft.Build(nft.Policy{Mode: nft.ModeUp, Upstreams: []netip.Addr{netip.MustParseAddr("192.0.2.53")}})
		if err := c.Apply(ctx, rs); err != nil {
			return fail(err)
		}
		if err := c.Verify(ctx, rs); err != nil {
			return fail(err)
		}
	}
	if rs := op.apply; rs != nil {
		if err := c.Apply(ctx, rs); err != nil {
			return fail(err)
		}
		if err := c.Verify(ctx, rs); err != nil {
			return fail(fmt.Errorf("ruleset applied but does not verify: %w", err))
		}
	}
	if op.sync != nil {
		if err := c.SyncSetsFrom(ctx, op.syncFrom, op.sync); err != nil {
			return fail(err)
		}
	}
	if r := op.Resolver; r != nil {
		if err := runResolver(ctx, t, netnsPath, r, &res); err != nil {
			return fail(err)
		}
	}
	if op.Inspect != nil {
		st, err := c.Inspect(ctx)
		if err != nil {
			return fail(err)
		}
		res.Mode, res.Sets = st.Mode.String(), st.Sets
		if st.Mode != nft.ModeInactive {
			if err := c.Verify(ctx, op.inspect); err != nil {
				res.Drift = err.Error()
			}
		}
	}
	if op.List {
		l, err := c.List(ctx)
		if err != nil && !errors.Is(err, nft.ErrNoTable) {
			return fail(err)
		}
		res.Listing = l
	}
	return res
}

func runResolver(ctx context.Context, t nft.Target, netnsPath string, r *ResolverOp, res *Result) error {
	var forget []netip.Addr
	for _, n := range r.Forget {
		// The old resolver still answers for the name; what it returns is what it taught
		// the learned sets.
		addrs, _ := lookup(ctx, t, n)
		forget = append(forget, addrs...)
	}
	var pid int
	var err error
	if r.Restart {
		pid, err = dnsmasq.Restart(ctx, netnsPath, r.Instance)
	} else {
		pid, err = dnsmasq.Start(ctx, netnsPath, r.Instance)
	}
	if err != nil {
		return fmt.Errorf("resolver: %w", err)
	}
	res.ResolverPID = pid
	if len(forget) > 0 {
		ps := make([]netip.Prefix, len(forget))
		for i, a := range forget {
			ps[i] = netip.PrefixFrom(a, a.BitLen())
		}
		if err := nft.DeleteElements(ctx, t, nft.KindLearned, ps); err != nil {
			return err
		}
		res.Purged = forget
	}
	for _, n := range r.Lookup {
		addrs, err := lookup(ctx, t, n)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: no addresses yet (%v)", n, err))
			continue
		}
		if res.Learned == nil {
			res.Learned = map[string][]netip.Addr{}
		}
		res.Learned[n] = addrs
	}
	return nil
}

// lookup asks the container's resolver (127.0.0.1:53 in the container's network namespace, t)
// for name's addresses; the answer is what the resolver adds to the learned sets.
func lookup(ctx context.Context, t nft.Target, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialIn(ctx, t.NetNSPath, network, "127.0.0.1:53")
	}}
	addrs, err := r.LookupNetIP(ctx, "ip", name+".")
	if err != nil {
		return nil, err
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), nil
}

// dialIn dials addr from inside the network namespace at netnsPath ("" = the current one).
// The socket is created on a thread that entered the namespace and is never returned to the
// scheduler (its goroutine exits while locked, so the runtime discards the thread); a socket
// keeps the namespace it was created in, so the connection may be used from any goroutine.
func dialIn(ctx context.Context, netnsPath, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if netnsPath == "" {
		return d.DialContext(ctx, network, addr)
	}
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with this goroutine
		fd, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, fmt.Errorf("open network namespace: %w", err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// ServeOp is the child side of the rootless path: nsenter has put this process into the
// container's user and network namespaces. It reads an Op from in, checks that the current
// network namespace is the recorded one, runs it and writes the Result to out. The returned
// error is only about the exchange itself.
func ServeOp(ctx context.Context, in io.Reader, out io.Writer) error {
	var op Op
	dec := json.NewDecoder(io.LimitReader(in, maxOpBytes))
	dec.DisallowUnknownFields()
	var res Result
	if err := dec.Decode(&op); err != nil {
		res.Err = fmt.Sprintf("decode operation: %v", err)
	} else if ino, err := netnsInode("/proc/self/ns/net"); err != nil {
		res.Err = err.Error()
	} else if !op.Probe && ino != op.NetNSInode {
		res.Err = fmt.Sprintf("network namespace %d is not the container's (%d)", ino, op.NetNSInode)
	} else {
		res = RunOp(ctx, nft.Target{}, "/proc/self/ns/net", op)
	}
	return json.NewEncoder(out).Encode(res)
}

func netnsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

// runner runs an Op in one container's network namespace.
type runner func(ctx context.Context, op Op) (Result, error)

// direct returns a runner that enters the namespace from this process (root, or a process
// with CAP_SYS_ADMIN over the namespace's owner). The namespace is opened once and its inode
// checked against the identity, so a pid reused after the check cannot redirect the Op.
func direct(id state.NetNSIdentity) runner {
	return func(ctx context.Context, op Op) (Result, error) {
		fd, err := unix.Open("/proc/"+strconv.Itoa(id.PID)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return Result{}, fmt.Errorf("open container network namespace: %w", err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return Result{}, fmt.Errorf("open container network namespace: %w", err)
		}
		if st.Ino != id.NetNSInode {
			return Result{}, errNotRunning
		}
		path := "/proc/self/fd/" + strconv.Itoa(fd)
		res := RunOp(ctx, nft.Target{NetNSPath: path}, path, op)
		if res.Err != "" {
			return res, errors.New(res.Err)
		}
		return res, nil
	}
}

// errNotRunning is turned into "container X is not running" by the caller.
var errNotRunning = errors.New("not running")

// SocketHelper is the argument with which the terok-shield binary, linked with its assembly
// entry point (-ldflags=-E=main.nsfdEntry), joins the user and network namespaces open on its
// descriptors 3 and 4 before the Go runtime starts, creates two netlink netfilter sockets
// there, writes their numbers (two int32) to its stdout and waits for EOF on its stdin. The
// caller takes the sockets with pidfd_getfd and works on the container's table itself: one
// Go process instead of two (a Go process cannot join a user namespace once its runtime
// runs, so the nsenter path starts a second one inside).
const SocketHelper = "__nsfd"

// SocketHelperMissing is the exit code of SocketHelper in a binary without that entry point.
const SocketHelperMissing = 99

// errHelper marks a failure of the socket helper mechanism: the caller falls back to nsenter.
var errHelper = errors.New("socket helper")

// helperSockets runs exe as the socket helper in the namespaces of the container process
// id.PID and returns the two sockets it created there, and release, which lets the helper
// exit. The network namespace is opened once and its inode checked against the identity, so
// a reused pid cannot redirect the sockets. Call release only after closing every copy of
// the sockets: the helper then drops the last references, and the kernel's wait that closing
// a netfilter socket right after a commit costs (an RCU grace period) falls to it.
func helperSockets(ctx context.Context, exe string, id state.NetNSIdentity) (socks [2]int, release func(), err error) {
	proc := "/proc/" + strconv.Itoa(id.PID)
	netns, err := os.Open(proc + "/ns/net")
	if err != nil {
		return socks, nil, fmt.Errorf("open container network namespace: %w", err)
	}
	defer netns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(netns.Fd()), &st); err != nil {
		return socks, nil, fmt.Errorf("open container network namespace: %w", err)
	}
	if st.Ino != id.NetNSInode {
		return socks, nil, errNotRunning
	}
	userns, err := os.Open(proc + "/ns/user")
	if err != nil {
		return socks, nil, fmt.Errorf("%w: open container user namespace: %w", errHelper, err)
	}
	defer userns.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		return socks, nil, fmt.Errorf("%w: %w", errHelper, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return socks, nil, fmt.Errorf("%w: %w", errHelper, err)
	}
	defer outR.Close()
	pidfd := -1
	cmd := exec.Command(exe, SocketHelper)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, nil
	cmd.ExtraFiles = []*os.File{userns, netns}
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &pidfd, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		return socks, nil, fmt.Errorf("%w: %w", errHelper, err)
	}
	defer unix.Close(pidfd)
	release = func() {
		inW.Close() // the helper exits at EOF
		go func() { _ = cmd.Wait() }()
	}
	fail := func(err error) ([2]int, func(), error) {
		inW.Close()
		werr := cmd.Wait()
		return [2]int{}, nil, fmt.Errorf("%w: %w (%v)", errHelper, err, werr)
	}
	var b [8]byte
	if _, err := io.ReadFull(outR, b[:]); err != nil {
		return fail(fmt.Errorf("no sockets: %w", err))
	}
	for i := range socks {
		n := int(int32(binary.NativeEndian.Uint32(b[4*i:])))
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			closeSockets(socks[:i])
			return fail(fmt.Errorf("pidfd_getfd: %w", err))
		}
		socks[i] = fd
	}
	return socks, release, nil
}

func closeSockets(fds []int) {
	for _, fd := range fds {
		if fd > 0 {
			_ = unix.Close(fd)
		}
	}
}

// viaHelper returns a runner that works on a rootless container's table from this process,
// through sockets the socket helper created in the container's namespaces. Operations that
// start processes in the namespace (the resolver) or probe a fresh one, and any failure of
// the helper mechanism itself (an old kernel without pidfd_getfd, a binary built without the
// entry point), go to fallback.
func viaHelper(exe string, id state.NetNSIdentity, fallback runner) runner {
	return func(ctx context.Context, op Op) (Result, error) {
		if op.Resolver != nil || op.Probe {
			return fallback(ctx, op)
		}
		if err := op.validate(); err != nil {
			return Result{Err: err.Error()}, err
		}
		socks, release, err := helperSockets(ctx, exe, id)
		if errors.Is(err, errHelper) {
			return fallback(ctx, op)
		}
		if err != nil {
			return Result{}, err
		}
		defer release() // after c.Close: see helperSockets
		c, err := nft.OpenAdopted(socks[0], socks[1])
		if err != nil {
			return fallback(ctx, op)
		}
		res := runOp(ctx, c, nft.Target{}, "", op)
		_ = c.Close()
		if res.Err != "" {
			return res, errors.New(res.Err)
		}
		return res, nil
	}
}

// viaNsenter returns a runner that re-executes exe under nsenter in the container's user and
// network namespaces: a Go process cannot join a user namespace itself (it is multithreaded).
// An empty nsenter is looked up on PATH when first needed.
func viaNsenter(nsenter, exe string, id state.NetNSIdentity) runner {
	return func(ctx context.Context, op Op) (Result, error) {
		if nsenter == "" {
			var err error
			if nsenter, err = exec.LookPath("nsenter"); err != nil {
				return Result{}, fmt.Errorf("rootless containers are reached through nsenter (util-linux): %w", err)
			}
		}
		return runChild(ctx, exec.CommandContext(ctx, nsenter, "--target", strconv.Itoa(id.PID), "--user", "--net",
			"--preserve-credentials", "--", exe, OpCommand), op)
	}
}

// runChild runs cmd (which serves OpCommand) with op on stdin and decodes its Result.
func runChild(ctx context.Context, cmd *exec.Cmd, op Op) (Result, error) {
	in, err := json.Marshal(op)
	if err != nil {
		return Result{}, fmt.Errorf("encode operation: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runErr := cmd.Run()
	var res Result
	if err := json.NewDecoder(io.LimitReader(&stdout, maxOpBytes)).Decode(&res); err != nil {
		msg := bytes.TrimSpace(stderr.Bytes())
		if runErr != nil {
			return Result{}, fmt.Errorf("enter container namespaces: %w: %s", runErr, msg)
		}
		return Result{}, fmt.Errorf("enter container namespaces: bad reply: %w: %s", err, msg)
	}
	if res.Err != "" {
		return res, errors.New(res.Err)
	}
	if runErr != nil {
		return res, fmt.Errorf("enter container namespaces: %w", runErr)
	}
	return res, ctx.Err()
}

// executable returns the absolute path of the running binary, for re-execution.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate own binary: %w", err)
	}
	return exe, nil
}
