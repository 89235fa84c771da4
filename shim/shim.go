// SPDX-License-Identifier: Apache-2.0

package main

import "io"

// runShim serves the binary when it runs under the name podman.
func runShim(args, env []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[1] == "shield" {
		return runCLI(args[2:], env, stdin, stdout, stderr)
	}
	return passThrough(args, env, stderr)
}
