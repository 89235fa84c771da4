// SPDX-License-Identifier: Apache-2.0

// Command benchratio reads `go test -bench` output and prints, side by side, each benchmark
// measured against its baseline from the same run: names that differ only in one path element,
// e.g. BenchmarkApply/nft/1000 (baseline) and BenchmarkApply/ours/1000. Ratios, not absolute
// times, are what carry over between machines.
//
//	go test -run '^$' -bench . ./nft | go run ./internal/benchratio -pair nft:ours -pair direct:shim
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type pairFlag [][2]string

func (p *pairFlag) String() string { return fmt.Sprint(*p) }
func (p *pairFlag) Set(s string) error {
	base, cand, ok := strings.Cut(s, ":")
	if !ok || base == "" || cand == "" {
		return fmt.Errorf("want BASELINE:CANDIDATE, got %q", s)
	}
	*p = append(*p, [2]string{base, cand})
	return nil
}

// benchLine matches "BenchmarkX/a/b-2   	  100	  12345 ns/op ...".
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

func main() {
	var pairs pairFlag
	flag.Var(&pairs, "pair", "BASELINE:CANDIDATE path elements to compare (repeatable)")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, pairs); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, pairs pairFlag) error {
	ns := map[string]float64{}
	var order []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(out, line)
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		if _, seen := ns[m[1]]; !seen {
			order = append(order, m[1])
		}
		ns[m[1]] = v
	}
	if err := sc.Err(); err != nil {
		return err
	}
	type row struct {
		name, base, cand string
		b, c             float64
	}
	var rows []row
	for _, name := range order {
		parts := strings.Split(name, "/")
		for _, p := range pairs {
			for i, el := range parts {
				if el != p[1] {
					continue
				}
				bparts := append([]string(nil), parts...)
				bparts[i] = p[0]
				bname := strings.Join(bparts, "/")
				if bv, ok := ns[bname]; ok {
					rows = append(rows, row{strings.Join(append(append([]string(nil), parts[:i]...), parts[i+1:]...), "/"), p[0], p[1], bv, ns[name]})
				}
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintf(out, "\n%-46s %-8s %14s %-8s %14s %10s\n", "comparison", "baseline", "ns/op", "ours", "ns/op", "base/ours")
	for _, r := range rows {
		fmt.Fprintf(out, "%-46s %-8s %14.0f %-8s %14.0f %9.2fx\n", r.name, r.base, r.b, r.cand, r.c, r.b/r.c)
	}
	return nil
}
