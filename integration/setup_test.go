// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// TestSetupPlainStart: after `terok-shield setup` (against a private CONTAINERS_CONF) a
// shielded container created through the shim and started by the real podman — as systemd,
// quadlet or the API service would — gets its hook: the gate lets the workload run and the
// firewall holds (allowed reachable, unlisted refused). After `setup --uninstall` the file is
// back byte for byte and the same plain start is refused by the gate again.
func TestSetupPlainStart(t *testing.T) {
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		conf, hooksDir, err := sp.PrivateConf()
		if err != nil {
			t.Fatal(err)
		}
		orig, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		r, err := sp.Run(ctx, "shield", "setup", "--hooks-dir", hooksDir)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		t.Logf("setup: %s", r.Stdout)
		installed, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(installed, []byte(`hooks_dir = ["`+hooksDir+`", "/usr/share/containers/oci/hooks.d"]`)) {
			t.Fatalf("containers.conf after setup lacks our hooks_dir:\n%s", installed)
		}
		r, err = sp.Run(ctx, "shield", "setup", "--hooks-dir", hooksDir)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if again, _ := os.ReadFile(conf); !bytes.Equal(again, installed) || !strings.Contains(r.Stdout, "nothing to change") {
			t.Errorf("second setup changed something:\n%s\n%s", cmp.Diff(string(installed), string(again)), r.Stdout)
		}

		if err := sp.WriteProfile("e2e", e2eProfile...); err != nil {
			t.Fatal(err)
		}
		name := sp.Name("setup")
		r, err = sp.Run(ctx, "create", "--shield=e2e", "--name", name, sp.H.ImageRef, "/bin/sleeper")
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		// After setup the shim relies on containers.conf: no descriptors in the state root.
		if _, err := os.Stat(sp.HooksDir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the shim wrote %s although setup is in effect: %v", sp.HooksDir(), err)
		}
		n.ResetHits()
		r, err = sp.Real.Run(ctx, "start", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatalf("plain podman start after setup: %v", err)
		}
		cases := []netCase{
			{name: "tcp raw address from profile", args: []string{"tcp", testnet.EchoV4 + ":80"}, want: echoed("web4")},
			{name: "dns allowed A", args: []string{"dns", "allowed.test"},
				want: outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{"A " + testnet.BenchV4}}},
			{name: "tcp learned v4", args: []string{"tcp", testnet.BenchV4 + ":80"}, want: echoed("bench4")},
			{name: "dns unlisted", args: []string{"dns", "unlisted.test"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}},
			{name: "tcp unlisted learnable range", args: []string{"tcp", testnet.BenchUnlistedV4 + ":80"}, want: prohibited4},
			{name: "tcp canary", args: []string{"tcp", testnet.CanaryV4 + ":80"}, want: prohibited4},
		}
		runCases(t, ctx, sp, name, cases)
		if len(n.Hits("web4")) == 0 || len(n.Hits("bench4")) == 0 {
			t.Errorf("allowed servers saw no traffic (positive control): web4 %d, bench4 %d", len(n.Hits("web4")), len(n.Hits("bench4")))
		}
		if h := n.Hits("bench4-unlisted"); len(h) != 0 || len(n.CanaryHits()) != 0 {
			t.Errorf("unlisted destinations reached: bench4-unlisted %+v, canary %+v", h, n.CanaryHits())
		}
		if q := n.DNS.QueriesFor("unlisted.test"); len(q) != 0 {
			t.Errorf("test DNS saw queries for unlisted.test: %+v", q)
		}
		r, err = sp.Real.Run(ctx, "stop", "--time", "2", name)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}

		r, err = sp.Run(ctx, "shield", "setup", "--uninstall", "--hooks-dir", hooksDir)
		if err := mustExit(r, err, 0); err != nil {
			t.Fatal(err)
		}
		if back, _ := os.ReadFile(conf); !bytes.Equal(back, orig) {
			t.Errorf("uninstall did not restore containers.conf (-orig +now):\n%s", cmp.Diff(string(orig), string(back)))
		}
		if _, err := os.Stat(hooksDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("hooks dir left after uninstall: %v", err)
		}
		// The same plain start now runs no hook; the gate refuses (a hang here would mean the
		// workload, which never exits, was started).
		gctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		got, r := attachStart(t, gctx, sp.Real, sp, n, name)
		if d := cmp.Diff(startResult{Exit: 126, GateRefused: true}, got); d != "" {
			t.Errorf("plain start after uninstall (-want +got):\n%s\n%s", d, r)
		}
	})
}
