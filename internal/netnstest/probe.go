// SPDX-License-Identifier: Apache-2.0

package netnstest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Results of a probe, see [Outcome].
const (
	ResultOpen    = "open"
	ResultICMP    = "icmp"
	ResultRefused = "refused"
	ResultTimeout = "timeout"
	ResultEPERM   = "eperm"
	ResultError   = "error"
)

// DefaultTimeout is how long a probe waits for an answer before it reports
// "timeout".
const DefaultTimeout = time.Second

// Outcome is what a probe observed.
type Outcome struct {
	Result   string     // one of the Result constants
	ICMPType uint8      // for "icmp"
	ICMPCode uint8      // for "icmp"
	From     netip.Addr // for "icmp": the sender of the ICMP error; for ping "open": the replier
	Reply    string     // for "open": the identity of the server that answered
	Err      string     // the socket error, if any (informational)
}

func (o Outcome) String() string {
	var b strings.Builder
	b.WriteString(o.Result)
	if o.Result == ResultICMP {
		fmt.Fprintf(&b, " type %d code %d", o.ICMPType, o.ICMPCode)
	}
	if o.From.IsValid() {
		fmt.Fprintf(&b, " from %s", o.From)
	}
	if o.Reply != "" {
		fmt.Fprintf(&b, " reply %q", o.Reply)
	}
	if o.Err != "" {
		fmt.Fprintf(&b, " (%s)", o.Err)
	}
	return b.String()
}

// Open is the outcome of a probe that reached the server with identity id
// (as returned by [NS.ServeTCP] or [NS.ServeUDP]).
func Open(id string) Outcome { return Outcome{Result: ResultOpen, Reply: id} }

// ICMP is the outcome of a probe answered with an ICMP error.
func ICMP(typ, code uint8) Outcome { return Outcome{Result: ResultICMP, ICMPType: typ, ICMPCode: code} }

// AdminProhibited is the outcome of a probe to dst rejected by nftables
// `reject with icmpx admin-prohibited`: ICMPv4 type 3 code 13 or ICMPv6
// type 1 code 1.
func AdminProhibited(dst netip.Addr) Outcome {
	if dst.Unmap().Is4() {
		return ICMP(3, 13)
	}
	return ICMP(1, 1)
}

// PortUnreachable is the outcome of a UDP probe to a closed port on dst.
func PortUnreachable(dst netip.Addr) Outcome {
	if dst.Unmap().Is4() {
		return ICMP(3, 3)
	}
	return ICMP(1, 4)
}

// Timeout is the outcome of a probe that got no answer.
func Timeout() Outcome { return Outcome{Result: ResultTimeout} }

// EPERM is the outcome of a UDP or ping probe whose send failed with EPERM,
// which is what a drop verdict in the sender's own output path looks like.
// (A TCP SYN dropped there is retransmitted silently: "timeout".)
func EPERM() Outcome { return Outcome{Result: ResultEPERM} }

// Refused is the outcome of a TCP probe answered with a reset.
func Refused() Outcome { return Outcome{Result: ResultRefused} }

// Diff compares outcomes like cmp.Diff(want, got), ignoring Err, and ignoring
// From unless want.From is set. It returns "" when they match.
func Diff(want, got Outcome) string {
	got.Err = ""
	if !want.From.IsValid() {
		got.From = netip.Addr{}
	}
	if want == got {
		return ""
	}
	return fmt.Sprintf("want %v, got %v", want, got)
}

// ProbeOptions tune a probe. The zero value is the default.
type ProbeOptions struct {
	Timeout time.Duration // how long to wait for any answer; default DefaultTimeout
	Mark    uint32        // SO_MARK for the probe socket; 0 leaves it unset
	Payload string        // what to send; default "probe"; must not contain a newline
}

func (o ProbeOptions) withDefaults() ProbeOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Payload == "" {
		o.Payload = "probe"
	}
	return o
}

// ProbeTCP connects to dst from inside the namespace, sends a line and
// reports what happened.
func (n *NS) ProbeTCP(dst netip.AddrPort) Outcome { return n.ProbeTCPWith(dst, ProbeOptions{}) }

// ProbeUDP sends a datagram to dst from inside the namespace and reports what
// happened.
func (n *NS) ProbeUDP(dst netip.AddrPort) Outcome { return n.ProbeUDPWith(dst, ProbeOptions{}) }

// ProbePing sends an ICMP or ICMPv6 echo request to dst from inside the
// namespace and reports what happened.
func (n *NS) ProbePing(dst netip.Addr) Outcome { return n.ProbePingWith(dst, ProbeOptions{}) }

