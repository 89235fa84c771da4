// SPDX-License-Identifier: Apache-2.0

package main

// nsfdEntry is the assembly entry point in nsfd_linux_amd64.s, used when the binary is linked
// with -ldflags=-E=main.nsfdEntry. It serves control.SocketHelper before the Go runtime
// starts and hands every other invocation to the runtime's own entry point.
//
//lint:ignore U1000 the linker's entry point (-ldflags=-E), never called from Go
func nsfdEntry()
