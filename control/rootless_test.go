// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/terok-ai/terok-shield/internal/testbin"
	"github.com/terok-ai/terok-shield/state"
)

// testUser is the unprivileged account the rootless tests run commands as.
const testUser = "terok-test"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// shieldBinary builds the terok-shield binary once into a world-readable directory.
func shieldBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "terok-shield-bin-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		buildErr = testbin.Build(filepath.Join(buildDir, "terok-shield"), "../shim")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "terok-shield")
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
