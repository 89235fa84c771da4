// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/hookconf"
	"github.com/terok-ai/terok-shield/nft"
)

// exitError carries an exit code out of a command; main prints the error once.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// cliDeps are the collaborators of the command tree; tests substitute their own.
type cliDeps struct {
	getenv func(string) string
	stdin  io.Reader
	log    *slog.Logger
	output string // --output: human or json
	// checkBinary vets the binary setup installs as the hook; nil means
	// hookconf.CheckInstallable.
	checkBinary func(string, hookconf.Scope) error
}

// runCLI serves `terok-shield ARGS` and `podman shield ARGS`.
func runCLI(args, env []string, stdin io.Reader, stdout, stderr io.Writer) int {
	deps := &cliDeps{getenv: getenvFrom(env), stdin: stdin, log: slog.New(slog.DiscardHandler)}
	root := newRootCmd(deps)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsageError(err) {
		return 2
	}
	return 1
}

// usageError marks errors in how a command was called (exit code 2).
type usageError struct{ error }

func isUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func newRootCmd(deps *cliDeps) *cobra.Command {
	root := &cobra.Command{
		Use:           "terok-shield",
		Short:         "Default-deny egress firewall for Podman containers",
		Long:          "terok-shield keeps shielded Podman containers from reaching anything but the destinations their allowlist profiles name.\nAs `podman shield CMD` the same commands are served by the podman shim.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVarP(&deps.output, "output", "o", outputHuman, "output format: human or json")
	root.AddCommand(
		newVersionCmd(),
		newPreviewCmd(),
		newHookCmd(deps),
		newSetupCmd(deps),
	)
	root.AddCommand(controlCommands(deps)...)
	root.AddCommand(newResolveCmd(deps))
	root.AddCommand(watchCommands(deps)...)
	return root
}

// shieldVersion is the module version from the build info, or "devel".
func shieldVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the terok-shield version",
		Example: "  terok-shield version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "terok-shield %s\n", shieldVersion())
			return nil
		},
	}
}

type previewOptions struct {
	down, all, block bool
}

func newPreviewCmd() *cobra.Command {
	var opts previewOptions
	cmd := &cobra.Command{
		Use:   "preview [--down [--all] | --block]",
		Short: "Print the nftables ruleset a shielded container gets, without a container",
		Example: "  terok-shield preview\n" +
			"  terok-shield preview --down --all",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mode := nft.ModeUp
			switch {
			case opts.all && !opts.down:
				return usageError{errors.New("--all only goes with --down")}
			case opts.block && opts.down:
				return usageError{errors.New("--block and --down exclude each other")}
			case opts.block:
				mode = nft.ModeBlock
			case opts.down && opts.all:
				mode = nft.ModeDownAll
			case opts.down:
				mode = nft.ModeDown
			}
			rs, err := nft.Build(nft.Policy{Mode: mode})
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), rs.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&opts.down, "down", false, "show the bypass ruleset (accept and log new connections)")
	cmd.Flags().BoolVar(&opts.all, "all", false, "with --down: also allow private ranges")
	cmd.Flags().BoolVar(&opts.block, "block", false, "show the block ruleset (drop everything)")
	return cmd
}

func newHookCmd(deps *cliDeps) *cobra.Command {
	return &cobra.Command{
		Use:    "hook STAGE",
		Short:  "OCI runtime hook (run by the container runtime from hooks.d, not by hand)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := hook.Run(cmd.Context(), args[0], hook.Env{Stdin: deps.stdin, Log: deps.log}); err != nil {
				return fmt.Errorf("terok-shield hook %s: %w", args[0], err)
			}
			return nil
		},
	}
}
