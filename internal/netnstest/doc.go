// SPDX-License-Identifier: Apache-2.0

// Package netnstest builds small, closed topologies of network namespaces for
// tests and probes them with real packets, reporting exact outcomes.
//
// It is a test-only helper; it makes no API stability promise.
//
// # Topologies
//
// [New] creates a named network namespace (`ip netns add`, so it is visible
// at /run/netns/<name>) with only its loopback interface up. [Link] connects
// two such namespaces with a veth pair created directly inside them (the pair
// never exists in the host's namespace) and assigns addresses; IPv6 addresses
// are added with nodad and duplicate address detection is disabled in every
// namespace, so addresses are usable at once. [NS.Route] adds a route whose
// next hop must be on-link, and the only links a namespace has are veths to
// other test namespaces. A topology therefore has no path to the host's real
// interfaces: nothing a test sends can leave it.
//
// Names are random and unique per call, so tests using this package may run in
// parallel. Everything is torn down with t.Cleanup: servers first, then the
// namespaces (deleting a namespace deletes its veth ends).
//
// # Running code inside a namespace
//
// [NS.Do] runs a function on a fresh, locked OS thread that has joined the
// namespace. The thread is never unlocked and is discarded when the function
// returns, so no goroutine ever runs in the wrong namespace afterwards.
// Sockets belong to the namespace they were created in: create them inside Do;
// reading, writing and accepting may then happen on any goroutine.
// [NS.Exec] runs a command with `nsenter --net=<path>`.
//
// # Servers and probes
//
// [NS.ServeTCP] and [NS.ServeUDP] start echo servers whose replies start with a
// server identity (returned by the Serve call), so a probe proves which server
// it reached. [NS.ProbeTCP], [NS.ProbeUDP] and [NS.ProbePing] report an
// [Outcome]:
//
//   - "open": the server (or the pinged host) answered; Reply names it.
//   - "icmp": an ICMP error came back; ICMPType and ICMPCode are read from the
//     socket error queue (IP_RECVERR / IPV6_RECVERR, struct sock_extended_err),
//     From is the address that sent it.
//   - "refused": a TCP reset.
//   - "timeout": nothing came back within the timeout (default 1 s): a drop.
//   - "eperm": sending failed with EPERM, i.e. a drop in the prober's own
//     output path (UDP and ping; a dropped TCP SYN is a "timeout").
//   - "error": anything else; Err says what.
//
// [ProbeOptions] sets a shorter timeout (for expected drops), an SO_MARK, or
// the payload. [NS.DialTCP] opens a long-lived connection with IP_RECVERR set,
// so an ICMP error on the established flow fails its next read at once.
// [Diff] compares outcomes (ignoring Err, and From unless wanted).
//
// An nftables `reject with icmpx admin-prohibited` is ICMPv4 type 3 code 13
// and ICMPv6 type 1 code 1 ([AdminProhibited]).
//
// # Privileges
//
// Everything needs root and the `ip` and `nsenter` tools. [Require] skips the
// test when they are missing, but fails it when the environment variable CI is
// non-empty or TEROK_SHIELD_REQUIRE_PRIVILEGED=1, so privileged tests never
// silently pass in CI.
//
// If a test binary is killed, its namespaces remain; they are all named
// "tsn-<prefix>-<random>" and can be removed with `ip netns del`.
package netnstest
