// SPDX-License-Identifier: Apache-2.0

// Package testbin builds this module's binaries for tests and benchmarks the way they
// ship: static (CGO off) and with -trimpath. A cgo build starts ~1 ms slower and is
// dynamically linked, so measuring one would misstate every process-start figure.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
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
func Build(out, pkg string) error { return build(out, pkg) }

// BuildShield builds the terok-shield binary (package pkg, the shim) as the Makefile does:
// static, and on amd64 with its assembly entry point (EntryLDFlags).
func BuildShield(out, pkg string) error { return build(out, pkg, EntryLDFlags()...) }

// EntryLDFlags are the go build flags that link terok-shield's assembly entry point, which
// serves control.SocketHelper; empty where there is none (the nsenter path is used there).
func EntryLDFlags() []string {
	if runtime.GOARCH == "amd64" {
		return []string{"-ldflags=-E=main.nsfdEntry"}
	}
	return nil
}

func build(out, pkg string, flags ...string) error {
	args := append(append([]string{"build", "-trimpath"}, flags...), "-o", out, pkg)
	cmd := exec.Command(GoTool(), args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w: %s", pkg, err, b)
	}
	return nil
}
