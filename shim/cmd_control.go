// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/config"
	"github.com/terok-ai/terok-shield/control"
	"github.com/terok-ai/terok-shield/inject"
	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/state"
)

// Output formats of --output.
const (
	outputHuman = "human"
	outputJSON  = "json"
)

// controlCommands returns the runtime control commands.
func controlCommands(deps *cliDeps) []*cobra.Command {
	return []*cobra.Command{
		newChangeCmd(deps, false), newChangeCmd(deps, true),
		newModeCmd(deps, state.ModeUp), newModeCmd(deps, state.ModeDown), newModeCmd(deps, state.ModeBlock),
		newStatusCmd(deps), newRulesCmd(deps), newLogsCmd(deps), newProfilesCmd(deps),
		newPrepareCmd(deps), newDoctorCmd(deps), newNetnsOpCmd(deps),
	}
}

// usageArgs turns a positional-argument check's failure into a usage error (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// wantJSON reports whether --output json was given; other values than human and json are
// usage errors.
func (deps *cliDeps) wantJSON() (bool, error) {
	switch deps.output {
	case outputHuman, "":
		return false, nil
	case outputJSON:
		return true, nil
	}
	return false, usageError{fmt.Errorf("--output %q: want %s or %s", deps.output, outputHuman, outputJSON)}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// controller opens the state root and returns a Controller on it.
func (deps *cliDeps) controller() (*control.Controller, func(), error) {
	dir, err := state.DefaultRoot(deps.getenv)
	if err != nil {
		return nil, nil, err
	}
	root, err := state.OpenRoot(dir)
	if err != nil {
		return nil, nil, err
	}
	c := control.New(root)
	return c, func() { root.Close() }, nil
}

// withController runs fn with a Controller on the state root and whether --output json was
// asked for: the preamble every container command shares.
func (deps *cliDeps) withController(fn func(c *control.Controller, asJSON bool) error) error {
	asJSON, err := deps.wantJSON()
	if err != nil {
		return err
	}
	c, done, err := deps.controller()
	if err != nil {
		return err
	}
	defer done()
	return fn(c, asJSON)
}

// completeContainers completes the first argument with the names of the shielded containers.
func completeContainers(deps *cliDeps) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, done, err := deps.controller()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		defer done()
		names, err := c.Names()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func newChangeCmd(deps *cliDeps, deny bool) *cobra.Command {
	verb, short := "allow", "Allow destinations for a running container, at once and persistently"
	if deny {
		verb, short = "deny", "Deny destinations for a running container, open connections included"
	}
	return &cobra.Command{
		Use:   verb + " CONTAINER TARGET...",
		Short: short,
		Long: short + ".\nTARGET is an IP address, a CIDR prefix, a domain or a wildcard (*.example.com, one label below it).\n" +
			"The change takes effect in the container's firewall (and resolver, for names) immediately and is kept in its state bundle across up/down and restarts.",
		Example:           fmt.Sprintf("  terok-shield %[1]s web 203.0.113.7\n  terok-shield %[1]s web 198.51.100.0/24 example.com '*.example.org'\n  podman shield %[1]s 3f2a example.com", verb),
		Args:              usageArgs(cobra.MinimumNArgs(2)),
		ValidArgsFunction: completeContainers(deps),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deps.withController(func(c *control.Controller, asJSON bool) error {
				change := c.Allow
				if deny {
					change = c.Deny
				}
				changes, err := change(cmd.Context(), args[0], args[1:])
				if err != nil && changes == nil {
					return err
				}
				var werr error
				if asJSON {
					werr = writeJSON(cmd.OutOrStdout(), changes)
				} else {
					werr = control.WriteChanges(cmd.OutOrStdout(), changes)
				}
				return errors.Join(err, werr)
			})
		},
	}
}

func newModeCmd(deps *cliDeps, mode state.Mode) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: completeContainers(deps),
		RunE: func(cmd *cobra.Command, args []string) error {
			m := mode
			if all {
				m = state.ModeDownAll
			}
			return deps.withController(func(c *control.Controller, asJSON bool) error {
				mc, err := c.SetMode(cmd.Context(), args[0], m)
				if err != nil && mc == nil {
					return err
				}
				var werr error
				if asJSON {
					werr = writeJSON(cmd.OutOrStdout(), mc)
				} else {
					werr = control.WriteModeChange(cmd.OutOrStdout(), mc)
				}
				return errors.Join(err, werr)
			})
		},
	}
	switch mode {
	case state.ModeUp:
		cmd.Use, cmd.Short = "up CONTAINER", "Enforce the allowlist again (default deny)"
		cmd.Example = "  terok-shield up web"
	case state.ModeDown:
		cmd.Use, cmd.Short = "down CONTAINER [--all]", "Bypass the allowlist: accept and log new connections (deny list and, without --all, private ranges still enforced)"
		cmd.Example = "  terok-shield down web\n  terok-shield down --all web"
		cmd.Flags().BoolVar(&all, "all", false, "also allow private ranges")
	case state.ModeBlock:
		cmd.Use, cmd.Short = "block CONTAINER", "Drop all traffic but loopback and established flows"
		cmd.Example = "  terok-shield block web"
	}
	return cmd
}

