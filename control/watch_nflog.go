// SPDX-License-Identifier: Apache-2.0

package control

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/nft"
)

// nfnetlink_log (NFLOG) protocol values, from linux/netfilter/nfnetlink_log.h.
const (
	nfnlSubsysULOG  = 4
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1

	nfulaCfgCmd     = 1
	nfulaCfgMode    = 2
	nfulaCfgNlbufsz = 3
	nfulaCfgTimeout = 4
	nfulaCfgQthresh = 5

	nfulnlCfgCmdBind = 1
	nfulnlCopyPacket = 2

	nfulaPacketHdr = 1
	nfulaTimestamp = 3
	nfulaPayload   = 9
	nfulaPrefix    = 10

	nfInetLocalIn  = 1
	nfInetLocalOut = 3
)

// nflogCopyRange is how many bytes of each packet the kernel copies: enough for the IP header,
// IPv6 extension headers and the ports.
const nflogCopyRange = 128

// nflogRcvBuf is the receive buffer asked for; a burst larger than it loses events (ENOBUFS),
// never packets.
const nflogRcvBuf = 1 << 20

// errNFLOGBusy means another process already reads the group in that namespace.
var errNFLOGBusy = errors.New("another watch is already reading this container's packet log (only one NFLOG listener per namespace can bind the group)")

// nflogPacket is one NFLOG packet message.
type nflogPacket struct {
	Family  uint8  // NFPROTO_IPV4 or NFPROTO_IPV6
	Hook    uint8  // netfilter hook (1 input, 3 output); valid when HasHook
	HasHook bool   // NFULA_PACKET_HDR was present
	Prefix  string // the log rule's prefix, without the NUL
	Payload []byte // the packet from its network header, at most nflogCopyRange bytes
	Time    time.Time
}

// parseNFLOG decodes an NFLOG packet message; ok is false for other message types.
func parseNFLOG(m netlink.Message) (p nflogPacket, ok bool, err error) {
	if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) {
		return nflogPacket{}, false, nil
	}
	if len(m.Data) < 4 {
		return nflogPacket{}, true, errors.New("nflog: message shorter than its nfgenmsg header")
	}
	p.Family = m.Data[0]
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return nflogPacket{}, true, fmt.Errorf("nflog: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case nfulaPacketHdr:
			if b := ad.Bytes(); len(b) >= 3 {
				p.Hook, p.HasHook = b[2], true
			}
		case nfulaTimestamp:
			if b := ad.Bytes(); len(b) == 16 {
				sec := binary.BigEndian.Uint64(b[0:8])
				usec := binary.BigEndian.Uint64(b[8:16])
				p.Time = time.Unix(int64(sec), int64(usec)*1000).UTC()
			}
		case nfulaPayload:
			p.Payload = bytes.Clone(ad.Bytes())
		case nfulaPrefix:
			p.Prefix = strings.TrimRight(string(ad.Bytes()), "\x00")
		}
	}
	if err := ad.Err(); err != nil {
		return nflogPacket{}, true, fmt.Errorf("nflog: %w", err)
	}
	return p, true, nil
}

// actionOf returns the event action of a log prefix, or "" for a prefix the ruleset does not
// write.
func actionOf(prefix string) string {
	switch strings.TrimSpace(prefix) {
	case strings.TrimSpace(nft.PrefixAllowed):
		return "allowed"
	case strings.TrimSpace(nft.PrefixDenied):
		return "denied"
	case strings.TrimSpace(nft.PrefixBlocked):
		return "blocked"
	case strings.TrimSpace(nft.PrefixPrivate):
		return "private"
	case strings.TrimSpace(nft.PrefixBypass):
		return "bypass"
	}
	return ""
}

