// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// harness is shared by every test of this binary (probe built and images imported once).
var harness = NewHarness()

func TestMain(m *testing.M) {
	code := m.Run()
	if err := harness.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "harness close:", err)
	}
	os.Exit(code)
}

// setup requires the prerequisites, builds the harness and starts a topology.
func setup(t *testing.T) *testnet.Net {
	t.Helper()
	Require(t)
	if testing.Short() {
		t.Skip("e2e tests skipped in -short mode")
	}
	start := time.Now()
	if err := harness.Init(); err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Logf("harness ready in %s (image %s)", time.Since(start).Round(time.Millisecond), harness.ImageRef)
	return testnet.Start(t)
}

// TestSmokeUnshielded checks the test ground itself, before any shield: in both modes an
// unshielded container reaches wan echo servers, resolves through the test DNS and hits a
// canary only when asked to.
func TestSmokeUnshielded(t *testing.T) {
	n := setup(t)
	// wan rejects port 9999 of web4 with ICMP admin-prohibited: probes must see type 3 code 13.
	rules := "table inet smoke {\n chain input {\n  type filter hook input priority 0;\n" +
		"  ip daddr " + testnet.EchoV4 + " meta l4proto { tcp, udp } th dport 9999 reject with icmp type admin-prohibited\n }\n}\n"
	nft := n.WanCommand(context.Background(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("wan nft: %v: %s", err, out)
	}
	for _, mode := range []Mode{Rootful, Rootless} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			p := &Podman{Mode: mode, Net: n, H: harness}
			start := time.Now()
			if err := p.EnsureImage(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("image ready in %s", time.Since(start).Round(time.Millisecond))
			n.ResetHits()

			type want struct {
				result, server string
				answers        []string
				icmp           *probe.ICMP
			}
			prohibited := &probe.ICMP{Type: 3, Code: 13, From: testnet.EchoV4}
			cases := []struct {
				name string
				args []string
				want want
			}{
				{"tcp4", []string{"tcp", testnet.EchoV4 + ":80"}, want{probe.OK, "web4", nil, nil}},
				// Rootless: slirp4netns's own connect() gets the ICMP error in the host netns
				// but does not relay it for TCP (the SYN just goes unanswered) ...
				{"tcp4-prohibited", []string{"tcp", testnet.EchoV4 + ":9999"}, want{probe.ICMPErr, "", nil, prohibited}},
				// ... while for UDP it relays the ICMP error with its original type and code.
				{"udp4-prohibited", []string{"udp", testnet.EchoV4 + ":9999"}, want{probe.ICMPErr, "", nil, prohibited}},
				{"udp4", []string{"udp", testnet.EchoV4b + ":80"}, want{probe.OK, "web4b", nil, nil}},
				{"dns", []string{"dns", "www.test"}, want{probe.OK, "", []string{"A " + testnet.EchoV4}, nil}},
				{"dns-tcp-cname", []string{"dns", "alias.test", "--tcp", "--type", "A"},
					want{probe.OK, "", []string{"A " + testnet.EchoV4, "CNAME alias2.test.", "CNAME alias3.test.", "CNAME www.test."}, nil}},
				{"dot", []string{"dot", "www.test", "--server", testnet.DNSV4}, want{probe.OK, "", []string{"A " + testnet.EchoV4}, nil}},
				{"doh", []string{"doh", "www.test", "--url", "https://" + testnet.DNSV4 + "/dns-query"}, want{probe.OK, "", []string{"A " + testnet.EchoV4}, nil}},
				{"tls-sni", []string{"tls", testnet.TLSV4 + ":443", "--sni", "sni.tls.test"}, want{probe.OK, "tls4", nil, nil}},
				// Unshielded containers already lack CAP_NET_ADMIN.
				{"nft", []string{"nft"}, want{probe.Refused, "", nil, nil}},
			}
			for _, c := range cases {
				if c.name == "tcp4-prohibited" && mode == Rootless {
					c.want = want{result: probe.Timeout}
				}
				res, run, err := p.Probe(ctx, DefaultRunArgs(), c.args...)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				t.Logf("%s: %s in %s", c.name, res.Result, run.Elapsed.Round(time.Millisecond))
				got := want{result: res.Result, answers: res.Answers, icmp: res.ICMP}
				if res.Reply != "" {
					echo, err := testnet.ParseEcho(res.Reply)
					if err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
					got.server = echo.Server
				}
				if d := cmp.Diff(c.want, got, cmp.AllowUnexported(want{})); d != "" {
					t.Errorf("%s: (-want +got):\n%s\n%+v", c.name, d, res)
				}
			}
			if q := n.DNS.QueriesFor("www.test"); len(q) == 0 {
				t.Errorf("test DNS saw no query for www.test")
			}
			if h := n.CanaryHits(); len(h) != 0 {
				t.Fatalf("canary hit without being asked: %+v", h)
			}

			// The canary is hit when (and only when) the test wants it.
			res, _, err := p.Probe(ctx, DefaultRunArgs(), "tcp", testnet.CanaryV4+":80")
			if err != nil {
				t.Fatal(err)
			}
			if res.Result != probe.OK {
				t.Errorf("canary probe: %+v", res)
			}
			hits := n.CanaryHits()
			if len(hits) != 1 || hits[0].Server != "canary-public4" {
				t.Errorf("canary hits = %+v, want one on canary-public4", hits)
			}
			if len(hits) == 1 {
				// Rootful traffic is masqueraded, rootless leaves through slirp4netns: either way
				// it reaches wan from the host namespace's link address.
				host, _, _ := net.SplitHostPort(hits[0].Client)
				if host != testnet.HostLinkV4 {
					t.Errorf("canary hit from %s, want %s", host, testnet.HostLinkV4)
				}
			}

			// IPv6 through each backend's default network (podman 4.3): the rootful default
			// bridge has no IPv6 at all; rootless slirp4netns has it (enable_ipv6 default).
			res, _, err = p.Probe(ctx, DefaultRunArgs(), "tcp", "["+testnet.EchoV6+"]:80")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("IPv6 on the default %s network: %s %s %s", mode, res.Result, res.Errno, res.Error)
			wantV6 := []string{probe.OK, ""}
			if mode == Rootful {
				wantV6 = []string{probe.Error, "ENETUNREACH"}
			}
			if d := cmp.Diff(wantV6, []string{res.Result, res.Errno}); d != "" {
				t.Errorf("IPv6 tcp on default network (-want +got):\n%s", d)
			}
		})
	}
}
