// SPDX-License-Identifier: Apache-2.0

package gate

import (
	"os"
	"strconv"
	"strings"
	"testing"

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
