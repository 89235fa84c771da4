// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// EnvE2EReport names the JSON file TestAdversarialMatrix writes its cells to (unset: none).
const EnvE2EReport = "TEROK_SHIELD_E2E_REPORT"

// mxLearnedTTL is the learned-set lifetime the matrix configures, so expiry is observable (the
// resolver's max-cache-ttl is half of it, rounded to whole seconds; see TestLearnedTTLOddSeconds).
const mxLearnedTTL = 4 * time.Second

// mxProfile is the matrix container's profile: a name learned through the resolver, raw
// addresses on both families, and web4b, which the operator denies right after the start.
var mxProfile = []string{
	"allowed.test",
	testnet.EchoV4,
	testnet.EchoV6,
	testnet.EchoV4b,
}

// Verdicts: what the firewall does with a destination in a state.
const (
	vOK     = "ok"         // reachable: the server answers and records the hit
	vReject = "reject"     // rejected in the container's netns with ICMP admin-prohibited, nothing sent
	vDrop   = "drop"       // dropped on output (block): the local kernel refuses the send with EPERM
	vRcode  = "rcode"      // a DNS cell: the given rcode (and answers) from the container's resolver
	vNoDNS  = "no-dns"     // a DNS cell while the resolver is dead: port unreachable from 127.0.0.1
	vNA     = "n/a"        // not applicable in this mode (see the reason)
	vNoFwd  = "no-forward" // a DNS cell in block: the resolver cannot forward
)

// mxClass is a destination class: its addresses per family and what answers there.
type mxClass struct {
	Name   string
	V4, V6 string
	// Kind: "echo" (TCP+UDP echo on port 80, ping), "dns53" (the upstream DNS server on 53),
	// "dot" (the same on 853), "names" (names asked of the container's own resolver).
	Kind             string
	Server4, Server6 string // echo server names (hits)
	Name4, Name6     string // "names": the name asked (A for v4, AAAA for v6)
}

func mxClasses() []mxClass {
	return []mxClass{
		{Name: "listed by name (learned)", V4: testnet.BenchV4, V6: testnet.BenchV6, Kind: "echo", Server4: "bench4", Server6: "bench6"},
		{Name: "listed raw IP", V4: testnet.EchoV4, V6: testnet.EchoV6, Kind: "echo", Server4: "web4", Server6: "web6"},
		{Name: "unlisted public", V4: testnet.BenchUnlistedV4, V6: testnet.BenchUnlistedV6, Kind: "echo", Server4: "bench4-unlisted", Server6: "bench6-unlisted"},
		{Name: "private 10.99.0.1", V4: testnet.PrivateV4, Kind: "echo", Server4: "canary-private"},
		{Name: "metadata 169.254.169.254", V4: testnet.MetadataV4, Kind: "echo", Server4: "canary-metadata"},
		{Name: "CGNAT 100.64.0.1", V4: testnet.CGNATV4, Kind: "echo", Server4: "canary-cgnat"},
		{Name: "ULA fd00::1", V6: testnet.ULAV6, Kind: "echo", Server6: "canary-ula"},
		{Name: "IPv4-mapped ::ffff:10.99.0.1", V6: "::ffff:" + testnet.PrivateV4, Kind: "echo", Server6: "canary-private"},
		{Name: "upstream DNS :53", V4: testnet.DNSV4, V6: testnet.DNSV6, Kind: "dns53"},
		{Name: "upstream DoT :853", V4: testnet.DNSV4, V6: testnet.DNSV6, Kind: "dot"},
		{Name: "denied (listed raw, operator deny)", V4: testnet.EchoV4b, Kind: "echo", Server4: "web4b"},
		{Name: "listed name via resolver", V4: "allowed.test", V6: "allowed.test", Kind: "names", Name4: "allowed.test", Name6: "allowed.test"},
		{Name: "unlisted name via resolver", V4: "unlisted.test", V6: "unlisted.test", Kind: "names", Name4: "unlisted.test", Name6: "unlisted.test"},
	}
}

