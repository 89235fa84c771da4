// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
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
		return openSession(nil)
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
		s, err := openSession(nil)
		ch <- result{s, err}
	}()
	r := <-ch
	return r.s, r.err
}

// openSession opens both sockets of a session in the calling thread's
// namespace: the raw one too, so that no socket is ever created later,
// elsewhere. With adopt, the two sockets are replaced by adopt's (see
// OpenAdopted) right after they are created. The raw socket is dialled first
// so that both have distinct port ids before either is replaced (a replaced
// socket's port id becomes free again in this namespace).
func openSession(adopt *[2]int) (*session, error) {
	s := &session{}
	nc, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(nc *netlink.Conn) (err error) {
		if adopt != nil {
			if err := adoptSocket(nc, adopt[0]); err != nil {
				return err
			}
		}
		s.sndbuf, err = growSendBuffer(nc)
		return err
	}))
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	s.c = c
	if adopt != nil {
		err = adoptSocket(nc, adopt[1])
	}
	if err == nil {
		s.rawSndbuf, err = growSendBuffer(nc)
	}
	if err != nil {
		_ = c.CloseLasting()
		_ = nc.Close()
		return nil, fmt.Errorf("size netlink socket: %w", err)
	}
	s.raw = nc
	return s, nil
}

// adoptSocket makes nc use the netlink socket fd instead of the one it opened: fd is bound to
// the same port id (netlink replies carry it, and the library checks it) and then duplicated
// over nc's descriptor, which closes nc's own socket. fd must be a blocking socket: the
// runtime's poller knew only the replaced one, so this socket must never report EAGAIN.
// The caller still closes fd (a copy now lives on in nc).
func adoptSocket(nc *netlink.Conn, fd int) error {
	rc, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	var aerr error
	err = rc.Control(func(own uintptr) {
		sa, err := unix.Getsockname(int(own))
		if err != nil {
			aerr = fmt.Errorf("adopt socket: %w", err)
			return
		}
		nl, ok := sa.(*unix.SockaddrNetlink)
		if !ok {
			aerr = errors.New("adopt socket: not a netlink socket")
			return
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: nl.Pid}); err != nil {
			aerr = fmt.Errorf("adopt socket: bind port %d: %w", nl.Pid, err)
			return
		}
		if err := unix.Dup3(fd, int(own), unix.O_CLOEXEC); err != nil {
			aerr = fmt.Errorf("adopt socket: %w", err)
		}
	})
	return errors.Join(err, aerr)
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
