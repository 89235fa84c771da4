// SPDX-License-Identifier: Apache-2.0

// Package dirs locates terok-shield's per-user directories, each the same way: its override
// variable, else the XDG base directory, else the XDG default under $HOME.
package dirs

import (
	"fmt"
	"path/filepath"
)

// Config returns $TEROK_SHIELD_CONFIG_DIR, else $XDG_CONFIG_HOME/terok/shield, else
// $HOME/.config/terok/shield (config.yml and the user profiles live there).
func Config(getenv func(string) string) (string, error) {
	return locate(getenv, "TEROK_SHIELD_CONFIG_DIR", "XDG_CONFIG_HOME", ".config")
}

// State returns $TEROK_SHIELD_STATE_DIR, else $XDG_STATE_HOME/terok/shield, else
// $HOME/.local/state/terok/shield (the state root).
func State(getenv func(string) string) (string, error) {
	return locate(getenv, "TEROK_SHIELD_STATE_DIR", "XDG_STATE_HOME", filepath.Join(".local", "state"))
}

func locate(getenv func(string) string, override, xdg, homeDefault string) (string, error) {
	if d := getenv(override); d != "" {
		return filepath.Abs(d)
	}
	if d := getenv(xdg); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "terok", "shield"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", fmt.Errorf("neither %s, %s nor HOME is set", override, xdg)
	}
	return filepath.Join(home, homeDefault, "terok", "shield"), nil
}
