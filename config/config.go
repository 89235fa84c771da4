// SPDX-License-Identifier: Apache-2.0

// Package config reads terok-shield's config.yml. It makes no API stability
// promise.
//
// The file is $TEROK_SHIELD_CONFIG_DIR/config.yml, else
// $XDG_CONFIG_HOME/terok/shield/config.yml, else
// ~/.config/terok/shield/config.yml (see [DefaultPath]). A missing or empty
// file means the defaults. Unknown keys, wrong types and bad values are
// errors that name the file, the line and the key's path, e.g.
// "config.yml:7: shield.rules[2].image: invalid glob "[": ...".
//
// Keys (defaults in brackets):
//
//	mode: auto | hook                    [auto] kept for compatibility; both mean the OCI hook
//	default_profiles: [name, ...]        [dev-standard] non-empty; base is always added
//	loopback_ports: [port, ...]          [] host loopback TCP ports the container may reach, 1..65535;
//	                                        a single integer is accepted as a one-element list
//	audit:
//	  enabled: bool                      [true]
//	  max_bytes: int                     [10485760] rotate audit.jsonl beyond this size, >= 4096
//	resolver:
//	  tier: auto | dnsmasq | static      [auto] auto: dnsmasq when a usable one is installed, else static;
//	                                        static: names resolved before start, no resolver runs
//	  upstream: [ip, ...]                [] resolvers to forward to; empty = detect from the network mode
//	                                        (static tier: the host's resolv.conf nameservers)
//	  learned_ttl: duration              [1h] lifetime of addresses learned from DNS answers, > 0
//	  static_max_age: duration           [1h] static tier: resolved addresses are reused this long, > 0
//	shield:
//	  default: bool                      [false] shield every `podman run`/`create` with no matching rule
//	  rules:                             [] first matching rule wins
//	    - image: glob                    matched against the image reference as typed
//	      name: glob                     matched against --name (a rule needs image and/or name)
//	      profiles: [name, ...]          [default_profiles]
//	      shield: bool                   [true] false exempts matching containers
//
// Globs: '*' matches any run of characters including '/', '?' one
// character, '\' escapes the next character; everything else is literal.
// A rule with both image and name matches only when both match.
//
// Whether a container is shielded, and with which profiles, is decided by
// the first of these that applies: the CLI flag --shield[=PROFILES], the
// environment (TEROK_SHIELD=1|0, TEROK_SHIELD_PROFILES=a,b), the first
// matching rule, shield.default with default_profiles. [Config.Match]
// implements the last two.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/terok-ai/terok-shield/internal/dirs"
	"github.com/terok-ai/terok-shield/profiles"
)

// Config is the parsed config.yml.
type Config struct {
	Mode            string
	DefaultProfiles []string
	LoopbackPorts   []int
	Audit           Audit
	Resolver        Resolver
	Shield          Shield
}

// Audit configures the audit log.
type Audit struct {
	Enabled  bool
	MaxBytes int64
}

// Resolver configures the per-container resolver.
type Resolver struct {
	Tier       string // "auto", "dnsmasq" or "static"
	Upstream   []netip.Addr
	LearnedTTL time.Duration
	// StaticMaxAge is how long the static tier reuses resolved addresses.
	StaticMaxAge time.Duration
}

// Shield says which containers are shielded.
type Shield struct {
	Default bool
	Rules   []Rule
}

// Rule maps image and/or container name globs to profiles.
type Rule struct {
	Image    string // glob, "" = any
	Name     string // glob, "" = any
	Profiles []string
	Shield   bool
}

// Defaults returns the configuration of a missing file.
func Defaults() *Config {
	return &Config{
		Mode:            "auto",
		DefaultProfiles: []string{profiles.DefaultProfile},
		Audit:           Audit{Enabled: true, MaxBytes: 10 << 20},
		Resolver:        Resolver{Tier: "auto", LearnedTTL: time.Hour, StaticMaxAge: time.Hour},
	}
}

// DefaultPath returns the config file path.
func DefaultPath(getenv func(string) string) (string, error) {
	d, err := dirs.Config(getenv)
	if err != nil {
		return "", fmt.Errorf("locate config file: %w", err)
	}
	return filepath.Join(d, "config.yml"), nil
}

