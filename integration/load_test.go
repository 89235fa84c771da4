// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

// TestLoadParallelContainers starts 20 shielded containers in parallel per mode, applies 1,000
// live allow/deny operations across them from several workers, and then checks every
// container's live table against what was asked: each allowed address is in allow_v4, each
// denied one in deny_v4 and not in allow_v4, the state is up and the table verifies.
func TestLoadParallelContainers(t *testing.T) {
	const containers, ops, workers = 20, 1000, 4
	forModes(t, 6*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		if err := sp.WriteProfile("load", "allowed.test"); err != nil {
			t.Fatal(err)
		}
		if err := sp.EnsureImage(ctx); err != nil {
			t.Fatal(err)
		}
		names := make([]string, containers)
		for i := range names {
			names[i] = sp.Name(fmt.Sprintf("load%02d", i))
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, containers)
		for i, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = sp.StartShielded(ctx, name, "load")
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("start %s: %v", names[i], err)
			}
		}
		t.Logf("%d shielded containers started in parallel in %s", containers, time.Since(start).Round(time.Millisecond))

		// Operation k goes to container k%20: allow 203.0.113.(k/20) for even k, deny
		// 198.51.100.(k/20) for odd k (so even containers get allows, odd ones denies).
		type op struct {
			container, verb, addr string
		}
		jobs := make(chan op)
		var mu sync.Mutex
		var failures []string
		start = time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := range jobs {
					r, err := sp.Run(ctx, "shield", o.verb, o.container, o.addr)
					if err != nil || r.Exit != 0 {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s %s %s: %v %s", o.verb, o.container, o.addr, err, r))
						mu.Unlock()
					}
				}
			}()
		}
		want := map[string]map[string][]string{} // container → set → elements
		for k := range ops {
			c := names[k%containers]
			if want[c] == nil {
				want[c] = map[string][]string{}
			}
			o := op{container: c, verb: "allow", addr: fmt.Sprintf("203.0.113.%d", k/containers)}
			set := "allow_v4"
			if k%2 == 1 {
				o.verb, o.addr, set = "deny", fmt.Sprintf("198.51.100.%d", k/containers), "deny_v4"
			}
			want[c][set] = append(want[c][set], o.addr)
			jobs <- o
		}
		close(jobs)
		wg.Wait()
		t.Logf("%d allow/deny operations with %d workers in %s", ops, workers, time.Since(start).Round(time.Millisecond))
		if len(failures) > 0 {
			t.Fatalf("%d of %d operations failed, first: %s", len(failures), ops, failures[0])
		}

		for _, c := range names {
			r, err := sp.Run(ctx, "shield", "rules", "--output", "json", c)
			if err != nil || r.Exit != 0 {
				t.Errorf("shield rules %s: %v %s", c, err, r)
				continue
			}
			var st struct {
				State string `json:"state"`
				Sets  []struct {
					Name     string   `json:"name"`
					Elements []string `json:"elements"`
				} `json:"sets"`
			}
			if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
				t.Errorf("shield rules %s: %v\n%s", c, err, r.Stdout)
				continue
			}
			if st.State != "up" {
				t.Errorf("%s: state %q after the load, want up (a table that does not verify reads error)", c, st.State)
			}
			// Adjacent single addresses are merged into prefixes (allow_net_v4), so check
			// containment in the sets of a kind.
			live := map[string][]netip.Prefix{}
			for _, set := range st.Sets {
				kind := strings.TrimSuffix(strings.Replace(set.Name, "_net", "", 1), "_v4")
				for _, e := range set.Elements {
					p, err := netip.ParsePrefix(e)
					if err != nil {
						a, aerr := netip.ParseAddr(e)
						if aerr != nil {
							t.Fatalf("%s: set %s element %q: %v", c, set.Name, e, err)
						}
						p = netip.PrefixFrom(a, a.BitLen())
					}
					live[kind] = append(live[kind], p)
				}
			}
			covered := func(kind, addr string) bool {
				a := netip.MustParseAddr(addr)
				return slices.ContainsFunc(live[kind], func(p netip.Prefix) bool { return p.Contains(a) })
			}
			for set, addrs := range want[c] {
				kind := strings.TrimSuffix(set, "_v4")
				for _, a := range addrs {
					if !covered(kind, a) {
						t.Errorf("%s: %s not in the %s sets (live %v)", c, a, kind, live[kind])
					}
				}
			}
			for _, a := range want[c]["deny_v4"] {
				if covered("allow", a) {
					t.Errorf("%s: denied %s is in an allow set", c, a)
				}
			}
		}
	})
}
