// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bulkPolicy returns an enforce policy with n single-address allow entries
// (in 100.0.0.0/8 and 2001:db8::/32) plus a few CIDRs, and n/20 /30 denies
// in 198.18.0.0/15 so that interval encoding is exercised too.
func bulkPolicy(n int) Policy {
	p := samplePolicy(ModeUp)
	for i := range n / 20 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0xc6120000+uint32(i)*8)
		p.Deny = append(p.Deny, netip.PrefixFrom(netip.AddrFrom4(b), 30))
	}
	for i := range n {
		if i%4 == 3 {
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
			binary.BigEndian.PutUint32(b[12:], uint32(i))
			p.Allow = append(p.Allow, netip.PrefixFrom(netip.AddrFrom16(b), 128))
			continue
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 0x64000000+uint32(i))
		p.Allow = append(p.Allow, netip.PrefixFrom(netip.AddrFrom4(b), 32))
	}
	return p
}

// bulkResult is what the child reports back.
type bulkResult struct {
	Elements   int
	ApplyNanos int64
	SndBuf     int // effective send buffer of the raw socket in the child
	Err        string
}

const bulkChildEnv = "TEROK_NFT_BULK_CHILD"

// TestBulkApply loads 100k allow entries into a fresh namespace, once as
// root and once from an unprivileged user namespace (uid 0 inside mapped to
// nobody outside, like the rootless podman hook), where the socket buffer
// forces the load to be split into several transactions.
func TestBulkApply(t *testing.T) {
	if os.Getenv(bulkChildEnv) == "1" {
		runBulkChild(t)
		return
	}
	const n = 100_000
	t.Run("root", func(t *testing.T) {
		target := newNetNS(t)
		r := mustBuild(t, bulkPolicy(n))
		start := time.Now()
		if err := Apply(context.Background(), target, r); err != nil {
			t.Fatalf("Apply %d entries: %v", n, err)
		}
		t.Logf("Apply %d entries as root: %s", n, time.Since(start))
		if err := Verify(context.Background(), target, r); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("userns", func(t *testing.T) {
		requirePrivileged(t)
		res := runInUserNS(t, "^TestBulkApply$")
		if res.Err != "" {
			t.Fatalf("child in user namespace: %s", res.Err)
		}
		t.Logf("Apply %d entries in unprivileged userns: %s (SO_SNDBUF %d)", res.Elements, time.Duration(res.ApplyNanos), res.SndBuf)
		if res.Elements != n {
			t.Errorf("child applied %d entries, want %d", res.Elements, n)
		}
	})
}

func runBulkChild(t *testing.T) {
	res := bulkResult{Elements: 100_000}
	_ = Target{}.do(context.Background(), func(s *session) error {
		_, err := s.rawConn()
		res.SndBuf = s.rawSndbuf
		return err
	})
	r, err := Build(bulkPolicy(res.Elements))
	if err == nil {
		ctx := context.Background()
		start := time.Now()
		err = Apply(ctx, Target{}, r)
		res.ApplyNanos = int64(time.Since(start))
		if err == nil {
			err = Verify(ctx, Target{}, r)
		}
	}
	if err != nil {
		res.Err = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		t.Fatal(err)
	}
}

// runInUserNS re-executes the test binary in new user and network
// namespaces as nobody and decodes the JSON line the child prints.
func runInUserNS(t *testing.T, run string) bulkResult {
	t.Helper()
	// The go test binary lives in a 0700 directory; nobody needs a copy.
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("chmod %s: %v", d, err)
		}
	}
	bin := filepath.Join(dir, "nft.test")
	copyFile(t, self, bin)
	cmd := exec.Command(bin, "-test.run="+run, "-test.count=1")
	cmd.Env = append(os.Environ(), bulkChildEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0}, // root inside, nobody outside
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", bin, err, out)
	}
	var res bulkResult
	for _, line := range splitLines(out) {
		if json.Unmarshal(line, &res) == nil && res.Elements > 0 {
			return res
		}
	}
	t.Fatalf("child printed no result:\n%s", out)
	return res
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		out = append(out, b[:i])
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatalf("open %s: %v", from, err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatalf("create %s: %v", to, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatalf("copy to %s: %v", to, err)
	}
	if err := dst.Close(); err != nil {
		t.Fatalf("close %s: %v", to, err)
	}
}

// cancelAfter is a context whose Err turns to Canceled after n calls.
type cancelAfter struct {
	context.Context
	n int
}

func (c *cancelAfter) Err() error {
	if c.n <= 0 {
		return context.Canceled
	}
	c.n--
	return nil
}

// TestBulkApplySplitAndFailClosed forces a small send buffer so the load
// takes many transactions, checks the result, then interrupts a load after
// its first element batch and checks that the table is left closed.
func TestBulkApplySplitAndFailClosed(t *testing.T) {
	const n = 20_000
	r := mustBuild(t, bulkPolicy(n))
	small := func(ctx context.Context, target Target) error {
		return target.do(context.Background(), func(s *session) error {
			if _, err := s.rawConn(); err != nil {
				return err
			}
			s.rawSndbuf = 96 << 10 // like an unprivileged default
			return apply(ctx, s, r)
		})
	}
	target := newNetNS(t)
	if err := small(context.Background(), target); err != nil {
		t.Fatalf("apply with a 96 KiB send buffer: %v", err)
	}
	if err := Verify(context.Background(), target, r); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := len(groupPayloads(elemPayloadsAll(r), 96<<10*3/4-4096)); got < 5 {
		t.Errorf("load used %d element transactions, want several", got)
	}

	target = newNetNS(t)
	err := small(&cancelAfter{Context: context.Background(), n: 1}, target)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted apply = %v, want context.Canceled", err)
	}
	text, err := List(context.Background(), target)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := text[strings.Index(text, "chain output"):]
	out = out[:strings.Index(out, "}")]
	want := "chain output {\n\t\ttype filter hook output priority filter; policy drop;\n\t\toifname \"lo\" accept\n\t"
	if out != want {
		t.Errorf("output chain after interrupted load = %q, want closed %q", out, want)
	}
}

func elemPayloadsAll(r *Ruleset) [][]byte {
	var out [][]byte
	for _, s := range r.sets {
		out = append(out, elemPayloads(s)...)
	}
	return out
}
