// SPDX-License-Identifier: Apache-2.0

// Package probe implements the in-container test probe: one subcommand per attempt (TCP/UDP
// connect, ping, DNS over UDP/TCP/DoT/DoH, TLS, raw sockets, nftables, user namespaces,
// capability dump), each printing exactly one JSON Result on stdout.
//
// The binary (./internal/probe/cmd/probe) is built static with CGO off and imported into a
// minimal image by the e2e harness. Results distinguish how an attempt failed: "refused" (TCP
// reset, or EPERM/EACCES from the local kernel), "icmp" (an ICMP error arrived; its type and code
// come from IP_RECVERR), "timeout" and "error" (anything else, e.g. ENETUNREACH without any
// ICMP message: no local route). The errno is always reported.
package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Result values.
const (
	OK      = "ok"
	Refused = "refused"
	ICMPErr = "icmp"
	Timeout = "timeout"
	Error   = "error"
)

// DefaultTimeout bounds every network wait unless --timeout says otherwise.
const DefaultTimeout = 2 * time.Second

// Result is the single JSON object every subcommand prints.
type Result struct {
	Cmd       string    `json:"cmd"`
	Target    string    `json:"target,omitempty"`
	Result    string    `json:"result"`
	Errno     string    `json:"errno,omitempty"`
	ICMP      *ICMP     `json:"icmp,omitempty"`
	Reply     string    `json:"reply,omitempty"`
	Rcode     string    `json:"rcode,omitempty"`
	Truncated bool      `json:"truncated,omitempty"`
	Answers   []string  `json:"answers,omitempty"`
	Caps      *Caps     `json:"caps,omitempty"`
	Attempts  []Attempt `json:"attempts,omitempty"`
	Hold      *Hold     `json:"hold,omitempty"`
	Error     string    `json:"error,omitempty"`
	ElapsedMS int64     `json:"elapsed_ms"`
}

// ICMP describes an ICMP (or ICMPv6) error received through IP_RECVERR/IPV6_RECVERR.
type ICMP struct {
	V6   bool   `json:"v6,omitempty"`
	Type int    `json:"type"`
	Code int    `json:"code"`
	From string `json:"from,omitempty"`
}

// Attempt is one sub-try of a multi-try subcommand (rawsock, nft, userns).
type Attempt struct {
	Name   string  `json:"name"`
	Result string  `json:"result"`
	Errno  string  `json:"errno,omitempty"`
	Error  string  `json:"error,omitempty"`
	Inner  *Result `json:"inner,omitempty"`
}

// Decode parses a probe's stdout (one JSON object).
func Decode(b []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode probe result %q: %w", b, err)
	}
	return r, nil
}

// Usage is printed on bad arguments.
const Usage = `usage: probe SUBCOMMAND [ARGS] [--timeout DUR]
  tcp HOST:PORT [--send DATA]        connect, send a line, read one line
  udp HOST:PORT [--send DATA]        send a datagram, read one
  hold HOST:PORT [--for DUR] [--every DUR]
                                     keep a TCP connection, one line each way every 200ms, until it breaks
  ping ADDR                          ICMP echo (ping socket, raw socket fallback)
  dns NAME [--server ADDR] [--tcp] [--type A|AAAA|...]
  dot NAME --server ADDR[:853] [--sni NAME]
  doh NAME --url https://ADDR/dns-query [--sni NAME]
  tls HOST:PORT [--sni NAME] [--host HOST] [--path /]
  caps | rawsock | nft | userns
  batch                              run the probes of a JSON list on stdin (see Batch)`

// Args are parsed command-line arguments: positionals and --key value / --flag options.
type Args struct {
	Pos   []string
	Opts  map[string]string
	Flags map[string]bool
}

// isBoolFlag reports whether an option takes no value.
func isBoolFlag(key string) bool { return key == "tcp" }

// ParseArgs splits args into positionals, --key value options and boolean --flags.
func ParseArgs(args []string) (Args, error) {
	a := Args{Opts: map[string]string{}, Flags: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		s := args[i]
		if !strings.HasPrefix(s, "--") || s == "--" {
			a.Pos = append(a.Pos, s)
			continue
		}
		key, val, hasVal := strings.Cut(strings.TrimPrefix(s, "--"), "=")
		if isBoolFlag(key) {
			if hasVal {
				return a, fmt.Errorf("--%s takes no value", key)
			}
			a.Flags[key] = true
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return a, fmt.Errorf("--%s needs a value", key)
			}
			i++
			val = args[i]
		}
		a.Opts[key] = val
	}
	return a, nil
}

