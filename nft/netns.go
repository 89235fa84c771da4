// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"fmt"
	"runtime"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Target names the network namespace an operation runs in.
type Target struct {
	// NetNSPath is a netns file such as /proc/PID/ns/net or /run/netns/NAME.
	// Empty means the caller's current network namespace.
	NetNSPath string
}

// sndBufWant is the socket send buffer asked for; the kernel caps it at
// net.core.wmem_max, and the effective size bounds one transaction.
const sndBufWant = 1 << 20

// session is one netlink socket inside the target namespace.
type session struct {
	c         *nftables.Conn
	raw       *netlink.Conn // plain socket for raw batches
	sndbuf    int           // effective SO_SNDBUF of c, as reported by the kernel
	rawSndbuf int           // effective SO_SNDBUF of raw
	seq       uint32        // last sequence number used on raw
}

// growSendBuffer asks for a large send buffer and returns the size granted:
// an unprivileged namespace cannot exceed net.core.wmem_max.
func growSendBuffer(nc *netlink.Conn) (int, error) {
	_ = nc.SetWriteBuffer(sndBufWant) // best effort, capped by the kernel
	rc, err := nc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var size int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		size, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	}); err != nil {
		return 0, err
	}
	return size, serr
}

// do runs fn with a session opened inside t's namespace, then closes it.
func (t Target) do(ctx context.Context, fn func(s *session) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := t.open()
	if err != nil {
		return err
	}
	err = fn(s)
	// Closing a netfilter netlink socket after a transaction that deleted
	// objects waits for the kernel's deferred destruction (an RCU grace
	// period, milliseconds). The work is committed and acknowledged by now,
	// so the caller need not wait for it.
	go s.close()
	return err
}

// open creates the session's netlink sockets inside t's namespace.
//
// A socket belongs to the namespace it was created in, whatever thread uses
// it later. So only the creation happens on a fresh goroutine that locks
// its OS thread, setns(2)es into the namespace and never unlocks: the Go
// runtime then discards the thread when the goroutine exits, so no thread
// ever has to switch back (switching back fails inside a rootless user
// namespace). The session itself is used from the caller's goroutine, where
// netlink I/O costs no thread hand-offs.
func (t Target) open() (*session, error) {
	if t.NetNSPath == "" {
		return openSession()
	}
	type result struct {
		s   *session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // deliberately never unlocked, see above
		fd, err := unix.Open(t.NetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open netns %s: %w", t.NetNSPath, err)}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		_ = unix.Close(fd)
		if err != nil {
			ch <- result{err: fmt.Errorf("enter netns %s: %w", t.NetNSPath, err)}
			return
		}
		s, err := openSession()
		ch <- result{s, err}
	}()
	r := <-ch
	return r.s, r.err
}

// openSession opens both sockets of a session in the calling thread's
// namespace: the raw one too, so that no socket is ever created later,
// elsewhere.
func openSession() (*session, error) {
	s := &session{}
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(nc *netlink.Conn) (err error) {
		s.sndbuf, err = growSendBuffer(nc)
		return err
	}))
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	s.c = c
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		_ = c.CloseLasting()
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	if s.rawSndbuf, err = growSendBuffer(nc); err != nil {
		_ = c.CloseLasting()
		_ = nc.Close()
		return nil, fmt.Errorf("size netlink socket: %w", err)
	}
	s.raw = nc
	return s, nil
}

// close closes the session's sockets.
func (s *session) close() {
	_ = s.c.CloseLasting()
	_ = s.raw.Close()
}

// rawConn returns the session's plain netfilter netlink socket, for
// messages google/nftables cannot build.
func (s *session) rawConn() (*netlink.Conn, error) { return s.raw, nil }

// rawBudget is the number of payload bytes one transaction on the raw
// socket may carry: the kernel rejects a sendmsg larger than the send
// buffer, and transactions much above maxTxBytes were measured slower
// (100k elements: ~65 ms in ~150 kB transactions, ~125 ms in one 3 MB one).
func (s *session) rawBudget() int {
	return min(max(s.rawSndbuf*3/4-4096, 16<<10), maxTxBytes)
}

const maxTxBytes = 192 << 10
