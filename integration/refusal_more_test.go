// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// TestShieldedRefusalsMore: the refusals TestShieldedRefusals does not cover — remote mode
// (flag and CONTAINER_HOST), pods, other runtimes, disabled seccomp, --userns host,
// --init-path, an unknown flag, container:/ns: networks, a second /etc/resolv.conf mount and
// mounts of podman's socket dir or the shield's config — exit 125 with one line before podman
// runs: no container, no state bundle, nothing sent. The control is the same command line
// without the flag.
func TestShieldedRefusalsMore(t *testing.T) {
	forModes(t, 2*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("gate", gateProfile...); err != nil {
			t.Fatal(err)
		}
		// A local socket that does not exist: remote mode must never get as far as dialling.
		const remoteSock = "unix:///run/terok-e2e-no-such-podman.sock"
		cases := []refusalCase{
			{name: "none"},
			{name: "remote flag", reason: "remote mode", global: []string{"--remote", "--url", remoteSock}},
			{name: "CONTAINER_HOST", reason: "remote mode", env: []string{"CONTAINER_HOST=" + remoteSock}},
			{name: "pod", reason: "--pod", flags: []string{"--pod", "somepod"}},
			{name: "runtime runsc", reason: "--runtime /usr/bin/runsc", flags: []string{"--runtime", "/usr/bin/runsc"}},
			{name: "seccomp unconfined", reason: "--security-opt seccomp=unconfined", flags: []string{"--security-opt", "seccomp=unconfined"}},
			{name: "userns host", reason: "--userns host", flags: []string{"--userns", "host"}},
			{name: "init-path", reason: "--init-path", flags: []string{"--init-path", "/bin/true"}},
			{name: "unknown flag", reason: "unknown flag: --no-such-flag", flags: []string{"--no-such-flag"}},
			{name: "network container", reason: "--network container:other", flags: []string{"--network", "container:other"}},
			{name: "network ns", reason: "--network ns:/run/netns/x", flags: []string{"--network", "ns:/run/netns/x"}},
			{name: "second resolv.conf", reason: "/etc/resolv.conf", flags: []string{"-v", "/etc/hosts:/etc/resolv.conf:ro"}},
			{name: "podman socket dir", reason: "exposes /run/podman", flags: []string{"-v", "/run/podman:/var/run/podman"}},
			{name: "config dir", reason: "exposes " + sp.ConfigDir, flags: []string{"-v", sp.ConfigDir + ":/cfg"}},
		}
		checkRefusals(t, ctx, n, sp, cases)
	})
}

// refusalCase is one shielded run through the shim: flags (and root flags, environment) that
// must be refused with reason, or, for the case named "none", the control that runs.
type refusalCase struct {
	name, reason  string
	global, flags []string
	env           []string
}

// checkRefusals runs each case as `run --rm --shield=gate --name N FLAGS IMAGE probe tcp canary`
// and checks the outcome: a refusal exits 125 with one line naming the reason, leaves no
// container and no state bundle, and sends nothing; the control ("none") runs its workload, and
// --rm leaves no bundle (archived and removed on exit).
func checkRefusals(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman, cases []refusalCase) {
	t.Helper()
	for _, c := range cases {
		n.ResetHits()
		name := sp.Name("refuse")
		args := append(slices.Clone(c.global), "run", "--rm", "--shield=gate", "--name", name)
		args = append(append(args, c.flags...), sp.H.ImageRef, "/bin/probe", "tcp", testnet.CanaryV4+":80")
		p := sp.Podman
		p.Env = append(slices.Clone(sp.Env), c.env...)
		r, err := p.Run(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		exists, err := sp.Exists(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		_, statErr := os.Stat(sp.Bundle(name))
		type outcome struct {
			Exit          int
			OneLineReason bool
			Exists, State bool
			CanaryHits    int
		}
		got := outcome{
			Exit:          r.Exit,
			OneLineReason: c.reason != "" && strings.Count(strings.TrimSpace(r.Stderr), "\n") == 0 && strings.Contains(r.Stderr, "cannot shield this container") && strings.Contains(r.Stderr, c.reason),
			Exists:        exists,
			State:         !errors.Is(statErr, os.ErrNotExist),
			CanaryHits:    len(n.CanaryHits()),
		}
		want := outcome{Exit: 125, OneLineReason: true}
		if c.name == "none" {
			want = outcome{Exit: 0, CanaryHits: 1}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s\n%s", c.name, d, r)
		}
	}
}
