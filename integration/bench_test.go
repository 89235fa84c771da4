// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// BenchmarkPodmanRun measures `podman run --rm IMAGE /bin/probe caps` (a workload that exits at
// once without network) through the shim, unshielded (handed to podman with execve) and
// shielded with the default profile (state bundle, hooks, ruleset, resolver start, gate, and
// the poststop teardown of `--rm`), rootful and rootless. The difference is what a shield adds
// to a container's start and removal.
//
//	go test -run '^$' -bench BenchmarkPodmanRun -benchtime 10x ./integration
func BenchmarkPodmanRun(b *testing.B) {
	Require(b)
	if err := harness.Init(); err != nil {
		b.Fatalf("harness: %v", err)
	}
	for _, mode := range []Mode{Rootful, Rootless} {
		b.Run(mode.String(), func(b *testing.B) {
			n := testnet.Start(b)
			sp, err := NewShieldedPodman(harness, n, mode)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				if err := sp.Close(); err != nil {
					b.Errorf("cleanup: %v", err)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := sp.EnsureImage(ctx); err != nil {
				b.Fatal(err)
			}
			for _, c := range []struct {
				name string
				args []string
			}{
				{"unshielded", []string{"run", "--rm"}},
				{"shielded", []string{"run", "--rm", "--shield"}},
			} {
				args := append(c.args, harness.ImageRef, "/bin/probe", "caps")
				// One untimed run first: image layers, hooks dir and caches are warm for both.
				if r, err := sp.Run(ctx, args...); mustExit(r, err, 0) != nil {
					b.Fatalf("%s: %v", c.name, mustExit(r, err, 0))
				}
				b.Run(c.name, func(b *testing.B) {
					for b.Loop() {
						if r, err := sp.Run(ctx, args...); mustExit(r, err, 0) != nil {
							b.Fatal(mustExit(r, err, 0))
						}
					}
				})
			}
		})
	}
}
