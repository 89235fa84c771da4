#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make e2e-report: run the integration tests (the adversarial matrix included) and the unit tests
# the fault table cites, then render docs/conformance.md. Runs as root (real podman, netns).
# Exits with the tests' status after writing the report, so failures are both recorded and seen.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
export TEROK_SHIELD_REQUIRE_PRIVILEGED=${TEROK_SHIELD_REQUIRE_PRIVILEGED:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TEROK_SHIELD_E2E_REPORT="$tmp/matrix.json"
status=0
go test -json -count=1 -timeout 25m ./integration/ >"$tmp/tests.json" || status=$?
go test -json -count=1 -run '^TestBulkApplySplitAndFailClosed$' ./nft/ >>"$tmp/tests.json" || status=$?
go test -json -count=1 -run '^TestFailClosed(DiskFull)?$' ./hook/ >>"$tmp/tests.json" || status=$?
go run ./internal/conformance/cmd/conformance -matrix "$tmp/matrix.json" -tests "$tmp/tests.json" \
	-src integration -out docs/conformance.md
echo "wrote docs/conformance.md (tests exit status $status)"
exit "$status"
