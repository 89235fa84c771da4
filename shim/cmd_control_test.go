// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "github.com/terok-ai/terok-shield/internal/golden"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

func TestControlCommandExitCodes(t *testing.T) {
	env := []string{"TEROK_SHIELD_STATE_DIR=" + filepath.Join(t.TempDir(), "state"), "HOME=" + t.TempDir()}
	tests := []struct {
		args   []string
		code   int
		stdout string // golden file name, or "" for no check
		stderr string // substring
	}{
		{args: []string{"allow", "web"}, code: 2, stderr: "requires at least 2 arg(s)"},
		{args: []string{"deny"}, code: 2},
		{args: []string{"up"}, code: 2},
		{args: []string{"down", "--bogus", "web"}, code: 2},
		{args: []string{"status", "a", "b"}, code: 2},
		{args: []string{"logs", "-n", "-1"}, code: 2},
		{args: []string{"--output", "yaml", "profiles"}, code: 2, stderr: `--output "yaml"`},
		{args: []string{"allow", "web", "203.0.113.7"}, code: 1, stderr: `no shielded container "web"`},
		{args: []string{"allow", "web", "bad target!"}, code: 1, stderr: `bad target "bad target!"`},
		{args: []string{"status", "web"}, code: 1, stderr: `no shielded container "web"`},
		{args: []string{"logs"}, code: 0, stdout: "logs-empty.golden"},
		{args: []string{"logs", "-o", "json"}, code: 0, stdout: "logs-empty-json.golden"},
		{args: []string{"profiles"}, code: 0, stdout: "profiles.golden"},
		{args: []string{"profiles", "--output", "json"}, code: 0, stdout: "profiles-json.golden"},
		{args: []string{"completion", "bash"}, code: 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runCLI(tt.args, env, strings.NewReader(""), &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.code, errb.String())
			}
			if tt.code != 0 && strings.Count(errb.String(), "\n") != 1 {
				t.Errorf("error is not one line: %q", errb.String())
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tt.stderr)
			}
			if tt.stdout != "" {
				golden(t, tt.stdout, out.String())
			}
		})
	}
}

// TestEveryCommandHasAnExample: --help of every visible command shows an example.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := newRootCmd(&cliDeps{getenv: func(string) string { return "" }})
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.Example == "" {
			t.Errorf("%s has no example", c.Name())
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"--cap-drop": "--cap-drop", "terok.shield.bundle=/a b": "'terok.shield.bundle=/a b'", "it's": `'it'\''s'`, "": "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name), got, *updateGolden)
}
