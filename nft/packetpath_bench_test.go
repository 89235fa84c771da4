// SPDX-License-Identifier: Apache-2.0

package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/terok-ai/terok-shield/internal/netnstest"
)

// BenchmarkConnectRate measures TCP connects per second from a ctr namespace
// to a server in a wan namespace through the output chain: without a table,
// with the enforce table and only the server allowed, and with 100k further
// allow entries (single addresses, or CIDRs so the server is matched by the
// interval set). Each connect is a new conntrack entry that walks the chain;
// the target is 100k within 3% of empty.
func BenchmarkConnectRate(b *testing.B) {
	const n = 100_000
	server := netip.AddrPortFrom(allowed4, tcpPort)
	cidrServer := netip.AddrPortFrom(cidr4, tcpPort)
	cases := []struct {
		name   string
		policy *Policy // nil: no table
		dst    netip.AddrPort
	}{
		{"none", nil, server},
		{"empty", &Policy{Allow: hosts(allowed4)}, server},
		{"allow-100k-hosts", &Policy{Allow: append(manyHosts(n), host(allowed4))}, server},
		{"allow-100k-cidrs", &Policy{Allow: append(manyCIDRs(n), allowNet4)}, cidrServer},
	}
	netnstest.Require(b)
	requirePrivileged(b)
	// Every topology is built once, up front: the sub-benchmark functions run
	// several times while b.N ramps up, and only the connect loop is measured.
	ctrs := make([]*netnstest.NS, len(cases))
	for i, c := range cases {
		ctr, wan := netnstest.New(b, "ctr"), netnstest.New(b, "wan")
		netnstest.Link(b, ctr, wan, []netip.Prefix{linkCtr4}, []netip.Prefix{linkWan4})
		ctr.Route(b, netip.MustParsePrefix("0.0.0.0/0"), linkWan4.Addr())
		wan.AddAddr(b, "lo", host(c.dst.Addr()))
		id := wan.ServeTCP(b, c.dst)
		if c.policy != nil {
			r, err := Build(*c.policy)
			if err != nil {
				b.Fatalf("%s: Build: %v", c.name, err)
			}
			if err := Apply(context.Background(), Target{NetNSPath: ctr.Path}, r); err != nil {
				b.Fatalf("%s: Apply: %v", c.name, err)
			}
		}
		if d := netnstest.Diff(netnstest.Open(id), ctr.ProbeTCP(c.dst)); d != "" {
			b.Fatalf("%s: server not reachable: %s", c.name, d)
		}
		ctrs[i] = ctr
	}
	for i, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var elapsed time.Duration
			err := ctrs[i].Do(func() error {
				b.ResetTimer()
				start := time.Now()
				for j := 0; j < b.N; j++ {
					if err := connectOnce(c.dst); err != nil {
						return fmt.Errorf("connect %d: %w", j, err)
					}
				}
				elapsed = time.Since(start)
				b.StopTimer()
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "connects/s")
		})
	}
	// The sub-benchmarks above run one after another, so load from anything
	// else on the machine skews their ratio. Here the variants take turns in
	// short blocks and the median per-round ratio to "empty" is reported.
	b.Run("interleaved", func(b *testing.B) {
		const block = 200
		ratios := make([][]float64, len(cases))
		for done := 0; done < b.N; done += block {
			times := make([]time.Duration, len(cases))
			for i, c := range cases {
				err := ctrs[i].Do(func() error {
					start := time.Now()
					for j := 0; j < block; j++ {
						if err := connectOnce(c.dst); err != nil {
							return fmt.Errorf("%s: connect %d: %w", c.name, j, err)
						}
					}
					times[i] = time.Since(start)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			for i := range cases {
				ratios[i] = append(ratios[i], float64(times[i])/float64(times[1]))
			}
		}
		for i, c := range cases {
			if i != 1 {
				b.ReportMetric(median(ratios[i]), "time-"+c.name+"/empty")
			}
		}
	})
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// connectOnce makes one TCP connect and closes with a reset, so no
// TIME_WAIT state accumulates on either side.
func connectOnce(dst netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
		return err
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
	if !errors.Is(err, unix.EINTR) {
		return err
	}
	// Interrupted (the Go runtime preempts with signals): the handshake goes
	// on in the kernel; wait for it and collect its result.
	for {
		k, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 2000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return errors.New("connect timed out")
		}
		break
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

// manyHosts returns n distinct public /32s in 11.0.0.0/8.
func manyHosts(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		v := uint32(11)<<24 | uint32(i+1)
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
	}
	return out
}

// manyCIDRs returns n non-adjacent public /28s in 12.0.0.0/8 (adjacent ones
// would be merged into fewer ranges).
func manyCIDRs(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		v := uint32(12)<<24 | uint32(i)*32
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 28)
	}
	return out
}