// The container states, in the order the test walks through them.
var mxStates = []string{"fresh", "after DNS learning", "after learned expiry", "after deny", "after restart",
	"after resolver killed", "down", "down --all", "block"}

// mxCell is one probe of the matrix and its verdict; exported fields go to the JSON report.
type mxCell struct {
	Mode     string `json:"mode"`
	State    string `json:"state"`
	Class    string `json:"class"`
	Family   string `json:"family"`
	Proto    string `json:"proto"`
	Dest     string `json:"dest"`
	Verdict  string `json:"verdict"` // the expectation in short: ok, ICMP 3/13, EPERM, REFUSED, ...
	Expected string `json:"expected"`
	Got      string `json:"got"`
	Status   string `json:"status"` // pass, fail, n/a
	Reason   string `json:"reason,omitempty"`

	args      []string
	want      outcome
	wantHit   bool
	hitServer string // echo server whose hits count for this cell ("" = none)
	dnsName   string // name whose upstream queries count for this cell ("" = none)
}

// mxVerdict is what state does to destination class c (the security expectations).
func mxVerdict(st string, c mxClass) string {
	up := !slices.Contains([]string{"down", "down --all", "block"}, st)
	if st == "block" {
		if c.Kind == "names" {
			return vNoFwd
		}
		return vDrop
	}
	switch c.Name {
	case "listed raw IP":
		return vOK
	case "listed by name (learned)":
		// Learned in "after DNS learning", expired after that, denied from "after deny" on
		// (re-learning does not lift a deny, nor does a restart or down).
		if st == "after DNS learning" {
			return vOK
		}
		return vReject
	case "denied (listed raw, operator deny)":
		return vReject
	case "unlisted public", "upstream DNS :53", "upstream DoT :853":
		if up {
			return vReject
		}
		return vOK
	case "private 10.99.0.1", "metadata 169.254.169.254", "CGNAT 100.64.0.1", "ULA fd00::1", "IPv4-mapped ::ffff:10.99.0.1":
		if st == "down --all" {
			return vOK
		}
		return vReject
	case "listed name via resolver", "unlisted name via resolver":
		if st == "after resolver killed" {
			return vNoDNS
		}
		return vRcode
	}
	panic("unknown class " + c.Name)
}

// mxRejected is the outcome of a rejected probe per family and protocol (the ICMP error the
// container's own netns generates, and the errno the socket reports).
// An IPv4-mapped destination leaves as IPv4, so it is rejected as IPv4 (for UDP the ICMPv4
// error does not reach the IPv6 socket's error queue: the send fails with EPERM alone).
func mxRejected(family, proto, addr string) outcome {
	if strings.HasPrefix(addr, "::ffff:") {
		if proto == "tcp" {
			return prohibited4
		}
		return outcome{Result: probe.Refused, Errno: "EPERM"}
	}
	switch family + "/" + proto {
	case "v4/tcp":
		return prohibited4
	case "v4/udp", "v4/icmp":
		return prohibited4UDP
	case "v6/tcp":
		return prohibited6
	case "v6/udp", "v6/icmp":
		return outcome{Result: probe.ICMPErr, Errno: "EPERM", ICMP: "v6 1/1"}
	}
	panic(family + "/" + proto)
}

// mxDropped is the outcome of a probe dropped on output (block): TCP's SYN is retransmitted
// until the probe's timeout, a UDP or ICMP send fails at once with EPERM.
func mxDropped(proto string) outcome {
	if proto == "tcp" {
		return outcome{Result: probe.Timeout, Errno: "ETIMEDOUT"}
	}
	return outcome{Result: probe.Refused, Errno: "EPERM"}
}

