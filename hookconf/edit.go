// SPDX-License-Identifier: Apache-2.0

package hookconf

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Lines of the block terok-shield keeps in containers.conf. Replaced lines are kept as
// comments prefixed with keptPrefix; flags say what else to undo.
const (
	beginMarker = "# >>> terok-shield setup: engine.hooks_dir"
	beginLine   = beginMarker + " (`terok-shield setup --uninstall` restores the lines this block replaced; do not edit)"
	endMarker   = "# <<< terok-shield setup"
	keptPrefix  = "#| "
	flagPrefix  = "#! "
	// flagCreated: the file did not exist before setup.
	flagCreated = "created-file"
	// flagAddedEOL: the line before the block had no final newline; setup added "\n".
	flagAddedEOL = "added-final-newline"
)

// ErrUnsafe is returned when a containers.conf cannot be edited line by line with confidence.
var ErrUnsafe = errors.New("cannot edit safely; set engine.hooks_dir by hand")

// rawLine is one line of a file: its text without "\n" (a "\r" stays part of it) and whether
// a "\n" ended it.
type rawLine struct {
	text string
	nl   bool
}

func splitLines(src []byte) []rawLine {
	var out []rawLine
	s := string(src)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			out = append(out, rawLine{text: s})
			break
		}
		out = append(out, rawLine{text: s[:i], nl: true})
		s = s[i+1:]
	}
	return out
}

func joinLines(ls []rawLine) []byte {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.text)
		if l.nl {
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

// crlf reports whether the file's first terminated line ends with "\r\n".
func crlf(ls []rawLine) bool {
	for _, l := range ls {
		if l.nl {
			return strings.HasSuffix(l.text, "\r")
		}
	}
	return false
}

// Revert removes terok-shield's blocks from src and puts back the lines they replaced. gone
// reports that setup created the file and nothing else is left in it (the file should be
// removed); changed reports whether there was a block.
func Revert(src []byte) (out []byte, gone, changed bool, err error) {
	ls := splitLines(src)
	created := false
	for {
		begin := slices.IndexFunc(ls, func(l rawLine) bool {
			return strings.HasPrefix(strings.TrimSuffix(l.text, "\r"), beginMarker)
		})
		if begin < 0 {
			break
		}
		end := -1
		for i := begin + 1; i < len(ls); i++ {
			if strings.TrimSuffix(ls[i].text, "\r") == endMarker {
				end = i
				break
			}
		}
		if end < 0 {
			return nil, false, false, fmt.Errorf("terok-shield block from line %d has no end marker %q: %w", begin+1, endMarker, ErrUnsafe)
		}
		var restored []rawLine
		addedEOL := false
		for _, l := range ls[begin+1 : end] {
			switch t := strings.TrimSuffix(l.text, "\r"); {
			case strings.HasPrefix(l.text, keptPrefix):
				restored = append(restored, rawLine{text: l.text[len(keptPrefix):], nl: true})
			case t == flagPrefix+flagCreated:
				created = true
			case t == flagPrefix+flagAddedEOL:
				addedEOL = true
			}
		}
		next := append(slices.Clone(ls[:begin]), restored...)
		if addedEOL && end == len(ls)-1 && len(next) > 0 {
			next[len(next)-1].nl = false
		}
		ls = append(next, ls[end+1:]...)
		changed = true
	}
	out = joinLines(ls)
	return out, created && len(out) == 0, changed, nil
}

// Install returns base (a containers.conf without terok-shield's block; exists false when
// there is no such file) with engine.hooks_dir set to dirs inside a marked block: an existing
// hooks_dir of the [engine] table (or a top-level engine.hooks_dir) is replaced and kept as a
// comment, else the key is added below the [engine] header, else an [engine] table is
// appended. Every other byte of base is kept.
func Install(base []byte, exists bool, dirs []string) ([]byte, error) {
	ls := splitLines(base)
	stmts, err := scan(ls)
	if err != nil {
		return nil, err
	}
	cr := ""
	if crlf(ls) {
		cr = "\r"
	}
	line := func(s string) rawLine { return rawLine{text: s + cr, nl: true} }
	value := tomlArray(dirs)

	var table []string
	arrayTable := false
	header, target := -1, -1
	for i, st := range stmts {
		switch st.kind {
		case stmtTable, stmtArrayTable:
			table, arrayTable = st.name, st.kind == stmtArrayTable
			if !arrayTable && slices.Equal(table, []string{"engine"}) && header < 0 {
				header = i
			}
		case stmtKey:
			name := st.name
			if !arrayTable {
				name = append(slices.Clone(table), st.name...)
			}
			switch {
			case arrayTable:
			case slices.Equal(name, []string{"engine", "hooks_dir"}):
				if target >= 0 {
					return nil, fmt.Errorf("engine.hooks_dir is set twice (lines %d and %d): %w", stmts[target].first+1, st.first+1, ErrUnsafe)
				}
				target = i
			case slices.Equal(name, []string{"engine"}):
				return nil, fmt.Errorf("line %d: engine is an inline table: %w", st.first+1, ErrUnsafe)
			}
		}
	}

	var out []rawLine
	switch {
	case target >= 0:
		st := stmts[target]
		block := []rawLine{line(beginLine)}
		for _, l := range ls[st.first : st.last+1] {
			block = append(block, rawLine{text: keptPrefix + l.text, nl: true})
		}
		if !ls[st.last].nl {
			block = append(block, line(flagPrefix+flagAddedEOL))
		}
		block = append(block, line(strings.TrimRight(st.keyPrefix, " \t")+" "+value), line(endMarker))
		out = append(append(slices.Clone(ls[:st.first]), block...), ls[st.last+1:]...)
	case header >= 0:
		h := stmts[header].last
		block := []rawLine{line(beginLine), line("hooks_dir = " + value), line(endMarker)}
		if !ls[h].nl {
			// The header is the file's unterminated last line.
			ls[h].nl = true
			block = slices.Insert(block, 1, line(flagPrefix+flagAddedEOL))
		}
		out = append(append(slices.Clone(ls[:h+1]), block...), ls[h+1:]...)
	default:
		block := []rawLine{line(beginLine)}
		if !exists {
			block = append(block, line(flagPrefix+flagCreated))
		}
		out = slices.Clone(ls)
		if n := len(out); n > 0 && !out[n-1].nl {
			out[n-1].nl = true
			block = append(block, line(flagPrefix+flagAddedEOL))
		}
		block = append(block, line("[engine]"), line("hooks_dir = "+value), line(endMarker))
		out = append(out, block...)
	}
	return joinLines(out), nil
}

type stmtKind int

const (
	stmtKey stmtKind = iota
	stmtTable
	stmtArrayTable
)

// stmt is one TOML statement: a table header or a key/value pair over lines first..last.
type stmt struct {
	kind        stmtKind
	first, last int
	name        []string // table name or (dotted) key, unquoted
	keyPrefix   string   // keys: the first line up to and including '='
}

// scan splits a TOML document into statements, following strings, comments and brackets so
// multi-line arrays and strings are one statement. It does not validate values.
func scan(ls []rawLine) ([]stmt, error) {
	var out []stmt
	var cur *stmt
	depth := 0
	ml := "" // delimiter of an open multi-line string
	for i, l := range ls {
		s := strings.TrimSuffix(l.text, "\r")
		j := 0
		if cur == nil {
			t := strings.TrimLeft(s, " \t")
			if t == "" || t[0] == '#' {
				continue
			}
			if t[0] == '[' {
				arr := strings.HasPrefix(t, "[[")
				name, err := headerName(t, arr)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", i+1, err)
				}
				kind := stmtTable
				if arr {
					kind = stmtArrayTable
				}
				out = append(out, stmt{kind: kind, first: i, last: i, name: name})
				continue
			}
			eq := outsideQuotes(s, '=')
			if eq < 0 {
				return nil, fmt.Errorf("line %d: no key = value: %w", i+1, ErrUnsafe)
			}
			name, err := keyParts(s[:eq])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			cur = &stmt{kind: stmtKey, first: i, name: name, keyPrefix: s[:eq+1]}
			j = eq + 1
		}
		for j < len(s) {
			if ml != "" {
				switch {
				case ml == `"""` && s[j] == '\\':
					j += 2
				case strings.HasPrefix(s[j:], ml):
					j += 3
					ml = ""
				default:
					j++
				}
				continue
			}
			switch c := s[j]; c {
			case '#':
				j = len(s)
				continue
			case '"', '\'':
				if strings.HasPrefix(s[j:], strings.Repeat(string(c), 3)) {
					ml = strings.Repeat(string(c), 3)
					j += 3
					continue
				}
				end := stringEnd(s, j)
				if end < 0 {
					return nil, fmt.Errorf("line %d: unterminated string: %w", i+1, ErrUnsafe)
				}
				j = end
				continue
			case '[', '{':
				depth++
			case ']', '}':
				depth--
			}
			j++
		}
		if ml == "" && depth <= 0 {
			cur.last = i
			out = append(out, *cur)
			cur, depth = nil, 0
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: value never ends: %w", cur.first+1, ErrUnsafe)
	}
	return out, nil
}

// stringEnd returns the index just after the single-line string starting at s[i], or -1.
func stringEnd(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case q == '"' && s[j] == '\\':
			j++
		case s[j] == q:
			return j + 1
		}
	}
	return -1
}

