// SPDX-License-Identifier: Apache-2.0

// Command genflags regenerates the podman flag tables in argparse/flags.
//
// For every pinned podman release it fetches podman's source through the Go
// module proxy (go mod download), copies it to a scratch directory, adds a
// small file (dump.go.tmpl) to package cmd/podman that builds podman's real
// cobra command tree the way podman's own main does and prints every
// command's flags, builds that program with podman's module (not ours), runs
// it once in local mode and once in remote mode (CONTAINER_HOST set), and
// merges both dumps into argparse/flags/podman-MAJOR.MINOR.txt. The format is
// documented in argparse/doc.go.
//
// Run it from the repository root:
//
//	go run ./internal/genflags
//
// The build uses the tags containers_image_openpgp,
// exclude_graphdriver_btrfs and exclude_graphdriver_devicemapper so that
// only a C compiler is needed (no gpgme, btrfs or devicemapper headers). The
// shim never links this package.
package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

//go:embed dump.go.tmpl
var dumpTemplate string

// pin is one podman release whose flags are extracted.
type pin struct {
	Module  string
	Version string
}

// pins lists the releases with a table; see argparse/doc.go for how a table
// is chosen at run time.
var pins = []pin{
	{"github.com/containers/podman/v4", "v4.3.1"},
	{"github.com/containers/podman/v4", "v4.9.5"},
	{"github.com/containers/podman/v5", "v5.0.0"},
	{"github.com/containers/podman/v5", "v5.8.2"},
}

const buildTags = "containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper"

func main() {
	out := flag.String("out", "argparse/flags", "output directory for podman-MAJOR.MINOR.txt")
	work := flag.String("work", "", "scratch directory (default: a new temporary directory, removed afterwards)")
	only := flag.String("only", "", "regenerate only this version (e.g. v4.3.1)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("genflags: ")

	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("", "genflags-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	for _, p := range pins {
		if *only != "" && *only != p.Version {
			continue
		}
		if err := generate(p, dir, *out); err != nil {
			log.Fatalf("%s@%s: %v", p.Module, p.Version, err)
		}
	}
}

func generate(p pin, work, outDir string) error {
	src, err := download(p)
	if err != nil {
		return err
	}
	tree := filepath.Join(work, p.Version)
	if err := os.RemoveAll(tree); err != nil {
		return err
	}
	if err := copyTree(src, tree); err != nil {
		return fmt.Errorf("copy source: %w", err)
	}
	if err := patch(p, tree); err != nil {
		return err
	}
	bin := filepath.Join(work, "dump-"+p.Version)
	log.Printf("building %s@%s", p.Module, p.Version)
	build := exec.Command("go", "build", "-mod=mod", "-tags", buildTags, "-o", bin, "./cmd/podman")
	build.Dir = tree
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build dumper: %w", err)
	}
	local, err := runDump(bin, false)
	if err != nil {
		return err
	}
	remote, err := runDump(bin, true)
	if err != nil {
		return err
	}
	text := merge(p, parseDump(local), parseDump(remote))
	name := filepath.Join(outDir, "podman-"+majorMinor(p.Version)+".txt")
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s", name)
	return nil
}

func download(p pin) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", p.Module+"@"+p.Version)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download: %w", err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(b, &info); err != nil {
		return "", fmt.Errorf("go mod download output: %w", err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download: %s", info.Error)
	}
	return info.Dir, nil
}

// copyTree copies the module without the parts a build does not need; the
// module cache is read-only and its vendor/ holds only modules.txt, which
// would force vendor mode.
func copyTree(src, dst string) error {
	skip := map[string]bool{"vendor": true, "docs": true, "test": true, ".git": true, "contrib": true}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skip[rel] {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// patch renames podman's main and adds the dumper.
func patch(p pin, tree string) error {
	mainGo := filepath.Join(tree, "cmd", "podman", "main.go")
	b, err := os.ReadFile(mainGo)
	if err != nil {
		return err
	}
	if n := bytes.Count(b, []byte("\nfunc main() {\n")); n != 1 {
		return fmt.Errorf("cmd/podman/main.go: found %d definitions of main, want 1", n)
	}
	b = bytes.Replace(b, []byte("\nfunc main() {\n"), []byte("\nfunc podmanMain() {\n"), 1)
	if err := os.WriteFile(mainGo, b, 0o644); err != nil {
		return err
	}
	cands, err := aliasCandidates(filepath.Join(tree, "cmd", "podman"))
	if err != nil {
		return err
	}
	quoted := make([]string, len(cands))
	for i, c := range cands {
		quoted[i] = strconv.Quote(c)
	}
	src := strings.ReplaceAll(dumpTemplate, "{{MODULE}}", p.Module)
	src = strings.ReplaceAll(src, "{{CANDIDATES}}", strings.Join(quoted, ", "))
	return os.WriteFile(filepath.Join(tree, "cmd", "podman", "zz_genflags_dump.go"), []byte(src), 0o644)
}

// aliasCandidates returns the string literals inside every function of
// cmd/podman with the shape of a pflag normalisation function
// (func(*pflag.FlagSet, string) pflag.NormalizedName).
func aliasCandidates(dir string) ([]string, error) {
	set := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			var ft *ast.FuncType
			var body *ast.BlockStmt
			switch fn := n.(type) {
			case *ast.FuncDecl:
				ft, body = fn.Type, fn.Body
			case *ast.FuncLit:
				ft, body = fn.Type, fn.Body
			default:
				return true
			}
			if body == nil || !isNormalizer(ft) {
				return true
			}
			ast.Inspect(body, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && s != "" {
						set[s] = true
					}
				}
				return true
			})
			return true
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, errors.New("no flag normalisation functions found in cmd/podman")
	}
	return out, nil
}

