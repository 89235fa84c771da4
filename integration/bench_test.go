// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// BenchmarkPodmanRun measures `podman run --rm IMAGE /bin/probe caps` (a workload that exits at
// once without network) through the shim, unshielded (handed to podman with execve) and
// shielded with the default profile (state bundle, hooks, ruleset, resolver start, gate, and
// the poststop teardown of `--rm`), rootful and rootless, alternating one of each per
// iteration. It reports both medians and the median difference within a pair, in ms and in
// percent of the unshielded median: what a shield adds to a container's start and removal.
//
//	go test -run '^$' -bench BenchmarkPodmanRun -benchtime 10x ./integration
func BenchmarkPodmanRun(b *testing.B) {
	for _, mode := range []Mode{Rootful, Rootless} {
		b.Run(mode.String(), func(b *testing.B) {
			ctx, sp := benchPodman(b, mode)
			unshielded := append([]string{"run", "--rm", harness.ImageRef}, "/bin/probe", "caps")
			shielded := append([]string{"run", "--rm", "--shield", harness.ImageRef}, "/bin/probe", "caps")
			run := func(args []string) time.Duration {
				d, _ := timedRun(b, ctx, &sp.Podman, args...)
				return d
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
			// The added time is the median of the differences within each pair: the two runs of
			// a pair share the machine's state, which the medians of each side do not.
			diffs := make([]time.Duration, len(plain))
			for i := range plain {
				diffs[i] = shield[i] - plain[i]
			}
			mp, ms, md := median(plain), median(shield), median(diffs)
			b.ReportMetric(float64(mp.Microseconds())/1000, "unshielded-ms")
			b.ReportMetric(float64(ms.Microseconds())/1000, "shielded-ms")
			b.ReportMetric(float64(md.Microseconds())/1000, "added-ms")
			b.ReportMetric(100*float64(md)/float64(mp), "added-%")
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

// BenchmarkLiveAllow adds one address to a running rootless shielded container, as its
// owner, process start to exit, alternating the two mechanisms per iteration: "ours" is
// `podman shield allow NAME IP` through the shim; "original" is the original tool's mechanism
// (original-tool.md §3.5: `podman inspect --format {{.State.Pid}} NAME`, then `podman unshare
// nsenter -t PID -n nft add element …` into a table of its own), without its Python CLI's own
// start. Both medians and their ratio are reported, and the ratio without the harness's
// per-command wrapper (wrapper-ms, measured alongside with /bin/true).
//
//	go test -run '^$' -bench BenchmarkLiveAllow -benchtime 50x ./integration
func BenchmarkLiveAllow(b *testing.B) {
	ctx, sp := benchPodman(b, Rootless)
	if err := sp.WriteProfile("bench", testnet.BenchV4); err != nil {
		b.Fatal(err)
	}
	name := sp.Name("bench-allow")
	if err := sp.StartShielded(ctx, name, "bench"); err != nil {
		b.Fatal(err)
	}
	timed := func(p *Podman, args ...string) (time.Duration, RunResult) { return timedRun(b, ctx, p, args...) }
	addr := func(i, half int) string { return fmt.Sprintf("198.18.%d.%d", i/250, 2*(i%250)+half) }
	// The original's additions go to a table of its own, with the interval set it used: in
	// ours they would be drift, which our next allow removes (and a delete makes closing the
	// netlink socket wait for an RCU grace period, ~10 ms, charged to ours).
	_, r := timed(sp.Real, "inspect", "--format", "{{.State.Pid}}", name)
	timed(sp.Real, "unshare", "nsenter", "-t", strings.TrimSpace(r.Stdout), "-n", "/usr/sbin/nft",
		"add table inet terok_original; add set inet terok_original allow_v4 { type ipv4_addr; flags interval; }")
	// The harness runs every command through the same wrapper (into the test network, as the
	// user); /bin/true through it measures that share, which ours pays once and the original
	// twice.
	wrapper := *sp.Real
	wrapper.Bin = "/bin/true"
	var ours, orig, wrap []time.Duration
	i := 0
	for b.Loop() {
		d0, _ := timed(&wrapper)
		wrap = append(wrap, d0)
		d, _ := timed(&sp.Podman, "shield", "allow", name, addr(i, 0))
		ours = append(ours, d)
		start := time.Now()
		_, r := timed(sp.Real, "inspect", "--format", "{{.State.Pid}}", name)
		pid := strings.TrimSpace(r.Stdout)
		timed(sp.Real, "unshare", "nsenter", "-t", pid, "-n", "/usr/sbin/nft", "add", "element", "inet", "terok_original", "allow_v4", "{ "+addr(i, 1)+" }")
		orig = append(orig, time.Since(start))
		i++
	}
	b.StopTimer()
	mo, mr, mw := median(ours), median(orig), median(wrap)
	b.ReportMetric(float64(mo.Microseconds())/1000, "ours-ms")
	b.ReportMetric(float64(mr.Microseconds())/1000, "original-ms")
	b.ReportMetric(float64(mw.Microseconds())/1000, "wrapper-ms")
	b.ReportMetric(float64(mr)/float64(mo), "original/ours")
	b.ReportMetric(float64(mr-2*mw)/float64(mo-mw), "net-original/ours")
	_, r = timed(&sp.Podman, "shield", "rules", name, "--output", "json")
	var st struct {
		Sets []struct {
			Name     string
			Elements []string
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		b.Fatalf("rules --output json: %v\n%s", err, r.Stdout)
	}
	// Every address ours allowed must be in the live set.
	for _, s := range st.Sets {
		if s.Name != "allow_v4" {
			continue
		}
		for k := range i {
			if !slices.Contains(s.Elements, addr(k, 0)) {
				b.Fatalf("allow_v4 lacks %s after %d allows: %v", addr(k, 0), i, s.Elements)
			}
		}
	}
}

// benchPodman starts a test network and a shielded podman of mode with its image, for a
// benchmark, and a context for its runs.
func benchPodman(b *testing.B, mode Mode) (context.Context, *ShieldedPodman) {
	b.Helper()
	Require(b)
	if err := harness.Init(); err != nil {
		b.Fatalf("harness: %v", err)
	}
	sp := NewShielded(b, harness, testnet.Start(b), mode)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	if err := sp.EnsureImage(ctx); err != nil {
		b.Fatal(err)
	}
	return ctx, sp
}

// timedRun runs podman args, fails the benchmark unless it exits 0, and returns how long it
// took.
func timedRun(b *testing.B, ctx context.Context, p *Podman, args ...string) (time.Duration, RunResult) {
	b.Helper()
	start := time.Now()
	r, err := p.Run(ctx, args...)
	if err := mustExit(r, err, 0); err != nil {
		b.Fatal(err)
	}
	return time.Since(start), r
}
