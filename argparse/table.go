// SPDX-License-Identifier: Apache-2.0

package argparse

import (
	"embed"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

//go:embed flags/podman-*.txt
var tableFiles embed.FS

// flagDef is one flag of one command as generated from podman's cobra tree.
type flagDef struct {
	name       string
	short      byte   // 0: no shorthand
	noOpt      string // pflag NoOptDefVal; non-empty means the flag never consumes the next token
	typ        string // pflag value type, e.g. "bool", "string", "stringSlice"
	persistent bool
	hidden     bool
	local      bool // absent in remote mode
	remote     bool // present only in remote mode
}

// usable reports whether the flag exists in the given mode.
func (f *flagDef) usable(remote bool) bool {
	return f != nil && !(remote && f.local) && !(!remote && f.remote)
}

// flagTable is the parsed flag list of one command section.
type flagTable struct {
	long    map[string]*flagDef
	short   map[byte]*flagDef
	aliases map[string]string // flag-name normalisation (e.g. net -> network)
}

// section is one command of a version's table; its flags are parsed lazily.
type section struct {
	path          string // "" for the root, "pod create", ...
	name          string
	interspersed  bool
	noParse       bool
	unknownOK     bool
	group         bool // RunE is validate.SubCommandExists
	local, remote bool
	children      map[string]*section // by name and alias
	flags         func() (*flagTable, error)
}

// usable reports whether the command exists (with its flags) in the mode.
func (s *section) usable(remote bool) bool {
	return !(remote && s.local) && !(!remote && s.remote)
}

// tableSet is one podman version's command tree.
type tableSet struct {
	version string
	root    *section
	byPath  map[string]*section
}

// versionEntry is one embedded table file, indexed lazily.
type versionEntry struct {
	major, minor int
	load         func() (*tableSet, error)
}

var fileNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^podman-(\d+)\.(\d+)\.txt$`) })

// embeddedVersions lists the embedded tables, oldest first. Only the file
// names are looked at until a version is used.
var embeddedVersions = sync.OnceValue(func() []versionEntry {
	ents, err := tableFiles.ReadDir("flags")
	if err != nil {
		return nil
	}
	var out []versionEntry
	for _, e := range ents {
		m := fileNameRE().FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		name := "flags/" + e.Name()
		out = append(out, versionEntry{major: major, minor: minor, load: sync.OnceValues(func() (*tableSet, error) {
			b, err := tableFiles.ReadFile(name)
			if err != nil {
				return nil, err
			}
			return indexTable(string(b))
		})})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].major != out[j].major {
			return out[i].major < out[j].major
		}
		return out[i].minor < out[j].minor
	})
	return out
})

var versionHintRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(\d+)\.(\d+)`) })

