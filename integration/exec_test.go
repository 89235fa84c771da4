// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// TestShieldedExecPrivileged: `podman exec --privileged` into a shielded container is refused
// by the shim (the exec'd process would get NET_ADMIN and NET_RAW in the container's
// namespaces); a plain exec works, and --privileged into an unshielded container is podman's
// business.
func TestShieldedExecPrivileged(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("execp", "allowed.test"); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("execp")
		if err := sp.StartShielded(ctx, name, "execp"); err != nil {
			t.Fatal(err)
		}
		r, err := sp.Run(ctx, "exec", "--privileged", name, "/bin/probe", "caps")
		if err != nil {
			t.Fatal(err)
		}
		if r.Exit != 125 || !strings.Contains(r.Stderr, "cannot exec --privileged into shielded container") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("exec --privileged into a shielded container: %s; want exit 125 with one line", r)
		}
		// Positive control: a plain exec runs, without the network capabilities.
		res, pr, err := sp.ProbeIn(ctx, name, "caps")
		if err != nil || res.Caps == nil {
			t.Fatalf("plain exec: %+v %v %s", res, err, pr)
		}
		for _, c := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"} {
			for _, have := range res.Caps.EffNames {
				if have == c {
					t.Errorf("plain exec into the shielded container holds %s", c)
				}
			}
		}
		// Unshielded: podman decides (here: allowed).
		plain := sp.Name("plain")
		if r, err := sp.Run(ctx, "run", "-d", "--name", plain, sp.H.ImageRef, "/bin/sleeper"); err != nil || r.Exit != 0 {
			t.Fatalf("unshielded run: %v %s", err, r)
		}
		if r, err := sp.Run(ctx, "exec", "--privileged", plain, "/bin/probe", "caps"); err != nil || r.Exit != 0 {
			t.Errorf("exec --privileged into an unshielded container: %v %s; want it passed to podman", err, r)
		}
	})
}
