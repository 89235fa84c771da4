// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// watchEvent is the part of a `podman shield watch` line the test checks.
type watchEvent struct {
	Container, Action, Dir, Proto, Dst, Domain string
	DPort                                      int
}

// TestShieldedWatch runs `podman shield watch` on a real shielded container in both modes:
// blocked and allowed connections appear as JSON lines, the allowed one with the name the
// container's resolver learned its address from, and SIGINT ends the watch with exit 0.
func TestShieldedWatch(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("watch")
		if err := sp.StartShielded(ctx, name, "e2e"); err != nil {
			t.Fatal(err)
		}
		cmd := sp.Command(ctx, "shield", "watch", name)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 256)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// next returns the next event but the multicast listener reports a new interface
		// sends (ICMPv6 to ff02::16, rejected and logged as private).
		next := func(within time.Duration) (watchEvent, bool) {
			timeout := time.After(within)
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("watch ended: %s", stderr.String())
					}
					var ev watchEvent
					if err := json.Unmarshal([]byte(l), &ev); err != nil {
						t.Fatalf("watch line %q: %v", l, err)
					}
					t.Logf("event: %s", l)
					if ev.Proto == "icmpv6" && strings.HasPrefix(ev.Dst, "ff02:") {
						continue
					}
					return ev, true
				case <-timeout:
					return watchEvent{}, false
				}
			}
		}
		// The watch prints nothing until it reads events: blocked connections until one shows.
		blocked := watchEvent{Container: name, Action: "blocked", Dir: "out", Proto: "tcp", Dst: testnet.BenchUnlistedV4, DPort: 80}
		for seen := false; !seen; {
			if _, _, err := sp.ProbeIn(ctx, name, "tcp", testnet.BenchUnlistedV4+":80"); err != nil {
				t.Fatal(err)
			}
			ev, ok := next(500 * time.Millisecond)
			if ctx.Err() != nil {
				t.Fatal("no event from watch")
			}
			if ok && ev != blocked {
				t.Fatalf("event %+v, want %+v", ev, blocked)
			}
			seen = ok
		}
		for _, args := range [][]string{{"dns", "allowed.test"}, {"tcp", testnet.BenchV4 + ":80"}} {
			if _, _, err := sp.ProbeIn(ctx, name, args...); err != nil {
				t.Fatal(err)
			}
		}
		want := watchEvent{Container: name, Action: "allowed", Dir: "out", Proto: "tcp", Dst: testnet.BenchV4, DPort: 80, Domain: "allowed.test"}
		for {
			ev, ok := next(10 * time.Second)
			if !ok {
				t.Fatalf("no allowed event for %s", testnet.BenchV4)
			}
			if ev == blocked { // a late one of the readiness loop
				continue
			}
			if ev != want {
				t.Fatalf("event %+v, want %+v", ev, want)
			}
			break
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		for range lines {
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("watch after SIGINT: %v: %s", err, stderr.String())
		}
	})
}
