// SPDX-License-Identifier: Apache-2.0

//go:build !unix

package audit

const oNoFollow = 0
