// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/control"
)

// watchCommands returns watch and its hidden namespace-side helper.
func watchCommands(deps *cliDeps) []*cobra.Command {
	return []*cobra.Command{newWatchCmd(deps), newNetnsWatchCmd(deps)}
}

func newWatchCmd(deps *cliDeps) *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "watch CONTAINER [-n N]",
		Short: "Print live per-packet events (allowed, denied, blocked, private, bypass) of a running container as JSON lines",
		Long: "Print live per-packet events of a running container as JSON lines, until interrupted.\n" +
			"Events come from the log rules of the container's firewall (NFLOG group 100), read inside its network namespace:\n" +
			"ts, container, action (allowed, denied, blocked, private, bypass), dir (out, or in for denied sources), proto,\n" +
			"src, dst, sport and dport (TCP, UDP), icmp_type (ICMP) and domain: the name the container's resolver answered\n" +
			"with the remote address, when its query log still holds it. Only one watch per container can run at a time.\n" +
			"An allowed connection shows once, with its first packet; established traffic is not logged.",
		Example:           "  terok-shield watch web\n  podman shield watch web -n 10 | jq -r '.action + \" \" + .dst'",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: completeContainers(deps),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f := cmd.Flags().Lookup("output"); f != nil && f.Changed && deps.output != outputJSON {
				return usageError{fmt.Errorf("--output %q: watch prints JSON lines only", deps.output)}
			}
			if count < 0 {
				return usageError{fmt.Errorf("-n %d: want 0 (no limit) or more", count)}
			}
			c, done, err := deps.controller()
			if err != nil {
				return err
			}
			defer done()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			w := cmd.OutOrStdout()
			return c.Watch(ctx, args[0], control.WatchOptions{
				Count: count,
				Emit: func(ev control.WatchEvent) error {
					b, err := json.Marshal(ev)
					if err != nil {
						return err
					}
					if _, err := w.Write(append(b, '\n')); err != nil {
						return fmt.Errorf("write event: %w", err)
					}
					return nil
				},
			})
		},
	}
	cmd.Flags().IntVarP(&count, "count", "n", 0, "stop after N events (0: until interrupted)")
	return cmd
}

func newNetnsWatchCmd(deps *cliDeps) *cobra.Command {
	return &cobra.Command{
		Use:    control.WatchCommand,
		Short:  "Read a container's packet log inside its namespaces (started by watch through nsenter)",
		Hidden: true,
		Args:   usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Ctrl-C reaches the whole process group: the parent stops this child by
			// closing its stdin, after the events in flight.
			signal.Ignore(os.Interrupt)
			return control.ServeWatch(cmd.Context(), deps.stdin, cmd.OutOrStdout())
		},
	}
}
