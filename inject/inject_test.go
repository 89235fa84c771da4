// SPDX-License-Identifier: Apache-2.0

package inject

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/argparse"
	"github.com/terok-ai/terok-shield/config"

	"github.com/terok-ai/terok-shield/internal/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

var podmanVersions = []string{"4.3.1", "5.6.0"}

func parse(t *testing.T, version string, argv ...string) *argparse.Invocation {
	t.Helper()
	inv, err := argparse.Parse(argv, argparse.Options{Version: version, ShimFlags: []string{ShimFlag}})
	if err != nil {
		t.Fatalf("argparse.Parse(%q) error: %v", argv, err)
	}
	return inv
}

func env(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		argv   []string
		env    func(string) string
		want   Decision
		errSub string
	}{
		{"nothing", []string{"run", "alpine"}, env(), Decision{}, ""},
		{"env shield", []string{"run", "alpine"}, env(EnvShield, "1"), Decision{Shield: true, Source: "env"}, ""},
		{"env shield false", []string{"run", "alpine"}, env(EnvShield, "0"), Decision{}, ""},
		{"env profiles", []string{"run", "alpine"}, env(EnvProfiles, "dev-python, my-api,dev-python"), Decision{Shield: true, Source: "env", Profiles: []string{"dev-python", "my-api"}}, ""},
		{"flag bare", []string{"run", "--shield", "alpine"}, env(), Decision{Shield: true, Source: "flag", FlagIdx: []int{1}}, ""},
		{"flag profiles beats env", []string{"run", "--shield=dev-node", "alpine"}, env(EnvProfiles, "dev-python"), Decision{Shield: true, Source: "flag", Profiles: []string{"dev-node"}, FlagIdx: []int{1}}, ""},
		{"flag false beats env", []string{"create", "--shield=false", "alpine"}, env(EnvShield, "1"), Decision{FlagIdx: []int{1}}, ""},
		{"empty profile", []string{"run", "alpine"}, env(EnvProfiles, "a,,b"), Decision{}, "empty profile"},
		{"flag after image is the container's", []string{"run", "alpine", "--shield"}, env(), Decision{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(parse(t, "", tt.argv...), tt.env, nil)
			if tt.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("Decide(%q) error = %v, want one containing %q", tt.argv, err, tt.errSub)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide(%q) error: %v", tt.argv, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide(%q) (-want +got):\n%s", tt.argv, diff)
			}
		})
	}
}

