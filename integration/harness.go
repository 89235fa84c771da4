// SPDX-License-Identifier: Apache-2.0

// Package integration holds the end-to-end tests that run real podman (rootful and rootless)
// inside the closed topology of package testnet, with the probe image built from
// internal/probe. This file is the harness: prerequisites, the probe image, and the Podman
// runner. Every podman invocation runs inside the topology's "host" namespace (nsenter --net),
// so containers can only ever reach the test's own "wan" namespace.
package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testbin"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// Mode selects rootful or rootless podman.
type Mode int

// Podman modes.
const (
	Rootful Mode = iota
	Rootless
)

func (m Mode) String() string {
	if m == Rootless {
		return "rootless"
	}
	return "rootful"
}

// TestUserName is the rootless account (env TEROK_TEST_USER overrides).
func TestUserName() string {
	if u := os.Getenv("TEROK_TEST_USER"); u != "" {
		return u
	}
	return "terok-test"
}

// mustRun reports whether missing prerequisites fail rather than skip.
func mustRun() bool {
	return os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1"
}

// Require checks root, podman, nsenter, setpriv, runc and the rootless test user. Missing
// prerequisites fail the test under CI or TEROK_SHIELD_REQUIRE_PRIVILEGED=1, else skip it.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"podman", "nsenter", "setpriv", "runc", "ip", "slirp4netns"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := testnet.LookupUser(TestUserName()); err != nil {
		missing = append(missing, "user "+TestUserName()+" (scripts/install-deps.sh creates it)")
	}
	if len(missing) == 0 {
		return
	}
	if mustRun() {
		t.Fatalf("e2e prerequisites missing: %s", strings.Join(missing, ", "))
	}
	t.Skipf("e2e prerequisites missing: %s", strings.Join(missing, ", "))
}

// Harness holds what every test of one test binary shares: a world-readable work directory
// (the rootless user must read it even when the repository is not readable to it), the probe
// binary and image tarball, per-mode containers.conf files and the imported image per mode.
type Harness struct {
	Dir      string // 0755 temp dir under /tmp
	ProbeBin string
	ImageTar string
	ImageRef string // localhost/terok-probe:<content hash>
	User     testnet.User
	// ShimBinary, when set before the first ShimDir call, is the prebuilt static terok-shield
	// to use instead of building one from this module.
	ShimBinary string

	once    sync.Once
	initErr error
	mu      sync.Mutex
	imports map[Mode]*importOnce
	shim    shimBuild
}

type importOnce struct {
	once sync.Once
	err  error
}

// NewHarness returns an unbuilt harness; Init builds it lazily.
func NewHarness() *Harness { return &Harness{imports: map[Mode]*importOnce{}} }

// Close removes the work directory (images stay cached in podman's stores by content hash).
func (h *Harness) Close() error {
	if h.Dir == "" {
		return nil
	}
	return os.RemoveAll(h.Dir)
}

// Init builds the probe, the image tarball and the containers.conf files once.
func (h *Harness) Init() error {
	h.once.Do(func() { h.initErr = h.init() })
	return h.initErr
}

func (h *Harness) init() error {
	u, err := testnet.LookupUser(TestUserName())
	if err != nil {
		return err
	}
	h.User = u
	if h.Dir, err = os.MkdirTemp("/tmp", "terok-e2e-"); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if err := os.Chmod(h.Dir, 0o755); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	h.ProbeBin = filepath.Join(h.Dir, "probe")
	if err := testbin.Build(h.ProbeBin, "github.com/terok-ai/terok-shield/internal/probe/cmd/probe"); err != nil {
		return err
	}
	sleeper := filepath.Join(h.Dir, "sleeper")
	if err := testbin.Build(sleeper, "github.com/terok-ai/terok-shield/integration/internal/sleeper"); err != nil {
		return err
	}
	tarball, err := probeImageTar(h.ProbeBin, sleeper)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(tarball)
	h.ImageRef = "localhost/terok-probe:" + hex.EncodeToString(sum[:6])
	h.ImageTar = filepath.Join(h.Dir, "probe-image.tar")
	if err := os.WriteFile(h.ImageTar, tarball, 0o644); err != nil {
		return fmt.Errorf("write image tar: %w", err)
	}
	for _, m := range []Mode{Rootful, Rootless} {
		if err := os.WriteFile(h.ConfPath(m), []byte(containersConf(m)), 0o644); err != nil {
			return fmt.Errorf("write containers.conf: %w", err)
		}
	}
	return nil
}

// ConfPath is the containers.conf used for mode m (passed as CONTAINERS_CONF).
func (h *Harness) ConfPath(m Mode) string {
	return filepath.Join(h.Dir, "containers-"+m.String()+".conf")
}

// containersConf is the private configuration: runc (crun fails on this machine), no
// default ulimits (raising rlimits is forbidden here), file events and cgroupfs for rootless
// (no systemd user session).
func containersConf(m Mode) string {
	c := "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\nevents_logger = \"file\"\n"
	if m == Rootless {
		c += "cgroup_manager = \"cgroupfs\"\n"
	}
	return c
}

