// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// TestShieldedNameInUse: a shielded run with the name of an existing shielded container is
// refused before the shim touches that container's state, so the running container keeps its
// live allow list; a new container of the same name (after rm, or with --replace) starts from its
// profiles and does not inherit the old operator changes.
func TestShieldedNameInUse(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("reuse", "allowed.test"); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("reuse")
		if err := sp.StartShielded(ctx, name, "reuse"); err != nil {
			t.Fatal(err)
		}
		if r, err := sp.Run(ctx, "shield", "allow", name, "203.0.113.10"); err != nil || r.Exit != 0 {
			t.Fatalf("shield allow: %v %s", err, r)
		}
		before, err := os.ReadFile(sp.Bundle(name) + "/bundle.json")
		if err != nil {
			t.Fatal(err)
		}
		r, err := sp.Run(ctx, "run", "--rm", "--shield=reuse", "--name", name, sp.H.ImageRef, "/bin/probe", "caps")
		if err != nil {
			t.Fatal(err)
		}
		if r.Exit != 125 || !strings.Contains(r.Stderr, "already exists") {
			t.Fatalf("second shielded run with a used name: %s; want exit 125 naming the existing container", r)
		}
		after, err := os.ReadFile(sp.Bundle(name) + "/bundle.json")
		if err != nil {
			t.Fatal(err)
		}
		if string(before) != string(after) {
			t.Errorf("the refused run rewrote the existing container's bundle:\nbefore %s\nafter  %s", before, after)
		}
		// Positive control: the live allow still works in the running container.
		res, pr, err := sp.ProbeIn(ctx, name, "tcp", "203.0.113.10:80")
		if err != nil || res.Result != "ok" {
			t.Fatalf("operator-allowed 203.0.113.10:80 from the running container: %+v %v %s", res, err, pr)
		}
		// --replace makes a new container of that name, from its profiles only.
		if r, err := sp.Run(ctx, "run", "-d", "--replace", "--shield=reuse", "--name", name, sp.H.ImageRef, "/bin/sleeper"); err != nil || r.Exit != 0 {
			t.Fatalf("run --replace: %v %s", err, r)
		}
		res, pr, err = sp.ProbeIn(ctx, name, "tcp", "203.0.113.10:80")
		if err != nil || res.Result == "ok" {
			t.Fatalf("203.0.113.10:80 from the replacement container: %+v %v %s; want refused (the old allow must not carry over)", res, err, pr)
		}
		// Positive control: the profile's name still resolves and is reachable.
		res, pr, err = sp.ProbeIn(ctx, name, "dns", "allowed.test")
		if err != nil || res.Rcode != "NOERROR" {
			t.Fatalf("allowed.test from the replacement container: %+v %v %s", res, err, pr)
		}
		res, pr, err = sp.ProbeIn(ctx, name, "tcp", testnet.BenchV4+":80")
		if err != nil || res.Result != "ok" {
			t.Fatalf("allowed.test (%s:80) from the replacement container: %+v %v %s", testnet.BenchV4, res, err, pr)
		}
	})
}

// TestShieldedNameOfUnshieldedContainer: a shielded run with the name of an existing
// unshielded container (no bundle: the shim asks podman nothing) is refused by podman, leaves
// that container alone, and the name works for a shielded container once it is free.
func TestShieldedNameOfUnshieldedContainer(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("reuse", "allowed.test"); err != nil {
			t.Fatal(err)
		}
		if err := sp.EnsureImage(ctx); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("plain")
		if r, err := sp.Real.Run(ctx, "run", "-d", "--name", name, sp.H.ImageRef, "/bin/sleeper"); err != nil || r.Exit != 0 {
			t.Fatalf("unshielded run: %v %s", err, r)
		}
		r, err := sp.Run(ctx, "run", "--rm", "--shield=reuse", "--name", name, sp.H.ImageRef, "/bin/probe", "caps")
		if err != nil {
			t.Fatal(err)
		}
		if r.Exit != 125 || !strings.Contains(r.Stderr, "already in use") {
			t.Fatalf("shielded run with the name of an unshielded container: %s; want podman's refusal", r)
		}
		if r, err := sp.Real.Run(ctx, "inspect", "--format", "{{.State.Running}}", name); err != nil || strings.TrimSpace(r.Stdout) != "true" {
			t.Fatalf("the unshielded container after the refused run: %v %s", err, r)
		}
		if r, err := sp.Real.Run(ctx, "rm", "-f", "-t", "0", name); err != nil || r.Exit != 0 {
			t.Fatalf("rm: %v %s", err, r)
		}
		if err := sp.StartShielded(ctx, name, "reuse"); err != nil {
			t.Fatalf("shielded run once the name is free: %v", err)
		}
		res, pr, err := sp.ProbeIn(ctx, name, "dns", "allowed.test")
		if err != nil || res.Rcode != "NOERROR" {
			t.Fatalf("allowed.test from the shielded container: %+v %v %s", res, err, pr)
		}
	})
}