func isNormalizer(ft *ast.FuncType) bool {
	if ft.Results == nil || len(ft.Results.List) != 1 {
		return false
	}
	sel, ok := ft.Results.List[0].Type.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "NormalizedName"
}

func runDump(bin string, remote bool) ([]byte, error) {
	cmd := exec.Command(bin)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONTAINER_HOST=") && !strings.HasPrefix(kv, "CONTAINER_CONNECTION=") {
			env = append(env, kv)
		}
	}
	if remote {
		env = append(env, "CONTAINER_HOST=unix:///nonexistent/genflags.sock")
	}
	cmd.Env = env
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("run dumper (remote=%v): %w", remote, err)
	}
	return out, nil
}

// section is one command of a dump.
type section struct {
	Path   string
	Attrs  []string
	Flags  []string          // flag lines in dump order
	ByName map[string]string // flag name -> line
	Alias  []string          // "= from to" lines
}

func parseDump(b []byte) []*section {
	var out []*section
	var cur *section
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "["):
			end := strings.Index(line, "]")
			cur = &section{Path: line[1:end], Attrs: strings.Fields(line[end+1:]), ByName: map[string]string{}}
			out = append(out, cur)
		case cur == nil:
		case strings.HasPrefix(line, "= "):
			cur.Alias = append(cur.Alias, line)
		default:
			cur.Flags = append(cur.Flags, line)
			cur.ByName[strings.Fields(line)[0]] = line
		}
	}
	return out
}

var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)`)

func majorMinor(v string) string {
	m := versionRE.FindStringSubmatch(v)
	return m[1] + "." + m[2]
}

// merge writes the local dump annotated with what remote mode lacks ("local")
// or only remote mode has ("remote").
func merge(p pin, local, remote []*section) string {
	rem := map[string]*section{}
	for _, s := range remote {
		rem[s.Path] = s
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Code generated by internal/genflags from %s@%s; DO NOT EDIT.\n", p.Module, p.Version)
	b.WriteString("# Format: see argparse/doc.go. Regenerate: go run ./internal/genflags\n")
	fmt.Fprintf(&b, "version %s\n", strings.TrimPrefix(p.Version, "v"))
	seen := map[string]bool{}
	for _, s := range local {
		seen[s.Path] = true
		r := rem[s.Path]
		attrs := s.Attrs
		if r == nil || (contains(r.Attrs, "noparse") && !contains(s.Attrs, "noparse")) {
			attrs = append(attrs, "local")
			r = nil
		}
		fmt.Fprintf(&b, "[%s]%s\n", s.Path, joinAttrs(attrs))
		for _, f := range s.Flags {
			name := strings.Fields(f)[0]
			if r != nil && r.ByName[name] == "" {
				f += " local"
			}
			b.WriteString(f + "\n")
		}
		if r != nil {
			for _, f := range r.Flags {
				if s.ByName[strings.Fields(f)[0]] == "" {
					b.WriteString(f + " remote\n")
				}
			}
		}
		for _, a := range s.Alias {
			b.WriteString(a + "\n")
		}
	}
	for _, r := range remote {
		if seen[r.Path] {
			continue
		}
		fmt.Fprintf(&b, "[%s]%s\n", r.Path, joinAttrs(append(r.Attrs, "remote")))
		for _, f := range r.Flags {
			b.WriteString(f + "\n")
		}
		for _, a := range r.Alias {
			b.WriteString(a + "\n")
		}
	}
	return b.String()
}

func joinAttrs(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return " " + strings.Join(a, " ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
