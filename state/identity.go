// SPDX-License-Identifier: Apache-2.0

package state

import (
	"bytes"
	"fmt"
	"strconv"
)

// NetNSIdentity identifies a container's network namespace through its init
// process, as recorded by the hook.
type NetNSIdentity struct {
	PID         int    `json:"pid"`
	StartTime   uint64 `json:"start_time"`   // field 22 of /proc/PID/stat, clock ticks since boot
	NetNSInode  uint64 `json:"netns_inode"`  // inode of /proc/PID/ns/net
	ContainerID string `json:"container_id"` // OCI container id
}

// parseStartTime extracts field 22 (starttime) from the content of
// /proc/PID/stat. The command name (field 2) may contain spaces and
// parentheses, so fields are counted after its last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse stat: no command field")
	}
	fields := bytes.Fields(stat[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse stat: %d fields after the command, want at least 20", len(fields))
	}
	v, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse stat: start time: %w", err)
	}
	return v, nil
}
