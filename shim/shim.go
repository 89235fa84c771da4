// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/config"
	"github.com/terok-ai/terok-shield/control"
	"github.com/terok-ai/terok-shield/hookconf"
	"github.com/terok-ai/terok-shield/inject"
	"github.com/terok-ai/terok-shield/state"
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
			fmt.Fprintf(stderr, "terok-shield: cannot shield this container: %v\n", perr)
			return 125
		}
		return passThrough(args, env, stderr)
	}
	if startCommands[inv.Canonical] {
		startArgs, err := hooksForStart(args, inv, getenv, stderr)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 125
		}
		return passThrough(startArgs, env, stderr)
	}
	if inv.Canonical == "exec" {
		if err := checkExec(inv, getenv); err != nil {
			fmt.Fprintln(stderr, err)
			return 125
		}
		return passThrough(args, env, stderr)
	}
	if inv.Canonical != "run" && inv.Canonical != "create" {
		return passThrough(args, env, stderr)
	}
	// A config that cannot be read might hold the rule that shields this run: refuse rather
	// than guess. Without HOME or XDG_CONFIG_HOME there is no config, only defaults.
	cfg := config.Defaults()
	if cfgPath, err := config.DefaultPath(getenv); err == nil {
		if cfg, err = config.Load(cfgPath); err != nil {
			fmt.Fprintf(stderr, "terok-shield: %v\n", err)
			return 125
		}
	}
	dec, err := inject.Decide(inv, getenv, cfg)
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
	newArgs, err := prepareShielded(inv, dec, cfg, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 125
	}
	return passThrough(append(args[:1:1], newArgs...), env, stderr)
}

// startCommands initialise containers: podman reads hook dirs when a container starts, not
// when it is created, so these need terok-shield's hooks dir as much as run does.
var startCommands = map[string]bool{
	"start": true, "restart": true, "init": true, "pod start": true, "pod restart": true, "kube play": true,
}

// hooksForStart makes sure a command that starts containers gets terok-shield's hook. After
// setup the hook is in podman's configuration and argv stays untouched; otherwise, once
// terok-shield has shielded anything for this user, the state root's hooks dir (and podman's
// configured ones) are added. The hook only fires for containers carrying the shield
// annotation, so other containers are unaffected; and a shielded container started without
// the hook is stopped by its gate in any case. A start of a shielded container whose hook
// binary is gone is refused.
func hooksForStart(args []string, inv *argparse.Invocation, getenv func(string) string, stderr io.Writer) ([]string, error) {
	lookup := func(k string) (string, bool) { return os.LookupEnv(k) }
	if inv.Remote || argparse.RemoteFromEnv(lookup) {
		return args, nil
	}
	root, err := state.DefaultRoot(getenv)
	if err != nil {
		return args, nil
	}
	// Cheap checks first: most starts are of unshielded containers by users who never ran
	// the shim's --hooks-dir path, and need no containers.conf read.
	shielded := shieldedStart(inv, root)
	if !shielded && !hookconf.HasDescriptors(filepath.Join(root, "hooks.d")) {
		return args, nil
	}
	hp, err := planHooks(root, podmanConf(getenv))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return args, nil
	}
	dir := hp.setupDir
	if dir == "" {
		if !hookconf.HasDescriptors(hp.stateDir) {
			return args, nil
		}
		dir = hp.stateDir
	}
	if shielded {
		if err := checkHook(dir); err != nil {
			return nil, err
		}
	}
	if hp.setupDir != "" {
		return args, nil
	}
	var extra []string
	for _, d := range hp.inject {
		extra = append(extra, "--hooks-dir", d)
	}
	return append(args[:1:1], inv.Rewrite(0, extra)...), nil
}

// checkExec refuses `podman exec --privileged` into a shielded container: the exec'd process
// would get every capability in the container's namespaces, NET_ADMIN (rewrite the firewall)
// and NET_RAW (packet sockets bypass nftables) included. Only an exec that asks for privileges
// pays for the lookup.
func checkExec(inv *argparse.Invocation, getenv func(string) string) error {
	fl := inv.Lookup("privileged")
	if len(fl) == 0 || fl[len(fl)-1].Value == "false" || len(inv.Positionals) == 0 {
		return nil
	}
	target := inv.Positionals[0].Value
	dir, err := state.DefaultRoot(getenv)
	if err != nil {
		return nil // no state: nothing is shielded for this user
	}
	if _, err := os.Stat(filepath.Join(dir, "containers")); err != nil {
		return nil
	}
	root, err := state.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("terok-shield: cannot tell whether %s is shielded: %w", target, err)
	}
	defer root.Close()
	if _, err := control.New(root).Find(target); err != nil {
		return nil // not a shielded container (or an ambiguous prefix podman will report)
	}
	return fmt.Errorf("terok-shield: cannot exec --privileged into shielded container %s: it would get NET_ADMIN and NET_RAW and could change or bypass the firewall", target)
}

func hasShimFlag(args []string) bool {
	for _, a := range args {
		if a == "--"+inject.ShimFlag || len(a) > len(inject.ShimFlag)+3 && a[:len(inject.ShimFlag)+3] == "--"+inject.ShimFlag+"=" {
			return true
		}
	}
	return false
}
