// SPDX-License-Identifier: Apache-2.0

package argparse

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors returned (wrapped) by Parse.
var (
	ErrUnknownFlag    = errors.New("unknown flag")
	ErrMissingValue   = errors.New("flag needs an argument")
	ErrUnknownCommand = errors.New("unrecognized command")
	ErrBadSyntax      = errors.New("bad flag syntax")
)

// Options tunes Parse.
type Options struct {
	// Version is a hint naming the podman version ("4.3.1", "podman
	// version 5.8.2"); see the package doc for how a table is chosen.
	Version string
	// ShimFlags are the shim's own long flags accepted on run and create
	// (e.g. "shield"): boolean-like, with an optional "=value".
	ShimFlags []string
	// Remote says the caller already knows podman runs in remote mode
	// (RemoteFromEnv, containers.conf); argv is checked in any case.
	Remote bool
}

// Invocation is a parsed podman command line.
type Invocation struct {
	Argv        []string     // the original argv (without argv[0]), never modified
	Globals     []Flag       // root flags before the command
	Command     []string     // as typed, e.g. ["container","run"]
	Canonical   string       // "run", "pod create", "kube play", "version", "help", "__complete", ...
	Flags       []Flag       // command flags in order (incl. persistent root flags after the command, and shim flags)
	Positionals []Positional // for run/create the first is the image
	ImageIndex  int          // argv index of the image for run/create (-1 if none)
	DashDash    int          // index of the "--" that ended flag parsing, or -1
	Remote      bool         // remote mode: detected from argv, or Options.Remote
	Version     string       // full podman version of the table used, e.g. "5.8.2"
}

// Flag is one parsed flag occurrence.
type Flag struct {
	Name     string // canonical long name, alias-normalised (net -> network); the raw name if Unknown
	Index    int    // argv index of the first token
	N        int    // number of tokens (1, or 2 when the value is the next token)
	Value    string // the value; "true" (the no-option default) for a bare boolean
	HasValue bool   // the value was given explicitly (--rm=false, -p 80, --name=x)
	Bool     bool   // the flag never consumes the next token (boolean or optional-value)
	Shim     bool   // one of Options.ShimFlags
	Unknown  bool   // not in the table; only on commands where unknown flags are tolerated
}

// Positional is a non-flag argument.
type Positional struct {
	Index int
	Value string
}

// strictCommands fail on unknown flags; other commands tolerate them.
var strictCommands = map[string]bool{
	"run": true, "create": true, "start": true, "restart": true, "exec": true, "init": true,
	"pod create": true, "pod start": true, "pod restart": true, "kube play": true,
}

// shimCommands accept Options.ShimFlags.
var shimCommands = map[string]bool{"run": true, "create": true}

// Parse parses podman's argv (without argv[0]) the way podman's cobra/pflag
// setup does. See the package documentation for the exact rules.
func Parse(argv []string, opts Options) (*Invocation, error) {
	ve, err := chooseVersion(opts.Version)
	if err != nil {
		return nil, err
	}
	ts, err := ve.load()
	if err != nil {
		return nil, err
	}
	inv := &Invocation{Argv: argv, ImageIndex: -1, DashDash: -1, Version: ts.version}
	inv.Remote = opts.Remote || remoteFromArgv(argv)
	p := &parser{inv: inv, ts: ts, remote: inv.Remote}

	// Shell completion entry points take the rest verbatim.
	if len(argv) > 0 && (argv[0] == "__complete" || argv[0] == "__completeNoDesc") {
		inv.Command = argv[:1]
		inv.Canonical = "__complete"
		p.positionalsFrom(1)
		return inv, nil
	}

	cur, start, err := p.traverse()
	if err != nil {
		return inv, err
	}
	var names []string
	for s := cur; s != ts.root; s = ts.byPath[parentPath(s.path)] {
		names = append([]string{s.name}, names...)
	}
	inv.Canonical = canonical(ts, names)

	if cur == ts.root {
		// No command: root flags only (the cobra-added --version/-v exists
		// only here, when the root itself runs).
		fs := &flagSet{p: p, sec: cur, leaf: true}
		if err := p.parseFlags(start, fs, true, &inv.Globals); err != nil {
			return inv, err
		}
		switch {
		case truthy(inv.Globals, "help"):
			inv.Canonical = "help"
		case truthy(inv.Globals, "version"):
			inv.Canonical = "version"
		case len(inv.Positionals) > 0:
			return inv, fmt.Errorf("%w %q", ErrUnknownCommand, inv.Positionals[0].Value)
		}
		return inv, nil
	}
	if truthy(inv.Globals, "help") {
		inv.Canonical = "help"
	}
	if cur.noParse || !cur.usable(p.remote) {
		p.positionalsFrom(start)
		return inv, nil
	}
	fs := &flagSet{p: p, sec: cur, leaf: true, lenient: !strictCommands[inv.Canonical] || cur.unknownOK}
	if shimCommands[inv.Canonical] {
		fs.shim = opts.ShimFlags
	}
	if err := p.parseFlags(start, fs, cur.interspersed, &inv.Flags); err != nil {
		return inv, err
	}
	if cur.group && len(inv.Positionals) > 0 && !p.helped {
		return inv, fmt.Errorf("%w %q for %q", ErrUnknownCommand, inv.Positionals[0].Value, cur.path)
	}
	if (inv.Canonical == "run" || inv.Canonical == "create") && len(inv.Positionals) > 0 && !p.helped {
		inv.ImageIndex = inv.Positionals[0].Index
	}
	return inv, nil
}

