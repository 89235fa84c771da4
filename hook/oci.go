// SPDX-License-Identifier: Apache-2.0

package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations the shim sets on a shielded container. The hooks.d descriptor fires on
// AnnotationBundle, so an unshielded container never runs the hook's code at all.
const (
	AnnotationBundle  = "terok.shield.bundle"
	AnnotationVersion = "terok.shield.version"
	// AnnotationVersionValue is the annotation format this binary writes and accepts.
	AnnotationVersionValue = "1"
)

// forbiddenCaps are the capabilities that would let the workload change the firewall or
// bypass it (raw/packet sockets skip nftables's output hook; SYS_ADMIN can set up namespaces
// and mounts that undo the rest).
var forbiddenCaps = []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"}

// ErrNotShielded means the container carries no shield annotation: the hook has nothing to do.
var ErrNotShielded = errors.New("container is not shielded")

// readState decodes the OCI state the runtime passes on stdin (bounded: a state is small).
func readState(r io.Reader) (*specs.State, error) {
	var st specs.State
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("decode OCI state from stdin: %w", err)
	}
	if st.ID == "" || st.Bundle == "" || !filepath.IsAbs(st.Bundle) {
		return nil, fmt.Errorf("OCI state lacks id or absolute bundle path (id %q, bundle %q)", st.ID, st.Bundle)
	}
	return &st, nil
}

// checkedConfig is the part of config.json that checkSpec reads. Decoding into the full
// runtime-spec type builds its decoder by reflection over dozens of types, ~0.6 ms in a fresh
// process (every hook run); this subset costs a tenth of that.
type checkedConfig struct {
	Process *struct {
		Capabilities *specs.LinuxCapabilities `json:"capabilities,omitempty"`
	} `json:"process,omitempty"`
	Linux *struct {
		Namespaces []specs.LinuxNamespace `json:"namespaces,omitempty"`
	} `json:"linux,omitempty"`
}

// readSpec reads the container's config.json from its OCI bundle. Only the fields checkSpec
// reads are filled in.
func readSpec(bundle string) (*specs.Spec, error) {
	f, err := os.Open(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("open container config: %w", err)
	}
	defer f.Close()
	var c checkedConfig
	if err := json.NewDecoder(io.LimitReader(f, 64<<20)).Decode(&c); err != nil {
		return nil, fmt.Errorf("decode container config: %w", err)
	}
	spec := &specs.Spec{}
	if c.Process != nil {
		spec.Process = &specs.Process{Capabilities: c.Process.Capabilities}
	}
	if c.Linux != nil {
		spec.Linux = &specs.Linux{Namespaces: c.Linux.Namespaces}
	}
	return spec, nil
}

// shieldBundlePath extracts and validates the state bundle path from the annotations.
func shieldBundlePath(annotations map[string]string) (string, error) {
	dir, ok := annotations[AnnotationBundle]
	if !ok {
		return "", ErrNotShielded
	}
	if v := annotations[AnnotationVersion]; v != AnnotationVersionValue {
		return "", fmt.Errorf("annotation %s=%q: this terok-shield reads version %s; recreate the container with the installed terok-shield", AnnotationVersion, v, AnnotationVersionValue)
	}
	if dir == "" || !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.ContainsAny(dir, "\x00\n") {
		return "", fmt.Errorf("annotation %s=%q: not a clean absolute path", AnnotationBundle, dir)
	}
	return dir, nil
}

// checkSpec refuses container configurations under which the firewall cannot hold: no own
// network namespace, a namespace joined from another process, or capabilities that let the
// workload change or bypass the rules.
func checkSpec(spec *specs.Spec) error {
	if spec.Linux == nil {
		return errors.New("container config has no linux section")
	}
	i := slices.IndexFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.NetworkNamespace
	})
	if i < 0 {
		return errors.New("container shares the host's network namespace (--network host); a shielded container needs its own")
	}
	if p := spec.Linux.Namespaces[i].Path; strings.HasPrefix(p, "/proc/") {
		return fmt.Errorf("container joins another process's network namespace (%s: --network container:… or ns:…); a shielded container needs its own", p)
	}
	if spec.Process != nil && spec.Process.Capabilities != nil {
		c := spec.Process.Capabilities
		for _, set := range []struct {
			name string
			caps []string
		}{
			{"bounding", c.Bounding}, {"effective", c.Effective}, {"inheritable", c.Inheritable},
			{"permitted", c.Permitted}, {"ambient", c.Ambient},
		} {
			for _, bad := range forbiddenCaps {
				if slices.Contains(set.caps, bad) {
					return fmt.Errorf("container holds %s in its %s capability set; a shielded container must not (no --privileged, no --cap-add of it)", bad, set.name)
				}
			}
		}
	}
	return nil
}
