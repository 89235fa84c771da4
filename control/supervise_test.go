// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/state"
)

// requireDnsmasq returns a usable dnsmasq, skipping (failing in CI) without one.
func requireDnsmasq(t *testing.T) string {
	t.Helper()
	bin, err := dnsmasq.Find()
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1" {
			t.Fatalf("resolver supervision test needs dnsmasq: %v", err)
		}
		t.Skipf("resolver supervision test needs dnsmasq: %v", err)
	}
	return bin
}

// killResolver SIGKILLs the bundle's dnsmasq, as a crash would, and waits until it is gone.
func killResolver(t *testing.T, dir string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, state.FileDnsmasqPID))
	if err != nil {
		t.Fatalf("resolver pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if !resolverAlive(dir) {
		t.Fatalf("resolver %d is not running before the kill", pid)
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); resolverAlive(dir); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("resolver %d still alive after SIGKILL", pid)
		}
	}
	return pid
}

// TestResolverSupervision kills a shielded container's dnsmasq and checks that each
// state-changing command and status start it again, audit it as resolver_restart, and that a
// command finding it alive, or a mode that does not resolve, leaves it alone.
func TestResolverSupervision(t *testing.T) {
	requirePrivileged(t)
	bin := requireDnsmasq(t)
	ctx := context.Background()
	r := newRoot(t)
	fc := startContainer(t, 0)
	shield(t, r, "web", fc, func(d *state.Data) {
		d.Resolved.Domains = []string{"allowed.test"}
		d.Resolver = state.Resolver{Tier: state.TierDnsmasq, Upstreams: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}
	})
	c := New(r)
	c.Dnsmasq = bin
	dir := filepath.Join(r.Dir(), "containers", "web")
	in := dnsmasq.Instance{Binary: bin, ConfFile: filepath.Join(dir, state.FileDnsmasqConf), PIDFile: filepath.Join(dir, state.FileDnsmasqPID)}
	t.Cleanup(func() { _ = dnsmasq.Stop(in) }) // runs before the fake container is killed
	// The hook did not run here: this first start is found (and audited) as a restart too.
	if _, err := c.SetMode(ctx, "web", state.ModeUp); err != nil {
		t.Fatal(err)
	}
	setup, err := c.Logs("web", 1000)
	if err != nil {
		t.Fatal(err)
	}
	restarts := func() int {
		t.Helper()
		ev, err := c.Logs("web", 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range ev {
			if e.Action == audit.ActionResolverRestart {
				n++
			}
		}
		return n
	}

	status := func() (string, error) {
		st, err := c.Status(ctx, "web")
		if err != nil {
			return "", err
		}
		return st.ResolverState, nil
	}
	tests := []struct {
		name      string
		kill      bool
		do        func() (string, error)
		want      string // Status's resolver state ("" for the other commands)
		restarted bool
		running   bool // resolver running afterwards
	}{
		{name: "status, alive", do: status, want: ResolverRunning, running: true},
		{name: "status", kill: true, do: status, want: ResolverRestarted, restarted: true, running: true},
		{name: "allow address", kill: true, do: func() (string, error) { return noState(c.Allow(ctx, "web", []string{"203.0.113.7"})) }, restarted: true, running: true},
		{name: "allow name", kill: true, do: func() (string, error) { return noState(c.Allow(ctx, "web", []string{"other.test"})) }, restarted: true, running: true},
		{name: "deny address", kill: true, do: func() (string, error) { return noState(c.Deny(ctx, "web", []string{"203.0.113.7"})) }, restarted: true, running: true},
		{name: "down", kill: true, do: func() (string, error) { return noState(c.SetMode(ctx, "web", state.ModeDown)) }, restarted: true, running: true},
		{name: "up", kill: true, do: func() (string, error) { return noState(c.SetMode(ctx, "web", state.ModeUp)) }, restarted: true, running: true},
		{name: "block does not resolve", kill: true, do: func() (string, error) { return noState(c.SetMode(ctx, "web", state.ModeBlock)) }},
		{name: "status while blocked", do: status},
		{name: "up after block starts it without a restart event", do: func() (string, error) { return noState(c.SetMode(ctx, "web", state.ModeUp)) }, running: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := restarts()
			if tt.kill {
				killResolver(t, dir)
			}
			got, err := tt.do()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("resolver state %q, want %q", got, tt.want)
			}
			if n := restarts() - before; n != map[bool]int{false: 0, true: 1}[tt.restarted] {
				t.Errorf("%d resolver_restart events, want restarted=%v", n, tt.restarted)
			}
			if alive := resolverAlive(dir); alive != tt.running {
				t.Errorf("resolver running %v, want %v", alive, tt.running)
			}
		})
	}
	ev, err := c.Logs("web", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range ev[len(setup):] {
		if e.Action == audit.ActionResolverRestart {
			reasons = append(reasons, e.Reason)
		}
	}
	want := []string{"status", "allow", "allow", "deny", "down", "up"}
	for i := range want {
		want[i] = "dnsmasq was not running (found by " + want[i] + ")"
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("resolver_restart reasons (-want +got):\n%s", diff)
	}
}

func noState[T any](_ T, err error) (string, error) { return "", err }
