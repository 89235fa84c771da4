// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/inject"
)

// runShim serves the binary when it runs under the name podman.
func runShim(args, env []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[1] == "shield" {
		return runCLI(args[2:], env, stdin, stdout, stderr)
	}
	getenv := getenvFrom(env)
	inv, perr := argparse.Parse(args[1:], argparse.Options{Version: getenv("TEROK_SHIELD_PODMAN_VERSION"), ShimFlags: []string{inject.ShimFlag}})
	if perr != nil {
		// Unparsable: podman reports its own error, unless the user asked for a shield, which
		// must never silently turn into an unshielded run.
		if getenv(inject.EnvShield) != "" || getenv(inject.EnvProfiles) != "" || hasShimFlag(args[1:]) {
			fmt.Fprintf(stderr, "terok-shield: cannot shield this command line: %v\n", perr)
			return 125
		}
		return passThrough(args, env, stderr)
	}
	if inv.Canonical != "run" && inv.Canonical != "create" {
		return passThrough(args, env, stderr)
	}
	dec, err := inject.Decide(inv, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "terok-shield: %v\n", err)
		return 125
	}
	if !dec.Shield {
		if len(dec.FlagIdx) > 0 {
			return passThrough(append(args[:1:1], inv.Rewrite(-1, nil, dec.FlagIdx...)...), env, stderr)
		}
		return passThrough(args, env, stderr)
	}
	newArgs, err := prepareShielded(inv, dec, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 125
	}
	return passThrough(append(args[:1:1], newArgs...), env, stderr)
}

func hasShimFlag(args []string) bool {
	for _, a := range args {
		if a == "--"+inject.ShimFlag || len(a) > len(inject.ShimFlag)+3 && a[:len(inject.ShimFlag)+3] == "--"+inject.ShimFlag+"=" {
			return true
		}
	}
	return false
}
