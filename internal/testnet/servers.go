// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Hit is one connection or datagram received by a wan server.
type Hit struct {
	Server string    `json:"server"`
	Proto  string    `json:"proto"` // tcp, udp, tls, dns-udp, dns-tcp, dot, doh
	Local  string    `json:"local"`
	Client string    `json:"client"`
	Time   time.Time `json:"time"`
}

// EchoReply is the JSON line an echo server sends back (and the TLS server's response body).
type EchoReply struct {
	Server string `json:"server"`
	Proto  string `json:"proto"`
	Client string `json:"client"`
	Data   string `json:"data,omitempty"`
	SNI    string `json:"sni,omitempty"`
	Host   string `json:"host,omitempty"`
}

// ParseEcho decodes an echo server's reply line.
func ParseEcho(s string) (EchoReply, error) {
	var r EchoReply
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return r, fmt.Errorf("parse echo reply %q: %w", s, err)
	}
	return r, nil
}

func (n *Net) record(h Hit) {
	h.Time = time.Now()
	n.mu.Lock()
	n.hits = append(n.hits, h)
	n.mu.Unlock()
	n.logf("testnet: hit %s %s %s <- %s", h.Server, h.Proto, h.Local, h.Client)
}

// Hits returns the hits recorded by the named server (all servers when name is "").
func (n *Net) Hits(name string) []Hit {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Hit
	for _, h := range n.hits {
		if name == "" || h.Server == name {
			out = append(out, h)
		}
	}
	return out
}

// CanaryHits returns the hits on every server started as a canary.
func (n *Net) CanaryHits() []Hit {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Hit
	for _, h := range n.hits {
		if n.canary[h.Server] {
			out = append(out, h)
		}
	}
	return out
}

// ResetHits forgets all recorded hits (and DNS queries).
func (n *Net) ResetHits() {
	n.mu.Lock()
	n.hits = nil
	n.mu.Unlock()
	if n.DNS != nil {
		n.DNS.ResetQueries()
	}
}

// ServeCanary is ServeEcho for a server whose every hit is reported by CanaryHits.
func (n *Net) ServeCanary(name string, addrs ...string) error {
	n.mu.Lock()
	n.canary[name] = true
	n.mu.Unlock()
	return n.ServeEcho(name, addrs...)
}

// ServeEcho starts TCP and UDP echo servers named name on each "ip:port" inside wan. Each TCP
// line or UDP datagram is answered with one EchoReply JSON line naming the server and the client.
func (n *Net) ServeEcho(name string, addrs ...string) error {
	for _, a := range addrs {
		var l net.Listener
		var pc net.PacketConn
		err := n.WanDo(func() error {
			var err error
			if l, err = net.Listen("tcp", a); err != nil {
				return fmt.Errorf("listen tcp %s: %w", a, err)
			}
			if pc, err = net.ListenPacket("udp", a); err != nil {
				l.Close()
				return fmt.Errorf("listen udp %s: %w", a, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		n.addCloser(func() error { return ignoreClosed(l.Close()) })
		n.addCloser(func() error { return ignoreClosed(pc.Close()) })
		go n.echoTCP(name, l)
		go n.echoUDP(name, pc)
	}
	return nil
}

func (n *Net) echoTCP(name string, l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		n.record(Hit{Server: name, Proto: "tcp", Local: c.LocalAddr().String(), Client: c.RemoteAddr().String()})
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			sc := bufio.NewScanner(io.LimitReader(c, 64<<10))
			sent := false
			for sc.Scan() {
				if writeJSONLine(c, EchoReply{Server: name, Proto: "tcp", Client: c.RemoteAddr().String(), Data: sc.Text()}) != nil {
					return
				}
				sent = true
			}
			if !sent {
				_ = writeJSONLine(c, EchoReply{Server: name, Proto: "tcp", Client: c.RemoteAddr().String()})
			}
		}()
	}
}

func (n *Net) echoUDP(name string, pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		n.record(Hit{Server: name, Proto: "udp", Local: pc.LocalAddr().String(), Client: from.String()})
		b, _ := json.Marshal(EchoReply{Server: name, Proto: "udp", Client: from.String(), Data: string(trimNL(buf[:k]))})
		_, _ = pc.WriteTo(append(b, '\n'), from)
	}
}

// ServeTLS starts an HTTPS server named name on each "ip:port" inside wan that answers every
// request with an EchoReply reporting the TLS SNI and the HTTP Host header.
func (n *Net) ServeTLS(name string, addrs ...string) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := EchoReply{Server: name, Proto: "tls", Client: r.RemoteAddr, Host: r.Host, Data: r.URL.Path}
		if r.TLS != nil {
			rep.SNI = r.TLS.ServerName
		}
		w.Header().Set("Content-Type", "application/json")
		_ = writeJSONLine(w, rep)
	})
	return n.serveHTTPS(name, "tls", h, addrs...)
}

