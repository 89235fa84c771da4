// SPDX-License-Identifier: Apache-2.0

package netnstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Require stops the test unless it runs as root with `ip` and `nsenter`
// available. It fails the test when CI is non-empty or
// TEROK_SHIELD_REQUIRE_PRIVILEGED=1, and skips it otherwise.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (euid 0)")
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, "the "+tool+" tool")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "network namespace test needs " + strings.Join(missing, " and ")
	if Mandatory() {
		t.Fatalf("%s (required because CI or TEROK_SHIELD_REQUIRE_PRIVILEGED=1 is set)", msg)
	}
	t.Skip(msg)
}

// Mandatory reports whether privileged tests must run rather than skip: the
// environment variable CI is non-empty or TEROK_SHIELD_REQUIRE_PRIVILEGED=1.
func Mandatory() bool {
	return os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1"
}

// NS is a network namespace created by [New].
type NS struct {
	Name string // name under /run/netns
	Path string // /run/netns/<Name>, usable with setns or nsenter --net

	mu     sync.Mutex
	nextIf int
}

// New creates a network namespace named "tsn-<prefix>-<random>" with its
// loopback interface up, IPv6 duplicate address detection off and ICMP echo
// sockets allowed for every group. It is deleted when the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("netnstest: random name: %v", err)
	}
	name := "tsn-" + prefix + "-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("netnstest: ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	n := &NS{Name: name, Path: filepath.Join("/run/netns", name)}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("netnstest: ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
	})
	sysctls := [][2]string{
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
		{"net/ipv6/conf/all/accept_ra", "0"},
		{"net/ipv6/conf/default/accept_ra", "0"},
		{"net/ipv4/ping_group_range", "0 2147483647"},
	}
	for _, s := range sysctls {
		if err := n.Sysctl(s[0], s[1]); err != nil {
			t.Fatalf("netnstest: %v", err)
		}
	}
	n.IP(t, "link set lo up")
	return n
}

// IP runs `ip -n <name> -batch -` with one command per argument (each without
// the leading "ip"), failing the test on error.
func (n *NS) IP(t testing.TB, cmds ...string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", n.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("netnstest: ip -n %s %q: %v: %s", n.Name, cmds, err, bytes.TrimSpace(out))
	}
}

// Sysctl writes value to /proc/sys/<key> inside the namespace; key uses
// slashes, e.g. "net/ipv4/ip_forward".
func (n *NS) Sysctl(key, value string) error {
	return n.Do(func() error {
		p := filepath.Join("/proc/sys", filepath.Clean("/"+key))
		if err := os.WriteFile(p, []byte(value), 0); err != nil {
			return fmt.Errorf("sysctl %s in %s: %w", key, n.Name, err)
		}
		return nil
	})
}

// Link connects a and b with a veth pair, adds aAddrs to a's end and bAddrs
// to b's end (IPv6 with nodad), brings both up and returns the interface
// names in a and in b. The pair is created inside the two namespaces and never
// appears in the host's namespace.
func Link(t testing.TB, a, b *NS, aAddrs, bAddrs []netip.Prefix) (aIf, bIf string) {
	t.Helper()
	aIf, bIf = a.newIfName(), b.newIfName()
	a.IP(t, fmt.Sprintf("link add %s type veth peer name %s netns %s", aIf, bIf, b.Name))
	a.IP(t, append(addrCmds(aIf, aAddrs), "link set "+aIf+" up")...)
	b.IP(t, append(addrCmds(bIf, bAddrs), "link set "+bIf+" up")...)
	a.waitReady(t, aIf)
	b.waitReady(t, bIf)
	return aIf, bIf
}

// waitReady waits until dev has carrier and a usable (not tentative) IPv6
// link-local address. The kernel may delay the carrier event of a new veth by
// up to a second, and until then IPv6 on it ignores neighbour solicitations.
func (n *NS) waitReady(t testing.TB, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		link, err1 := exec.Command("ip", "-n", n.Name, "-o", "link", "show", "dev", dev).Output()
		addr, err2 := exec.Command("ip", "-n", n.Name, "-o", "-6", "addr", "show", "dev", dev).Output()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("netnstest: ip show %s in %s: %v", dev, n.Name, err)
		}
		if bytes.Contains(link, []byte("LOWER_UP")) && bytes.Contains(addr, []byte("scope link")) &&
			!bytes.Contains(addr, []byte("tentative")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("netnstest: %s in %s not ready after 5s: %s %s", dev, n.Name, link, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AddAddr adds addresses to dev (for example "lo", to host server addresses
// that are reached through a route).
func (n *NS) AddAddr(t testing.TB, dev string, addrs ...netip.Prefix) {
	t.Helper()
	n.IP(t, addrCmds(dev, addrs)...)
}

func addrCmds(dev string, addrs []netip.Prefix) []string {
	cmds := make([]string, 0, len(addrs))
	for _, p := range addrs {
		c := fmt.Sprintf("addr add %s dev %s", p, dev)
		if p.Addr().Is6() {
			c += " nodad"
		}
		cmds = append(cmds, c)
	}
	return cmds
}

func (n *NS) newIfName() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	name := fmt.Sprintf("veth%d", n.nextIf)
	n.nextIf++
	return name
}

// Route adds a route to dst via the on-link next hop via.
func (n *NS) Route(t testing.TB, dst netip.Prefix, via netip.Addr) {
	t.Helper()
	n.IP(t, fmt.Sprintf("route add %s via %s", dst, via))
}

// Do runs fn on a new OS thread that has joined the namespace. The thread
// stays locked and is discarded when fn returns; a panic in fn is returned as
// an error.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: this thread's network namespace is changed below,
		// and a goroutine that exits while locked takes its thread with it.
		runtime.LockOSThread()
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("netnstest: panic in %s: %v", n.Name, r)
			}
		}()
		fd, err := unix.Open(n.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("netnstest: open %s: %w", n.Path, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("netnstest: setns %s: %w", n.Path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Exec runs name with args inside the namespace via `nsenter --net=<Path>`
// and returns its combined output.
func (n *NS) Exec(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + n.Path, "--", name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %q in %s: %w", name, args, n.Name, err)
	}
	return string(out), nil
}