func parentPath(path string) string {
	if i := strings.LastIndexByte(path, ' '); i >= 0 {
		return path[:i]
	}
	return ""
}

// canonical names a command: "container X" is "X" when podman also has a
// top-level X (container run = run), and the hidden "play kube" is "kube play".
func canonical(ts *tableSet, names []string) string {
	if len(names) > 1 && names[0] == "container" && ts.root.children[names[1]] != nil && ts.root.children[names[1]].name == names[1] {
		names = names[1:]
	}
	c := strings.Join(names, " ")
	if c == "play kube" {
		return "kube play"
	}
	return c
}

func truthy(flags []Flag, name string) bool {
	v := false
	for _, f := range flags {
		if f.Name == name && !f.Unknown {
			b, err := strconv.ParseBool(f.Value)
			v = err == nil && b
		}
	}
	return v
}

type parser struct {
	inv    *Invocation
	ts     *tableSet
	remote bool
	helped bool // a help request stopped flag parsing
}

func (p *parser) positionalsFrom(i int) {
	for ; i < len(p.inv.Argv); i++ {
		p.inv.Positionals = append(p.inv.Positionals, Positional{Index: i, Value: p.inv.Argv[i]})
	}
}

// traverse mirrors cobra's Command.Traverse (podman's root sets
// TraverseChildren): at each level the leading flag tokens are collected with
// cobra's heuristic for which of them take the next token, the first other
// token that names a subcommand descends, and the collected tokens are parsed
// with that level's flag set. It returns the command reached and the argv
// index where its own arguments start.
func (p *parser) traverse() (*section, int, error) {
	argv := p.inv.Argv
	cur := p.ts.root
	start := 0
	inFlag := false
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		fs := &flagSet{p: p, sec: cur}
		switch {
		case strings.HasPrefix(a, "--") && !strings.Contains(a, "="):
			f, _ := fs.long(a[2:])
			inFlag = f == nil || f.noOpt == ""
			continue
		case len(a) == 2 && a[0] == '-' && a[1] != '=':
			if f := fs.short(a[1]); f == nil || f.noOpt == "" {
				inFlag = true
			}
			continue
		case inFlag:
			inFlag = false
			continue
		case (len(a) >= 3 && a[:2] == "--") || (len(a) >= 2 && a[0] == '-' && a[1] != '-'):
			continue
		}
		next := cur.children[a]
		if next == nil || (next.remote && !p.remote) {
			break
		}
		// The tokens before the command word are this level's flags.
		dst := &p.inv.Flags
		if cur == p.ts.root {
			dst = &p.inv.Globals
		}
		n := len(p.inv.Positionals)
		if err := p.parseFlagsRange(start, i, fs, true, dst); err != nil {
			return nil, 0, err
		}
		if len(p.inv.Positionals) > n && !p.helped {
			return nil, 0, fmt.Errorf("%w: argument %q before command %q", ErrBadSyntax, p.inv.Positionals[n].Value, a)
		}
		if p.helped {
			// Help was requested before the command word: cobra shows help.
			p.inv.Command = append(p.inv.Command, a)
			p.positionalsFrom(i + 1)
			return next, len(argv), nil
		}
		p.inv.Command = append(p.inv.Command, a)
		cur, start = next, i+1
		inFlag = false
	}
	return cur, start, nil
}

// flagSet resolves flag names for one command the way the merged pflag set
// of that command does: its own flags (with its name normalisation) first,
// then the root's persistent flags.
type flagSet struct {
	p       *parser
	sec     *section
	leaf    bool     // the command that runs: cobra has added --version on the root
	lenient bool     // unknown flags are tolerated (pflag's UnknownFlags whitelist)
	shim    []string // shim flag names
}

func (fs *flagSet) tables() (own, root *flagTable) {
	own, err := fs.sec.flags()
	if err != nil {
		own = nil
	}
	if fs.sec != fs.p.ts.root {
		root, _ = fs.p.ts.root.flags()
	}
	return own, root
}

