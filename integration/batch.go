// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/terok-ai/terok-shield/internal/probe"
)

// ProbeBatch runs `probe batch` with `podman exec -i` in the running container name: every
// item in one exec (see probe.Batch for stages), results in input order.
func (sp *ShieldedPodman) ProbeBatch(ctx context.Context, name string, items []probe.BatchItem) ([]probe.Result, RunResult, error) {
	in, err := json.Marshal(items)
	if err != nil {
		return nil, RunResult{}, fmt.Errorf("probe batch: %w", err)
	}
	args := []string{"exec", "-i", name, "/bin/probe", "batch"}
	cmd := sp.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	r := RunResult{Args: args, Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.Exit = ee.ExitCode()
	case err != nil:
		return nil, r, fmt.Errorf("probe batch: %w (stderr: %s)", err, r.Stderr)
	}
	if r.Exit != 0 {
		return nil, r, fmt.Errorf("probe batch exec failed: %s", r)
	}
	rs, err := probe.DecodeBatch([]byte(strings.TrimSpace(r.Stdout)))
	if err != nil {
		return nil, r, err
	}
	if len(rs) != len(items) {
		return nil, r, fmt.Errorf("probe batch: %d results for %d probes", len(rs), len(items))
	}
	return rs, r, nil
}
