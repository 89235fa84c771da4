// SPDX-License-Identifier: Apache-2.0

// Package dnsmasq renders the configuration of the per-container resolver and
// runs it inside the container's network namespace.
//
// It makes no API stability promise.
//
// # The resolver
//
// One dnsmasq per container listens on 127.0.0.1:53 and [::1]:53 inside the
// container's network namespace (only the netns is the container's: dnsmasq
// runs in the host's mount and pid namespaces and reads its configuration
// from the state directory). It forwards only allowed names to the upstream
// and adds the addresses it learns to the sets learned_v4 and learned_v6 of
// table inet terok_shield (nftset=).
//
// The ruleset (package nft) marks the workload's queries to the resolver with
// `ct mark set <mark>`. With `conntrack`, dnsmasq copies that mark onto its
// upstream sockets (SO_MARK), and the ruleset lets only packets with
// `meta mark <mark>` reach the upstream: the resolver reaches it, the
// workload does not. `connmark-allowlist-enable` + `connmark-allowlist=`
// filter marked queries by exact name and answer the rest with REFUSED
// before anything is forwarded.
//
// # Verified with dnsmasq 2.90 (Debian 12) on Linux 6.18
//
// The tests in this package check each point against the real daemon in
// test network namespaces.
//
//   - conntrack and connmark-allowlist work together, over UDP and TCP and
//     on both loopback addresses; queries the ruleset marks but whose name is
//     not listed get REFUSED and never reach the upstream; the workload's own
//     queries to the upstream are dropped while dnsmasq's pass.
//   - Patterns: "*" matches within one label only, so "*.example.com"
//     allows a.example.com, not a.b.example.com, not example.com. A pattern
//     needs two labels or more, ending in two literal ones; its last label
//     may be neither all digits nor "local"; '_' and labels starting or
//     ending with '-' are rejected. [ValidateName] enforces exactly this, so
//     an accepted name never makes dnsmasq refuse the file.
//   - Marks and masks are decimal only (0x… is a syntax error), and a
//     second connmark-allowlist line with the same mark and mask is an error.
//     Long lists are therefore split over lines with distinct masks (see
//     allowlistMask); each mask keeps every bit of the mark.
//   - Queries with no conntrack mark (or mark 0) bypass the allowlist
//     entirely (forward.c: `have_mark && (mark & allowlist_mask)`). Only the
//     server= lines then limit forwarding, and they match whole subtrees. The
//     ruleset must mark every packet to port 53 on lo, in both families and
//     both protocols.
//   - Lines: dnsmasq reads its config with fgets into a 1025-byte buffer. A
//     longer line is split silently and its tail parsed as a new option, so
//     an over-long line could inject an option. Render never writes a line
//     longer than [MaxLine] (1000) bytes.
//   - nftset= and server= match a domain and all names below it; the
//     allowlist makes the match exact. For a CNAME chain, nftset= matches
//     the queried name: the addresses of an unlisted CNAME target are
//     learned under the listed alias.
//   - stop-dns-rebind drops answers in RFC 1918, CGNAT, link-local,
//     loopback, ULA and the documentation ranges (192.0.2.0/24,
//     198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32). The reply is
//     NOERROR with no addresses, and nothing is added to the sets.
//   - Privileges: with user=nobody the daemon runs with euid 65534 and keeps
//     exactly CAP_NET_ADMIN (CapEff 0x1000), which nftset and the conntrack
//     mark need; sets are still populated after the drop. The pid file and
//     the log are opened before the drop, so the state directory can stay
//     root-only (0700). Where uid 65534 is not mapped (a rootless user
//     namespace without subordinate ids) set [Config.User] to "root".
//   - TTLs: max-cache-ttl caps the cache and max-ttl caps the TTL handed to
//     clients, including on forwarded answers. dnsmasq adds to the sets only
//     when it forwards, never on cache hits, and `add element` does not
//     refresh the timeout of an element that is still present: an element
//     expires one set timeout after it was first learned, and is learned
//     again by the first forwarded query after that. Refreshing elements
//     while they are in use needs a rule in the ruleset (for example
//     `ip daddr @learned_v4 update @learned_v4 { ip daddr }` on a set with
//     flags dynamic,timeout); max-ttl below the timeout keeps clients from
//     holding addresses the sets have long forgotten.
//
// # Lifecycle
//
// [Start] joins the network namespace on a locked OS thread and runs dnsmasq
// from that thread (the thread is never unlocked, so the runtime discards
// it). dnsmasq daemonises and its first process exits only after the daemon
// is listening, or with the reason it failed, which Start returns. An
// [Instance] is identified by its exact command line
// [Binary, "--conf-file=" + ConfFile]: [Stop] opens a pidfd for the pid in
// the pid file, checks the command line and only then signals through the
// pidfd, so a stale pid file or a reused pid never gets an unrelated process
// killed.
//
// SIGHUP does not re-read nftset= or connmark-allowlist= lines, and a second
// instance cannot bind the same addresses while the first runs (no
// SO_REUSEPORT). [Restart] therefore checks the new file with
// `dnsmasq --test` (a bad file keeps the old resolver running), stops the old
// instance and starts the new one: about 10 ms without a resolver, during
// which queries get ICMP port unreachable, and a query in flight at the
// moment of the stop is lost (the client retries after its timeout).
package dnsmasq