func (n *Net) serveHTTPS(name, proto string, h http.Handler, addrs ...string) error {
	for _, a := range addrs {
		var l net.Listener
		if err := n.WanDo(func() error {
			var err error
			l, err = net.Listen("tcp", a)
			return err
		}); err != nil {
			return fmt.Errorf("listen tls %s: %w", a, err)
		}
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			TLSConfig:         n.tlsCfg.config(),
			ConnState: func(c net.Conn, s http.ConnState) {
				if s == http.StateNew {
					n.record(Hit{Server: name, Proto: proto, Local: c.LocalAddr().String(), Client: c.RemoteAddr().String()})
				}
			},
			ErrorLog: nil,
		}
		n.addCloser(func() error { return ignoreClosed(srv.Close()) })
		go func() { _ = srv.ServeTLS(l, "", "") }()
	}
	return nil
}

func (n *Net) startDefaultServers() error {
	mat, err := newTLSMaterial()
	if err != nil {
		return err
	}
	n.tlsCfg = mat
	n.CACertPEM = mat.certPEM
	hp := func(ip string, ports ...int) []string {
		out := make([]string, len(ports))
		for i, p := range ports {
			out[i] = net.JoinHostPort(ip, strconv.Itoa(p))
		}
		return out
	}
	steps := []func() error{
		func() error { return n.ServeEcho("web4", hp(EchoV4, 80, EchoPortAlt, 9999)...) },
		func() error { return n.ServeEcho("web4b", hp(EchoV4b, 80)...) },
		func() error { return n.ServeEcho("web4c", hp(EchoV4c, 80)...) },
		func() error { return n.ServeEcho("web6", hp(EchoV6, 80, EchoPortAlt, 9999)...) },
		func() error { return n.ServeEcho("bench4", hp(BenchV4, 80, 9999)...) },
		func() error { return n.ServeEcho("bench6", hp(BenchV6, 80, 9999)...) },
		func() error { return n.ServeEcho("bench4-unlisted", hp(BenchUnlistedV4, 80)...) },
		func() error { return n.ServeEcho("bench6-unlisted", hp(BenchUnlistedV6, 80)...) },
		func() error { return n.ServeTLS("tls4", hp(TLSV4, 443)...) },
		func() error { return n.ServeTLS("tls6", hp(TLSV6, 443)...) },
		func() error { return n.ServeCanary("canary-public4", hp(CanaryV4, 53, 80, 443)...) },
		func() error { return n.ServeCanary("canary-public6", hp(CanaryV6, 53, 80, 443)...) },
		func() error { return n.ServeCanary("canary-private", hp(PrivateV4, 80)...) },
		func() error { return n.ServeCanary("canary-metadata", hp(MetadataV4, 80)...) },
		func() error { return n.ServeCanary("canary-cgnat", hp(CGNATV4, 80)...) },
		func() error { return n.ServeCanary("canary-ula", hp(ULAV6, 80)...) },
		func() error {
			d, err := n.ServeDNS(DefaultZone(), DNSV4, DNSV6)
			n.DNS = d
			return err
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// TLSConfig returns a client config trusting the topology's certificate.
func (n *Net) TLSConfig(serverName string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(n.CACertPEM)
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

type tlsMaterial struct {
	cert    tls.Certificate
	certPEM []byte
}

func (m *tlsMaterial) config() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{m.cert}, MinVersion: tls.VersionTLS12}
}

func newTLSMaterial() (*tlsMaterial, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "terok-shield testnet"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"test", "*.test", "*.tls.test"},
		IPAddresses:           []net.IP{net.ParseIP(TLSV4), net.ParseIP(TLSV6), net.ParseIP(DNSV4), net.ParseIP(DNSV6)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tls cert: %w", err)
	}
	return &tlsMaterial{
		cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
