// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
	"github.com/terok-ai/terok-shield/state"
)

// TestStaticTier runs the static resolver tier (config.yml resolver.tier: static) end to end:
// the shim resolves the profile's names in the topology's host namespace against the test
// DNS, no dnsmasq runs, the container's /etc/hosts maps allowed.test to its public addresses
// (private.test's private answer is dropped), that address is reachable and an unlisted one
// is not; after the zone moves allowed.test, `podman shield resolve --force` loads the new
// address into the firewall and /etc/hosts and drops the old one.
func TestStaticTier(t *testing.T) {
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		cfg := filepath.Join(sp.ConfigDir, "config.yml")
		if err := os.WriteFile(cfg, []byte("resolver:\n  tier: static\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if sp.Mode == Rootless {
			if err := os.Chown(cfg, sp.H.User.UID, sp.H.User.GID); err != nil {
				t.Fatal(err)
			}
		}
		if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("static")
		if err := sp.StartShielded(ctx, name, "e2e"); err != nil {
			t.Fatal(err)
		}
		if q := n.DNS.QueriesFor("allowed.test"); len(q) == 0 {
			t.Error("the shim did not query the test DNS for allowed.test")
		}
		if _, err := os.Stat(filepath.Join(sp.Bundle(name), state.FileDnsmasqPID)); !os.IsNotExist(err) {
			t.Errorf("a resolver runs for a static-tier container (pid file: %v)", err)
		}
		hosts := containerHosts(t, ctx, sp, name)
		for _, line := range []string{testnet.BenchV4 + "\tallowed.test", testnet.BenchV6 + "\tallowed.test"} {
			if !strings.Contains(hosts, line+"\n") {
				t.Errorf("/etc/hosts lacks %q:\n%s", line, hosts)
			}
		}
		if strings.Contains(hosts, "private.test") || strings.Contains(hosts, testnet.PrivateV4) {
			t.Errorf("/etc/hosts maps private.test's private answer:\n%s", hosts)
		}
		v4 := hostsAddr(t, hosts, "allowed.test")
		runCases(t, ctx, sp, name, []netCase{
			{name: "tcp to allowed.test by /etc/hosts", args: []string{"tcp", v4 + ":80"}, want: echoed("bench4")},
			{name: "tcp unlisted", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: prohibited4},
			{name: "direct dns to the upstream", args: []string{"dns", "allowed.test", "--server", testnet.DNSV4}, want: prohibited4UDP},
		})

		// The zone moves allowed.test to the unlisted address.
		if err := n.DNS.Set("allowed.test", "allowed.test. 60 IN A "+testnet.BenchUnlistedV4); err != nil {
			t.Fatal(err)
		}
		r, err := sp.Run(ctx, "shield", "resolve", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.Stdout, "fresh") {
			t.Errorf("resolve without --force did not keep the fresh addresses:\n%s", r.Stdout)
		}
		r, err = sp.Run(ctx, "shield", "resolve", name, "--force")
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.Stdout, "Resolved 1 addresses for "+name) || !strings.Contains(r.Stdout, "allowed.test → "+testnet.BenchUnlistedV4) {
			t.Errorf("resolve --force output:\n%s", r.Stdout)
		}
		hosts = containerHosts(t, ctx, sp, name)
		if got := hostsAddr(t, hosts, "allowed.test"); got != testnet.BenchUnlistedV4 || strings.Contains(hosts, testnet.BenchV4) {
			t.Errorf("/etc/hosts after resolve --force:\n%s", hosts)
		}
		runCases(t, ctx, sp, name, []netCase{
			{name: "after resolve: tcp to allowed.test's new address", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: echoed("bench4-unlisted")},
			{name: "after resolve: tcp to the old address", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: prohibited4},
		})
	})
}

// containerHosts reads /etc/hosts as the container's mount namespace sees it.
func containerHosts(t *testing.T, ctx context.Context, sp *ShieldedPodman, name string) string {
	t.Helper()
	r, err := sp.Real.Run(ctx, "inspect", "--format", "{{.State.Pid}}", name)
	if err := mustExit(r, err, 0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/" + strings.TrimSpace(r.Stdout) + "/root/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostsAddr returns the first IPv4 address hosts maps name to.
func hostsAddr(t *testing.T, hosts, name string) string {
	t.Helper()
	for _, line := range strings.Split(hosts, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == name && !strings.Contains(f[0], ":") {
			return f[0]
		}
	}
	t.Fatalf("/etc/hosts has no IPv4 address for %s:\n%s", name, hosts)
	return ""
}
