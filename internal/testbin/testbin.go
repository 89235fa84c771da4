// SPDX-License-Identifier: Apache-2.0

// Package testbin builds this module's binaries for tests and benchmarks the way they
// ship: static (CGO off) and with -trimpath. A cgo build starts ~1 ms slower and is
// dynamically linked, so measuring one would misstate every process-start figure.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
)

// GoTool finds the go command (PATH, then /usr/local/go/bin).
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// Build builds package pkg (an import path, or a directory relative to the caller's
// working directory) as a static binary at out.
func Build(out, pkg string) error {
	cmd := exec.Command(GoTool(), "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w: %s", pkg, err, b)
	}
	return nil
}
