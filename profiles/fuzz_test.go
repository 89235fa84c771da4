// SPDX-License-Identifier: Apache-2.0

package profiles

import (
	"strings"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{
		"", "# c", "github.com", "GitHub.COM.", "*.example.com", "bücher.example", "192.0.2.1",
		"10.0.0.0/8", "::ffff:1.2.3.4", "2001:db8::/32", "example.com:443", "[::1]:53", "a..b",
		"a b", "x.com # c", "fe80::1%eth0", "_acme.example.com", "xn--bcher-kva.example", "a\x00.com",
		"/example.com/#", "1.2.3.4/24", "exa mple。com",
	} {
		f.Add(s)
	}
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

// FuzzParseLine checks that ParseLine never panics, that accepted names
// contain only [a-z0-9.-] (so they cannot inject into nft or dnsmasq
// configuration) and that every accepted entry round-trips through String.
func FuzzParseLine(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, line string) {
		e, ok, err := ParseLine(line)
		if err != nil || !ok {
			return
		}
		switch e.Kind {
		case Domain, Wildcard:
			if e.Name == "" || len(e.Name) > MaxNameLen {
				t.Fatalf("ParseLine(%q) = name of length %d", line, len(e.Name))
			}
			for i := 0; i < len(e.Name); i++ {
				if !isNameByte(e.Name[i]) {
					t.Fatalf("ParseLine(%q) = name %q with byte %q", line, e.Name, e.Name[i])
				}
			}
		case Prefix:
			if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || e.Prefix.Addr().Is4In6() || e.Prefix.Addr().Zone() != "" {
				t.Fatalf("ParseLine(%q) = non-canonical prefix %v", line, e.Prefix)
			}
		default:
			t.Fatalf("ParseLine(%q) = entry of kind %v", line, e.Kind)
		}
		back, ok, err := ParseLine(e.String())
		if err != nil || !ok || back != e {
			t.Fatalf("ParseLine(%q) (String of ParseLine(%q)) = %v, %v, %v; want %v", e.String(), line, back, ok, err, e)
		}
	})
}

// FuzzValidateDomain checks that ValidateDomain never panics, that its
// result is made of valid labels and that it is idempotent.
func FuzzValidateDomain(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		name, err := ValidateDomain(s)
		if err != nil {
			return
		}
		if len(name) > MaxNameLen {
			t.Fatalf("ValidateDomain(%q) = %q, longer than %d", s, name, MaxNameLen)
		}
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > MaxLabelLen || label[0] == '-' || label[len(label)-1] == '-' {
				t.Fatalf("ValidateDomain(%q) = %q with bad label %q", s, name, label)
			}
			for i := 0; i < len(label); i++ {
				if !isNameByte(label[i]) || label[i] == '.' {
					t.Fatalf("ValidateDomain(%q) = %q with byte %q", s, name, label[i])
				}
			}
		}
		again, err := ValidateDomain(name)
		if err != nil || again != name {
			t.Fatalf("ValidateDomain(%q) = %q, %v; want %q (idempotent)", name, again, err, name)
		}
	})
}
