// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package state

import "errors"

var errNoProc = errors.New("netns identity needs Linux /proc")

// CurrentIdentity reads the identity of process pid from /proc (Linux only).
func CurrentIdentity(pid int, containerID string) (NetNSIdentity, error) {
	return NetNSIdentity{}, errNoProc
}

// Check verifies the recorded process (Linux only).
func (id NetNSIdentity) Check() error { return errNoProc }