// ProbeTCPWith is [NS.ProbeTCP] with options.
func (n *NS) ProbeTCPWith(dst netip.AddrPort, o ProbeOptions) Outcome {
	return n.probe(func() Outcome { return probeTCP(dst, o.withDefaults()) })
}

// ProbeUDPWith is [NS.ProbeUDP] with options.
func (n *NS) ProbeUDPWith(dst netip.AddrPort, o ProbeOptions) Outcome {
	return n.probe(func() Outcome { return probeUDP(dst, o.withDefaults()) })
}

// ProbePingWith is [NS.ProbePing] with options.
func (n *NS) ProbePingWith(dst netip.Addr, o ProbeOptions) Outcome {
	return n.probe(func() Outcome { return probePing(dst, o.withDefaults()) })
}

func (n *NS) probe(fn func() Outcome) Outcome {
	var out Outcome
	if err := n.Do(func() error { out = fn(); return nil }); err != nil {
		return Outcome{Result: ResultError, Err: err.Error()}
	}
	return out
}

// DialTCP opens a TCP connection to dst from inside the namespace. The socket
// has IP_RECVERR / IPV6_RECVERR set, so an ICMP error on the established
// connection (for example from a reject rule added later) fails the next
// read or write at once instead of after retransmissions.
func (n *NS) DialTCP(dst netip.AddrPort, o ProbeOptions) (net.Conn, error) {
	o = o.withDefaults()
	var c net.Conn
	err := n.Do(func() error {
		d := net.Dialer{
			Timeout: o.Timeout,
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) { serr = setOpts(int(fd), dst.Addr(), o.Mark) })
				return errors.Join(err, serr)
			},
		}
		var err error
		c, err = d.DialContext(context.Background(), "tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netnstest: dial %s from %s: %w", dst, n.Name, err)
	}
	return c, nil
}

func probeTCP(dst netip.AddrPort, o ProbeOptions) Outcome {
	deadline := time.Now().Add(o.Timeout)
	fd, err := newSocket(dst.Addr(), unix.SOCK_STREAM, 0, o.Mark)
	if err != nil {
		return errorOutcome(err)
	}
	defer unix.Close(fd)
	// Close with a reset: no TIME_WAIT left behind by many probes.
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
		return errorOutcome(fmt.Errorf("SO_LINGER: %w", err))
	}
	if err := unix.Connect(fd, sockaddr(dst)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return failure(fd, err)
	}
	if ok, err := wait(fd, unix.POLLOUT, deadline); err != nil {
		return errorOutcome(err)
	} else if !ok {
		return Timeout()
	}
	if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
		return errorOutcome(fmt.Errorf("SO_ERROR: %w", err))
	} else if soerr != 0 {
		return failure(fd, unix.Errno(soerr))
	}
	if _, err := unix.Write(fd, []byte(o.Payload+"\n")); err != nil {
		return failure(fd, err)
	}
	var reply []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(reply, []byte("\n")) {
		if ok, err := wait(fd, unix.POLLIN, deadline); err != nil {
			return errorOutcome(err)
		} else if !ok {
			return Outcome{Result: ResultTimeout, Err: fmt.Sprintf("connected, no reply (got %q)", reply)}
		}
		m, err := unix.Read(fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			return failure(fd, err)
		}
		if m == 0 {
			return Outcome{Result: ResultError, Err: fmt.Sprintf("connection closed after %q", reply)}
		}
		reply = append(reply, buf[:m]...)
	}
	return parseReply(string(bytes.TrimSuffix(reply, []byte("\n"))), o.Payload)
}

