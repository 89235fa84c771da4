// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/probe"
	"github.com/terok-ai/terok-shield/internal/testbin"
	"github.com/terok-ai/terok-shield/internal/testnet"
)

// RealPodman is the podman the shim hands over to (found on PATH after the shim dir).
const RealPodman = "/usr/bin/podman"

// shimBuild is the terok-shield binary of this test binary, built once.
type shimBuild struct {
	once sync.Once
	dir  string // 0755: terok-shield and the podman symlink
	err  error
}

// EnvShimBinary names a prebuilt static terok-shield to test instead of building one.
const EnvShimBinary = "TEROK_E2E_SHIM"

// ShimDir builds terok-shield (static: it is also the init inside containers) into a 0755
// directory under the harness work dir, with a `podman -> terok-shield` symlink next to it.
// With Harness.ShimBinary or $TEROK_E2E_SHIM set, that binary is copied there instead.
func (h *Harness) ShimDir() (string, error) {
	shim := &h.shim
	shim.once.Do(func() {
		dir := filepath.Join(h.Dir, "shim")
		if err := os.Mkdir(dir, 0o755); err != nil {
			shim.err = fmt.Errorf("shim dir: %w", err)
			return
		}
		bin := filepath.Join(dir, "terok-shield")
		pre := h.ShimBinary
		if pre == "" {
			pre = os.Getenv(EnvShimBinary)
		}
		if pre != "" {
			shim.err = copyExecutable(pre, bin)
		} else {
			shim.err = BuildShim(bin)
		}
		if shim.err != nil {
			return
		}
		if err := os.Symlink("terok-shield", filepath.Join(dir, "podman")); err != nil {
			shim.err = fmt.Errorf("podman symlink: %w", err)
			return
		}
		shim.dir = dir
	})
	return shim.dir, shim.err
}

// BuildShim builds the static terok-shield binary at out (mode 0755).
func BuildShim(out string) error {
	if err := testbin.BuildShield(out, "github.com/terok-ai/terok-shield/shim"); err != nil {
		return err
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return fmt.Errorf("build terok-shield: %w", err)
	}
	return nil
}

func copyExecutable(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy terok-shield: %w", err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return fmt.Errorf("copy terok-shield: %w", err)
	}
	return nil
}

// ShieldedPodman runs podman through the terok-shield shim with a private state and config
// dir owned by the mode's user. Embedded Podman.Run goes through the shim; Real runs the real
// podman with the same containers.conf, for inspection and cleanup.
type ShieldedPodman struct {
	Podman
	// StateDir is TEROK_SHIELD_STATE_DIR (0700, owned by the mode's user).
	StateDir string
	// ConfigDir is TEROK_SHIELD_CONFIG_DIR; profiles go to ConfigDir/profiles.
	ConfigDir string
	// Real is the same mode's podman without the shim.
	Real *Podman

	names []string
	base  string
}

// NewShielded prepares a shim-backed podman for mode in n (see NewShieldedPodman) and closes
// it at test cleanup.
func NewShielded(t testing.TB, h *Harness, n *testnet.Net, mode Mode) *ShieldedPodman {
	t.Helper()
	sp, err := NewShieldedPodman(h, n, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sp.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return sp
}

// NewShieldedPodman prepares a shim-backed podman for mode in n: fresh state and config dirs
// under the harness work dir. Close removes them and any containers named through Name.
func NewShieldedPodman(h *Harness, n *testnet.Net, mode Mode) (*ShieldedPodman, error) {
	shimDir, err := h.ShimDir()
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	base := filepath.Join(h.Dir, "shield-"+mode.String()+"-"+hex.EncodeToString(suffix))
	if err := os.Mkdir(base, 0o755); err != nil {
		return nil, fmt.Errorf("shield dirs: %w", err)
	}
	sp := &ShieldedPodman{StateDir: filepath.Join(base, "state"), ConfigDir: filepath.Join(base, "config"), base: base}
	for _, d := range []string{sp.StateDir, sp.ConfigDir, filepath.Join(sp.ConfigDir, "profiles")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, errors.Join(fmt.Errorf("shield dirs: %w", err), os.RemoveAll(base))
		}
		if mode == Rootless {
			if err := os.Chown(d, h.User.UID, h.User.GID); err != nil {
				return nil, errors.Join(fmt.Errorf("shield dirs: %w", err), os.RemoveAll(base))
			}
		}
	}
	sp.Podman = Podman{Mode: mode, Net: n, H: h, Bin: filepath.Join(shimDir, "podman"), Env: []string{
		"PATH=" + shimDir + ":/usr/bin:/bin:/usr/sbin:/sbin",
		"TEROK_SHIELD_STATE_DIR=" + sp.StateDir,
		"TEROK_SHIELD_CONFIG_DIR=" + sp.ConfigDir,
		"TEROK_SHIELD_UPSTREAM=" + testnet.DNSV4,
	}}
	sp.Real = &Podman{Mode: mode, Net: n, H: h, Bin: RealPodman}
	return sp, nil
}