// Load reads the config file at path; a missing file means Defaults().
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Defaults(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Match applies the rules to a container: the first rule whose globs all
// match decides (matched is true); otherwise shield.default decides with
// the default profiles. profiles is never empty.
func (c *Config) Match(image, name string) (profs []string, shield bool, matched bool) {
	for _, r := range c.Shield.Rules {
		if r.Image != "" && !Glob(r.Image, image) {
			continue
		}
		if r.Name != "" && !Glob(r.Name, name) {
			continue
		}
		p := r.Profiles
		if len(p) == 0 {
			p = c.DefaultProfiles
		}
		return slices.Clone(p), r.Shield, true
	}
	return slices.Clone(c.DefaultProfiles), c.Shield.Default, false
}

// Glob reports whether s matches pattern (see the package documentation).
// A malformed pattern (trailing '\') matches nothing.
func Glob(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 0 && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			if pattern == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if Glob(pattern, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			_, n := utf8.DecodeRuneInString(s)
			s, pattern = s[n:], pattern[1:]
		case '\\':
			if len(pattern) < 2 || s == "" || s[0] != pattern[1] {
				return false
			}
			s, pattern = s[1:], pattern[2:]
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
			s, pattern = s[1:], pattern[1:]
		}
	}
	return s == ""
}

