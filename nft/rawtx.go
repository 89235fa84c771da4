// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// rawTx is one nf_tables transaction encoded here rather than through
// google/nftables.Conn, which asks for an echo of every rule and an ack for
// every message; reading those back dominated a table load. Only the last
// message requests an ack; the kernel still reports every failing message.
type rawTx struct {
	msgs []netlink.Message
}

func (tx *rawTx) add(typ uint16, flags netlink.HeaderFlags, attrs []byte) {
	data := make([]byte, 0, 4+len(attrs))
	data = append(data, unix.NFPROTO_INET, 0, 0, 0)
	tx.msgs = append(tx.msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: netlink.Request | flags},
		Data:   append(data, attrs...),
	})
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func nested(typ uint16, inner []byte) []byte {
	return append(appendAttrHdr(nil, unix.NLA_F_NESTED|typ, len(inner)), inner...)
}

func (tx *rawTx) delTable() {
	tx.add(unix.NFT_MSG_DELTABLE, 0, appendAttr(nil, unix.NFTA_TABLE_NAME, cstr(TableName)))
}

func (tx *rawTx) newTable() {
	b := appendAttr(nil, unix.NFTA_TABLE_NAME, cstr(TableName))
	b = appendAttr(b, unix.NFTA_TABLE_FLAGS, be32(0))
	tx.add(unix.NFT_MSG_NEWTABLE, netlink.Create, b)
}

func (tx *rawTx) newSet(spec setSpec, id uint32) {
	key := nftables.TypeIPAddr
	if spec.v6 {
		key = nftables.TypeIP6Addr
	}
	var flags uint32
	var udata []byte
	switch spec.kind {
	case setInterval:
		flags |= unix.NFT_SET_INTERVAL
		udata = userdata.AppendUint32(udata, userdata.NFTNL_UDATA_SET_KEYBYTEORDER, 2)
		udata = userdata.AppendUint32(udata, userdata.NFTNL_UDATA_SET_MERGE_ELEMENTS, 1)
	case setTimeout:
		flags |= unix.NFT_SET_TIMEOUT | unix.NFT_SET_EVAL
	}
	b := appendAttr(nil, unix.NFTA_SET_TABLE, cstr(TableName))
	b = appendAttr(b, unix.NFTA_SET_NAME, cstr(spec.name))
	b = appendAttr(b, unix.NFTA_SET_FLAGS, be32(flags))
	b = appendAttr(b, unix.NFTA_SET_KEY_TYPE, be32(key.GetNFTMagic()))
	b = appendAttr(b, unix.NFTA_SET_KEY_LEN, be32(key.Bytes))
	b = appendAttr(b, unix.NFTA_SET_ID, be32(id))
	if spec.kind == setTimeout {
		b = appendAttr(b, unix.NFTA_SET_TIMEOUT, binary.BigEndian.AppendUint64(nil, uint64(spec.timeout.Milliseconds())))
		b = append(b, nested(unix.NFTA_SET_DESC, appendAttr(nil, unix.NFTA_SET_DESC_SIZE, be32(LearnedSetSize)))...)
	}
	if len(udata) > 0 {
		b = appendAttr(b, unix.NFTA_SET_USERDATA, udata)
	}
	tx.add(unix.NFT_MSG_NEWSET, netlink.Create, b)
}

func (tx *rawTx) newChain(name string, hook *nftables.ChainHook, policy nftables.ChainPolicy) {
	h := appendAttr(nil, unix.NFTA_HOOK_HOOKNUM, be32(uint32(*hook)))
	h = appendAttr(h, unix.NFTA_HOOK_PRIORITY, be32(uint32(*nftables.ChainPriorityFilter)))
	b := appendAttr(nil, unix.NFTA_CHAIN_TABLE, cstr(TableName))
	b = appendAttr(b, unix.NFTA_CHAIN_NAME, cstr(name))
	b = append(b, nested(unix.NFTA_CHAIN_HOOK, h)...)
	b = appendAttr(b, unix.NFTA_CHAIN_POLICY, be32(uint32(policy)))
	b = appendAttr(b, unix.NFTA_CHAIN_TYPE, cstr(string(nftables.ChainTypeFilter)))
	tx.add(unix.NFT_MSG_NEWCHAIN, netlink.Create, b)
}

// flushChain deletes every rule of a chain.
func (tx *rawTx) flushChain(name string) {
	b := appendAttr(nil, unix.NFTA_RULE_TABLE, cstr(TableName))
	b = appendAttr(b, unix.NFTA_RULE_CHAIN, cstr(name))
	tx.add(unix.NFT_MSG_DELRULE, 0, b)
}

func (tx *rawTx) newRule(chain string, exprs []expr.Any) error {
	var list []byte
	for _, e := range exprs {
		enc, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			return fmt.Errorf("encode %T: %w", e, err)
		}
		list = append(list, nested(unix.NFTA_LIST_ELEM, enc)...)
	}
	b := appendAttr(nil, unix.NFTA_RULE_TABLE, cstr(TableName))
	b = appendAttr(b, unix.NFTA_RULE_CHAIN, cstr(chain))
	b = append(b, nested(unix.NFTA_RULE_EXPRESSIONS, list)...)
	tx.add(unix.NFT_MSG_NEWRULE, netlink.Create|unix.NLM_F_APPEND, b)
	return nil
}

func (tx *rawTx) newElems(payload []byte) {
	tx.msgs = append(tx.msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM), Flags: netlink.Request | netlink.Create},
		Data:   payload,
	})
}

// commit sends the transaction and waits for its outcome. Every message
// gets a sequence number; only the last asks for an ack, and the kernel
// reports an error for any failing message, so reading stops at the
// outcome of the last message.
func (tx *rawTx) commit(s *session) error {
	if len(tx.msgs) == 0 {
		return nil
	}
	nc, err := s.rawConn()
	if err != nil {
		return err
	}
	batchHdr := []byte{unix.AF_UNSPEC, 0, 0, unix.NFNL_SUBSYS_NFTABLES}
	msgs := make([]netlink.Message, 0, len(tx.msgs)+2)
	s.seq++
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request, Sequence: s.seq}, Data: batchHdr})
	for i, m := range tx.msgs {
		s.seq++
		m.Header.Sequence = s.seq
		if i == len(tx.msgs)-1 {
			m.Header.Flags |= netlink.Acknowledge
		}
		msgs = append(msgs, m)
	}
	last := s.seq
	s.seq++
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request, Sequence: s.seq}, Data: batchHdr})
	if _, err := nc.SendMessages(msgs); err != nil {
		return fmt.Errorf("send batch: %w", err)
	}
	tx.msgs = nil
	return readOutcome(nc, last)
}

// readOutcome reads NLMSG_ERROR messages until the one for sequence last
// arrives and returns the first non-zero error among them.
func readOutcome(nc *netlink.Conn, last uint32) error {
	rc, err := nc.SyscallConn()
	if err != nil {
		return fmt.Errorf("read batch outcome: %w", err)
	}
	buf := make([]byte, 1<<16)
	var first error
	for {
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return !errors.Is(rerr, unix.EAGAIN)
		}); err != nil {
			return fmt.Errorf("read batch outcome: %w", err)
		}
		if rerr != nil {
			return fmt.Errorf("read batch outcome: %w", rerr)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse batch outcome: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 && first == nil {
				first = fmt.Errorf("message %d of the batch: %w", m.Header.Seq, syscall.Errno(-code))
			}
			if m.Header.Seq == last {
				return first
			}
		}
	}
}