// chooseVersion picks the table for a version hint such as "4.3.1",
// "v5.2.0-dev" or "podman version 5.8.2": the table of the same
// major.minor; otherwise the oldest newer table (tables only gain flags, so a
// newer one is a superset); a hint newer than every table, an empty or
// unparsable hint selects the newest table.
func chooseVersion(hint string) (versionEntry, error) {
	vs := embeddedVersions()
	if len(vs) == 0 {
		return versionEntry{}, fmt.Errorf("no embedded podman flag tables")
	}
	m := versionHintRE().FindStringSubmatch(hint)
	if m == nil {
		return vs[len(vs)-1], nil
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	for _, v := range vs {
		if v.major > major || (v.major == major && v.minor >= minor) {
			return v, nil
		}
	}
	return vs[len(vs)-1], nil
}

// TableVersions returns the podman versions with an embedded table, oldest
// first, as "MAJOR.MINOR".
func TableVersions() []string {
	var out []string
	for _, v := range embeddedVersions() {
		out = append(out, fmt.Sprintf("%d.%d", v.major, v.minor))
	}
	return out
}

// TableFor returns the full podman version ("4.3.1") of the table that
// Parse uses for the version hint.
func TableFor(hint string) (string, error) {
	v, err := chooseVersion(hint)
	if err != nil {
		return "", err
	}
	ts, err := v.load()
	if err != nil {
		return "", err
	}
	return ts.version, nil
}

// indexTable splits a table file into command sections without parsing
// their flag lines.
func indexTable(text string) (*tableSet, error) {
	ts := &tableSet{byPath: map[string]*section{}}
	type pending struct {
		sec     *section
		aliases []string
	}
	var secs []pending
	pos := 0
	for pos < len(text) {
		end := strings.IndexByte(text[pos:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += pos
		}
		line := text[pos:end]
		pos = end + 1
		switch {
		case strings.HasPrefix(line, "version "):
			ts.version = strings.TrimSpace(line[len("version "):])
		case strings.HasPrefix(line, "["):
			close := strings.IndexByte(line, ']')
			if close < 0 {
				return nil, fmt.Errorf("flag table: bad section header %q", line)
			}
			s := &section{path: line[1:close], interspersed: true, children: map[string]*section{}}
			if i := strings.LastIndexByte(s.path, ' '); i >= 0 {
				s.name = s.path[i+1:]
			} else {
				s.name = s.path
			}
			var aliases []string
			for _, a := range strings.Fields(line[close+1:]) {
				switch {
				case a == "nointersperse":
					s.interspersed = false
				case a == "noparse":
					s.noParse = true
				case a == "unknownok":
					s.unknownOK = true
				case a == "group":
					s.group = true
				case a == "local":
					s.local = true
				case a == "remote":
					s.remote = true
				case strings.HasPrefix(a, "alias="):
					aliases = strings.Split(a[len("alias="):], ",")
				}
			}
			// The body runs to the next section header.
			if pos > len(text) {
				pos = len(text)
			}
			bodyEnd := strings.Index(text[pos-1:], "\n[")
			if bodyEnd < 0 {
				bodyEnd = len(text)
			} else {
				bodyEnd += pos
			}
			body := text[pos:bodyEnd]
			pos = bodyEnd
			path := s.path
			s.flags = sync.OnceValues(func() (*flagTable, error) { return parseFlagLines(path, body) })
			ts.byPath[s.path] = s
			secs = append(secs, pending{s, aliases})
		}
	}
	root := ts.byPath[""]
	if root == nil {
		return nil, fmt.Errorf("flag table: no root section")
	}
	ts.root = root
	for _, p := range secs {
		if p.sec == root {
			continue
		}
		parentPath := ""
		if i := strings.LastIndexByte(p.sec.path, ' '); i >= 0 {
			parentPath = p.sec.path[:i]
		}
		parent := ts.byPath[parentPath]
		if parent == nil {
			return nil, fmt.Errorf("flag table: section %q has no parent", p.sec.path)
		}
		parent.children[p.sec.name] = p.sec
		for _, a := range p.aliases {
			if _, taken := parent.children[a]; !taken {
				parent.children[a] = p.sec
			}
		}
	}
	return ts, nil
}

// parseFlagLines parses "name short kind type attrs..." and "= from to" lines.
func parseFlagLines(path, body string) (*flagTable, error) {
	t := &flagTable{long: map[string]*flagDef{}, short: map[byte]*flagDef{}}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if f[0] == "=" {
			if len(f) != 3 {
				return nil, fmt.Errorf("flag table [%s]: bad alias line %q", path, line)
			}
			if t.aliases == nil {
				t.aliases = map[string]string{}
			}
			t.aliases[f[1]] = f[2]
			continue
		}
		if len(f) < 4 || len(f[1]) != 1 || (f[2] != "bool" && f[2] != "value") {
			return nil, fmt.Errorf("flag table [%s]: bad flag line %q", path, line)
		}
		d := &flagDef{name: f[0], typ: f[3]}
		if f[1] != "-" {
			d.short = f[1][0]
		}
		if f[2] == "bool" {
			d.noOpt = "true"
		}
		for _, a := range f[4:] {
			switch {
			case a == "persistent":
				d.persistent = true
			case a == "hidden":
				d.hidden = true
			case a == "local":
				d.local = true
			case a == "remote":
				d.remote = true
			case strings.HasPrefix(a, "noopt="):
				d.noOpt = a[len("noopt="):]
			}
		}
		t.long[d.name] = d
		if d.short != 0 {
			t.short[d.short] = d
		}
	}
	return t, nil
}

// FlagType returns pflag's type ("bool", "string", "stringSlice",
// "stringArray", …) of a flag of the command path ("" for the root, "run",
// "pod create") in the table chosen by opts.Version; the root's persistent
// flags are found for every command. It tells, for example, whether podman
// splits a flag's value on commas (stringSlice) or keeps it (stringArray).
func FlagType(opts Options, command, name string) (string, error) {
	v, err := chooseVersion(opts.Version)
	if err != nil {
		return "", err
	}
	ts, err := v.load()
	if err != nil {
		return "", err
	}
	sec := ts.byPath[command]
	if sec == nil {
		return "", fmt.Errorf("podman %s: %w %q", ts.version, ErrUnknownCommand, command)
	}
	p := &parser{ts: ts, remote: opts.Remote}
	f, _ := (&flagSet{p: p, sec: sec, leaf: true}).long(name)
	if f == nil {
		return "", fmt.Errorf("podman %s %s: %w: --%s", ts.version, command, ErrUnknownFlag, name)
	}
	return f.typ, nil
}
