// SPDX-License-Identifier: Apache-2.0

package hook_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/audit"
	"github.com/terok-ai/terok-shield/dnsmasq"
	"github.com/terok-ai/terok-shield/gate"
	"github.com/terok-ai/terok-shield/hook"
	"github.com/terok-ai/terok-shield/internal/fulldisk"
	"github.com/terok-ai/terok-shield/internal/netnstest"
	"github.com/terok-ai/terok-shield/state"
)

// requireHook stops the test unless root, ip, nsenter, nft, unshare, mount and a usable dnsmasq
// are there (fails instead under CI / TEROK_SHIELD_REQUIRE_PRIVILEGED=1).
func requireHook(t *testing.T) string {
	t.Helper()
	netnstest.Require(t)
	bin, err := dnsmasq.Find()
	for _, tool := range []string{"nft", "unshare", "mount", "umount"} {
		if err == nil {
			_, err = exec.LookPath(tool)
		}
	}
	if err != nil {
		if netnstest.Mandatory() {
			t.Fatalf("hook test prerequisites: %v", err)
		}
		t.Skipf("hook test prerequisites: %v", err)
	}
	return bin
}

// hookFixture is one container start as the runtime presents it to the createRuntime hook: a
// fake init in its own network namespace, an OCI bundle, a state bundle prepared like the shim
// does, and the OCI state on stdin.
type hookFixture struct {
	root   string // temporary directory holding everything
	oci    string // OCI bundle directory (config.json)
	bundle string // state bundle directory
	init   *fakeInit
	stage  string
	pid    int
	ann    map[string]string
	stdin  []byte // nil: the OCI state of pid, oci and ann
}

func newFixture(t *testing.T, stateRoot, tier string) *hookFixture {
	t.Helper()
	f := &hookFixture{root: t.TempDir(), stage: hook.StageCreateRuntime}
	if stateRoot == "" {
		stateRoot = filepath.Join(f.root, "state")
	}
	f.oci = filepath.Join(f.root, "oci")
	if err := os.Mkdir(f.oci, 0o700); err != nil {
		t.Fatal(err)
	}
	writeOCIBundle(t, f.oci)
	f.bundle = prepareOurs(t, stateRoot, tier, "", defaultProfile(t))
	f.init = startInit(t)
	t.Cleanup(f.init.stop)
	f.pid = f.init.pid()
	f.ann = map[string]string{hook.AnnotationBundle: f.bundle, hook.AnnotationVersion: hook.AnnotationVersionValue}
	return f
}

