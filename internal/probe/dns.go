// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// resolvConfServer returns the first nameserver of a resolv.conf.
func resolvConfServer(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("no nameserver in %s", path)
}

// withPort adds port to a bare IP ("1.2.3.4" -> "1.2.3.4:53", "::1" -> "[::1]:53").
func withPort(s, port string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), port)
}

// query builds the question for args (NAME, --type).
func query(a Args) (*dns.Msg, error) {
	t := dns.TypeA
	if s, ok := a.Opts["type"]; ok {
		v, known := dns.StringToType[strings.ToUpper(s)]
		if !known {
			return nil, fmt.Errorf("unknown --type %q", s)
		}
		t = v
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(a.Pos[0]), t)
	m.SetEdns0(4096, false)
	return m, nil
}

// fillDNS copies rcode and answers of resp into r.
func fillDNS(r Result, resp *dns.Msg) Result {
	r.Result = OK
	r.Rcode = dns.RcodeToString[resp.Rcode]
	r.Truncated = resp.Truncated
	r.Answers = answerStrings(resp.Answer)
	return r
}

// answerStrings renders answers as "TYPE DATA" ("A 192.0.2.10", "CNAME www.test."), sorted.
func answerStrings(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		var data string
		switch v := rr.(type) {
		case *dns.A:
			data = v.A.String()
		case *dns.AAAA:
			data = v.AAAA.String()
		case *dns.CNAME:
			data = v.Target
		default:
			data = strings.TrimPrefix(rr.String(), rr.Header().String())
		}
		out = append(out, dns.TypeToString[rr.Header().Rrtype]+" "+data)
	}
	sort.Strings(out)
	return out
}

func probeDNS(a Args, timeout time.Duration) Result {
	r := Result{Target: a.Pos[0]}
	m, err := query(a)
	if err != nil {
		return fail(r, err)
	}
	server := a.Opts["server"]
	if server == "" {
		if server, err = resolvConfServer("/etc/resolv.conf"); err != nil {
			return fail(r, err)
		}
	}
	server = withPort(server, "53")
	if a.Flags["tcp"] {
		c, err := dialTCP(server, timeout)
		if err != nil {
			return fail(r, err)
		}
		return exchangeConn(r, c, m, timeout)
	}
	packed, err := m.Pack()
	if err != nil {
		return fail(r, fmt.Errorf("pack: %w", err))
	}
	b, err := exchangeUDP(server, packed, timeout)
	if err != nil {
		return fail(r, err)
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil {
		return fail(r, fmt.Errorf("unpack: %w", err))
	}
	return fillDNS(r, resp)
}

// exchangeConn does one DNS exchange over a stream connection (TCP or TLS) and closes it.
func exchangeConn(r Result, c net.Conn, m *dns.Msg, timeout time.Duration) Result {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	dc := &dns.Conn{Conn: c}
	if err := dc.WriteMsg(m); err != nil {
		return fail(r, err)
	}
	resp, err := dc.ReadMsg()
	if err != nil {
		return fail(r, err)
	}
	return fillDNS(r, resp)
}

// tlsConfig trusts any certificate (the topology's is self-signed) but sends the SNI.
func tlsConfig(sni string) *tls.Config {
	return &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // test probe
}

func probeDoT(a Args, timeout time.Duration) Result {
	r := Result{Target: a.Pos[0]}
	m, err := query(a)
	if err != nil {
		return fail(r, err)
	}
	server := a.Opts["server"]
	if server == "" {
		return fail(r, fmt.Errorf("dot needs --server"))
	}
	c, err := dialTCP(withPort(server, "853"), timeout)
	if err != nil {
		return fail(r, err)
	}
	tc := tls.Client(c, tlsConfig(a.Opts["sni"]))
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return fail(r, fmt.Errorf("tls handshake: %w", err))
	}
	return exchangeConn(r, tc, m, timeout)
}

// httpClient is an HTTPS client dialing through dialTCP (so ICMP details survive).
func httpClient(sni string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
				return dialTCP(addr, timeout)
			},
			TLSClientConfig: tlsConfig(sni),
		},
	}
}

func probeDoH(a Args, timeout time.Duration) Result {
	r := Result{Target: a.Pos[0]}
	m, err := query(a)
	if err != nil {
		return fail(r, err)
	}
	url := a.Opts["url"]
	if url == "" {
		return fail(r, fmt.Errorf("doh needs --url"))
	}
	packed, err := m.Pack()
	if err != nil {
		return fail(r, fmt.Errorf("pack: %w", err))
	}
	resp, err := httpClient(a.Opts["sni"], timeout).Post(url, "application/dns-message", bytes.NewReader(packed))
	if err != nil {
		return fail(r, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 65536))
	if err != nil {
		return fail(r, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(r, fmt.Errorf("doh: HTTP %s", resp.Status))
	}
	msg := new(dns.Msg)
	if err := msg.Unpack(body); err != nil {
		return fail(r, fmt.Errorf("unpack: %w", err))
	}
	return fillDNS(r, msg)
}

// probeTLS does an HTTPS GET to HOST:PORT with the given SNI and Host header and reports the
// response body (the test TLS server echoes both).
func probeTLS(a Args, timeout time.Duration) Result {
	r := Result{Target: a.Pos[0]}
	path := a.Opts["path"]
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequest(http.MethodGet, "https://"+a.Pos[0]+path, nil)
	if err != nil {
		return fail(r, err)
	}
	if h := a.Opts["host"]; h != "" {
		req.Host = h
	}
	resp, err := httpClient(a.Opts["sni"], timeout).Do(req)
	if err != nil {
		return fail(r, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 65536))
	if err != nil {
		return fail(r, err)
	}
	r.Result = OK
	r.Reply = strings.TrimRight(string(body), "\r\n")
	return r
}
