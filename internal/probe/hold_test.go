// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// lineEcho serves TCP on loopback, answering each line, and closing a connection after
// maxLines lines (0: never).
func lineEcho(t *testing.T, maxLines int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for n := 1; sc.Scan(); n++ {
					if _, err := c.Write([]byte("echo " + sc.Text() + "\n")); err != nil {
						return
					}
					if n == maxLines {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestHold(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name          string
		addr          string
		dur           time.Duration
		result        string
		minExchanges  int
		maxExchanges  int
		broke, hasHld bool
	}{
		{"held for the whole duration", lineEcho(t, 0), 500 * time.Millisecond, OK, 3, 6, false, true},
		{"server closes after two lines", lineEcho(t, 2), 2 * time.Second, Error, 2, 2, true, true},
		{"connect refused", closedAddr, time.Second, Refused, 0, 0, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now().UnixMilli()
			r := probeHold(c.addr, c.dur, 100*time.Millisecond, time.Second)
			if r.Result != c.result {
				t.Fatalf("result %q, want %q: %+v", r.Result, c.result, r)
			}
			if (r.Hold != nil) != c.hasHld {
				t.Fatalf("hold %+v, want present %v", r.Hold, c.hasHld)
			}
			if r.Hold == nil {
				return
			}
			h := r.Hold
			if h.Exchanges < c.minExchanges || h.Exchanges > c.maxExchanges {
				t.Errorf("%d exchanges, want %d..%d", h.Exchanges, c.minExchanges, c.maxExchanges)
			}
			if h.ConnectedMS < start || h.LastOKMS < h.ConnectedMS {
				t.Errorf("times out of order (start %d): %+v", start, h)
			}
			if (h.BrokeMS != 0) != c.broke || c.broke && h.BrokeMS < h.LastOKMS {
				t.Errorf("broke_ms %d, want broken %v after last_ok_ms %d", h.BrokeMS, c.broke, h.LastOKMS)
			}
		})
	}
}

func TestHoldUsage(t *testing.T) {
	for _, opts := range []map[string]string{{"for": "soon"}, {"every": "-1s"}} {
		r := probeHoldArgs(Args{Pos: []string{"127.0.0.1:1"}, Opts: opts}, time.Second)
		if r.Result != Error || r.Hold != nil {
			t.Errorf("opts %v: %+v, want an error before connecting", opts, r)
		}
	}
}