func TestCheckRefusals(t *testing.T) {
	prot := Protected{Paths: []string{"/home/u/.local/state/terok/shield", "/home/u/.config/terok", "/usr/local/bin/terok-shield", "/run/podman"}}
	tests := []struct {
		name   string
		argv   []string
		remote bool
		errSub string // "" = accepted
	}{
		{"plain", []string{"run", "--rm", "-it", "alpine", "sh"}, false, ""},
		{"named volume and safe mount", []string{"run", "-v", "data:/data", "-v", "/srv/code:/code:ro", "alpine"}, false, ""},
		{"network none is its own netns", []string{"run", "--network", "none", "alpine"}, false, ""},
		{"bridge network", []string{"run", "--network=bridge", "alpine"}, false, ""},
		{"cap-add safe", []string{"run", "--cap-add", "CHOWN", "alpine"}, false, ""},
		{"remote env", []string{"run", "alpine"}, true, "remote mode"},
		{"remote flag", []string{"--remote", "run", "alpine"}, false, "remote mode"},
		{"url", []string{"--url", "unix:///x.sock", "run", "alpine"}, false, "remote mode"},
		{"privileged", []string{"run", "--privileged", "alpine"}, false, "--privileged"},
		{"cap-add NET_ADMIN", []string{"run", "--cap-add", "NET_ADMIN", "alpine"}, false, "NET_ADMIN"},
		{"cap-add cap_net_raw lower", []string{"run", "--cap-add=cap_net_raw", "alpine"}, false, "NET_RAW"},
		{"cap-add ALL after drop ALL", []string{"run", "--cap-drop", "ALL", "--cap-add", "all", "alpine"}, false, "ALL"},
		{"cap-add list", []string{"run", "--cap-add", "CHOWN,SYS_ADMIN", "alpine"}, false, "SYS_ADMIN"},
		{"network host", []string{"run", "--network", "host", "alpine"}, false, "own network namespace"},
		{"net alias host", []string{"run", "--net=host", "alpine"}, false, "own network namespace"},
		{"network container", []string{"run", "--network", "container:other", "alpine"}, false, "own network namespace"},
		{"network ns", []string{"run", "--network", "ns:/run/netns/x", "alpine"}, false, "own network namespace"},
		{"pod", []string{"run", "--pod", "p1", "alpine"}, false, "pod"},
		{"runtime runsc", []string{"run", "--runtime", "/usr/bin/runsc", "alpine"}, false, "runtime"},
		{"seccomp unconfined", []string{"run", "--security-opt", "seccomp=unconfined", "alpine"}, false, "confinement"},
		{"label disable", []string{"run", "--security-opt", "label=disable", "alpine"}, false, "confinement"},
		{"apparmor unconfined", []string{"run", "--security-opt", "apparmor=unconfined", "alpine"}, false, "confinement"},
		{"dns", []string{"run", "--dns", "8.8.8.8", "alpine"}, false, "resolver"},
		{"init-path", []string{"run", "--init-path", "/x", "alpine"}, false, "init"},
		{"mount state dir", []string{"run", "-v", "/home/u/.local/state/terok/shield:/s", "alpine"}, false, "rewrite its own firewall"},
		{"mount parent of state dir", []string{"run", "-v", "/home/u:/home", "alpine"}, false, "rewrite its own firewall"},
		{"mount bundle inside state", []string{"run", "--mount", "type=bind,src=/home/u/.local/state/terok/shield/containers/c,dst=/x", "alpine"}, false, "rewrite its own firewall"},
		{"mount binary", []string{"run", "-v", "/usr/local/bin/terok-shield:/bin/x:ro", "alpine"}, false, "rewrite its own firewall"},
		{"mount podman socket", []string{"run", "-v", "/run/podman/podman.sock:/var/run/docker.sock", "alpine"}, false, "rewrite its own firewall"},
		{"second resolv.conf", []string{"run", "-v", "/tmp/r:/etc/resolv.conf", "alpine"}, false, "resolv.conf"},
		{"userns host", []string{"run", "--userns=host", "alpine"}, false, "userns"},
	}
	for _, version := range podmanVersions {
		for _, tt := range tests {
			t.Run(version+"/"+tt.name, func(t *testing.T) {
				err := Check(parse(t, version, tt.argv...), tt.remote, prot)
				if tt.errSub == "" {
					if err != nil {
						t.Errorf("Check(%q) = %v, want accepted", tt.argv, err)
					}
					return
				}
				var r *Refusal
				if !errors.As(err, &r) || !strings.Contains(err.Error(), tt.errSub) {
					t.Errorf("Check(%q) = %v, want a Refusal containing %q", tt.argv, err, tt.errSub)
				}
			})
		}
	}
}

