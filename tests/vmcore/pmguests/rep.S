# rep: page faults in the middle of REP string instructions, which must be
# restartable with the registers of the faulting iteration (Intel SDM vol. 2,
# "REP/REPE/REPZ/REPNE/REPNZ": "... the registers are updated ... after each
# iteration ... an exception or interrupt ... the instruction can be resumed
# with the register state at the point of the fault"; vol. 3, 6.5 "faults":
# the saved EIP is that of the faulting instruction). DF = 1 runs downwards.
# Expected transcript: tests/vmcore/pm_programs_test.cpp (kRepTranscript).
#
# Paging (physical = linear below 4 MiB), PT1 maps linear 0x400000 + n *
# 0x1000 to frame 0x50000 + n * 0x1000; pages n = 1, 3 and 5 start not
# present, and the #PF handler maps them and returns:
#  a. REP MOVSB, DF = 0, 0x100 bytes to 0x400f80: a write fault at
#     0x401000 after 0x80 bytes.
#  b. REP STOSL, DF = 1, 8 dwords from 0x404008 down: a write fault at
#     0x403ffc after 3 dwords.
#  c. REP MOVSB, DF = 1, 8 bytes from 0x406003 down: a read fault at
#     0x405fff after 4 bytes.
	.include "pmlib.inc"

	.set	PD, 0x40000
	.set	PT0, 0x41000
	.set	PT1, 0x42000
	.set	SRC, 0x20000

main:
	PUTS	"rep\n"
	movl	$14, %eax
	movl	$rep_pf, %ebx
	movl	$INTGATE, %ecx
	call	set_gate
	# Frames 0x50000-0x56fff: zero, then the bytes of part c.
	movl	$0x50000, %edi
	xorl	%eax, %eax
	movl	$7 * 1024, %ecx
	rep stosl
	movl	$0xa3a2a1a0, 0x56000
	movl	$0xb3b2b1b0, 0x55ffc
	# The source of part a: bytes 0, 1, ..., 0xff.
	movl	$SRC, %edi
	xorl	%eax, %eax
1:	stosb
	incb	%al
	jnz	1b
	# Page tables.
	movl	$PD, %edi
	xorl	%eax, %eax
	movl	$2 * 1024, %ecx
	rep stosl
	movl	$PT0 | 3, PD
	movl	$PT1 | 3, PD + 4
	movl	$PT0, %edi
	movl	$3, %eax
	movl	$1024, %ecx
1:	stosl
	addl	$0x1000, %eax
	loop	1b
	movl	$0x50003, PT1 + 0 * 4
	movl	$0x54003, PT1 + 4 * 4
	movl	$0x56003, PT1 + 6 * 4
	movl	$PD, %eax
	movl	%eax, %cr3
	movl	%cr0, %eax
	orl	$0x80000000, %eax
	movl	$pg_site, expect_eip	# reported as "site" if this faults
pg_site:
	movl	%eax, %cr0
	jmp	1f
1:	movl	$0, expect_eip

	PUTS	"a. rep movsb, df=0, 0x100 bytes from 0x20000 to 0x400f80\n"
	cld
	movl	$SRC, %esi
	movl	$0x400f80, %edi
	movl	$0x100, %ecx
	movl	$2f, expect_eip
2:	rep movsb
	call	regs
	xorl	%eax, %eax		# the bytes as the frames hold them
	xorl	%ebx, %ebx
	movl	$0x50f80, %esi
1:	movb	(%esi), %bl
	addl	%ebx, %eax
	incl	%esi
	cmpl	$0x51080, %esi
	jb	1b
	PUTS	"   byte sum "
	call	puthex32
	PUTS	" (0x7f80 expected)\n"

	PUTS	"b. rep stosl, df=1, 8 dwords from 0x404008 down\n"
	std
	xorl	%esi, %esi
	movl	$0xdeadbeef, %eax
	movl	$0x404008, %edi
	movl	$8, %ecx
	movl	$2f, expect_eip
2:	rep stosl
	cld
	call	regs
	xorl	%eax, %eax		# dwords written in frames 0x53fe4-0x5400c
	movl	$0x53fe4, %esi
1:	cmpl	$0xdeadbeef, (%esi)
	jne	3f
	incl	%eax
3:	addl	$4, %esi
	cmpl	$0x5400c, %esi
	jbe	1b
	PUTS	"   dwords written "
	call	puthex32
	PUTS	": below "
	HEX32	0x53fe8
	PUTS	" "
	HEX32	0x53fec
	PUTS	" ... "
	HEX32	0x54008
	PUTS	" above "
	HEX32	0x5400c
	PUTS	"\n"

	PUTS	"c. rep movsb, df=1, 8 bytes from 0x406003 down to 0x201ff\n"
	std
	movl	$0x406003, %esi
	movl	$0x201ff, %edi
	movl	$8, %ecx
	movl	$2f, expect_eip
2:	rep movsb
	cld
	call	regs
	PUTS	"   copied "
	HEX32	0x201f8
	PUTS	" "
	HEX32	0x201fc
	PUTS	"\n"
	jmp	done

# regs: "   after: ecx=... esi=... edi=..." (EFLAGS.DF as well).
regs:
	PUTS	"   after: ecx="
	HEX32	%ecx
	PUTS	" esi="
	HEX32	%esi
	PUTS	" edi="
	HEX32	%edi
	PUTS	"\n"
	ret

# rep_pf: prints the fault and the string registers at the fault, maps the
# page (frame 0x50000 + (CR2 - 0x400000) rounded down), returns to restart.
# Frame: 0 EDI, 4 ESI, 8 EBP, 12 ESP, 16 EBX, 20 EDX, 24 ECX, 28 EAX,
# 32 error code, 36 EIP, 40 CS, 44 EFLAGS.
rep_pf:
	pushal
	movl	%esp, %ebp
	PUTS	"   #PF err="
	HEX32	32(%ebp)
	PUTS	" cr2="
	movl	%cr2, %eax
	call	puthex32
	PUTS	" eip="
	movl	36(%ebp), %eax
	cmpl	expect_eip, %eax
	jne	1f
	PUTS	"site"
	jmp	2f
1:	call	puthex32
2:	PUTS	" ecx="
	HEX32	24(%ebp)
	PUTS	" esi="
	HEX32	4(%ebp)
	PUTS	" edi="
	HEX32	0(%ebp)
	PUTS	"\n"
	movl	%cr2, %eax
	cmpl	$0x400000, %eax
	jb	3f
	cmpl	$0x407000, %eax
	jae	3f
	andl	$~0xfff, %eax
	subl	$0x400000, %eax
	movl	%eax, %ebx
	shrl	$10, %ebx		# PTE offset in PT1
	addl	$0x50003, %eax
	movl	%eax, PT1(%ebx)
	popal
	addl	$4, %esp
	iretl
3:	PUTS	"   unexpected #PF: halting\n"
	cli
	hlt

	.p2align 3
gdt:
	.quad	0
	.quad	DESC_KCODE
	.quad	DESC_KDATA
	.quad	DESC_UCODE
	.quad	DESC_UDATA
gdt_end:
	.word	0
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
