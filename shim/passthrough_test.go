// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/testbin"
)

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "terok-shield-shimtest-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "terok-shield")
	return bin, testbin.BuildShield(bin, ".")
})

// shimEnv builds a PATH with the shim (as podman) first and a fake real podman after it.
// The fake prints its PID and each argument on its own line, then exits with $FAKE_EXIT.
func shimEnv(t *testing.T) (shimPodman string, env []string) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatalf("build shim: %v", err)
	}
	dir := t.TempDir()
	shimDir, realDir := filepath.Join(dir, "shim"), filepath.Join(dir, "real")
	for _, d := range []string{shimDir, realDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shimPodman = filepath.Join(shimDir, "podman")
	if err := os.Symlink(bin, shimPodman); err != nil {
		t.Fatal(err)
	}
	fake := "#!/bin/sh\necho \"pid=$$\"\nfor a in \"$@\"; do printf 'arg=%s\\n' \"$a\"; done\nexit ${FAKE_EXIT:-0}\n"
	if err := os.WriteFile(filepath.Join(realDir, "podman"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	return shimPodman, []string{"PATH=" + shimDir + ":" + realDir + ":/usr/bin:/bin", "FAKE_EXIT=42"}
}

func TestPassThroughIsExecWithIdenticalArgv(t *testing.T) {
	shimPodman, env := shimEnv(t)
	tests := [][]string{
		{"version"},
		{"ps", "-a", "--format", "{{.Names}}"},
		{"run", "--rm", "-it", "alpine", "sh", "-c", "echo 'a b'\n$HOME"},
		{"--log-level=debug", "images"},
		{"__complete", "run", ""},
		{"", " ", "--", "-x"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			cmd := exec.Command(shimPodman, args...)
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 42 {
				t.Fatalf("podman %q: err %v, want exit 42 (stderr %q)", args, err, stderr.String())
			}
			lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
			if want := "pid=" + strconv.Itoa(cmd.Process.Pid); lines[0] != want {
				t.Errorf("real podman ran as %s, want %s (same PID: execve, no child)", lines[0], want)
			}
			var got []string
			for _, l := range lines[1:] {
				got = append(got, strings.TrimPrefix(l, "arg="))
			}
			if len(args) == 0 {
				args = nil
			}
			// printf splits embedded newlines into lines; compare against the same split.
			want := strings.Split(strings.Join(args, "\n"), "\n")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("argv seen by the real podman (-want +got):\n%s", diff)
			}
			if stderr.Len() != 0 {
				t.Errorf("shim wrote to stderr: %q", stderr.String())
			}
		})
	}
}

func TestPassThroughRefusesLoop(t *testing.T) {
	shimPodman, env := shimEnv(t)
	bin, _ := buildOnce()
	cmd := exec.Command(shimPodman, "version")
	cmd.Env = append(env, "TEROK_SHIELD_PODMAN="+bin)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "loop") {
		t.Fatalf("TEROK_SHIELD_PODMAN pointing at the shim: err %v, output %q; want a loop error", err, out)
	}
}

func TestPassThroughNoRealPodman(t *testing.T) {
	shimPodman, _ := shimEnv(t)
	cmd := exec.Command(shimPodman, "version")
	cmd.Env = []string{"PATH=" + filepath.Dir(shimPodman)}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 127 || !strings.Contains(string(out), "no real podman") {
		t.Fatalf("no real podman on PATH: err %v, output %q; want exit 127 and a clear message", err, out)
	}
}

func TestShieldSubcommandIsServedByTheShim(t *testing.T) {
	shimPodman, env := shimEnv(t)
	cmd := exec.Command(shimPodman, "shield", "preview", "--block")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman shield preview --block: %v", err)
	}
	if !strings.Contains(string(out), "table inet terok_shield") || strings.Contains(string(out), "pid=") {
		t.Errorf("podman shield preview printed %q; want the ruleset from the shim, not the real podman", out)
	}
}
