// SPDX-License-Identifier: Apache-2.0

// Package hook is the OCI runtime hook that brings a shielded container's firewall to life.
//
// The runtime (runc, crun) runs `terok-shield hook createRuntime` after it has created the
// container's namespaces and before the workload starts, with the OCI state on stdin. The hook
//
//	stdin state ─▶ annotation terok.shield.bundle? ── no ──▶ exit 0 (not ours)
//	                     │ yes
//	                     ▼
//	   validate bundle dir (owner, mode, format) and config.json (own netns, no NET_ADMIN/
//	   NET_RAW/SYS_ADMIN) ─▶ open /proc/PID/ns/net ─▶ nft.Apply (one batch, policy drop)
//	   ─▶ nft.Verify (read back) ─▶ start dnsmasq in the netns ─▶ record netns identity
//	   ─▶ write the gate proof ─▶ audit ─▶ exit 0
//
// Any error exits non-zero, and the runtime then refuses to start the container: fail closed.
// At poststop the hook stops the container's dnsmasq (checking that the pid is really ours)
// and audits the teardown; poststop errors are reported but cannot stop anything.
//
// Trust: the hook runs as root (rootful podman) or as root in podman's user namespace
// (rootless). Its inputs — the OCI state, config.json and the annotations — are written by
// podman from a command line the user (and, through images, an attacker) influenced, so every
// value is validated before use; the bundle directory is opened through the state package,
// which refuses symlinks, foreign owners and loose modes. The hook never calls podman: podman
// holds the container lock while hooks run.
package hook
