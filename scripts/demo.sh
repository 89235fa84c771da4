#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make demo: a shielded rootless and rootful container on an offline test internet.
# Needs root, scripts/install-deps.sh (podman, dnsmasq, user terok-test) and bin/terok-shield.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (it creates network namespaces): sudo make demo" >&2
	exit 1
fi
if [ ! -x bin/terok-shield ]; then
	echo "demo: bin/terok-shield is missing: run make build first" >&2
	exit 1
fi
exec go run ./internal/demo -shim bin/terok-shield
