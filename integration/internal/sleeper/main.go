// SPDX-License-Identifier: Apache-2.0

// Command sleeper is the long-running workload of the e2e probe image: it waits until SIGTERM
// or SIGINT and exits 0, so containers can be probed with `podman exec` and stopped quickly
// (as PID 1 a process without a handler would ignore SIGTERM).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
}
