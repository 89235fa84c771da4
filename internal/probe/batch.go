// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
)

// BatchItem is one probe of a batch: the subcommand and its arguments as on the command line,
// and the stage it runs in. Stages run in ascending order, one after the other; the probes of
// one stage run concurrently (so a name can be resolved in stage 0 and its address dialled in
// stage 1, and a stage of probes that all time out costs one timeout, not their sum).
type BatchItem struct {
	Args  []string `json:"args"`
	Stage int      `json:"stage,omitempty"`
}

// Batch reads a JSON list of BatchItem from in, runs them and writes one JSON list of Result,
// in input order, to stdout. It returns 0 when the list was printed and 2 when the input or any
// item's arguments are bad (then nothing runs). "batch" itself is not allowed as an item.
func Batch(in io.Reader, stdout, stderr io.Writer) int {
	var items []BatchItem
	if err := json.NewDecoder(in).Decode(&items); err != nil {
		fmt.Fprintf(stderr, "probe: batch: decode stdin: %v\n", err)
		return 2
	}
	for i, it := range items {
		if len(it.Args) == 0 || it.Args[0] == "batch" {
			fmt.Fprintf(stderr, "probe: batch item %d: want a probe subcommand, got %q\n", i, it.Args)
			return 2
		}
		if err := checkArgs(it.Args); err != nil {
			fmt.Fprintf(stderr, "probe: batch item %d: %v\n%s\n", i, err, Usage)
			return 2
		}
	}
	results := make([]Result, len(items))
	var stages []int
	for _, it := range items {
		if !slices.Contains(stages, it.Stage) {
			stages = append(stages, it.Stage)
		}
	}
	slices.Sort(stages)
	for _, st := range stages {
		var wg sync.WaitGroup
		for i, it := range items {
			if it.Stage != st {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], _ = runOne(it.Args, io.Discard)
			}()
		}
		wg.Wait()
	}
	b, err := json.Marshal(results)
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(b))
	return 0
}

// checkArgs validates a subcommand's arguments without running it.
func checkArgs(args []string) error {
	cmd, ok := commands()[args[0]]
	if !ok {
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
	a, err := ParseArgs(args[1:])
	if err != nil {
		return err
	}
	if len(a.Pos) != cmd.npos {
		return fmt.Errorf("%s wants %d argument(s), got %d", args[0], cmd.npos, len(a.Pos))
	}
	_, err = a.Timeout()
	return err
}

// DecodeBatch parses the output of a batch.
func DecodeBatch(b []byte) ([]Result, error) {
	var rs []Result
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("decode probe batch %q: %w", b, err)
	}
	return rs, nil
}
