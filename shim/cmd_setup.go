// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/terok-ai/terok-shield/hookconf"
)

type setupOptions struct {
	user, system, uninstall, dryRun bool
	hooksDir                        string
}

func newSetupCmd(deps *cliDeps) *cobra.Command {
	var opts setupOptions
	cmd := &cobra.Command{
		Use:   "setup [--user|--system] [--uninstall] [--dry-run]",
		Short: "Put the OCI hook into podman's configuration, so starts outside the shim (quadlet, systemd, compose, API service) run it too",
		Long: "setup writes terok-shield's hooks.d descriptors (the hook is this binary, by its resolved absolute path) and adds their\n" +
			"directory in front of podman's engine.hooks_dir in containers.conf, keeping the dirs podman used before.\n" +
			"--user (default for regular users): $XDG_CONFIG_HOME/containers/containers.conf and $XDG_DATA_HOME/terok/shield/hooks.d.\n" +
			"--system (default for root): " + hookconf.SystemConfFile + " and " + hookconf.SystemHooksDir + ".\n" +
			"With CONTAINERS_CONF set, that file is edited instead. The edit is a marked block; everything else in the file is kept\n" +
			"byte for byte. Running setup again changes nothing; --uninstall removes the descriptors and restores the file.\n" +
			"Without setup only starts through the shim get the hook, and the start gate refuses every other start of a shielded container.",
		Example: "  terok-shield setup\n" +
			"  terok-shield setup --dry-run\n" +
			"  sudo terok-shield setup --system\n" +
			"  terok-shield setup --uninstall",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := deps.wantJSON()
			if err != nil {
				return err
			}
			if opts.user && opts.system {
				return usageError{errors.New("--user and --system exclude each other")}
			}
			if opts.hooksDir != "" && !filepath.IsAbs(opts.hooksDir) {
				return usageError{fmt.Errorf("--hooks-dir %q must be an absolute path", opts.hooksDir)}
			}
			scope := hookconf.ScopeUser
			if opts.system || !opts.user && os.Geteuid() == 0 {
				scope = hookconf.ScopeSystem
			}
			self, err := os.Executable()
			if err == nil {
				self, err = filepath.EvalSymlinks(self)
			}
			if err != nil {
				return fmt.Errorf("locate own binary: %w", err)
			}
			res, err := hookconf.Setup(hookconf.Options{
				Scope: scope, HooksDir: opts.hooksDir, Binary: self, Getenv: deps.getenv,
				Rootless: os.Geteuid() != 0, Uninstall: opts.uninstall, DryRun: opts.dryRun,
				CheckBinary: deps.checkBinary,
			})
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return writeSetup(cmd.OutOrStdout(), res, opts.uninstall)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.user, "user", false, "configure the rootless podman of this user (default unless root)")
	f.BoolVar(&opts.system, "system", false, "configure podman system-wide (default for root)")
	f.BoolVar(&opts.uninstall, "uninstall", false, "remove the descriptors and restore containers.conf")
	f.BoolVar(&opts.dryRun, "dry-run", false, "print what would change, change nothing")
	f.StringVar(&opts.hooksDir, "hooks-dir", "", "put the descriptors in this directory instead of the scope's default")
	return cmd
}

// writeSetup prints what setup did (or would do) in human form.
func writeSetup(w io.Writer, r hookconf.Result, uninstall bool) error {
	var b strings.Builder
	verb := "setup"
	if uninstall {
		verb = "setup --uninstall"
	}
	fmt.Fprintf(&b, "terok-shield %s (%s scope)\n", verb, r.Scope)
	fmt.Fprintf(&b, "  containers.conf:   %s\n", r.ConfFile)
	fmt.Fprintf(&b, "  hooks dir:         %s\n", r.HooksDir)
	fmt.Fprintf(&b, "  podman hooks_dir:  %s\n", strings.Join(r.Effect, ", "))
	if len(r.Changes) == 0 {
		b.WriteString("  nothing to change\n")
	}
	for _, c := range r.Changes {
		action := c.Action
		if r.DryRun {
			action = "would " + action
		}
		fmt.Fprintf(&b, "  %s %s", action, c.Path)
		if c.Detail != "" {
			fmt.Fprintf(&b, ": %s", c.Detail)
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
