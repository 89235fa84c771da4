// SPDX-License-Identifier: Apache-2.0

package profiles

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Kind says what an [Entry] matches.
type Kind uint8

// The kinds of entries.
const (
	// Domain matches exactly one DNS name.
	Domain Kind = iota + 1
	// Wildcard matches every name strictly below Name, not Name itself.
	Wildcard
	// Prefix matches an IP prefix (a single address is a /32 or /128).
	Prefix
)

// String returns "domain", "wildcard" or "prefix".
func (k Kind) String() string {
	switch k {
	case Domain:
		return "domain"
	case Wildcard:
		return "wildcard"
	case Prefix:
		return "prefix"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Entry is one allowlist entry. For Domain and Wildcard, Name is the
// normalised name (for a wildcard without the leading "*."); for Prefix,
// Prefix is the masked prefix with IPv4-mapped IPv6 unmapped.
type Entry struct {
	Kind   Kind
	Name   string
	Prefix netip.Prefix
}

// String renders the entry in profile syntax; ParseLine(e.String()) returns e.
func (e Entry) String() string {
	switch e.Kind {
	case Domain:
		return e.Name
	case Wildcard:
		return "*." + e.Name
	case Prefix:
		if e.Prefix.IsSingleIP() {
			return e.Prefix.Addr().String()
		}
		return e.Prefix.String()
	}
	return ""
}

// Limits of the grammar.
const (
	MaxLineLen  = 1024 // bytes per profile line
	MaxNameLen  = 253  // bytes of a normalised name
	MaxLabelLen = 63   // bytes of one label
)

var errPortScope = errors.New("port scoping is not supported yet")

// ParseLine parses one profile line. ok is false for blank and comment
// lines. The error does not name file or line; [Parse] adds them.
func ParseLine(line string) (e Entry, ok bool, err error) {
	if len(line) > MaxLineLen {
		return Entry{}, false, fmt.Errorf("line longer than %d bytes", MaxLineLen)
	}
	s := stripComment(line)
	s = strings.TrimSpace(s)
	if s == "" {
		return Entry{}, false, nil
	}
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return Entry{}, false, fmt.Errorf("more than one entry on the line: %q", s)
	}
	e, err = ParseTarget(s)
	if err != nil {
		return Entry{}, false, err
	}
	return e, true, nil
}

// stripComment removes a whole-line comment or a trailing comment that
// starts at a '#' preceded by white space.
func stripComment(line string) string {
	t := strings.TrimLeftFunc(line, unicode.IsSpace)
	if strings.HasPrefix(t, "#") {
		return ""
	}
	for i := 1; i < len(line); i++ {
		if line[i] == '#' && (line[i-1] == ' ' || line[i-1] == '\t') {
			return line[:i]
		}
	}
	return line
}

// ParseTarget parses one entry without comments: an IP address, a CIDR
// prefix, a domain name or a wildcard. It is what `allow` and `deny` accept.
func ParseTarget(s string) (Entry, error) {
	if s == "" {
		return Entry{}, errors.New("empty entry")
	}
	if isIPLike(s) {
		p, err := parsePrefix(s)
		if err != nil {
			if hasPortSuffix(s) {
				return Entry{}, fmt.Errorf("%q: %w", s, errPortScope)
			}
			return Entry{}, err
		}
		return Entry{Kind: Prefix, Prefix: p}, nil
	}
	if hasPortSuffix(s) {
		return Entry{}, fmt.Errorf("%q: %w", s, errPortScope)
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		name, err := ValidateDomain(rest)
		if err != nil {
			return Entry{}, fmt.Errorf("invalid wildcard %q: %w", s, unwrapDomainErr(err))
		}
		if len(name) > MaxNameLen-2 {
			return Entry{}, fmt.Errorf("invalid wildcard %q: no name below it fits in %d bytes", s, MaxNameLen)
		}
		return Entry{Kind: Wildcard, Name: name}, nil
	}
	name, err := ValidateDomain(s)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Kind: Domain, Name: name}, nil
}

