// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkPassThrough compares, side by side in one run, a command run directly and through
// the shim's pass-through path. "true" is a do-nothing real podman, so the difference is the
// shim's whole cost (process start, PATH walk, execve); "podman-version" and "podman-ps" use the
// installed podman and show the overhead relative to what users actually run.
func BenchmarkPassThrough(b *testing.B) {
	bin, err := buildOnce()
	if err != nil {
		b.Fatalf("build shim: %v", err)
	}
	dir := b.TempDir()
	shimDir, trueDir := filepath.Join(dir, "shim"), filepath.Join(dir, "true")
	for _, d := range []string{shimDir, trueDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Symlink(bin, filepath.Join(shimDir, "podman")); err != nil {
		b.Fatal(err)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink(truePath, filepath.Join(trueDir, "podman")); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, path string, env []string, args ...string) {
		for b.Loop() {
			cmd := exec.Command(path, args...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%s %v: %v\n%s", path, args, err, out)
			}
		}
	}
	trueEnv := []string{"PATH=" + shimDir + ":" + trueDir}
	b.Run("true/direct", func(b *testing.B) { run(b, filepath.Join(trueDir, "podman"), trueEnv, "version") })
	b.Run("true/shim", func(b *testing.B) { run(b, filepath.Join(shimDir, "podman"), trueEnv, "version") })
	realPodman, err := exec.LookPath("podman")
	if err != nil {
		b.Log("podman not installed: skipping the real-podman comparison")
		return
	}
	realEnv := []string{"PATH=" + shimDir + ":" + filepath.Dir(realPodman) + ":/usr/bin:/bin", "HOME=" + dir}
	for _, args := range [][]string{{"version"}, {"ps"}} {
		b.Run("podman-"+args[0]+"/direct", func(b *testing.B) { run(b, realPodman, realEnv, args...) })
		b.Run("podman-"+args[0]+"/shim", func(b *testing.B) { run(b, filepath.Join(shimDir, "podman"), realEnv, args...) })
	}
}