func probeUDP(dst netip.AddrPort, o ProbeOptions) Outcome {
	deadline := time.Now().Add(o.Timeout)
	fd, err := newSocket(dst.Addr(), unix.SOCK_DGRAM, 0, o.Mark)
	if err != nil {
		return errorOutcome(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(dst)); err != nil {
		return failure(fd, err)
	}
	if _, err := unix.Write(fd, []byte(o.Payload)); err != nil {
		return failure(fd, err)
	}
	reply, out, ok := readDatagram(fd, deadline)
	if !ok {
		return out
	}
	return parseReply(string(reply), o.Payload)
}

func probePing(dst netip.Addr, o ProbeOptions) Outcome {
	deadline := time.Now().Add(o.Timeout)
	dst = dst.Unmap()
	proto, reqType, replyType := unix.IPPROTO_ICMP, byte(8), byte(0)
	if dst.Is6() {
		proto, reqType, replyType = unix.IPPROTO_ICMPV6, 128, 129
	}
	fd, err := newSocket(dst, unix.SOCK_DGRAM, proto, o.Mark)
	if err != nil {
		return errorOutcome(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(netip.AddrPortFrom(dst, 0))); err != nil {
		return failure(fd, err)
	}
	// Type, code, checksum and identifier are completed by the kernel for
	// ICMP datagram ("ping") sockets; sequence 1.
	req := append([]byte{reqType, 0, 0, 0, 0, 0, 0, 1}, o.Payload...)
	if _, err := unix.Write(fd, req); err != nil {
		return failure(fd, err)
	}
	for {
		reply, out, ok := readDatagram(fd, deadline)
		if !ok {
			return out
		}
		if len(reply) >= 8 && reply[0] == replyType && string(reply[8:]) == o.Payload {
			return Outcome{Result: ResultOpen, From: dst, Reply: "echo reply from " + dst.String()}
		}
	}
}

// readDatagram waits for a datagram or an ICMP error; ok is false when out
// holds the final outcome instead.
func readDatagram(fd int, deadline time.Time) (reply []byte, out Outcome, ok bool) {
	buf := make([]byte, 64<<10)
	for {
		ready, err := wait(fd, unix.POLLIN, deadline)
		if err != nil {
			return nil, errorOutcome(err), false
		}
		if !ready {
			return nil, Timeout(), false
		}
		if o, found := readErrQueue(fd); found {
			return nil, o, false
		}
		m, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return nil, failure(fd, err), false
		}
		return buf[:m], Outcome{}, true
	}
}

func parseReply(line, payload string) Outcome {
	id, ok := strings.CutSuffix(line, " "+payload)
	if !ok || id == "" {
		return Outcome{Result: ResultError, Err: fmt.Sprintf("unexpected reply %q", line)}
	}
	return Open(id)
}

func newSocket(dst netip.Addr, typ, proto int, mark uint32) (int, error) {
	family := unix.AF_INET
	if dst.Unmap().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := setOpts(fd, dst, mark); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setOpts enables the ICMP error queue and sets the mark, if any.
func setOpts(fd int, dst netip.Addr, mark uint32) error {
	level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
	if dst.Unmap().Is6() {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		return fmt.Errorf("enable RECVERR: %w", err)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return fmt.Errorf("SO_MARK: %w", err)
		}
	}
	return nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

// wait polls fd for events (errors always count) until deadline; it reports
// false on timeout.
func wait(fd int, events int16, deadline time.Time) (bool, error) {
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms <= 0 {
			return false, nil
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		k, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll: %w", err)
		}
		if k > 0 {
			return true, nil
		}
	}
}

// failure turns a socket error into an outcome, preferring an ICMP error
// from the error queue.
func failure(fd int, err error) Outcome {
	if o, ok := readErrQueue(fd); ok {
		o.Err = err.Error()
		return o
	}
	if errors.Is(err, unix.ECONNREFUSED) {
		return Outcome{Result: ResultRefused, Err: err.Error()}
	}
	if errors.Is(err, unix.EPERM) {
		return Outcome{Result: ResultEPERM, Err: err.Error()}
	}
	return errorOutcome(err)
}

func errorOutcome(err error) Outcome { return Outcome{Result: ResultError, Err: err.Error()} }

// sock_extended_err: errno u32, origin u8, type u8, code u8, pad u8, info
// u32, data u32; then the offender's sockaddr (SO_EE_OFFENDER).
const sizeofSockExtendedErr = 16

// readErrQueue reads one ICMP error from the socket's error queue.
func readErrQueue(fd int) (Outcome, bool) {
	buf, oob := make([]byte, 512), make([]byte, 512)
	for {
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err != nil {
			return Outcome{}, false
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return Outcome{}, false
		}
		for _, m := range msgs {
			v4 := m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR
			v6 := m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR
			if (!v4 && !v6) || len(m.Data) < sizeofSockExtendedErr {
				continue
			}
			d := m.Data
			origin := d[4]
			if origin != unix.SO_EE_ORIGIN_ICMP && origin != unix.SO_EE_ORIGIN_ICMP6 {
				continue
			}
			o := ICMP(d[5], d[6])
			o.From = offender(d[sizeofSockExtendedErr:])
			return o, true
		}
	}
}

func offender(sa []byte) netip.Addr {
	if len(sa) < 2 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(sa) {
	case unix.AF_INET:
		if len(sa) >= 8 {
			return netip.AddrFrom4([4]byte(sa[4:8]))
		}
	case unix.AF_INET6:
		if len(sa) >= 24 {
			return netip.AddrFrom16([16]byte(sa[8:24]))
		}
	}
	return netip.Addr{}
}
