// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/hookconf"
)

// podmanConf is the containers.conf view of the podman this shim hands over to.
// Its files are parsed once per Conf (a shielded run reads the hooks dirs and the rootless
// network command).
func podmanConf(getenv func(string) string) hookconf.Conf {
	return hookconf.Conf{Getenv: getenv, Rootless: os.Geteuid() != 0, Cache: &hookconf.Cache{}}
}

// hookPlan is how a shielded container gets its hook. After `terok-shield setup` a dir in
// podman's engine.hooks_dir holds the descriptors and every start, through the shim or not,
// runs the hook: argv stays untouched. Without setup the shim writes the descriptors into the
// state root and passes --hooks-dir (ours plus podman's effective list, which --hooks-dir
// replaces) to the commands it sees.
type hookPlan struct {
	setupDir string   // configured dir holding terok-shield's descriptors, "" without setup
	inject   []string // --hooks-dir values when setupDir is ""
	stateDir string   // <state root>/hooks.d
}

func planHooks(stateRoot string, conf hookconf.Conf) (hookPlan, error) {
	own := filepath.Join(stateRoot, "hooks.d")
	dir, hd, err := conf.InEffect()
	if err != nil {
		return hookPlan{}, fmt.Errorf("terok-shield: %w", err)
	}
	if dir != "" && dir != own {
		return hookPlan{setupDir: dir, stateDir: own}, nil
	}
	return hookPlan{inject: hookconf.WithOurs(own, hd.Dirs), stateDir: own}, nil
}

// checkHook refuses a shielded start whose hook cannot run: podman skips a hook whose binary
// is missing, or fails every start, and the gate would stop the workload either way.
func checkHook(dir string) error {
	if _, err := hookconf.CheckBinary(dir); err != nil {
		return fmt.Errorf("terok-shield: the OCI hook in %s cannot run (%v); run terok-shield setup", dir, err)
	}
	return nil
}

// shieldedStart reports whether a start/restart/init names a container that has a state
// bundle. Containers named by ID (and pod starts) are not recognised here; their gate still
// refuses to run the workload without the hook.
func shieldedStart(inv *argparse.Invocation, stateRoot string) bool {
	switch inv.Canonical {
	case "start", "restart", "init":
	default:
		return false
	}
	for _, p := range inv.Positionals {
		v := p.Value
		if v == "" || v == "." || v == ".." || strings.ContainsRune(v, '/') {
			continue
		}
		if fi, err := os.Stat(filepath.Join(stateRoot, "containers", v)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}
