// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"github.com/google/nftables"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConn(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	c, err := Open(ctx, target)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	r := mustBuild(t, samplePolicy(ModeUp))
	if err := c.Apply(ctx, r); err != nil {
		t.Fatalf("Conn.Apply: %v", err)
	}
	if err := c.AddElements(ctx, KindDeny, prefixes("203.0.113.10")); err != nil {
		t.Fatalf("Conn.AddElements: %v", err)
	}
	if err := c.Verify(ctx, r); err == nil {
		t.Errorf("Conn.Verify after adding a deny = nil, want drift in deny_v4")
	}
	if err := c.DeleteElements(ctx, KindDeny, prefixes("203.0.113.10")); err != nil {
		t.Fatalf("Conn.DeleteElements: %v", err)
	}
	if err := c.Verify(ctx, r); err != nil {
		t.Errorf("Conn.Verify after undoing the deny: %v", err)
	}
	st, err := c.Inspect(ctx)
	if err != nil || st.Mode != ModeUp {
		t.Errorf("Conn.Inspect = %v, %v, want mode up", st, err)
	}
	text, err := c.List(ctx)
	if err != nil {
		t.Fatalf("Conn.List: %v", err)
	}
	plain, err := List(ctx, target)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := cmp.Diff(plain, text); diff != "" {
		t.Errorf("Conn.List differs from List (-List +Conn.List):\n%s", diff)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Apply(ctx, r); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
	if _, err := Open(ctx, Target{NetNSPath: "/nonexistent/netns"}); err == nil {
		t.Errorf("Open(nonexistent netns) succeeded, want error")
	}
}

// TestCommitReportsErrors checks that a transaction acknowledged only on its
// last message still reports a failure in an earlier one, and applies nothing.
func TestCommitReportsErrors(t *testing.T) {
	ctx := context.Background()
	target := newNetNS(t)
	err := target.do(ctx, func(s *session) error {
		var tx rawTx
		tx.newTable()
		tx.newChain("output", mustHook(t), 0)
		if err := tx.newRule("output", daddrSet(false, "no_such_set").exprs); err != nil {
			return err
		}
		tx.newChain("input", mustHook(t), 0)
		return tx.commit(s)
	})
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("commit with a lookup of a missing set = %v, want ENOENT", err)
	}
	if st, err := Inspect(ctx, target); err != nil || st.Mode != ModeInactive {
		t.Errorf("after failed commit: Inspect = %+v, %v, want no table", st, err)
	}
}

func mustHook(t *testing.T) *nftables.ChainHook {
	t.Helper()
	return nftables.ChainHookOutput
}
