// SPDX-License-Identifier: Apache-2.0

package control

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/hookconf"
)

// TestDoctorHookChecks: "hooks dir in containers.conf" and "hook binary exists" before setup,
// after setup, and after the binary moved.
func TestDoctorHookChecks(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "containers.conf")
	hooks := filepath.Join(dir, "hooks.d")
	bin := filepath.Join(dir, "terok-shield")
	if err := os.WriteFile(bin, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := New(newRoot(t))
	c.Exe = bin
	env := DoctorEnv{Getenv: func(k string) string { return map[string]string{"CONTAINERS_CONF": conf}[k] }}
	type result struct {
		Name   string
		OK     bool
		HasFix bool
	}
	summary := func() []result {
		var out []result
		for _, ch := range c.hookChecks(env) {
			out = append(out, result{ch.Name, ch.OK, ch.Fix != ""})
		}
		return out
	}
	notOK := []result{{"hooks dir in containers.conf", false, true}, {"hook binary exists", false, true}}
	if d := cmp.Diff(notOK, summary()); d != "" {
		t.Errorf("before setup (-want +got):\n%s", d)
	}
	if _, err := hookconf.Setup(hookconf.Options{
		Scope: hookconf.ScopeUser, HooksDir: hooks, Binary: bin, Getenv: env.Getenv, Rootless: true,
		CheckBinary: func(string, hookconf.Scope) error { return nil },
	}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]result{{"hooks dir in containers.conf", true, false}, {"hook binary exists", true, false}}, summary()); d != "" {
		t.Errorf("after setup (-want +got):\n%s", d)
	}
	if err := os.Rename(bin, bin+".moved"); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]result{{"hooks dir in containers.conf", true, false}, {"hook binary exists", false, true}}, summary()); d != "" {
		t.Errorf("after the binary moved (-want +got):\n%s", d)
	}
}