func (fs *flagSet) hide(f *flagDef) bool {
	return !f.usable(fs.p.remote) || (f.name == "version" && fs.sec == fs.p.ts.root && !fs.leaf)
}

// long looks a long flag up; it returns the definition and the canonical name.
func (fs *flagSet) long(name string) (*flagDef, string) {
	own, root := fs.tables()
	norm := name
	if own != nil {
		if a, ok := own.aliases[name]; ok {
			norm = a
		}
		if f := own.long[norm]; f != nil && !fs.hide(f) {
			return f, f.name
		}
	}
	if root != nil {
		for _, n := range [2]string{name, norm} {
			if f := root.long[n]; f != nil && f.persistent && !fs.hide(f) {
				return f, f.name
			}
		}
	}
	return nil, ""
}

func (fs *flagSet) short(c byte) *flagDef {
	own, root := fs.tables()
	if own != nil {
		if f := own.short[c]; f != nil && !fs.hide(f) {
			return f
		}
	}
	if root != nil {
		if f := root.short[c]; f != nil && f.persistent && !fs.hide(f) {
			return f
		}
	}
	return nil
}

func (fs *flagSet) isShim(name string) bool {
	for _, s := range fs.shim {
		if s == name {
			return true
		}
	}
	return false
}

func (p *parser) parseFlags(start int, fs *flagSet, interspersed bool, dst *[]Flag) error {
	return p.parseFlagsRange(start, len(p.inv.Argv), fs, interspersed, dst)
}

// parseFlagsRange mirrors pflag's FlagSet.parseArgs over argv[start:end].
func (p *parser) parseFlagsRange(start, end int, fs *flagSet, interspersed bool, dst *[]Flag) error {
	argv := p.inv.Argv
	for i := start; i < end; {
		s := argv[i]
		if len(s) < 2 || s[0] != '-' {
			if !interspersed {
				for ; i < end; i++ {
					p.inv.Positionals = append(p.inv.Positionals, Positional{Index: i, Value: argv[i]})
				}
				return nil
			}
			p.inv.Positionals = append(p.inv.Positionals, Positional{Index: i, Value: s})
			i++
			continue
		}
		if s == "--" {
			p.inv.DashDash = i
			for i++; i < end; i++ {
				p.inv.Positionals = append(p.inv.Positionals, Positional{Index: i, Value: argv[i]})
			}
			return nil
		}
		var next int
		var err error
		if s[1] == '-' {
			next, err = p.parseLong(i, end, fs, dst)
		} else {
			next, err = p.parseShort(i, end, fs, dst)
		}
		if err != nil {
			return err
		}
		if p.helped {
			for i = next; i < end; i++ {
				p.inv.Positionals = append(p.inv.Positionals, Positional{Index: i, Value: argv[i]})
			}
			return nil
		}
		i = next
	}
	return nil
}

func (p *parser) help(i int, dst *[]Flag) {
	p.helped = true
	*dst = append(*dst, Flag{Name: "help", Index: i, N: 1, Value: "true", Bool: true})
}

func (p *parser) parseLong(i, end int, fs *flagSet, dst *[]Flag) (int, error) {
	argv := p.inv.Argv
	s := argv[i]
	name := s[2:]
	if name == "" || name[0] == '-' || name[0] == '=' {
		return 0, fmt.Errorf("%w: %s", ErrBadSyntax, s)
	}
	value, hasValue := "", false
	if eq := strings.IndexByte(name, '='); eq >= 0 {
		name, value, hasValue = name[:eq], name[eq+1:], true
	}
	if fs.isShim(name) {
		*dst = append(*dst, Flag{Name: name, Index: i, N: 1, Value: value, HasValue: hasValue, Bool: true, Shim: true})
		return i + 1, nil
	}
	f, canon := fs.long(name)
	if f == nil {
		switch {
		case name == "help":
			p.help(i, dst)
			return i + 1, nil
		case fs.lenient:
			fl := Flag{Name: name, Index: i, N: 1, Value: value, HasValue: hasValue, Unknown: true}
			if !hasValue && i+1 < end && !strings.HasPrefix(argv[i+1], "-") {
				// pflag's stripUnknownFlagValue: a following word is the value.
				fl.N, fl.Value, fl.HasValue = 2, argv[i+1], true
			}
			*dst = append(*dst, fl)
			return i + fl.N, nil
		default:
			return 0, fmt.Errorf("%w: --%s", ErrUnknownFlag, name)
		}
	}
	fl := Flag{Name: canon, Index: i, N: 1, Value: value, HasValue: hasValue, Bool: f.noOpt != ""}
	switch {
	case hasValue:
	case f.noOpt != "":
		fl.Value = f.noOpt
	case i+1 < end:
		fl.N, fl.Value, fl.HasValue = 2, argv[i+1], true
	default:
		return 0, fmt.Errorf("%w: --%s", ErrMissingValue, name)
	}
	*dst = append(*dst, fl)
	return i + fl.N, nil
}

