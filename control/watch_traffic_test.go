// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/terok-ai/terok-shield/internal/netnstest"
	"github.com/terok-ai/terok-shield/state"
)

// The watch traffic tests link a fake container's namespace to a "wan" test namespace with a
// veth pair (created from inside the container namespace, so it never exists in the host's);
// the container's default routes point at wan, whose loopback holds the destinations. Nothing
// can leave the two namespaces.
var (
	wLinkCtr4 = netip.MustParsePrefix("203.0.113.2/24")
	wLinkWan4 = netip.MustParsePrefix("203.0.113.1/24")
	wLinkCtr6 = netip.MustParsePrefix("2001:db8:ffff::2/64")
	wLinkWan6 = netip.MustParsePrefix("2001:db8:ffff::1/64")

	wAllowed4  = netip.MustParseAddr("192.0.2.10")
	wUnlisted4 = netip.MustParseAddr("192.0.2.20")
	wDenied4   = netip.MustParseAddr("192.0.2.40")
	wPrivate4  = netip.MustParseAddr("10.1.2.3")
	wAllowed6  = netip.MustParseAddr("2001:db8::10")
)

// linkWan connects fc's namespace to a new wan namespace and returns wan and a handle that runs
// probes inside fc's namespace. v6 false turns IPv6 off on the container's link (no
// multicast listener reports in the log).
func linkWan(t *testing.T, fc *fakeContainer, v6 bool) (wan, ctr *netnstest.NS) {
	t.Helper()
	wan = netnstest.New(t, "wwan")
	pid := strconv.Itoa(fc.pid)
	sysctls := []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", "net.ipv4.ping_group_range=0 2147483647"}
	if !v6 {
		sysctls = append(sysctls, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	if out, err := exec.Command("nsenter", append([]string{"--target", pid, "--net", "sysctl", "-q", "-w"}, sysctls...)...).CombinedOutput(); err != nil {
		t.Fatalf("sysctl in the container namespace: %v: %s", err, out)
	}
	cmds := []string{
		"link add wc0 type veth peer name ww0 netns " + wan.Name,
		"addr add " + wLinkCtr4.String() + " dev wc0",
		"link set wc0 up",
		"route add default via " + wLinkWan4.Addr().String(),
	}
	if v6 {
		cmds = append(cmds, "addr add "+wLinkCtr6.String()+" dev wc0 nodad", "route add ::/0 via "+wLinkWan6.Addr().String())
	}
	cmd := exec.Command("nsenter", "--target", pid, "--net", "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("link the container namespace: %v: %s", err, out)
	}
	wan.IP(t, "addr add "+wLinkWan4.String()+" dev ww0", "addr add "+wLinkWan6.String()+" dev ww0 nodad", "link set ww0 up",
		"addr add "+wAllowed4.String()+"/32 dev lo", "addr add "+wUnlisted4.String()+"/32 dev lo",
		"addr add "+wDenied4.String()+"/32 dev lo", "addr add "+wPrivate4.String()+"/32 dev lo",
		"addr add "+wAllowed6.String()+"/128 dev lo")
	ctr = &netnstest.NS{Name: "container-" + pid, Path: fc.netns()}
	// Ready: carrier on both ends and, with IPv6, usable link-local addresses (until then
	// IPv6 ignores neighbour solicitations on the link).
	ready := func(netns, dev string) bool {
		show := func(args ...string) []byte {
			out, _ := exec.Command("nsenter", append([]string{"--net=" + netns, "ip", "-o"}, args...)...).Output()
			return out
		}
		if !bytes.Contains(show("link", "show", "dev", dev), []byte("LOWER_UP")) {
			return false
		}
		addr := show("-6", "addr", "show", "dev", dev)
		return !v6 || bytes.Contains(addr, []byte("scope link")) && !bytes.Contains(addr, []byte("tentative"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !ready(fc.netns(), "wc0") || !ready(wan.Path, "ww0") {
		if time.Now().After(deadline) {
			t.Fatal("the container's link is not ready after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return wan, ctr
}

// writeQueryLog appends resolver query log lines to the bundle in dir, owned by uid.
func writeQueryLog(t *testing.T, dir string, uid int, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, state.FileDnsmasqLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString("Dec  4 17:44:03 dnsmasq[4242]: " + l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Chown(uid, uid); err != nil {
		t.Fatal(err)
	}
}

// noise reports packets a fresh IPv6 interface sends on its own (multicast listener reports,
// which the ruleset blocks and logs like any other packet).
func noise(ev WatchEvent) bool {
	return ev.Proto == "icmpv6" && ev.ICMPType != nil && (*ev.ICMPType == 143 || *ev.ICMPType == 131)
}

func u8(v uint8) *uint8 { return &v }

// TestWatchRootful watches a fake container as root (the direct path) while it sends allowed,
// blocked, private and denied traffic, IPv4 and IPv6.
func TestWatchRootful(t *testing.T) {
	requirePrivileged(t, "ip", "sysctl")
	netnstest.Require(t)
	r := newRoot(t)
	fc := startContainer(t, 0)
	shield(t, r, "web", fc, func(d *state.Data) {
		d.Resolved = state.Entries{Prefixes: pfx(wAllowed4.String(), wAllowed6.String())}
		d.Deny = state.Entries{Prefixes: pfx(wDenied4.String())}
	})
	wan, ctr := linkWan(t, fc, true)
	wan.ServeTCP(t, netip.AddrPortFrom(wAllowed4, 80))
	wan.ServeUDP(t, netip.AddrPortFrom(wAllowed6, 5000))
	writeQueryLog(t, filepath.Join(r.Dir(), "containers", "web"), 0,
		"query[A] allowed.test from 127.0.0.1", "reply allowed.test is 192.0.2.10",
		"nftset add 4 inet terok_shield learned_v4 192.0.2.10 allowed.test",
		"reply www.unlisted.test is <CNAME>", "reply cdn.unlisted.test is 192.0.2.20")
	c := &Controller{Root: r, Euid: 0}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan WatchEvent, 64)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, "web", WatchOptions{
			Emit:  func(ev WatchEvent) error { events <- ev; return nil },
			Ready: func() { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("watch ended before it was ready: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("watch not ready after 5s")
	}

	t.Run("second watch refused", func(t *testing.T) {
		err := c.Watch(ctx, "web", WatchOptions{Emit: func(WatchEvent) error { return nil }})
		if err == nil || !strings.Contains(err.Error(), "another watch is already reading") {
			t.Fatalf("second watch: %v", err)
		}
	})

	src4, src6 := wLinkCtr4.Addr(), wLinkCtr6.Addr()
	quick := netnstest.ProbeOptions{Timeout: 500 * time.Millisecond}
	tests := []struct {
		name  string
		probe func() netnstest.Outcome
		want  netnstest.Outcome
		ev    WatchEvent
	}{
		{"allowed tcp4", func() netnstest.Outcome { return ctr.ProbeTCP(netip.AddrPortFrom(wAllowed4, 80)) }, netnstest.Outcome{Result: netnstest.ResultOpen},
			WatchEvent{Action: "allowed", Dir: "out", Proto: "tcp", Src: src4, Dst: wAllowed4, DPort: 80, Domain: "allowed.test"}},
		{"blocked tcp4", func() netnstest.Outcome { return ctr.ProbeTCPWith(netip.AddrPortFrom(wUnlisted4, 443), quick) }, netnstest.AdminProhibited(wUnlisted4),
			WatchEvent{Action: "blocked", Dir: "out", Proto: "tcp", Src: src4, Dst: wUnlisted4, DPort: 443, Domain: "cdn.unlisted.test"}},
		{"blocked ping4", func() netnstest.Outcome { return ctr.ProbePingWith(wUnlisted4, quick) }, netnstest.AdminProhibited(wUnlisted4),
			WatchEvent{Action: "blocked", Dir: "out", Proto: "icmp", Src: src4, Dst: wUnlisted4, ICMPType: u8(8), Domain: "cdn.unlisted.test"}},
		{"private udp4", func() netnstest.Outcome { return ctr.ProbeUDPWith(netip.AddrPortFrom(wPrivate4, 5000), quick) }, netnstest.AdminProhibited(wPrivate4),
			WatchEvent{Action: "private", Dir: "out", Proto: "udp", Src: src4, Dst: wPrivate4, DPort: 5000}},
		{"denied tcp4", func() netnstest.Outcome { return ctr.ProbeTCPWith(netip.AddrPortFrom(wDenied4, 22), quick) }, netnstest.AdminProhibited(wDenied4),
			WatchEvent{Action: "denied", Dir: "out", Proto: "tcp", Src: src4, Dst: wDenied4, DPort: 22}},
		{"allowed udp6", func() netnstest.Outcome { return ctr.ProbeUDP(netip.AddrPortFrom(wAllowed6, 5000)) }, netnstest.Outcome{Result: netnstest.ResultOpen},
			WatchEvent{Action: "allowed", Dir: "out", Proto: "udp", Src: src6, Dst: wAllowed6, DPort: 5000, Domain: "late.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ev.Domain == "late.test" { // learned after the watch started: the log is followed
				writeQueryLog(t, filepath.Join(r.Dir(), "containers", "web"), 0, "reply late.test is "+wAllowed6.String())
			}
			got := tt.probe()
			if got.Result != tt.want.Result || (tt.want.Result == netnstest.ResultICMP && netnstest.Diff(tt.want, got) != "") {
				t.Fatalf("probe: %v, want %v", got, tt.want)
			}
			tt.ev.Container = "web"
			ev := nextEvent(t, events)
			if diff := cmp.Diff(tt.ev, ev, cmpopts.IgnoreFields(WatchEvent{}, "TS", "SPort"), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			if ev.TS.IsZero() || time.Since(ev.TS) > time.Minute || time.Since(ev.TS) < -time.Minute {
				t.Errorf("event time %v is not now", ev.TS)
			}
		})
	}
	// Established traffic is not logged: nothing else arrived.
	select {
	case ev := <-events:
		if !noise(ev) {
			t.Errorf("unexpected event %+v", ev)
		}
	case <-time.After(200 * time.Millisecond):
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop after cancel")
	}

	t.Run("count", func(t *testing.T) {
		var got []WatchEvent
		done := make(chan error, 1)
		ready := make(chan struct{})
		go func() {
			done <- c.Watch(context.Background(), "web", WatchOptions{Count: 2, Ready: func() { close(ready) },
				Emit: func(ev WatchEvent) error { got = append(got, ev); return nil }})
		}()
		<-ready
		for range 4 {
			ctr.ProbeTCPWith(netip.AddrPortFrom(wUnlisted4, 443), quick)
		}
		select {
		case err := <-done:
			if err != nil || len(got) != 2 {
				t.Fatalf("watch -n 2: %v, %d events", err, len(got))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("watch -n 2 did not stop")
		}
	})

	t.Run("container stops", func(t *testing.T) {
		done := make(chan error, 1)
		ready := make(chan struct{})
		go func() {
			done <- c.Watch(context.Background(), "web", WatchOptions{Ready: func() { close(ready) },
				Emit: func(WatchEvent) error { return nil }})
		}()
		<-ready
		fc.stop()
		select {
		case err := <-done:
			if err == nil || err.Error() != "container web is not running" {
				t.Fatalf("watch of a stopped container: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("watch did not notice the container stopped")
		}
		err := c.Watch(context.Background(), "web", WatchOptions{Emit: func(WatchEvent) error { return nil }})
		if err == nil || err.Error() != "container web is not running" {
			t.Fatalf("watch of a stopped container: %v", err)
		}
	})
}

// nextEvent returns the next event that is not noise, failing after 3 s.
func nextEvent(t *testing.T, events <-chan WatchEvent) WatchEvent {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case ev := <-events:
			if !noise(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within 3s")
			return WatchEvent{}
		}
	}
}
