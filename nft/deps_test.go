// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// allowedDeps are the only non-standard-library modules the security
// boundary may link, directly or transitively.
var allowedDeps = []string{
	"github.com/google/nftables",
	"golang.org/x/sys",
	"github.com/mdlayher/netlink",
	"github.com/mdlayher/socket",
	"golang.org/x/net",
	"github.com/josharian/native",
	"golang.org/x/sync", // errgroup, imported by github.com/mdlayher/socket
}

type listedPackage struct {
	ImportPath string
	Standard   bool
	Imports    []string
}

func goList(t *testing.T, args ...string) []listedPackage {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("go tool not in PATH: %v", err)
	}
	out, err := exec.Command("go", append([]string{"list", "-json"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestDependencies(t *testing.T) {
	for _, p := range goList(t, "-deps", ".") {
		if p.Standard || p.ImportPath == "github.com/terok-ai/terok-shield/nft" {
			continue
		}
		ok := false
		for _, a := range allowedDeps {
			if p.ImportPath == a || strings.HasPrefix(p.ImportPath, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("nft links %s, which is not in the allowed dependency list", p.ImportPath)
		}
	}
	// The product path never runs a binary: no os/exec in non-test files.
	self := goList(t, ".")
	if len(self) != 1 {
		t.Fatalf("go list . returned %d packages", len(self))
	}
	for _, imp := range self[0].Imports {
		if imp == "os/exec" {
			t.Errorf("nft imports os/exec in a non-test file")
		}
	}
}
