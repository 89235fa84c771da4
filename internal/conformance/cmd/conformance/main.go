// SPDX-License-Identifier: Apache-2.0

// Command conformance renders docs/conformance.md (see package conformance); scripts/e2e-report.sh
// runs it after the integration tests.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/terok-ai/terok-shield/internal/conformance"
)

func main() {
	var o conformance.Options
	flag.StringVar(&o.Matrix, "matrix", "", "TestAdversarialMatrix's JSON report")
	flag.StringVar(&o.Tests, "tests", "", "`go test -json` output of the integration (and cited unit) tests")
	flag.StringVar(&o.Src, "src", "integration", "directory of the integration tests (doc comments)")
	flag.StringVar(&o.Out, "out", "docs/conformance.md", "file to write")
	flag.StringVar(&o.Package, "package", "github.com/terok-ai/terok-shield/integration", "import path of the integration tests")
	flag.Parse()
	if o.Matrix == "" || o.Tests == "" {
		fmt.Fprintln(os.Stderr, "usage: conformance -matrix FILE -tests FILE [-src DIR] [-out FILE]")
		os.Exit(2)
	}
	if err := conformance.Run(o); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}
