// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Conn is an open handle on one network namespace: a goroutine locked to an
// OS thread inside the namespace, holding its netlink sockets open. Several
// operations through one Conn pay the namespace entry once and never wait
// for socket teardown in between. A Conn is safe for concurrent use;
// operations run one at a time. Close releases it.
type Conn struct {
	reqs      chan func(*session)
	closeOnce sync.Once
	closed    chan struct{}
}

// ErrClosed is returned by operations on a closed Conn.
var ErrClosed = errors.New("nft connection closed")

// Open enters t's namespace and returns a Conn operating in it.
func Open(ctx context.Context, t Target) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &Conn{reqs: make(chan func(*session)), closed: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if t.NetNSPath != "" {
			fd, err := unix.Open(t.NetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ready <- fmt.Errorf("open netns %s: %w", t.NetNSPath, err)
				return
			}
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			_ = unix.Close(fd)
			if err != nil {
				ready <- fmt.Errorf("enter netns %s: %w", t.NetNSPath, err)
				return
			}
		}
		_ = runSession(func(s *session) error {
			ready <- nil
			for {
				select {
				case req := <-c.reqs:
					req(s)
				case <-c.closed:
					return nil
				}
			}
		}, func(err error) {
			if err != nil {
				ready <- err
			}
		})
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return c, nil
}

// Close ends the Conn; its thread exits once the sockets are closed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *Conn) run(ctx context.Context, fn func(*session) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	select {
	case <-c.closed:
		return ErrClosed
	case c.reqs <- func(s *session) { done <- fn(s) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-done
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