// parseShort mirrors pflag's parseShortArg/parseSingleShortArg for a
// cluster such as -dit, -p8080:80, -e=FOO=bar or -itp 8080:80.
func (p *parser) parseShort(i, end int, fs *flagSet, dst *[]Flag) (int, error) {
	argv := p.inv.Argv
	shorts := argv[i][1:]
	next := i + 1
	for len(shorts) > 0 {
		c := shorts[0]
		f := fs.short(c)
		if f == nil {
			switch {
			case c == 'h':
				p.help(i, dst)
				return next, nil
			case fs.lenient:
				fl := Flag{Name: string(c), Index: i, N: 1, Unknown: true}
				if len(shorts) > 2 && shorts[1] == '=' {
					fl.Value, fl.HasValue = shorts[2:], true
					*dst = append(*dst, fl)
					return next, nil
				}
				if next < end && next == i+1 && !strings.HasPrefix(argv[next], "-") {
					// pflag strips a following word as the unknown flag's value.
					fl.N, fl.Value, fl.HasValue = 2, argv[next], true
					next++
				}
				*dst = append(*dst, fl)
				shorts = shorts[1:]
				continue
			default:
				return 0, fmt.Errorf("%w: -%c in -%s", ErrUnknownFlag, c, argv[i][1:])
			}
		}
		_, canon := fs.long(f.name)
		if canon == "" {
			canon = f.name
		}
		fl := Flag{Name: canon, Index: i, N: 1, Bool: f.noOpt != ""}
		switch {
		case len(shorts) > 2 && shorts[1] == '=':
			fl.Value, fl.HasValue = shorts[2:], true
			shorts = ""
		case f.noOpt != "":
			fl.Value = f.noOpt
			shorts = shorts[1:]
		case len(shorts) > 1:
			fl.Value, fl.HasValue = shorts[1:], true
			shorts = ""
		case next < end:
			fl.N, fl.Value, fl.HasValue = 2, argv[next], true
			next++
			shorts = ""
		default:
			return 0, fmt.Errorf("%w: -%c in -%s", ErrMissingValue, c, argv[i][1:])
		}
		*dst = append(*dst, fl)
	}
	return next, nil
}

// remoteFromArgv mirrors podman's registry.IsRemote argv check: a pflag set
// with --remote/-r, --connection/-c, --context, --host/-H and --url parsed
// non-interspersed with unknown flags tolerated; any of them set (or
// --remote true) means remote mode.
func remoteFromArgv(argv []string) bool {
	start := 0
	if len(argv) > 0 && (argv[0] == "__complete" || argv[0] == "__completeNoDesc") {
		start = 1
	}
	value := map[string]bool{"connection": true, "context": true, "host": true, "url": true}
	shortName := map[byte]string{'r': "remote", 'c': "connection", 'H': "host"}
	remote := false
	for i := start; i < len(argv); i++ {
		s := argv[i]
		if len(s) < 2 || s[0] != '-' || s == "--" {
			return remote
		}
		if s[1] == '-' {
			name, val, hasVal := s[2:], "", false
			if eq := strings.IndexByte(name, '='); eq >= 0 {
				name, val, hasVal = name[:eq], name[eq+1:], true
			}
			switch {
			case name == "help":
				return remote
			case name == "remote":
				if !hasVal {
					val = "true"
				}
				b, err := strconv.ParseBool(val)
				if err != nil {
					return remote
				}
				remote = b
			case value[name]:
				if !hasVal && i+1 >= len(argv) {
					return remote
				}
				return true
			case !hasVal && i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-"):
				i++ // unknown flag: pflag strips a following word
			}
			continue
		}
		shorts := s[1:]
		for len(shorts) > 0 {
			c := shorts[0]
			if c == 'h' {
				return remote
			}
			switch shortName[c] {
			case "remote":
				val := "true"
				if len(shorts) > 2 && shorts[1] == '=' {
					val, shorts = shorts[2:], ""
				} else {
					shorts = shorts[1:]
				}
				b, err := strconv.ParseBool(val)
				if err != nil {
					return remote
				}
				remote = b
			case "":
				if len(shorts) > 2 && shorts[1] == '=' {
					shorts = ""
					continue
				}
				if i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "-") {
					i++
				}
				shorts = shorts[1:]
			default:
				if len(shorts) == 1 && i+1 >= len(argv) {
					return remote
				}
				return true
			}
		}
	}
	return remote
}
