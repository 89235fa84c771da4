// SPDX-License-Identifier: Apache-2.0

//go:build unix

package state

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terok-ai/terok-shield/profiles"
)

// TestMain doubles as the helper process of TestUpdateConcurrentProcesses.
func TestMain(m *testing.M) {
	if dir := os.Getenv("TEROK_STATE_TEST_HELPER"); dir != "" {
		os.Exit(helperUpdates(dir, os.Getenv("TEROK_STATE_TEST_HELPER_ID")))
	}
	os.Exit(m.Run())
}

func helperUpdates(path, id string) int {
	r, err := OpenRoot(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b, err := r.Open("ctr")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	n, _ := strconv.Atoi(id)
	for i := range 20 {
		name := fmt.Sprintf("p%d-%d.example", n, i)
		if err := b.Update(func(d *Data) error { d.Allow.Add(profiles.Entry{Kind: profiles.Domain, Name: name}); return nil }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func privilegedOrSkip(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" || os.Getenv("TEROK_SHIELD_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("%s is required (CI or TEROK_SHIELD_REQUIRE_PRIVILEGED=1)", what)
	}
	t.Skipf("%s not available", what)
}

func newRoot(t *testing.T) *Root {
	t.Helper()
	r, err := OpenRoot(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestDefaultRoot(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"override", map[string]string{"TEROK_SHIELD_STATE_DIR": "/s", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/s"},
		{"xdg", map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/terok/shield"},
		{"relative xdg ignored", map[string]string{"XDG_STATE_HOME": "rel", "HOME": "/h"}, "/h/.local/state/terok/shield"},
		{"home", map[string]string{"HOME": "/h"}, "/h/.local/state/terok/shield"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultRoot(func(k string) string { return tt.env[k] })
			if err != nil || got != tt.want {
				t.Errorf("DefaultRoot = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
	if got, err := DefaultRoot(func(string) string { return "" }); err == nil {
		t.Errorf("DefaultRoot(empty env) = %q, want error", got)
	}
}

func TestValidateName(t *testing.T) {
	good := []string{"a", "my-ctr", "Ctr_1.2", strings.Repeat("a", 253)}
	bad := []string{"", ".", "..", "../x", "a/b", "-a", ".hidden", "_a", "a b", "a\x00", strings.Repeat("a", 254), "ä"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateName(n); err == nil {
			t.Errorf("ValidateName(%q) = nil, want error", n)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	r := newRoot(t)
	b, err := r.Create("ctr")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Load(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a new bundle = %v, want ErrNotExist", err)
	}
	id := &NetNSIdentity{PID: 42, StartTime: 1234, NetNSInode: 4026531840, ContainerID: "abc"}
	err = b.Update(func(d *Data) error {
		d.Profiles = []string{"dev-standard"}
		d.Resolved = Entries{Domains: []string{"github.com"}, Wildcards: []string{"example.org"}, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
		d.Resolver = Resolver{Tier: TierDnsmasq, Upstreams: []netip.Addr{netip.MustParseAddr("10.0.2.3")}, LearnedTTL: Duration(time.Hour), HostPorts: []uint16{8080}}
		d.Static = &Static{Addrs: map[string][]netip.Addr{"github.com": {netip.MustParseAddr("140.82.112.3")}}, ResolvedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		d.NetNS = id
		d.Mode = ModeBlock
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != Format || got.Container != "ctr" || got.Created.IsZero() || got.Mode != ModeBlock || *got.NetNS != *id {
		t.Errorf("Load() = %+v", got)
	}
	if got.Resolver.LearnedTTL != Duration(time.Hour) {
		t.Errorf("LearnedTTL = %v, want 1h", time.Duration(got.Resolver.LearnedTTL))
	}
	raw, _ := b.ReadFile(FileBundle)
	if !strings.Contains(string(raw), `"learned_ttl": "1h0m0s"`) || !strings.Contains(string(raw), `"format": 1`) {
		t.Errorf("bundle.json = %s", raw)
	}
	fi, err := os.Stat(filepath.Join(b.Dir(), FileBundle))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bundle.json mode = %v, %v; want 0600", fi.Mode(), err)
	}
	fi, err = os.Stat(b.Dir())
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("bundle dir mode = %v, %v; want 0700", fi.Mode(), err)
	}
	names, err := r.List()
	if err != nil || len(names) != 1 || names[0] != "ctr" {
		t.Errorf("List() = %v, %v; want [ctr]", names, err)
	}
	// A failing fn writes nothing.
	boom := errors.New("boom")
	if err := b.Update(func(d *Data) error { d.Mode = ModeDownAll; return boom }); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if got, _ := b.Load(); got.Mode != ModeBlock {
		t.Errorf("after failed Update mode = %q, want block", got.Mode)
	}
	// An invalid result is refused.
	if err := b.Update(func(d *Data) error { d.Mode = "sideways"; return nil }); err == nil || !strings.Contains(err.Error(), `invalid mode "sideways"`) {
		t.Errorf("Update(invalid mode) = %v", err)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(b.Dir())
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover temporary file %s", e.Name())
		}
	}
	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove: %v", err)
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"newer format", `{"format":2,"container":"ctr"}`, "bundle format 2 is not supported by this terok-shield (wants 1); recreate the container"},
		{"older format", `{"format":0}`, "bundle format 0 is not supported by this terok-shield (wants 1); recreate the container"},
		{"no format", `{"container":"ctr"}`, `no "format" field`},
		{"unknown field", `{"format":1,"container":"ctr","mode":"up","extra":1}`, `unknown field "extra"`},
		{"other container", `{"format":1,"container":"other","mode":"up"}`, `container "other" does not match`},
		{"bad mode", `{"format":1,"container":"ctr","mode":"open"}`, `invalid mode "open"`},
		{"bad name", `{"format":1,"container":"ctr","mode":"up","allow":{"domains":["a/b.com"]}}`, `invalid name "a/b.com"`},
		{"unnormalised name", `{"format":1,"container":"ctr","mode":"up","allow":{"domains":["A.com"]}}`, `invalid name "A.com"`},
		{"bad prefix", `{"format":1,"container":"ctr","mode":"up","deny":{"prefixes":["1.2.3.4/40"]}}`, `parse bundle.json`},
		{"bad tier", `{"format":1,"container":"ctr","mode":"up","resolver":{"tier":"dig"}}`, `invalid resolver tier "dig"`},
		{"trailing", `{"format":1,"container":"ctr","mode":"up"} {}`, `after top-level value`},
		{"not json", `format = 1`, `parse bundle.json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRoot(t)
			b, err := r.Create("ctr")
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := os.WriteFile(filepath.Join(b.Dir(), FileBundle), []byte(tt.json), 0o600); err != nil {
				t.Fatal(err)
			}
			if d, err := b.Load(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load() = %+v, %v; want error containing %q", d, err, tt.want)
			}
			if err := b.Update(func(*Data) error { return nil }); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Update() = %v; want error containing %q", err, tt.want)
			}
			if raw, _ := os.ReadFile(filepath.Join(b.Dir(), FileBundle)); string(raw) != tt.json {
				t.Errorf("refused bundle was rewritten: %s", raw)
			}
		})
	}
}

func TestUpdateConcurrentGoroutines(t *testing.T) {
	r := newRoot(t)
	b, err := r.Create("ctr")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			// Each goroutine uses its own Bundle, as separate commands would.
			own, err := r.Open("ctr")
			if err != nil {
				errs <- err
				return
			}
			defer own.Close()
			for i := range each {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(w*each + i)}), 32)
				if err := own.Update(func(d *Data) error { d.AllowEntry(profiles.Entry{Kind: profiles.Prefix, Prefix: p}); return nil }); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	d, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(d.Allow.Prefixes); got != workers*each {
		t.Errorf("after %d concurrent updates the allow list has %d prefixes", workers*each, got)
	}
}

func TestUpdateConcurrentProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	r, err := OpenRoot(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := r.Create("ctr")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const procs = 6
	cmds := make([]*exec.Cmd, procs)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TEROK_STATE_TEST_HELPER="+path, "TEROK_STATE_TEST_HELPER_ID="+strconv.Itoa(i))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	// This process updates concurrently too.
	for i := range 20 {
		name := fmt.Sprintf("main-%d.example", i)
		if err := b.Update(func(d *Data) error { d.Allow.Add(profiles.Entry{Kind: profiles.Domain, Name: name}); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
	}
	d, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(d.Allow.Domains), (procs+1)*20; got != want {
		t.Errorf("after concurrent updates from %d processes the allow list has %d names, want %d", procs+1, got, want)
	}
}

func TestSymlinkEscapes(t *testing.T) {
	r := newRoot(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte(`{"format":1,"container":"ctr","mode":"down_all"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cdir := filepath.Join(r.Dir(), "containers")

	t.Run("bundle dir is a symlink outside", func(t *testing.T) {
		if err := os.Symlink(outside, filepath.Join(cdir, "evil")); err != nil {
			t.Fatal(err)
		}
		if b, err := r.Open("evil"); err == nil {
			b.Close()
			t.Fatal("Open(symlink to outside) succeeded")
		}
		if b, err := r.Create("evil"); err == nil {
			b.Close()
			t.Fatal("Create(symlink to outside) succeeded")
		}
	})
	t.Run("bundle dir is a symlink inside", func(t *testing.T) {
		if _, err := r.Create("real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("real", filepath.Join(cdir, "alias")); err != nil {
			t.Fatal(err)
		}
		if b, err := r.Open("alias"); err == nil {
			b.Close()
			t.Fatal("Open(symlink to sibling) succeeded")
		}
	})
	t.Run("files are symlinks outside", func(t *testing.T) {
		b, err := r.Create("ctr")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for _, f := range []string{FileBundle, FileLock, FileAudit} {
			if err := os.Symlink(secret, filepath.Join(b.Dir(), f)); err != nil {
				t.Fatal(err)
			}
		}
		if d, err := b.Load(); err == nil {
			t.Errorf("Load through a symlink to outside = %+v", d)
		}
		if err := b.Update(func(*Data) error { return nil }); err == nil {
			t.Error("Update through a symlinked lock succeeded")
		}
		if f, err := b.OpenFile(FileAudit, os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			f.Close()
			t.Error("OpenFile through a symlink succeeded")
		}
		if raw, _ := os.ReadFile(secret); !strings.Contains(string(raw), "down_all") {
			t.Errorf("outside file changed: %s", raw)
		}
	})
	t.Run("names", func(t *testing.T) {
		for _, n := range []string{"../x", "..", "a/b", "/etc"} {
			if _, err := r.Create(n); err == nil {
				t.Errorf("Create(%q) succeeded", n)
			}
			if _, err := r.Open(n); err == nil {
				t.Errorf("Open(%q) succeeded", n)
			}
			if err := r.Remove(n); err == nil {
				t.Errorf("Remove(%q) succeeded", n)
			}
		}
		b, err := r.Create("files")
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for _, f := range []string{"../bundle.json", "config.json", "", ".", "sub/audit.jsonl"} {
			if err := b.WriteFile(f, nil, 0o600); err == nil {
				t.Errorf("WriteFile(%q) succeeded", f)
			}
			if _, err := b.ReadFile(f); err == nil {
				t.Errorf("ReadFile(%q) succeeded", f)
			}
		}
		if err := b.WriteFile(FileBundle, []byte("{}"), 0o600); err == nil {
			t.Error("WriteFile(bundle.json) succeeded, want Update only")
		}
		if err := b.WriteFile(FileResolvConf, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
			t.Errorf("WriteFile(resolv.conf) = %v", err)
		}
		if raw, err := b.ReadFile(FileResolvConf); err != nil || string(raw) != "nameserver 127.0.0.1\n" {
			t.Errorf("ReadFile(resolv.conf) = %q, %v", raw, err)
		}
	})
}

func TestModeRefused(t *testing.T) {
	r := newRoot(t)
	b, err := r.Create("ctr")
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	for _, mode := range []os.FileMode{0o755, 0o770, 0o701} {
		t.Run(mode.String(), func(t *testing.T) {
			if err := os.Chmod(filepath.Join(r.Dir(), "containers", "ctr"), mode); err != nil {
				t.Fatal(err)
			}
			if b, err := r.Open("ctr"); err == nil || !strings.Contains(err.Error(), "allows group or others") {
				if b != nil {
					b.Close()
				}
				t.Errorf("Open(mode %v) = %v, want refusal", mode, err)
			}
			if b, err := OpenDir(filepath.Join(r.Dir(), "containers", "ctr"), -1); err == nil {
				b.Close()
				t.Errorf("OpenDir(mode %v) succeeded", mode)
			}
		})
	}
}

func TestOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		privilegedOrSkip(t, "root (to chown a bundle to another user)")
	}
	r := newRoot(t)
	b, err := r.Create("ctr")
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	dir := filepath.Join(r.Dir(), "containers", "ctr")
	const nobody = 65534
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if b, err := r.Open("ctr"); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		if b != nil {
			b.Close()
		}
		t.Errorf("Open(foreign bundle) = %v, want refusal", err)
	}
	if b, err := OpenDir(dir, -1); err == nil {
		b.Close()
		t.Error("OpenDir(foreign bundle, -1) succeeded")
	}
	if b, err := OpenDir(dir, 1000); err == nil {
		b.Close()
		t.Error("OpenDir(foreign bundle, 1000) succeeded")
	}
	// The hook may be told the expected owner (rootless container of user nobody).
	b, err = OpenDir(dir, nobody)
	if err != nil {
		t.Fatalf("OpenDir(bundle of the expected uid) = %v", err)
	}
	b.Close()
}

func TestOpenDir(t *testing.T) {
	r := newRoot(t)
	b, err := r.Create("ctr")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(func(d *Data) error { d.Mode = ModeDown; return nil }); err != nil {
		t.Fatal(err)
	}
	dir := b.Dir()
	b.Close()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(r.Dir(), link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(file, nil, 0o600)
	for _, bad := range []string{"relative/ctr", dir + "/", dir + "/../ctr", filepath.Join(link, "containers", "ctr"), file, dir + "/missing", "/"} {
		if b, err := OpenDir(bad, -1); err == nil {
			b.Close()
			t.Errorf("OpenDir(%q) succeeded", bad)
		}
	}
	b, err = OpenDir(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if d, err := b.Load(); err != nil || d.Mode != ModeDown {
		t.Errorf("OpenDir(...).Load() = %+v, %v", d, err)
	}
	if b.Name() != "ctr" || b.Dir() != dir {
		t.Errorf("OpenDir: Name() = %q, Dir() = %q", b.Name(), b.Dir())
	}
}
