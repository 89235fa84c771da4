// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"
)

// Hold describes a held TCP connection: when it was established, when its last exchange
// succeeded and when it broke (times as Unix milliseconds, comparable with the host's clock).
type Hold struct {
	ConnectedMS int64 `json:"connected_ms"`
	LastOKMS    int64 `json:"last_ok_ms,omitempty"`
	BrokeMS     int64 `json:"broke_ms,omitempty"` // 0: held for the whole duration
	Exchanges   int   `json:"exchanges"`
}

// DefaultHoldEvery is the interval between two exchanges of `hold`.
const DefaultHoldEvery = 200 * time.Millisecond

// probeHoldArgs parses hold's options (--for, --every) and runs it.
func probeHoldArgs(a Args, timeout time.Duration) Result {
	r := Result{Target: a.Pos[0]}
	dur, err := optDuration(a, "for", 5*time.Second)
	if err != nil {
		return fail(r, err)
	}
	every, err := optDuration(a, "every", DefaultHoldEvery)
	if err != nil {
		return fail(r, err)
	}
	return probeHold(a.Pos[0], dur, every, timeout)
}

func optDuration(a Args, key string, def time.Duration) (time.Duration, error) {
	s, ok := a.Opts[key]
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--%s %q: want a positive duration", key, s)
	}
	return d, nil
}

// probeHold connects to addr and, every interval for dur, writes one line and reads the
// one-line answer (each exchange within timeout). It stops at the first failure: the result
// is "ok" when the connection held for dur, else the classified failure, with Hold saying when.
func probeHold(addr string, dur, every, timeout time.Duration) Result {
	r := Result{Target: addr}
	c, err := dialTCP(addr, timeout)
	if err != nil {
		return fail(r, err)
	}
	defer c.Close()
	h := &Hold{ConnectedMS: time.Now().UnixMilli()}
	r.Hold = h
	rd := bufio.NewReader(c)
	end := time.Now().Add(dur)
	for i := 1; ; i++ {
		_ = c.SetDeadline(time.Now().Add(timeout))
		_, err := fmt.Fprintf(c, "hold %d\n", i)
		if err == nil {
			var line string
			line, err = rd.ReadString('\n')
			if err == nil && strings.TrimSpace(line) == "" {
				err = fmt.Errorf("empty reply")
			}
		}
		if err != nil {
			h.BrokeMS = time.Now().UnixMilli()
			return fail(r, heldConnError(c, err))
		}
		h.Exchanges++
		h.LastOKMS = time.Now().UnixMilli()
		if !time.Now().Add(every).Before(end) {
			r.Result = OK
			return r
		}
		time.Sleep(every)
	}
}

// heldConnError classifies a failed exchange on c, with the ICMP error queued on its socket.
func heldConnError(c net.Conn, err error) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return newNetError("hold", err, nil)
	}
	raw, rerr := sc.SyscallConn()
	if rerr != nil {
		return newNetError("hold", err, nil)
	}
	var ne *netError
	if cerr := raw.Control(func(fd uintptr) { ne = withQueued("hold", int(fd), err) }); cerr != nil {
		return newNetError("hold", err, nil)
	}
	return ne
}
