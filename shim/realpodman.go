// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Environment variables that steer the pass-through path.
const (
	// envPodman names the real podman binary explicitly, skipping the PATH walk.
	envPodman = "TEROK_SHIELD_PODMAN"
	// envShimPID carries the PID of the shim process that exec'd the real podman. exec keeps
	// the PID, so finding our own PID here means an exec chain led straight back to us: a loop.
	envShimPID = "TEROK_SHIELD_SHIM_PID"
)

// errLoop reports that the "real" podman turned out to lead back to this shim.
var errLoop = errors.New("terok-shield: podman resolves back to the terok-shield shim (exec loop); set TEROK_SHIELD_PODMAN to the real podman binary")

// findRealPodman returns the podman binary the shim hands over to: $TEROK_SHIELD_PODMAN if set,
// else the first executable named podman on PATH that is not this binary (compared with
// os.SameFile, so symlinks and hard links to the shim are skipped).
func findRealPodman(getenv func(string) string, self string) (string, error) {
	selfInfo, selfErr := os.Stat(self)
	isSelf := func(path string) bool {
		if selfErr != nil {
			return false
		}
		fi, err := os.Stat(path)
		return err == nil && os.SameFile(fi, selfInfo)
	}
	if p := getenv(envPodman); p != "" {
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("terok-shield: %s=%q must be an absolute path", envPodman, p)
		}
		if isSelf(p) {
			return "", errLoop
		}
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("terok-shield: %s: %w", envPodman, err)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(getenv("PATH")) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // like exec.LookPath, never resolve podman relative to the working directory
		}
		p := filepath.Join(dir, "podman")
		if checkExecutable(p) != nil || isSelf(p) {
			continue
		}
		return p, nil
	}
	return "", errors.New("terok-shield: no real podman found on PATH after the shim; install podman or set TEROK_SHIELD_PODMAN")
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// loopDetected reports whether this process was exec'd by itself through the real-podman path.
func loopDetected(getenv func(string) string, pid int) bool {
	v := getenv(envShimPID)
	return v != "" && v == strconv.Itoa(pid)
}

// withShimPID returns env with envShimPID set to pid, replacing an earlier value.
func withShimPID(env []string, pid int) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, envShimPID+"=") {
			out = append(out, kv)
		}
	}
	return append(out, envShimPID+"="+strconv.Itoa(pid))
}
