// SPDX-License-Identifier: Apache-2.0

// Package state keeps the per-container state bundle of terok-shield. It
// makes no API stability promise.
//
// The state root is $TEROK_SHIELD_STATE_DIR, else
// $XDG_STATE_HOME/terok/shield, else ~/.local/state/terok/shield (see
// [DefaultRoot]). Each shielded container has one bundle directory
// <root>/containers/<name>, mode 0700, owned by the user. Container names
// follow podman's rule ^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$ and are never
// "." or "..".
//
// Every access goes through an [os.Root] opened on the bundle directory, so
// neither a hostile name nor a symlink planted in the bundle can make a
// read or write escape it. A bundle directory that is a symlink, is not
// owned by the expected user, or is group- or world-accessible is refused.
// Only the file names listed as constants (FileBundle, FileAudit, ...) can
// be opened through a [Bundle].
//
// # bundle.json
//
// Everything the hook and the commands need lives in one JSON document,
// bundle.json, described by [Data]. Its "format" field is 1; a bundle of any
// other format is refused with "bundle format N is not supported by this
// terok-shield (wants 1); recreate the container", never misread. Unknown
// fields are refused too.
//
// [Bundle.Update] is the only way to change it: it takes an exclusive
// flock(2) on the bundle's "lock" file, reads bundle.json, calls the
// function, and when the function succeeds writes a temporary file, fsyncs
// it, renames it over bundle.json and fsyncs the directory. Concurrent
// updates from goroutines or processes are serialised, so none is lost;
// readers ([Bundle.Load]) see either the old or the new document.
//
// # Effective lists
//
// [Data.EffectiveAllow] and [Data.EffectiveDeny] are the one place where
// the allow and deny lists are computed:
//
//	allow = (profile entries ∪ operator allow ∪ static-tier addresses) − operator deny
//
// Deny wins: an allowed prefix equal to or inside a denied prefix is
// dropped (an allowed prefix that merely contains a denied one stays, and
// the ruleset's deny set, which is checked first, blocks the denied part);
// an allowed name equal to a denied name or below a denied wildcard is
// dropped, as is an allowed wildcard equal to or below a denied wildcard.
// Addresses learned by the static resolver tier are only included for
// names that are still allowed and never when they are private or
// special-purpose (profiles.IsPrivate): only an explicit entry opens those.
//
// # Netns identity
//
// The hook records the container's init pid together with its start time
// (field 22 of /proc/PID/stat) and the inode of its network namespace.
// [NetNSIdentity.Check] verifies both again, so a recycled pid is never
// trusted.
package state
