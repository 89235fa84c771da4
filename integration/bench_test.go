// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// BenchmarkPodmanRun measures `podman run --rm IMAGE /bin/probe caps` (a workload that exits at
// once without network) through the shim, unshielded (handed to podman with execve) and
// shielded with the default profile (state bundle, hooks, ruleset, resolver start, gate, and
// the poststop teardown of `--rm`), rootful and rootless, alternating one of each per
// iteration. It reports both medians and the difference in percent: what a shield adds to a
// container's start and removal.
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
			unshielded := append([]string{"run", "--rm", harness.ImageRef}, "/bin/probe", "caps")
			shielded := append([]string{"run", "--rm", "--shield", harness.ImageRef}, "/bin/probe", "caps")
			run := func(args []string) time.Duration {
				start := time.Now()
				if r, err := sp.Run(ctx, args...); mustExit(r, err, 0) != nil {
					b.Fatalf("%v: %v", args, mustExit(r, err, 0))
				}
				return time.Since(start)
			}
			// One untimed run of each first: image layers, hooks dir and caches are warm for both.
			run(unshielded)
			run(shielded)
			// The two variants alternate, so drift in the machine's load hits both alike; the
			// medians are reported (a noisy machine's outliers would dominate the means).
			var plain, shield []time.Duration
			for b.Loop() {
				plain = append(plain, run(unshielded))
				shield = append(shield, run(shielded))
			}
			mp, ms := median(plain), median(shield)
			b.ReportMetric(float64(mp.Microseconds())/1000, "unshielded-ms")
			b.ReportMetric(float64(ms.Microseconds())/1000, "shielded-ms")
			b.ReportMetric(100*(float64(ms)/float64(mp)-1), "added-%")
		})
	}
}

// median returns the median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}
