// SPDX-License-Identifier: Apache-2.0

// Package profiles parses, validates and composes the allowlist profiles of
// terok-shield. It makes no API stability promise.
//
// # Sources
//
// Bundled profiles are embedded in the binary (see [BundledFS]): base,
// dev-standard (the default), dev-python, dev-node and nvidia-hpc. User
// profiles live in $TEROK_SHIELD_CONFIG_DIR/profiles/NAME.txt, else
// $XDG_CONFIG_HOME/terok/shield/profiles/NAME.txt, else
// ~/.config/terok/shield/profiles/NAME.txt (see [DefaultUserDir]). A user
// profile with a new name extends the list; one with the name of a bundled
// profile replaces it completely. The profile "base" is part of every
// composition (the user's base if there is one).
//
// Profile names match ^[a-z0-9][a-z0-9_-]{0,63}$, so a name can never be a
// path.
//
// # Line grammar
//
// One entry a line. Leading and trailing white space is ignored; a UTF-8 BOM
// at the start of the file and a CR before the LF are ignored. Blank lines
// are ignored. A line whose first non-blank character is '#' is a comment; a
// trailing comment starts at a '#' preceded by white space
// ("github.com  # source"). A '#' anywhere else is an error. More than one
// entry on a line is an error. Lines are at most [MaxLineLen] bytes.
//
// An entry is one of:
//
//   - An IPv4 or IPv6 address ("192.0.2.7", "2001:db8::1"): a /32 or /128
//     prefix. IPv4-mapped IPv6 ("::ffff:192.0.2.7", "::ffff:192.0.2.0/120")
//     is normalised to IPv4. Zones ("fe80::1%eth0") are rejected.
//   - A CIDR prefix ("198.51.100.0/24"). Host bits are cleared
//     ("10.1.2.3/8" means "10.0.0.0/8").
//   - A domain name ("GitHub.com."): exactly this name. It is normalised:
//     lower case, one trailing dot removed, internationalised names
//     converted to A-labels ("bücher.example" → "xn--bcher-kva.example").
//   - A wildcard "*.example.com": every name exactly ONE label below
//     example.com (a.example.com, not a.b.example.com), and NOT example.com
//     itself — the rule of TLS wildcard certificates and of dnsmasq's query
//     patterns, which the resolver enforces. For deeper names list them, or
//     one wildcard per parent ("*.b.example.com"). The '*' must be a whole
//     leftmost label; "*.com"-style wildcards over a single label are
//     rejected as too broad. (The original tool accepted "*.name" but
//     silently treated it as "name and everything below".) Renderers that
//     use dnsmasq's nftset=/example.com/ (which matches the name and its
//     subdomains) must consult [Entry.Kind].
//
// After normalisation a name consists only of labels of [a-z0-9-]
// separated by single dots: each label 1..63 bytes, not starting or ending
// with '-', the whole name at most 253 bytes, at least two labels, and a
// last label that is neither all digits nor "local". Underscores (service
// labels such as "_acme-challenge") are rejected: the per-container
// resolver filters queries with dnsmasq's connmark-allowlist patterns, which
// cannot express them, and a name the resolver cannot serve must fail when
// the profile is read, not when the container starts. So no accepted name
// can carry
// '/', '#', ',', white space, control characters or quotes into a dnsmasq
// or nft configuration.
//
// Port scoping ("example.com:443", "[2001:db8::1]:443/tcp") is not
// supported yet and is rejected with an error that says so.
//
// # Errors and notices
//
// A bad line makes [Parse] fail with "FILE:LINE: reason"; nothing of the
// profile is used. Entries that are accepted but deserve the operator's
// attention are reported as [Notice] values for the caller to audit: a
// prefix overlapping a private or special-purpose range ("private range",
// see [IsPrivate]) or one shorter than /8 (IPv4) or /32 (IPv6) ("broad
// prefix"). The documentation ranges 192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24 and 2001:db8::/32 are deliberately not private.
//
// # Composition
//
// [Loader.Load] composes profiles into a [Set]: entries are deduplicated,
// exact names covered by a wildcard in the set are dropped, and prefixes are
// merged with [MergePrefixes] (contained prefixes dropped, adjacent
// siblings joined).
package profiles
