// SPDX-License-Identifier: Apache-2.0

package control

import (
	"context"
	"fmt"
	"testing"

	"github.com/terok-ai/terok-shield/state"
)

func benchIP(i int) string { return fmt.Sprintf("100.%d.%d.%d", 64+i/32768%64, i/128%256, 2*(i%128)) }

// BenchmarkAllowInProcess is allow without process start (rootful path: direct setns).
func BenchmarkAllowInProcess(b *testing.B) {
	requirePrivileged(b)
	r := newRoot(b)
	fc := startContainer(b, 0)
	shield(b, r, "web", fc, nil)
	c := New(r)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Allow(ctx, "web", []string{benchIP(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBundleUpdate is the bundle's locked read-modify-write alone (fsync included).
func BenchmarkBundleUpdate(b *testing.B) {
	r := newRoot(b)
	shield(b, r, "web", nil, nil)
	bd, err := r.Open("web")
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	b.ResetTimer()
	for range b.N {
		if err := bd.Update(func(*state.Data) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