func newStatusCmd(deps *cliDeps) *cobra.Command {
	return &cobra.Command{
		Use:   "status [CONTAINER]",
		Short: "Show the installation, or one container's firewall state (up, down, down_all, block, inactive, error)",
		Example: "  terok-shield status\n  terok-shield status web\n" +
			"  [ \"$(terok-shield status web | head -n1)\" = up ] && echo enforced\n  terok-shield status --output json web",
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		ValidArgsFunction: completeContainers(deps),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deps.withController(func(c *control.Controller, asJSON bool) error {
				w := cmd.OutOrStdout()
				if len(args) == 0 {
					userDir, err := profiles.DefaultUserDir(deps.getenv)
					if err != nil {
						return err
					}
					gs, err := c.Global(shieldVersion(), profiles.Loader{Bundled: profiles.BundledFS(), UserDir: userDir})
					if err != nil {
						return err
					}
					if asJSON {
						return writeJSON(w, gs)
					}
					return control.WriteGlobal(w, gs)
				}
				st, err := c.Status(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(w, st)
				}
				return control.WriteStatus(w, st)
			})
		},
	}
}

func newRulesCmd(deps *cliDeps) *cobra.Command {
	return &cobra.Command{
		Use:               "rules CONTAINER",
		Short:             "Show the live nftables table of a container, read from the kernel, and its state",
		Example:           "  terok-shield rules web\n  terok-shield rules --output json web",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: completeContainers(deps),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deps.withController(func(c *control.Controller, asJSON bool) error {
				st, err := c.Rules(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), st)
				}
				return control.WriteRules(cmd.OutOrStdout(), st)
			})
		},
	}
}

func newLogsCmd(deps *cliDeps) *cobra.Command {
	var (
		container string
		n         int
		follow    bool
	)
	cmd := &cobra.Command{
		Use:   "logs [--container NAME] [-n N] [-f]",
		Short: "Show audit log entries, merged by time across containers",
		Long: "Show audit log entries, merged by time across containers.\n" +
			"With --output json each entry is printed as one compact JSON line, as stored.",
		Example:           "  terok-shield logs\n  terok-shield logs --container web -n 20\n  terok-shield logs -f --output json",
		Args:              usageArgs(cobra.NoArgs),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := deps.wantJSON()
			if err != nil {
				return err
			}
			if n < 0 {
				return usageError{fmt.Errorf("-n %d: want 0 (all) or more", n)}
			}
			c, done, err := deps.controller()
			if err != nil {
				return err
			}
			defer done()
			w := cmd.OutOrStdout()
			emit := func(e audit.Event) error {
				if asJSON {
					b, err := json.Marshal(e)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(w, "%s\n", b)
					return err
				}
				return control.WriteEvent(w, e)
			}
			events, err := c.Logs(container, n)
			if err != nil {
				return err
			}
			if len(events) == 0 && !follow && !asJSON {
				_, err := fmt.Fprintln(w, "No audit entries.")
				return err
			}
			for _, e := range events {
				if err := emit(e); err != nil {
					return err
				}
			}
			if !follow {
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			return c.Follow(ctx, container, emit)
		},
	}
	cmd.Flags().StringVar(&container, "container", "", "only this container (name, ID or ID prefix)")
	cmd.Flags().IntVarP(&n, "lines", "n", 50, "number of recent entries (0: all)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new entries until interrupted")
	_ = cmd.RegisterFlagCompletionFunc("container", completeContainers(deps))
	return cmd
}

