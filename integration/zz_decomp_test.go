package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/internal/testnet"
)

func TestZZDecomp(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	if err := harness.Init(); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Mode{Rootful, Rootless} {
		n := testnet.Start(t)
		sp, err := NewShieldedPodman(harness, n, mode)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		sp.EnsureImage(ctx)
		dir := filepath.Join(sp.StateDir, "zz")
		os.MkdirAll(filepath.Join(dir, "gate"), 0o755)
		os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644)
		if mode == Rootless {
			u := harness.User
			_ = u
		}
		exec := func(args ...string) { _ = args }
		_ = exec
		img := []string{harness.ImageRef, "/bin/probe", "caps"}
		shimBin := filepath.Join(filepath.Dir(sp.Podman.Bin), "terok-shield")
		variants := []struct {
			name string
			p    *Podman
			args []string
		}{
			{"plain", sp.Real, []string{"run", "--rm"}},
			{"init", sp.Real, []string{"run", "--rm", "--init"}},
			{"opts", sp.Real, []string{"run", "--rm", "--hooks-dir", sp.HooksDir(), "--hooks-dir", "/usr/share/containers/oci/hooks.d",
				"--annotation", "zz=1", "--cap-drop", "NET_ADMIN", "--cap-drop", "NET_RAW", "--cap-drop", "SYS_ADMIN",
				"--volume", dir + "/resolv.conf:/etc/resolv.conf:ro", "--volume", dir + "/gate:/run/terok-shield:ro"}},
			{"opts+init", sp.Real, []string{"run", "--rm", "--hooks-dir", sp.HooksDir(), "--hooks-dir", "/usr/share/containers/oci/hooks.d",
				"--annotation", "zz=1", "--cap-drop", "NET_ADMIN", "--cap-drop", "NET_RAW", "--cap-drop", "SYS_ADMIN",
				"--volume", dir + "/resolv.conf:/etc/resolv.conf:ro", "--volume", dir + "/gate:/run/terok-shield:ro", "--init"}},
			{"shield-static", &sp.Podman, []string{"run", "--rm", "--shield"}},
			{"shield", &sp.Podman, []string{"run", "--rm", "--shield"}},
		}
		_ = shimBin
		ds := make([][]time.Duration, len(variants))
		for i := 0; i < 12; i++ {
			for j, v := range variants {
				args := append(append([]string{}, v.args...), img...)
				p := v.p
				if v.name == "shield-static" {
					pp := *p
					pp.Env = append(append([]string{}, p.Env...), "TEROK_SHIELD_RESOLVER=static")
					p = &pp
				}
				s := time.Now()
				r, err := p.Run(ctx, args...)
				if err := mustExit(r, err, 0); err != nil {
					t.Fatalf("%s: %v", v.name, err)
				}
				if i > 0 {
					ds[j] = append(ds[j], time.Since(s))
				}
			}
		}
		for j, v := range variants {
			fmt.Println(mode, v.name, median(ds[j]))
		}
		sp.Close()
	}
}
