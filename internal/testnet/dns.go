// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Zone is the apex every DNSServer is authoritative for; other names get REFUSED.
const Zone = "test."

// Query is one question the DNS server received.
type Query struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Proto  string `json:"proto"` // udp, tcp, dot, doh
	Client string `json:"client"`
	Time   time.Time
}

// DNSServer is an authoritative server for Zone with mutable records.
type DNSServer struct {
	n       *Net
	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	queries []Query
}

// DefaultZone returns the records the default topology serves, as zone-file lines.
func DefaultZone() []string {
	z := []string{
		"www.test. 60 IN A " + EchoV4,
		"www.test. 60 IN AAAA " + EchoV6,
		"web4b.test. 60 IN A " + EchoV4b,
		"web4c.test. 60 IN A " + EchoV4c,
		"v4only.test. 60 IN A " + EchoV4,
		"v6only.test. 60 IN AAAA " + EchoV6,
		"tls.test. 60 IN A " + TLSV4,
		"tls.test. 60 IN AAAA " + TLSV6,
		"dns.test. 60 IN A " + DNSV4,
		"dns.test. 60 IN AAAA " + DNSV6,
		"canary.test. 60 IN A " + CanaryV4,
		"canary.test. 60 IN AAAA " + CanaryV6,
		// CNAME chain alias -> alias2 -> alias3 -> www
		"alias.test. 60 IN CNAME alias2.test.",
		"alias2.test. 60 IN CNAME alias3.test.",
		"alias3.test. 60 IN CNAME www.test.",
		// CNAME leaving the zone (answered without the target's records).
		"outside.test. 60 IN CNAME www.example.com.",
		// Names answering with non-public addresses (rebinding style).
		"private.test. 60 IN A " + PrivateV4,
		"loopback.test. 60 IN A 127.0.0.1",
		"loopback.test. 60 IN AAAA ::1",
		"linklocal.test. 60 IN A " + MetadataV4,
		"linklocal.test. 60 IN AAAA fe80::1",
		"metadata.test. 60 IN A " + MetadataV4,
		"cgnat.test. 60 IN A " + CGNATV4,
		"ula.test. 60 IN AAAA " + ULAV6,
		"mapped.test. 60 IN AAAA ::ffff:" + PrivateV4,
		"mapped-loopback.test. 60 IN AAAA ::ffff:127.0.0.1",
		"mixed.test. 60 IN A " + EchoV4,
		"mixed.test. 60 IN A " + PrivateV4,
		// Benchmarking-range names (learnable through a shielded container's resolver).
		"allowed.test. 60 IN A " + BenchV4,
		"allowed.test. 60 IN AAAA " + BenchV6,
		"allowed-alias.test. 60 IN CNAME allowed.test.",
		"unlisted.test. 60 IN A " + BenchUnlistedV4,
		"unlisted.test. 60 IN AAAA " + BenchUnlistedV6,
		// Short TTL.
		"short.test. 1 IN A " + EchoV4b,
		"zero.test. 0 IN A " + EchoV4c,
	}
	// A large answer (more than 512 bytes: truncated over plain UDP without EDNS0).
	for i := 1; i <= 40; i++ {
		z = append(z, fmt.Sprintf("big.test. 60 IN A 198.51.100.%d", 100+i))
	}
	return z
}

