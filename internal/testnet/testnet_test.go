// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("testnet tests need root (CI or TEROK_SHIELD_REQUIRE_PRIVILEGED=1 set)")
	}
	t.Skip("testnet tests need root")
}

func TestTopology(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("short")
	}
	n := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("echo", func(t *testing.T) {
		cases := []struct {
			proto, addr, server, client string
		}{
			{"tcp", EchoV4 + ":80", "web4", HostLinkV4},
			{"udp", EchoV4 + ":8080", "web4", HostLinkV4},
			{"tcp", EchoV4b + ":80", "web4b", HostLinkV4},
			{"udp", EchoV4c + ":80", "web4c", HostLinkV4},
			{"tcp", "[" + EchoV6 + "]:9999", "web6", HostLinkV6},
			{"udp", "[" + EchoV6 + "]:80", "web6", HostLinkV6},
			{"tcp", BenchV4 + ":80", "bench4", HostLinkV4},
			{"udp", BenchUnlistedV4 + ":80", "bench4-unlisted", HostLinkV4},
			{"tcp", "[" + BenchV6 + "]:9999", "bench6", HostLinkV6},
			{"tcp", "[" + BenchUnlistedV6 + "]:80", "bench6-unlisted", HostLinkV6},
		}
		for _, c := range cases {
			var line string
			err := n.HostDo(func() error {
				conn, err := net.DialTimeout(c.proto, c.addr, 2*time.Second)
				if err != nil {
					return err
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := conn.Write([]byte("hello\n")); err != nil {
					return err
				}
				line, err = bufio.NewReader(conn).ReadString('\n')
				return err
			})
			if err != nil {
				t.Fatalf("%s %s: %v", c.proto, c.addr, err)
			}
			rep, err := ParseEcho(strings.TrimSpace(line))
			if err != nil {
				t.Fatal(err)
			}
			host, _, _ := net.SplitHostPort(rep.Client)
			got := []string{rep.Server, rep.Proto, host, rep.Data}
			if d := cmp.Diff([]string{c.server, c.proto, c.client, "hello"}, got); d != "" {
				t.Errorf("%s %s: reply (-want +got):\n%s", c.proto, c.addr, d)
			}
		}
		if got := len(n.Hits("web6")); got != 2 {
			t.Errorf("web6 hits = %d, want 2", got)
		}
	})

	t.Run("dns", func(t *testing.T) {
		cases := []struct {
			name  string
			qtype uint16
			net   string
			rcode int
			want  []string // answer data, sorted
			tc    bool
		}{
			{"www.test.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"A " + EchoV4}, false},
			{"WWW.Test.", dns.TypeAAAA, "tcp", dns.RcodeSuccess, []string{"AAAA " + EchoV6}, false},
			{"alias.test.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"A " + EchoV4, "CNAME alias2.test.", "CNAME alias3.test.", "CNAME www.test."}, false},
			{"v6only.test.", dns.TypeA, "udp", dns.RcodeSuccess, nil, false},
			{"nope.test.", dns.TypeA, "udp", dns.RcodeNameError, nil, false},
			{"www.example.com.", dns.TypeA, "udp", dns.RcodeRefused, nil, false},
			{"mapped.test.", dns.TypeAAAA, "udp", dns.RcodeSuccess, []string{"AAAA 10.99.0.1"}, false},
			{"big.test.", dns.TypeA, "udp", dns.RcodeSuccess, nil, true},
		}
		for _, c := range cases {
			var r *dns.Msg
			err := n.HostDo(func() error {
				m := new(dns.Msg)
				m.SetQuestion(c.name, c.qtype)
				var err error
				r, _, err = (&dns.Client{Net: c.net, Timeout: 2 * time.Second}).Exchange(m, DNSV4+":53")
				return err
			})
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if r.Rcode != c.rcode || r.Truncated != c.tc {
				t.Errorf("%s: rcode %s tc %v, want %s tc %v", c.name, dns.RcodeToString[r.Rcode], r.Truncated, dns.RcodeToString[c.rcode], c.tc)
			}
			if !c.tc {
				if d := cmp.Diff(c.want, rrData(r.Answer)); d != "" {
					t.Errorf("%s: answers (-want +got):\n%s", c.name, d)
				}
			}
		}
		// Full large answer over TCP on IPv6.
		err := n.HostDo(func() error {
			m := new(dns.Msg)
			m.SetQuestion("big.test.", dns.TypeA)
			r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, "["+DNSV6+"]:53")
			if err == nil && len(r.Answer) != 40 {
				t.Errorf("big.test over tcp: %d answers, want 40", len(r.Answer))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(n.DNS.QueriesFor("big.test")); got != 2 {
			t.Errorf("queries for big.test = %d, want 2", got)
		}
	})

	t.Run("dot-doh-tls", func(t *testing.T) {
		// Only synchronous dials inside HostDo; the HTTP clients dial through n.DialHost.
		err := func() error {
			m := new(dns.Msg)
			m.SetQuestion("www.test.", dns.TypeA)
			var r *dns.Msg
			err := n.HostDo(func() error {
				var err error
				r, _, err = (&dns.Client{Net: "tcp-tls", Timeout: 2 * time.Second, TLSConfig: n.TLSConfig("dns.test")}).Exchange(m, DNSV4+":853")
				return err
			})
			if err != nil {
				return err
			}
			if d := cmp.Diff([]string{"A " + EchoV4}, rrData(r.Answer)); d != "" {
				t.Errorf("DoT answers (-want +got):\n%s", d)
			}
			packed, _ := m.Pack()
			hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: n.DialHost, TLSClientConfig: n.TLSConfig("dns.test")}}
			resp, err := hc.Post("https://"+DNSV4+"/dns-query", "application/dns-message", bytes.NewReader(packed))
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r = new(dns.Msg)
			if err := r.Unpack(body); err != nil {
				return err
			}
			if d := cmp.Diff([]string{"A " + EchoV4}, rrData(r.Answer)); d != "" {
				t.Errorf("DoH answers (-want +got):\n%s", d)
			}
			resp, err = (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: n.DialHost, TLSClientConfig: n.TLSConfig("sni.tls.test")}}).Get("https://[" + TLSV6 + "]/x")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			line, _ := io.ReadAll(resp.Body)
			rep, err := ParseEcho(strings.TrimSpace(string(line)))
			if err != nil {
				return err
			}
			if d := cmp.Diff(EchoReply{Server: "tls6", Proto: "tls", Client: rep.Client, Data: "/x", SNI: "sni.tls.test", Host: "[" + TLSV6 + "]"}, rep); d != "" {
				t.Errorf("TLS reply (-want +got):\n%s", d)
			}
			return nil
		}()
		if err != nil {
			t.Fatal(err)
		}
		var protos []string
		for _, q := range n.DNS.QueriesFor("www.test") {
			protos = append(protos, q.Proto)
		}
		sort.Strings(protos)
		if d := cmp.Diff([]string{"doh", "dot", "tcp", "udp"}, protos); d != "" {
			t.Errorf("www.test query protocols (-want +got):\n%s", d)
		}
	})

	t.Run("canary", func(t *testing.T) {
		if h := n.CanaryHits(); len(h) != 0 {
			t.Fatalf("canary hit before any test traffic: %v", h)
		}
		for _, a := range []string{MetadataV4 + ":80", "[" + ULAV6 + "]:80"} {
			err := n.HostDo(func() error {
				c, err := net.DialTimeout("tcp", a, 2*time.Second)
				if err == nil {
					c.Close()
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(2 * time.Second)
		for len(n.CanaryHits()) < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		var names []string
		for _, h := range n.CanaryHits() {
			names = append(names, h.Server)
		}
		sort.Strings(names)
		if d := cmp.Diff([]string{"canary-metadata", "canary-ula"}, names); d != "" {
			t.Errorf("canary hits (-want +got):\n%s", d)
		}
	})

	t.Run("closed", func(t *testing.T) {
		// Route lookups only (no packet leaves): host's only way out is wan, wan has none.
		out, err := n.HostCommand(ctx, nil, "ip", "-o", "route", "get", "8.8.8.8").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "dev wan0") {
			t.Errorf("host route to an outside address: %v %s", err, out)
		}
		out, err = n.HostCommand(ctx, nil, "ip", "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(string(out), "\n"); got != 2 {
			t.Errorf("host netns has %d links, want lo and wan0 only:\n%s", got, out)
		}
		err = n.WanDo(func() error {
			c, err := net.DialTimeout("udp", "8.8.8.8:53", time.Second) // connect() only does a route lookup
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("wan must have no route out, got %v", err)
		}
	})

	t.Run("user", func(t *testing.T) {
		u, err := LookupUser("terok-test")
		if err != nil {
			if os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1" {
				t.Fatalf("no rootless test user (scripts/install-deps.sh creates it): %v", err)
			}
			t.Skipf("no rootless test user: %v", err)
		}
		out, err := n.UserCommand(ctx, u, nil, "sh", "-c", "id -u; readlink /proc/self/ns/net").Output()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.Readlink("/proc/self/ns/net")
		lines := strings.Fields(string(out))
		if len(lines) != 2 || lines[0] != strconv.Itoa(u.UID) || lines[1] == want {
			t.Errorf("user command output %q (own netns %s)", out, want)
		}
	})
}

func TestStartWithNeedsNoServers(t *testing.T) {
	requireRoot(t)
	n, err := StartWith(Options{NoDefaultServers: true, Prefix: "tsx"})
	if err != nil {
		t.Fatal(err)
	}
	path := n.HostPath()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("host netns missing: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("host netns still present after Close: %v", err)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || strings.Contains(string(out), n.WanNS) {
		t.Errorf("wan netns still listed: %v %s", err, out)
	}
}

func rrData(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, "A "+v.A.String())
		case *dns.AAAA:
			out = append(out, "AAAA "+v.AAAA.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+v.Target)
		}
	}
	sort.Strings(out)
	return out
}
