// SPDX-License-Identifier: Apache-2.0

package argparse

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// generations are the tables every grammar test runs against: the oldest
// (4.3) and the newest (5.x).
func generations(t testing.TB) []string {
	t.Helper()
	vs := TableVersions()
	if len(vs) < 2 || vs[0] != "4.3" || !strings.HasPrefix(vs[len(vs)-1], "5.") {
		t.Fatalf("TableVersions() = %v, want 4.3 first and a 5.x table last", vs)
	}
	return []string{vs[0], vs[len(vs)-1]}
}

// summary is a compact view of an Invocation for table tests.
type summary struct {
	Globals     []string
	Command     string
	Canonical   string
	Flags       []string
	Positionals []string
	Image       int
	DashDash    int
	Remote      bool
}

func flagStrings(fl []Flag) []string {
	var out []string
	for _, f := range fl {
		s := fmt.Sprintf("%s@%d", f.Name, f.Index)
		if f.N != 1 {
			s += fmt.Sprintf("+%d", f.N)
		}
		if f.HasValue || !f.Bool {
			s += "=" + f.Value
		}
		if f.Shim {
			s += " shim"
		}
		if f.Unknown {
			s += " unknown"
		}
		out = append(out, s)
	}
	return out
}

func summarize(inv *Invocation) summary {
	s := summary{
		Globals:   flagStrings(inv.Globals),
		Command:   strings.Join(inv.Command, " "),
		Canonical: inv.Canonical,
		Flags:     flagStrings(inv.Flags),
		Image:     inv.ImageIndex,
		DashDash:  inv.DashDash,
		Remote:    inv.Remote,
	}
	for _, p := range inv.Positionals {
		s.Positionals = append(s.Positionals, fmt.Sprintf("%d:%s", p.Index, p.Value))
	}
	return s
}

