// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/internal/netnstest"
	"github.com/terok-ai/terok-shield/internal/original"
	"github.com/terok-ai/terok-shield/internal/testbin"
	"github.com/terok-ai/terok-shield/profiles"
	"github.com/terok-ai/terok-shield/state"
)

// hookEnv is the environment the hooks.d descriptor gives the hook.
var hookEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// requireBench stops the benchmark (or test) unless root, ip, nsenter, nft, unshare, python3 and a
// usable dnsmasq are there (fails instead under CI / TEROK_SHIELD_REQUIRE_PRIVILEGED=1).
func requireBench(b testing.TB) string {
	b.Helper()
	netnstest.Require(b)
	bin, err := dnsmasq.Find()
	for _, tool := range []string{"nft", "unshare", "/usr/bin/python3"} {
		if err == nil {
			_, err = exec.LookPath(tool)
		}
	}
	if err != nil {
		if netnstest.Mandatory() {
			b.Fatalf("hook benchmark prerequisites: %v", err)
		}
		b.Skipf("hook benchmark prerequisites: %v", err)
	}
	return bin
}

// buildBinary builds terok-shield into dir.
func buildBinary(b testing.TB, dir string) string {
	b.Helper()
	out := filepath.Join(dir, "terok-shield")
	if err := testbin.BuildShield(out, "github.com/terok-ai/terok-shield/shim"); err != nil {
		b.Fatal(err)
	}
	return out
}

// fakeInit is a sleeping process in a new network namespace with lo up: a container's init
// as the runtime leaves it when createRuntime hooks run.
type fakeInit struct{ cmd *exec.Cmd }

func startInit(b testing.TB) *fakeInit {
	b.Helper()
	cmd := exec.Command("unshare", "--net", "sleep", "600")
	if err := cmd.Start(); err != nil {
		b.Fatalf("start fake init: %v", err)
	}
	f := &fakeInit{cmd: cmd}
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		b.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		ns, err := os.Readlink("/proc/" + pid + "/ns/net")
		if err == nil && ns != own && strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			f.stop()
			b.Fatalf("fake init %s did not enter its network namespace", pid)
		}
	}
	if out, err := exec.Command("nsenter", "--target", pid, "--net", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		f.stop()
		b.Fatalf("lo up: %v: %s", err, out)
	}
	return f
}

func (f *fakeInit) pid() int { return f.cmd.Process.Pid }

func (f *fakeInit) stop() {
	_ = f.cmd.Process.Kill()
	_ = f.cmd.Wait()
}

// writeOCIBundle writes a minimal config.json as podman would for a shielded container: own
// network namespace, default capabilities without NET_ADMIN/NET_RAW.
func writeOCIBundle(b testing.TB, dir string) {
	b.Helper()
	spec := ociSpec()
	data, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		b.Fatal(err)
	}
}

// ociSpec is the config.json writeOCIBundle writes.
func ociSpec() specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
		"CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
	return specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"/bin/true"}, Cwd: "/", Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps}},
		Root: &specs.Root{Path: "rootfs"},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
			{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}},
	}
}

