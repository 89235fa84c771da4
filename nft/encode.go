// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"
)

// Bulk element loads bypass google/nftables' per-element attribute
// marshalling (about a third of a 100k load) and encode NEWSETELEM payloads
// directly.

func appendAttrHdr(b []byte, typ uint16, payloadLen int) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+payloadLen))
	return binary.NativeEndian.AppendUint16(b, typ)
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = appendAttrHdr(b, typ, len(data))
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendElem appends one element item (index idx) with key, an optional
// interval-end flag and an optional timeout (0: the set's default). Keys are
// 4 or 16 bytes, so no padding is needed.
func appendElem(b []byte, idx int, key []byte, end bool, timeout time.Duration) []byte {
	keyNest := 4 + 4 + len(key)
	item := 4 + keyNest
	if end {
		item += 8
	}
	if timeout > 0 {
		item += 12
	}
	b = appendAttrHdr(b, unix.NLA_F_NESTED|uint16(idx), item-4)
	if end {
		b = appendAttrHdr(b, unix.NFTA_SET_ELEM_FLAGS, 4)
		b = binary.BigEndian.AppendUint32(b, unix.NFT_SET_ELEM_INTERVAL_END)
	}
	if timeout > 0 {
		b = appendAttrHdr(b, unix.NFTA_SET_ELEM_TIMEOUT, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(max(timeout.Milliseconds(), 1)))
	}
	b = appendAttrHdr(b, unix.NLA_F_NESTED|unix.NFTA_SET_ELEM_KEY, keyNest-4)
	b = appendAttrHdr(b, unix.NFTA_DATA_VALUE, len(key))
	return append(b, key...)
}

// elemPayloads encodes a set's elements as NEWSETELEM message payloads of at
// most msgBudget bytes of elements each; interval pairs stay together.
func elemPayloads(spec setSpec) [][]byte {
	var out [][]byte
	var items []byte
	idx := 0
	flush := func() {
		if idx == 0 {
			return
		}
		b := make([]byte, 0, len(items)+64)
		b = append(b, unix.NFPROTO_INET, 0, 0, 0)
		b = appendAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, []byte(TableName+"\x00"))
		b = appendAttr(b, unix.NFTA_SET_ELEM_LIST_SET, []byte(spec.name+"\x00"))
		b = appendAttrHdr(b, unix.NLA_F_NESTED|unix.NFTA_SET_ELEM_LIST_ELEMENTS, len(items))
		out = append(out, append(b, items...))
		items, idx = items[:0], 0
	}
	key := func(a interface{ AsSlice() []byte }) []byte { return a.AsSlice() }
	switch spec.kind {
	case setInterval:
		for _, r := range spec.ranges {
			if len(items) > msgBudget {
				flush()
			}
			idx++
			items = appendElem(items, idx, key(r.lo), false, 0)
			if end := r.hi.Next(); end.IsValid() {
				idx++
				items = appendElem(items, idx, key(end), true, 0)
			}
		}
	default:
		for i, a := range spec.addrs {
			if len(items) > msgBudget {
				flush()
			}
			idx++
			var timeout time.Duration
			if spec.timeouts != nil {
				timeout = spec.timeouts[i]
			}
			if a.Is4() {
				k := a.As4()
				items = appendElem(items, idx, k[:], false, timeout)
			} else {
				k := a.As16()
				items = appendElem(items, idx, k[:], false, timeout)
			}
		}
	}
	flush()
	return out
}

// msgBudget bounds the element bytes of one netlink message: the element
// list is a single nested attribute, whose length field is 16 bits.
const msgBudget = 60_000