// Close force-removes the containers named through Name and deletes the state and config dirs.
func (sp *ShieldedPodman) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	if len(sp.names) > 0 {
		r, err := sp.Real.Run(ctx, append([]string{"rm", "-f", "--ignore", "--time", "5"}, sp.names...)...)
		if err := mustExit(r, err, 0); err != nil {
			errs = append(errs, fmt.Errorf("remove containers: %w", err))
		}
	}
	if err := os.RemoveAll(sp.base); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Name returns a unique container name and removes that container at test cleanup.
func (sp *ShieldedPodman) Name(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	sp.names = append(sp.names, name)
	return name
}

// WriteProfile writes ConfigDir/profiles/NAME.txt (owned by the mode's user).
func (sp *ShieldedPodman) WriteProfile(name string, lines ...string) error {
	p := filepath.Join(sp.ConfigDir, "profiles", name+".txt")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	if sp.Mode == Rootless {
		if err := os.Chown(p, sp.H.User.UID, sp.H.User.GID); err != nil {
			return fmt.Errorf("write profile: %w", err)
		}
	}
	return nil
}

// HooksDir is the hooks.d directory the shim writes.
func (sp *ShieldedPodman) HooksDir() string { return filepath.Join(sp.StateDir, "hooks.d") }

// Bundle is the state bundle directory of container name.
func (sp *ShieldedPodman) Bundle(name string) string {
	return filepath.Join(sp.StateDir, "containers", name)
}

// Exists reports whether the real podman knows container name.
func (sp *ShieldedPodman) Exists(ctx context.Context, name string) (bool, error) {
	r, err := sp.Real.Run(ctx, "container", "exists", name)
	if err != nil {
		return false, err
	}
	switch r.Exit {
	case 0:
		return true, nil
	case 1:
		return false, nil
	}
	return false, fmt.Errorf("container exists: %s", r)
}

// ProbeShielded runs the probe in a fresh shielded (--shield=profiles) container removed on
// exit; the container must exit 0 (the probe always does once it ran).
func (sp *ShieldedPodman) ProbeShielded(ctx context.Context, profiles string, probeArgs ...string) (probe.Result, RunResult, error) {
	return sp.Probe(ctx, []string{"--rm", "--shield=" + profiles}, probeArgs...)
}

// ProbeIn runs the probe with `exec` in a running container (no new container, same firewall).
func (sp *ShieldedPodman) ProbeIn(ctx context.Context, name string, probeArgs ...string) (probe.Result, RunResult, error) {
	r, err := sp.Run(ctx, append([]string{"exec", name, "/bin/probe"}, probeArgs...)...)
	return decodeProbe(r, err, "probe exec")
}

// errExit is returned by mustExit for an unexpected exit code.
var errExit = errors.New("unexpected exit code")

// mustExit checks a RunResult's exit code.
func mustExit(r RunResult, err error, want int) error {
	if err != nil {
		return err
	}
	if r.Exit != want {
		return fmt.Errorf("%w %d (want %d): %s", errExit, r.Exit, want, r)
	}
	return nil
}

// StartShielded runs `podman run -d --shield=profiles --name name [extra...] IMAGE /bin/sleeper`
// through the shim: a long-running shielded container to probe with ProbeIn.
func (sp *ShieldedPodman) StartShielded(ctx context.Context, name, profiles string, extra ...string) error {
	if err := sp.EnsureImage(ctx); err != nil {
		return err
	}
	args := append([]string{"run", "-d", "--shield=" + profiles, "--name", name}, extra...)
	args = append(args, sp.H.ImageRef, "/bin/sleeper")
	r, err := sp.Run(ctx, args...)
	return mustExit(r, err, 0)
}
