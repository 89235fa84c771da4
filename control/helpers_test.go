// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/nft"
	"github.com/terok-ai/terok-shield/state"

	goldenfile "github.com/terok-ai/terok-shield/internal/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMain lets the test binary serve OpCommand, as the real binary does under nsenter.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == OpCommand {
		if err := ServeOp(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// requirePrivileged skips (or, in CI, fails) unless the test runs as root with the tools the
// fake containers need.
func requirePrivileged(t testing.TB, tools ...string) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root (euid 0)"
	}
	for _, tool := range append([]string{"unshare", "nsenter"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil && missing == "" {
			missing = tool
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("privileged test needs %s", missing)
	}
	t.Skipf("privileged test needs %s", missing)
}

// fakeContainer is a sleeping process in its own network namespace (and, rootless, in a user
// namespace owned by another user), standing in for a container's init.
type fakeContainer struct {
	pid int
	id  state.NetNSIdentity
	cmd *exec.Cmd
}

func (fc *fakeContainer) netns() string { return "/proc/" + strconv.Itoa(fc.pid) + "/ns/net" }

func (fc *fakeContainer) stop() {
	_ = fc.cmd.Process.Kill()
	_ = fc.cmd.Wait()
}

// startContainer starts a fake container; uid > 0 makes it rootless for that user.
func startContainer(t testing.TB, uid int) *fakeContainer {
	t.Helper()
	var cmd *exec.Cmd
	if uid > 0 {
		cmd = exec.Command("setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(uid), "--clear-groups",
			"unshare", "--user", "--map-root-user", "--net", "sleep", "600")
	} else {
		cmd = exec.Command("unshare", "--net", "sleep", "600")
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fake container: %v", err)
	}
	fc := &fakeContainer{pid: cmd.Process.Pid, cmd: cmd}
	t.Cleanup(fc.stop)
	own, err := netnsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(fc.pid) + "/comm")
		ino, err := netnsInode(fc.netns())
		if err == nil && ino != own && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake container %d did not enter its namespaces", fc.pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if fc.id, err = state.CurrentIdentity(fc.pid, fmt.Sprintf("%064x", fc.pid)); err != nil {
		t.Fatal(err)
	}
	// lo up, as a runtime does.
	if out, err := exec.Command("nsenter", "--target", strconv.Itoa(fc.pid), "--net", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return fc
}

// newRoot opens a state root in a fresh directory.
func newRoot(t testing.TB) *state.Root {
	t.Helper()
	r, err := state.OpenRoot(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		if !strings.Contains(s, "/") {
			a := netip.MustParseAddr(s)
			out[i] = netip.PrefixFrom(a, a.BitLen())
			continue
		}
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// shield writes a bundle for fc (as the shim and the hook would) and applies its table.
func shield(t testing.TB, r *state.Root, name string, fc *fakeContainer, edit func(*state.Data)) {
	t.Helper()
	b, err := r.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var d state.Data
	err = b.Update(func(x *state.Data) error {
		x.Profiles = []string{"base"}
		x.Resolved = state.Entries{Prefixes: pfx("198.51.100.0/24")}
		x.Mode = state.ModeUp
		x.Resolver = state.Resolver{Tier: state.TierStatic}
		if fc != nil {
			id := fc.id
			x.NetNS = &id
		}
		if edit != nil {
			edit(x)
		}
		d = *x
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fc == nil {
		return
	}
	p, err := hook.PolicyFor(&d)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := nft.Build(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := nft.Apply(context.Background(), nft.Target{NetNSPath: fc.netns()}, rs); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// liveSets returns the live set contents of fc's table.
func liveSets(t testing.TB, fc *fakeContainer) map[string][]string {
	t.Helper()
	st, err := nft.Inspect(context.Background(), nft.Target{NetNSPath: fc.netns()})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, s := range st.Sets {
		out[s.Name] = []string{}
		for _, e := range s.Elements {
			out[s.Name] = append(out[s.Name], e.Prefix.String())
		}
	}
	return out
}

func loadData(t testing.TB, r *state.Root, name string) *state.Data {
	t.Helper()
	b, err := r.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	d, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got, *update)
}