// mxNA says why a cell does not apply in mode m ("" = it applies).
func mxNA(m Mode, family, proto, addr, verdict string) string {
	mapped := strings.HasPrefix(addr, "::ffff:")
	if m == Rootful && family == "v6" && !mapped {
		return "n/a (no IPv6 on the network: podman 4.3's default rootful bridge)"
	}
	if mapped && proto == "icmp" {
		return "n/a (an ICMPv6 echo socket cannot address an IPv4-mapped destination: ENETUNREACH)"
	}
	if m == Rootless && family == "v6" && proto == "icmp" {
		return "n/a (slirp4netns does not forward ICMPv6 echo)"
	}
	if m == Rootless && addr == testnet.ULAV6 && verdict == vOK {
		return "n/a (fd00::/64 is slirp4netns's own on-link prefix: fd00::1 is never routed out)"
	}
	return ""
}

// mxCells builds the cells of state st for mode m.
func mxCells(m Mode, st string) []*mxCell {
	var cells []*mxCell
	slug := strings.NewReplacer(" ", "-", "-", "", "'", "").Replace(st)
	for _, c := range mxClasses() {
		for _, fam := range []string{"v4", "v6"} {
			addr, server, name := c.V4, c.Server4, c.Name4
			if fam == "v6" {
				addr, server, name = c.V6, c.Server6, c.Name6
			}
			if addr == "" {
				continue
			}
			protos := []string{"tcp", "udp", "icmp"}
			switch c.Kind {
			case "dot":
				protos = []string{"tcp"}
			case "names":
				protos = []string{"dns"}
			}
			for _, proto := range protos {
				cell := &mxCell{Mode: m.String(), State: st, Class: c.Name, Family: fam, Proto: proto, Dest: addr}
				verdict := mxVerdict(st, c)
				hp := net.JoinHostPort(addr, "80")
				switch c.Kind {
				case "echo":
					cell.Dest = hp
					switch proto {
					case "tcp", "udp":
						cell.args = []string{proto, hp}
						cell.hitServer = server
					case "icmp":
						cell.Dest = addr
						cell.args = []string{"ping", addr}
					}
				case "dns53", "dot":
					// A name of its own per cell: the upstream's query log shows whether this
					// very probe got through.
					cell.dnsName = fmt.Sprintf("%s-%s-%s-%s.direct.test", slug, fam, proto, c.Kind)
					switch {
					case c.Kind == "dot":
						cell.Dest = net.JoinHostPort(addr, "853")
						cell.args = []string{"dot", cell.dnsName, "--server", addr}
					case proto == "tcp":
						cell.Dest = net.JoinHostPort(addr, "53")
						cell.args = []string{"dns", cell.dnsName, "--server", addr, "--tcp"}
					case proto == "udp":
						cell.Dest = net.JoinHostPort(addr, "53")
						cell.args = []string{"dns", cell.dnsName, "--server", addr}
					default:
						cell.dnsName = ""
						cell.args = []string{"ping", addr}
					}
				case "names":
					typ := "A"
					if fam == "v6" {
						typ = "AAAA"
					}
					cell.Dest = name + " " + typ
					cell.args = []string{"dns", name, "--type", typ}
					if name == "unlisted.test" {
						// Never forwarded, in any state.
						cell.dnsName = name
					}
				}
				cell.args = append(cell.args, "--timeout", "1s")
				if why := mxNA(m, fam, proto, addr, verdict); why != "" {
					verdict = vNA
					cell.Reason = why
				}
				cell.Expected = verdict
				switch verdict {
				case vOK:
					cell.wantHit = true
					switch {
					case c.Kind == "dns53" && proto != "icmp", c.Kind == "dot":
						cell.want = outcome{Result: probe.OK, Rcode: "NXDOMAIN"}
					case proto == "icmp":
						cell.want = outcome{Result: probe.OK}
					default:
						cell.want = echoed(server)
					}
				case vReject:
					cell.want = mxRejected(fam, proto, addr)
				case vDrop:
					cell.want = mxDropped(proto)
				case vRcode:
					cell.want = outcome{Result: probe.OK, Rcode: "REFUSED"}
					if name == "allowed.test" {
						answer := "A " + testnet.BenchV4
						if fam == "v6" {
							answer = "AAAA " + testnet.BenchV6
						}
						cell.want = outcome{Result: probe.OK, Rcode: "NOERROR", Answers: []string{answer}}
						cell.wantHit = true
					}
					cell.Expected = "rcode " + cell.want.Rcode
				case vNoDNS:
					cell.want = outcome{Result: probe.ICMPErr, Errno: "ECONNREFUSED", ICMP: "3/3"}
				case vNoFwd:
					// The resolver cannot forward (its upstream query is dropped too) and
					// answers REFUSED; the upstream never sees the query.
					cell.want = outcome{Result: probe.OK, Rcode: "REFUSED"}
					cell.dnsName = name
					cell.Expected = "rcode " + cell.want.Rcode
				}
				cell.Verdict = verdict
				if verdict != vNA {
					cell.Verdict = shortOutcome(cell.want)
					cell.Expected += ": " + cell.want.String()
				}
				cells = append(cells, cell)
			}
		}
	}
	return cells
}

