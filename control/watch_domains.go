// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"
)

// parseDnsmasqLine reads one line of dnsmasq's query log (log-queries) and returns the address
// and name it binds, if any:
//
//	Dec  4 17:44:03 dnsmasq[28669]: reply example.com is 192.0.2.7
//	Dec  4 17:44:03 dnsmasq[28669]: cached example.com is 2001:db8::7
//	Dec  4 17:44:03 dnsmasq[28669]: nftset add 4 inet terok_shield learned_v4 192.0.2.7 example.com
//
// The nftset line names the allowed name even when the answer came through a CNAME chain (the
// reply lines then name the chain's last target). Answers that are not addresses (<CNAME>,
// NXDOMAIN, NODATA) bind nothing.
func parseDnsmasqLine(line string) (netip.Addr, string, bool) {
	_, msg, ok := strings.Cut(line, "]: ")
	if !ok {
		return netip.Addr{}, "", false
	}
	f := strings.Fields(msg)
	var addr, name string
	switch {
	case len(f) >= 4 && f[len(f)-2] == "is" && isAnswerVerb(f[len(f)-4]):
		name, addr = f[len(f)-3], f[len(f)-1]
	case len(f) >= 4 && slicesIndex2(f, "nftset", "add"):
		addr, name = f[len(f)-2], f[len(f)-1]
	default:
		return netip.Addr{}, "", false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || name == "" || a.Zone() != "" {
		return netip.Addr{}, "", false
	}
	return a.Unmap(), strings.ToLower(strings.TrimSuffix(name, ".")), true
}

func isAnswerVerb(s string) bool {
	switch s {
	case "reply", "cached", "config", "cached-stale":
		return true
	}
	return false
}

// slicesIndex2 reports whether a and b follow each other somewhere in f.
func slicesIndex2(f []string, a, b string) bool {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == a && f[i+1] == b {
			return true
		}
	}
	return false
}

// maxDomains bounds the address → name map of one watch; the oldest bindings go first.
const maxDomains = 8192

// domainTailStart is how much of an existing log a watch reads when it starts: enough for the
// names of addresses learned a while ago, bounded for a log that was never rotated.
const domainTailStart = 1 << 20

// domainMap is a bounded address → name map, oldest binding evicted first.
type domainMap struct {
	names map[netip.Addr]string
	order []netip.Addr // insertion order, as a ring of len maxDomains once full
	next  int
	limit int
}

func newDomainMap(limit int) *domainMap {
	return &domainMap{names: map[netip.Addr]string{}, limit: limit}
}

func (m *domainMap) set(a netip.Addr, name string) {
	if _, ok := m.names[a]; ok {
		m.names[a] = name
		return
	}
	if len(m.order) < m.limit {
		m.order = append(m.order, a)
	} else {
		delete(m.names, m.order[m.next])
		m.order[m.next] = a
		m.next = (m.next + 1) % m.limit
	}
	m.names[a] = name
}

func (m *domainMap) get(a netip.Addr) string { return m.names[a.Unmap()] }

// domainTail follows a container resolver's query log and keeps its address → name map.
type domainTail struct {
	open func() (*os.File, error) // opens the log; fs.ErrNotExist while there is none
	f    *os.File
	off  int64
	part []byte // an incomplete last line
	m    *domainMap
}

func newDomainTail(open func() (*os.File, error)) *domainTail {
	return &domainTail{open: open, m: newDomainMap(maxDomains)}
}

// lookup returns the name a's address was learned from, "" when unknown. It reads what the log
// gained since the last call first.
func (t *domainTail) lookup(a netip.Addr) string {
	_ = t.refresh() // a log that cannot be read only costs the names
	return t.m.get(a)
}

// refresh reads the lines appended since the last call. A log that shrank (truncated) is read
// again from its start.
func (t *domainTail) refresh() error {
	if t.f == nil {
		f, err := t.open()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		t.f = f
		if fi.Size() > domainTailStart {
			t.off = fi.Size() - domainTailStart
			t.part = []byte{0} // the first line is cut: dropped at the first newline
		}
	}
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < t.off {
		t.off, t.part = 0, nil
	}
	if fi.Size() == t.off {
		return nil
	}
	b, err := io.ReadAll(io.NewSectionReader(t.f, t.off, fi.Size()-t.off))
	if err != nil {
		return err
	}
	t.off += int64(len(b))
	t.feed(b)
	return nil
}

// feed parses complete lines of b, keeping an incomplete last line for the next call.
func (t *domainTail) feed(b []byte) {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.part = append(t.part, b...)
			return
		}
		line := b[:i]
		b = b[i+1:]
		if t.part != nil {
			line = append(t.part, line...)
			t.part = nil
			if line[0] == 0 { // the cut first line of a large log
				continue
			}
		}
		if a, name, ok := parseDnsmasqLine(string(line)); ok {
			t.m.set(a, name)
		}
	}
}

func (t *domainTail) Close() {
	if t.f != nil {
		t.f.Close()
	}
}
