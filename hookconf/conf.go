// SPDX-License-Identifier: Apache-2.0

package hookconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// DefaultHooksDir is podman's compiled-in hooks dir, in effect when no containers.conf sets
// engine.hooks_dir.
const DefaultHooksDir = "/usr/share/containers/oci/hooks.d"

// Conf locates the containers.conf files podman reads.
type Conf struct {
	Getenv   func(string) string
	Rootless bool // podman runs as a regular user: the user's files are read too
	// Read reads a file; nil means os.ReadFile. Setup uses it to evaluate an edit before
	// writing it.
	Read func(string) ([]byte, error)
	// Cache, when set, keeps the parsed settings for every later call through a Conf with the
	// same Cache: parsing the files (the system containers.conf alone is ~30 kB of TOML) costs
	// ~0.3 ms, and a shielded run needs the hooks dirs and the rootless network command.
	Cache *Cache
}

// Cache holds the settings one Conf read; see Conf.Cache.
type Cache struct {
	once sync.Once
	s    Settings
	err  error
}

// Settings are the containers.conf values terok-shield reads.
type Settings struct {
	// Hooks is podman's effective engine.hooks_dir.
	Hooks HooksDirs
	// RootlessNetworkCmd is network.default_rootless_network_cmd ("slirp4netns" or "pasta"),
	// "" when no file sets it (podman's default then depends on its version: slirp4netns
	// before 5.0, pasta from 5.0).
	RootlessNetworkCmd string
}

// Settings reads the files (Files) once: the last file that sets a value wins, and podman's
// built-in default applies to what none sets.
func (c Conf) Settings() (Settings, error) {
	if c.Cache == nil {
		return c.settings()
	}
	c.Cache.once.Do(func() { c.Cache.s, c.Cache.err = c.settings() })
	return c.Cache.s, c.Cache.err
}

func (c Conf) settings() (Settings, error) {
	read := c.Read
	if read == nil {
		read = os.ReadFile
	}
	out := Settings{Hooks: HooksDirs{Dirs: []string{DefaultHooksDir}}}
	for _, f := range c.Files() {
		data, err := read(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Settings{}, fmt.Errorf("read %s: %w", f, err)
		}
		var conf struct {
			Engine struct {
				HooksDir []string `toml:"hooks_dir"`
			} `toml:"engine"`
			Network struct {
				Cmd string `toml:"default_rootless_network_cmd"`
			} `toml:"network"`
		}
		md, err := toml.Decode(string(data), &conf)
		if err != nil {
			return Settings{}, fmt.Errorf("read %s: %w", f, err)
		}
		if md.IsDefined("engine", "hooks_dir") {
			out.Hooks = HooksDirs{Dirs: conf.Engine.HooksDir, Source: f}
		}
		if md.IsDefined("network", "default_rootless_network_cmd") {
			out.RootlessNetworkCmd = conf.Network.Cmd
		}
	}
	return out, nil
}

// Files lists the containers.conf files podman reads, lowest priority first:
// $CONTAINERS_CONF alone when set, else the system files, their .d drop-ins and, for a
// rootless user, the user's file and drop-ins.
func (c Conf) Files() []string {
	if p := c.Getenv("CONTAINERS_CONF"); p != "" {
		return []string{p}
	}
	files := []string{"/usr/share/containers/containers.conf"}
	files = append(files, dropIns("/usr/share/containers/containers.conf.d")...)
	files = append(files, SystemConfFile)
	files = append(files, dropIns("/etc/containers/containers.conf.d")...)
	if c.Rootless {
		if cfg := configHome(c.Getenv); cfg != "" {
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

func configHome(getenv func(string) string) string {
	if v := getenv("XDG_CONFIG_HOME"); v != "" {
		return v
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config")
	}
	return ""
}

// HooksDirs is podman's effective engine.hooks_dir and the file that set it ("" for
// podman's default).
type HooksDirs struct {
	Dirs   []string
	Source string
}

// HooksDirs returns podman's effective hooks dirs: the last file that sets engine.hooks_dir
// wins, and podman's built-in default applies when none does.
func (c Conf) HooksDirs() (HooksDirs, error) {
	st, err := c.Settings()
	return st.Hooks, err
}

// InEffect returns the first of podman's effective hooks dirs that holds terok-shield's
// descriptors ("" when none does), with the effective list.
func (c Conf) InEffect() (string, HooksDirs, error) {
	hd, err := c.HooksDirs()
	if err != nil {
		return "", hd, err
	}
	for _, d := range hd.Dirs {
		if HasDescriptors(d) {
			return d, hd, nil
		}
	}
	return "", hd, nil
}

// WithOurs returns ours followed by dirs without ours: --hooks-dir replaces the configured
// list, so both are passed.
func WithOurs(ours string, dirs []string) []string {
	return append([]string{ours}, slices.DeleteFunc(slices.Clone(dirs), func(d string) bool { return d == ours })...)
}

// Paths of the two scopes of `terok-shield setup`.
const (
	SystemConfFile = "/etc/containers/containers.conf"
	SystemHooksDir = "/usr/local/share/terok-shield/hooks.d"
)

// UserHooksDir is the user scope's descriptor dir: $XDG_DATA_HOME/terok/shield/hooks.d.
func UserHooksDir(getenv func(string) string) (string, error) {
	data := getenv("XDG_DATA_HOME")
	if data == "" {
		h := getenv("HOME")
		if h == "" {
			return "", errors.New("neither XDG_DATA_HOME nor HOME is set")
		}
		data = filepath.Join(h, ".local", "share")
	}
	return filepath.Join(data, "terok", "shield", "hooks.d"), nil
}

// UserConfFile is the user's containers.conf: $XDG_CONFIG_HOME/containers/containers.conf.
func UserConfFile(getenv func(string) string) (string, error) {
	cfg := configHome(getenv)
	if cfg == "" {
		return "", errors.New("neither XDG_CONFIG_HOME nor HOME is set")
	}
	return filepath.Join(cfg, "containers", "containers.conf"), nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tomlArray formats dirs as a one-line TOML array of strings.
func tomlArray(dirs []string) string {
	q := make([]string, len(dirs))
	for i, d := range dirs {
		q[i] = tomlString(d)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// RootlessNetworkCmd returns containers.conf's network.default_rootless_network_cmd
// ("slirp4netns" or "pasta"), or "" when no file sets it (podman's default then depends on
// its version: slirp4netns before 5.0, pasta from 5.0).
func (c Conf) RootlessNetworkCmd() (string, error) {
	st, err := c.Settings()
	return st.RootlessNetworkCmd, err
}
