// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netError is a failed socket operation with its classification and any ICMP error details.
type netError struct {
	op     string
	result string
	errno  string
	icmp   *ICMP
	err    error
}

func (e *netError) Error() string {
	if e.icmp != nil {
		return fmt.Sprintf("%s: %v (icmp type %d code %d from %s)", e.op, e.err, e.icmp.Type, e.icmp.Code, e.icmp.From)
	}
	return fmt.Sprintf("%s: %v", e.op, e.err)
}

func (e *netError) Unwrap() error { return e.err }

// newNetError classifies err; icmp (from the error queue) turns the result into "icmp".
func newNetError(op string, err error, icmp *ICMP) *netError {
	res, errno := classify(err)
	if icmp != nil {
		res = ICMPErr
	}
	return &netError{op: op, result: res, errno: errno, icmp: icmp, err: err}
}

// parseAddrPort resolves "HOST:PORT" where HOST must be an IP literal (the probe never uses
// the system resolver implicitly).
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("address %q: %w", s, err)
	}
	return ap, nil
}

func sockaddr(ap netip.AddrPort) (int, unix.Sockaddr) {
	if ap.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// socketRecvErr opens a non-blocking socket with IP_RECVERR/IPV6_RECVERR enabled.
func socketRecvErr(family, typ, proto int) (int, error) {
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	if family == unix.AF_INET {
		err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVERR, 1)
	} else {
		err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_RECVERR, 1)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("setsockopt recverr: %w", err)
	}
	return fd, nil
}

// poll waits for events on fd; it returns the revents, or 0 on timeout.
func poll(fd int, events int16, timeout time.Duration) (int16, error) {
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms < 0 {
			ms = 0
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			return 0, nil
		}
		return fds[0].Revents, nil
	}
}

// readErrQueue returns the first ICMP error queued on fd (nil if none) and its ee_errno.
func readErrQueue(fd int) (*ICMP, unix.Errno) {
	buf := make([]byte, 512)
	oob := make([]byte, 512)
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, 0
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, 0
	}
	for _, m := range msgs {
		if ic := parseExtendedErr(m.Header.Level, m.Header.Type, m.Data); ic != nil {
			return ic, unix.Errno(binary.NativeEndian.Uint32(m.Data[:4]))
		}
	}
	return nil, 0
}

// sockErr returns the pending socket error; if none is pending it falls back to the errno of
// a queued ICMP error. The error queue is read after SO_ERROR, since dequeuing resets it.
func sockErr(fd int) (*ICMP, error) {
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	ic, eeErrno := readErrQueue(fd)
	if err != nil {
		return ic, err
	}
	if soerr != 0 {
		return ic, unix.Errno(soerr)
	}
	if eeErrno != 0 {
		return ic, eeErrno
	}
	return ic, nil
}

// withQueued classifies err, attaching any ICMP error queued on fd.
func withQueued(op string, fd int, err error) *netError {
	ic, _ := readErrQueue(fd)
	return newNetError(op, err, ic)
}

// parseExtendedErr decodes a struct sock_extended_err control message (followed by the
// offender's sockaddr) when it reports an ICMP or ICMPv6 error.
func parseExtendedErr(level, typ int32, data []byte) *ICMP {
	isV4 := level == unix.SOL_IP && typ == unix.IP_RECVERR
	isV6 := level == unix.SOL_IPV6 && typ == unix.IPV6_RECVERR
	if !isV4 && !isV6 || len(data) < 16 {
		return nil
	}
	origin := data[4]
	if origin != unix.SO_EE_ORIGIN_ICMP && origin != unix.SO_EE_ORIGIN_ICMP6 {
		return nil
	}
	ic := &ICMP{V6: origin == unix.SO_EE_ORIGIN_ICMP6, Type: int(data[5]), Code: int(data[6])}
	off := data[16:]
	if len(off) >= 2 {
		switch binary.NativeEndian.Uint16(off[:2]) {
		case unix.AF_INET:
			if len(off) >= 8 {
				ic.From = netip.AddrFrom4([4]byte(off[4:8])).String()
			}
		case unix.AF_INET6:
			if len(off) >= 24 {
				ic.From = netip.AddrFrom16([16]byte(off[8:24])).String()
			}
		}
	}
	return ic
}

// connectFD connects a socket of type typ to ap within timeout; ICMP errors are captured.
func connectFD(typ int, ap netip.AddrPort, timeout time.Duration) (int, error) {
	family, sa := sockaddr(ap)
	fd, err := socketRecvErr(family, typ, 0)
	if err != nil {
		return -1, newNetError("socket", err, nil)
	}
	err = unix.Connect(fd, sa)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.EINPROGRESS) {
		ne := withQueued("connect", fd, err)
		unix.Close(fd)
		return -1, ne
	}
	rev, err := poll(fd, unix.POLLOUT, timeout)
	if err != nil {
		unix.Close(fd)
		return -1, newNetError("connect", err, nil)
	}
	if rev == 0 {
		ne := withQueued("connect", fd, unix.ETIMEDOUT)
		unix.Close(fd)
		return -1, ne
	}
	if ic, err := sockErr(fd); err != nil {
		unix.Close(fd)
		return -1, newNetError("connect", err, ic)
	}
	return fd, nil
}

