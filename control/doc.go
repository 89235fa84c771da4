// SPDX-License-Identifier: Apache-2.0

// Package control implements the runtime control commands of terok-shield (`podman shield
// allow|deny|up|down|block|status|rules|logs|doctor`) on running shielded containers.
//
// A container is found by name, full ID or unique ID prefix through its state bundle; podman is
// never called. The bundle holds the network namespace identity the hook recorded (init pid,
// its start time and the namespace inode), checked before every use, so a recycled pid is never
// trusted: "container X is not running".
//
// # Reaching the namespace
//
// As root the namespace file is opened once, its inode compared with the recorded one, and the
// nft operations enter it through /proc/self/fd/N on a locked thread. A rootless container's
// network namespace belongs to a user namespace, which a multithreaded Go process cannot join,
// so the binary re-executes itself as
//
//	nsenter --target PID --user --net --preserve-credentials -- EXE __netns-op
//
// with the [Op] as JSON on stdin; the child checks its namespace inode against the recorded
// one, validates the Op again ([ServeOp]) and answers with a [Result] on stdout. No sudo is
// needed: the user owns that user namespace.
//
// # Changes
//
// Every change runs inside [state.Bundle.Update], which holds the bundle's flock: concurrent
// commands on one container serialise, and when the namespace operation fails nothing is
// written. allow and deny change the bundle's operator lists and then make the live allow and
// deny sets equal to what the bundle implies (nft.SyncSets, one transaction, with hook.PolicyFor
// as the one derivation of the table), so an address moved from allow to deny is never in
// neither and never reachable once denied. Deny sets are checked before established flows,
// so a deny cuts open connections, and before the learned sets, so it wins over DNS
// re-learning; learned addresses inside denied prefixes are removed too. Names (domains,
// wildcards) change the resolver: its configuration is rendered again (hook.Resolver) and
// dnsmasq restarted in the namespace (it does not re-read nftset= on SIGHUP). An allowed
// domain is then queried through the container's resolver, which reports its addresses and
// teaches them to the learned sets at once. A denied domain is queried before the restart
// and the addresses the resolver returns are removed from the learned sets; connections
// already open to them stay open (deny the addresses to cut those), and addresses shared with
// another allowed name are learned again on its next lookup. A name below an allowed wildcard
// cannot be denied alone (dnsmasq has no exceptions to a pattern): deny is refused with that
// reason. up, down and block replace the whole table with the one rebuilt from the bundle and
// verify it. Every change is audited in the container's audit.jsonl.
//
// # States
//
// Status reports up, down, down_all or block when the live table verifies against the table
// the bundle implies, inactive when the container is not running or has no table, and error
// (with the drift) otherwise.
package control
