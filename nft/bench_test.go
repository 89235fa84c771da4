// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/terok-ai/terok-shield/internal/original"
)

// originalRuleset renders the ruleset the original Python tool generated
// (original-tool.md §3.2/§3.4): interval allow sets, rules, then one
// `add element` line carrying every allowed address.
func originalRuleset(allow []netip.Prefix) string {
	var v4, v6 []string
	for _, p := range allow {
		if p.Addr().Is6() {
			v6 = append(v6, p.Addr().String())
		} else {
			v4 = append(v4, p.Addr().String())
		}
	}
	return original.Ruleset(v4, v6, false)
}

func benchSizes() []int { return []int{0, 1_000, 10_000, 100_000} }

// BenchmarkApply measures a full table load into a fresh namespace (the
// namespace is created outside the timer): ours over netlink versus the
// original's `nsenter --net=PATH nft -f FILE`.
func BenchmarkApply(b *testing.B) {
	requirePrivileged(b)
	ctx := context.Background()
	for _, n := range benchSizes() {
		p := bulkPolicy(n)
		p.Allow = p.Allow[len(p.Allow)-n:] // exactly n allow entries
		r := mustBuild(b, p)
		b.Run(fmt.Sprintf("ours/%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				target, release, err := openNetNS()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := Apply(ctx, target, r); err != nil {
					b.Fatalf("Apply: %v", err)
				}
				b.StopTimer()
				release()
				b.StartTimer()
			}
		})
		file := filepath.Join(b.TempDir(), "ruleset.nft")
		if err := os.WriteFile(file, []byte(originalRuleset(p.Allow)), 0o600); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("nft/%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				target, release, err := openNetNS()
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if out, err := exec.Command("nsenter", "--net="+target.NetNSPath, "nft", "-f", file).CombinedOutput(); err != nil {
					b.Fatalf("nft -f: %v\n%s", err, out)
				}
				b.StopTimer()
				release()
				b.StartTimer()
			}
		})
	}
}

func benchAddr(i int) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], 0xc6120000+uint32(i%65536)) // 198.18.0.0/16
	return netip.AddrFrom4(a)
}

// BenchmarkElement100k measures adding and removing one element in a set
// that already holds 100k entries: ours (hash set, netlink; one-shot calls
// and through an open Conn) versus the original (`nft add/delete element`
// into its interval set). Deletes run after the adds of the same addresses.
func BenchmarkElement100k(b *testing.B) {
	requirePrivileged(b)
	ctx := context.Background()
	const n = 100_000
	p := bulkPolicy(n)
	ours := newNetNS(b)
	if err := Apply(ctx, ours, mustBuild(b, p)); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	orig := newNetNS(b)
	file := filepath.Join(b.TempDir(), "ruleset.nft")
	if err := os.WriteFile(file, []byte(originalRuleset(p.Allow)), 0o600); err != nil {
		b.Fatal(err)
	}
	nftIn(b, orig, "", "-f", file)
	for _, op := range []string{"add", "delete"} {
		b.Run("ours-conn/"+op, func(b *testing.B) {
			c, err := Open(ctx, ours)
			if err != nil {
				b.Fatalf("Open: %v", err)
			}
			defer c.Close()
			i := 1 << 15
			for b.Loop() {
				a := netip.PrefixFrom(benchAddr(i), 32)
				i++
				if op == "add" {
					err = c.AddElements(ctx, KindAllow, []netip.Prefix{a})
				} else {
					err = c.DeleteElements(ctx, KindAllow, []netip.Prefix{a})
				}
				if err != nil {
					b.Fatalf("%s element: %v", op, err)
				}
			}
		})
		b.Run("ours/"+op, func(b *testing.B) {
			i := 0
			for b.Loop() {
				a := netip.PrefixFrom(benchAddr(i), 32)
				i++
				var err error
				if op == "add" {
					err = AddElements(ctx, ours, KindAllow, []netip.Prefix{a})
				} else {
					err = DeleteElements(ctx, ours, KindAllow, []netip.Prefix{a})
				}
				if err != nil {
					b.Fatalf("%s element: %v", op, err)
				}
			}
		})
		b.Run("nft/"+op, func(b *testing.B) {
			i := 0
			for b.Loop() {
				a := benchAddr(i)
				i++
				out, err := exec.Command("nsenter", "--net="+orig.NetNSPath, "nft", op, "element", "inet", TableName, "allow_v4", "{ "+a.String()+" }").CombinedOutput()
				if err != nil {
					b.Fatalf("nft %s element: %v\n%s", op, err, out)
				}
			}
		})
	}
}

// BenchmarkVerify is the read-back verification of a freshly applied table
// with n allow entries (the hook verifies every table it applies).
func BenchmarkVerify(b *testing.B) {
	requirePrivileged(b)
	ctx := context.Background()
	for _, n := range []int{0, 1_000} {
		p := bulkPolicy(n)
		p.Allow = p.Allow[len(p.Allow)-n:]
		r := mustBuild(b, p)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			target, release, err := openNetNS()
			if err != nil {
				b.Fatal(err)
			}
			defer release()
			if err := Apply(ctx, target, r); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := Verify(ctx, target, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
