// SPDX-License-Identifier: Apache-2.0

// Package dnsmasq renders the configuration of the per-container resolver and
// runs it inside the container's network namespace.
//
// It makes no API stability promise.
package dnsmasq