// run runs the real binary as the hooks.d descriptor does and returns its exit code and stderr.
func (f *hookFixture) run(t *testing.T, bin string) (int, string) {
	t.Helper()
	stdin := f.stdin
	if stdin == nil {
		stdin = ociState(t, f.pid, f.oci, f.ann)
	}
	cmd := exec.Command(bin, "hook", f.stage)
	cmd.Env = hookEnv
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stdout.Len() != 0 {
		t.Errorf("hook wrote to stdout: %q", stdout.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	}
	t.Fatalf("run hook: %v", err)
	return 0, ""
}

// proof is the gate proof the hook writes last; without it the container's init refuses to run.
func (f *hookFixture) proof() string { return filepath.Join(f.bundle, hook.GateDir, gate.ProofFile) }

// writeSpec replaces the OCI bundle's config.json with spec.
func (f *hookFixture) writeSpec(t *testing.T, spec specs.Spec) {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.oci, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// updateData changes the state bundle as the shim would.
func (f *hookFixture) updateData(t *testing.T, fn func(*state.Data)) {
	t.Helper()
	b, err := state.OpenDir(f.bundle, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Update(func(d *state.Data) error { fn(d); return nil }); err != nil {
		t.Fatal(err)
	}
}

// withCap returns the default spec with capability added to one set.
func withCap(capability string, set func(*specs.LinuxCapabilities) *[]string) specs.Spec {
	spec := ociSpec()
	s := set(spec.Process.Capabilities)
	*s = append(*s, capability)
	return spec
}

func writeFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

func wantOneLine(t *testing.T, stage, stderr, want string) {
	t.Helper()
	line := strings.TrimSuffix(stderr, "\n")
	prefix := "Error: terok-shield hook " + stage + ": "
	if strings.Contains(line, "\n") || !strings.HasPrefix(line, prefix) || !strings.Contains(line, want) {
		t.Errorf("stderr: want one line %q… naming %q, got %q", prefix, want, stderr)
	}
}

// TestFailClosed runs the real `terok-shield hook createRuntime` against a fake container
// (sleeping init in a new network namespace, OCI bundle, state bundle as the shim prepares it)
// with one fault each: the original's fail-closed table (original-tool.md §6.4) and ours. Every
// fault must exit non-zero with one line on stderr naming the cause, and leave no gate proof
// (the proof is what lets the container's init exec the workload; for faults after the ruleset
// is applied the table may remain). The control is the same setup without a fault.
func TestFailClosed(t *testing.T) {
	requireHook(t)
	bin := buildBinary(t, t.TempDir())
	bounding := func(c *specs.LinuxCapabilities) *[]string { return &c.Bounding }
	effective := func(c *specs.LinuxCapabilities) *[]string { return &c.Effective }
	ambient := func(c *specs.LinuxCapabilities) *[]string { return &c.Ambient }
	tests := []struct {
		name   string
		tier   string // state.TierStatic when empty
		inject func(t *testing.T, f *hookFixture)
		want   string // substring of the one stderr line; "" for the control (exit 0)
	}{
		{name: "control static tier", inject: func(*testing.T, *hookFixture) {}},
		{name: "control dnsmasq tier", tier: state.TierDnsmasq, inject: func(*testing.T, *hookFixture) {}},

		{name: "stdin not JSON", want: "decode OCI state from stdin: invalid character",
			inject: func(_ *testing.T, f *hookFixture) { f.stdin = []byte("not json") }},
		{name: "OCI state not an object", want: "decode OCI state from stdin: json: cannot unmarshal array",
			inject: func(_ *testing.T, f *hookFixture) { f.stdin = []byte(`["id"]`) }},
		{name: "OCI state without id", want: "OCI state lacks id",
			inject: func(_ *testing.T, f *hookFixture) {
				f.stdin = fmt.Appendf(nil, `{"ociVersion":"1.2.0","status":"creating","pid":%d,"bundle":%q}`, f.pid, f.oci)
			}},
		{name: "OCI state without bundle", want: `absolute bundle path (id "x", bundle "")`,
			inject: func(_ *testing.T, f *hookFixture) {
				f.stdin = fmt.Appendf(nil, `{"ociVersion":"1.2.0","id":"x","status":"creating","pid":%d}`, f.pid)
			}},
		{name: "annotations not an object", want: "cannot unmarshal array into Go struct field State.annotations",
			inject: func(_ *testing.T, f *hookFixture) {
				f.stdin = fmt.Appendf(nil, `{"ociVersion":"1.2.0","id":"x","status":"creating","pid":%d,"bundle":%q,"annotations":[%q]}`, f.pid, f.oci, f.bundle)
			}},

		{name: "bundle annotation relative", want: "not a clean absolute path",
			inject: func(_ *testing.T, f *hookFixture) { f.ann[hook.AnnotationBundle] = "state/containers/bench-static" }},
		{name: "bundle annotation with ..", want: "not a clean absolute path",
			inject: func(_ *testing.T, f *hookFixture) {
				f.ann[hook.AnnotationBundle] = f.bundle + "/../" + filepath.Base(f.bundle)
			}},
		{name: "bundle annotation through a symlink", want: "is a symlink",
			inject: func(t *testing.T, f *hookFixture) {
				link := filepath.Join(f.root, "link")
				if err := os.Symlink(filepath.Join(f.root, "state"), link); err != nil {
					t.Fatal(err)
				}
				f.ann[hook.AnnotationBundle] = filepath.Join(link, "containers", filepath.Base(f.bundle))
			}},
		{name: "bundle nonexistent", want: "no such file or directory",
			inject: func(_ *testing.T, f *hookFixture) {
				f.ann[hook.AnnotationBundle] = filepath.Join(filepath.Dir(f.bundle), "ghost")
			}},
		{name: "bundle a file", want: "not a directory",
			inject: func(t *testing.T, f *hookFixture) {
				p := filepath.Join(filepath.Dir(f.bundle), "afile")
				writeFile(t, p, "", 0o600)
				f.ann[hook.AnnotationBundle] = p
			}},
		{name: "bundle owned by another uid", want: "owned by uid 65534, want 0",
			inject: func(t *testing.T, f *hookFixture) {
				if err := os.Chown(f.bundle, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "bundle group-writable 0770", want: "mode 0770 allows group or others",
			inject: func(t *testing.T, f *hookFixture) {
				if err := os.Chmod(f.bundle, 0o770); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "bundle world-writable 0707", want: "mode 0707 allows group or others",
			inject: func(t *testing.T, f *hookFixture) {
				if err := os.Chmod(f.bundle, 0o707); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "bundle format unsupported", want: "bundle format 2 is not supported",
			inject: func(t *testing.T, f *hookFixture) {
				p := filepath.Join(f.bundle, state.FileBundle)
				raw, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, p, strings.Replace(string(raw), `"format": 1,`, `"format": 2,`, 1), 0o600)
			}},
		{name: "bundle.json garbage", want: "parse bundle.json: invalid character",
			inject: func(t *testing.T, f *hookFixture) {
				writeFile(t, filepath.Join(f.bundle, state.FileBundle), "{garbage\x00 not json", 0o600)
			}},

		{name: "version annotation missing", want: `annotation terok.shield.version="": this terok-shield reads version 1`,
			inject: func(_ *testing.T, f *hookFixture) { delete(f.ann, hook.AnnotationVersion) }},
		{name: "version annotation wrong", want: `annotation terok.shield.version="12"`,
			inject: func(_ *testing.T, f *hookFixture) { f.ann[hook.AnnotationVersion] = "12" }},
		{name: "unknown stage", want: `unknown hook stage "prestart"`,
			inject: func(_ *testing.T, f *hookFixture) { f.stage = "prestart" }},

		{name: "pid missing", want: "OCI state has no container pid",
			inject: func(_ *testing.T, f *hookFixture) { f.pid = 0 }},
		{name: "pid exited", want: "/stat: no such file or directory",
			inject: func(t *testing.T, f *hookFixture) {
				cmd := exec.Command("true")
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
				f.pid = cmd.Process.Pid
			}},
		{name: "pid in the host netns", want: "container runs in the hook's own (host) network namespace",
			inject: func(_ *testing.T, f *hookFixture) { f.pid = os.Getpid() }},

		{name: "config.json missing", want: "open container config",
			inject: func(t *testing.T, f *hookFixture) {
				if err := os.Remove(filepath.Join(f.oci, "config.json")); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "config.json unparsable", want: "decode container config",
			inject: func(t *testing.T, f *hookFixture) { writeFile(t, filepath.Join(f.oci, "config.json"), "{", 0o600) }},
		{name: "network host", want: "--network host",
			inject: func(t *testing.T, f *hookFixture) {
				spec := ociSpec()
				spec.Linux.Namespaces = spec.Linux.Namespaces[:1] // pid only
				f.writeSpec(t, spec)
			}},
		{name: "netns joined under /proc", want: "joins another process's network namespace (/proc/1/ns/net",
			inject: func(t *testing.T, f *hookFixture) {
				spec := ociSpec()
				spec.Linux.Namespaces[1].Path = "/proc/1/ns/net"
				f.writeSpec(t, spec)
			}},
		{name: "NET_ADMIN bounding", want: "holds CAP_NET_ADMIN in its bounding capability set",
			inject: func(t *testing.T, f *hookFixture) { f.writeSpec(t, withCap("CAP_NET_ADMIN", bounding)) }},
		{name: "NET_RAW effective", want: "holds CAP_NET_RAW in its effective capability set",
			inject: func(t *testing.T, f *hookFixture) { f.writeSpec(t, withCap("CAP_NET_RAW", effective)) }},
		{name: "SYS_ADMIN ambient", want: "holds CAP_SYS_ADMIN in its ambient capability set",
			inject: func(t *testing.T, f *hookFixture) { f.writeSpec(t, withCap("CAP_SYS_ADMIN", ambient)) }},

		// After the ruleset is applied (a resolver that fails: TestFailClosedResolver).
		{name: "audit log unwritable", want: "record the setup in the audit log: ",
			inject: func(t *testing.T, f *hookFixture) {
				if err := os.Mkdir(filepath.Join(f.bundle, state.FileAudit), 0o700); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tier := tt.tier
			if tier == "" {
				tier = state.TierStatic
			}
			f := newFixture(t, "", tier)
			tt.inject(t, f)
			code, stderr := f.run(t, bin)
			if tier == state.TierDnsmasq {
				stopResolver(t, f.bundle)
			}
			_, perr := os.Stat(f.proof())
			if tt.want == "" {
				if code != 0 || stderr != "" || perr != nil {
					t.Fatalf("control: exit %d, proof: %v, stderr: %q", code, perr, stderr)
				}
				return
			}
			if code == 0 {
				t.Errorf("exit 0, want non-zero (stderr %q)", stderr)
			}
			wantOneLine(t, f.stage, stderr, tt.want)
			if !errors.Is(perr, os.ErrNotExist) {
				t.Errorf("gate proof %s: want none, got %v", f.proof(), perr)
			}
		})
	}
}

// fakeResolver records a shell script with body as the bundle's dnsmasq binary.
func fakeResolver(t *testing.T, f *hookFixture, body string) {
	p := filepath.Join(f.root, "dnsmasq")
	writeFile(t, p, "#!/bin/sh\n"+body+"\n", 0o755)
	f.updateData(t, func(d *state.Data) { d.Resolver.Binary = p })
}

// TestFailClosedResolver: the hook launches the resolver without waiting for it, so a resolver
// that fails at start-up stops the workload in one of two places. If it has already ended when
// the hook is about to write the gate proof, the hook fails with its message and writes none;
// otherwise the proof names the resolver, and the gate (the container's init) refuses the
// workload because nothing listens there. Either way the workload never runs.
func TestFailClosedResolver(t *testing.T) {
	requireHook(t)
	bin := buildBinary(t, t.TempDir())
	for _, tt := range []struct{ name, body, msg string }{
		{"dnsmasq exits 1", "echo 'dnsmasq: bad option' >&2; exit 1", "bad option"},
		{"dnsmasq exits 0 at once", "exit 0", "ended at start-up"},
		{"dnsmasq exits after 20ms", "sleep 0.02; echo 'dnsmasq: failed to create listening socket' >&2; exit 2", "listening socket"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "", state.TierDnsmasq)
			fakeResolver(t, f, tt.body)
			code, stderr := f.run(t, bin)
			raw, perr := os.ReadFile(f.proof())
			if code != 0 {
				wantOneLine(t, f.stage, stderr, "start resolver: ")
				if !strings.Contains(stderr, tt.msg) {
					t.Errorf("stderr %q lacks dnsmasq's message %q", stderr, tt.msg)
				}
				if !errors.Is(perr, os.ErrNotExist) {
					t.Errorf("gate proof %s: want none, got %v", f.proof(), perr)
				}
				return
			}
			p, err := gate.ParseProof(raw)
			if err != nil {
				t.Fatalf("hook exited 0 but the proof is unreadable: %v", err)
			}
			if p.Resolver != dnsmasq.ReadyAddr.String() {
				t.Fatalf("hook exited 0 with a failing resolver, and the proof does not name it: %+v", p)
			}
			// The gate's wait, from inside the container's network namespace.
			if err := inNetNS(f.pid, func() error { return gate.WaitResolver(p.Resolver, 200*time.Millisecond) }); err == nil {
				t.Error("the gate would start the workload: something listens on the resolver address")
			}
		})
	}
}

// inNetNS runs fn on a thread inside the network namespace of pid (the thread is discarded).
func inNetNS(pid int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// stopResolver stops a dnsmasq the hook may have started for the bundle.
func stopResolver(t *testing.T, bundle string) {
	t.Helper()
	bin, err := dnsmasq.Find()
	if err != nil {
		t.Fatal(err)
	}
	in := dnsmasq.Instance{Binary: bin, ConfFile: filepath.Join(bundle, state.FileDnsmasqConf), PIDFile: filepath.Join(bundle, state.FileDnsmasqPID)}
	if err := dnsmasq.Stop(in); err != nil {
		t.Errorf("stop resolver: %v", err)
	}
}

// TestFailClosedDiskFull: the state bundle's filesystem is full when the createRuntime hook
// records the setup in the audit log. The hook must refuse the start (non-zero exit, one line
// naming the audit log and ENOSPC, no gate proof), and the audit lines recorded before are
// intact, byte for byte. The control is the same bundle once space is freed: the hook succeeds
// and appends after the earlier lines.
func TestFailClosedDiskFull(t *testing.T) {
	requireHook(t)
	bin := buildBinary(t, t.TempDir())
	mnt := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	f := newFixture(t, mnt, state.TierStatic)
	auditPath := filepath.Join(f.bundle, state.FileAudit)
	before := seedAudit(t, f.bundle)
	filler := filepath.Join(mnt, "filler")
	fulldisk.Fill(t, filler)

	code, stderr := f.run(t, bin)
	if code == 0 {
		t.Errorf("disk full: exit 0, want non-zero (stderr %q)", stderr)
	}
	wantOneLine(t, f.stage, stderr, "record the setup in the audit log: append audit event setup to "+auditPath+": ")
	if !strings.HasSuffix(strings.TrimSpace(stderr), ": no space left on device") {
		t.Errorf("disk full: stderr does not end in ENOSPC: %q", stderr)
	}
	if _, err := os.Stat(f.proof()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("disk full: gate proof %s: want none, got %v", f.proof(), err)
	}
	after, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(before), string(after)); d != "" {
		t.Errorf("disk full: audit log changed (-before +after):\n%s", d)
	}

	// Control: with space again, the same start succeeds and the earlier records stay.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	code, stderr = f.run(t, bin)
	if _, err := os.Stat(f.proof()); code != 0 || err != nil {
		t.Fatalf("control with space: exit %d, proof: %v, stderr %q", code, err, stderr)
	}
	after, err = os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(after, before) {
		t.Errorf("control with space: the earlier audit lines are not a prefix of the log:\n%s", after)
	}
	var actions []audit.Action
	sc := bufio.NewScanner(bytes.NewReader(after))
	for sc.Scan() {
		var ev struct{ Action audit.Action }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		actions = append(actions, ev.Action)
	}
	want := []audit.Action{audit.ActionAllow, audit.ActionAllow, audit.ActionAllow, audit.ActionSetup}
	if d := cmp.Diff(want, actions); d != "" {
		t.Errorf("audit actions after the control (-want +got):\n%s", d)
	}
}

// seedAudit records three events in the bundle's audit log, the last padded so the log ends on
// a page boundary (tmpfs allocates in pages: any further append then needs a free page), and
// returns the log's bytes.
func seedAudit(t *testing.T, bundle string) []byte {
	t.Helper()
	log, err := audit.Open(bundle, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ev := audit.Event{Container: filepath.Base(bundle), Action: audit.ActionAllow, Target: "192.0.2.1", Source: "cli"}
	for range 2 {
		if err := log.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	return fulldisk.PadAuditToPage(t, bundle)
}
