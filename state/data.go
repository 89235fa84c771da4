// SPDX-License-Identifier: Apache-2.0

package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/terok-ai/terok-shield/profiles"
)

// Format is the bundle.json format this package reads and writes.
const Format = 1

// Mode is the shield mode of a container.
type Mode string

// The modes.
const (
	ModeUp      Mode = "up"       // allowlist enforced
	ModeDown    Mode = "down"     // allow everything except private ranges
	ModeDownAll Mode = "down_all" // allow everything
	ModeBlock   Mode = "block"    // allow nothing
)

// Valid reports whether m is one of the modes.
func (m Mode) Valid() bool {
	switch m {
	case ModeUp, ModeDown, ModeDownAll, ModeBlock:
		return true
	}
	return false
}

// Resolver tiers.
const (
	TierDnsmasq = "dnsmasq"
	TierStatic  = "static"
)

// Duration is a time.Duration written as a Go duration string ("1h0m0s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Entries is a list of allowlist entries by kind.
type Entries struct {
	Domains   []string       `json:"domains,omitempty"`
	Wildcards []string       `json:"wildcards,omitempty"` // base names: "*.x.y" is stored as "x.y"
	Prefixes  []netip.Prefix `json:"prefixes,omitempty"`
}

// EntriesOf converts a profile set.
func EntriesOf(s *profiles.Set) Entries {
	return Entries{Domains: slices.Clone(s.Domains), Wildcards: slices.Clone(s.Wildcards), Prefixes: slices.Clone(s.Prefixes)}
}

// Add adds e (no effect if present).
func (es *Entries) Add(e profiles.Entry) {
	switch e.Kind {
	case profiles.Domain:
		es.Domains = insertSorted(es.Domains, e.Name)
	case profiles.Wildcard:
		es.Wildcards = insertSorted(es.Wildcards, e.Name)
	case profiles.Prefix:
		if !slices.Contains(es.Prefixes, e.Prefix) {
			es.Prefixes = append(es.Prefixes, e.Prefix)
			slices.SortFunc(es.Prefixes, profiles.ComparePrefix)
		}
	}
}

// Remove removes exactly e and reports whether it was present.
func (es *Entries) Remove(e profiles.Entry) bool {
	n := es.Len()
	switch e.Kind {
	case profiles.Domain:
		es.Domains = slices.DeleteFunc(es.Domains, func(s string) bool { return s == e.Name })
	case profiles.Wildcard:
		es.Wildcards = slices.DeleteFunc(es.Wildcards, func(s string) bool { return s == e.Name })
	case profiles.Prefix:
		es.Prefixes = slices.DeleteFunc(es.Prefixes, func(p netip.Prefix) bool { return p == e.Prefix })
	}
	return es.Len() != n
}

// Len returns the number of entries.
func (es Entries) Len() int { return len(es.Domains) + len(es.Wildcards) + len(es.Prefixes) }

func insertSorted(s []string, v string) []string {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

// Resolver holds the resolver settings of a container.
type Resolver struct {
	Tier         string       `json:"tier"`                    // TierDnsmasq or TierStatic
	Upstreams    []netip.Addr `json:"upstreams,omitempty"`     // resolvers dnsmasq forwards to
	LearnedTTL   Duration     `json:"learned_ttl,omitempty"`   // lifetime of DNS-learned set elements
	HostGateways []netip.Addr `json:"host_gateways,omitempty"` // addresses that reach the host
	HostPorts    []uint16     `json:"host_ports,omitempty"`    // host loopback ports the container may reach
	Binary       string       `json:"binary,omitempty"`        // dnsmasq executable the shim checked for nftset support
	// StaticMaxAge is how long the static tier's addresses count as fresh (`resolve`
	// without --force does nothing before); 0 means the default of the shim.
	StaticMaxAge Duration `json:"static_max_age,omitempty"`
}

// Static is what the static resolver tier resolved on the host.
type Static struct {
	Addrs      map[string][]netip.Addr `json:"addrs,omitempty"` // name → addresses
	ResolvedAt time.Time               `json:"resolved_at"`
}

// Data is the content of bundle.json.
type Data struct {
	Format    int            `json:"format"`
	Container string         `json:"container"`
	Created   time.Time      `json:"created"`
	Version   string         `json:"version,omitempty"` // terok-shield version that last wrote it
	Profiles  []string       `json:"profiles"`          // requested profiles
	Resolved  Entries        `json:"resolved"`          // composed profile entries
	Allow     Entries        `json:"allow"`             // operator allow list
	Deny      Entries        `json:"deny"`              // operator deny list
	Mode      Mode           `json:"mode"`
	Resolver  Resolver       `json:"resolver"`
	Static    *Static        `json:"static,omitempty"`
	NetNS     *NetNSIdentity `json:"netns,omitempty"` // recorded by the hook
	// AutoRemove: podman removes the container when it stops (run --rm), so the hook's
	// poststop archives the audit log and removes the bundle.
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Audit holds config.yml's audit settings for the hook and the control commands.
	Audit AuditSettings `json:"audit,omitzero"`
}

// AllowEntry adds e to the operator allow list and removes it from the
// deny list.
func (d *Data) AllowEntry(e profiles.Entry) {
	d.Deny.Remove(e)
	d.Allow.Add(e)
}

// DenyEntry adds e to the operator deny list and removes it from the allow
// list.
func (d *Data) DenyEntry(e profiles.Entry) {
	d.Allow.Remove(e)
	d.Deny.Add(e)
}

// EffectiveAllow returns what the container may reach; see the package
// documentation for the rule.
func (d *Data) EffectiveAllow() Entries {
	deny := d.EffectiveDeny()
	out := d.allowedNames(deny)
	allowed := func(name string) bool {
		if _, ok := slices.BinarySearch(out.Domains, name); ok {
			return true
		}
		return profiles.CoveredByWildcard(name, toSet(out.Wildcards))
	}
	prefixes := append(slices.Clone(d.Resolved.Prefixes), d.Allow.Prefixes...)
	if d.Static != nil {
		for name, addrs := range d.Static.Addrs {
			if !allowed(name) {
				continue
			}
			for _, a := range addrs {
				p := netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				if !profiles.IsPrivate(p) {
					prefixes = append(prefixes, p)
				}
			}
		}
	}
	for _, p := range profiles.MergePrefixes(prefixes) {
		if !slices.ContainsFunc(deny.Prefixes, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) }) {
			out.Prefixes = append(out.Prefixes, p)
		}
	}
	return out
}

