// SPDX-License-Identifier: Apache-2.0

//go:build unix

package audit

import "syscall"

const oNoFollow = syscall.O_NOFOLLOW
