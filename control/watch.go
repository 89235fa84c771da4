// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/nft"
	"github.com/terok-ai/terok-shield/state"
)

// WatchCommand is the hidden subcommand that reads a rootless container's packet log inside its
// user and network namespaces and streams the events on stdout (see [ServeWatch]).
const WatchCommand = "__netns-watch"

// WatchEvent is one packet a log rule of the container's table saw.
type WatchEvent struct {
	TS        time.Time `json:"ts"`
	Container string    `json:"container,omitempty"`
	// Action is the log rule's verdict: allowed, denied, blocked, private or bypass.
	Action string `json:"action"`
	// Dir is "out" (output chain) or "in" (input chain: denied sources).
	Dir      string     `json:"dir,omitempty"`
	Proto    string     `json:"proto"` // tcp, udp, icmp, icmpv6, sctp, udplite or the number
	Src      netip.Addr `json:"src"`
	Dst      netip.Addr `json:"dst"`
	SPort    uint16     `json:"sport,omitempty"`
	DPort    uint16     `json:"dport,omitempty"`
	ICMPType *uint8     `json:"icmp_type,omitempty"`
	// Domain is the name the container's resolver answered with the remote address (dst
	// going out, src coming in), when its query log still holds it.
	Domain string `json:"domain,omitempty"`
}

// remote is the far end of the packet.
func (e WatchEvent) remote() netip.Addr {
	if e.Dir == "in" {
		return e.Src
	}
	return e.Dst
}

// WatchOptions configures [Controller.Watch].
type WatchOptions struct {
	// Count stops the watch after this many events; 0 watches until ctx ends.
	Count int
	// Emit receives every event; an error stops the watch and is returned.
	Emit func(WatchEvent) error
	// Ready, when set, is called once the packet log is being read.
	Ready func()
}

// watchPoll is how often a watch checks that the container still runs.
const watchPoll = 500 * time.Millisecond

// watchRotateEvery is how many polls pass between two checks of the resolver log's size.
const watchRotateEvery = 20

// Watch streams the packets the container's log rules see, read from NFLOG group
// nft.DefaultLogGroup inside the container's network namespace, until ctx ends (nil), Count
// events were emitted (nil) or the container stops ("container X is not running").
func (c *Controller) Watch(ctx context.Context, query string, opts WatchOptions) error {
	if opts.Count < 0 {
		return fmt.Errorf("count %d: want 0 (no limit) or more", opts.Count)
	}
	if opts.Emit == nil {
		return errors.New("watch: no Emit function")
	}
	b, err := c.open(query)
	if err != nil {
		return err
	}
	defer b.Close()
	d, err := b.Load()
	if err != nil {
		return err
	}
	notRunning := fmt.Errorf("container %s is not running", d.Container)
	if d.NetNS == nil || d.NetNS.Check() != nil {
		return notRunning
	}
	id := *d.NetNS

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	domains := newDomainTail(func() (*os.File, error) { return b.OpenFile(state.FileDnsmasqLog, os.O_RDONLY, 0) })
	defer domains.Close()
	var (
		n      int
		errCnt = errors.New("count reached")
	)
	emit := func(ev WatchEvent) error {
		ev.Container = d.Container
		ev.Domain = domains.lookup(ev.remote())
		if err := opts.Emit(ev); err != nil {
			return err
		}
		if n++; opts.Count > 0 && n >= opts.Count {
			return errCnt
		}
		return nil
	}
	ready := func() {
		if opts.Ready != nil {
			opts.Ready()
		}
	}

	// The container stopping ends the watch: the socket keeps the namespace alive, so the
	// recorded process is what tells.
	stopped := make(chan struct{})
	go func() {
		t := time.NewTicker(watchPoll)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if id.Check() != nil {
					close(stopped)
					cancel()
					return
				}
				if i%watchRotateEvery == 0 {
					rotateResolverLog(b.Dir()) // the watch reads it; it also keeps it bounded
				}
			}
		}
	}()

	if c.Euid == 0 {
		err = c.watchDirect(ctx, id, ready, emit)
	} else {
		err = c.watchNsenter(ctx, id, ready, emit)
	}
	select {
	case <-stopped:
		return notRunning
	default:
	}
	switch {
	case errors.Is(err, errCnt):
		return nil
	case errors.Is(err, errNotRunning):
		return notRunning
	case err != nil:
		return fmt.Errorf("watch %s: %w", d.Container, err)
	}
	return nil
}

