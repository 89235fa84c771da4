// SPDX-License-Identifier: Apache-2.0

// Package audit writes and reads the per-container audit log audit.jsonl.
// It makes no API stability promise.
//
// # Schema, version 1
//
// One compact JSON object per line, UTF-8, terminated by "\n". Keys appear in
// this order; optional keys are omitted when empty. Readers must ignore
// unknown keys; a change that removes or changes the meaning of a key
// increments "v".
//
//	key        type            presence   meaning
//	v          number          always     schema version, 1
//	ts         string          always     RFC 3339 UTC with milliseconds, "2026-03-07T12:00:00.123Z"
//	container  string          always     container name
//	action     string          always     see the table below
//	target     string          optional   what the operator named: IP, CIDR, domain or *.domain
//	ips        array of string optional   addresses or prefixes the action added or removed
//	mode       string          optional   shield mode: up, down, down_all, block
//	profiles   array of string optional   profiles composed (setup)
//	reason     string          optional   why (notice: "private range" / "broad prefix"; error: the error)
//	source     string          optional   where an entry came from, "file:line"
//	detail     string          optional   free text for humans, never parsed
//
//	action            when                                          typical keys
//	setup             the hook applied and verified the ruleset     profiles, mode, detail
//	allow             operator allowed a target                     target, ips
//	deny              operator denied a target                      target, ips
//	up                shield up (allowlist enforced)                mode
//	down              shield down (mode down or down_all)           mode
//	block             shield blocks everything                      mode
//	resolver_start    per-container resolver started                detail (pid, tier)
//	resolver_stop     per-container resolver stopped                detail
//	resolver_restart  resolver restarted (e.g. domain list change)  detail, reason
//	teardown          container stopped, state cleaned up           detail
//	error             an operation failed                           reason, target
//	notice            entry accepted that needs attention           target, source, reason
//
// Example:
//
//	{"v":1,"ts":"2026-03-07T12:00:00.000Z","container":"web","action":"allow","target":"example.com","ips":["93.184.215.14"]}
//
// # Writing
//
// [Logger.Append] marshals an event and writes it with one write(2) on a
// descriptor opened O_APPEND|O_CREATE|O_WRONLY|O_CLOEXEC|O_NOFOLLOW, mode
// 0600, through an [os.Root] on the bundle directory. Appends hold a shared
// flock(2) on audit.jsonl.lock; rotation (when the file has grown beyond
// Options.MaxBytes: audit.jsonl → audit.jsonl.1 → ... → audit.jsonl.Keep,
// the oldest dropped) holds it exclusively, so concurrent writers, threads
// or processes, never lose or interleave an entry. Every failure is
// returned to the caller.
//
// # Reading
//
// [Tail] returns the last n events of one log (including its rotations);
// [Merge] returns the last n events across several logs ordered by time.
// Malformed lines are skipped and counted.
package audit