// outsideQuotes returns the index of the first c in s outside quoted strings, or -1.
func outsideQuotes(s string, c byte) int {
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '"', '\'':
			end := stringEnd(s, j)
			if end < 0 {
				return -1
			}
			j = end - 1
		case c:
			return j
		}
	}
	return -1
}

// headerName parses "[a.b]" or "[[a.b]]" (t starts with the bracket) into its key parts.
func headerName(t string, arr bool) ([]string, error) {
	open := 1
	if arr {
		open = 2
	}
	end := outsideQuotes(t[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("unterminated table header: %w", ErrUnsafe)
	}
	return keyParts(t[open : open+end])
}

// keyParts splits a dotted TOML key into its unquoted parts.
func keyParts(k string) ([]string, error) {
	var parts []string
	for k = strings.TrimSpace(k); ; {
		var part string
		switch {
		case k == "":
			return nil, fmt.Errorf("empty key: %w", ErrUnsafe)
		case k[0] == '"' || k[0] == '\'':
			end := stringEnd(k, 0)
			if end < 0 {
				return nil, fmt.Errorf("unterminated quoted key: %w", ErrUnsafe)
			}
			if k[0] == '"' && strings.ContainsRune(k[1:end-1], '\\') {
				return nil, fmt.Errorf("escaped quoted key: %w", ErrUnsafe)
			}
			part, k = k[1:end-1], strings.TrimSpace(k[end:])
		default:
			end := strings.IndexByte(k, '.')
			if end < 0 {
				end = len(k)
			}
			part, k = strings.TrimSpace(k[:end]), strings.TrimSpace(k[end:])
			if part == "" || strings.TrimLeft(part, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
				return nil, fmt.Errorf("bad key %q: %w", part, ErrUnsafe)
			}
		}
		parts = append(parts, part)
		if k == "" {
			return parts, nil
		}
		if k[0] != '.' {
			return nil, fmt.Errorf("bad key: %w", ErrUnsafe)
		}
		k = strings.TrimSpace(k[1:])
	}
}
