// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// PrivateConf gives sp (and sp.Real) a containers.conf of their own, a copy of the mode's
// harness file, so a test can run `terok-shield setup` against it while other tests keep the
// shared one. It returns that file and a hooks dir next to it, both in a directory owned by
// the mode's user (setup replaces the file through a temporary one there).
func (sp *ShieldedPodman) PrivateConf() (conf, hooksDir string, err error) {
	dir := filepath.Join(sp.base, "setup")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("private containers.conf: %w", err)
	}
	data, err := os.ReadFile(sp.H.ConfPath(sp.Mode))
	if err != nil {
		return "", "", fmt.Errorf("private containers.conf: %w", err)
	}
	conf = filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		return "", "", fmt.Errorf("private containers.conf: %w", err)
	}
	if sp.Mode == Rootless {
		for _, p := range []string{dir, conf} {
			if err := os.Chown(p, sp.H.User.UID, sp.H.User.GID); err != nil {
				return "", "", fmt.Errorf("private containers.conf: %w", err)
			}
		}
	}
	// Later entries win: exec keeps the last value of a duplicated variable.
	sp.Env = append(slices.Clone(sp.Env), "CONTAINERS_CONF="+conf)
	sp.Real.Env = append(slices.Clone(sp.Real.Env), "CONTAINERS_CONF="+conf)
	return conf, filepath.Join(dir, "hooks.d"), nil
}
