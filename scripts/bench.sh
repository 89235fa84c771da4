#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench.sh: run the benchmarks of the hot paths and print each next to its baseline from the
# same run (ratios carry over between machines; absolute times do not). Needs root for the
# netns benchmarks. BENCHTIME (default 1x for the slow ones) tunes the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() { echo "== go test $*" >&2; go test -run '^$' "$@" 2>&1 | tee -a "$out" >/dev/null; }

run -bench 'BenchmarkPassThrough' -benchtime 200x ./shim
run -bench 'BenchmarkParse' ./argparse
run -bench 'BenchmarkLoad' -benchtime 20x ./profiles
run -bench 'BenchmarkApply|BenchmarkElement100k|BenchmarkVerify' -benchtime "${BENCHTIME:-20x}" ./nft
run -bench 'BenchmarkConnectRate/interleaved' -benchtime 1x ./nft
run -bench 'BenchmarkResolver' -benchtime "${BENCHTIME_DNS:-2000x}" ./dnsmasq
for pkg in ./control ./hook ./integration; do
	if ls "$pkg"/*_test.go >/dev/null 2>&1 && grep -qs '^func Benchmark' "$pkg"/*_test.go; then
		run -bench . -benchtime "${BENCHTIME_E2E:-20x}" "$pkg"
	fi
done
go run ./internal/benchratio -pair nft:ours -pair direct:shim -pair original:ours -pair unshielded:shielded -pair empty:allow100k -pair direct:resolver -pair empty:learned100k <"$out"
