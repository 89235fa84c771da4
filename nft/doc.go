// SPDX-License-Identifier: Apache-2.0

// Package nft builds, applies and checks the per-container nftables table
// `inet terok_shield`; it is the security boundary of terok-shield.
//
// A Policy (mode, allow and deny prefixes, resolver upstreams, host ports) is
// validated and turned into a Ruleset by Build. The Ruleset renders as `nft`
// text (String, used for `preview` and goldens) and is applied over netlink
// by Apply in one atomic transaction (or, when the elements exceed one socket
// buffer, in several transactions of which the first leaves the namespace
// closed). Verify reads the table back and names every drift; Inspect and
// List report the live table; AddElements, DeleteElements and Refresh change
// set contents at run time. No `nft` binary is ever executed.
//
// # Trust
//
// Callers are the OCI createRuntime hook (running inside podman's user
// namespace for rootless containers, or as root) and the `podman shield`
// commands, both acting for the trusted operator. Operations need
// CAP_NET_ADMIN over the target network namespace; Target.NetNSPath names it
// and each operation enters it on a locked OS thread that is never returned
// to the Go scheduler. Attacker-influenced inputs are the addresses that
// reach the sets: profile and operator lists may contain anything the
// operator pasted, and learned addresses come from DNS answers. They arrive
// as netip values only (no strings are interpolated), are validated
// (canonical masks, no zero-length prefixes, IPv4-mapped forms normalised)
// and can never change rules. The workload inside the container cannot reach
// this package except through the DNS answers dnsmasq adds to the learned
// sets, which are evaluated after the private-range rejects. The package
// imports only the standard library, golang.org/x/sys and
// github.com/google/nftables (with its netlink dependencies); deps_test.go
// enforces that and the absence of os/exec.
//
// # Chains
//
// Output chain (hook output, priority filter) in mode up, policy drop:
//
//	oifname "lo" udp/tcp dport 53 ct mark set <ResolverMark>   (only with upstreams)
//	oifname "lo" accept
//	ip/ip6 daddr @deny_v4/@deny_v6  log DENIED counter reject  (before established: cuts open flows)
//	ct state established,related accept
//	meta mark <ResolverMark> udp/tcp dport 53 ip/ip6 daddr <upstream> accept
//	udp/tcp dport 53, 853  log BLOCKED counter reject          (no other DNS/DoT, even to allowed hosts)
//	icmpv6 type nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld-listener-report, mld2-listener-report accept
//	tcp dport <HostPort> ip/ip6 daddr <HostGateway> accept
//	ip/ip6 daddr @allow_v4 @allow_net_v4 @allow_v6 @allow_net_v6  log ALLOWED counter accept
//	ip/ip6 daddr <each PrivateRanges prefix>  log PRIVATE reject
//	ip/ip6 daddr @learned_v4/@learned_v6  update @learned_v* { ip/ip6 daddr }  log ALLOWED counter accept
//	log BLOCKED counter reject
//
// Mode down (policy accept) keeps the resolver rules, loopback, deny,
// established, upstream, neighbour discovery and host-port rules, accepts the
// allow sets without logging, logs `ct state new` as BYPASS and rejects the
// private ranges; down_all omits the private-range rejects. Mode block (policy
// drop, no sets): loopback accept, established accept, log BLOCKED drop.
// Every reject is `reject with icmpx admin-prohibited`; every log goes to
// NFLOG group Policy.LogGroup.
//
// Input chain (all modes), policy drop: iifname "lo" accept; ip/ip6 saddr
// @deny_v4/@deny_v6 log DENIED counter drop (not in block); ct state
// established,related accept; icmpv6 nd-neighbor-solicit, nd-neighbor-advert,
// nd-router-advert accept; drop.
//
// # Sets
//
// allow_v4/allow_v6 are hash sets of single addresses; allow_net_* and
// deny_* are interval sets whose content is merged in Go (contained prefixes
// dropped, adjacent ones joined), so overlapping input never makes a load or
// an add fail. learned_v4/learned_v6 have flags dynamic,timeout and the
// default timeout Policy.LearnedTimeout; dnsmasq fills them through
// nftset=/name/4#inet#terok_shield#learned_v4,6#inet#terok_shield#learned_v6.
// Permanent entries never live in a timeout set: `timeout 0s` means "the set
// default" there, not "never".
//
// Kernel behaviour measured on Linux 6.18 (nft 1.0.6): re-adding an existing
// element of a timeout set without a timeout attribute (what dnsmasq and
// `nft add element` do) leaves its expiry unchanged; re-adding with a timeout
// equal to the set default does not refresh it either; only a different
// timeout or an explicit expiration updates it. Refresh (and
// AddElements with KindLearned) therefore destroys and re-adds the elements
// in one transaction, which restarts the timeout on any kernel with
// NFT_MSG_DESTROYSETELEM (6.3+). DeleteElements uses the same destroy
// message, so deleting an absent element is not an error. Because dnsmasq's
// re-adds cannot keep an address alive, the learned-accept rule itself
// does: `update @learned_v4 { ip daddr }` resets the element's timeout on
// every new connection that uses it, so a learned address expires only
// after LearnedTimeout without use (TestTrafficLearnedRefreshedInUse).
//
// A mode switch replaces the whole table (the caller passes the full Policy
// again); learned entries are lost and repopulate on the next DNS answers.
//
// # Netlink mechanics
//
// Table loads are encoded here (rawtx.go, encode.go) rather than through
// google/nftables.Conn, whose Flush asks for an echo of every rule and an ack
// for every message; reading those back cost several milliseconds per load.
// A transaction requests an ack on its last message only and reads error
// messages until that ack; the kernel reports any failing message and aborts
// the whole transaction. Reads (Verify, Inspect, List) and small element
// changes use google/nftables. Up to 2048 elements a load is one
// transaction; above, the first transaction creates the table with the
// output chain closed (policy drop, only loopback accepted), the elements
// follow in transactions of at most 192 kB, less if the socket send buffer
// is smaller (an unprivileged namespace cannot raise it past
// net.core.wmem_max; one nested element list is at most 60 kB), and the last
// transaction installs the real output rules and policy. A failure part-way
// leaves the namespace closed. Small transactions were measured faster than
// one large one (100k elements: ~70 ms versus ~125 ms).
//
// After a transaction that deleted objects (a table replacement, element
// deletes) the kernel frees them after an RCU grace period, and closing a
// netfilter netlink socket waits for that (nf_tables' NETLINK_URELEASE
// handler flushes the destroy work under the commit mutex). Operations
// report their result before closing, but the next operation in the same
// namespace, or process exit, absorbs the wait (about 10 ms here). A
// long-lived Conn avoids the close between operations. A fresh namespace
// needs no table delete, so the hook's first Apply pays nothing.
//
// Right after a bulk load the kernel grows the hash sets' rhashtables in the
// background; a dump taken meanwhile can skip elements (lookups are not
// affected). Verify re-reads for up to a second before reporting missing
// hash-set elements as drift; Inspect and List report what the dump saw.
//
// This package makes no API stability promise.
package nft
