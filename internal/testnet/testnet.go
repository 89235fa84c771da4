// SPDX-License-Identifier: Apache-2.0

// Package testnet builds a closed, offline "internet" out of network namespaces for end-to-end
// tests: a "host" namespace (where the podman under test runs) whose only route leads to a "wan"
// namespace holding echo, TLS, DNS (UDP/TCP/DoT/DoH) and canary servers on public-looking
// documentation addresses plus stand-ins for private, link-local, CGNAT and ULA addresses.
//
// Nothing in either namespace is linked to the real machine's interfaces, so a wrong route can
// never reach a real outside address. Everything is torn down by Close (or t.Cleanup with Start).
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Link addresses of the veth pair between the host and wan namespaces.
const (
	HostLinkV4 = "198.18.0.1"
	WanLinkV4  = "198.18.0.2"
	HostLinkV6 = "2001:db8:ff::1"
	WanLinkV6  = "2001:db8:ff::2"
)

// Well-known server addresses inside wan (all reachable from host through its default routes).
const (
	EchoV4      = "192.0.2.10"      // echo server "web4" (TCP+UDP 80, 8080, 9999)
	EchoV4b     = "198.51.100.10"   // echo server "web4b" (TCP+UDP 80)
	EchoV4c     = "203.0.113.10"    // echo server "web4c" (TCP+UDP 80)
	EchoV6      = "2001:db8::10"    // echo server "web6" (TCP+UDP 80, 8080, 9999)
	TLSV4       = "192.0.2.20"      // TLS server "tls4" on 443 reporting SNI and Host
	TLSV6       = "2001:db8::20"    // TLS server "tls6" on 443
	DNSV4       = "192.0.2.53"      // authoritative DNS (53 UDP/TCP), DoT (853), DoH (443 /dns-query)
	DNSV6       = "2001:db8::53"    // same on IPv6
	CanaryV4    = "203.0.113.66"    // "canary-public4": TCP+UDP 53, 80, 443
	CanaryV6    = "2001:db8::66"    // "canary-public6": TCP+UDP 53, 80, 443
	PrivateV4   = "10.99.0.1"       // "canary-private": RFC 1918 stand-in, TCP+UDP 80
	MetadataV4  = "169.254.169.254" // "canary-metadata": link-local / cloud metadata stand-in, TCP+UDP 80
	CGNATV4     = "100.64.0.1"      // "canary-cgnat": RFC 6598 stand-in, TCP+UDP 80
	ULAV6       = "fd00::1"         // "canary-ula": ULA stand-in, TCP+UDP 80
	EchoPortAlt = 8080
)

// Servers on the benchmarking ranges 198.18.0.0/15 and 2001:2::/48. Unlike the documentation
// ranges above, dnsmasq's stop-dns-rebind passes answers in these ranges and terok-shield does
// not count them as private, so they are the addresses a shielded container can LEARN from DNS.
const (
	BenchV4         = "198.18.100.10" // echo server "bench4" (TCP+UDP 80, 9999), name allowed.test
	BenchV6         = "2001:2::10"    // echo server "bench6" (TCP+UDP 80, 9999), name allowed.test
	BenchUnlistedV4 = "198.18.100.20" // echo server "bench4-unlisted" (TCP+UDP 80), name unlisted.test
	BenchUnlistedV6 = "2001:2::20"    // echo server "bench6-unlisted" (TCP+UDP 80), name unlisted.test
)

// Options configures StartWith.
type Options struct {
	// Prefix starts the namespace names (default "tsh"); a random suffix makes them unique.
	Prefix string
	// Logf receives progress and server messages; nil discards them.
	Logf func(format string, args ...any)
	// NoDefaultServers skips the default echo, TLS, DNS and canary servers.
	NoDefaultServers bool
}

// Net is a running closed topology. Its methods are safe for concurrent use.
type Net struct {
	// HostNS and WanNS are the namespace names (under /run/netns).
	HostNS, WanNS string
	// DNS is the authoritative server for zone "test." (nil with NoDefaultServers).
	DNS *DNSServer
	// CACertPEM is the self-signed certificate every TLS endpoint presents.
	CACertPEM []byte

	logf   func(format string, args ...any)
	tlsCfg *tlsMaterial

	mu      sync.Mutex
	closers []func() error
	hits    []Hit
	canary  map[string]bool
	closed  bool
}

