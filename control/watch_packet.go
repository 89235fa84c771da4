// SPDX-License-Identifier: Apache-2.0

package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// packetInfo is what watch reads from the first bytes of a logged packet.
type packetInfo struct {
	Proto    string // tcp, udp, icmp, icmpv6, sctp, or the protocol number
	Src, Dst netip.Addr
	SPort    uint16
	DPort    uint16 // 0 without ports (ICMP, or a truncated transport header)
	ICMPType *uint8 // ICMP and ICMPv6 only
}

// IP protocol numbers watch names.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
	protoUDPLit = 136
)

var errShortPacket = errors.New("packet shorter than its IP header")

// parsePacket reads the IP header at the start of payload (as NFLOG copies it) and the ports or
// ICMP type behind it. A payload cut inside the transport header still yields addresses and
// protocol; one cut inside the IP header is an error.
func parsePacket(payload []byte) (packetInfo, error) {
	if len(payload) == 0 {
		return packetInfo{}, errShortPacket
	}
	var (
		info  packetInfo
		proto uint8
		l4    []byte
	)
	switch payload[0] >> 4 {
	case 4:
		if len(payload) < 20 {
			return packetInfo{}, errShortPacket
		}
		ihl := int(payload[0]&0x0f) * 4
		if ihl < 20 || len(payload) < ihl {
			return packetInfo{}, errShortPacket
		}
		info.Src = netip.AddrFrom4([4]byte(payload[12:16]))
		info.Dst = netip.AddrFrom4([4]byte(payload[16:20]))
		proto = payload[9]
		// A non-first fragment carries no transport header.
		if binary.BigEndian.Uint16(payload[6:8])&0x1fff == 0 {
			l4 = payload[ihl:]
		}
	case 6:
		if len(payload) < 40 {
			return packetInfo{}, errShortPacket
		}
		info.Src = netip.AddrFrom16([16]byte(payload[8:24]))
		info.Dst = netip.AddrFrom16([16]byte(payload[24:40]))
		proto, l4 = skipIPv6Extensions(payload[6], payload[40:])
	default:
		return packetInfo{}, fmt.Errorf("not an IP packet (version %d)", payload[0]>>4)
	}
	info.Proto = protoName(proto)
	switch proto {
	case protoTCP, protoUDP, protoSCTP, protoUDPLit:
		if len(l4) >= 4 {
			info.SPort = binary.BigEndian.Uint16(l4[0:2])
			info.DPort = binary.BigEndian.Uint16(l4[2:4])
		}
	case protoICMP, protoICMPv6:
		if len(l4) >= 1 {
			t := l4[0]
			info.ICMPType = &t
		}
	}
	return info, nil
}

// skipIPv6Extensions follows the extension header chain from next (the fixed header's Next
// Header) and returns the upper-layer protocol and its bytes (nil when cut short or behind a
// non-first fragment).
func skipIPv6Extensions(next uint8, b []byte) (uint8, []byte) {
	for range 8 { // a chain longer than this is not worth following
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 2 {
				return next, nil
			}
			n := (int(b[1]) + 1) * 8
			if len(b) < n {
				return b[0], nil
			}
			next, b = b[0], b[n:]
		case 44: // fragment
			if len(b) < 8 {
				return next, nil
			}
			if binary.BigEndian.Uint16(b[2:4])&0xfff8 != 0 {
				return b[0], nil
			}
			next, b = b[0], b[8:]
		default:
			return next, b
		}
	}
	return next, nil
}

func protoName(p uint8) string {
	switch p {
	case protoICMP:
		return "icmp"
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoICMPv6:
		return "icmpv6"
	case protoSCTP:
		return "sctp"
	case protoUDPLit:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}
