// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"net/netip"
	"slices"
	"time"

	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/state"
)

// DefaultStaticMaxAge is how long the static tier's addresses count as fresh when the bundle
// records no limit.
const DefaultStaticMaxAge = time.Hour

// StaticNames returns the names the static tier resolves (the effectively allowed exact
// names) and the allowed wildcards, which it cannot resolve.
func StaticNames(d *state.Data) (names, wildcards []string) {
	eff := d.EffectiveAllow()
	for _, w := range eff.Wildcards {
		wildcards = append(wildcards, "*."+w)
	}
	return eff.Domains, wildcards
}

// StaticHosts returns the static tier's addresses of the names still allowed, without private
// ones: what the container's /etc/hosts maps (the same addresses EffectiveAllow opens).
func StaticHosts(d *state.Data) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	if d.Static == nil {
		return out
	}
	names, _ := StaticNames(d)
	for _, n := range names {
		for _, a := range d.Static.Addrs[n] {
			a = a.Unmap()
			if !profiles.IsPrivate(netip.PrefixFrom(a, a.BitLen())) {
				out[n] = append(out[n], a)
			}
		}
	}
	for n, as := range out {
		slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
		out[n] = slices.Compact(as)
	}
	return out
}

// StaticMaxAge returns the freshness limit recorded in d, or DefaultStaticMaxAge.
func StaticMaxAge(d *state.Data) time.Duration {
	if d.Resolver.StaticMaxAge > 0 {
		return time.Duration(d.Resolver.StaticMaxAge)
	}
	return DefaultStaticMaxAge
}

// StaticFresh reports whether d's static addresses were resolved less than its freshness
// limit before now and cover every name the tier resolves.
func StaticFresh(d *state.Data, now time.Time) bool {
	if d.Static == nil || d.Static.ResolvedAt.IsZero() || now.Sub(d.Static.ResolvedAt) >= StaticMaxAge(d) || now.Before(d.Static.ResolvedAt) {
		return false
	}
	names, _ := StaticNames(d)
	for _, n := range names {
		if _, ok := d.Static.Addrs[n]; !ok {
			return false
		}
	}
	return true
}
