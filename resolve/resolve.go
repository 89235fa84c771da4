// SPDX-License-Identifier: Apache-2.0

// Package resolve is the static resolver tier: it resolves a container's allowlisted names
// to A and AAAA records before the container starts (and again on `resolve`), with
// github.com/miekg/dns against given upstream servers, so no resolver runs next to the
// container and no `dig` or `getent` is needed.
//
// Only exact names can be resolved: a wildcard ("*.example.com") names an unbounded set and
// is reported as skipped. Answers are read over UDP, again over TCP when truncated; CNAME
// chains in an answer are followed (and queried further when the chain leaves the answer),
// at most [MaxChain] links. Private and special-purpose addresses are dropped (DNS rebinding:
// a public name must not open private space) and reported apart.
package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/terok-ai/terok-shield/profiles"
)

// DefaultTimeout bounds one exchange with one server.
const DefaultTimeout = 2 * time.Second

// DefaultParallel is how many names are resolved at once.
const DefaultParallel = 8

// MaxChain bounds the CNAME links followed for one name.
const MaxChain = 8

// Resolver resolves names against fixed upstream servers.
type Resolver struct {
	// Servers are tried in order until one answers (NOERROR or NXDOMAIN).
	Servers []netip.AddrPort
	// Timeout bounds each exchange; 0 means DefaultTimeout.
	Timeout time.Duration
	// Parallel bounds the names resolved at once; 0 means DefaultParallel.
	Parallel int
}

// Servers returns port-53 servers for addrs.
func Servers(addrs []netip.Addr) []netip.AddrPort {
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a.Unmap(), 53)
	}
	return out
}

// Result is what one name resolved to.
type Result struct {
	Name    string       `json:"name"`
	Addrs   []netip.Addr `json:"addrs,omitempty"`   // public answers, sorted
	Dropped []netip.Addr `json:"dropped,omitempty"` // private or special-purpose answers, not used
	// Skipped is set for a wildcard, which cannot be resolved statically.
	Skipped bool `json:"skipped,omitempty"`
	// Err says why the name could not be resolved (no server answered, SERVFAIL, …); an
	// NXDOMAIN or an answer without addresses is not an error, just no addresses.
	Err string `json:"error,omitempty"`
}

// Failed reports whether the name could not be resolved (as opposed to resolving to nothing).
func (r Result) Failed() bool { return r.Err != "" }

// IsWildcard reports whether name is a wildcard entry ("*.x.y").
func IsWildcard(name string) bool { return strings.HasPrefix(name, "*.") }

// Resolve resolves names (duplicates are resolved once) and returns one Result per name,
// sorted by name. It never fails as a whole: per-name failures are in Result.Err.
func (r *Resolver) Resolve(ctx context.Context, names []string) []Result {
	uniq := slices.Clone(names)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	out := make([]Result, len(uniq))
	par := r.Parallel
	if par <= 0 {
		par = DefaultParallel
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, n := range uniq {
		if IsWildcard(n) {
			out[i] = Result{Name: n, Skipped: true}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = r.one(ctx, n)
		}()
	}
	wg.Wait()
	return out
}

// one resolves A and AAAA of name.
func (r *Resolver) one(ctx context.Context, name string) Result {
	res := Result{Name: name}
	var errs []string
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		addrs, err := r.chase(ctx, name, qt)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", dns.TypeToString[qt], err))
			continue
		}
		for _, a := range addrs {
			if profiles.IsPrivate(netip.PrefixFrom(a, a.BitLen())) {
				res.Dropped = append(res.Dropped, a)
			} else {
				res.Addrs = append(res.Addrs, a)
			}
		}
	}
	res.Addrs, res.Dropped = sortAddrs(res.Addrs), sortAddrs(res.Dropped)
	if len(errs) > 0 {
		res.Err = strings.Join(errs, "; ")
	}
	return res
}

func sortAddrs(as []netip.Addr) []netip.Addr {
	slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(as)
}

// chase queries name for qt and follows the CNAME chain, within one answer and across
// further queries, at most MaxChain links.
func (r *Resolver) chase(ctx context.Context, name string, qt uint16) ([]netip.Addr, error) {
	target := dns.Fqdn(strings.ToLower(name))
	links := 0
	for {
		queried := target
		msg, err := r.exchange(ctx, queried, qt)
		if err != nil {
			return nil, err
		}
		if msg.Rcode == dns.RcodeNameError {
			return nil, nil
		}
		for {
			if addrs := addrsOf(msg.Answer, target, qt); len(addrs) > 0 {
				return addrs, nil
			}
			next := cnameOf(msg.Answer, target)
			if next == "" {
				break
			}
			if links++; links > MaxChain {
				return nil, fmt.Errorf("CNAME chain longer than %d links", MaxChain)
			}
			target = next
		}
		if target == queried {
			return nil, nil // no records of this type
		}
		// The chain left the answer without addresses: ask for its end.
	}
}

// addrsOf returns the addresses of type qt owned by owner in rrs.
func addrsOf(rrs []dns.RR, owner string, qt uint16) []netip.Addr {
	var out []netip.Addr
	for _, rr := range rrs {
		if !strings.EqualFold(rr.Header().Name, owner) {
			continue
		}
		switch v := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok && qt == dns.TypeA {
				out = append(out, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok && qt == dns.TypeAAAA {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// cnameOf returns the lower-cased CNAME target of owner in rrs, or "".
func cnameOf(rrs []dns.RR, owner string) string {
	for _, rr := range rrs {
		if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, owner) {
			return strings.ToLower(c.Target)
		}
	}
	return ""
}

// exchange asks the servers in turn; a truncated UDP answer is asked again over TCP. Only
// NOERROR and NXDOMAIN are answers.
func (r *Resolver) exchange(ctx context.Context, name string, qt uint16) (*dns.Msg, error) {
	if len(r.Servers) == 0 {
		return nil, errors.New("no upstream DNS server")
	}
	timeout := cmp.Or(r.Timeout, DefaultTimeout)
	m := new(dns.Msg)
	m.SetQuestion(name, qt)
	m.SetEdns0(1232, false)
	var errs []error
	for _, s := range r.Servers {
		addr := s.String()
		c := &dns.Client{Net: "udp", Timeout: timeout}
		msg, _, err := c.ExchangeContext(ctx, m, addr)
		if err == nil && msg.Truncated {
			c.Net = "tcp"
			msg, _, err = c.ExchangeContext(ctx, m, addr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
			errs = append(errs, fmt.Errorf("%s: %s", addr, dns.RcodeToString[msg.Rcode]))
			continue
		}
		return msg, nil
	}
	return nil, errors.Join(errs...)
}

// Addrs returns the public addresses of the resolved results as a name → addresses map; a
// name that resolved to nothing maps to nil, failed and skipped names are left out.
func Addrs(rs []Result) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	for _, r := range rs {
		if !r.Failed() && !r.Skipped {
			out[r.Name] = slices.Clone(r.Addrs)
		}
	}
	return out
}

// Hosts renders an /etc/hosts file: loopback names, then one line per address of each name,
// names sorted.
func Hosts(addrs map[string][]netip.Addr) []byte {
	var b strings.Builder
	b.WriteString("# written by terok-shield (static resolver tier): allowlisted names resolve only here\n")
	b.WriteString("127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain ip6-localhost ip6-loopback\n")
	names := make([]string, 0, len(addrs))
	for n := range addrs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, a := range sortAddrs(slices.Clone(addrs[n])) {
			fmt.Fprintf(&b, "%s\t%s\n", a, n)
		}
	}
	return []byte(b.String())
}
