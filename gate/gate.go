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
// On a match the gate waits for the container's resolver when the proof names one (the hook
// starts dnsmasq without waiting for it), then execs the workload (or, when the user asked for
// --init, stays PID 1 as a minimal init that forwards signals and reaps orphans). On any mismatch or a missing proof it
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
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
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
	// Resolver is the loopback address:port of the container's resolver when it has one
	// ("127.0.0.1:53"). The hook starts it without waiting; the gate waits until it accepts
	// connections before the workload runs, so dnsmasq's start overlaps the runtime's own.
	Resolver string `json:"resolver,omitempty"`
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
	if p.Resolver != "" {
		if _, err := resolverAddr(p.Resolver); err != nil {
			return Proof{}, fmt.Errorf("parse proof: %w", err)
		}
	}
	return p, nil
}

// resolverAddr parses a proof's resolver address: a loopback IPv4 address with a port.
func resolverAddr(s string) (*unix.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		return nil, fmt.Errorf("resolver %q: want a loopback IPv4 address and port", s)
	}
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, nil
}

// WaitResolver waits until a TCP connection to the resolver at addr succeeds (and closes it),
// for at most limit. The address is loopback: nothing leaves the container.
func WaitResolver(addr string, limit time.Duration) error {
	sa, err := resolverAddr(addr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	delay := 100 * time.Microsecond
	for {
		err := connectOnce(sa)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the container's resolver (%s) did not start within %s (%v); run `podman shield doctor`, and see dnsmasq.err in the container's state bundle", addr, limit, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}

func connectOnce(sa *unix.SockaddrInet4) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, sa)
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