// probeImageTar returns a deterministic rootfs tarball holding /bin/probe, /bin/sleeper (a
// workload that waits for SIGTERM, for `podman exec` probing) and minimal /etc.
func probeImageTar(bin, sleeper string) ([]byte, error) {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read probe: %w", err)
	}
	sleeperExe, err := os.ReadFile(sleeper)
	if err != nil {
		return nil, fmt.Errorf("read sleeper: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	dirs := []struct {
		name string
		mode int64
	}{{"bin/", 0o755}, {"dev/", 0o755}, {"etc/", 0o755}, {"proc/", 0o555}, {"root/", 0o700}, {"sys/", 0o555}, {"tmp/", 0o1777}}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, ModTime: mtime}); err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/probe", 0o755, exe},
		{"bin/sleeper", 0o755, sleeperExe},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/probe\nnobody:x:65534:65534:nobody:/:/bin/probe\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
		{"etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n")},
		{"etc/resolv.conf", 0o644, []byte("nameserver " + testnet.DNSV4 + "\n")},
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}

// Podman runs podman (or a shim named podman: Bin) in mode inside n's host namespace.
type Podman struct {
	Mode Mode
	Net  *testnet.Net
	H    *Harness
	// Bin is the podman executable (default "podman"); point it at the shim to test it.
	Bin string
	// Env is added to the environment (after CONTAINERS_CONF and, rootless, the user's).
	Env []string
}

// RunResult is what a podman invocation produced.
type RunResult struct {
	Args    []string
	Stdout  string
	Stderr  string
	Exit    int
	Elapsed time.Duration
}

func (r RunResult) String() string {
	return fmt.Sprintf("podman %s: exit %d (%s)\nstdout: %s\nstderr: %s", strings.Join(r.Args, " "), r.Exit, r.Elapsed.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// Command builds the exec.Cmd for podman args.
func (p *Podman) Command(ctx context.Context, args ...string) *exec.Cmd {
	bin := p.Bin
	if bin == "" {
		bin = "podman"
	}
	argv := append([]string{bin}, args...)
	extra := append([]string{"CONTAINERS_CONF=" + p.H.ConfPath(p.Mode)}, p.Env...)
	if p.Mode == Rootless {
		return p.Net.UserCommand(ctx, p.H.User, extra, argv...)
	}
	env := append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd := p.Net.HostCommand(ctx, append(env, extra...), argv...)
	cmd.Dir = "/"
	return cmd
}

// Run runs podman with args. The error is non-nil only when podman could not be started or
// the context expired; a non-zero exit is reported in RunResult.Exit.
func (p *Podman) Run(ctx context.Context, args ...string) (RunResult, error) {
	cmd := p.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := RunResult{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.Exit = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("podman %s: %w (stderr: %s)", strings.Join(args, " "), err, r.Stderr)
	}
	return r, nil
}

// EnsureImage imports the probe image into this mode's store once (skipped when the content
// hash tag already exists there).
func (p *Podman) EnsureImage(ctx context.Context) error {
	h := p.H
	h.mu.Lock()
	io, ok := h.imports[p.Mode]
	if !ok {
		io = &importOnce{}
		h.imports[p.Mode] = io
	}
	h.mu.Unlock()
	io.once.Do(func() {
		r, err := p.Run(ctx, "image", "exists", h.ImageRef)
		if err != nil {
			io.err = err
			return
		}
		if r.Exit == 0 {
			return
		}
		if r, err = p.Run(ctx, "import", "--quiet", h.ImageTar, h.ImageRef); err != nil {
			io.err = err
		} else if r.Exit != 0 {
			io.err = fmt.Errorf("import probe image: %s", r)
		}
	})
	return io.err
}

// DefaultRunArgs are the run options every probe container gets: removed on exit and pointed
// at the test DNS (never at slirp4netns's forwarder or the machine's resolvers).
func DefaultRunArgs() []string { return []string{"--rm", "--dns", testnet.DNSV4} }

// Probe runs `/bin/probe probeArgs...` in a fresh container created with runArgs (use
// DefaultRunArgs as a base) and decodes its JSON result.
func (p *Podman) Probe(ctx context.Context, runArgs []string, probeArgs ...string) (probe.Result, RunResult, error) {
	if err := p.EnsureImage(ctx); err != nil {
		return probe.Result{}, RunResult{}, err
	}
	args := append(append([]string{"run"}, runArgs...), p.H.ImageRef, "/bin/probe")
	args = append(args, probeArgs...)
	r, err := p.Run(ctx, args...)
	return decodeProbe(r, err, "probe container")
}

// decodeProbe turns a podman run or exec of the probe into its result: the command must have
// exited 0 and printed one probe result.
func decodeProbe(r RunResult, err error, what string) (probe.Result, RunResult, error) {
	if err != nil {
		return probe.Result{}, r, err
	}
	if r.Exit != 0 {
		return probe.Result{}, r, fmt.Errorf("%s failed: %s", what, r)
	}
	res, err := probe.Decode([]byte(strings.TrimSpace(r.Stdout)))
	if err != nil {
		return res, r, fmt.Errorf("%w\n%s", err, r)
	}
	return res, r, nil
}