// watchDirect binds the packet log from a thread that entered the container's network namespace
// and reads it in this process.
func (c *Controller) watchDirect(ctx context.Context, id state.NetNSIdentity, ready func(), emit func(WatchEvent) error) error {
	fd, err := unix.Open("/proc/"+strconv.Itoa(id.PID)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errNotRunning
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != id.NetNSInode {
		return errNotRunning
	}
	l, err := bindNFLOGIn(fd, nft.DefaultLogGroup)
	if err != nil {
		return err
	}
	defer l.Close()
	ready()
	return l.run(ctx, func(p nflogPacket) error {
		if ev, ok := eventOf(p, time.Now()); ok {
			return emit(ev)
		}
		return nil
	})
}

// bindNFLOGIn opens the NFLOG socket in the network namespace nsfd names. The socket is created
// on a locked thread that entered the namespace and is never unlocked (the runtime discards it);
// the socket stays in that namespace and is read from any thread.
func bindNFLOGIn(nsfd int, group uint16) (*nflogListener, error) {
	type result struct {
		l   *nflogListener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked, see above
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter container network namespace: %w", err)}
			return
		}
		l, err := bindNFLOG(group)
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}

// watchRequest is what the parent sends the WatchCommand child on stdin; closing stdin
// afterwards stops the child.
type watchRequest struct {
	NetNSInode uint64 `json:"netns_inode"`
	Group      uint16 `json:"group"`
}

// watchLine is one line the child writes: Ready once bound, then events; Err ends the stream.
type watchLine struct {
	Ready bool        `json:"ready,omitempty"`
	Event *WatchEvent `json:"event,omitempty"`
	Err   string      `json:"error,omitempty"`
}

// maxWatchLine bounds one line of the child's stream.
const maxWatchLine = 64 << 10

// watchNsenter runs the WatchCommand child under nsenter in the container's user and network
// namespaces and relays its events.
func (c *Controller) watchNsenter(ctx context.Context, id state.NetNSIdentity, ready func(), emit func(WatchEvent) error) error {
	exe, nsenter := c.Exe, c.Nsenter
	if exe == "" {
		var err error
		if exe, err = executable(); err != nil {
			return err
		}
	}
	if nsenter == "" {
		var err error
		if nsenter, err = exec.LookPath("nsenter"); err != nil {
			return fmt.Errorf("rootless containers are reached through nsenter (util-linux): %w", err)
		}
	}
	req, err := json.Marshal(watchRequest{NetNSInode: id.NetNSInode, Group: nft.DefaultLogGroup})
	if err != nil {
		return err
	}
	cmd := exec.Command(nsenter, "--target", strconv.Itoa(id.PID), "--user", "--net",
		"--preserve-credentials", "--", exe, WatchCommand)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	// A pipe of our own rather than StdoutPipe: Wait runs concurrently with the reads.
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd.Stdout = w
	var stderr boundedBuffer
	cmd.Stderr = &stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("enter container namespaces: %w", err)
	}
	var waitErr error
	waited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(waited) }()
	// Closing stdin asks the child to stop; it is killed if it has not within a second.
	stopChild := func() {
		_ = stdin.Close()
		select {
		case <-waited:
		case <-time.After(time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
	}
	defer stopChild()
	go func() {
		select {
		case <-ctx.Done():
			stopChild()
		case <-waited:
		}
	}()
	if _, err := stdin.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("enter container namespaces: %w", err)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxWatchLine)
	for sc.Scan() {
		var line watchLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("enter container namespaces: bad reply: %w", err)
		}
		switch {
		case line.Err != "":
			return errors.New(line.Err)
		case line.Ready:
			ready()
		case line.Event != nil:
			if err := emit(*line.Event); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read from container namespaces: %w", err)
	}
	<-waited
	return fmt.Errorf("enter container namespaces: the watch ended (%v): %s", waitErr, strings.TrimSpace(stderr.String()))
}

// ServeWatch is the child side of a rootless watch: nsenter has put this process into the
// container's user and network namespaces. It reads a request line from in, checks the
// namespace, binds the packet log and writes watch lines to out until in is closed.
func ServeWatch(ctx context.Context, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	br := bufio.NewReader(in)
	reqLine, err := br.ReadBytes('\n')
	if err != nil {
		return enc.Encode(watchLine{Err: fmt.Sprintf("read watch request: %v", err)})
	}
	var req watchRequest
	if err := json.Unmarshal(reqLine, &req); err != nil {
		return enc.Encode(watchLine{Err: fmt.Sprintf("decode watch request: %v", err)})
	}
	ino, err := netnsInode("/proc/self/ns/net")
	if err != nil {
		return enc.Encode(watchLine{Err: err.Error()})
	}
	if ino != req.NetNSInode {
		return enc.Encode(watchLine{Err: fmt.Sprintf("network namespace %d is not the container's (%d)", ino, req.NetNSInode)})
	}
	l, err := bindNFLOG(req.Group)
	if err != nil {
		return enc.Encode(watchLine{Err: err.Error()})
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the parent closes stdin (or dies) to stop the watch
		_, _ = io.Copy(io.Discard, br)
		cancel()
	}()
	if err := enc.Encode(watchLine{Ready: true}); err != nil {
		return err
	}
	err = l.run(ctx, func(p nflogPacket) error {
		if ev, ok := eventOf(p, time.Now()); ok {
			return enc.Encode(watchLine{Event: &ev})
		}
		return nil
	})
	if err != nil {
		return enc.Encode(watchLine{Err: err.Error()})
	}
	return nil
}

// boundedBuffer keeps the first 4 KiB written to it (a child's stderr).
type boundedBuffer struct{ b []byte }

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *boundedBuffer) String() string { return string(w.b) }
