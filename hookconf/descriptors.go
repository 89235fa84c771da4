// SPDX-License-Identifier: Apache-2.0

// Package hookconf installs terok-shield's OCI hook where podman finds it: the hooks.d
// descriptors (one per stage, pointing at the terok-shield binary) and, for `terok-shield
// setup`, podman's engine.hooks_dir in containers.conf. It also answers the shim's and doctor's
// questions: which containers.conf files podman reads, which hooks dirs are in effect, and
// whether one of them holds terok-shield's descriptors with a binary that exists.
//
// The containers.conf edit is line based and reversible: the lines it replaces are kept, as
// comments, inside a marked block, so `setup --uninstall` restores the file byte for byte.
package hookconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/terok-ai/terok-shield/hook"
)

// Stages are the hook stages terok-shield has descriptors for.
var stages = [...]string{hook.StageCreateRuntime, hook.StagePoststop}

// DescriptorName is the file name of the descriptor for stage.
func DescriptorName(stage string) string { return "terok-shield-" + stage + ".json" }

// descriptor is a hooks.d file (containers/common pkg/hooks 1.0.0 schema).
type descriptor struct {
	Version string `json:"version"`
	Hook    struct {
		Path    string   `json:"path"`
		Args    []string `json:"args"`
		Env     []string `json:"env"`
		Timeout int      `json:"timeout"`
	} `json:"hook"`
	When struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"when"`
	Stages []string `json:"stages"`
}

// Descriptor returns the hooks.d file content for stage, running binary.
func Descriptor(stage, binary string) ([]byte, error) {
	var d descriptor
	d.Version = "1.0.0"
	d.Hook.Path = binary
	d.Hook.Args = []string{"terok-shield", "hook", stage}
	d.Hook.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	d.Hook.Timeout = int(hook.Timeout.Seconds()) + 10
	d.When.Annotations = map[string]string{`^terok\.shield\.bundle$`: ".+"}
	d.Stages = []string{stage}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("hook descriptor: %w", err)
	}
	return append(data, '\n'), nil
}

// WriteDescriptors makes sure dir (created 0755 if missing) holds the descriptors of both
// stages, pointing at binary. Files that already have the right content are left alone; the
// others are written atomically. It returns the paths it wrote.
func WriteDescriptors(dir, binary string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create hooks dir: %w", err)
	}
	var wrote []string
	for _, stage := range stages {
		data, err := Descriptor(stage, binary)
		if err != nil {
			return wrote, err
		}
		path := filepath.Join(dir, DescriptorName(stage))
		if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
			continue
		}
		if err := writeAtomic(path, data, 0o644); err != nil {
			return wrote, fmt.Errorf("write hook descriptor: %w", err)
		}
		wrote = append(wrote, path)
	}
	return wrote, nil
}

// RemoveDescriptors removes terok-shield's descriptors from dir, and dir itself when that
// leaves it empty. It returns the paths it removed.
func RemoveDescriptors(dir string) ([]string, error) {
	var removed []string
	for _, stage := range stages {
		path := filepath.Join(dir, DescriptorName(stage))
		err := os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("remove hook descriptor: %w", err)
		}
		removed = append(removed, path)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) == 0 {
		if err := os.Remove(dir); err != nil {
			return removed, fmt.Errorf("remove hooks dir: %w", err)
		}
	}
	return removed, nil
}

// HasDescriptors reports whether dir holds terok-shield's createRuntime descriptor.
func HasDescriptors(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, DescriptorName(hook.StageCreateRuntime)))
	return err == nil
}

// DescriptorBinary returns the binary the descriptors in dir run, without checking it exists.
// Both descriptors must name the same binary.
func DescriptorBinary(dir string) (string, error) {
	var bin string
	for _, stage := range stages {
		p := filepath.Join(dir, DescriptorName(stage))
		raw, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("hook descriptor: %w", err)
		}
		var d descriptor
		if err := json.Unmarshal(raw, &d); err != nil {
			return "", fmt.Errorf("hook descriptor %s: %w", p, err)
		}
		if d.Hook.Path == "" {
			return "", fmt.Errorf("hook descriptor %s: no hook path", p)
		}
		if bin != "" && d.Hook.Path != bin {
			return "", fmt.Errorf("hook descriptors in %s name different binaries (%s, %s)", dir, bin, d.Hook.Path)
		}
		bin = d.Hook.Path
	}
	return bin, nil
}

// CheckBinary returns the binary the descriptors in dir run, or an error when it does not
// exist or is not executable (podman would skip the hook or fail the start).
func CheckBinary(dir string) (string, error) {
	bin, err := DescriptorBinary(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return bin, fmt.Errorf("hook binary: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return bin, fmt.Errorf("hook binary %s is not executable", bin)
	}
	return bin, nil
}

// writeAtomic writes data to path through a temporary file in the same directory, synced and
// renamed into place.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