func validGlob(p string) error {
	if p == "" {
		return errors.New("empty glob")
	}
	if strings.HasSuffix(p, `\`) && !strings.HasSuffix(p, `\\`) {
		return errors.New("trailing '\\'")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}

// parser walks the YAML tree collecting errors with key paths.
type parser struct{ file string }

type keyErr struct {
	file string
	line int
	path string
	msg  string
}

func (e *keyErr) Error() string {
	if e.path == "" {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.file, e.line, e.path, e.msg)
}

func (p *parser) errf(n *yaml.Node, path, format string, args ...any) error {
	return &keyErr{file: p.file, line: n.Line, path: path, msg: fmt.Sprintf(format, args...)}
}

// Parse parses config data; file names the source in errors.
func Parse(file string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c := Defaults()
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return c, nil
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return c, nil
	}
	p := &parser{file: file}
	err := p.mapping(root, "", map[string]func(*yaml.Node, string) error{
		"mode": func(n *yaml.Node, path string) error {
			return p.enum(n, path, &c.Mode, "auto", "hook")
		},
		"default_profiles": func(n *yaml.Node, path string) error {
			if err := p.names(n, path, &c.DefaultProfiles); err != nil {
				return err
			}
			if len(c.DefaultProfiles) == 0 {
				return p.errf(n, path, "must not be empty")
			}
			return nil
		},
		"loopback_ports": func(n *yaml.Node, path string) error { return p.ports(n, path, &c.LoopbackPorts) },
		"audit": func(n *yaml.Node, path string) error {
			return p.mapping(n, path, map[string]func(*yaml.Node, string) error{
				"enabled": func(n *yaml.Node, path string) error { return p.boolean(n, path, &c.Audit.Enabled) },
				"max_bytes": func(n *yaml.Node, path string) error {
					return p.integer(n, path, &c.Audit.MaxBytes, 4096, 1<<40)
				},
			})
		},
		"resolver": func(n *yaml.Node, path string) error {
			return p.mapping(n, path, map[string]func(*yaml.Node, string) error{
				"tier": func(n *yaml.Node, path string) error {
					return p.enum(n, path, &c.Resolver.Tier, "auto", "dnsmasq", "static")
				},
				"upstream":    func(n *yaml.Node, path string) error { return p.addrs(n, path, &c.Resolver.Upstream) },
				"learned_ttl": func(n *yaml.Node, path string) error { return p.duration(n, path, &c.Resolver.LearnedTTL) },
				"static_max_age": func(n *yaml.Node, path string) error {
					return p.duration(n, path, &c.Resolver.StaticMaxAge)
				},
			})
		},
		"shield": func(n *yaml.Node, path string) error {
			return p.mapping(n, path, map[string]func(*yaml.Node, string) error{
				"default": func(n *yaml.Node, path string) error { return p.boolean(n, path, &c.Shield.Default) },
				"rules":   func(n *yaml.Node, path string) error { return p.rules(n, path, &c.Shield.Rules) },
			})
		},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (p *parser) mapping(n *yaml.Node, path string, fields map[string]func(*yaml.Node, string) error) error {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return p.errf(n, path, "expected a mapping, got %s", describe(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return p.errf(k, path, "expected a key, got %s", describe(k))
		}
		kp := join(path, k.Value)
		f, ok := fields[k.Value]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, name)
			}
			slices.Sort(known)
			return p.errf(k, kp, "unknown key (known: %s)", strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return p.errf(k, kp, "duplicate key")
		}
		seen[k.Value] = true
		if err := f(v, kp); err != nil {
			return err
		}
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "nothing"
}

func (p *parser) scalar(n *yaml.Node, path, tag, what string) (*yaml.Node, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag != tag {
		return nil, p.errf(n, path, "expected %s, got %s", what, describe(n))
	}
	return n, nil
}

func (p *parser) str(n *yaml.Node, path string) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.errf(n, path, "expected a string, got %s", describe(n))
	}
	return n.Value, nil
}

func (p *parser) boolean(n *yaml.Node, path string, out *bool) error {
	s, err := p.scalar(n, path, "!!bool", "true or false")
	if err != nil {
		return err
	}
	return s.Decode(out)
}

func (p *parser) integer(n *yaml.Node, path string, out *int64, lo, hi int64) error {
	s, err := p.scalar(n, path, "!!int", "an integer")
	if err != nil {
		return err
	}
	var v int64
	if err := s.Decode(&v); err != nil {
		return p.errf(s, path, "%v", err)
	}
	if v < lo || v > hi {
		return p.errf(s, path, "%d out of range %d..%d", v, lo, hi)
	}
	*out = v
	return nil
}

func (p *parser) enum(n *yaml.Node, path string, out *string, allowed ...string) error {
	s, err := p.scalar(n, path, "!!str", "one of "+strings.Join(allowed, ", "))
	if err != nil {
		return err
	}
	if !slices.Contains(allowed, s.Value) {
		return p.errf(s, path, "%q is not one of %s", s.Value, strings.Join(allowed, ", "))
	}
	*out = s.Value
	return nil
}

func (p *parser) duration(n *yaml.Node, path string, out *time.Duration) error {
	s, err := p.scalar(n, path, "!!str", `a duration such as "1h" or "90s"`)
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(s.Value)
	if err != nil {
		return p.errf(s, path, "invalid duration %q", s.Value)
	}
	if d <= 0 {
		return p.errf(s, path, "duration must be positive, got %s", d)
	}
	*out = d
	return nil
}

// each calls f for each element of a list.
func (p *parser) each(n *yaml.Node, path string, f func(*yaml.Node, string) error) error {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		return p.errf(n, path, "expected a list, got %s", describe(n))
	}
	for i, e := range n.Content {
		if err := f(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) names(n *yaml.Node, path string, out *[]string) error {
	var names []string
	err := p.each(n, path, func(e *yaml.Node, ep string) error {
		s, err := p.str(e, ep)
		if err != nil {
			return err
		}
		if err := profiles.ValidateName(s); err != nil {
			return p.errf(e, ep, "%v", err)
		}
		if !slices.Contains(names, s) {
			names = append(names, s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	*out = names
	return nil
}

func (p *parser) ports(n *yaml.Node, path string, out *[]int) error {
	one := func(e *yaml.Node, ep string) error {
		var v int64
		if err := p.integer(e, ep, &v, 1, 65535); err != nil {
			return err
		}
		if !slices.Contains(*out, int(v)) {
			*out = append(*out, int(v))
		}
		return nil
	}
	*out = nil
	if r := resolve(n); r.Kind == yaml.ScalarNode {
		return one(r, path)
	}
	return p.each(n, path, one)
}

func (p *parser) addrs(n *yaml.Node, path string, out *[]netip.Addr) error {
	*out = nil
	return p.each(n, path, func(e *yaml.Node, ep string) error {
		s, err := p.str(e, ep)
		if err != nil {
			return err
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p.errf(e, ep, "invalid IP address %q", s)
		}
		*out = append(*out, a.Unmap())
		return nil
	})
}

func (p *parser) rules(n *yaml.Node, path string, out *[]Rule) error {
	*out = nil
	return p.each(n, path, func(e *yaml.Node, ep string) error {
		r := Rule{Shield: true}
		glob := func(dst *string) func(*yaml.Node, string) error {
			return func(n *yaml.Node, path string) error {
				s, err := p.str(n, path)
				if err != nil {
					return err
				}
				if err := validGlob(s); err != nil {
					return p.errf(n, path, "invalid glob %q: %v", s, err)
				}
				*dst = s
				return nil
			}
		}
		err := p.mapping(e, ep, map[string]func(*yaml.Node, string) error{
			"image":    glob(&r.Image),
			"name":     glob(&r.Name),
			"profiles": func(n *yaml.Node, path string) error { return p.names(n, path, &r.Profiles) },
			"shield":   func(n *yaml.Node, path string) error { return p.boolean(n, path, &r.Shield) },
		})
		if err != nil {
			return err
		}
		if r.Image == "" && r.Name == "" {
			return p.errf(resolve(e), ep, "a rule needs image and/or name")
		}
		*out = append(*out, r)
		return nil
	})
}
