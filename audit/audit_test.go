// SPDX-License-Identifier: Apache-2.0

//go:build unix

package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMain doubles as the writer process of TestConcurrentProcesses.
func TestMain(m *testing.M) {
	if dir := os.Getenv("TEROK_AUDIT_TEST_HELPER"); dir != "" {
		os.Exit(helperAppend(dir, os.Getenv("TEROK_AUDIT_TEST_HELPER_ID")))
	}
	os.Exit(m.Run())
}

func helperAppend(dir, id string) int {
	max, _ := strconv.ParseInt(os.Getenv("TEROK_AUDIT_TEST_MAX"), 10, 64)
	l, err := Open(dir, Options{MaxBytes: max, Keep: 1000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer l.Close()
	for i := range perWriter {
		if err := l.Append(Event{Container: "p" + id, Action: ActionAllow, Target: strconv.Itoa(i), Detail: strings.Repeat("x", i%300)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

const perWriter = 200

var t0 = time.Date(2026, 3, 7, 12, 0, 0, 123456789, time.UTC)

// goldenEvents has one event of every action with its typical keys.
func goldenEvents() []Event {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	return []Event{
		{TS: at(0), Container: "web", Action: ActionSetup, Profiles: []string{"base", "dev-standard"}, Mode: "up", Detail: "podman 4.3.1"},
		{TS: at(1), Container: "web", Action: ActionNotice, Target: "10.0.0.0/8", Source: "my.txt:3", Reason: "private range"},
		{TS: at(2), Container: "web", Action: ActionAllow, Target: "example.com", IPs: []string{"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"}},
		{TS: at(3), Container: "web", Action: ActionDeny, Target: "192.0.2.7", IPs: []string{"192.0.2.7"}},
		{TS: at(4), Container: "web", Action: ActionDown, Mode: "down_all"},
		{TS: at(5), Container: "web", Action: ActionUp, Mode: "up"},
		{TS: at(6), Container: "web", Action: ActionBlock, Mode: "block"},
		{TS: at(7), Container: "web", Action: ActionResolverStart, Detail: "dnsmasq pid 4242"},
		{TS: at(8), Container: "web", Action: ActionResolverRestart, Reason: "domain list changed"},
		{TS: at(9), Container: "web", Action: ActionResolverStop, Detail: "dnsmasq pid 4242"},
		{TS: at(10), Container: "web", Action: ActionError, Target: "bad..name", Reason: "invalid domain \"bad..name\": empty label\nsecond line"},
		{TS: at(11), Container: "web", Action: ActionTeardown},
	}
}

func TestGoldenSchema(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	events := goldenEvents()
	seen := map[Action]bool{}
	for _, e := range events {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
		seen[e.Action] = true
	}
	for _, a := range Actions() {
		if !seen[a] {
			t.Errorf("golden file lacks action %q", a)
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	goldenPath := filepath.Join("testdata", "schema_v1.jsonl")
	golden.Check(t, goldenPath, string(got), *update)
	// Every line is compact, one object, with v, ts (UTC ms), container, action first.
	for i, line := range bytes.Split(bytes.TrimSuffix(got, []byte("\n")), []byte("\n")) {
		if !bytes.HasPrefix(line, []byte(`{"v":1,"ts":"2026-03-07T12:00:`)) || !bytes.Contains(line, []byte(`.123Z","container":"web","action":"`)) {
			t.Errorf("line %d does not start with the schema's fixed keys: %s", i+1, line)
		}
	}
	// And it reads back to the same events.
	back, bad, err := Tail(filepath.Join(dir, FileName), 0)
	if err != nil || bad != 0 {
		t.Fatalf("Tail = %v, %d malformed", err, bad)
	}
	for i := range events {
		events[i].V = SchemaVersion
		events[i].TS = events[i].TS.Truncate(time.Millisecond)
	}
	if diff := cmp.Diff(events, back); diff != "" {
		t.Errorf("read back mismatch (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit.jsonl mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestAppendErrors(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{"no container", Event{Action: ActionUp}, "container and action are required"},
		{"no action", Event{Container: "c"}, "container and action are required"},
		{"too big", Event{Container: "c", Action: ActionError, Detail: strings.Repeat("x", MaxEventBytes)}, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.Append(tt.e); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Append(%+v) = %v, want error containing %q", tt.e, err, tt.want)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		d := t.TempDir()
		target := filepath.Join(t.TempDir(), "elsewhere")
		if err := os.Symlink(target, filepath.Join(d, FileName)); err != nil {
			t.Fatal(err)
		}
		l, err := Open(d, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if err := l.Append(Event{Container: "c", Action: ActionUp}); err == nil {
			t.Error("Append through a symlinked audit.jsonl succeeded")
		}
		if _, err := os.Stat(target); err == nil {
			t.Error("Append created the symlink's target")
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		d := t.TempDir()
		if err := os.Mkdir(filepath.Join(d, FileName), 0o700); err != nil {
			t.Fatal(err)
		}
		l, err := Open(d, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if err := l.Append(Event{Container: "c", Action: ActionUp}); err == nil {
			t.Error("Append to a directory succeeded")
		}
	})
	// Defaults filled in.
	if err := l.Append(Event{Container: "c", Action: ActionUp}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, FileName))
	if want := `{"v":1,"ts":"2026-03-07T12:00:00.123Z","container":"c","action":"up"}` + "\n"; string(raw) != want {
		t.Errorf("audit.jsonl = %q, want %q", raw, want)
	}
}

// countLines checks every file of the log and returns the events by container.
func countLines(t *testing.T, dir string) map[string]int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, FileName+"*"))
	got := map[string]int{}
	for _, f := range files {
		if strings.HasSuffix(f, ".lock") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) > 0 && raw[len(raw)-1] != '\n' {
			t.Errorf("%s does not end with a newline", f)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
			if line == "" {
				continue
			}
			var e Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s: corrupt line %q: %v", f, line, err)
			}
			got[e.Container]++
		}
	}
	return got
}

func TestConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	const writers = 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			l, err := Open(dir, Options{MaxBytes: 8 << 10, Keep: 1000})
			if err != nil {
				t.Error(err)
				return
			}
			defer l.Close()
			for i := range perWriter {
				if err := l.Append(Event{Container: "g" + strconv.Itoa(w), Action: ActionDeny, Target: strconv.Itoa(i), Detail: strings.Repeat("y", i%300)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := countLines(t, dir)
	for w := range writers {
		if n := got["g"+strconv.Itoa(w)]; n != perWriter {
			t.Errorf("writer %d: %d events found, want %d", w, n, perWriter)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, FileName+".*[0-9]")); len(files) < 10 {
		t.Errorf("expected many rotations, found %d rotated files", len(files))
	}
}

func TestConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs = 6
	var cmds []*exec.Cmd
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TEROK_AUDIT_TEST_HELPER="+dir, "TEROK_AUDIT_TEST_HELPER_ID="+strconv.Itoa(i), "TEROK_AUDIT_TEST_MAX=16384")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process %d: %v", i, err)
		}
	}
	got := countLines(t, dir)
	for i := range procs {
		if n := got["p"+strconv.Itoa(i)]; n != perWriter {
			t.Errorf("process %d: %d events found, want %d", i, n, perWriter)
		}
	}
}

func TestRotationKeep(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{MaxBytes: 200, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 30 {
		if err := l.Append(Event{TS: t0.Add(time.Duration(i) * time.Second), Container: "c", Action: ActionAllow, Target: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, FileName+".[0-9]*"))
	if diff := cmp.Diff([]string{filepath.Join(dir, FileName+".1"), filepath.Join(dir, FileName+".2")}, files); diff != "" {
		t.Errorf("rotated files (-want +got):\n%s", diff)
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 200+120 {
			t.Errorf("%s: size %d, want at most one event over the 200-byte limit", f, fi.Size())
		}
	}
	// Tail reads across the rotations, newest last.
	ev, bad, err := Tail(filepath.Join(dir, FileName), 4)
	if err != nil || bad != 0 {
		t.Fatalf("Tail = %v, %d", err, bad)
	}
	var targets []string
	for _, e := range ev {
		targets = append(targets, e.Target)
	}
	if diff := cmp.Diff([]string{"26", "27", "28", "29"}, targets); diff != "" {
		t.Errorf("Tail(4) targets (-want +got):\n%s", diff)
	}
}

func TestReadMalformed(t *testing.T) {
	in := strings.Join([]string{
		`{"v":1,"ts":"2026-03-07T12:00:00.000Z","container":"a","action":"up"}`,
		`not json`,
		`{"v":1,"ts":"yesterday","container":"a","action":"up"}`,
		`{"ts":"2026-03-07T12:00:00.000Z","container":"a","action":"up"}`,
		`{"v":1,"ts":"2026-03-07T12:00:00.000Z","action":"up"}`,
		"",
		`{"v":1,"ts":"2026-03-07T12:00:01.000+02:00","container":"a","action":"down","extra":true}`,
		strings.Repeat("z", 100<<10),
		`{"v":1,"ts":"2026-03-07T12:00:02.000Z","container":"a","action":"block"}`,
	}, "\n")
	ev, bad, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if bad != 5 || len(ev) != 3 {
		t.Fatalf("Read: %d events, %d malformed; want 3, 5", len(ev), bad)
	}
	if ev[1].TS != time.Date(2026, 3, 7, 10, 0, 1, 0, time.UTC) {
		t.Errorf("ts with offset read as %v", ev[1].TS)
	}
}

func TestMerge(t *testing.T) {
	root := t.TempDir()
	var paths []string
	for c, offsets := range map[string][]int{"a": {0, 3, 6}, "b": {1, 4, 7}, "c": {2, 5, 8}} {
		dir := filepath.Join(root, c)
		os.Mkdir(dir, 0o700)
		l, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range offsets {
			if err := l.Append(Event{TS: t0.Add(time.Duration(o) * time.Second), Container: c, Action: ActionUp, Target: strconv.Itoa(o)}); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		paths = append(paths, filepath.Join(dir, FileName))
	}
	os.WriteFile(filepath.Join(root, "a", FileName), append(must(os.ReadFile(filepath.Join(root, "a", FileName))), "garbage\n"...), 0o600)
	paths = append(paths, filepath.Join(root, "missing", FileName))
	ev, bad, err := Merge(paths, 5)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ev {
		got = append(got, e.Container+e.Target)
	}
	if diff := cmp.Diff([]string{"b4", "c5", "a6", "b7", "c8"}, got); diff != "" || bad != 1 {
		t.Errorf("Merge(5) (-want +got):\n%s; malformed %d, want 1", diff, bad)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestAppendAfterCutLine: a line cut off by a full disk stays one malformed line; the next
// event is written on a line of its own and reads back intact.
func TestAppendAfterCutLine(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(Event{Container: "c", Action: ActionSetup}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"v":1,"ts":"2026-`); err != nil { // what ENOSPC left of a write
		t.Fatal(err)
	}
	f.Close()
	if err := l.Append(Event{Container: "c", Action: ActionAllow, Target: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	events, malformed, err := Tail(filepath.Join(dir, FileName), 0)
	if err != nil {
		t.Fatal(err)
	}
	if malformed != 1 || len(events) != 2 || events[1].Action != ActionAllow || events[1].Target != "192.0.2.1" {
		t.Errorf("after a cut line: events %+v, malformed %d; want setup and allow intact, one malformed line", events, malformed)
	}
}
