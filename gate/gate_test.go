// SPDX-License-Identifier: Apache-2.0

package gate

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStartTime(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr bool
	}{
		{"plain", "1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 42 100 0", 42, false},
		{"comm with spaces and parens", "7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 1 2", 99, false},
		{"no comm", "1 init S 0", 0, true},
		{"short", "1 (x) S 0 1", 0, true},
		{"not a number", "1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 zz 1 2", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartTime(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStartTime(%q) = %d, %v; want %d, err %v", tt.stat, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCurrentFactsMatchProcSelf(t *testing.T) {
	f, err := CurrentFacts()
	if err != nil {
		t.Fatalf("CurrentFacts() error: %v", err)
	}
	st, err := ProcessStartTime("/proc", strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if f.InitStartTime != st {
		t.Errorf("CurrentFacts().InitStartTime = %d, want %d (from /proc/<pid>/stat)", f.InitStartTime, st)
	}
	var fi unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &fi); err != nil {
		t.Fatal(err)
	}
	if f.NetNSInode != fi.Ino {
		t.Errorf("CurrentFacts().NetNSInode = %d, want %d (stat of /proc/self/ns/net)", f.NetNSInode, fi.Ino)
	}
}

func TestCheck(t *testing.T) {
	p := Proof{NetNSInode: 10, InitStartTime: 20, ContainerID: "abc"}
	tests := []struct {
		name    string
		facts   Facts
		wantErr string
	}{
		{"match", Facts{10, 20}, ""},
		{"other netns", Facts{11, 20}, "network namespace"},
		{"previous start", Facts{10, 21}, "another start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(p, tt.facts)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Check(%+v, %+v) = %v, want error containing %q", p, tt.facts, err, tt.wantErr)
			}
		})
	}
}

func TestProofRoundTrip(t *testing.T) {
	p := Proof{NetNSInode: 4026532000, InitStartTime: 123456, ContainerID: "c0ffee"}
	got, err := ParseProof(p.Marshal())
	if err != nil || got != p {
		t.Fatalf("ParseProof(Marshal(%+v)) = %+v, %v", p, got, err)
	}
	for _, bad := range []string{"", "{}", `{"netns_inode":1}`, `{"netns_inode":1,"init_start_time":2,"x":3}`, "not json"} {
		if _, err := ParseProof([]byte(bad)); err == nil {
			t.Errorf("ParseProof(%q) = nil error, want error", bad)
		}
	}
}

func TestProofResolver(t *testing.T) {
	p := Proof{NetNSInode: 1, InitStartTime: 2, Resolver: "127.0.0.1:53"}
	if got, err := ParseProof(p.Marshal()); err != nil || got != p {
		t.Fatalf("ParseProof(Marshal(%+v)) = %+v, %v", p, got, err)
	}
	// The gate only ever waits on loopback: anything else in a proof is refused.
	for _, bad := range []string{"192.0.2.53:53", "[::1]:53", "127.0.0.1", "127.0.0.1:0", "localhost:53", "x"} {
		data := Proof{NetNSInode: 1, InitStartTime: 2, Resolver: bad}.Marshal()
		if _, err := ParseProof(data); err == nil {
			t.Errorf("ParseProof with resolver %q = nil error, want error", bad)
		}
	}
}

func TestWaitResolver(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	start := time.Now()
	err = WaitResolver(addr, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not start within") {
		t.Fatalf("WaitResolver with nothing listening = %v, want a timeout", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Errorf("WaitResolver gave up after %v, want about 50ms", d)
	}

	// A resolver that starts listening a little later is waited for.
	go func() {
		time.Sleep(30 * time.Millisecond)
		if l, err := net.Listen("tcp", addr); err == nil {
			t.Cleanup(func() { l.Close() })
		}
	}()
	if err := WaitResolver(addr, 5*time.Second); err != nil {
		t.Fatalf("WaitResolver with a late listener: %v", err)
	}
}
