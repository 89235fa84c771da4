// SPDX-License-Identifier: Apache-2.0

package argparse

// Lookup returns every occurrence of the flag with the canonical name, root
// flags (Globals) first, in argv order.
func (inv *Invocation) Lookup(name string) []Flag {
	var out []Flag
	for _, list := range [2][]Flag{inv.Globals, inv.Flags} {
		for _, f := range list {
			if f.Name == name {
				out = append(out, f)
			}
		}
	}
	return out
}

// Tokens returns the argv indexes the flag occupies. Flags of one short
// cluster (-dit) share a token, so dropping one drops them all.
func (f Flag) Tokens() []int {
	out := make([]int, f.N)
	for i := range out {
		out[i] = f.Index + i
	}
	return out
}

// Rewrite returns a new argv: insert is placed before the token at argv
// index insertAt (insertAt == len(Argv) appends; insertAt < 0 inserts
// nothing), the tokens at the drop indexes are left out, and every other
// token is copied unchanged. Argv itself is not modified.
func (inv *Invocation) Rewrite(insertAt int, insert []string, drop ...int) []string {
	out := make([]string, 0, len(inv.Argv)+len(insert))
	dropped := func(i int) bool {
		for _, d := range drop {
			if d == i {
				return true
			}
		}
		return false
	}
	for i, a := range inv.Argv {
		if i == insertAt {
			out = append(out, insert...)
		}
		if !dropped(i) {
			out = append(out, a)
		}
	}
	if insertAt >= len(inv.Argv) {
		out = append(out, insert...)
	}
	return out
}

// RemoteFromEnv reports whether podman's environment selects remote mode:
// CONTAINER_HOST or CONTAINER_CONNECTION is set, even to the empty string.
// lookup is os.LookupEnv or a stand-in.
func RemoteFromEnv(lookup func(string) (string, bool)) bool {
	for _, k := range [2]string{"CONTAINER_HOST", "CONTAINER_CONNECTION"} {
		if _, ok := lookup(k); ok {
			return true
		}
	}
	return false
}
