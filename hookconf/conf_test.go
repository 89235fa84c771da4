// SPDX-License-Identifier: Apache-2.0

package hookconf

import (
	"slices"
	"testing"
)

// TestSettingsCache: with a Cache the files are read and parsed once, for both values.
func TestSettingsCache(t *testing.T) {
	reads := 0
	c := Conf{
		Getenv: func(k string) string {
			if k == "CONTAINERS_CONF" {
				return "/etc/terok-test/containers.conf"
			}
			return ""
		},
		Read: func(string) ([]byte, error) {
			reads++
			return []byte("[engine]\nhooks_dir = [\"/x\"]\n[network]\ndefault_rootless_network_cmd = \"pasta\"\n"), nil
		},
		Cache: &Cache{},
	}
	hd, err := c.HooksDirs()
	if err != nil || !slices.Equal(hd.Dirs, []string{"/x"}) {
		t.Fatalf("HooksDirs = %+v, %v", hd, err)
	}
	cmd, err := c.RootlessNetworkCmd()
	if err != nil || cmd != "pasta" {
		t.Fatalf("RootlessNetworkCmd = %q, %v", cmd, err)
	}
	if reads != 1 {
		t.Errorf("containers.conf read %d times, want once", reads)
	}
}
