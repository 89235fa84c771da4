// SPDX-License-Identifier: Apache-2.0

// Command terok-shield is a default-deny egress firewall for Podman containers. One static
// binary plays several parts, chosen by the name it was started under and its first argument:
//
//   - as `podman` (a symlink earlier on PATH) it is the shim: shielded run/create invocations get
//     what the firewall needs injected, everything else is handed to the real podman unchanged
//     with execve (same PID, argv byte for byte, exit code, signals and TTY);
//   - as /run/podman-init inside a shielded container it is the gate that refuses to start the
//     workload unless the firewall hook ran for this start;
//   - as `terok-shield hook STAGE` it is the OCI runtime hook;
//   - as `terok-shield CMD` (and `podman shield CMD`) it serves the control commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/control"
	"github.com/terok-ai/terok-shield/gate"
	"github.com/terok-ai/terok-shield/hook"
)

func main() {
	os.Exit(run(os.Args, os.Environ(), os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches on the personality and returns the process exit code. Paths that hand over
// to another program (pass-through, gate) do not return on success.
func run(args, env []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "terok-shield: empty argument vector")
		return 2
	}
	switch {
	case args[0] == gate.InitPath:
		return gate.Main(args, stderr)
	case filepath.Base(args[0]) == "podman":
		return runShim(args, env, stdin, stdout, stderr)
	case len(args) == 3 && args[1] == "hook":
		return runHookFast(args[2], stdin, stderr)
	case len(args) == 2 && args[1] == control.SocketHelper:
		// Reached only when the assembly entry point is not linked in (see nsfdEntry): the
		// caller falls back to its nsenter path.
		fmt.Fprintln(stderr, "terok-shield: built without the namespace entry point (-ldflags=-E=main.nsfdEntry)")
		return control.SocketHelperMissing
	case len(args) == 2 && args[1] == control.OpCommand:
		return exitCode(control.ServeOp(context.Background(), stdin, stdout), stderr)
	}
	return runCLI(args[1:], env, stdin, stdout, stderr)
}

// runHookFast serves `terok-shield hook STAGE` without building the command tree: the hook sits
// in every container start. The output matches the cobra path's.
func runHookFast(stage string, stdin io.Reader, stderr io.Writer) int {
	err := hook.Run(context.Background(), stage, hook.Env{Stdin: stdin})
	if err != nil {
		err = fmt.Errorf("terok-shield hook %s: %w", stage, err)
	}
	return exitCode(err, stderr)
}

// exitCode prints err once, like runCLI, and maps it to the process exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return 1
}

// getenvFrom returns a lookup function over an environment slice (last assignment wins, like
// the C library).
func getenvFrom(env []string) func(string) string {
	return func(key string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], key+"="); ok {
				return v
			}
		}
		return ""
	}
}

// passThrough replaces this process with the real podman, argv and environment unchanged but
// for the loop-guard variable.
func passThrough(args, env []string, stderr io.Writer) int {
	getenv := getenvFrom(env)
	pid := os.Getpid()
	if loopDetected(getenv, pid) {
		fmt.Fprintln(stderr, errLoop)
		return 125
	}
	self, err := os.Executable()
	if err != nil {
		self = ""
	}
	real, err := findRealPodman(getenv, self)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 127
	}
	argv := append([]string{args[0]}, args[1:]...)
	err = unix.Exec(real, argv, withShimPID(env, pid))
	fmt.Fprintf(stderr, "terok-shield: exec %s: %v\n", real, err)
	return 126
}