// shortOutcome is an expected outcome in a few words, for the report's tables.
func shortOutcome(o outcome) string {
	switch {
	case o.Rcode != "":
		return o.Rcode
	case o.Result == probe.OK:
		return "ok"
	case o.ICMP != "":
		return "ICMP " + o.ICMP
	case o.Errno != "":
		return o.Errno
	}
	return o.Result
}

// mxControl is a positive control: a probe in the same batch that must succeed in that state,
// so a broken network (or a dead container) cannot pass as "blocked".
type mxControl struct {
	name string
	args []string
	want outcome
}

func mxControls(st string) []mxControl {
	if st == "block" {
		// Nothing leaves the container in block; the resolver on loopback still answers
		// locally (loopback is accepted), which proves the probe's own stack works. The
		// container being alive is proven by the batch exec itself, and the wan server by a
		// dial from the host netns (see TestAdversarialMatrix).
		return []mxControl{{name: "loopback resolver answers (REFUSED, a local decision)",
			args: []string{"dns", "control.unlisted.test", "--timeout", "1s"}, want: outcome{Result: probe.OK, Rcode: "REFUSED"}}}
	}
	return []mxControl{{name: "listed raw IP on another port", args: []string{"tcp", net.JoinHostPort(testnet.EchoV4, "8080"), "--timeout", "1s"}, want: echoed("web4")}}
}

// mxGot turns a probe result into the comparable outcome (a ping reply carries no echo JSON).
func mxGot(t *testing.T, res probe.Result) outcome {
	if res.Cmd == "ping" {
		res.Reply = ""
	}
	return outcomeOf(t, res)
}

// mxRun is one mode's walk through the states.
type mxRun struct {
	t     *testing.T
	ctx   context.Context
	n     *testnet.Net
	sp    *ShieldedPodman
	name  string
	cells []*mxCell
}

// shield runs `podman shield verb name args...` through the shim.
func (r *mxRun) shield(verb string, args ...string) error {
	res, err := r.sp.Run(r.ctx, append([]string{"shield", verb, r.name}, args...)...)
	return mustExit(res, err, 0)
}

// enter puts the container into state st.
func (r *mxRun) enter(st string) error {
	switch st {
	case "fresh", "after DNS learning":
		return nil
	case "after learned expiry":
		time.Sleep(mxLearnedTTL + 1500*time.Millisecond)
		return nil
	case "after deny":
		return r.shield("deny", testnet.BenchV4, testnet.BenchV6)
	case "after restart":
		res, err := r.sp.Run(r.ctx, "restart", "--time", "2", r.name)
		return mustExit(res, err, 0)
	case "after resolver killed":
		return r.killResolver()
	case "down":
		return r.shield("down")
	case "down --all":
		return r.shield("down", "--all")
	case "block":
		if err := r.shield("block"); err != nil {
			return err
		}
		// Let the resolver's cache (max-cache-ttl: half the learned TTL) forget the listed
		// name, so its query must be forwarded, which block forbids.
		time.Sleep(mxLearnedTTL/2 + 500*time.Millisecond)
		return nil
	}
	return fmt.Errorf("unknown state %q", st)
}

