// SPDX-License-Identifier: Apache-2.0

#include "textflag.h"

// nsfdEntry is the process entry point when the binary is linked with
// -ldflags=-E=main.nsfdEntry (the Makefile does). It runs before the Go
// runtime, while the process has one thread: only then can it join a user
// namespace. For any argv other than [exe, "__nsfd"] it jumps to the normal
// Go entry at once.
//
// As "__nsfd" it serves control.SocketHelper: join the user namespace open on
// fd 3 and the network namespace open on fd 4, create two netlink netfilter
// sockets there, write their descriptor numbers (two int32) to fd 1, wait for
// EOF on fd 0 (the caller has taken them with pidfd_getfd) and exit 0. Exit
// codes 10, 11 and 12: joining the user namespace, joining the network
// namespace, or creating a socket failed. Nothing else is done: no Go code
// runs in this mode.
TEXT ·nsfdEntry(SB),NOSPLIT|NOFRAME,$0
	MOVQ	0(SP), AX            // argc
	CMPQ	AX, $2
	JNE	gort
	MOVQ	16(SP), BX           // argv[1]
	CMPL	0(BX), $0x736e5f5f   // "__ns"
	JNE	gort
	CMPW	4(BX), $0x6466       // "fd"
	JNE	gort
	CMPB	6(BX), $0
	JNE	gort

	MOVQ	$3, DI               // setns(3, CLONE_NEWUSER)
	MOVQ	$0x10000000, SI
	MOVQ	$308, AX
	SYSCALL
	MOVQ	$10, DI
	CMPQ	AX, $0
	JNE	exit

	MOVQ	$4, DI               // setns(4, CLONE_NEWNET)
	MOVQ	$0x40000000, SI
	MOVQ	$308, AX
	SYSCALL
	MOVQ	$11, DI
	CMPQ	AX, $0
	JNE	exit

	SUBQ	$16, SP
	MOVQ	$0, R12              // two sockets, their numbers at 0(SP) and 4(SP)
sock:
	MOVQ	$16, DI              // socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_NETFILTER)
	MOVQ	$0x80003, SI
	MOVQ	$12, DX
	MOVQ	$41, AX
	SYSCALL
	CMPQ	AX, $0
	JLT	sockfail
	MOVL	AX, (SP)(R12*4)
	INCQ	R12
	CMPQ	R12, $2
	JLT	sock

	MOVQ	$1, DI               // write(1, SP, 8)
	MOVQ	SP, SI
	MOVQ	$8, DX
	MOVQ	$1, AX
	SYSCALL

	MOVQ	$0, DI               // read(0, SP, 1): returns at EOF
	MOVQ	SP, SI
	MOVQ	$1, DX
	MOVQ	$0, AX
	SYSCALL
	MOVQ	$0, DI
	JMP	exit
sockfail:
	MOVQ	$12, DI
exit:
	MOVQ	$231, AX             // exit_group(DI)
	SYSCALL
gort:
	JMP	_rt0_amd64_linux(SB)
