// SPDX-License-Identifier: Apache-2.0

package dnsmasq

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/terok-ai/terok-shield/internal/netnstest"
)

const testMark = 0x5e1d

var upstreamAddr = netip.MustParseAddr("192.0.2.53")

// requirePrivileged stops the test unless root, ip, nsenter, nft and a
// dnsmasq with nftset and conntrack are available; see netnstest.Require.
func requirePrivileged(t *testing.T) string {
	t.Helper()
	netnstest.Require(t)
	bin, err := Find()
	if err == nil {
		_, err = exec.LookPath("nft")
	}
	if err != nil {
		if netnstest.Mandatory() {
			t.Fatalf("dnsmasq test prerequisites: %v", err)
		}
		t.Skipf("dnsmasq test prerequisites: %v", err)
	}
	return bin
}

// upstream is a miekg/dns server inside the "up" namespace that records the
// names it is asked.
type upstream struct {
	mu      sync.Mutex
	queries []string // "udp a.test. A"
}

func (u *upstream) seen(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, q := range u.queries {
		if strings.Contains(q, " "+dns.Fqdn(name)+" ") {
			return true
		}
	}
	return false
}

const upTTL = 86400

var zone = map[string][]string{
	"allowed.test.":      {"A 198.18.0.10", "AAAA 2001:2::10"},
	"late.test.":         {"A 198.18.0.16"},
	"one.wild.test.":     {"A 198.18.0.11"},
	"two.one.wild.test.": {"A 198.18.0.12"},
	"wild.test.":         {"A 198.18.0.13"},
	"denied.test.":       {"A 198.18.0.14"},
	"direct.test.":       {"A 198.18.0.14"},
	"rebind.test.":       {"A 10.0.0.5"},
	"alias.test.":        {"CNAME target.other.test."},
	"target.other.test.": {"A 198.18.0.15"},
	"zz.test.":           {"A 198.18.0.17"},
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	q := r.Question[0]
	u.mu.Lock()
	u.queries = append(u.queries, fmt.Sprintf("%s %s %s", w.RemoteAddr().Network(), strings.ToLower(q.Name), dns.TypeToString[q.Qtype]))
	u.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	name := strings.ToLower(q.Name)
	for range 4 { // follow CNAMEs like a recursive resolver
		recs, ok := zone[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
			break
		}
		next := ""
		for _, rec := range recs {
			typ, data, _ := strings.Cut(rec, " ")
			if typ == "CNAME" || typ == dns.TypeToString[q.Qtype] {
				rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", name, upTTL, typ, data))
				if err != nil {
					panic(err)
				}
				m.Answer = append(m.Answer, rr)
			}
			if typ == "CNAME" {
				next = data
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	_ = w.WriteMsg(m)
}

// topology is the test world: ctr (the container) linked to up (the
// upstream resolver's network), with the mark rules of the real ruleset.
type topology struct {
	ctr, up *netnstest.NS
	dns     *upstream
	bin     string
	dir     string
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	bin := requirePrivileged(t)
	ctr, up := netnstest.New(t, "ctr"), netnstest.New(t, "up")
	netnstest.Link(t, ctr, up,
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.53/24"), netip.MustParsePrefix("2001:db8::53/64")})
	u := &upstream{}
	var pc net.PacketConn
	var ln net.Listener
	err := up.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", "192.0.2.53:53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", "192.0.2.53:53")
		return err
	})
	if err != nil {
		t.Fatalf("upstream listen: %v", err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	nft(t, ctr, fmt.Sprintf(`table inet terok_shield {
	set learned_v4 { type ipv4_addr; flags timeout; timeout 30m; }
	set learned_v6 { type ipv6_addr; flags timeout; timeout 30m; }
	chain output {
		type filter hook output priority 0; policy accept;
		oifname "lo" udp dport 53 ct mark set %#x
		oifname "lo" tcp dport 53 ct mark set %#x
		meta mark != %#x udp dport 53 ip daddr %s drop
		meta mark != %#x tcp dport 53 ip daddr %s drop
	}
}`, testMark, testMark, testMark, upstreamAddr, testMark, upstreamAddr))
	// A private state directory, as in production: dnsmasq writes its pid
	// file and opens its log before it switches to "nobody".
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &topology{ctr: ctr, up: up, dns: u, bin: bin, dir: dir}
}

func nft(t *testing.T, n *netnstest.NS, script string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+n.Path, "--", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s", n.Name, err, out)
	}
}

// setElems lists the elements of a set in ctr, without timeouts.
func (tp *topology) setElems(t *testing.T, set string) []string {
	t.Helper()
	out, err := tp.ctr.Exec(t, "nft", "-j", "list", "set", "inet", "terok_shield", set)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var elems []string
	// Elements appear as {"elem": {"val": "198.18.0.10", ...}}.
	for _, f := range strings.Split(out, `"val": "`)[1:] {
		elems = append(elems, f[:strings.IndexByte(f, '"')])
	}
	return elems
}

// expires returns the remaining lifetime of elem in set.
func (tp *topology) expires(t *testing.T, set, elem string) time.Duration {
	t.Helper()
	out, err := tp.ctr.Exec(t, "nft", "-j", "list", "set", "inet", "terok_shield", set)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_, rest, ok := strings.Cut(out, `"val": "`+elem+`"`)
	if !ok {
		t.Fatalf("%s not in %s: %s", elem, set, out)
	}
	_, rest, _ = strings.Cut(rest, `"expires": `)
	n, err := strconv.Atoi(rest[:strings.IndexAny(rest, ",}")])
	if err != nil {
		t.Fatalf("expires of %s: %v in %s", elem, err, out)
	}
	return time.Duration(n) * time.Second
}

func (tp *topology) instance(name string) Instance {
	return Instance{
		Binary:   tp.bin,
		ConfFile: filepath.Join(tp.dir, name+".conf"),
		PIDFile:  filepath.Join(tp.dir, name+".pid"),
		ErrFile:  filepath.Join(tp.dir, name+".err"),
	}
}

// start renders c for instance name, writes it and starts dnsmasq in ctr.
func (tp *topology) start(t *testing.T, name string, c Config) (Instance, int) {
	t.Helper()
	in := tp.write(t, name, c)
	pid, err := Start(context.Background(), tp.ctr.Path, in)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := Stop(in); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return in, pid
}

func (tp *topology) write(t *testing.T, name string, c Config) Instance {
	t.Helper()
	in := tp.instance(name)
	conf, err := Render(c)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if err := os.WriteFile(in.ConfFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return in
}

// query asks server (inside ctr) for name and returns the reply.
func (tp *topology) query(server netip.Addr, proto, name string, qtype uint16) (*dns.Msg, error) {
	var r *dns.Msg
	err := tp.ctr.Do(func() error {
		c := &dns.Client{Net: proto, Timeout: 700 * time.Millisecond}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		var err error
		r, _, err = c.Exchange(m, netip.AddrPortFrom(server, 53).String())
		return err
	})
	return r, err
}

// answers returns the rcode and the A/AAAA/CNAME data of a reply.
func answers(r *dns.Msg) (string, []string) {
	var data []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			data = append(data, rr.A.String())
		case *dns.AAAA:
			data = append(data, rr.AAAA.String())
		case *dns.CNAME:
			data = append(data, "CNAME "+rr.Target)
		}
	}
	return dns.RcodeToString[r.Rcode], data
}

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.IPv6Loopback()
)

func baseConfig(tp *topology) Config {
	return Config{
		Names:     []string{"allowed.test", "*.wild.test", "rebind.test", "alias.test"},
		Upstreams: []netip.Addr{upstreamAddr},
		Mark:      testMark,
		LogFile:   filepath.Join(tp.dir, "dnsmasq.log"),
	}
}

func TestResolverInNetns(t *testing.T) {
	tp := newTopology(t)
	c := baseConfig(tp)
	c.MaxCacheTTL = 2 * time.Second
	_, pid := tp.start(t, "main", c)

	tests := []struct {
		name      string
		server    netip.Addr
		proto     string
		qname     string
		qtype     uint16
		rcode     string
		answer    []string
		forwarded bool // whether upstream must have seen the query
	}{
		{"allowed A", lo4, "udp", "allowed.test", dns.TypeA, "NOERROR", []string{"198.18.0.10"}, true},
		{"allowed AAAA over ::1", lo6, "udp", "allowed.test", dns.TypeAAAA, "NOERROR", []string{"2001:2::10"}, true},
		{"allowed over TCP", lo4, "tcp", "allowed.test", dns.TypeA, "NOERROR", []string{"198.18.0.10"}, true},
		{"unlisted", lo4, "udp", "denied.test", dns.TypeA, "REFUSED", nil, false},
		{"unlisted over TCP", lo6, "tcp", "denied.test", dns.TypeA, "REFUSED", nil, false},
		{"subdomain of plain name", lo4, "udp", "sub.allowed.test", dns.TypeA, "REFUSED", nil, false},
		{"wildcard one label", lo4, "udp", "one.wild.test", dns.TypeA, "NOERROR", []string{"198.18.0.11"}, true},
		{"wildcard two labels", lo4, "udp", "two.one.wild.test", dns.TypeA, "REFUSED", nil, false},
		{"wildcard parent", lo4, "udp", "wild.test", dns.TypeA, "REFUSED", nil, false},
		{"rebinding answer", lo4, "udp", "rebind.test", dns.TypeA, "NOERROR", nil, true},
		{"CNAME chain", lo4, "udp", "alias.test", dns.TypeA, "NOERROR", []string{"CNAME target.other.test.", "198.18.0.15"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tp.query(tc.server, tc.proto, tc.qname, tc.qtype)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			rcode, data := answers(r)
			if diff := cmp.Diff([]string{tc.rcode, fmt.Sprint(tc.answer)}, []string{rcode, fmt.Sprint(data)}); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			for _, rr := range r.Answer {
				if rr.Header().Ttl > 2 {
					t.Errorf("TTL %d handed out, want <= max-ttl 2", rr.Header().Ttl)
				}
			}
			if got := tp.dns.seen(tc.qname); got != tc.forwarded {
				t.Errorf("upstream saw %s: %v, want %v", tc.qname, got, tc.forwarded)
			}
		})
	}

	t.Run("learned sets", func(t *testing.T) {
		// 10.0.0.5 (rebinding) must not be learned; the CNAME target's
		// address is learned under the queried name alias.test.
		want4 := []string{"198.18.0.10", "198.18.0.11", "198.18.0.15"}
		if diff := cmp.Diff(want4, tp.setElems(t, "learned_v4")); diff != "" {
			t.Errorf("learned_v4 (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"2001:2::10"}, tp.setElems(t, "learned_v6")); diff != "" {
			t.Errorf("learned_v6 (-want +got):\n%s", diff)
		}
	})

	t.Run("workload cannot reach upstream directly", func(t *testing.T) {
		for _, proto := range []string{"udp", "tcp"} {
			if r, err := tp.query(upstreamAddr, proto, "direct.test", dns.TypeA); err == nil {
				t.Errorf("direct %s query answered: %v", proto, r)
			}
		}
		if tp.dns.seen("direct.test") {
			t.Errorf("upstream saw the direct query")
		}
	})

	t.Run("privileges dropped", func(t *testing.T) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		var uid, capEff string
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				uid = strings.Fields(v)[1]
			}
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				capEff = strings.TrimSpace(v)
			}
		}
		caps, _ := strconv.ParseUint(capEff, 16, 64)
		const capNetAdmin = 12
		if uid != "65534" || caps&(1<<capNetAdmin) == 0 {
			t.Errorf("dnsmasq runs with euid %s and CapEff %s; want 65534 with CAP_NET_ADMIN", uid, capEff)
		}
		t.Logf("dnsmasq euid %s CapEff %s", uid, capEff)
	})

	t.Run("expired entries are learned again", func(t *testing.T) {
		// dnsmasq adds to the sets only when it forwards, and its
		// `add element` does not refresh the timeout of an element that is
		// still present (kernel 6.18): the element expiring (simulated by
		// deleting it) and a query after max-cache-ttl bring it back.
		before := tp.expires(t, "learned_v4", "198.18.0.10")
		if out, err := tp.ctr.Exec(t, "nft", "delete", "element", "inet", "terok_shield", "learned_v4", "{ 198.18.0.10 }"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		time.Sleep(2500 * time.Millisecond) // past max-cache-ttl: the next query is forwarded
		if _, err := tp.query(lo4, "udp", "allowed.test", dns.TypeA); err != nil {
			t.Fatal(err)
		}
		after := tp.expires(t, "learned_v4", "198.18.0.10")
		t.Logf("198.18.0.10 expired in %v before deletion, %v after being learned again", before, after)
		if after < 29*time.Minute {
			t.Errorf("learned again with %v left, want the set timeout 30m", after)
		}
	})

	t.Run("query log", func(t *testing.T) {
		log, err := os.ReadFile(c.LogFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"query[A] allowed.test from 127.0.0.1", "nftset add 4 inet terok_shield learned_v4 198.18.0.10 allowed.test"} {
			if !strings.Contains(string(log), want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})
}

func TestStartReportsDnsmasqError(t *testing.T) {
	tp := newTopology(t)
	tp.start(t, "first", baseConfig(tp))
	in := tp.write(t, "second", baseConfig(tp))
	_, err := Start(context.Background(), tp.ctr.Path, in)
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("second instance on the same addresses: err = %v, want dnsmasq's bind error", err)
	}
}

func TestStartIsIdempotent(t *testing.T) {
	tp := newTopology(t)
	in, pid := tp.start(t, "main", baseConfig(tp))
	again, err := Start(context.Background(), tp.ctr.Path, in)
	if err != nil || again != pid {
		t.Fatalf("second Start = %d, %v; want the running pid %d", again, err, pid)
	}
}

func TestStop(t *testing.T) {
	tp := newTopology(t)
	in := tp.write(t, "main", baseConfig(tp))
	pid, err := Start(context.Background(), tp.ctr.Path, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := Stop(in); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(pid) {
		t.Errorf("dnsmasq %d still runs after Stop", pid)
	}
	if _, err := os.Stat(in.PIDFile); err == nil {
		t.Errorf("pid file remains after Stop")
	}
	if _, err := tp.query(lo4, "udp", "allowed.test", dns.TypeA); err == nil {
		t.Errorf("resolver still answers after Stop")
	}
	if err := Stop(in); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopSparesOtherProcesses(t *testing.T) {
	bin := requirePrivileged(t)
	dir := t.TempDir()
	in := Instance{Binary: bin, ConfFile: filepath.Join(dir, "dnsmasq.conf"), PIDFile: filepath.Join(dir, "dnsmasq.pid")}
	const script = "sleep 60; exit" // not a simple command: bash does not exec sleep
	tests := []struct {
		name string
		path string   // executable
		argv []string // its command line
	}{
		{"unrelated process", "sleep", []string{"sleep", "60"}},
		{"named like our dnsmasq", "bash", []string{bin, "-c", script}},
		{"named like our dnsmasq, with our --conf-file among its arguments", "bash", []string{bin, "-c", script, "--conf-file=" + in.ConfFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, err := exec.LookPath(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			cmd := &exec.Cmd{Path: path, Args: tc.argv}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			if err := os.WriteFile(in.PIDFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if pid, err := Running(in); pid != 0 || err != nil {
				t.Errorf("Running = %d, %v; want 0, nil", pid, err)
			}
			if err := Stop(in); err != nil {
				t.Errorf("Stop: %v", err)
			}
			time.Sleep(50 * time.Millisecond) // a signal would have been delivered by now
			if !alive(cmd.Process.Pid) {
				t.Errorf("process %d was killed by Stop", cmd.Process.Pid)
			}
			if _, err := os.Stat(in.PIDFile); err == nil {
				t.Errorf("stale pid file not removed")
			}
		})
	}
}

// alive reports whether pid exists and is not a zombie (an unreaped child
// killed by a signal still answers kill(pid, 0)).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return rest != "" && rest[0] != 'Z' && rest[0] != 'X'
}

func TestRestartAppliesNewNames(t *testing.T) {
	tp := newTopology(t)
	c := baseConfig(tp)
	in, oldPID := tp.start(t, "main", c)
	if r, err := tp.query(lo4, "udp", "late.test", dns.TypeA); err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("late.test before restart: %v, %v; want REFUSED", r, err)
	}

	// Probe continuously from the workload over one connected socket.
	var conn *dns.Conn
	if err := tp.ctr.Do(func() error {
		var err error
		conn, err = dns.Dial("udp", "127.0.0.1:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type sample struct {
		at time.Time
		ok bool
	}
	var samples []sample
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			m := new(dns.Msg)
			m.SetQuestion("allowed.test.", dns.TypeA)
			_ = conn.SetDeadline(time.Now().Add(50 * time.Millisecond))
			err := conn.WriteMsg(m)
			var r *dns.Msg
			if err == nil {
				r, err = conn.ReadMsg()
			}
			samples = append(samples, sample{time.Now(), err == nil && r.Rcode == dns.RcodeSuccess})
			if err != nil {
				time.Sleep(2 * time.Millisecond) // ECONNREFUSED returns at once
			}
		}
	}()

	time.Sleep(100 * time.Millisecond)
	c.Names = append(c.Names, "late.test")
	tp.write(t, "main", c)
	began := time.Now()
	newPID, err := Restart(context.Background(), tp.ctr.Path, in)
	took := time.Since(began)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if newPID == oldPID || alive(oldPID) {
		t.Errorf("Restart: new pid %d, old pid %d alive: %v", newPID, oldPID, alive(oldPID))
	}

	// The gap is the longest stretch between two successful answers.
	var gap time.Duration
	failures := 0
	last := time.Time{}
	for _, s := range samples {
		if !s.ok {
			failures++
			continue
		}
		if !last.IsZero() && s.at.Sub(last) > gap {
			gap = s.at.Sub(last)
		}
		last = s.at
	}
	t.Logf("Restart took %v; longest time without an answer %v (%d failed of %d probes)", took, gap, failures, len(samples))
	if gap > 500*time.Millisecond {
		t.Errorf("resolver unavailable for %v during Restart, want < 500ms", gap)
	}
	if failures == len(samples) {
		t.Fatalf("no probe succeeded")
	}

	r, err := tp.query(lo4, "udp", "late.test", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if rcode, data := answers(r); rcode != "NOERROR" || fmt.Sprint(data) != "[198.18.0.16]" {
		t.Errorf("late.test after restart: %s %v", rcode, data)
	}
	if elems := tp.setElems(t, "learned_v4"); !slices.Contains(elems, "198.18.0.16") {
		t.Errorf("late.test's address not learned: %v", elems)
	}
}

func TestRestartKeepsRunningOnBadConfig(t *testing.T) {
	tp := newTopology(t)
	in, pid := tp.start(t, "main", baseConfig(tp))
	if err := os.WriteFile(in.ConfFile, []byte("no-such-option\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Restart(context.Background(), tp.ctr.Path, in); err == nil || !strings.Contains(err.Error(), "bad option") {
		t.Errorf("Restart with a bad config: %v, want dnsmasq's complaint", err)
	}
	if !alive(pid) {
		t.Errorf("running instance was stopped for a bad config")
	}
}

// TestAllowlistAcrossLines checks that names on every connmark-allowlist
// line (each with its own mask) are allowed, and others still refused.
func TestAllowlistAcrossLines(t *testing.T) {
	tp := newTopology(t)
	c := baseConfig(tp)
	c.Names = append(manyNames(150), "allowed.test", "zz.test")
	in, _ := tp.start(t, "main", c)
	conf, err := os.ReadFile(in.ConfFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(conf), "connmark-allowlist="); n < 3 {
		t.Fatalf("want at least 3 allowlist lines, got %d", n)
	}
	for _, tc := range []struct{ qname, rcode string }{
		{"allowed.test", "NOERROR"},           // first line
		{"host-0075.example.org", "NXDOMAIN"}, // a middle line: forwarded, unknown upstream
		{"zz.test", "NOERROR"},                // last line
		{"denied.test", "REFUSED"},
		{"host-0151.example.org", "REFUSED"},
	} {
		r, err := tp.query(lo4, "udp", tc.qname, dns.TypeA)
		if err != nil {
			t.Fatalf("%s: %v", tc.qname, err)
		}
		if got := dns.RcodeToString[r.Rcode]; got != tc.rcode {
			t.Errorf("%s: %s, want %s", tc.qname, got, tc.rcode)
		}
	}
}

// TestLaunchThenStop is the hook's case: Launch returns without waiting for the resolver, and a
// Stop that follows at once (a container stopped while it starts) still finds and ends it.
func TestLaunchThenStop(t *testing.T) {
	tp := newTopology(t)
	in := tp.write(t, "main", baseConfig(tp))
	p, err := Launch(tp.ctr.Path, in)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid
	if got, err := readPID(in.PIDFile); err != nil || got != pid {
		t.Fatalf("pid file right after Launch = %d, %v; want %d", got, err, pid)
	}
	if err := Stop(in); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if alive(pid) {
		t.Errorf("dnsmasq %d still runs after Stop", pid)
	}
	// And launched again, it becomes ready.
	if p, err = Launch(tp.ctr.Path, in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := WaitReady(ctx, tp.ctr.Path, in, p.Pid); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if _, err := tp.query(lo4, "udp", "allowed.test", dns.TypeA); err != nil {
		t.Errorf("query after WaitReady: %v", err)
	}
	if err := p.Ended(in); err != nil {
		t.Errorf("Ended of a running resolver: %v", err)
	}
	if err := Stop(in); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// The launching process notices the end (it reaps its child).
	deadline := time.Now().Add(5 * time.Second)
	for p.Ended(in) == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Ended(in) == nil {
		t.Error("Ended still nil after Stop")
	}
}

// TestRotateLog: a query log above the limit is copied to .1 and emptied in place, and the
// running resolver (which dropped its privileges and cannot reopen it) goes on writing to it;
// one below the limit is left alone.
func TestRotateLog(t *testing.T) {
	tp := newTopology(t)
	c := baseConfig(tp)
	tp.start(t, "main", c)
	ask := func(name string) {
		t.Helper()
		if _, err := tp.query(lo4, "udp", name, dns.TypeA); err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
	}
	waitFor := func(path, want string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if strings.Contains(string(b), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s lacks %q:\n%s", path, want, b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ask("allowed.test")
	waitFor(c.LogFile, "query[A] allowed.test")
	if rotated, err := RotateLog(c.LogFile, 1<<20); err != nil || rotated {
		t.Fatalf("RotateLog of a small log = %v, %v; want no rotation", rotated, err)
	}
	if rotated, err := RotateLog(c.LogFile, 10); err != nil || !rotated {
		t.Fatalf("RotateLog over the limit = %v, %v; want a rotation", rotated, err)
	}
	waitFor(c.LogFile+".1", "query[A] allowed.test")
	ask("x.wild.test")
	waitFor(c.LogFile, "query[A] x.wild.test")
	if b, _ := os.ReadFile(c.LogFile); strings.Contains(string(b), "query[A] allowed.test") {
		t.Errorf("the new log repeats the old one:\n%s", b)
	}
}