// eventOf turns an NFLOG packet into an event (without container and domain); ok is false for
// packets not logged by the ruleset or without a readable IP header.
func eventOf(p nflogPacket, now time.Time) (WatchEvent, bool) {
	action := actionOf(p.Prefix)
	if action == "" {
		return WatchEvent{}, false
	}
	info, err := parsePacket(p.Payload)
	if err != nil {
		return WatchEvent{}, false
	}
	ev := WatchEvent{
		TS: p.Time, Action: action, Proto: info.Proto, Src: info.Src, Dst: info.Dst,
		SPort: info.SPort, DPort: info.DPort, ICMPType: info.ICMPType,
	}
	if ev.TS.IsZero() {
		ev.TS = now.UTC()
	}
	if p.HasHook {
		switch p.Hook {
		case nfInetLocalIn:
			ev.Dir = "in"
		case nfInetLocalOut:
			ev.Dir = "out"
		}
	}
	return ev, true
}

// nflogListener is an NFLOG socket bound to one group in the namespace it was opened in.
type nflogListener struct {
	c       *netlink.Conn
	pending []netlink.Message // packets that arrived before the bind was acknowledged
}

// bindNFLOG opens a netfilter netlink socket in the calling thread's network namespace and
// binds it to group in packet copy mode.
func bindNFLOG(group uint16) (*nflogListener, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	_ = c.SetReadBuffer(nflogRcvBuf) // best effort, capped by net.core.rmem_max
	l := &nflogListener{c: c}
	if err := l.configure(group); err != nil {
		_ = c.Close()
		return nil, err
	}
	return l, nil
}

// configure binds the group and sets copy mode, range, flush timeout and queue threshold in one
// message, so the instance never exists in another mode.
func (l *nflogListener) configure(group uint16) error {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Bytes(nfulaCfgCmd, []byte{nfulnlCfgCmdBind})
	mode := make([]byte, 6) // struct nfulnl_msg_config_mode: be32 copy_range, u8 copy_mode, pad
	binary.BigEndian.PutUint32(mode, nflogCopyRange)
	mode[4] = nfulnlCopyPacket
	ae.Bytes(nfulaCfgMode, mode)
	ae.Uint32(nfulaCfgNlbufsz, 64<<10)
	ae.Uint32(nfulaCfgTimeout, 1) // flush after 1/100 s: events are live
	ae.Uint32(nfulaCfgQthresh, 16)
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("nflog config: %w", err)
	}
	hdr := []byte{unix.AF_UNSPEC, 0 /* NFNETLINK_V0 */, 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], group)
	req, err := l.c.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append(hdr, attrs...),
	})
	if err != nil {
		return fmt.Errorf("nflog bind: %w", err)
	}
	_ = l.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = l.c.SetReadDeadline(time.Time{}) }()
	for {
		msgs, err := l.c.Receive()
		// The kernel answers EPERM when another socket has bound the group; a caller without
		// CAP_NET_ADMIN in the namespace would get it too, but watch always has it there
		// (root, or the owner inside the container's user namespace).
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) {
			return errNFLOGBusy
		}
		if err != nil {
			return fmt.Errorf("nflog bind: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error && m.Header.Sequence == req.Header.Sequence {
				return nil // an error code would have failed Receive
			}
			l.pending = append(l.pending, m)
		}
	}
}

// run reads packets until ctx ends (nil) or the socket fails, calling emit for each.
func (l *nflogListener) run(ctx context.Context, emit func(nflogPacket) error) error {
	stop := context.AfterFunc(ctx, func() { _ = l.c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	msgs := l.pending
	l.pending = nil
	for {
		for _, m := range msgs {
			p, ok, err := parseNFLOG(m)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := emit(p); err != nil {
				return err
			}
		}
		var err error
		msgs, err = l.c.Receive()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			// The kernel dropped log messages for a full buffer; the packets themselves
			// were handled by the ruleset. Keep reading.
			msgs = nil
		case err != nil:
			return fmt.Errorf("read packet log: %w", err)
		}
	}
}

func (l *nflogListener) Close() error { return l.c.Close() }
