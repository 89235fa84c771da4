// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// requirePrivileged skips (or, in CI, fails) when the test cannot create
// network namespaces and program nftables.
func requirePrivileged(t testing.TB) {
	t.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root (euid 0)"
	default:
		if _, err := exec.LookPath("nft"); err != nil {
			missing = "the nft binary (used only to cross-check listings)"
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

// newNetNS creates a network namespace held by a locked thread for the
// duration of the test and returns a Target pointing at it.
func newNetNS(t testing.TB) Target {
	t.Helper()
	requirePrivileged(t)
	target, release, err := openNetNS()
	if err != nil {
		t.Fatalf("unshare netns: %v", err)
	}
	t.Cleanup(release)
	return target
}

// openNetNS creates a network namespace kept alive by a locked thread until
// release is called; the thread then exits and takes the namespace with it.
func openNetNS() (target Target, release func(), err error) {
	type result struct {
		path string
		err  error
	}
	ready := make(chan result, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- result{err: err}
			return
		}
		ready <- result{path: fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())}
		<-done
	}()
	r := <-ready
	if r.err != nil {
		return Target{}, nil, r.err
	}
	return Target{NetNSPath: r.path}, func() { close(done) }, nil
}

// nftIn runs the nft binary inside target's namespace (test cross-checks only).
func nftIn(t testing.TB, target Target, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + target.NetNSPath, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
