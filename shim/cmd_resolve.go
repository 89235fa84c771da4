// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/terok-ai/terok-shield/control"
)

func newResolveCmd(deps *cliDeps) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "resolve CONTAINER [--force]",
		Short: "Resolve a static-tier container's names again and load the addresses (its firewall and /etc/hosts)",
		Long: "Resolve a static-tier container's names again and load the addresses (its firewall and /etc/hosts).\n" +
			"The names are resolved on the host against the upstream recorded at start; addresses younger than resolver.static_max_age are kept unless --force is given. " +
			"A name that fails to resolve keeps its previous addresses. On the dnsmasq tier names are learned live and there is nothing to do.",
		Example:           "  terok-shield resolve web\n  podman shield resolve --force web\n  terok-shield resolve --output json web",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: completeContainers(deps),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deps.withController(func(c *control.Controller, asJSON bool) error {
				rep, err := c.Resolve(cmd.Context(), args[0], force)
				if err != nil && rep == nil {
					return err
				}
				var werr error
				if asJSON {
					werr = writeJSON(cmd.OutOrStdout(), rep)
				} else {
					werr = control.WriteResolve(cmd.OutOrStdout(), rep)
				}
				return errors.Join(err, werr)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "resolve even when the addresses are still fresh")
	return cmd
}