func TestParseGrammar(t *testing.T) {
	tests := []struct {
		name string
		argv string
		want summary
	}{
		{"bool cluster", "run -dit alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"detach@1", "interactive@1", "tty@1"}, Positionals: []string{"2:alpine"}, Image: 2, DashDash: -1}},
		{"cluster then value token", "run -itp 8080:80 alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"interactive@1", "tty@1", "publish@1+2=8080:80"}, Positionals: []string{"3:alpine"}, Image: 3, DashDash: -1}},
		{"attached short value", "run -p8080:80 alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"publish@1=8080:80"}, Positionals: []string{"2:alpine"}, Image: 2, DashDash: -1}},
		{"short equals value", "run -e=FOO=bar alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"env@1=FOO=bar"}, Positionals: []string{"2:alpine"}, Image: 2, DashDash: -1}},
		{"value letter swallows cluster", "run -pit alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"publish@1=it"}, Positionals: []string{"2:alpine"}, Image: 2, DashDash: -1}},
		{"long equals", "run --name=web --network host alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"name@1=web", "network@2+2=host"}, Positionals: []string{"4:alpine"}, Image: 4, DashDash: -1}},
		{"value may start with dash", "run --entrypoint -x alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"entrypoint@1+2=-x"}, Positionals: []string{"3:alpine"}, Image: 3, DashDash: -1}},
		{"bool never consumes", "run --rm false alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"rm@1"}, Positionals: []string{"2:false", "3:alpine"}, Image: 2, DashDash: -1}},
		{"bool explicit value", "run --rm=false -i=false alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"rm@1=false", "interactive@2=false"}, Positionals: []string{"3:alpine"}, Image: 3, DashDash: -1}},
		{"alias normalised", "run --net=none --dns-opt x alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"network@1=none", "dns-option@2+2=x"}, Positionals: []string{"4:alpine"}, Image: 4, DashDash: -1}},
		{"flags stop at image", "run -it alpine --rm -v /a:/b", summary{Command: "run", Canonical: "run",
			Flags: []string{"interactive@1", "tty@1"}, Positionals: []string{"2:alpine", "3:--rm", "4:-v", "5:/a:/b"}, Image: 2, DashDash: -1}},
		{"dashdash before image", "run --rm -- --weird-image ls", summary{Command: "run", Canonical: "run",
			Flags: []string{"rm@1"}, Positionals: []string{"3:--weird-image", "4:ls"}, Image: 3, DashDash: 2}},
		{"dashdash after image is container argv", "run alpine -- ls", summary{Command: "run", Canonical: "run",
			Positionals: []string{"1:alpine", "2:--", "3:ls"}, Image: 1, DashDash: -1}},
		{"hostname short on run", "run -h box alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"hostname@1+2=box"}, Positionals: []string{"3:alpine"}, Image: 3, DashDash: -1}},
		{"cpu-shares short on run", "run -c 512 alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"cpu-shares@1+2=512"}, Positionals: []string{"3:alpine"}, Image: 3, DashDash: -1}},
		{"persistent root flag after command", "run --log-level debug --hooks-dir /h alpine", summary{Command: "run", Canonical: "run",
			Flags: []string{"log-level@1+2=debug", "hooks-dir@3+2=/h"}, Positionals: []string{"5:alpine"}, Image: 5, DashDash: -1}},
		{"globals then container run", "--root /r -D container run --rm alpine", summary{
			Globals: []string{"root@0+2=/r", "debug@2"}, Command: "container run", Canonical: "run",
			Flags: []string{"rm@5"}, Positionals: []string{"6:alpine"}, Image: 6, DashDash: -1}},
		{"create", "create --name c alpine sleep 1", summary{Command: "create", Canonical: "create",
			Flags: []string{"name@1+2=c"}, Positionals: []string{"3:alpine", "4:sleep", "5:1"}, Image: 3, DashDash: -1}},
		{"start interspersed", "start c1 --attach c2", summary{Command: "start", Canonical: "start",
			Flags: []string{"attach@2"}, Positionals: []string{"1:c1", "3:c2"}, Image: -1, DashDash: -1}},
		{"start attach short is bool", "start -a c1", summary{Command: "start", Canonical: "start",
			Flags: []string{"attach@1"}, Positionals: []string{"2:c1"}, Image: -1, DashDash: -1}},
		{"restart time short", "restart -t 3 c1 --all", summary{Command: "restart", Canonical: "restart",
			Flags: []string{"time@1+2=3", "all@4"}, Positionals: []string{"3:c1"}, Image: -1, DashDash: -1}},
		{"container stop alias timeout", "container stop --timeout=3 c1", summary{Command: "container stop", Canonical: "stop",
			Flags: []string{"time@2=3"}, Positionals: []string{"3:c1"}, Image: -1, DashDash: -1}},
		{"exec stops at container", "exec -it c1 sh -c ls", summary{Command: "exec", Canonical: "exec",
			Flags: []string{"interactive@1", "tty@1"}, Positionals: []string{"2:c1", "3:sh", "4:-c", "5:ls"}, Image: -1, DashDash: -1}},
		{"pod create", "pod create -n p -p 80:80 --share net", summary{Command: "pod create", Canonical: "pod create",
			Flags: []string{"name@2+2=p", "publish@4+2=80:80", "share@6+2=net"}, Image: -1, DashDash: -1}},
		{"pod start all", "pod start -a", summary{Command: "pod start", Canonical: "pod start",
			Flags: []string{"all@2"}, Image: -1, DashDash: -1}},
		{"kube play interspersed", "kube play -q f.yaml --annotation a=b --start=false", summary{Command: "kube play", Canonical: "kube play",
			Flags: []string{"quiet@2", "annotation@4+2=a=b", "start@6=false"}, Positionals: []string{"3:f.yaml"}, Image: -1, DashDash: -1}},
		{"play kube", "play kube f.yaml", summary{Command: "play kube", Canonical: "kube play",
			Positionals: []string{"2:f.yaml"}, Image: -1, DashDash: -1}},
		{"interspersed dashdash", "start -- -c1", summary{Command: "start", Canonical: "start",
			Positionals: []string{"2:-c1"}, Image: -1, DashDash: 1}},
		{"version command", "version", summary{Command: "version", Canonical: "version", Image: -1, DashDash: -1}},
		{"version flag", "--version", summary{Globals: []string{"version@0"}, Canonical: "version", Image: -1, DashDash: -1}},
		{"version short consumes command like cobra", "-v ps", summary{Globals: []string{"version@0"}, Canonical: "version",
			Positionals: []string{"1:ps"}, Image: -1, DashDash: -1}},
		{"root help flag", "--help", summary{Globals: []string{"help@0"}, Canonical: "help", Image: -1, DashDash: -1}},
		{"root help short", "-h", summary{Globals: []string{"help@0"}, Canonical: "help", Image: -1, DashDash: -1}},
		{"root help before command", "--help run alpine", summary{Globals: []string{"help@0"}, Command: "run", Canonical: "help",
			Positionals: []string{"2:alpine"}, Image: -1, DashDash: -1}},
		{"help command", "help run", summary{Command: "help", Canonical: "help", Positionals: []string{"1:run"}, Image: -1, DashDash: -1}},
		{"complete", "__complete run --n", summary{Command: "__complete", Canonical: "__complete",
			Positionals: []string{"1:run", "2:--n"}, Image: -1, DashDash: -1}},
		{"complete nodesc", "__completeNoDesc ps", summary{Command: "__completeNoDesc", Canonical: "__complete",
			Positionals: []string{"1:ps"}, Image: -1, DashDash: -1}},
		{"command help flag", "run --help", summary{Command: "run", Canonical: "run", Flags: []string{"help@1"}, Image: -1, DashDash: -1}},
		{"remote flag", "-r run alpine", summary{Globals: []string{"remote@0"}, Command: "run", Canonical: "run",
			Positionals: []string{"2:alpine"}, Image: 2, DashDash: -1, Remote: true}},
		{"connection short", "-c prod ps", summary{Globals: []string{"connection@0+2=prod"}, Command: "ps", Canonical: "ps",
			Image: -1, DashDash: -1, Remote: true}},
		{"url", "--url=unix:///x run alpine", summary{Globals: []string{"url@0=unix:///x"}, Command: "run", Canonical: "run",
			Positionals: []string{"2:alpine"}, Image: 2, DashDash: -1, Remote: true}},
		{"remote false", "--remote=false ps", summary{Globals: []string{"remote@0=false"}, Command: "ps", Canonical: "ps",
			Image: -1, DashDash: -1}},
		{"lenient other command", "ps --bogus x -a", summary{Command: "ps", Canonical: "ps",
			Flags: []string{"bogus@1+2=x unknown", "all@3"}, Image: -1, DashDash: -1}},
		{"empty argv", "", summary{Image: -1, DashDash: -1}},
	}
	for _, v := range generations(t) {
		for _, tt := range tests {
			t.Run(v+"/"+tt.name, func(t *testing.T) {
				argv := strings.Fields(tt.argv)
				inv, err := Parse(argv, Options{Version: v})
				if err != nil {
					t.Fatalf("Parse(%q) error = %v", argv, err)
				}
				if diff := cmp.Diff(tt.want, summarize(inv)); diff != "" {
					t.Errorf("Parse(%q) mismatch (-want +got):\n%s", argv, diff)
				}
				checkCoverage(t, inv)
			})
		}
	}
}

func TestParseShimFlags(t *testing.T) {
	tests := []struct {
		name string
		argv string
		want []string
	}{
		{"bare", "run --shield --rm alpine", []string{"shield@1 shim", "rm@2"}},
		{"with value", "create --shield=dev,web alpine", []string{"shield@1=dev,web shim"}},
		{"does not consume", "run --shield alpine", []string{"shield@1 shim"}},
		{"container run", "container run -d --shield alpine", []string{"detach@2", "shield@3 shim"}},
	}
	for _, v := range generations(t) {
		for _, tt := range tests {
			t.Run(v+"/"+tt.name, func(t *testing.T) {
				argv := strings.Fields(tt.argv)
				inv, err := Parse(argv, Options{Version: v, ShimFlags: []string{"shield"}})
				if err != nil {
					t.Fatalf("Parse(%q) error = %v", argv, err)
				}
				if diff := cmp.Diff(tt.want, flagStrings(inv.Flags)); diff != "" {
					t.Errorf("Parse(%q) flags mismatch (-want +got):\n%s", argv, diff)
				}
				if inv.ImageIndex != len(argv)-1 {
					t.Errorf("Parse(%q).ImageIndex = %d, want %d", argv, inv.ImageIndex, len(argv)-1)
				}
			})
		}
	}
	t.Run("not on start", func(t *testing.T) {
		argv := []string{"start", "--shield", "c1"}
		_, err := Parse(argv, Options{ShimFlags: []string{"shield"}})
		if !errors.Is(err, ErrUnknownFlag) {
			t.Errorf("Parse(%q) error = %v, want %v", argv, err, ErrUnknownFlag)
		}
	})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		argv string
		want error
	}{
		{"unknown run flag", "run --bogus alpine", ErrUnknownFlag},
		{"unknown run short", "run -dZ alpine", ErrUnknownFlag},
		{"unknown start flag", "start --bogus c1", ErrUnknownFlag},
		{"unknown exec flag", "exec --bogus c1 ls", ErrUnknownFlag},
		{"unknown pod create flag", "pod create --bogus", ErrUnknownFlag},
		{"unknown kube play flag", "kube play --bogus f.yaml", ErrUnknownFlag},
		{"unknown root flag", "--bogus=1 run alpine", ErrUnknownFlag},
		{"root-only flag after command", "run --remote alpine", ErrUnknownFlag},
		{"version flag with command", "--version=true ps", ErrUnknownFlag},
		{"missing value", "run --name", ErrMissingValue},
		{"missing short value", "run -p", ErrMissingValue},
		{"missing root value", "--log-level", ErrMissingValue},
		{"unknown command", "runn alpine", ErrUnknownCommand},
		{"unknown subcommand", "pod bogus", ErrUnknownCommand},
		{"root dashdash", "-- run alpine", ErrUnknownCommand},
		{"positional before command", "--log-level=info -- x run alpine", ErrBadSyntax},
		{"triple dash", "run ---x alpine", ErrBadSyntax},
		{"local-only flag in remote mode", "--remote run --hooks-dir /h alpine", ErrUnknownFlag},
	}
	for _, v := range generations(t) {
		for _, tt := range tests {
			t.Run(v+"/"+tt.name, func(t *testing.T) {
				argv := strings.Fields(tt.argv)
				_, err := Parse(argv, Options{Version: v})
				if !errors.Is(err, tt.want) {
					t.Errorf("Parse(%q) error = %v, want %v", argv, err, tt.want)
				}
			})
		}
	}
}

func TestParseVersionDifferences(t *testing.T) {
	// --hooks-dir is a comma-splitting stringSlice in 4.3 and a literal
	// stringArray in 5.x; --preserve-fd and --retry exist only from 5.0.
	t.Run("type", func(t *testing.T) {
		for v, want := range map[string]string{"4.3": "stringSlice", "5.8": "stringArray"} {
			got, err := FlagType(Options{Version: v}, "", "hooks-dir")
			if err != nil || got != want {
				t.Errorf("FlagType(%s, hooks-dir) = %q, %v, want %q", v, got, err, want)
			}
		}
	})
	t.Run("kube play -w", func(t *testing.T) {
		argv := []string{"kube", "play", "-w", "f.yaml"}
		if _, err := Parse(argv, Options{Version: "4.3"}); !errors.Is(err, ErrUnknownFlag) {
			t.Errorf("Parse(%q, 4.3) error = %v, want %v", argv, err, ErrUnknownFlag)
		}
		inv, err := Parse(argv, Options{Version: "5.8"})
		if err != nil {
			t.Fatalf("Parse(%q, 5.8) error = %v", argv, err)
		}
		if diff := cmp.Diff([]string{"wait@2"}, flagStrings(inv.Flags)); diff != "" {
			t.Errorf("Parse(%q, 5.8) flags mismatch (-want +got):\n%s", argv, diff)
		}
	})
	t.Run("added flag", func(t *testing.T) {
		argv := []string{"run", "--retry", "3", "alpine"}
		if _, err := Parse(argv, Options{Version: "4.3.1"}); !errors.Is(err, ErrUnknownFlag) {
			t.Errorf("Parse(%q, 4.3.1) error = %v, want %v", argv, err, ErrUnknownFlag)
		}
		inv, err := Parse(argv, Options{Version: "5.8.2"})
		if err != nil || inv.ImageIndex != 3 {
			t.Errorf("Parse(%q, 5.8.2) = %+v, %v, want image at 3", argv, inv, err)
		}
	})
}

func TestTableFor(t *testing.T) {
	vs := TableVersions()
	newest := vs[len(vs)-1]
	tests := []struct{ hint, wantPrefix string }{
		{"4.3.1", "4.3."},
		{"podman version 4.3.1", "4.3."},
		{"v5.0.0", "5.0."},
		{"4.1.0", "4.3."},
		{"99.0", newest + "."},
		{"", newest + "."},
		{"garbage", newest + "."},
	}
	for _, tt := range tests {
		t.Run(tt.hint, func(t *testing.T) {
			got, err := TableFor(tt.hint)
			if err != nil || !strings.HasPrefix(got, tt.wantPrefix) {
				t.Errorf("TableFor(%q) = %q, %v, want prefix %q", tt.hint, got, err, tt.wantPrefix)
			}
		})
	}
}

func TestRewrite(t *testing.T) {
	argv := []string{"--log-level", "info", "run", "--shield=dev", "-it", "alpine", "sh"}
	inv, err := Parse(argv, Options{ShimFlags: []string{"shield"}})
	if err != nil {
		t.Fatalf("Parse(%q) error = %v", argv, err)
	}
	shield := inv.Lookup("shield")
	if len(shield) != 1 {
		t.Fatalf("Lookup(shield) = %v, want one flag", shield)
	}
	tests := []struct {
		name     string
		insertAt int
		insert   []string
		drop     []int
		want     []string
	}{
		{"identity", -1, nil, nil, argv},
		{"inject before image, drop shim flag", inv.ImageIndex, []string{"--cap-drop", "NET_RAW"}, shield[0].Tokens(),
			[]string{"--log-level", "info", "run", "-it", "--cap-drop", "NET_RAW", "alpine", "sh"}},
		{"append", len(argv), []string{"x"}, nil, append(append([]string{}, argv...), "x")},
		{"insert at dropped token", 3, []string{"--rm"}, []int{3},
			[]string{"--log-level", "info", "run", "--rm", "-it", "alpine", "sh"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := inv.Rewrite(tt.insertAt, tt.insert, tt.drop...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Rewrite(%d, %q, %v) mismatch (-want +got):\n%s", tt.insertAt, tt.insert, tt.drop, diff)
			}
		})
	}
	if diff := cmp.Diff([]string{"--log-level", "info", "run", "--shield=dev", "-it", "alpine", "sh"}, inv.Argv); diff != "" {
		t.Errorf("Rewrite modified Argv (-want +got):\n%s", diff)
	}
}

func TestRemoteFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"none", map[string]string{"HOME": "/root"}, false},
		{"host", map[string]string{"CONTAINER_HOST": "unix:///x"}, true},
		{"empty connection", map[string]string{"CONTAINER_CONNECTION": ""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			if got := RemoteFromEnv(lookup); got != tt.want {
				t.Errorf("RemoteFromEnv(%v) = %v, want %v", tt.env, got, tt.want)
			}
		})
	}
}

// checkCoverage verifies that every argv token is accounted for exactly once.
func checkCoverage(t testing.TB, inv *Invocation) {
	t.Helper()
	owner := make([]string, len(inv.Argv))
	claim := func(i int, what string) {
		if i < 0 || i >= len(owner) {
			t.Fatalf("Parse(%q): %s claims index %d out of range", inv.Argv, what, i)
		}
		if owner[i] != "" && owner[i] != what {
			t.Fatalf("Parse(%q): token %d claimed by %s and %s", inv.Argv, i, owner[i], what)
		}
		owner[i] = what
	}
	for _, fl := range [2][]Flag{inv.Globals, inv.Flags} {
		for _, f := range fl {
			for _, i := range f.Tokens() {
				claim(i, fmt.Sprintf("flag@%d", f.Index))
			}
		}
	}
	for _, p := range inv.Positionals {
		claim(p.Index, "positional")
		if inv.Argv[p.Index] != p.Value {
			t.Fatalf("Parse(%q): positional %d = %q, want %q", inv.Argv, p.Index, p.Value, inv.Argv[p.Index])
		}
	}
	if inv.DashDash >= 0 {
		claim(inv.DashDash, "--")
	}
	words := 0
	for i, o := range owner {
		if o == "" {
			words++
			if words > len(inv.Command) {
				t.Fatalf("Parse(%q): token %d %q unaccounted for (command %q)", inv.Argv, i, inv.Argv[i], inv.Command)
			}
		}
	}
	if words != len(inv.Command) {
		t.Fatalf("Parse(%q): %d command tokens, want %d", inv.Argv, words, len(inv.Command))
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"run -dit --rm -p8080:80 alpine ls", "-v ps", "--log-level debug container run --net=host -e=FOO=bar -- img",
		"start c1 --attach c2", "pod create -n p", "kube play -w f.yaml", "exec -it c1 sh", "-r run x",
		"__complete run --", "help", "ps --bogus x", "run -pit x", "--help run", "-- x ps",
	} {
		f.Add(s, "4.3")
		f.Add(s, "5.8")
	}
	f.Fuzz(func(t *testing.T, line, version string) {
		argv := strings.Split(line, " ")
		inv, err := Parse(argv, Options{Version: version, ShimFlags: []string{"shield"}})
		if err != nil {
			return
		}
		if got := inv.Rewrite(-1, nil); !cmp.Equal(got, argv) {
			t.Fatalf("Rewrite(-1, nil) = %q, want %q", got, argv)
		}
		checkCoverage(t, inv)
		if inv.ImageIndex >= 0 && (inv.Positionals[0].Index != inv.ImageIndex) {
			t.Fatalf("Parse(%q): ImageIndex %d is not the first positional", argv, inv.ImageIndex)
		}
	})
}

func BenchmarkParseRun60(b *testing.B) {
	argv := strings.Fields("--log-level info run --rm -d --name web --network bridge -p 8080:80 -p8443:443 -e A=1 -e=B=2 " +
		"--env-file /e --label a=b --label c=d -v /a:/b -v /c:/d:ro --cap-drop ALL --cap-add CHOWN --security-opt no-new-privileges " +
		"--memory 512m --cpus 1.5 --pids-limit 100 --read-only --tmpfs /tmp --user 1000:1000 --workdir /app --hostname h " +
		"--dns 1.1.1.1 --dns-search example.com --ulimit nofile=1024 --restart always --init --shield=dev docker.io/library/nginx:latest nginx -g daemon")
	if len(argv) != 60 {
		b.Fatalf("len(argv) = %d, want 60", len(argv))
	}
	opts := Options{ShimFlags: []string{"shield"}}
	for b.Loop() {
		inv, err := Parse(argv, opts)
		if err != nil || inv.ImageIndex < 0 {
			b.Fatalf("Parse = %v, %v", inv, err)
		}
	}
}

func BenchmarkParseVersion(b *testing.B) {
	argv := []string{"version"}
	for b.Loop() {
		if _, err := Parse(argv, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
