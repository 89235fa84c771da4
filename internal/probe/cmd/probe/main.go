// SPDX-License-Identifier: Apache-2.0

// Command probe is the in-container test probe (see package probe); build it with CGO_ENABLED=0.
package main

import (
	"os"

	"github.com/terok-ai/terok-shield/internal/probe"
)

func main() {
	os.Exit(probe.Main(os.Args[1:], os.Stdout, os.Stderr))
}