// isIPLike reports whether s should be parsed as an address or prefix:
// it contains a ':' (IPv6, or a port) or consists only of digits, dots and
// at most one '/'.
func isIPLike(s string) bool {
	if strings.HasPrefix(s, "[") {
		return true
	}
	host := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		host = s[:i]
	}
	if strings.Contains(host, ":") {
		// "example.com:443" is a name with a port, not IPv6.
		return !strings.ContainsFunc(host, func(r rune) bool {
			return r > 'f' && r <= 'z' || r > 'F' && r <= 'Z'
		}) || strings.Contains(host, "%")
	}
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		if (host[i] < '0' || host[i] > '9') && host[i] != '.' {
			return false
		}
	}
	return strings.Contains(host, ".") || strings.Contains(s, "/")
}

// hasPortSuffix reports whether s ends in ":PORT" or ":PORT/PROTO".
func hasPortSuffix(s string) bool {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return false
	}
	tail := s[i+1:]
	if j := strings.IndexByte(tail, '/'); j >= 0 {
		proto := tail[j+1:]
		if proto == "" || strings.ContainsFunc(proto, func(r rune) bool { return r < 'a' || r > 'z' }) {
			return false
		}
		tail = tail[:j]
	}
	if tail == "" || len(tail) > 5 {
		return false
	}
	for k := 0; k < len(tail); k++ {
		if tail[k] < '0' || tail[k] > '9' {
			return false
		}
	}
	if strings.HasPrefix(s, "[") {
		return i > 0 && s[i-1] == ']'
	}
	// For IPv6 without brackets "2001:db8::1:443" is an address, so only
	// names and IPv4 can carry a bare port.
	return strings.Count(s, ":") == 1
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.ContainsAny(s, "%") {
		return netip.Prefix{}, fmt.Errorf("invalid address %q: zones are not allowed", s)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid prefix %q: %w", s, unwrapNetip(err))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address %q: %w", s, unwrapNetip(err))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// unwrapNetip shortens netip's errors, which repeat the input.
func unwrapNetip(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return errors.New(msg[i+3:])
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return errors.New(msg[i+2:])
	}
	return err
}

// domainError is returned by ValidateDomain.
type domainError struct {
	name   string
	reason string
}

func (e *domainError) Error() string { return fmt.Sprintf("invalid domain %q: %s", e.name, e.reason) }

func unwrapDomainErr(err error) error {
	var de *domainError
	if errors.As(err, &de) {
		return errors.New(de.reason)
	}
	return err
}

// ValidateDomain normalises a DNS name (lower case, one trailing dot
// removed, IDN converted to A-labels) and checks it against the rules in
// the package documentation. It returns the normalised name.
func ValidateDomain(s string) (string, error) {
	bad := func(reason string) (string, error) { return "", &domainError{name: s, reason: reason} }
	if s == "" {
		return bad("empty name")
	}
	if len(s) > 4*MaxNameLen {
		return bad("name too long")
	}
	name := s
	if !isASCII(name) {
		if !utf8.ValidString(name) {
			return bad("not valid UTF-8")
		}
		for _, r := range name {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return bad(fmt.Sprintf("control character %U", r))
			}
		}
		lookup := idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false), idna.BidiRule())
		a, err := lookup.ToASCII(name)
		if err != nil {
			return bad("internationalised name not convertible to A-labels")
		}
		name = a
	}
	name = strings.ToLower(name)
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return bad("empty name")
	}
	if len(name) > MaxNameLen {
		return bad(fmt.Sprintf("name longer than %d bytes", MaxNameLen))
	}
	labels := 0
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			if c == '_' {
				return bad("underscores are not supported (the per-container resolver's name patterns cannot express them)")
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("invalid character %s", quoteByte(c)))
			}
			continue
		}
		label := name[start:i]
		switch {
		case label == "":
			return bad("empty label")
		case len(label) > MaxLabelLen:
			return bad(fmt.Sprintf("label longer than %d bytes", MaxLabelLen))
		case label[0] == '-' || label[len(label)-1] == '-':
			return bad(fmt.Sprintf("label %q starts or ends with '-'", label))
		}
		labels++
		start = i + 1
	}
	if labels < 2 {
		return bad("a single label is not allowed (need at least two labels)")
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	if strings.Trim(last, "0123456789") == "" {
		return bad("last label is all digits")
	}
	if last == "local" {
		return bad(`".local" names are multicast DNS, not resolvable through the resolver`)
	}
	return name, nil
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