func newProfilesCmd(deps *cliDeps) *cobra.Command {
	return &cobra.Command{
		Use:     "profiles",
		Short:   "List the allowlist profiles (bundled and the user's)",
		Example: "  terok-shield profiles\n  podman run --shield=base,dev-python IMAGE",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := deps.wantJSON()
			if err != nil {
				return err
			}
			userDir, err := profiles.DefaultUserDir(deps.getenv)
			if err != nil {
				return err
			}
			names, err := profiles.Loader{Bundled: profiles.BundledFS(), UserDir: userDir}.List()
			if err != nil {
				return err
			}
			if asJSON {
				if names == nil {
					names = []string{}
				}
				return writeJSON(cmd.OutOrStdout(), names)
			}
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		},
	}
}

// prepareImage stands in for the image when prepare builds a run command line to rewrite.
const prepareImage = "terok-shield.invalid/prepare"

func newPrepareCmd(deps *cliDeps) *cobra.Command {
	var (
		profileList []string
		asJSONFlag  bool
	)
	cmd := &cobra.Command{
		Use:   "prepare CONTAINER [--profiles P,...] [--json]",
		Short: "Prepare a container's state bundle and print the podman run arguments a shielded run adds",
		Example: "  eval \"podman run $(terok-shield prepare web) alpine sh\"\n" +
			"  terok-shield prepare web --profiles dev-python --json",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := deps.wantJSON()
			if err != nil {
				return err
			}
			asJSON = asJSON || asJSONFlag
			name := args[0]
			if err := state.ValidateName(name); err != nil {
				return err
			}
			for _, p := range profileList {
				if err := profiles.ValidateName(p); err != nil {
					return err
				}
			}
			out, err := prepareArgs(name, profileList, deps.getenv)
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.Marshal(out)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return err
			}
			q := make([]string, len(out))
			for i, a := range out {
				q[i] = shellQuote(a)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), strings.Join(q, " "))
			return err
		},
	}
	cmd.Flags().StringSliceVar(&profileList, "profiles", nil, "profiles to compose (default: "+profiles.DefaultProfile+"; base is always included)")
	cmd.Flags().BoolVar(&asJSONFlag, "json", false, "print a JSON array (same as --output json)")
	return cmd
}

// prepareArgs prepares the bundle for name as a shielded run does and returns the arguments
// the shim adds to `podman run` (inject.Args), followed by --name NAME.
func prepareArgs(name string, profileList []string, getenv func(string) string) ([]string, error) {
	argv := []string{"run", "--name", name, prepareImage}
	inv, err := argparse.Parse(argv, argparse.Options{Version: getenv("TEROK_SHIELD_PODMAN_VERSION")})
	if err != nil {
		return nil, err
	}
	cfgPath, err := config.DefaultPath(getenv)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	if len(profileList) == 0 {
		profileList = cfg.DefaultProfiles
	}
	rewritten, err := prepareShielded(inv, inject.Decision{Shield: true, Profiles: profileList, Source: "flag"}, cfg, getenv)
	if err != nil {
		return nil, err
	}
	if len(rewritten) < len(argv) || rewritten[len(rewritten)-1] != prepareImage {
		return nil, fmt.Errorf("prepare: unexpected rewrite %q", rewritten)
	}
	added := rewritten[3 : len(rewritten)-1]
	return append(append([]string(nil), added...), "--name", name), nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newDoctorCmd(deps *cliDeps) *cobra.Command {
	return &cobra.Command{
		Use:     "doctor",
		Short:   "Check every prerequisite of shielded containers and print the fix for each failure",
		Example: "  terok-shield doctor\n  terok-shield doctor --output json",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return deps.withController(func(c *control.Controller, asJSON bool) error {
				env := control.DoctorEnv{Getenv: deps.getenv}
				self, _ := os.Executable()
				if self != "" {
					self, _ = filepath.EvalSymlinks(self)
				}
				env.Podman, env.PodmanErr = findRealPodman(deps.getenv, self)
				checks := c.Doctor(cmd.Context(), env)
				var err error
				if asJSON {
					err = writeJSON(cmd.OutOrStdout(), checks)
				} else {
					err = control.WriteChecks(cmd.OutOrStdout(), checks)
				}
				if err != nil {
					return err
				}
				failed := 0
				for _, ch := range checks {
					if !ch.OK {
						failed++
					}
				}
				if failed > 0 {
					return &exitError{code: 1, err: fmt.Errorf("%d check(s) failed", failed)}
				}
				return nil
			})
		},
	}
}

func newNetnsOpCmd(deps *cliDeps) *cobra.Command {
	return &cobra.Command{
		Use:    control.OpCommand,
		Short:  "Run one operation inside a container's namespaces (started by the control commands through nsenter)",
		Hidden: true,
		Args:   usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return control.ServeOp(cmd.Context(), deps.stdin, cmd.OutOrStdout())
		},
	}
}
