// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

func TestRunPairsByPathElement(t *testing.T) {
	in := strings.Join([]string{
		"goos: linux",
		"BenchmarkApply/nft/1000-2          10   5000000 ns/op",
		"BenchmarkApply/ours/1000-2        100   1000000 ns/op",
		"BenchmarkApply/ours/5-2           100   1000000 ns/op", // no baseline: no row
		"BenchmarkPassThrough/true/direct-2 200   800000 ns/op",
		"BenchmarkPassThrough/true/shim-2   200  1600000 ns/op",
	}, "\n")
	var out strings.Builder
	if err := run(strings.NewReader(in), &out, pairFlag{{"nft", "ours"}, {"direct", "shim"}}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"BenchmarkApply/1000", "5.00x", "BenchmarkPassThrough/true", "0.50x"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "BenchmarkApply/5 ") {
		t.Errorf("row without a baseline printed:\n%s", got)
	}
}
