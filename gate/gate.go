// SPDX-License-Identifier: Apache-2.0

// Package gate keeps a shielded container's workload from running unless the firewall hook ran
// for this very start of the container.
//
// Podman silently skips an OCI hook whose binary is missing, and runs no hook at all when the
// hooks dir is not in effect (a start through systemd or the API service with another
// containers.conf, for example). The firewall hook cannot notice what never ran, so the check
// sits at the other end: the shim makes the container's init process the gate (`podman run
// --init --init-path <terok-shield>`, mounted by podman at /run/podman-init), and the hook
// writes a proof into a read-only directory mounted into the container. The gate runs as PID 1
// before the workload, reads the proof and compares it with facts about the current start that
// the workload cannot forge and a previous start cannot match:
//
//   - the inode of the network namespace it runs in (the one the hook filtered), and
//   - the start time of PID 1 itself (the process the runtime created for this start; the hook
//     reads the same value from /proc/PID/stat on the host side).
//
// On a match the gate execs the workload (or, when the user asked for --init, stays PID 1 as a
// minimal init that forwards signals and reaps orphans). On any mismatch or a missing proof it
// refuses with exit code 126 and a one-line reason, so the workload never runs unfiltered.
//
// Trust: the proof is written by the hook (root in podman's user namespace) and read inside the
// container. The workload cannot write the proof directory (read-only bind mount, no
// CAP_SYS_ADMIN to remount). The gate imports only the standard library and x/sys.
package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Paths inside the container.
const (
	// InitPath is where podman mounts the --init-path binary inside the container.
	InitPath = "/run/podman-init"
	// ProofDir is where the shim mounts the bundle's gate directory (read-only).
	ProofDir = "/run/terok-shield"
	// ProofFile is the file name of the proof inside the proof directory.
	ProofFile = "proof.json"
)

// Proof is what the hook records after the firewall is active for one container start.
type Proof struct {
	// NetNSInode is the inode of the network namespace the ruleset was applied to.
	NetNSInode uint64 `json:"netns_inode"`
	// InitStartTime is field 22 of /proc/PID/stat of the container's init process.
	InitStartTime uint64 `json:"init_start_time"`
	// ContainerID is the OCI container id, for diagnostics.
	ContainerID string `json:"container_id,omitempty"`
}

// Marshal renders p as the proof file's content.
func (p Proof) Marshal() []byte {
	b, _ := json.Marshal(p) // a struct of plain fields cannot fail to marshal
	return append(b, '\n')
}

// ParseProof parses a proof file's content.
func ParseProof(data []byte) (Proof, error) {
	var p Proof
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Proof{}, fmt.Errorf("parse proof: %w", err)
	}
	if p.NetNSInode == 0 || p.InitStartTime == 0 {
		return Proof{}, errors.New("parse proof: missing netns inode or init start time")
	}
	return p, nil
}

// Facts are the values of the current start that a proof must match.
type Facts struct {
	NetNSInode    uint64
	InitStartTime uint64
}

// Check compares a proof with the facts of the current start.
func Check(p Proof, f Facts) error {
	if p.NetNSInode != f.NetNSInode {
		return fmt.Errorf("firewall proof is for network namespace %d, this container runs in %d", p.NetNSInode, f.NetNSInode)
	}
	if p.InitStartTime != f.InitStartTime {
		return fmt.Errorf("firewall proof is from another start of this container (start time %d, now %d)", p.InitStartTime, f.InitStartTime)
	}
	return nil
}

// ProcessStartTime returns field 22 (starttime, in clock ticks since boot) of /proc/<pid>/stat.
// procRoot is normally "/proc"; pid may be "self".
func ProcessStartTime(procRoot, pid string) (uint64, error) {
	data, err := os.ReadFile(procRoot + "/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read process start time: %w", err)
	}
	return parseStartTime(string(data))
}

func parseStartTime(stat string) (uint64, error) {
	// The command name (field 2) is in parentheses and may contain spaces and ')'; the fields
	// after the last ')' start with field 3.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse /proc stat: no command name")
	}
	fields := strings.Fields(stat[i+1:])
	const startTimeField = 22 - 3 // index of field 22 counting from field 3
	if len(fields) <= startTimeField {
		return 0, errors.New("parse /proc stat: too few fields")
	}
	v, err := strconv.ParseUint(fields[startTimeField], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc stat start time: %w", err)
	}
	return v, nil
}

// NetNSInode returns the inode of the network namespace at path (e.g. /proc/self/ns/net).
func NetNSInode(path string) (uint64, error) {
	link, err := os.Readlink(path)
	if err != nil {
		return 0, fmt.Errorf("read network namespace of %s: %w", path, err)
	}
	// "net:[4026531840]"
	s, ok := strings.CutPrefix(link, "net:[")
	if !ok || !strings.HasSuffix(s, "]") {
		return 0, fmt.Errorf("read network namespace of %s: unexpected link %q", path, link)
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read network namespace of %s: %w", path, err)
	}
	return v, nil
}

// CurrentFacts reads the facts of the running process's own start: the gate runs as PID 1, so
// its own start time is the init start time the hook saw.
func CurrentFacts() (Facts, error) {
	ino, err := NetNSInode("/proc/self/ns/net")
	if err != nil {
		return Facts{}, err
	}
	st, err := ProcessStartTime("/proc", "self")
	if err != nil {
		return Facts{}, err
	}
	return Facts{NetNSInode: ino, InitStartTime: st}, nil
}
