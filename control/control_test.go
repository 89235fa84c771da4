// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/state"
)

func TestFind(t *testing.T) {
	r := newRoot(t)
	ids := map[string]string{"web": "abc123def", "db": "abd999000", "plain": ""}
	for name, id := range ids {
		b, err := r.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		err = b.Update(func(d *state.Data) error {
			if id != "" {
				d.NetNS = &state.NetNSIdentity{PID: 1, ContainerID: id}
			}
			return nil
		})
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	c := New(r)
	tests := []struct {
		query, want, err string
	}{
		{query: "web", want: "web"},
		{query: "plain", want: "plain"},
		{query: "abc123def", want: "web"},
		{query: "abd", want: "db"},
		{query: "abc1", want: "web"},
		{query: "ab", err: `container ID prefix "ab" is ambiguous: db, web`},
		{query: "nope", err: `no shielded container "nope"`},
		{query: "../etc", err: `no shielded container "../etc"`},
		{query: "", err: "empty container name"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := c.Find(tt.query)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Find(%q) = %q, %v; want error %q", tt.query, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Find(%q) = %q, %v; want %q", tt.query, got, err, tt.want)
			}
		})
	}
}

func TestParseTargets(t *testing.T) {
	tests := []struct {
		in   []string
		want []string // Entry.String of each, or the error
		err  bool
	}{
		{in: []string{"203.0.113.7"}, want: []string{"203.0.113.7"}},
		{in: []string{"198.51.100.0/24", "2001:db8::/32"}, want: []string{"198.51.100.0/24", "2001:db8::/32"}},
		{in: []string{"Example.COM", "*.example.org"}, want: []string{"example.com", "*.example.org"}},
		{in: []string{"::ffff:203.0.113.7"}, want: []string{"203.0.113.7"}},
		{in: []string{"example.com", "bad_name!"}, err: true},
		{in: []string{"203.0.113.7:443"}, err: true},
		{in: []string{"198.51.100.1/24"}, want: []string{"198.51.100.0/24"}},
		{in: []string{"*.com"}, err: true},
		{in: nil, err: true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, ","), func(t *testing.T) {
			es, err := ParseTargets(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseTargets(%q) = %v, want error", tt.in, es)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestFormatGoldens(t *testing.T) {
	changes := []Change{
		{Container: "web", Action: "allow", Target: "example.com", Kind: "domain", IPs: []string{"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"}, Changed: true},
		{Container: "web", Action: "allow", Target: "203.0.113.7", Kind: "ip", IPs: []string{"203.0.113.7"}, Changed: true},
		{Container: "web", Action: "allow", Target: "*.example.org", Kind: "wildcard", Changed: false},
		{Container: "web", Action: "allow", Target: "example.net", Kind: "domain", Changed: true, Notes: []string{"example.net: no addresses yet (timeout)"}},
		{Container: "web", Action: "deny", Target: "198.51.100.0/24", Kind: "cidr", IPs: []string{"198.51.100.0/24"}, Changed: true},
		{Container: "web", Action: "deny", Target: "example.com", Kind: "domain", IPs: []string{"93.184.215.14"}, Changed: true},
	}
	ts := time.Date(2026, 3, 7, 12, 0, 0, 123e6, time.UTC)
	var human bytes.Buffer
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(WriteChanges(&human, changes))
	for _, m := range []string{"up", "down", "down_all", "block"} {
		must(WriteModeChange(&human, &ModeChange{Container: "web", From: "up", Mode: m}))
	}
	must(WriteStatus(&human, &ContainerStatus{Container: "web", State: "up", Mode: "up"}))
	must(WriteStatus(&human, &ContainerStatus{Container: "web", State: "up", Mode: "up", ResolverState: ResolverRestarted}))
	must(WriteStatus(&human, &ContainerStatus{Container: "web", State: "down", Mode: "down", ResolverState: ResolverDead, ResolverError: "dnsmasq failed to start"}))
	must(WriteStatus(&human, &ContainerStatus{Container: "web", State: StateError, Mode: "up", Detail: "verify table: 1 difference(s): set allow_v4: 1 unexpected element(s): 203.0.113.9"}))
	must(WriteRules(&human, &ContainerStatus{Container: "web", State: StateInactive, Detail: "container is not running"}))
	must(WriteGlobal(&human, &GlobalStatus{Version: "v1.0.0", StateDir: "/state", Hooks: "installed", HooksDir: "/state/hooks.d", ResolverTier: "dnsmasq", ResolverDetail: "/usr/sbin/dnsmasq", Profiles: []string{"base", "dev-standard"}, Containers: []string{"web"}}))
	must(WriteEvent(&human, audit.Event{V: 1, TS: ts, Container: "web", Action: audit.ActionAllow, Target: "example.com", IPs: []string{"93.184.215.14"}, Source: "cli"}))
	must(WriteEvent(&human, audit.Event{V: 1, TS: ts, Container: "web", Action: audit.ActionDown, Mode: "down_all", Detail: "from up"}))
	must(WriteChecks(&human, []Check{{Name: "podman", OK: true, Detail: "/usr/bin/podman"}, {Name: "OCI hooks", Detail: "missing", Fix: "run a shielded container"}}))
	golden(t, "human.golden", human.String())

	js, err := json.MarshalIndent(map[string]any{
		"changes": changes,
		"mode":    ModeChange{Container: "web", From: "up", Mode: "down"},
		"status":  ContainerStatus{Container: "web", ID: "abc", State: "up", Mode: "up", Profiles: []string{"base"}, Resolver: "dnsmasq", ResolverState: ResolverRunning, Sets: []SetContent{{Name: "allow_v4", Elements: []string{"203.0.113.7"}}}},
		"checks":  []Check{{Name: "podman", OK: true, Detail: "/usr/bin/podman"}},
	}, "", "  ")
	must(err)
	golden(t, "json.golden", string(js)+"\n")
}

// TestChangesRootful drives allow, deny and the mode switches against a fake rootful
// container and checks the kernel table, the bundle and the audit log after each step.
func TestChangesRootful(t *testing.T) {
	requirePrivileged(t)
	ctx := context.Background()
	r := newRoot(t)
	fc := startContainer(t, 0)
	shield(t, r, "web", fc, nil)
	c := New(r)

	steps := []struct {
		name     string
		do       func() (string, error)
		state    string
		sets     map[string][]string
		allow    []netip.Prefix
		deny     []netip.Prefix
		auditAct audit.Action
	}{
		{name: "allow ip and cidr", do: func() (string, error) { return changes(c.Allow(ctx, "web", []string{"203.0.113.7", "192.0.2.0/28"})) },
			state: "up", sets: map[string][]string{"allow_v4": {"203.0.113.7/32"}, "allow_net_v4": {"192.0.2.0/28", "198.51.100.0/24"}},
			allow: pfx("192.0.2.0/28", "203.0.113.7"), auditAct: audit.ActionAllow},
		{name: "deny moves the address", do: func() (string, error) { return changes(c.Deny(ctx, fc.id.ContainerID[:12], []string{"203.0.113.7"})) },
			state: "up", sets: map[string][]string{"allow_v4": {}, "deny_v4": {"203.0.113.7/32"}},
			allow: pfx("192.0.2.0/28"), deny: pfx("203.0.113.7"), auditAct: audit.ActionDeny},
		{name: "deny inside a profile prefix", do: func() (string, error) { return changes(c.Deny(ctx, "web", []string{"198.51.100.0/25"})) },
			state: "up", sets: map[string][]string{"allow_net_v4": {"192.0.2.0/28", "198.51.100.0/24"}, "deny_v4": {"198.51.100.0/25", "203.0.113.7/32"}},
			allow: pfx("192.0.2.0/28"), deny: pfx("198.51.100.0/25", "203.0.113.7"), auditAct: audit.ActionDeny},
		{name: "allow again", do: func() (string, error) { return changes(c.Allow(ctx, "web", []string{"203.0.113.7"})) },
			state: "up", sets: map[string][]string{"allow_v4": {"203.0.113.7/32"}, "deny_v4": {"198.51.100.0/25"}},
			allow: pfx("192.0.2.0/28", "203.0.113.7"), deny: pfx("198.51.100.0/25"), auditAct: audit.ActionAllow},
		{name: "down", do: func() (string, error) { return mode(c.SetMode(ctx, "web", state.ModeDown)) },
			state: "down", sets: map[string][]string{"allow_v4": {"203.0.113.7/32"}, "deny_v4": {"198.51.100.0/25"}},
			allow: pfx("192.0.2.0/28", "203.0.113.7"), deny: pfx("198.51.100.0/25"), auditAct: audit.ActionDown},
		{name: "down all", do: func() (string, error) { return mode(c.SetMode(ctx, "web", state.ModeDownAll)) },
			state: "down_all", allow: pfx("192.0.2.0/28", "203.0.113.7"), deny: pfx("198.51.100.0/25"), auditAct: audit.ActionDown},
		{name: "block", do: func() (string, error) { return mode(c.SetMode(ctx, "web", state.ModeBlock)) },
			state: "block", sets: map[string][]string{}, allow: pfx("192.0.2.0/28", "203.0.113.7"), deny: pfx("198.51.100.0/25"), auditAct: audit.ActionBlock},
		{name: "allow while blocked persists", do: func() (string, error) { return changes(c.Allow(ctx, "web", []string{"203.0.113.8"})) },
			state: "block", sets: map[string][]string{}, allow: pfx("192.0.2.0/28", "203.0.113.7", "203.0.113.8"), deny: pfx("198.51.100.0/25"), auditAct: audit.ActionAllow},
		{name: "up", do: func() (string, error) { return mode(c.SetMode(ctx, "web", state.ModeUp)) },
			state: "up", sets: map[string][]string{"allow_v4": {"203.0.113.7/32", "203.0.113.8/32"}},
			allow: pfx("192.0.2.0/28", "203.0.113.7", "203.0.113.8"), deny: pfx("198.51.100.0/25"), auditAct: audit.ActionUp},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if _, err := s.do(); err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(ctx, "web")
			if err != nil {
				t.Fatal(err)
			}
			if st.State != s.state {
				t.Fatalf("state %q (%s), want %q", st.State, st.Detail, s.state)
			}
			live := liveSets(t, fc)
			for set, want := range s.sets {
				if diff := cmp.Diff(want, live[set]); diff != "" {
					t.Errorf("set %s (-want +got):\n%s", set, diff)
				}
			}
			d := loadData(t, r, "web")
			if diff := cmp.Diff(s.allow, d.Allow.Prefixes, cmpPrefixes); diff != "" {
				t.Errorf("bundle allow (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(s.deny, d.Deny.Prefixes, cmpPrefixes); diff != "" {
				t.Errorf("bundle deny (-want +got):\n%s", diff)
			}
			ev, err := c.Logs("web", 1)
			if err != nil || len(ev) != 1 || ev[0].Action != s.auditAct {
				t.Errorf("last audit event %+v, %v; want action %s", ev, err, s.auditAct)
			}
		})
	}
	t.Run("rules", func(t *testing.T) {
		st, err := c.Rules(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		if st.State != "up" || !strings.Contains(st.Listing, "table inet terok_shield {") || !strings.Contains(st.Listing, "203.0.113.8") {
			t.Errorf("rules: state %q, listing:\n%s", st.State, st.Listing)
		}
	})
}

var cmpPrefixes = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func changes(cs []Change, err error) (string, error) {
	var b bytes.Buffer
	if err == nil {
		err = WriteChanges(&b, cs)
	}
	return b.String(), err
}

func mode(mc *ModeChange, err error) (string, error) {
	var b bytes.Buffer
	if err == nil {
		err = WriteModeChange(&b, mc)
	}
	return b.String(), err
}

// TestRefusals: a bad target, an unknown, stopped or unshielded container is an error that
// changes nothing.
func TestRefusals(t *testing.T) {
	requirePrivileged(t)
	ctx := context.Background()
	r := newRoot(t)
	fc := startContainer(t, 0)
	shield(t, r, "web", fc, nil)
	stopped := startContainer(t, 0)
	shield(t, r, "gone", stopped, nil)
	stopped.stop()
	shield(t, r, "never", nil, nil)
	if _, err := r.Create("bare"); err != nil {
		t.Fatal(err)
	}
	c := New(r)
	tests := []struct {
		name, container, target, err string
	}{
		{"bad target", "web", "300.1.2.3", "bad target"},
		{"unknown", "nope", "203.0.113.7", `no shielded container "nope"`},
		{"stopped", "gone", "203.0.113.7", "container gone is not running"},
		{"never started", "never", "203.0.113.7", "container never is not running"},
		{"unshielded", "bare", "203.0.113.7", "container bare is not shielded"},
		{"unresolvable name on static tier", "web", "example.com", "allow example.com: cannot resolve it (static resolver tier)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotDir(t, r.Dir())
			_, err := c.Allow(ctx, tt.container, []string{"203.0.113.9", tt.target})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Allow: %v, want %q", err, tt.err)
			}
			if diff := cmp.Diff(before, snapshotDir(t, r.Dir())); diff != "" {
				t.Errorf("state changed (-before +after):\n%s", diff)
			}
		})
	}
	if got := liveSets(t, fc)["allow_v4"]; len(got) != 0 {
		t.Errorf("allow_v4 = %v after refused changes", got)
	}
	st, err := c.Status(ctx, "gone")
	if err != nil || st.State != StateInactive {
		t.Errorf("status of stopped container: %+v, %v", st, err)
	}
}

// snapshotDir maps every regular file under dir (but the lock files) to its content.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasSuffix(p, "lock") {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConcurrentAllows: commands on one container serialise on the bundle lock; none is lost.
func TestConcurrentAllows(t *testing.T) {
	requirePrivileged(t)
	ctx := context.Background()
	r := newRoot(t)
	fc := startContainer(t, 0)
	shield(t, r, "web", fc, nil)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root, err := state.OpenRoot(filepath.Dir(r.Dir() + "/x"))
			if err != nil {
				errs <- err
				return
			}
			defer root.Close()
			_, err = New(root).Allow(ctx, "web", []string{fmt.Sprintf("203.0.113.%d", i+1)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := allowedCount(t, fc); got != n {
		t.Errorf("live allow sets cover %d addresses, want %d", got, n)
	}
	if d := loadData(t, r, "web"); len(d.Allow.Prefixes) != n {
		t.Errorf("bundle has %d allowed prefixes, want %d", len(d.Allow.Prefixes), n)
	}
	st, err := New(r).Status(ctx, "web")
	if err != nil || st.State != "up" {
		t.Errorf("status %+v, %v", st, err)
	}
}

// TestThousandAllows: 1,000 allows in a loop leave the table exactly as the bundle says.
func TestThousandAllows(t *testing.T) {
	requirePrivileged(t)
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	r := newRoot(t)
	fc := startContainer(t, 0)
	shield(t, r, "web", fc, nil)
	c := New(r)
	start := time.Now()
	for i := range 1000 {
		ip := fmt.Sprintf("100.64.%d.%d", i/128, 2*(i%128)) // not adjacent: stay single addresses
		if _, err := c.Allow(ctx, "web", []string{ip}); err != nil {
			t.Fatalf("allow %d: %v", i, err)
		}
	}
	t.Logf("1000 allows in-process (rootful): %v", time.Since(start))
	st, err := c.Status(ctx, "web")
	if err != nil || st.State != "up" {
		t.Fatalf("status %+v, %v", st, err)
	}
	if got := allowedCount(t, fc); got != 1000 {
		t.Errorf("live allow sets cover %d addresses, want 1000", got)
	}
	ev, err := c.Logs("web", 0)
	if err != nil || len(ev) != 1000 {
		t.Errorf("audit has %d events, %v; want 1000", len(ev), err)
	}
}

func TestDoctorProbe(t *testing.T) {
	requirePrivileged(t)
	c := New(newRoot(t))
	checks := c.Doctor(context.Background(), DoctorEnv{Podman: "/usr/bin/podman"})
	for _, ch := range checks {
		if strings.HasPrefix(ch.Name, "nftables") && !ch.OK {
			t.Errorf("%s: %s", ch.Name, ch.Detail)
		}
		if !ch.OK && ch.Fix == "" {
			t.Errorf("%s failed without a fix", ch.Name)
		}
	}
}

// allowedCount counts the addresses the live allow sets cover (adjacent single addresses are
// merged into prefixes by the bundle's derivation).
func allowedCount(t testing.TB, fc *fakeContainer) int {
	t.Helper()
	n := 0
	for set, es := range liveSets(t, fc) {
		if set != "allow_v4" && set != "allow_net_v4" {
			continue
		}
		for _, e := range es {
			p := netip.MustParsePrefix(e)
			if p.Bits() <= 24 {
				continue // the profile's prefix
			}
			n += 1 << (32 - p.Bits())
		}
	}
	return n
}