// Start builds the topology with the default servers and tears it down in t.Cleanup.
// It fails the test on any error.
func Start(t testing.TB) *Net {
	t.Helper()
	n, err := StartWith(Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("testnet close: %v", err)
		}
	})
	return n
}

// StartWith builds the topology; the caller must Close it. Usable outside tests (demos).
func StartWith(opts Options) (n *Net, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testnet needs root (network namespaces, veth)")
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "tsh"
	}
	suffix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	n = &Net{
		HostNS: prefix + "-" + suffix + "-host",
		WanNS:  prefix + "-" + suffix + "-wan",
		logf:   logf,
		canary: map[string]bool{},
	}
	defer func() {
		if err != nil {
			if cerr := n.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			n = nil
		}
	}()
	if err := n.buildTopology(); err != nil {
		return n, err
	}
	if opts.NoDefaultServers {
		return n, nil
	}
	if err := n.startDefaultServers(); err != nil {
		return n, err
	}
	logf("testnet: up (host netns %s, wan netns %s)", n.HostNS, n.WanNS)
	return n, nil
}

// wanAddrs are the server addresses assigned to wan's interface.
var wanAddrs = []string{
	EchoV4 + "/32", EchoV4b + "/32", EchoV4c + "/32", TLSV4 + "/32", DNSV4 + "/32", CanaryV4 + "/32",
	PrivateV4 + "/32", MetadataV4 + "/32", CGNATV4 + "/32",
	EchoV6 + "/128", TLSV6 + "/128", DNSV6 + "/128", CanaryV6 + "/128", ULAV6 + "/128",
	BenchV4 + "/32", BenchUnlistedV4 + "/32", BenchV6 + "/128", BenchUnlistedV6 + "/128",
}

func (n *Net) buildTopology() error {
	for _, ns := range []string{n.HostNS, n.WanNS} {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		name := ns
		n.addCloser(func() error { return run("ip", "netns", "del", name) })
		if err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	h, w := n.HostNS, n.WanNS
	steps := [][]string{
		{"ip", "-n", h, "link", "add", "wan0", "type", "veth", "peer", "name", "host0", "netns", w},
		{"ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"},
		{"ip", "netns", "exec", w, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"},
		{"ip", "-n", h, "addr", "add", HostLinkV4 + "/30", "dev", "wan0"},
		{"ip", "-n", h, "addr", "add", HostLinkV6 + "/64", "dev", "wan0", "nodad"},
		{"ip", "-n", w, "addr", "add", WanLinkV4 + "/30", "dev", "host0"},
		{"ip", "-n", w, "addr", "add", WanLinkV6 + "/64", "dev", "host0", "nodad"},
	}
	for _, a := range wanAddrs {
		s := []string{"ip", "-n", w, "addr", "add", a, "dev", "host0"}
		if strings.Contains(a, ":") {
			s = append(s, "nodad")
		}
		steps = append(steps, s)
	}
	steps = append(steps,
		[]string{"ip", "-n", h, "link", "set", "wan0", "up"},
		[]string{"ip", "-n", w, "link", "set", "host0", "up"},
		[]string{"ip", "-n", h, "route", "add", "default", "via", WanLinkV4, "dev", "wan0"},
		[]string{"ip", "-n", h, "-6", "route", "add", "default", "via", WanLinkV6, "dev", "wan0"},
	)
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// NSPath returns the bind-mount path of a namespace name (for nsenter --net=).
func NSPath(name string) string { return filepath.Join("/run/netns", name) }

// HostPath is the path of the host namespace, for nsenter --net=.
func (n *Net) HostPath() string { return NSPath(n.HostNS) }

// WanPath is the path of the wan namespace.
func (n *Net) WanPath() string { return NSPath(n.WanNS) }

// HostDo runs fn on a locked OS thread inside the host namespace. Sockets created by fn stay there.
func (n *Net) HostDo(fn func() error) error { return DoIn(n.HostPath(), fn) }

// WanDo runs fn on a locked OS thread inside the wan namespace.
func (n *Net) WanDo(fn func() error) error { return DoIn(n.WanPath(), fn) }

// DoIn runs fn on a locked OS thread switched into the network namespace at path, then switches
// back. If switching back fails the thread stays locked, so the Go runtime discards it.
func DoIn(path string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", path, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Close stops all servers and deletes both namespaces. It is idempotent.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	closers := n.closers
	n.closers = nil
	n.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *Net) addCloser(f func() error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closers = append(n.closers, f)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randomHex(nbytes int) (string, error) {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