func ociState(b testing.TB, pid int, bundle string, annotations map[string]string) []byte {
	b.Helper()
	data, err := json.Marshal(specs.State{Version: specs.Version, ID: fmt.Sprintf("%064x", pid), Status: specs.StateCreating,
		Pid: pid, Bundle: bundle, Annotations: annotations})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// defaultProfile loads the default profile composition (base + dev-standard).
func defaultProfile(b testing.TB) *profiles.Set {
	b.Helper()
	set, err := profiles.Loader{Bundled: profiles.BundledFS()}.Load(profiles.DefaultProfile)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// prepareOurs writes a state bundle as the shim does for `podman run --shield` with the
// default profile and resolver tier, and returns its directory. On the dnsmasq tier it
// records dnsmasqBin as the resolver binary the shim checked (empty: none recorded, the hook
// then looks for one itself).
func prepareOurs(b testing.TB, root, tier, dnsmasqBin string, set *profiles.Set) string {
	b.Helper()
	r, err := state.OpenRoot(root)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	bd, err := r.Create("bench-" + tier)
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	err = bd.Update(func(d *state.Data) error {
		d.Profiles = set.Profiles
		d.Resolved = state.EntriesOf(set)
		d.Mode = state.ModeUp
		d.Resolver = state.Resolver{Tier: tier, Upstreams: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
			LearnedTTL: state.Duration(time.Hour)}
		if tier == state.TierDnsmasq {
			d.Resolver.Binary = dnsmasqBin
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := bd.WriteFile(state.FileResolvConf, []byte("nameserver 127.0.0.1\noptions ndots:0\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	return bd.Dir()
}

// standInAddrs gives each name of the profile the addresses the original resolved on the host
// before every start (two IPv4, one IPv6: offline, stand-ins from the benchmarking ranges).
func standInAddrs(names []string) (v4, v6 []string) {
	for i := range names {
		v4 = append(v4, fmt.Sprintf("198.18.%d.10", i), fmt.Sprintf("198.19.%d.10", i))
		v6 = append(v6, fmt.Sprintf("2001:2:0:%x::10", i))
	}
	return v4, v6
}

// originalRuleset is the original's ruleset.nft under pasta (original-tool.md §3.2 "typical
// runtime ruleset.nft", §3.4): the enforce chains, then the host-resolved addresses as `add
// element` lines; on the dnsmasq tier the allow sets time out and the addresses are added
// as permanent (`timeout 0s`).
func originalRuleset(v4, v6 []string, dnsmasqTier bool) string {
	return original.Ruleset(v4, v6, dnsmasqTier)
}

// originalDnsmasqConf is the original's dnsmasq.conf (original-tool.md §4.3).
func originalDnsmasqConf(dir string, names []string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Generated by terok-shield (pid %d)\nlisten-address=127.0.0.1\nport=53\nbind-interfaces\nno-resolv\nno-hosts\n", os.Getpid())
	fmt.Fprintf(&s, "server=169.254.1.1\npid-file=%s/dnsmasq.pid\nlog-queries\nlog-facility=%s/dnsmasq.log\n", dir, dir)
	for _, n := range names {
		fmt.Fprintf(&s, "nftset=/%s/4#inet#terok_shield#allow_v4,6#inet#terok_shield#allow_v6\n", n)
	}
	return s.String()
}

// prepareOriginal writes the original's state_dir (0700: its hook refuses group/world-writable
// dirs) with ruleset.nft and, on the dnsmasq tier, dnsmasq.conf for the default profile.
func prepareOriginal(b *testing.B, dir string, dnsmasqTier bool, set *profiles.Set) {
	b.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	names := set.Domains
	v4, v6 := standInAddrs(names)
	files := map[string]string{
		"ruleset.nft":  originalRuleset(v4, v6, dnsmasqTier),
		"upstream.dns": "169.254.1.1\n",
		"dns.tier":     "dig\n",
	}
	if dnsmasqTier {
		files["dnsmasq.conf"] = originalDnsmasqConf(dir, names)
		files["resolv.conf"] = "nameserver 127.0.0.1\noptions ndots:0\n"
		files["dns.tier"] = "dnsmasq\n"
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHookCreateRuntime runs the createRuntime hook end to end, process start to exit,
// against a fresh network namespace per iteration, default profile: "ours" is `terok-shield
// hook createRuntime` (netlink ruleset, read-back verification, resolver, gate proof, bundle
// and audit updates); "original" is the original's mechanism, reconstructed in
// testdata/original_hook.py (python3, `nsenter nft -f -` of the pre-generated ruleset.nft, no
// verification, dnsmasq through nsenter). "dnsmasq" is the resolver tier (both start
// dnsmasq); "firewall" leaves the resolver out (our static tier, the original's dig tier), so
// it measures the firewall part alone. The namespace, and stopping dnsmasq afterwards, are
// outside the timer. Our hook does not wait for dnsmasq to listen (the gate does, before the
// workload runs), so the dnsmasq tier also reports resolver-ready-ms: the median time from the
// hook's start until its resolver listens, for both mechanisms.
//
//	go test -run '^$' -bench BenchmarkHookCreateRuntime -benchtime 20x ./hook
func BenchmarkHookCreateRuntime(b *testing.B) {
	dnsmasqBin := requireBench(b)
	tmp := b.TempDir()
	bin := buildBinary(b, tmp)
	ociDir := filepath.Join(tmp, "oci")
	if err := os.Mkdir(ociDir, 0o700); err != nil {
		b.Fatal(err)
	}
	writeOCIBundle(b, ociDir)
	set := defaultProfile(b)
	script, err := filepath.Abs(filepath.Join("testdata", "original_hook.py"))
	if err != nil {
		b.Fatal(err)
	}

	type mechanism struct {
		name        string
		argv        []string
		env         []string
		annotations map[string]string
		resolver    *dnsmasq.Instance // nil: the hook must not start one
	}
	for _, tier := range []string{state.TierDnsmasq, "firewall"} {
		resolves := tier == state.TierDnsmasq
		ourTier := tier
		if !resolves {
			ourTier = state.TierStatic
		}
		ours := prepareOurs(b, filepath.Join(tmp, "state"), ourTier, dnsmasqBin, set)
		origDir := filepath.Join(tmp, "original-"+tier)
		prepareOriginal(b, origDir, resolves, set)
		mechs := []mechanism{
			{
				name: "original", argv: []string{"/usr/bin/env", "python3", script, hook.StageCreateRuntime},
				// The original's descriptor had no env: the runtime starts the hook with an
				// empty environment and env(1) finds python3 on its default path.
				env: []string{},
				annotations: map[string]string{
					"terok.shield.profiles": strings.Join(set.Profiles, ":"), "terok.shield.name": "bench",
					"terok.shield.state_dir": origDir, "terok.shield.loopback_ports": "", "terok.shield.version": "12",
					"terok.shield.audit_enabled": "true", "terok.shield.upstream_dns": "169.254.1.1", "terok.shield.dns_tier": "dnsmasq",
				},
			},
			{
				name: "ours", argv: []string{bin, "hook", hook.StageCreateRuntime}, env: hookEnv,
				annotations: map[string]string{hook.AnnotationBundle: ours, hook.AnnotationVersion: hook.AnnotationVersionValue},
			},
		}
		if resolves {
			mechs[0].resolver = &dnsmasq.Instance{Binary: dnsmasqBin, ConfFile: filepath.Join(origDir, "dnsmasq.conf"),
				PIDFile: filepath.Join(origDir, "dnsmasq.pid")}
			mechs[1].resolver = &dnsmasq.Instance{Binary: dnsmasqBin, ConfFile: filepath.Join(ours, state.FileDnsmasqConf),
				PIDFile: filepath.Join(ours, state.FileDnsmasqPID)}
		}
		for _, m := range mechs {
			b.Run(tier+"/"+m.name, func(b *testing.B) {
				var ready []time.Duration
				for b.Loop() {
					b.StopTimer()
					init := startInit(b)
					cmd := exec.Command(m.argv[0], m.argv[1:]...)
					cmd.Args[0] = filepath.Base(m.argv[0])
					cmd.Env = m.env
					cmd.Stdin = bytes.NewReader(ociState(b, init.pid(), ociDir, m.annotations))
					var out bytes.Buffer
					cmd.Stdout, cmd.Stderr = &out, &out
					b.StartTimer()
					start := time.Now()
					err := cmd.Run()
					b.StopTimer()
					var running int
					var rerr error
					if m.resolver != nil {
						running, rerr = dnsmasq.Running(*m.resolver)
						if running != 0 {
							ctx, cancel := context.WithTimeout(context.Background(), dnsmasq.ReadyTimeout)
							rerr = dnsmasq.WaitReady(ctx, fmt.Sprintf("/proc/%d/ns/net", init.pid()), *m.resolver, running)
							cancel()
							ready = append(ready, time.Since(start))
						}
						if serr := dnsmasq.Stop(*m.resolver); serr != nil {
							b.Errorf("stop resolver: %v", serr)
						}
					}
					init.stop()
					if err != nil {
						b.Fatalf("hook: %v\n%s", err, out.Bytes())
					}
					if m.resolver != nil && (running == 0 || rerr != nil) {
						b.Fatalf("hook exited 0 but no resolver runs or listens (%v)\n%s", rerr, out.Bytes())
					}
					b.StartTimer()
				}
				if len(ready) > 0 {
					slices.Sort(ready)
					b.ReportMetric(float64(ready[len(ready)/2].Microseconds())/1000, "resolver-ready-ms")
				}
			})
		}
	}
}
