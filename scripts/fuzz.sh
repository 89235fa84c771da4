#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fuzz.sh DURATION: run every Go fuzz target in the module for DURATION each.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-20s}
status=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "== $pkg $name ($fuzztime)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" || status=1
done < <(grep -rHoE '^func (Fuzz[A-Za-z0-9_]+)' --include='*_test.go' . | sed -E 's#^\./##; s#:func #:#' | sort -u)
exit $status
