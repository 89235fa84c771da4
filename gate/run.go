// SPDX-License-Identifier: Apache-2.0

package gate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExitRefused is the exit code of a refused start (podman's "command cannot be invoked").
const ExitRefused = 126

// EnvReaper, when "1" in the gate's environment, makes the gate stay PID 1 as a minimal init
// (signal forwarding, orphan reaping) instead of exec'ing the workload. The shim sets it when
// the user asked for --init, so that request keeps its meaning.
const EnvReaper = "TEROK_SHIELD_GATE_REAPER"

// Main is the gate's entry point. args is the full argv, as podman builds it for an init:
// ["/run/podman-init", "--", workload argv...]. It returns only on refusal or, in reaper mode,
// with the workload's exit status.
func Main(args []string, stderr io.Writer) int {
	workload := args[1:]
	if len(workload) > 0 && workload[0] == "--" {
		workload = workload[1:]
	}
	if len(workload) == 0 {
		fmt.Fprintln(stderr, "terok-shield gate: no workload command given")
		return ExitRefused
	}
	p, err := verify(filepath.Join(ProofDir, ProofFile))
	if err == nil && p.Resolver != "" {
		err = WaitResolver(p.Resolver, ResolverWait)
	}
	if err != nil {
		fmt.Fprintf(stderr, "terok-shield gate: refusing to start the workload: %v\n", err)
		return ExitRefused
	}
	path, err := exec.LookPath(workload[0])
	if err != nil {
		fmt.Fprintf(stderr, "terok-shield gate: %v\n", err)
		return 127
	}
	// The gate has served its purpose; it must not be visible to the workload's environment.
	env := withoutVar(os.Environ(), EnvReaper)
	if os.Getenv(EnvReaper) == "1" {
		return reap(path, workload, env, stderr)
	}
	err = unix.Exec(path, workload, env)
	fmt.Fprintf(stderr, "terok-shield gate: exec %s: %v\n", workload[0], err)
	return ExitRefused
}

// ResolverWait bounds the gate's wait for the container's resolver; a resolver that failed to
// start surfaces as a refusal after it.
const ResolverWait = 10 * time.Second

func verify(proofPath string) (Proof, error) {
	data, err := os.ReadFile(proofPath)
	if errors.Is(err, os.ErrNotExist) {
		return Proof{}, errors.New("the firewall hook did not run for this container (no proof); run `podman shield doctor`")
	}
	if err != nil {
		return Proof{}, err
	}
	p, err := ParseProof(data)
	if err != nil {
		return Proof{}, err
	}
	f, err := CurrentFacts()
	if err != nil {
		return Proof{}, err
	}
	if err := Check(p, f); err != nil {
		return Proof{}, fmt.Errorf("the firewall hook did not run for this start: %w", err)
	}
	return p, nil
}

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if len(kv) > len(name) && kv[:len(name)+1] == name+"=" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// reap runs the workload as a child and stays PID 1: it forwards signals to the child and
// reaps every exited process, returning the child's exit status like an init would.
func reap(path string, argv, env []string, stderr io.Writer) int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	cmd := exec.Cmd{Path: path, Args: argv, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "terok-shield gate: start %s: %v\n", argv[0], err)
		return ExitRefused
	}
	child := cmd.Process.Pid
	for sig := range sigs {
		if sig == unix.SIGCHLD {
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if err != nil || pid <= 0 {
					break
				}
				if pid == child {
					if ws.Signaled() {
						return 128 + int(ws.Signal())
					}
					return ws.ExitStatus()
				}
			}
			continue
		}
		if s, ok := sig.(syscall.Signal); ok {
			_ = unix.Kill(child, s)
		}
	}
	return 0
}
