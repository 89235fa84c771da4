// SPDX-License-Identifier: Apache-2.0

package state

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// CurrentIdentity reads the identity of process pid from /proc.
func CurrentIdentity(pid int, containerID string) (NetNSIdentity, error) {
	if pid <= 0 {
		return NetNSIdentity{}, fmt.Errorf("read identity of pid %d: invalid pid", pid)
	}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return NetNSIdentity{}, fmt.Errorf("read identity of pid %d: %w", pid, err)
	}
	start, err := parseStartTime(stat)
	if err != nil {
		return NetNSIdentity{}, fmt.Errorf("read identity of pid %d: %w", pid, err)
	}
	fi, err := os.Stat(dir + "/ns/net")
	if err != nil {
		return NetNSIdentity{}, fmt.Errorf("read identity of pid %d: %w", pid, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return NetNSIdentity{}, fmt.Errorf("read identity of pid %d: no inode for ns/net", pid)
	}
	return NetNSIdentity{PID: pid, StartTime: start, NetNSInode: st.Ino, ContainerID: containerID}, nil
}

// Check verifies that the recorded process still exists with the same
// start time and network namespace, so that a recycled pid is never
// trusted.
func (id NetNSIdentity) Check() error {
	cur, err := CurrentIdentity(id.PID, id.ContainerID)
	if err != nil {
		return fmt.Errorf("check netns identity: %w", err)
	}
	if cur.StartTime != id.StartTime {
		return fmt.Errorf("check netns identity: pid %d started at %d, recorded %d (stale pid)", id.PID, cur.StartTime, id.StartTime)
	}
	if cur.NetNSInode != id.NetNSInode {
		return fmt.Errorf("check netns identity: pid %d is in netns %d, recorded %d", id.PID, cur.NetNSInode, id.NetNSInode)
	}
	return nil
}
