// SPDX-License-Identifier: Apache-2.0

package profiles

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func dom(n string) Entry  { return Entry{Kind: Domain, Name: n} }
func wild(n string) Entry { return Entry{Kind: Wildcard, Name: n} }
func pfx(s string) Entry  { return Entry{Kind: Prefix, Prefix: netip.MustParsePrefix(s)} }

func TestParseLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Entry
		wantOK  bool
		wantErr string // substring; empty means no error
	}{
		{name: "blank", line: ""},
		{name: "spaces", line: "  \t "},
		{name: "comment", line: "# github.com"},
		{name: "indented comment", line: "   # x y z"},
		{name: "domain", line: "github.com", want: dom("github.com"), wantOK: true},
		{name: "upper case", line: "GitHub.COM", want: dom("github.com"), wantOK: true},
		{name: "trailing dot", line: "github.com.", want: dom("github.com"), wantOK: true},
		{name: "surrounding space", line: "  github.com \r", want: dom("github.com"), wantOK: true},
		{name: "trailing comment", line: "github.com # code", want: dom("github.com"), wantOK: true},
		{name: "trailing comment tab", line: "github.com\t#code", want: dom("github.com"), wantOK: true},
		{name: "idn", line: "Bücher.example", want: dom("xn--bcher-kva.example"), wantOK: true},
		{name: "idn fullwidth dot", line: "bücher。example", want: dom("xn--bcher-kva.example"), wantOK: true},
		{name: "a-label", line: "xn--bcher-kva.example", want: dom("xn--bcher-kva.example"), wantOK: true},
		{name: "hyphen inside", line: "a-b.example.org", want: dom("a-b.example.org"), wantOK: true},
		{name: "digits label", line: "1e100.net", want: dom("1e100.net"), wantOK: true},
		{name: "wildcard", line: "*.example.com", want: wild("example.com"), wantOK: true},
		{name: "wildcard normalised", line: "*.EXAMPLE.com.", want: wild("example.com"), wantOK: true},
		{name: "ipv4", line: "192.0.2.7", want: pfx("192.0.2.7/32"), wantOK: true},
		{name: "ipv4 cidr", line: "198.51.100.0/24", want: pfx("198.51.100.0/24"), wantOK: true},
		{name: "host bits cleared", line: "10.1.2.3/8", want: pfx("10.0.0.0/8"), wantOK: true},
		{name: "ipv6", line: "2001:DB8::1", want: pfx("2001:db8::1/128"), wantOK: true},
		{name: "ipv6 cidr", line: "2001:db8::/32", want: pfx("2001:db8::/32"), wantOK: true},
		{name: "mapped ipv4", line: "::ffff:192.0.2.7", want: pfx("192.0.2.7/32"), wantOK: true},
		{name: "mapped ipv4 cidr", line: "::ffff:192.0.2.0/120", want: pfx("192.0.2.0/24"), wantOK: true},
		{name: "ipv6 comment", line: "2001:db8::1 # doc", want: pfx("2001:db8::1/128"), wantOK: true},
		{name: "all v4", line: "0.0.0.0/0", want: pfx("0.0.0.0/0"), wantOK: true},

		{name: "underscore", line: "_acme-challenge.example.com", wantErr: "underscores are not supported"},
		{name: "local tld", line: "printer.local", wantErr: "multicast DNS"},
		{name: "two entries", line: "a.com b.com", wantErr: "more than one entry"},
		{name: "hash without space", line: "github.com#x", wantErr: `invalid character '#'`},
		{name: "slash in name", line: "a/b.com", wantErr: `invalid character '/'`},
		{name: "comma", line: "a,b.com", wantErr: `invalid character ','`},
		{name: "dnsmasq injection", line: "/example.com/1.2.3.4", wantErr: `invalid character '/'`},
		{name: "control char", line: "a\x01b.com", wantErr: "invalid character 0x01"},
		{name: "nul", line: "a\x00b.com", wantErr: "invalid character 0x00"},
		{name: "quote", line: `a"b.com`, wantErr: `invalid character '"'`},
		{name: "semicolon", line: "; rm -rf /", wantErr: "more than one entry"},
		{name: "empty label", line: "a..b", wantErr: `invalid domain "a..b": empty label`},
		{name: "leading dot", line: ".example.com", wantErr: "empty label"},
		{name: "two trailing dots", line: "example.com..", wantErr: "empty label"},
		{name: "leading hyphen", line: "-bad.com", wantErr: "starts or ends with '-'"},
		{name: "trailing hyphen", line: "bad-.com", wantErr: "starts or ends with '-'"},
		{name: "label too long", line: strings.Repeat("a", 64) + ".com", wantErr: "label longer than 63"},
		{name: "label max", line: strings.Repeat("a", 63) + ".com", want: dom(strings.Repeat("a", 63) + ".com"), wantOK: true},
		{name: "name too long", line: strings.Repeat("abcdefghi.", 25) + "comm", wantErr: "name longer than 253"},
		{name: "single label", line: "localhost", wantErr: "single label"},
		{name: "bare tld", line: "com", wantErr: "single label"},
		{name: "numeric tld", line: "1.2.3.999", wantErr: "invalid address"},
		{name: "numeric tld name", line: "a.b.123", wantErr: "last label is all digits"},
		{name: "dot only", line: ".", wantErr: "invalid address"},
		{name: "wildcard tld", line: "*.com", wantErr: `invalid wildcard "*.com"`},
		{name: "bare star", line: "*", wantErr: "invalid character '*'"},
		{name: "star in middle", line: "a.*.com", wantErr: "invalid character '*'"},
		{name: "double wildcard", line: "*.*.example.com", wantErr: "invalid character '*'"},
		{name: "partial wildcard", line: "a*.example.com", wantErr: "invalid character '*'"},
		{name: "wildcard too long", line: "*." + strings.Repeat("abcdefghi.", 25) + "ab", wantErr: "no name below it fits"},
		{name: "bad ipv4", line: "1.2.3.256", wantErr: "invalid address"},
		{name: "short ipv4", line: "1.2.3", wantErr: "invalid address"},
		{name: "bad prefix len", line: "10.0.0.0/33", wantErr: "invalid prefix"},
		{name: "double prefix", line: "10.0.0.0/8/8", wantErr: "invalid prefix"},
		{name: "bad ipv6", line: "2001:db8:::1", wantErr: "invalid address"},
		{name: "zone", line: "fe80::1%eth0", wantErr: "zones are not allowed"},
		{name: "port on name", line: "example.com:443", wantErr: "port scoping is not supported yet"},
		{name: "port proto on name", line: "example.com:443/tcp", wantErr: "port scoping is not supported yet"},
		{name: "port on ipv4", line: "192.0.2.1:53", wantErr: "port scoping is not supported yet"},
		{name: "port on hex name", line: "cafe.de:80/udp", wantErr: "port scoping is not supported yet"},
		{name: "port on ipv6", line: "[2001:db8::1]:443", wantErr: "port scoping is not supported yet"},
		{name: "bracket ipv6", line: "[2001:db8::1]", wantErr: "invalid address"},
		{name: "colon garbage", line: "exa:mple.com", wantErr: "invalid character ':'"},
		{name: "bad utf8", line: "\xff.com", wantErr: "not valid UTF-8"},
		{name: "unicode control", line: "b\u0085ü.com", wantErr: "more than one entry"},
		{name: "line too long", line: strings.Repeat("a", MaxLineLen+1), wantErr: "line longer than"},
		{name: "nbsp inside", line: "a.com\u00a0b.com", wantErr: "more than one entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ParseLine(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLine(%q) = %v, %v, %v; want error containing %q", tt.line, got, ok, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLine(%q) error: %v", tt.line, err)
			}
			if ok != tt.wantOK {
				t.Fatalf("ParseLine(%q) ok = %v, want %v", tt.line, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("ParseLine(%q) mismatch (-want +got):\n%s", tt.line, diff)
			}
			if ok {
				back, ok2, err := ParseLine(got.String())
				if err != nil || !ok2 || back != got {
					t.Errorf("ParseLine(%q) (round trip of %q) = %v, %v, %v; want %v", got.String(), tt.line, back, ok2, err, got)
				}
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want Entry
	}{
		{"1.1.1.1", pfx("1.1.1.1/32")},
		{"2606:4700::/32", pfx("2606:4700::/32")},
		{"example.org", dom("example.org")},
		{"*.example.org", wild("example.org")},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("ParseTarget(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", " example.org", "example.org # c", "a b"} {
		t.Run("bad/"+bad, func(t *testing.T) {
			if got, err := ParseTarget(bad); err == nil {
				t.Errorf("ParseTarget(%q) = %v, want error", bad, got)
			}
		})
	}
}

func TestValidateDomain(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{in: "GITHUB.COM", want: "github.com"},
		{in: "münchen.de", want: "xn--mnchen-3ya.de"},
		{in: "EXAMPLE.com.", want: "example.com"},
		{in: "", wantErr: "empty name"},
		{in: "a..b", wantErr: `invalid domain "a..b": empty label`},
		{in: "exa mple.com", wantErr: "invalid character ' '"},
		{in: "exa\nmple.com", wantErr: "invalid character 0x0a"},
		{in: "exa\u200bmple.com", want: "example.com"}, // zero-width space is mapped away by IDNA
		{in: "a\u0007ä.com", wantErr: "control character"},
		{in: "../../etc/passwd", wantErr: "empty label"},
		{in: "etc/passwd.com", wantErr: "invalid character '/'"},
		{in: strings.Repeat("x", 2000), wantErr: "name too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ValidateDomain(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ValidateDomain(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ValidateDomain(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Domain: "domain", Wildcard: "wildcard", Prefix: "prefix", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}
