// SPDX-License-Identifier: Apache-2.0

// Command demo is `make demo`: it shows terok-shield at work on an offline test internet.
//
// As root, after scripts/install-deps.sh and `make build`, it starts a closed "internet" made
// of network namespaces (package testnet: a DNS server and a few web servers, nothing linked to
// the real network), writes a demo allowlist profile and runs one shielded container as the
// unprivileged user terok-test (rootless podman) and one as root (rootful podman), both through
// the terok-shield podman shim. In each it shows, in plain words:
//
//   - the allowed name is resolved by the container's own resolver and its server answers;
//   - a name not on the list is refused by that resolver (the real DNS server never sees it);
//   - an address not on the list is rejected by the firewall (ICMP "administratively
//     prohibited");
//   - and, for comparison, the same container without --shield reaches that address.
//
// It exits 0 when everything behaves as described, 1 with a message otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/terok-ai/terok-shield/integration"
	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

const (
	allowedName  = "allowed.test"
	unlistedName = "unlisted.test"
	profileName  = "demo"
)

func main() {
	shimBin := flag.String("shim", "bin/terok-shield", "the static terok-shield binary to demonstrate (make build)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	err := run(ctx, *shimBin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nDEMO FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\nAll as expected (%s).\n", time.Since(start).Round(100*time.Millisecond))
}

func run(ctx context.Context, shimBin string) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root (it creates network namespaces): sudo make demo")
	}
	if _, err := os.Stat(shimBin); err != nil {
		return fmt.Errorf("%w (run make build first)", err)
	}
	say("Preparing: building the test image and starting an offline test internet ...")
	h := integration.NewHarness()
	h.ShimBinary = shimBin
	defer func() { err = errors.Join(err, h.Close()) }()
	if err := h.Init(); err != nil {
		return fmt.Errorf("%w (is the user %s there? scripts/install-deps.sh creates it)", err, integration.TestUserName())
	}
	n, err := testnet.StartWith(testnet.Options{Prefix: "demo"})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	say("  The test internet has a DNS server (%s) and web servers; %s is %s, %s is %s.",
		testnet.DNSV4, allowedName, testnet.BenchV4, unlistedName, testnet.BenchUnlistedV4)
	say("  Nothing in it is connected to your real network.")
	say("")
	say("The allowlist profile %q holds one line: %s", profileName, allowedName)

	for _, mode := range []integration.Mode{integration.Rootless, integration.Rootful} {
		if err := demoMode(ctx, h, n, mode); err != nil {
			return fmt.Errorf("%s podman: %w", mode, err)
		}
	}
	return nil
}

func demoMode(ctx context.Context, h *integration.Harness, n *testnet.Net, mode integration.Mode) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	who := "root"
	if mode == integration.Rootless {
		who = "user " + h.User.Name
	}
	say("")
	say("=== %s podman, as %s ===", mode, who)
	sp, err := integration.NewShieldedPodman(h, n, mode)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sp.Close()) }()
	if err := sp.WriteProfile(profileName, allowedName); err != nil {
		return err
	}
	if err := sp.EnsureImage(ctx); err != nil {
		return err
	}
	name := sp.Name("demo")
	say("$ podman run -d --shield=%s --name %s %s /bin/sleeper", profileName, name, h.ImageRef)
	t0 := time.Now()
	if err := sp.StartShielded(ctx, name, profileName); err != nil {
		return err
	}
	say("  started in %s: firewall installed in the container's network namespace, own resolver running", since(t0))
	n.ResetHits()

	// 1. The allowed name resolves and its server answers.
	res, err := probeIn(ctx, sp, name, "dns", allowedName)
	if err != nil {
		return err
	}
	if res.Rcode != "NOERROR" || len(res.Answers) != 1 || res.Answers[0] != "A "+testnet.BenchV4 {
		return fmt.Errorf("%s: want the answer A %s, got %s %v", allowedName, testnet.BenchV4, res.Rcode, res.Answers)
	}
	if q := n.DNS.QueriesFor(allowedName); len(q) == 0 {
		return fmt.Errorf("%s resolved, but the DNS server saw no question for it", allowedName)
	}
	say("  ✔ %s resolved to %s (the container's resolver asked the DNS server)", allowedName, testnet.BenchV4)
	res, err = probeIn(ctx, sp, name, "tcp", testnet.BenchV4+":80", "--send", "hello from a shielded container")
	if err != nil {
		return err
	}
	if res.Result != probe.OK {
		return fmt.Errorf("connect to %s: want a reply, got %s %s", allowedName, res.Result, res.Error)
	}
	say("  ✔ connected to %s:80, the server replied: %s", allowedName, res.Reply)

	// 2. A name not on the list is refused by the resolver, never forwarded.
	if res, err = probeIn(ctx, sp, name, "dns", unlistedName); err != nil {
		return err
	}
	if res.Rcode != "REFUSED" {
		return fmt.Errorf("%s: want REFUSED, got %s %v", unlistedName, res.Rcode, res.Answers)
	}
	if q := n.DNS.QueriesFor(unlistedName); len(q) != 0 {
		return fmt.Errorf("%s was forwarded to the DNS server: %+v", unlistedName, q)
	}
	say("  ✔ %s is not on the list: the resolver answered REFUSED (the DNS server never saw the question)", unlistedName)

	// 3. An address not on the list is rejected by the firewall.
	if res, err = probeIn(ctx, sp, name, "tcp", testnet.BenchUnlistedV4+":80"); err != nil {
		return err
	}
	if res.Result != probe.ICMPErr || res.ICMP == nil || res.ICMP.Type != 3 || res.ICMP.Code != 13 {
		return fmt.Errorf("connect to %s: want ICMP admin-prohibited (3/13), got %s %s", testnet.BenchUnlistedV4, res.Result, res.Error)
	}
	if h := n.Hits("bench4-unlisted"); len(h) != 0 {
		return fmt.Errorf("the unlisted server was reached: %+v", h)
	}
	say("  ✔ connecting to %s:80 directly (not on the list) was rejected at once by the firewall:", testnet.BenchUnlistedV4)
	say("    ICMP type 3 code 13, \"communication administratively prohibited\"; the server saw nothing")

	// 4. For comparison: the same image without --shield reaches it.
	say("$ podman run --rm %s /bin/probe tcp %s:80   (no --shield, for comparison)", h.ImageRef, testnet.BenchUnlistedV4)
	res, _, err = sp.Probe(ctx, []string{"--rm"}, "tcp", testnet.BenchUnlistedV4+":80")
	if err != nil {
		return err
	}
	if res.Result != probe.OK {
		return fmt.Errorf("unshielded connect to %s: want a reply, got %s %s", testnet.BenchUnlistedV4, res.Result, res.Error)
	}
	say("  ✔ without the shield %s:80 answers: %s", testnet.BenchUnlistedV4, res.Reply)
	return nil
}

func probeIn(ctx context.Context, sp *integration.ShieldedPodman, name string, args ...string) (probe.Result, error) {
	res, _, err := sp.ProbeIn(ctx, name, args...)
	if err != nil {
		return res, fmt.Errorf("probe %s: %w", strings.Join(args, " "), err)
	}
	return res, nil
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }
