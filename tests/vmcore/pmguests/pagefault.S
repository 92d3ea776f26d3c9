# pagefault: 32-bit (2-level, non-PAE) paging with 4 KiB pages and one
# 4 MiB page (CR4.PSE): #PF error codes and CR2, CR0.WP, user/supervisor,
# accessed/dirty bits, INVLPG and CR3 reloads (Intel SDM vol. 3, chapter 4,
# and 6.15 "Interrupt 14"). Expected transcript and the SDM sections behind
# each line: tests/vmcore/pm_programs_test.cpp (kPageFaultTranscript).
#
# Page tables (physical = linear below 4 MiB):
#   PD  0x40000: PDE 0 -> PT0 (U|W|P), PDE 1 -> PT1 (U|W|P),
#                PDE 2 = 4 MiB page at physical 0 (PS|W|P, supervisor)
#   PT0 0x41000: identity map of 0-4 MiB, U|W|P
#   PT1 0x42000: linear 0x400000 + n * 0x1000:
#     n = 0  not present             n = 1  -> 0x51000 supervisor read-only
#     n = 2  -> 0x52000 supervisor   n = 3  -> 0x53000 user read-only
#     n = 4  -> 0x54000 supervisor (A/D test, PTE starts with A = D = 0)
#     n = 5  -> 0x55000, then 0x56000 (INVLPG / CR3 reload test)
#     n = 6  not present (instruction fetch)
# Frame 0x5n000 holds the dword 0x5n5n5n5n (0x56000: 0x66666666).
	.include "pmlib.inc"

	.set	PD, 0x40000
	.set	PT0, 0x41000
	.set	PT1, 0x42000
	.set	KSTACK0_TOP, 0x2f000
	.set	USTACK_TOP, 0x27000
	.set	TESTBASE, 0x400000
	.set	PSEBASE, 0x800000

main:
	PUTS	"pagefault\n"
	movl	$KSTACK0_TOP, %eax
	call	tss_init
	movl	$0x80, %eax
	movl	$sys_int80, %ebx
	movl	$INTGATE_U, %ecx
	call	set_gate

	# Page tables.
	movl	$PD, %edi
	xorl	%eax, %eax
	movl	$3 * 1024, %ecx
	rep stosl
	movl	$PT0 | 7, PD
	movl	$PT1 | 7, PD + 4
	movl	$0x00000083, PD + 8
	movl	$PT0, %edi
	movl	$7, %eax
	movl	$1024, %ecx
1:	stosl
	addl	$0x1000, %eax
	loop	1b
	movl	$0x00051001, PT1 + 1 * 4
	movl	$0x00052003, PT1 + 2 * 4
	movl	$0x00053005, PT1 + 3 * 4
	movl	$0x00054003, PT1 + 4 * 4
	movl	$0x00055003, PT1 + 5 * 4
	# Frame contents.
	movl	$0x51515151, 0x51000
	movl	$0x51515151, 0x51010
	movl	$0x52525252, 0x52000
	movl	$0x53535353, 0x53000
	movl	$0x54545454, 0x54000
	movl	$0x55555555, 0x55000
	movl	$0x66666666, 0x56000

	# CR4.PSE, CR3, then CR0.PG | CR0.WP.
	movl	%cr4, %eax
	orl	$0x10, %eax
	movl	%eax, %cr4
	movl	$PD, %eax
	movl	%eax, %cr3
	movl	%cr0, %eax
	orl	$0x80010000, %eax
	movl	$pg_site, expect_eip	# reported as "site" if this faults
pg_site:
	movl	%eax, %cr0
	jmp	1f
1:	movl	$0, expect_eip
	PUTS	"paging on: cr0="
	movl	%cr0, %eax
	call	puthex32
	PUTS	" cr3="
	movl	%cr3, %eax
	call	puthex32
	PUTS	" cr4="
	movl	%cr4, %eax
	call	puthex32
	PUTS	"\n"

	PUTS	"read, not present:\n"
	EXPECT_FAULT	2f, 3f
2:	movl	TESTBASE + 0x123, %eax
3:	PUTS	"write, not present:\n"
	EXPECT_FAULT	2f, 3f
2:	movl	%eax, TESTBASE + 0x456
3:	PUTS	"ring-0 write, read-only page, CR0.WP=1:\n"
	EXPECT_FAULT	2f, 3f
2:	movl	$0xc0de0003, TESTBASE + 0x1010
3:	movl	%cr0, %eax
	andl	$~0x10000, %eax
	movl	%eax, %cr0
	movl	$0xc0de0003, TESTBASE + 0x1010
	PUTS	"ring-0 write, read-only page, CR0.WP=0: no fault, reads "
	HEX32	TESTBASE+0x1010
	PUTS	"\n"
	movl	%cr0, %eax
	orl	$0x10000, %eax
	movl	%eax, %cr0

	# Accessed and dirty bits (SDM 4.8).
	PUTS	"pte before any access: "
	HEX32	PT1+4*4
	PUTS	"\n"
	movl	TESTBASE + 0x4000, %eax
	PUTS	"after a read of "
	call	puthex32
	PUTS	": pte "
	HEX32	PT1+4*4
	PUTS	"\n"
	movl	$0x44444444, TESTBASE + 0x4000
	PUTS	"after a write: pte "
	HEX32	PT1+4*4
	PUTS	" frame "
	HEX32	0x54000
	PUTS	"\n"

	# The 4 MiB page (SDM 4.3, table 4-4): linear 0x800000 + x -> x.
	PUTS	"4 MiB page: pde "
	HEX32	PD+8
	PUTS	", read "
	HEX32	PSEBASE+0x53000
	PUTS	", pde "
	HEX32	PD+8
	movl	$0x5a5a5a5a, PSEBASE + 0x52004
	PUTS	", after a write pde "
	HEX32	PD+8
	PUTS	", physical "
	HEX32	0x52004
	PUTS	"\n"
	PUTS	"pde of PT1: "
	HEX32	PD+4
	PUTS	"\n"

	# INVLPG and CR3 reloads (SDM 4.10.4.1).
	PUTS	"invlpg: reads "
	HEX32	TESTBASE+0x5000
	movl	$0x00056003, PT1 + 5 * 4
	invlpg	TESTBASE + 0x5000
	PUTS	", after pte -> 0x56000 and invlpg "
	HEX32	TESTBASE+0x5000
	movl	$0x00055003, PT1 + 5 * 4
	movl	%cr3, %eax
	movl	%eax, %cr3
	PUTS	", after pte -> 0x55000 and a cr3 reload "
	HEX32	TESTBASE+0x5000
	PUTS	"\n"

	# An instruction fetch from a not-present page: I/D (bit 4) stays 0
	# without PAE/NX and SMEP (SDM 4.7).
	PUTS	"jump to a not-present page:\n"
	EXPECT_FAULT	TESTBASE+0x6000, 3f
	movl	$TESTBASE + 0x6000, %eax
	jmp	*%eax
3:
	# User mode.
	movl	$user_main, %eax
	movl	$USTACK_TOP, %ebx
	jmp	to_ring3

user_main:
	movw	$UDATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	EXPECT_FAULT	2f, 3f
2:	movl	TESTBASE + 0x2000, %eax	# supervisor page
3:	SYSPRINT msg_user_ro, TESTBASE + 0x3000
	EXPECT_FAULT	2f, 3f
2:	movl	%eax, TESTBASE + 0x3008	# user read-only page
3:	EXPECT_FAULT 2f, 3f
2:	movl	PSEBASE + 0x10000, %eax	# the supervisor 4 MiB page
3:	EXPECT_FAULT 2f, 3f
2:	movl	%eax, TESTBASE + 0x0ffc	# not present
3:	movl	$0, %eax
	int	$0x80
	jmp	.

msg_user_ro:
	.asciz	"ring-3 read of a read-only user page: "

	.p2align 3
gdt:
	.quad	0
	.quad	DESC_KCODE
	.quad	DESC_KDATA
	.quad	DESC_UCODE
	.quad	DESC_UDATA
	.quad	0			# TSS
gdt_end:
	.word	0
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
	.p2align 4