// killResolver SIGKILLs the container's dnsmasq (pid from the bundle) and waits until it is gone.
func (r *mxRun) killResolver() error {
	pid := resolverPID(r.t, r.sp, r.name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill resolver: %w", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || len(b) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dnsmasq %d survived SIGKILL", pid)
		}
	}
}

// learns reports whether state st resolves the listed name (stage 0) before its probes.
func learns(st string) bool {
	return slices.Contains([]string{"after DNS learning", "after deny", "after restart"}, st)
}

// state enters st, probes every cell and control in one batch and judges the cells.
func (r *mxRun) state(st string) {
	t := r.t
	if err := r.enter(st); err != nil {
		t.Fatalf("enter state %q: %v", st, err)
	}
	r.n.ResetHits()
	cells := mxCells(r.sp.Mode, st)
	controls := mxControls(st)
	var items []probe.BatchItem
	if learns(st) {
		items = append(items,
			probe.BatchItem{Args: []string{"dns", "allowed.test", "--timeout", "1s"}},
			probe.BatchItem{Args: []string{"dns", "allowed.test", "--type", "AAAA", "--timeout", "1s"}})
	}
	first := len(items)
	var live []*mxCell
	for _, c := range cells {
		if c.Expected == vNA {
			continue
		}
		live = append(live, c)
		// Names asked of the resolver go last: an answer for the listed name teaches its
		// address to the learned sets, which would race with the cells that dial that address
		// (in "after learned expiry" it must still be unknown).
		stage := 1
		if len(c.args) > 0 && c.args[0] == "dns" {
			stage = 2
		}
		items = append(items, probe.BatchItem{Args: c.args, Stage: stage})
	}
	for _, c := range controls {
		items = append(items, probe.BatchItem{Args: c.args, Stage: 1})
	}
	results, run, err := r.sp.ProbeBatch(r.ctx, r.name, items)
	if err != nil {
		t.Fatalf("state %q: %v", st, err)
	}
	t.Logf("state %q: %d probes in one exec, %s", st, len(items), run.Elapsed.Round(time.Millisecond))
	if learns(st) {
		for i := range first {
			if results[i].Rcode != "NOERROR" || len(results[i].Answers) == 0 {
				t.Errorf("state %q: learning %v: %+v", st, items[i].Args, results[i])
			}
		}
	}
	// Positive controls: a failure voids the whole state.
	var controlFail []string
	for i, c := range controls {
		res := results[first+len(live)+i]
		if got := mxGot(t, res); !cmp.Equal(c.want, got) {
			controlFail = append(controlFail, fmt.Sprintf("%s: want %s, got %s", c.name, c.want, got))
		}
	}
	if st == "block" {
		if err := r.wanAlive(); err != nil {
			controlFail = append(controlFail, err.Error())
		}
	}
	for i, c := range live {
		res := results[first+i]
		got := mxGot(t, res)
		hit := r.hit(c)
		c.Got = got.String()
		if c.hitServer != "" || c.dnsName != "" {
			c.Got += fmt.Sprintf(" (server saw it: %v)", hit)
		}
		var why []string
		if d := cmp.Diff(c.want, got); d != "" {
			why = append(why, fmt.Sprintf("probe (-want +got): %s", strings.Join(strings.Fields(d), " ")))
		}
		if (c.hitServer != "" || c.dnsName != "") && hit != c.wantHit {
			why = append(why, fmt.Sprintf("server saw it: %v, want %v", hit, c.wantHit))
		}
		if len(controlFail) > 0 {
			why = append(why, "positive control failed: "+strings.Join(controlFail, "; "))
		}
		if len(why) == 0 {
			c.Status = "pass"
			continue
		}
		c.Status, c.Reason = "fail", strings.Join(why, "; ")
		t.Errorf("FAIL cell: dest %s (%s), family %s, proto %s, state %q: expected %s; got %s; reason: %s; probe %s",
			c.Dest, c.Class, c.Family, c.Proto, st, c.Expected, c.Got, c.Reason, strings.Join(c.args, " "))
	}
	for _, c := range cells {
		if c.Expected == vNA {
			c.Status = "n/a"
		}
	}
	r.cells = append(r.cells, cells...)
}

