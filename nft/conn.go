// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// Conn is an open handle on one network namespace: netlink sockets created
// inside it. Several operations through one Conn pay the namespace entry
// once and never wait for socket teardown in between. A Conn is safe for
// concurrent use; operations run one at a time. Close releases it.
type Conn struct {
	mu      sync.Mutex
	s       *session // nil once closed
	closed  bool
	adopted bool // OpenAdopted: Close closes at once (see there)
}

// ErrClosed is returned by operations on a closed Conn.
var ErrClosed = errors.New("nft connection closed")

// Open enters t's namespace and returns a Conn operating in it.
func Open(ctx context.Context, t Target) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := t.open()
	if err != nil {
		return nil, err
	}
	return &Conn{s: s}, nil
}

// OpenAdopted returns a Conn on two netlink netfilter sockets that another process created
// inside the target network namespace and handed over (pidfd_getfd): a caller that may not
// enter the namespace itself (a rootless container's owner, whose process cannot join a user
// namespace) can still work on its table, since the kernel checks the capabilities of the
// socket's creator and of the sender against the namespace's owner. The sockets must be
// blocking and unbound; they are closed, also on error.
//
// Closing a netfilter netlink socket shortly after a commit waits for the kernel to free the
// transaction (an RCU grace period, ~10 ms) when it drops the last reference to the socket.
// Close on an adopted Conn therefore closes at once: while the process that created the
// sockets still holds them, that is never the last reference, and the wait falls to that
// process when it ends, not to the caller.
func OpenAdopted(nftSock, rawSock int) (*Conn, error) {
	defer unix.Close(nftSock)
	defer unix.Close(rawSock)
	s, err := openSession(&[2]int{nftSock, rawSock})
	if err != nil {
		return nil, err
	}
	return &Conn{s: s, adopted: true}, nil
}

// SyncSets is SyncSets through c.
func (c *Conn) SyncSets(ctx context.Context, r *Ruleset) error { return c.run(ctx, syncStep(r)) }

// Close releases the sockets; it does not wait for the kernel's deferred
// destruction that closing them may start.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		if c.adopted {
			c.s.close()
		} else {
			go c.s.close()
		}
	}
	return nil
}

func (c *Conn) run(ctx context.Context, fn func(*session) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return fn(c.s)
}

// Apply is Apply through c.
func (c *Conn) Apply(ctx context.Context, r *Ruleset) error {
	return c.run(ctx, func(s *session) error { return apply(ctx, s, r) })
}

// Verify is Verify through c.
func (c *Conn) Verify(ctx context.Context, r *Ruleset) error {
	return c.run(ctx, func(s *session) error { return verify(s, r) })
}

// AddElements is AddElements through c.
func (c *Conn) AddElements(ctx context.Context, kind SetKind, prefixes []netip.Prefix) error {
	return c.run(ctx, func(s *session) error { return addElements(s, kind, prefixes) })
}

// DeleteElements is DeleteElements through c.
func (c *Conn) DeleteElements(ctx context.Context, kind SetKind, prefixes []netip.Prefix) error {
	return c.run(ctx, func(s *session) error { return deleteElements(s, kind, prefixes) })
}

// Inspect is Inspect through c.
func (c *Conn) Inspect(ctx context.Context) (st *Status, err error) {
	err = c.run(ctx, func(s *session) (err error) {
		st, err = inspect(s)
		return err
	})
	return st, err
}

// List is List through c.
func (c *Conn) List(ctx context.Context) (text string, err error) {
	err = c.run(ctx, func(s *session) (err error) {
		text, err = list(s)
		return err
	})
	return text, err
}
