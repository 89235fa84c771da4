#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# install-deps.sh: make a fresh Debian 12 machine ready to build, run and test terok-shield.
# Idempotent: installs only what is missing. Needs root.
#
#   - Debian packages: podman, nftables, dnsmasq-base (nftset), runc, uidmap, slirp4netns,
#     iproute2, util-linux (nsenter), dnsutils, make, git, ca-certificates
#   - Go (>= 1.26) must be on PATH or at /usr/local/go/bin (the Go module proxy is reachable).
#   - /dev/net/tun usable by unprivileged users (slirp4netns for rootless podman)
#   - a rootless test user (TEROK_TEST_USER, default terok-test) with /etc/subuid and /etc/subgid ranges
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: must run as root (it installs Debian packages and creates a test user)" >&2
	exit 1
fi

test_user=${TEROK_TEST_USER:-terok-test}
packages=(podman nftables dnsmasq-base runc uidmap slirp4netns iproute2 util-linux dnsutils make git ca-certificates procps)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "install-deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "install-deps.sh: Go toolchain not found (expected on PATH or /usr/local/go/bin)" >&2
	exit 1
fi

# dnsmasq must have nftset support (the resolver fills nftables sets with it).
if ! dnsmasq --version | grep -q ' nftset'; then
	echo "install-deps.sh: installed dnsmasq lacks nftset support" >&2
	exit 1
fi

# slirp4netns opens /dev/net/tun as the rootless user.
if [ -c /dev/net/tun ]; then
	chmod 666 /dev/net/tun
fi

if ! id "$test_user" >/dev/null 2>&1; then
	echo "install-deps.sh: creating rootless test user $test_user"
	useradd --create-home --shell /bin/bash "$test_user"
fi
uid=$(id -u "$test_user")
for f in /etc/subuid /etc/subgid; do
	touch "$f"
	if ! grep -q "^$test_user:" "$f"; then
		# A range that does not collide with other entries: 100000 * uid-based slot.
		start=$((200000 + (uid % 1000) * 65536))
		echo "$test_user:$start:65536" >>"$f"
	fi
done
# The rootless user's podman needs its runtime dir; systemd-logind is not guaranteed here.
install -d -m 0700 -o "$test_user" -g "$test_user" "/run/user/$uid"
echo "install-deps.sh: ok (test user $test_user, uid $uid)"
