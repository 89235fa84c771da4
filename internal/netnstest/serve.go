// SPDX-License-Identifier: Apache-2.0

package netnstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// ServeTCP starts a TCP echo server on addr inside the namespace and returns
// its identity. For every line it reads, it writes back "<identity> <line>".
// It stops, closing open connections, when the test ends.
func (n *NS) ServeTCP(t testing.TB, addr netip.AddrPort) string {
	t.Helper()
	id := serverID(n, "tcp", addr)
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen tcp %s in %s: %v", addr, n.Name, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "%s %s\n", id, sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return id
}

// ServeUDP starts a UDP echo server on addr inside the namespace and returns
// its identity. For every datagram it writes back "<identity> <datagram>".
// It stops when the test ends.
func (n *NS) ServeUDP(t testing.TB, addr netip.AddrPort) string {
	t.Helper()
	id := serverID(n, "udp", addr)
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = (&net.ListenConfig{}).ListenPacket(context.Background(), "udp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen udp %s in %s: %v", addr, n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			m, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // e.g. a queued ICMP error from an earlier reply
			}
			reply := fmt.Appendf(nil, "%s %s", id, buf[:m])
			pc.WriteTo(reply, from) //nolint:errcheck // best effort, like any UDP server
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return id
}

func serverID(n *NS, proto string, addr netip.AddrPort) string {
	return n.Name + "/" + proto + "/" + addr.String()
}
