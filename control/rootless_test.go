// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/terok-ai/terok-shield/internal/testbin"
	"github.com/terok-ai/terok-shield/state"
)

// testUser is the unprivileged account the rootless tests run commands as.
const testUser = "terok-test"

// shieldBinary builds the terok-shield binary once (as the Makefile does) into a
// world-readable directory.
func shieldBinary(t testing.TB) string {
	return builtOnce(t, "terok-shield", testbin.BuildShield)
}

// plainBinary builds terok-shield without its assembly entry point (as a plain `go build`
// does), next to shieldBinary's.
func plainBinary(t testing.TB) string {
	return builtOnce(t, "terok-shield-plain", testbin.Build)
}

var (
	buildMu  sync.Mutex
	buildDir string
	builds   = map[string]error{}
)

// builtOnce builds the shim as name with build, once per test process, into a shared
// world-readable directory (the rootless user runs it).
func builtOnce(t testing.TB, name string, build func(out, pkg string) error) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "terok-shield-bin-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		buildDir = dir
	}
	out := filepath.Join(buildDir, name)
	err, done := builds[name]
	if !done {
		err = build(out, "../shim")
		builds[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rootlessSetup starts a fake rootless container of terok-test, shields it in a state root
// owned by that user and returns the uid and the state dir.
func rootlessSetup(t testing.TB) (uid int, stateDir string, fc *fakeContainer) {
	t.Helper()
	requirePrivileged(t, "setpriv", "go")
	u, err := user.Lookup(testUser)
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1" {
			t.Fatalf("rootless test needs user %s: %v", testUser, err)
		}
		t.Skipf("rootless test needs user %s: %v", testUser, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} { // testing makes them 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stateDir = filepath.Join(base, "state")
	r, err := state.OpenRoot(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fc = startContainer(t, uid)
	shield(t, r, "web", fc, nil)
	err = filepath.Walk(stateDir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
	return uid, stateDir, fc
}

// asUser returns a command running the terok-shield binary as uid with the state dir.
func asUser(t testing.TB, uid int, stateDir string, args ...string) *exec.Cmd {
	u := strconv.Itoa(uid)
	cmd := exec.Command("setpriv", append([]string{"--reuid", u, "--regid", u, "--clear-groups", "--", shieldBinary(t)}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TEROK_SHIELD_STATE_DIR=" + stateDir, "HOME=/nonexistent"}
	return cmd
}

// TestRootless runs the real binary as an unprivileged user against its own user+net
// namespace: allow, deny, status and rules go through nsenter, without sudo.
func TestRootless(t *testing.T) {
	uid, stateDir, fc := rootlessSetup(t)
	tests := []struct {
		args []string
		want string
		code int
	}{
		{[]string{"allow", "web", "203.0.113.7", "2001:db8::7"}, "Allowed 203.0.113.7 for web\nAllowed 2001:db8::7 for web\n", 0},
		{[]string{"deny", "web", "203.0.113.7"}, "Denied 203.0.113.7 for web\n", 0},
		{[]string{"status", "web"}, "up\n", 0},
		{[]string{"down", "web"}, "Shield down for web\n", 0},
		{[]string{"status", "web"}, "down\n", 0},
		{[]string{"up", "web"}, "Shield up for web\n", 0},
		{[]string{"allow", "web", "not a target"}, "", 1},
		{[]string{"allow", "web"}, "", 2},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := asUser(t, uid, stateDir, tt.args...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || (tt.code == 0 && out.String() != tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, %q", code, out.String(), errb.String(), tt.code, tt.want)
			}
			if tt.code != 0 && strings.Count(errb.String(), "\n") != 1 {
				t.Errorf("error output is not one line: %q", errb.String())
			}
		})
	}
	sets := liveSets(t, fc)
	if got := strings.Join(sets["deny_v4"], ","); got != "203.0.113.7/32" {
		t.Errorf("deny_v4 = %s", got)
	}
	if got := strings.Join(sets["allow_v6"], ","); got != "2001:db8::7/128" {
		t.Errorf("allow_v6 = %s", got)
	}
	out, err := asUser(t, uid, stateDir, "rules", "web").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "State: up\ntable inet terok_shield {") {
		t.Errorf("rules: %v\n%s", err, out)
	}
	fc.stop()
	out, _ = asUser(t, uid, stateDir, "allow", "web", "203.0.113.9").CombinedOutput()
	if got := string(out); got != "Error: container web is not running\n" {
		t.Errorf("allow on a stopped container: %q", got)
	}
}

// BenchmarkAllowRootless is `terok-shield allow C IP` as the unprivileged owner, process
// start to exit (setpriv included, see BenchmarkSetprivTrue for its share).
func BenchmarkAllowRootless(b *testing.B) {
	uid, stateDir, fc := rootlessSetup(b)
	b.ResetTimer()
	for i := range b.N {
		if out, err := asUser(b, uid, stateDir, "allow", "web", benchIP(i)).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
	b.StopTimer()
	checkTable(b, fc, b.N)
}

// BenchmarkOriginalMechanism is the original tool's live-allow step, reconstructed:
// `nsenter -t PID -U -n --preserve-credentials nft add element inet terok_shield allow_v4 { IP }`
// as the owner (the original ran it under `podman unshare`, and looked the pid up with
// `podman inspect` first: see BenchmarkPodmanInspectMissing).
func BenchmarkOriginalMechanism(b *testing.B) {
	uid, _, fc := rootlessSetup(b)
	u := strconv.Itoa(uid)
	b.ResetTimer()
	for i := range b.N {
		cmd := exec.Command("setpriv", "--reuid", u, "--regid", u, "--clear-groups", "--",
			"nsenter", "-t", strconv.Itoa(fc.pid), "-U", "-n", "--preserve-credentials",
			"nft", "add", "element", "inet", "terok_shield", "allow_v4", "{ "+benchIP(i)+" }")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}

// BenchmarkSetprivTrue is the cost of the setpriv wrapper both benchmarks above pay.
func BenchmarkSetprivTrue(b *testing.B) {
	requirePrivileged(b, "setpriv")
	for range b.N {
		if err := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--", "true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPodmanInspectMissing is a lower bound of the `podman inspect` the original ran
// before every live change (a missing container: no container store lookup hit).
func BenchmarkPodmanInspectMissing(b *testing.B) {
	if _, err := exec.LookPath("podman"); err != nil {
		b.Skip("no podman")
	}
	for range b.N {
		_ = exec.Command("podman", "inspect", "--format", "json", "terok-shield-bench-missing").Run()
	}
}

// checkTable fails unless the live table verifies against the bundle and holds n allowed
// addresses besides the profile's prefix.
func checkTable(t testing.TB, fc *fakeContainer, n int) {
	t.Helper()
	if got := allowedCount(t, fc); got != n {
		t.Errorf("live allow sets cover %d addresses, want %d", got, n)
	}
	_ = context.Background()
}

// TestRootlessSocketHelper tells the two rootless paths apart by taking nsenter away: the
// binary with its entry point works on the container's table from one process (the socket
// helper) and needs no nsenter for ruleset-only commands; a binary without it falls back to
// nsenter, and says so when there is none.
func TestRootlessSocketHelper(t *testing.T) {
	uid, stateDir, fc := rootlessSetup(t)
	noNsenter := t.TempDir() // a PATH without nsenter, but with what the commands may need
	if err := os.Chmod(noNsenter, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(bin, path string, args ...string) (string, error) {
		u := strconv.Itoa(uid)
		cmd := exec.Command("setpriv", append([]string{"--reuid", u, "--regid", u, "--clear-groups", "--", bin}, args...)...)
		cmd.Env = []string{"PATH=" + path, "TEROK_SHIELD_STATE_DIR=" + stateDir, "HOME=/nonexistent"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	fullPath := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, args := range [][]string{
		{"allow", "web", "203.0.113.21"}, {"deny", "web", "203.0.113.22"}, {"status", "web"},
		{"rules", "web"}, {"down", "web"}, {"up", "web"},
	} {
		if out, err := run(shieldBinary(t), noNsenter, args...); err != nil {
			t.Errorf("%v with the socket helper and no nsenter: %v: %s", args, err, out)
		}
	}
	sets := liveSets(t, fc)
	if !slices.Contains(sets["allow_v4"], "203.0.113.21/32") || !slices.Contains(sets["deny_v4"], "203.0.113.22/32") {
		t.Errorf("live sets after the helper's allow and deny: %v", sets)
	}
	out, err := run(plainBinary(t), noNsenter, "allow", "web", "203.0.113.23")
	if err == nil || !strings.Contains(out, "reached through nsenter") {
		t.Errorf("without the entry point and without nsenter: %v: %q, want the nsenter error", err, out)
	}
	if out, err := run(plainBinary(t), fullPath, "allow", "web", "203.0.113.23"); err != nil {
		t.Errorf("without the entry point, through nsenter: %v: %s", err, out)
	}
	if sets := liveSets(t, fc); !slices.Contains(sets["allow_v4"], "203.0.113.23/32") {
		t.Errorf("allow_v4 after the nsenter fallback's allow: %v", sets["allow_v4"])
	}
}
