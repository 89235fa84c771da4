// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// cliReferencePath is the generated CLI reference; TestCLIReference keeps it in step with the
// command tree (regenerate with `go test ./shim -run TestCLIReference -update`).
const cliReferencePath = "../docs/cli.md"

func TestCLIReference(t *testing.T) {
	root := newRootCmd(&cliDeps{getenv: func(string) string { return "" }})
	var b strings.Builder
	b.WriteString("# Command reference\n\n")
	b.WriteString("_Generated from the command tree by `go test ./shim -run TestCLIReference -update`; do not edit._\n\n")
	b.WriteString("Every command is reached as `terok-shield CMD` and, through the shim, as `podman shield CMD`.\n")
	writeCommandDoc(&b, root)
	got := b.String()
	if *updateGolden {
		if err := os.WriteFile(cliReferencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(cliReferencePath)
	if err != nil {
		t.Fatalf("read %s (regenerate with -update): %v", filepath.Base(cliReferencePath), err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("docs/cli.md is out of date with the command tree; run `go test ./shim -run TestCLIReference -update` (-want +got):\n%s", diff)
	}
}

func writeCommandDoc(b *strings.Builder, cmd *cobra.Command) {
	if cmd.Hidden || cmd.Name() == "help" || cmd.Name() == "completion" && cmd.HasParent() && cmd.Parent().HasParent() {
		return
	}
	if cmd.HasParent() {
		fmt.Fprintf(b, "\n## %s\n\n", cmd.CommandPath())
		desc := cmd.Long
		if desc == "" {
			desc = cmd.Short
		}
		fmt.Fprintf(b, "%s\n\n", desc)
		fmt.Fprintf(b, "```\n%s\n```\n", cmd.UseLine())
		if cmd.Example != "" {
			fmt.Fprintf(b, "\nExamples:\n\n```\n%s\n```\n", cmd.Example)
		}
		var flags []string
		cmd.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			name := "--" + f.Name
			if f.Shorthand != "" {
				name = "-" + f.Shorthand + ", " + name
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			flags = append(flags, fmt.Sprintf("| `%s` | %s%s |", name, f.Usage, def))
		})
		if len(flags) > 0 {
			b.WriteString("\n| flag | meaning |\n|---|---|\n")
			b.WriteString(strings.Join(flags, "\n") + "\n")
		}
	} else {
		fmt.Fprintf(b, "\n%s\n\nGlobal flags: `-o, --output human|json` (machine-readable output where a command prints data).\n", cmd.Long)
	}
	for _, c := range cmd.Commands() {
		if c.Name() == "completion" {
			fmt.Fprintf(b, "\n## %s\n\nShell completion scripts: `terok-shield completion bash|zsh|fish|powershell`; container names complete from the state bundles.\n", c.CommandPath())
			continue
		}
		writeCommandDoc(b, c)
	}
}
