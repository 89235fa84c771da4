// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBatch runs a two-stage batch against a loopback UDP echo and a closed port: results come
// back in input order, stage 1 starts only after stage 0, and bad input runs nothing.
func TestBatch(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var (
		mu    sync.Mutex
		order []string
	)
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			order = append(order, strings.TrimSpace(string(buf[:n])))
			mu.Unlock()
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	closed, _ := net.ListenPacket("udp", "127.0.0.1:0")
	closedAddr := closed.LocalAddr().String()
	closed.Close()
	echo := pc.LocalAddr().String()
	in := `[{"args":["udp","` + echo + `","--send","second"],"stage":1},
	        {"args":["udp","` + closedAddr + `"]},
	        {"args":["udp","` + echo + `","--send","first","--timeout","1s"]}]`
	var out, errb bytes.Buffer
	if code := Batch(strings.NewReader(in), &out, &errb); code != 0 {
		t.Fatalf("Batch = %d, stderr %q", code, errb.String())
	}
	rs, err := DecodeBatch(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	type short struct{ Cmd, Target, Result, Reply, Errno string }
	var got []short
	for _, r := range rs {
		got = append(got, short{r.Cmd, r.Target, r.Result, r.Reply, r.Errno})
	}
	want := []short{
		{"udp", echo, OK, "second", ""},
		{"udp", closedAddr, ICMPErr, "", "ECONNREFUSED"},
		{"udp", echo, OK, "first", ""},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("batch results (-want +got):\n%s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff([]string{"first", "second"}, order); d != "" {
		t.Errorf("stage order at the server (-want +got):\n%s", d)
	}

	for _, bad := range []string{`not json`, `[{"args":[]}]`, `[{"args":["batch"]}]`, `[{"args":["tcp"]}]`, `[{"args":["bogus","x"]}]`,
		`[{"args":["tcp","1.2.3.4:1","--timeout","soon"]}]`} {
		out.Reset()
		if code := Batch(strings.NewReader(bad), &out, &errb); code != 2 || out.Len() != 0 {
			t.Errorf("Batch(%s) = %d, stdout %q; want 2 and nothing", bad, code, out.String())
		}
	}
	if code := Main([]string{"batch", "extra"}, &out, &errb); code != 2 {
		t.Errorf("Main(batch extra) = %d, want 2", code)
	}
}
