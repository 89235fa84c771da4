// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// TestResolverDiesClosed kills a shielded container's dnsmasq: the workload's DNS then fails
// (refused or timeout) without anything else answering and without a query reaching the test
// DNS, direct DNS stays blocked, and `podman shield status` through the shim starts the
// resolver again, after which the allowed name resolves.
func TestResolverDiesClosed(t *testing.T) {
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("resolver")
		if err := sp.StartShielded(ctx, name, "e2e"); err != nil {
			t.Fatal(err)
		}
		allowed := outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchV4}}
		runCases(t, ctx, sp, name, []netCase{{name: "before the kill: dns allowed", args: []string{"dns", "allowed.test"}, want: allowed}})

		pid := resolverPID(t, sp, name)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			// Gone, or a zombie (empty cmdline) until its parent reaps it.
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || len(b) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dnsmasq %d survived SIGKILL", pid)
			}
		}

		n.ResetHits()
		// Nothing listens on 127.0.0.1:53 any more: the kernel answers the UDP query with
		// port unreachable and the TCP one with a reset; no other resolver is configured.
		// (outcome's String method recurses, see shielded_test.go, so a plain struct is used.)
		type noAnswer struct{ Result, Errno, ICMP, Rcode string }
		for _, c := range []struct {
			args []string
			want noAnswer
		}{
			{[]string{"dns", "allowed.test"}, noAnswer{Result: probe.ICMPErr, Errno: "ECONNREFUSED", ICMP: "3/3"}},
			{[]string{"dns", "allowed.test", "--tcp"}, noAnswer{Result: probe.Refused, Errno: "ECONNREFUSED"}},
		} {
			res, _, err := sp.ProbeIn(ctx, name, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			got := noAnswer{Result: res.Result, Errno: res.Errno, ICMP: outcomeOf(t, res).ICMP, Rcode: res.Rcode}
			if d := cmp.Diff(c.want, got); d != "" || len(res.Answers) != 0 {
				t.Errorf("resolver dead: probe %s (-want +got):\n%s\nanswers %q", strings.Join(c.args, " "), d, res.Answers)
			}
		}
		runCases(t, ctx, sp, name, []netCase{
			{name: "resolver dead: direct dns udp", args: []string{"dns", "allowed.test", "--server", testnet.DNSV4}, want: prohibited4UDP},
			{name: "resolver dead: direct dns tcp", args: []string{"dns", "allowed.test", "--server", testnet.DNSV4, "--tcp"}, want: prohibited4},
		})
		if q := n.DNS.QueriesFor("allowed.test"); len(q) != 0 {
			t.Errorf("test DNS answered while the resolver was dead: %+v", q)
		}

		r, err := sp.Run(ctx, "shield", "status", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff("up\n  resolver: restarted\n", r.Stdout); d != "" {
			t.Errorf("status after the kill (-want +got):\n%s", d)
		}
		if again := resolverPID(t, sp, name); again == pid {
			t.Errorf("resolver pid %d unchanged after the restart", pid)
		}
		runCases(t, ctx, sp, name, []netCase{{name: "after status: dns allowed", args: []string{"dns", "allowed.test"}, want: allowed}})
		if q := n.DNS.QueriesFor("allowed.test"); len(q) == 0 {
			t.Errorf("test DNS saw no query for allowed.test after the restart")
		}
		r, err = sp.Run(ctx, "shield", "status", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff("up\n  resolver: running\n", r.Stdout); d != "" {
			t.Errorf("second status (-want +got):\n%s", d)
		}
	})
}
