// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"errors"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func specWith(ns []specs.LinuxNamespace, caps []string) *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}},
		Linux:   &specs.Linux{Namespaces: ns},
	}
}

func TestCheckSpec(t *testing.T) {
	ownNet := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/netns-1234"}}
	safeCaps := []string{"CAP_CHOWN", "CAP_SETUID", "CAP_NET_BIND_SERVICE"}
	tests := []struct {
		name    string
		spec    *specs.Spec
		wantErr string
	}{
		{"own netns, safe caps", specWith(ownNet, safeCaps), ""},
		{"new netns without path", specWith([]specs.LinuxNamespace{{Type: specs.NetworkNamespace}}, safeCaps), ""},
		{"host network", specWith([]specs.LinuxNamespace{{Type: specs.PIDNamespace}}, safeCaps), "host's network namespace"},
		{"container network", specWith([]specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/4242/ns/net"}}, safeCaps), "another process's network namespace"},
		{"NET_ADMIN", specWith(ownNet, append(safeCaps, "CAP_NET_ADMIN")), "CAP_NET_ADMIN"},
		{"NET_RAW", specWith(ownNet, append(safeCaps, "CAP_NET_RAW")), "CAP_NET_RAW"},
		{"SYS_ADMIN", specWith(ownNet, append(safeCaps, "CAP_SYS_ADMIN")), "CAP_SYS_ADMIN"},
		{"ambient NET_RAW", &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Ambient: []string{"CAP_NET_RAW"}}}, Linux: &specs.Linux{Namespaces: ownNet}}, "ambient"},
		{"no linux section", &specs.Spec{}, "no linux section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSpec(tt.spec)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("checkSpec() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestShieldBundlePath(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    string
		wantErr string
	}{
		{"ok", map[string]string{AnnotationBundle: "/home/u/.local/state/terok/shield/containers/c1", AnnotationVersion: "1"}, "/home/u/.local/state/terok/shield/containers/c1", ""},
		{"not shielded", map[string]string{"other": "x"}, "", "not shielded"},
		{"wrong version", map[string]string{AnnotationBundle: "/a", AnnotationVersion: "2"}, "", "version"},
		{"missing version", map[string]string{AnnotationBundle: "/a"}, "", "version"},
		{"relative", map[string]string{AnnotationBundle: "a/b", AnnotationVersion: "1"}, "", "absolute"},
		{"dotdot", map[string]string{AnnotationBundle: "/a/../etc", AnnotationVersion: "1"}, "", "clean"},
		{"newline", map[string]string{AnnotationBundle: "/a\n/b", AnnotationVersion: "1"}, "", "clean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := shieldBundlePath(tt.ann)
			if got != tt.want || tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("shieldBundlePath(%v) = %q, %v; want %q, error containing %q", tt.ann, got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := shieldBundlePath(nil); !errors.Is(err, ErrNotShielded) {
		t.Errorf("shieldBundlePath(nil) = %v, want ErrNotShielded", err)
	}
}

func TestReadState(t *testing.T) {
	good := `{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":42,"bundle":"/run/b","annotations":{"k":"v"}}`
	st, err := readState(strings.NewReader(good))
	if err != nil || st.ID != "abc" || st.Pid != 42 || st.Annotations["k"] != "v" {
		t.Fatalf("readState(good) = %+v, %v", st, err)
	}
	for _, bad := range []string{"", "{", `{"id":"abc"}`, `{"id":"abc","bundle":"rel"}`} {
		if _, err := readState(strings.NewReader(bad)); err == nil {
			t.Errorf("readState(%q) = nil error, want error", bad)
		}
	}
}

func TestCacheTTL(t *testing.T) {
	for _, tc := range []struct{ learned, want time.Duration }{
		{30 * time.Minute, 15 * time.Minute},
		{3 * time.Second, time.Second},
		{1 * time.Second, time.Second},
		{61 * time.Second, 30 * time.Second},
	} {
		if got := cacheTTL(tc.learned); got != tc.want {
			t.Errorf("cacheTTL(%s) = %s, want %s", tc.learned, got, tc.want)
		}
	}
}