// waitV6 waits (up to 10s) until the container's IPv6 works: slirp4netns's router
// advertisement and duplicate address detection take a moment after the start, so without
// this the first state's IPv6 cells would measure the container's boot, not the firewall.
func (r *mxRun) waitV6() {
	start := time.Now()
	for {
		res, _, err := r.sp.ProbeIn(r.ctx, r.name, "tcp", net.JoinHostPort(testnet.EchoV6, "8080"), "--timeout", "500ms")
		if err != nil {
			r.t.Fatal(err)
		}
		if res.Result == probe.OK {
			r.t.Logf("IPv6 ready %s after the start", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 10*time.Second {
			r.t.Fatalf("IPv6 in the rootless container never worked (listed raw %s): %+v", testnet.EchoV6, res)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hit reports whether the wan side saw cell c's traffic during the current state.
func (r *mxRun) hit(c *mxCell) bool {
	if c.dnsName != "" {
		return len(r.n.DNS.QueriesFor(c.dnsName)) > 0
	}
	for _, h := range r.n.Hits(c.hitServer) {
		// Port 80 only: the block state's control dials web4:8080 from the host netns.
		if h.Proto == c.Proto && strings.HasSuffix(h.Local, ":80") {
			return true
		}
	}
	return false
}

// wanAlive dials web4 from the topology's host netns: the server the blocked cells would reach
// is up.
func (r *mxRun) wanAlive() error {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	c, err := r.n.DialHost(ctx, "tcp", net.JoinHostPort(testnet.EchoV4, "8080"))
	if err != nil {
		return fmt.Errorf("wan server web4 from the host netns: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("alive\n")); err != nil {
		return fmt.Errorf("wan server web4 from the host netns: %w", err)
	}
	buf := make([]byte, 512)
	k, err := c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:k]), `"server":"web4"`) {
		return fmt.Errorf("wan server web4 from the host netns: %q %v", buf[:k], err)
	}
	return nil
}

// mxSummary counts cells.
type mxSummary struct {
	Cells  int `json:"cells"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	NA     int `json:"na"`
}

func (s *mxSummary) add(c *mxCell) {
	s.Cells++
	switch c.Status {
	case "pass":
		s.Passed++
	case "n/a":
		s.NA++
	default:
		s.Failed++
	}
}

// mxReport is the JSON written to $TEROK_SHIELD_E2E_REPORT.
type mxReport struct {
	States  []string                         `json:"states"`
	Total   mxSummary                        `json:"total"`
	ByMode  map[string]*mxSummary            `json:"by_mode"`
	ByState map[string]map[string]*mxSummary `json:"by_state"` // mode -> state -> counts
	Cells   []*mxCell                        `json:"cells"`
}

func writeMatrixReport(path string, cells []*mxCell) error {
	rep := mxReport{States: mxStates, ByMode: map[string]*mxSummary{}, ByState: map[string]map[string]*mxSummary{}, Cells: cells}
	for _, c := range cells {
		rep.Total.add(c)
		if rep.ByMode[c.Mode] == nil {
			rep.ByMode[c.Mode] = &mxSummary{}
			rep.ByState[c.Mode] = map[string]*mxSummary{}
		}
		rep.ByMode[c.Mode].add(c)
		if rep.ByState[c.Mode][c.State] == nil {
			rep.ByState[c.Mode][c.State] = &mxSummary{}
		}
		rep.ByState[c.Mode][c.State].add(c)
	}
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return fmt.Errorf("matrix report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("matrix report: %w", err)
	}
	return nil
}

// TestAdversarialMatrix probes every destination class (listed by name and learned, listed raw
// IP, unlisted public, private, metadata, CGNAT, ULA, IPv4-mapped private, the upstream DNS on
// 53 and 853, an operator-denied address, and names asked of the container's resolver) over
// IPv4/IPv6 and TCP/UDP/ICMP from inside one long-running shielded container per mode, through
// the states fresh, after DNS learning, after learned expiry, after deny, after restart, after
// the resolver is killed, down, down --all and block. Each cell asserts the reason (ICMP
// admin-prohibited, EPERM, REFUSED, ...) and whether the wan server saw the traffic; each
// state has positive controls in the same batch.
func TestAdversarialMatrix(t *testing.T) {
	var (
		mu  sync.Mutex
		all []*mxCell
	)
	t.Cleanup(func() {
		path := os.Getenv(EnvE2EReport)
		if path == "" || len(all) == 0 {
			return
		}
		slices.SortStableFunc(all, func(a, b *mxCell) int { return strings.Compare(a.Mode, b.Mode) })
		if err := writeMatrixReport(path, all); err != nil {
			t.Error(err)
		}
	})
	forModes(t, 3*time.Minute, func(t *testing.T, ctx context.Context, n *testnet.Net, sp *ShieldedPodman) {
		// slirp4netns forwards ICMP echo through ping sockets in the (test's own) host netns.
		if out, err := exec.Command("ip", "netns", "exec", n.HostNS, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647").CombinedOutput(); err != nil {
			t.Fatalf("ping_group_range: %v: %s", err, out)
		}
		if err := sp.WriteProfile("matrix", mxProfile...); err != nil {
			t.Fatal(err)
		}
		if err := writeConfig(sp, fmt.Sprintf("resolver:\n  learned_ttl: %s\n", mxLearnedTTL)); err != nil {
			t.Fatal(err)
		}
		r := &mxRun{t: t, ctx: ctx, n: n, sp: sp, name: sp.Name("matrix")}
		defer func() {
			mu.Lock()
			all = append(all, r.cells...)
			mu.Unlock()
		}()
		start := time.Now()
		// The harness's CONTAINERS_CONF replaces the system file and with it podman's default
		// ping_group_range sysctl, without which no ICMP echo socket can be opened at all.
		// Short UDP conntrack timeouts: a new probe in a later state must never ride on a flow
		// an earlier state's probe left in the conntrack table (block keeps established flows).
		if err := sp.StartShielded(ctx, r.name, "matrix", "--sysctl", "net.ipv4.ping_group_range=0 0",
			"--sysctl", "net.netfilter.nf_conntrack_udp_timeout=1", "--sysctl", "net.netfilter.nf_conntrack_udp_timeout_stream=1"); err != nil {
			t.Fatal(err)
		}
		if err := r.shield("deny", testnet.EchoV4b); err != nil {
			t.Fatal(err)
		}
		if sp.Mode == Rootless {
			r.waitV6()
		}
		for _, st := range mxStates {
			r.state(st)
		}
		t.Logf("matrix walked in %s", time.Since(start).Round(time.Millisecond))
	})
}

// writeConfig writes ConfigDir/config.yml (owned by the mode's user).
func writeConfig(sp *ShieldedPodman, content string) error {
	p := filepath.Join(sp.ConfigDir, "config.yml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write config.yml: %w", err)
	}
	if sp.Mode == Rootless {
		if err := os.Chown(p, sp.H.User.UID, sp.H.User.GID); err != nil {
			return fmt.Errorf("write config.yml: %w", err)
		}
	}
	return nil
}