// Timeout returns --timeout or DefaultTimeout.
func (a Args) Timeout() (time.Duration, error) {
	s, ok := a.Opts["timeout"]
	if !ok {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--timeout: %w", err)
	}
	return d, nil
}

type command struct {
	npos int
	run  func(a Args, timeout time.Duration) Result
}

func commands() map[string]command {
	return map[string]command{
		"tcp":     {1, func(a Args, t time.Duration) Result { return probeTCP(a.Pos[0], a.Opts["send"], t) }},
		"udp":     {1, func(a Args, t time.Duration) Result { return probeUDP(a.Pos[0], a.Opts["send"], t) }},
		"hold":    {1, probeHoldArgs},
		"ping":    {1, func(a Args, t time.Duration) Result { return probePing(a.Pos[0], t) }},
		"dns":     {1, probeDNS},
		"dot":     {1, probeDoT},
		"doh":     {1, probeDoH},
		"tls":     {1, probeTLS},
		"caps":    {0, func(Args, time.Duration) Result { return probeCaps("/proc/self/status") }},
		"rawsock": {0, func(Args, time.Duration) Result { return probeRawSock() }},
		"nft":     {0, func(Args, time.Duration) Result { return probeNft() }},
		"userns":  {0, func(_ Args, t time.Duration) Result { return probeUserns(t) }},
	}
}

// Main runs one subcommand and writes its JSON result to stdout. It returns the exit code: 0
// whenever a result was printed (whatever its outcome), 2 on usage errors.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintln(stderr, Usage)
		return 2
	}
	if args[0] == "batch" {
		if len(args) != 1 {
			fmt.Fprintf(stderr, "probe: batch takes no arguments\n%s\n", Usage)
			return 2
		}
		return Batch(os.Stdin, stdout, stderr)
	}
	r, code := runOne(args, stderr)
	if code != 0 {
		return code
	}
	b, err := json.Marshal(r)
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(b))
	return 0
}

// runOne parses and runs one subcommand (not batch). On a usage error it writes the message to
// stderr and returns code 2.
func runOne(args []string, stderr io.Writer) (Result, int) {
	if len(args) < 1 {
		fmt.Fprintln(stderr, Usage)
		return Result{}, 2
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "probe: unknown subcommand %q\n%s\n", args[0], Usage)
		return Result{}, 2
	}
	a, err := ParseArgs(args[1:])
	if err == nil && len(a.Pos) != cmd.npos {
		err = fmt.Errorf("%s wants %d argument(s), got %d", args[0], cmd.npos, len(a.Pos))
	}
	var timeout time.Duration
	if err == nil {
		timeout, err = a.Timeout()
	}
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n%s\n", err, Usage)
		return Result{}, 2
	}
	start := time.Now()
	r := cmd.run(a, timeout)
	r.Cmd = args[0]
	if r.Target == "" && len(a.Pos) > 0 {
		r.Target = a.Pos[0]
	}
	r.ElapsedMS = time.Since(start).Milliseconds()
	return r, 0
}

// errnoName returns the symbolic name of an errno ("EPERM"), or its number.
func errnoName(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno" + strconv.Itoa(int(e))
}

// classify maps an error to a result value and errno name.
func classify(err error) (string, string) {
	if err == nil {
		return OK, ""
	}
	var e unix.Errno
	if errors.As(err, &e) {
		switch e {
		case unix.ECONNREFUSED, unix.EPERM, unix.EACCES:
			return Refused, errnoName(e)
		case unix.ETIMEDOUT, unix.EAGAIN:
			return Timeout, errnoName(e)
		}
		return Error, errnoName(e)
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return Timeout, ""
	}
	return Error, ""
}

// fail fills r from err (keeping ICMP details a netError carries).
func fail(r Result, err error) Result {
	r.Result, r.Errno = classify(err)
	r.Error = err.Error()
	var ne *netError
	if errors.As(err, &ne) {
		r.Result, r.Errno, r.ICMP = ne.result, ne.errno, ne.icmp
	}
	return r
}
