// SPDX-License-Identifier: Apache-2.0

package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoStartupWorkInLinkedPackages keeps the pass-through path at about a process start:
// package-level variables of every terok-shield package linked into the binary must not
// compile regular expressions (or call other known costly constructors) at init time. A
// compile of `{0,252}` alone cost 0.5 ms of every podman invocation.
func TestNoStartupWorkInLinkedPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	costly := map[string]bool{"regexp.MustCompile": true, "regexp.Compile": true, "template.Must": true}
	for _, dir := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dir, root+string(filepath.Separator)) {
			continue // third-party modules are not ours to change
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range file.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				ast.Inspect(gd, func(n ast.Node) bool {
					if _, isFunc := n.(*ast.FuncLit); isFunc {
						return false // deferred work (sync.OnceValue(func…)) is fine
					}
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
						if x, ok := sel.X.(*ast.Ident); ok && costly[x.Name+"."+sel.Sel.Name] {
							rel, _ := filepath.Rel(root, f)
							t.Errorf("%s: package-level %s.%s runs at every process start; compile lazily (sync.OnceValue)", rel, x.Name, sel.Sel.Name)
						}
					}
					return true
				})
			}
		}
	}
}
