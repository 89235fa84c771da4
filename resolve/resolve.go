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
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

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
	for _, qt := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
		addrs, err := r.chase(ctx, name, qt)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", typeName(qt), err))
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
func (r *Resolver) chase(ctx context.Context, name string, qt dnsmessage.Type) ([]netip.Addr, error) {
	target := strings.ToLower(name)
	if !strings.HasSuffix(target, ".") {
		target += "."
	}
	links := 0
	for {
		queried := target
		msg, err := r.exchange(ctx, queried, qt)
		if err != nil {
			return nil, err
		}
		if msg.rcode == dnsmessage.RCodeNameError {
			return nil, nil
		}
		for {
			if addrs := addrsOf(msg.answers, target, qt); len(addrs) > 0 {
				return addrs, nil
			}
			next := cnameOf(msg.answers, target)
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
func addrsOf(rrs []dnsmessage.Resource, owner string, qt dnsmessage.Type) []netip.Addr {
	var out []netip.Addr
	for _, rr := range rrs {
		if !strings.EqualFold(rr.Header.Name.String(), owner) {
			continue
		}
		switch v := rr.Body.(type) {
		case *dnsmessage.AResource:
			if qt == dnsmessage.TypeA {
				out = append(out, netip.AddrFrom4(v.A))
			}
		case *dnsmessage.AAAAResource:
			if qt == dnsmessage.TypeAAAA {
				out = append(out, netip.AddrFrom16(v.AAAA).Unmap())
			}
		}
	}
	return out
}

// cnameOf returns the lower-cased CNAME target of owner in rrs, or "".
func cnameOf(rrs []dnsmessage.Resource, owner string) string {
	for _, rr := range rrs {
		if c, ok := rr.Body.(*dnsmessage.CNAMEResource); ok && strings.EqualFold(rr.Header.Name.String(), owner) {
			return strings.ToLower(c.CNAME.String())
		}
	}
	return ""
}

func typeName(t dnsmessage.Type) string {
	if t == dnsmessage.TypeAAAA {
		return "AAAA"
	}
	return "A"
}

// answer is the part of a response the resolver uses.
type answer struct {
	rcode   dnsmessage.RCode
	answers []dnsmessage.Resource
}

// rcodeNames are the response codes an answer is refused for, as DNS tools print them.
var rcodeNames = map[dnsmessage.RCode]string{
	dnsmessage.RCodeFormatError: "FORMERR", dnsmessage.RCodeServerFailure: "SERVFAIL",
	dnsmessage.RCodeNotImplemented: "NOTIMP", dnsmessage.RCodeRefused: "REFUSED",
}

// exchange asks the servers in turn; a truncated UDP answer is asked again over TCP. Only
// NOERROR and NXDOMAIN are answers.
func (r *Resolver) exchange(ctx context.Context, name string, qt dnsmessage.Type) (*answer, error) {
	if len(r.Servers) == 0 {
		return nil, errors.New("no upstream DNS server")
	}
	timeout := cmp.Or(r.Timeout, DefaultTimeout)
	var errs []error
	for _, s := range r.Servers {
		addr := s.String()
		msg, err := exchangeOne(ctx, s, name, qt, timeout)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if msg.rcode != dnsmessage.RCodeSuccess && msg.rcode != dnsmessage.RCodeNameError {
			rc, ok := rcodeNames[msg.rcode]
			if !ok {
				rc = fmt.Sprintf("rcode %d", msg.rcode)
			}
			errs = append(errs, fmt.Errorf("%s: %s", addr, rc))
			continue
		}
		return msg, nil
	}
	return nil, errors.Join(errs...)
}

// exchangeOne asks server for name/qt over UDP, and over TCP when the UDP answer is truncated.
// golang.org/x/net/dns/dnsmessage builds and parses the messages; the transport is here.
func exchangeOne(ctx context.Context, server netip.AddrPort, name string, qt dnsmessage.Type, timeout time.Duration) (*answer, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", name, err)
	}
	question := dnsmessage.Question{Name: q, Type: qt, Class: dnsmessage.ClassINET}
	id := uint16(rand.Uint32())
	query, err := buildQuery(id, question)
	if err != nil {
		return nil, err
	}
	conn, err := dial(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.Write(query); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		a, truncated, err := parseAnswer(buf[:n], id, question)
		if errors.Is(err, errNotOurs) {
			continue // a stray or spoofed datagram: keep waiting for the answer
		}
		if err != nil || !truncated {
			return a, err
		}
		return exchangeTCP(ctx, server, id, question, query)
	}
}

// exchangeTCP asks over TCP (two-byte length prefix), after a truncated UDP answer.
func exchangeTCP(ctx context.Context, server netip.AddrPort, id uint16, question dnsmessage.Question, query []byte) (*answer, error) {
	conn, err := dial(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	framed := append(binary.BigEndian.AppendUint16(nil, uint16(len(query))), query...)
	if _, err := conn.Write(framed); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, err
	}
	a, _, err := parseAnswer(buf, id, question)
	return a, err
}

// dial connects to server over network, with ctx's deadline on the connection.
func dial(ctx context.Context, network string, server netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, server.String())
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return conn, nil
}

// buildQuery encodes a recursive query with an EDNS0 record (1232-byte UDP payload).
func buildQuery(id uint16, q dnsmessage.Question) ([]byte, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	var opt dnsmessage.ResourceHeader
	err := errors.Join(b.StartQuestions(), b.Question(q), b.StartAdditionals(),
		opt.SetEDNS0(1232, dnsmessage.RCodeSuccess, false))
	if err == nil {
		err = b.OPTResource(opt, dnsmessage.OPTResource{})
	}
	if err != nil {
		return nil, fmt.Errorf("build query: %w", err)
	}
	return b.Finish()
}

// errNotOurs marks a message that does not answer the query sent.
var errNotOurs = errors.New("not the answer to this query")

// parseAnswer decodes a response to the query with id and question.
func parseAnswer(msg []byte, id uint16, question dnsmessage.Question) (*answer, bool, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response || h.ID != id {
		return nil, false, errNotOurs
	}
	q, err := p.Question()
	if err != nil || q.Type != question.Type || q.Class != question.Class || !strings.EqualFold(q.Name.String(), question.Name.String()) {
		return nil, false, errNotOurs
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, false, fmt.Errorf("parse answer: %w", err)
	}
	if h.Truncated {
		return nil, true, nil
	}
	rrs, err := p.AllAnswers()
	if err != nil {
		return nil, false, fmt.Errorf("parse answer: %w", err)
	}
	return &answer{rcode: h.RCode, answers: rrs}, false, nil
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