// dialTCP connects to "IP:PORT" and returns a net.Conn; errors are *netError.
func dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	ap, err := parseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	fd, err := connectFD(unix.SOCK_STREAM, ap, timeout)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "tcp")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("fileconn: %w", err)
	}
	return c, nil
}

func probeTCP(addr, send string, timeout time.Duration) Result {
	r := Result{Target: addr}
	c, err := dialTCP(addr, timeout)
	if err != nil {
		return fail(r, err)
	}
	defer c.Close()
	if send == "" {
		send = "probe"
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(send + "\n")); err != nil {
		return fail(r, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	r.Reply = strings.TrimRight(line, "\r\n")
	if err != nil && r.Reply == "" {
		// Connected: the connection itself succeeded even if no reply came.
		r.Result = OK
		r.Error = "no reply: " + err.Error()
		return r
	}
	r.Result = OK
	return r
}

// exchangeUDP sends payload on a connected UDP socket and waits for one datagram.
func exchangeUDP(addr string, payload []byte, timeout time.Duration) ([]byte, error) {
	ap, err := parseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	fd, err := connectFD(unix.SOCK_DGRAM, ap, timeout)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return sendRecv(fd, payload, timeout, func([]byte) bool { return true })
}

// sendRecv writes payload and reads datagrams until accept says one is the answer.
func sendRecv(fd int, payload []byte, timeout time.Duration, accept func([]byte) bool) ([]byte, error) {
	if _, err := unix.Write(fd, payload); err != nil {
		return nil, withQueued("send", fd, err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for {
		rev, err := poll(fd, unix.POLLIN, time.Until(deadline))
		if err != nil {
			return nil, newNetError("recv", err, nil)
		}
		if rev == 0 {
			return nil, withQueued("recv", fd, unix.ETIMEDOUT)
		}
		if rev&unix.POLLERR != 0 {
			if ic, err := sockErr(fd); err != nil {
				return nil, newNetError("recv", err, ic)
			}
		}
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return nil, withQueued("recv", fd, err)
		}
		if accept(buf[:n]) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func probeUDP(addr, send string, timeout time.Duration) Result {
	r := Result{Target: addr}
	if send == "" {
		send = "probe"
	}
	b, err := exchangeUDP(addr, []byte(send+"\n"), timeout)
	if err != nil {
		return fail(r, err)
	}
	r.Result = OK
	r.Reply = strings.TrimRight(string(b), "\r\n")
	return r
}

// probePing sends one ICMP echo request through an unprivileged ping socket, or a raw socket
// when ping sockets are not allowed (net.ipv4.ping_group_range).
func probePing(addr string, timeout time.Duration) Result {
	r := Result{Target: addr}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return fail(r, fmt.Errorf("address %q: %w", addr, err))
	}
	family, proto, reqType, replyType := unix.AF_INET, unix.IPPROTO_ICMP, byte(8), byte(0)
	if !ip.Is4() {
		family, proto, reqType, replyType = unix.AF_INET6, unix.IPPROTO_ICMPV6, 128, 129
	}
	sa, _ := sockaddrIP(ip)
	fd, err := socketRecvErr(family, unix.SOCK_DGRAM, proto)
	raw := false
	if err != nil {
		var rerr error
		fd, rerr = socketRecvErr(family, unix.SOCK_RAW, proto)
		if rerr != nil {
			return fail(r, newNetError("socket", errors.Join(err, rerr), nil))
		}
		raw = true
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		return fail(r, withQueued("connect", fd, err))
	}
	const id, seq = 0x7e57, 1
	pkt := []byte{reqType, 0, 0, 0, id >> 8, id & 0xff, 0, seq, 't', 'e', 'r', 'o', 'k'}
	if family == unix.AF_INET {
		cs := checksum(pkt)
		pkt[2], pkt[3] = byte(cs>>8), byte(cs)
	}
	_, err = sendRecv(fd, pkt, timeout, func(b []byte) bool {
		if raw && family == unix.AF_INET && len(b) > 20 {
			b = b[int(b[0]&0x0f)*4:] // raw IPv4 sockets deliver the IP header
		}
		return len(b) >= 8 && b[0] == replyType && (!raw || b[4] == id>>8 && b[5] == id&0xff)
	})
	if err != nil {
		return fail(r, err)
	}
	r.Result = OK
	if raw {
		r.Reply = "raw"
	} else {
		r.Reply = "dgram"
	}
	return r
}

func sockaddrIP(ip netip.Addr) (unix.Sockaddr, int) {
	if ip.Is4() {
		return &unix.SockaddrInet4{Addr: ip.As4()}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Addr: ip.As16()}, unix.AF_INET6
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