// ServeDNS starts an authoritative server with the given zone-file lines on UDP+TCP 53, DoT 853
// and DoH (HTTPS 443, path /dns-query) of each IP inside wan. TLS endpoints need default servers'
// certificate material (StartWith creates it before calling this).
func (n *Net) ServeDNS(zone []string, ips ...string) (*DNSServer, error) {
	d := &DNSServer{n: n, records: map[string][]dns.RR{}}
	if err := d.Add(zone...); err != nil {
		return nil, err
	}
	for _, ip := range ips {
		var pc net.PacketConn
		var tl, dotl net.Listener
		err := n.WanDo(func() error {
			var err error
			if pc, err = net.ListenPacket("udp", net.JoinHostPort(ip, "53")); err != nil {
				return err
			}
			if tl, err = net.Listen("tcp", net.JoinHostPort(ip, "53")); err != nil {
				return err
			}
			if n.tlsCfg != nil {
				if dotl, err = net.Listen("tcp", net.JoinHostPort(ip, "853")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("dns listen %s: %w", ip, err)
		}
		servers := []*dns.Server{
			{PacketConn: pc, Handler: d.handler("udp")},
			{Listener: tl, Handler: d.handler("tcp")},
		}
		if dotl != nil {
			servers = append(servers, &dns.Server{Net: "tcp-tls", Listener: tls.NewListener(dotl, n.tlsCfg.config()), Handler: d.handler("dot")})
		}
		for _, s := range servers {
			started := make(chan struct{})
			s.NotifyStartedFunc = func() { close(started) }
			go func() {
				if err := s.ActivateAndServe(); err != nil {
					n.logf("testnet: dns server: %v", err)
				}
			}()
			<-started
			n.addCloser(func() error { return s.Shutdown() })
		}
		if n.tlsCfg != nil {
			if err := n.serveHTTPS("doh", "doh", http.HandlerFunc(d.serveDoH), net.JoinHostPort(ip, "443")); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// Add parses zone-file lines (absolute names) and adds the records.
func (d *DNSServer) Add(lines ...string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			return fmt.Errorf("dns record %q: %w", l, err)
		}
		if rr == nil {
			continue
		}
		name := strings.ToLower(rr.Header().Name)
		if !dns.IsSubDomain(Zone, name) {
			return fmt.Errorf("dns record %q: outside zone %s", l, Zone)
		}
		d.records[name] = append(d.records[name], rr)
	}
	return nil
}

// Set replaces all records of name with the given zone-file lines (none: remove the name).
func (d *DNSServer) Set(name string, lines ...string) error {
	d.mu.Lock()
	delete(d.records, strings.ToLower(dns.Fqdn(name)))
	d.mu.Unlock()
	return d.Add(lines...)
}

// Queries returns every question received so far.
func (d *DNSServer) Queries() []Query {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Query(nil), d.queries...)
}

// QueriesFor returns the questions for one name (any case, with or without the final dot).
func (d *DNSServer) QueriesFor(name string) []Query {
	name = strings.ToLower(dns.Fqdn(name))
	var out []Query
	for _, q := range d.Queries() {
		if strings.ToLower(q.Name) == name {
			out = append(out, q)
		}
	}
	return out
}

// ResetQueries forgets the recorded questions.
func (d *DNSServer) ResetQueries() {
	d.mu.Lock()
	d.queries = nil
	d.mu.Unlock()
}

func (d *DNSServer) handler(proto string) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := d.answer(req, proto, w.RemoteAddr().String())
		if proto == "udp" {
			size := dns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			resp.Truncate(size)
		}
		_ = w.WriteMsg(resp)
	})
}

// answer builds the response to req and records the question.
func (d *DNSServer) answer(req *dns.Msg, proto, client string) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	q := req.Question[0]
	hitProto := "dns-" + proto
	if proto == "dot" || proto == "doh" {
		hitProto = proto
	}
	d.n.record(Hit{Server: "dns", Proto: hitProto, Client: client, Local: q.Name})
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = append(d.queries, Query{Name: q.Name, Type: dns.TypeToString[q.Qtype], Proto: proto, Client: client, Time: time.Now()})
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(Zone, name) {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	resp.Authoritative = true
	for hops := 0; hops < 16; hops++ {
		rrs, ok := d.records[name]
		if !ok {
			if len(resp.Answer) == 0 {
				resp.Rcode = dns.RcodeNameError
			}
			break
		}
		var cname *dns.CNAME
		for _, rr := range rrs {
			if c, isC := rr.(*dns.CNAME); isC && q.Qtype != dns.TypeCNAME {
				cname = c
			}
		}
		if cname != nil {
			resp.Answer = append(resp.Answer, dns.Copy(cname))
			name = strings.ToLower(cname.Target)
			if !dns.IsSubDomain(Zone, name) {
				break
			}
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
			}
		}
		break
	}
	if len(resp.Answer) == 0 {
		soa, _ := dns.NewRR("test. 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 1")
		resp.Ns = append(resp.Ns, soa)
	}
	return resp
}

func (d *DNSServer) serveDoH(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/dns-query" {
		http.NotFound(w, r)
		return
	}
	var raw []byte
	var err error
	switch r.Method {
	case http.MethodGet:
		raw, err = base64.RawURLEncoding.DecodeString(r.URL.Query().Get("dns"))
	case http.MethodPost:
		raw, err = io.ReadAll(io.LimitReader(r.Body, 65535))
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	req := new(dns.Msg)
	if err == nil {
		err = req.Unpack(raw)
	}
	if err != nil {
		http.Error(w, "bad dns message", http.StatusBadRequest)
		return
	}
	out, err := d.answer(req, "doh", r.RemoteAddr).Pack()
	if err != nil {
		http.Error(w, "pack", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/dns-message")
	_, _ = w.Write(out)
}
