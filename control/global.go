// SPDX-License-Identifier: Apache-2.0

package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/profiles"
)

// HooksDirName is the hooks.d directory the shim writes inside the state root.
const HooksDirName = "hooks.d"

// GlobalStatus is the installation overview of `status` without a container.
type GlobalStatus struct {
	Version        string   `json:"version"`
	StateDir       string   `json:"state_dir"`
	Hooks          string   `json:"hooks"` // "installed" or "not installed"
	HooksDir       string   `json:"hooks_dir"`
	HookBinary     string   `json:"hook_binary,omitempty"`
	HooksProblem   string   `json:"hooks_problem,omitempty"`
	ResolverTier   string   `json:"resolver_tier"` // "dnsmasq" or "unavailable"
	ResolverDetail string   `json:"resolver_detail,omitempty"`
	Profiles       []string `json:"profiles"`
	Containers     []string `json:"containers"`
}

// Global reports the installation: hooks, resolver, profiles and shielded containers.
func (c *Controller) Global(version string, loader profiles.Loader) (*GlobalStatus, error) {
	gs := &GlobalStatus{Version: version, StateDir: c.Root.Dir(), HooksDir: filepath.Join(c.Root.Dir(), HooksDirName)}
	if bin, err := HookBinary(gs.HooksDir); err != nil {
		gs.Hooks, gs.HooksProblem = "not installed", err.Error()
	} else {
		gs.Hooks, gs.HookBinary = "installed", bin
	}
	if bin, err := dnsmasq.Find(); err != nil {
		gs.ResolverTier, gs.ResolverDetail = "unavailable", err.Error()
	} else {
		gs.ResolverTier, gs.ResolverDetail = "dnsmasq", bin
	}
	names, err := loader.List()
	if err != nil {
		return nil, err
	}
	gs.Profiles = names
	if gs.Containers, err = c.Root.List(); err != nil {
		return nil, err
	}
	return gs, nil
}

// HookBinary checks the hooks.d descriptors in dir for both stages and returns the binary they
// run, which must exist and be executable.
func HookBinary(dir string) (string, error) {
	var bin string
	for _, stage := range []string{hook.StageCreateRuntime, hook.StagePoststop} {
		p := filepath.Join(dir, "terok-shield-"+stage+".json")
		raw, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("hook descriptor: %w", err)
		}
		var desc struct {
			Hook struct {
				Path string `json:"path"`
			} `json:"hook"`
		}
		if err := json.Unmarshal(raw, &desc); err != nil {
			return "", fmt.Errorf("hook descriptor %s: %w", p, err)
		}
		if bin != "" && desc.Hook.Path != bin {
			return "", fmt.Errorf("hook descriptors name different binaries (%s, %s)", bin, desc.Hook.Path)
		}
		bin = desc.Hook.Path
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("hook binary: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", errors.New("hook binary " + bin + " is not executable")
	}
	return bin, nil
}
