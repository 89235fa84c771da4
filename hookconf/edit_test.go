// SPDX-License-Identifier: Apache-2.0

package hookconf

import (
	"errors"
	"flag"
	"path/filepath"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"

	"github.com/terok-ai/terok-shield/internal/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testDirs = []string{"/home/u/.local/share/terok/shield/hooks.d", DefaultHooksDir}

// editCases are containers.conf files as users write them; the golden file of each is the
// result of Install.
var editCases = []struct {
	name   string
	exists bool
	in     string
}{
	{"no-file", false, ""},
	{"empty", true, ""},
	{"only-comments", true, "# my containers.conf\n\n# [engine]\n# hooks_dir = []\n"},
	{"engine-other-keys", true, "[containers]\nlog_driver = \"k8s-file\"\n\n[engine]\n# the runtime\nruntime = \"crun\"\nevents_logger = \"file\"\n\n[network]\nnetwork_backend = \"netavark\"\n"},
	{"engine-last-no-newline", true, "[containers]\npids_limit = 100\n[engine]"},
	{"existing-hooks-dir", true, "[engine]\nruntime = \"runc\"\nhooks_dir = [\"/etc/containers/oci/hooks.d\"]  # site hooks\nevents_logger = \"file\"\n"},
	{"multiline-hooks-dir", true, "[engine]\n  hooks_dir = [\n    \"/a/hooks.d\", # first\n    '/b/hooks.d',\n  ]\n  runtime = \"runc\"\n"},
	{"quoted-keys", true, "[ \"engine\" ]\n\"hooks_dir\" = []\n"},
	{"dotted-top-level", true, "engine.hooks_dir = [\"/x\"]\n\n[containers]\ninit = true\n"},
	{"no-final-newline", true, "[engine]\nhooks_dir = [\"/x\"]"},
	{"crlf", true, "# windows editor\r\n[engine]\r\nruntime = \"crun\"\r\n"},
	{"crlf-no-engine", true, "[containers]\r\ninit = true\r\n"},
	{"hooks-dir-other-table", true, "[containers]\nhooks_dir = \"not podman's\"\nnote = '''\n[engine]\nhooks_dir = []\n'''\n"},
	{"engine-subtable-only", true, "[engine.service_destinations.x]\nuri = \"unix:///run/x.sock\"\n"},
	{"array-of-tables", true, "[[engine]]\nhooks_dir = []\n"},
}

func TestInstallGolden(t *testing.T) {
	for _, c := range editCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Install([]byte(c.in), c.exists, testDirs)
			if c.name == "array-of-tables" {
				// [[engine]] is not valid for podman; the edit parses but TOML rejects it later.
				if err != nil {
					t.Fatal(err)
				}
				if toml.Unmarshal(got, new(map[string]any)) == nil {
					t.Errorf("[[engine]] plus [engine] decoded without error:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			goldenPath := filepath.Join("testdata", "edit", c.name+".golden")
			golden.Check(t, goldenPath, string(got), *update)
			// Podman reads exactly our list, and only the block changed.
			var conf struct {
				Engine struct {
					HooksDir []string `toml:"hooks_dir"`
				} `toml:"engine"`
			}
			if _, err := toml.Decode(string(got), &conf); err != nil {
				t.Fatalf("result is not TOML: %v\n%s", err, got)
			}
			if d := cmp.Diff(testDirs, conf.Engine.HooksDir); d != "" {
				t.Errorf("engine.hooks_dir (-want +got):\n%s", d)
			}
			// Uninstall restores byte for byte (or the absence of the file).
			back, gone, changed, err := Revert(got)
			if err != nil {
				t.Fatal(err)
			}
			if !changed || gone != !c.exists || string(back) != c.in {
				t.Errorf("Revert = %q gone=%v changed=%v; want %q gone=%v", back, gone, changed, c.in, !c.exists)
			}
			// Installing again over the installed file is a no-op.
			again, err := Install(back, !gone, testDirs)
			if err != nil || string(again) != string(got) {
				t.Errorf("second Install differs (%v):\n%s", err, cmp.Diff(string(got), string(again)))
			}
		})
	}
}

func TestInstallRefuses(t *testing.T) {
	cases := []struct{ name, in string }{
		{"inline engine table", "engine = { hooks_dir = [] }\n"},
		{"twice", "engine.hooks_dir = []\n[engine]\nhooks_dir = []\n"},
		{"unterminated array", "[engine]\nhooks_dir = [\n\"/a\",\n"},
		{"unterminated string", "[engine]\nruntime = \"crun\n"},
		{"not toml", "[engine]\njust words\n"},
		{"unterminated header", "[engine\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := Install([]byte(c.in), true, testDirs)
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("Install = %q, %v; want ErrUnsafe", out, err)
			}
		})
	}
}

func TestRevert(t *testing.T) {
	cases := []struct {
		name, in, want string
		err            bool
	}{
		{"no block", "[engine]\nruntime = \"crun\"\n", "[engine]\nruntime = \"crun\"\n", false},
		{"damaged block", "[engine]\n" + beginLine + "\nhooks_dir = []\n", "", true},
		{"two blocks", beginLine + "\n#| a = 1\nb = 2\n" + endMarker + "\nc = 3\n" + beginLine + "\n" + endMarker + "\n", "a = 1\nc = 3\n", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, _, err := Revert([]byte(c.in))
			if (err != nil) != c.err {
				t.Fatalf("Revert error %v, want error %v", err, c.err)
			}
			if !c.err && string(got) != c.want {
				t.Errorf("Revert = %q, want %q", got, c.want)
			}
		})
	}
}

func TestKeyParts(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"hooks_dir ", []string{"hooks_dir"}},
		{" engine . hooks_dir", []string{"engine", "hooks_dir"}},
		{`"engine".'hooks_dir'`, []string{"engine", "hooks_dir"}},
		{`"a.b".c`, []string{"a.b", "c"}},
	}
	for _, c := range cases {
		got, err := keyParts(c.in)
		if err != nil || !cmp.Equal(c.want, got) {
			t.Errorf("keyParts(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "a..b", `"unterminated`, `"esc\"aped"`, "a b"} {
		if _, err := keyParts(bad); err == nil {
			t.Errorf("keyParts(%q) succeeded", bad)
		}
	}
}
