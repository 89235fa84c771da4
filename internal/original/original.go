// SPDX-License-Identifier: Apache-2.0

// Package original reconstructs the Python tool's enforce ruleset (original-tool.md §3.2 and
// §3.4, pasta variant) as `nft -f` text, so benchmarks can load it side by side with ours. It is
// used by benchmarks only; nothing of it runs in the product.
package original

import (
	"fmt"
	"strings"
)

// Ruleset returns the original's ruleset.nft: the enforce table with one `flags interval`
// allow set per family, then the allowed addresses as `add element` lines. On the dnsmasq tier
// the allow sets time out (30m) and the pre-resolved addresses are added with `timeout 0s`.
func Ruleset(v4, v6 []string, dnsmasqTier bool) string {
	var s strings.Builder
	setFlags, elemSuffix := "flags interval;", ""
	if dnsmasqTier {
		setFlags, elemSuffix = "flags interval, timeout; timeout 30m;", " timeout 0s"
	}
	fmt.Fprintf(&s, `table inet terok_shield {
	set allow_v4 { type ipv4_addr; %[1]s }
	set allow_v6 { type ipv6_addr; %[1]s }
	set deny_v4 { type ipv4_addr; flags interval; }
	set deny_v6 { type ipv6_addr; flags interval; }
	chain output {
		type filter hook output priority filter; policy drop;
		oifname "lo" accept
		ct state established,related accept
		udp dport 53 ip daddr 169.254.1.1 accept
		tcp dport 53 ip daddr 169.254.1.1 accept
		ip daddr @allow_v4 log group 100 prefix "TEROK_SHIELD_ALLOWED: " counter accept
		ip6 daddr @allow_v6 log group 100 prefix "TEROK_SHIELD_ALLOWED: " counter accept
		ip daddr @deny_v4 log group 100 prefix "TEROK_SHIELD_DENIED: " counter reject with icmpx admin-prohibited
		ip6 daddr @deny_v6 log group 100 prefix "TEROK_SHIELD_DENIED: " counter reject with icmpx admin-prohibited
		ip daddr 10.0.0.0/8 log group 100 prefix "TEROK_SHIELD_PRIVATE: " reject with icmpx admin-prohibited
		ip daddr 172.16.0.0/12 log group 100 prefix "TEROK_SHIELD_PRIVATE: " reject with icmpx admin-prohibited
		ip daddr 192.168.0.0/16 log group 100 prefix "TEROK_SHIELD_PRIVATE: " reject with icmpx admin-prohibited
		ip daddr 169.254.0.0/16 log group 100 prefix "TEROK_SHIELD_PRIVATE: " reject with icmpx admin-prohibited
		ip6 daddr fc00::/7 log group 100 prefix "TEROK_SHIELD_PRIVATE: " reject with icmpx admin-prohibited
		ip6 daddr fe80::/10 log group 100 prefix "TEROK_SHIELD_PRIVATE: " reject with icmpx admin-prohibited
		log group 100 prefix "TEROK_SHIELD_BLOCKED: " counter reject with icmpx admin-prohibited
	}
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept
		ct state established,related accept
		drop
	}
}
`, setFlags)
	for _, set := range []struct {
		name  string
		addrs []string
	}{{"allow_v4", v4}, {"allow_v6", v6}} {
		if len(set.addrs) == 0 {
			continue
		}
		elems := make([]string, len(set.addrs))
		for i, a := range set.addrs {
			elems[i] = a + elemSuffix
		}
		fmt.Fprintf(&s, "add element inet terok_shield %s { %s }\n", set.name, strings.Join(elems, ", "))
	}
	return s.String()
}
