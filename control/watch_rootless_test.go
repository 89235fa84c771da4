// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/netnstest"
)

// watchProc is a running `terok-shield watch` of the test user.
type watchProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr bytes.Buffer
	done   chan error
}

func startWatch(t *testing.T, uid int, stateDir string, args ...string) *watchProc {
	t.Helper()
	w := &watchProc{cmd: asUser(t, uid, stateDir, append([]string{"watch", "web"}, args...)...), lines: make(chan string, 64), done: make(chan error, 1)}
	w.cmd.Stderr = &w.stderr
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.done <- w.cmd.Wait()
	}()
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	return w
}

// wait returns the exit code, failing after 5 s.
func (w *watchProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-w.done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not exit within 5s")
		return -1
	}
}

// TestWatchRootless runs the real binary as the unprivileged owner of a fake rootless container:
// the packet log is read by the __netns-watch child under nsenter, without sudo.
func TestWatchRootless(t *testing.T) {
	uid, stateDir, fc := rootlessSetup(t)
	requirePrivileged(t, "ip", "sysctl")
	netnstest.Require(t)
	_, ctr := linkWan(t, fc, false)
	writeQueryLog(t, filepath.Join(stateDir, "containers", "web"), uid, "reply blocked.test is "+wUnlisted4.String())
	quick := netnstest.ProbeOptions{Timeout: 100 * time.Millisecond}
	// ping until the watch has printed a line (it is then listening) or it ended.
	firstLine := func(w *watchProc) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			ctr.ProbePingWith(wUnlisted4, quick)
			select {
			case l, ok := <-w.lines:
				if !ok {
					t.Fatalf("watch ended without output: %s", w.stderr.String())
				}
				return l
			case <-deadline:
				t.Fatal("no event within 10s")
			default:
			}
		}
	}
	checkLine := func(t *testing.T, line string) {
		t.Helper()
		var ev WatchEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ev.Container != "web" || ev.Action != "blocked" || ev.Proto != "icmp" || ev.Dst != wUnlisted4 ||
			ev.Src != wLinkCtr4.Addr() || ev.Domain != "blocked.test" || ev.Dir != "out" {
			t.Errorf("event %s", line)
		}
	}

	t.Run("count", func(t *testing.T) {
		w := startWatch(t, uid, stateDir, "-n", "2")
		checkLine(t, firstLine(w))
		for range 20 {
			ctr.ProbePingWith(wUnlisted4, quick)
		}
		if code := w.wait(t); code != 0 {
			t.Fatalf("exit %d: %s", code, w.stderr.String())
		}
		var rest []string
		for l := range w.lines {
			rest = append(rest, l)
		}
		if len(rest) != 1 {
			t.Fatalf("watch -n 2 printed %d more lines, want 1: %q", len(rest), rest)
		}
		checkLine(t, rest[0])
	})

	t.Run("one watch at a time, interrupt", func(t *testing.T) {
		w := startWatch(t, uid, stateDir)
		checkLine(t, firstLine(w))
		out, err := asUser(t, uid, stateDir, "watch", "web").CombinedOutput()
		if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), "another watch is already reading") || strings.Count(string(out), "\n") != 1 {
			t.Errorf("second watch: exit %d: %q", code, out)
		}
		if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := w.wait(t); code != 0 {
			t.Fatalf("exit %d after SIGINT: %s", code, w.stderr.String())
		}
		// The listener is gone with the child: a new watch can bind again.
		w = startWatch(t, uid, stateDir, "-n", "1")
		checkLine(t, firstLine(w))
		if code := w.wait(t); code != 0 {
			t.Fatalf("exit %d: %s", code, w.stderr.String())
		}
	})

	t.Run("container stops", func(t *testing.T) {
		w := startWatch(t, uid, stateDir)
		checkLine(t, firstLine(w))
		fc.stop()
		if code := w.wait(t); code != 1 || w.stderr.String() != "Error: container web is not running\n" {
			t.Fatalf("exit %d: %q", code, w.stderr.String())
		}
	})
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}