// TestRewriteGolden pins the argv podman receives, one argument per line.
func TestRewriteGolden(t *testing.T) {
	plan := Plan{
		BundleDir: "/home/u/.local/state/terok/shield/containers/web",
		Binary:    "/usr/local/bin/terok-shield",
		HooksDirs: []string{"/home/u/.local/state/terok/shield/hooks.d", "/usr/share/containers/oci/hooks.d"},
	}
	tests := []struct {
		name  string
		argv  []string
		name2 string // container name the shim adds
	}{
		{"run-basic", []string{"run", "--rm", "--shield", "-it", "alpine:3", "sh", "-c", "echo hi"}, "shield-0a1b2c"},
		{"run-named", []string{"run", "--name=web", "-p8080:80", "--shield=dev-python,api", "docker.io/library/nginx"}, ""},
		{"create-user-init", []string{"--log-level", "warn", "container", "create", "--init", "--shield", "--name", "web", "img", "--shield"}, ""},
		{"run-dashdash-cluster", []string{"run", "-dit", "--env=A=B,C", "--shield", "img", "--", "x"}, "shield-0a1b2c"},
	}
	for _, version := range podmanVersions {
		for _, tt := range tests {
			t.Run(version+"/"+tt.name, func(t *testing.T) {
				inv := parse(t, version, tt.argv...)
				dec, err := Decide(inv, env(), nil)
				if err != nil {
					t.Fatal(err)
				}
				p := plan
				p.Name = tt.name2
				got := strings.Join(Rewrite(inv, dec, p), "\n") + "\n"
				// Both podman generations must rewrite to the same golden; the first writes it.
				golden.Check(t, filepath.Join("testdata", tt.name+".golden"), got, *update && version == podmanVersions[0])
				// Every user token except the shim flag survives byte for byte, in order.
				var kept []string
				for i, a := range inv.Argv {
					if !contains(dec.FlagIdx, i) {
						kept = append(kept, a)
					}
				}
				if !isSubsequence(kept, Rewrite(inv, dec, p)) {
					t.Errorf("Rewrite(%q) lost or reordered user tokens", tt.argv)
				}
			})
		}
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func isSubsequence(sub, s []string) bool {
	i := 0
	for _, x := range s {
		if i < len(sub) && sub[i] == x {
			i++
		}
	}
	return i == len(sub)
}

func TestDecideWithConfig(t *testing.T) {
	cfg := config.Defaults()
	cfg.DefaultProfiles = []string{"dev-python"}
	cfg.Shield.Rules = []config.Rule{
		{Image: "docker.io/library/python*", Profiles: []string{"dev-python", "api"}, Shield: true},
		{Name: "trusted-*", Shield: false},
		{Image: "*agent*", Shield: true},
	}
	tests := []struct {
		name string
		argv []string
		env  func(string) string
		def  bool
		want Decision
	}{
		{"rule by image", []string{"run", "docker.io/library/python:3"}, env(), false, Decision{Shield: true, Source: "config", Profiles: []string{"dev-python", "api"}}},
		{"rule without profiles takes defaults", []string{"run", "ghcr.io/x/agent:1"}, env(), false, Decision{Shield: true, Source: "config", Profiles: []string{"dev-python"}}},
		{"no rule, default off", []string{"run", "alpine"}, env(), false, Decision{}},
		{"no rule, default on", []string{"run", "alpine"}, env(), true, Decision{Shield: true, Source: "config", Profiles: []string{"dev-python"}}},
		{"name rule unshields even with default on", []string{"run", "--name", "trusted-ci", "agent"}, env(), true, Decision{}},
		{"env beats rule", []string{"run", "docker.io/library/python:3"}, env(EnvProfiles, "dev-node"), false, Decision{Shield: true, Source: "env", Profiles: []string{"dev-node"}}},
		{"env without profiles takes config defaults", []string{"run", "alpine"}, env(EnvShield, "1"), false, Decision{Shield: true, Source: "env", Profiles: []string{"dev-python"}}},
		{"flag false beats config", []string{"run", "--shield=false", "ghcr.io/x/agent:1"}, env(), true, Decision{FlagIdx: []int{1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *cfg
			c.Shield.Default = tt.def
			got, err := Decide(parse(t, "", tt.argv...), tt.env, &c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide(%q) (-want +got):\n%s", tt.argv, diff)
			}
		})
	}
}

// BenchmarkParseDecideRewrite60 is the shim's whole decision for a 60-argument run line: parse,
// decide (flag, environment and config rules), check the refusals and rewrite the argv.
func BenchmarkParseDecideRewrite60(b *testing.B) {
	argv := []string{"run", "--shield=dev-python"}
	for i := 0; len(argv) < 57; i++ {
		argv = append(argv, "-e", fmt.Sprintf("VAR%d=value-%d", i, i), "--label", fmt.Sprintf("k%d=v", i), "-v", fmt.Sprintf("/srv/d%d:/d%d:ro", i, i))
	}
	argv = append(argv[:57], "--rm", "docker.io/library/python:3", "python")
	cfg := config.Defaults()
	cfg.Shield.Rules = []config.Rule{{Image: "*agent*", Shield: true}}
	plan := Plan{BundleDir: "/s/containers/web", Binary: "/usr/local/bin/terok-shield", HooksDirs: []string{"/s/hooks.d", "/usr/share/containers/oci/hooks.d"}, Name: "shield-x"}
	prot := Protected{Paths: []string{"/s", "/c", "/usr/local/bin/terok-shield"}}
	for b.Loop() {
		inv, err := argparse.Parse(argv, argparse.Options{ShimFlags: []string{ShimFlag}})
		if err != nil {
			b.Fatal(err)
		}
		d, err := Decide(inv, env(), cfg)
		if err != nil || !d.Shield {
			b.Fatalf("Decide = %+v, %v", d, err)
		}
		if err := Check(inv, false, prot); err != nil {
			b.Fatal(err)
		}
		_ = Rewrite(inv, d, plan)
	}
}