// EffectiveAllowNames is EffectiveAllow's domains and wildcards alone, without the cost of
// merging the prefixes (what the resolver needs).
func (d *Data) EffectiveAllowNames() Entries {
	return d.allowedNames(Entries{Domains: d.sortedDenyDomains(), Wildcards: d.Deny.Wildcards})
}

func (d *Data) sortedDenyDomains() []string {
	out := slices.Clone(d.Deny.Domains)
	slices.Sort(out)
	return slices.Compact(out)
}

// allowedNames returns the allowed domains and wildcards (sorted) given the effective deny
// list (its domains sorted).
func (d *Data) allowedNames(deny Entries) Entries {
	denyW := make(map[string]struct{}, len(deny.Wildcards))
	for _, w := range deny.Wildcards {
		denyW[w] = struct{}{}
	}
	denied := func(name string) bool {
		_, exact := slices.BinarySearch(deny.Domains, name)
		return exact || profiles.CoveredByWildcard(name, denyW)
	}

	var out Entries
	names := append(slices.Clone(d.Resolved.Domains), d.Allow.Domains...)
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		if !denied(n) {
			out.Domains = append(out.Domains, n)
		}
	}
	wild := append(slices.Clone(d.Resolved.Wildcards), d.Allow.Wildcards...)
	slices.Sort(wild)
	for _, w := range slices.Compact(wild) {
		if _, ok := denyW[w]; !ok && !profiles.CoveredByWildcard(w, denyW) {
			out.Wildcards = append(out.Wildcards, w)
		}
	}
	return out
}

func toSet(ss []string) map[string]struct{} {
	m := make(map[string]struct{}, len(ss))
	for _, s := range ss {
		m[s] = struct{}{}
	}
	return m
}

// EffectiveDeny returns the operator deny list, sorted, prefixes merged.
func (d *Data) EffectiveDeny() Entries {
	out := Entries{
		Domains:   slices.Clone(d.Deny.Domains),
		Wildcards: slices.Clone(d.Deny.Wildcards),
		Prefixes:  profiles.MergePrefixes(d.Deny.Prefixes),
	}
	slices.Sort(out.Domains)
	out.Domains = slices.Compact(out.Domains)
	slices.Sort(out.Wildcards)
	out.Wildcards = slices.Compact(out.Wildcards)
	if len(out.Prefixes) == 0 {
		out.Prefixes = nil
	}
	return out
}

// decode parses bundle.json: the format first, then strictly the whole
// document, then its values.
func decode(b []byte, container string) (*Data, error) {
	var head struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("parse %s: %w", FileBundle, err)
	}
	if head.Format == nil {
		return nil, fmt.Errorf("parse %s: no \"format\" field; recreate the container", FileBundle)
	}
	if *head.Format != Format {
		return nil, fmt.Errorf("bundle format %d is not supported by this terok-shield (wants %d); recreate the container", *head.Format, Format)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d Data
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("parse %s: %w", FileBundle, err)
	}
	if err := d.validate(container); err != nil {
		return nil, fmt.Errorf("parse %s: %w", FileBundle, err)
	}
	return &d, nil
}

// validate checks what a JSON decoder cannot: names, modes, tiers.
func (d *Data) validate(container string) error {
	if d.Container != container {
		return fmt.Errorf("container %q does not match bundle directory %q", d.Container, container)
	}
	if !d.Mode.Valid() {
		return fmt.Errorf("invalid mode %q", d.Mode)
	}
	switch d.Resolver.Tier {
	case "", TierDnsmasq, TierStatic:
	default:
		return fmt.Errorf("invalid resolver tier %q", d.Resolver.Tier)
	}
	for _, p := range d.Profiles {
		if err := profiles.ValidateName(p); err != nil {
			return err
		}
	}
	for _, es := range []Entries{d.Resolved, d.Allow, d.Deny} {
		for _, n := range slices.Concat(es.Domains, es.Wildcards) {
			if v, err := profiles.ValidateDomain(n); err != nil || v != n {
				return fmt.Errorf("invalid name %q in bundle", n)
			}
		}
	}
	if d.Static != nil {
		for n := range d.Static.Addrs {
			if v, err := profiles.ValidateDomain(n); err != nil || v != n {
				return fmt.Errorf("invalid name %q in bundle", n)
			}
		}
	}
	return nil
}
