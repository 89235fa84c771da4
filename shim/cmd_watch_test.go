// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestWatchCommandErrors covers watch's argument checks; the events themselves are tested in
// control (TestWatchRootful, TestWatchRootless).
func TestWatchCommandErrors(t *testing.T) {
	env := []string{"TEROK_SHIELD_STATE_DIR=" + filepath.Join(t.TempDir(), "state"), "HOME=" + t.TempDir()}
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"watch"}, 2, "accepts 1 arg(s)"},
		{[]string{"watch", "web", "-n", "-1"}, 2, "-n -1: want 0 (no limit) or more"},
		{[]string{"watch", "web", "--count", "x"}, 2, "invalid argument"},
		{[]string{"watch", "web", "--output", "human"}, 2, "watch prints JSON lines only"},
		{[]string{"watch", "web", "--output", "yaml"}, 2, "watch prints JSON lines only"},
		{[]string{"watch", "web"}, 1, `no shielded container "web"`},
		{[]string{"watch", "web", "-o", "json", "-n", "3"}, 1, `no shielded container "web"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runCLI(tt.args, env, strings.NewReader(""), &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.stderr) || strings.Count(errb.String(), "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit %d with %q", code, errb.String(), tt.code, tt.stderr)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q", out.String())
			}
		})
	}
}
