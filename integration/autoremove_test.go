// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// TestShieldedAutoRemove: `run --rm --shield` leaves no state bundle behind (its audit log moves
// to the state root's archive, where `podman shield logs` still finds it), while a container
// without --rm keeps its bundle after it stops.
func TestShieldedAutoRemove(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("autorm", "allowed.test"); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("autorm")
		r, err := sp.Run(ctx, "run", "--rm", "--shield=autorm", "--name", name, sp.H.ImageRef, "/bin/probe", "dns", "allowed.test")
		if err != nil || r.Exit != 0 {
			t.Fatalf("shielded run --rm: %v %s", err, r)
		}
		if _, err := os.Stat(sp.Bundle(name)); !os.IsNotExist(err) {
			t.Errorf("bundle of the removed container still exists (stat: %v)", err)
		}
		archived, _ := filepath.Glob(filepath.Join(sp.StateDir, "removed", name+".*.audit.jsonl"))
		if len(archived) != 1 {
			t.Fatalf("archived audit logs of %s: %q, want one", name, archived)
		}
		r, err = sp.Run(ctx, "shield", "logs", "--container", name)
		if err != nil || r.Exit != 0 || !strings.Contains(r.Stdout, "setup") || !strings.Contains(r.Stdout, "teardown") {
			t.Errorf("shield logs --container %s after removal: %v %s; want its setup and teardown", name, err, r)
		}

		// Positive control: without --rm the bundle stays for the next start.
		kept := sp.Name("kept")
		r, err = sp.Run(ctx, "run", "--shield=autorm", "--name", kept, sp.H.ImageRef, "/bin/probe", "dns", "allowed.test")
		if err != nil || r.Exit != 0 {
			t.Fatalf("shielded run: %v %s", err, r)
		}
		if _, err := os.Stat(sp.Bundle(kept)); err != nil {
			t.Errorf("bundle of a stopped (not removed) container: %v", err)
		}
	})
}
