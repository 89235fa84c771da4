// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/BurntSushi/toml"
)

// containersConfFiles lists the containers.conf files podman reads, lowest priority first:
// $CONTAINERS_CONF alone when set, else the system files, their .d drop-ins and, for a
// rootless user, the user's file.
func containersConfFiles(getenv func(string) string) []string {
	if p := getenv("CONTAINERS_CONF"); p != "" {
		return []string{p}
	}
	files := []string{"/usr/share/containers/containers.conf"}
	files = append(files, dropIns("/usr/share/containers/containers.conf.d")...)
	files = append(files, "/etc/containers/containers.conf")
	files = append(files, dropIns("/etc/containers/containers.conf.d")...)
	if os.Geteuid() != 0 {
		cfg := getenv("XDG_CONFIG_HOME")
		if cfg == "" && getenv("HOME") != "" {
			cfg = filepath.Join(getenv("HOME"), ".config")
		}
		if cfg != "" {
			files = append(files, filepath.Join(cfg, "containers", "containers.conf"))
			files = append(files, dropIns(filepath.Join(cfg, "containers", "containers.conf.d"))...)
		}
	}
	return files
}

func dropIns(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
	sort.Strings(m)
	return m
}

// configuredHooksDirs returns podman's effective hooks dirs from containers.conf: the last
// file that sets engine.hooks_dir wins, and podman's built-in default applies when none does.
func configuredHooksDirs(getenv func(string) string) ([]string, error) {
	dirs := []string{defaultHooksDir}
	for _, f := range containersConfFiles(getenv) {
		var conf struct {
			Engine struct {
				HooksDir []string `toml:"hooks_dir"`
			} `toml:"engine"`
		}
		md, err := toml.DecodeFile(f, &conf)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("terok-shield: read %s: %w", f, err)
		}
		if md.IsDefined("engine", "hooks_dir") {
			dirs = conf.Engine.HooksDir
		}
	}
	return dirs, nil
}

// hooksDirs returns terok-shield's hooks dir followed by podman's configured ones: --hooks-dir
// replaces the configured list, so both must be passed.
func hooksDirs(ours string, getenv func(string) string) ([]string, error) {
	conf, err := configuredHooksDirs(getenv)
	if err != nil {
		return nil, err
	}
	return append([]string{ours}, slices.DeleteFunc(conf, func(d string) bool { return d == ours })...), nil
}
