# smc: self-modifying and freshly written code (Intel SDM vol. 3, 11.6
# "Self-Modifying Code" and 8.1.3 "Handling Self- and Cross-Modifying
# Code": on P6 and later processors a write to code that is about to run,
# even the next instruction, takes effect without any serialization).
# Expected transcript: tests/vmcore/pm_programs_test.cpp (kSmcTranscript).
#
#  1. A store into the imm32 of the instruction right after the store;
#     then a 2-byte store turning two NOPs ahead into two INCs.
#  2. A function in another page, called three times: patched after the
#     first call (its immediate) and after the second (other instructions
#     of another length).
#  3. Code copied to a fresh page with REP MOVSB and called; another body
#     copied over it and called; one byte of it changed and called again.
#  4. REP STOSB writing the bytes that follow it: execution falls through
#     into what it wrote.
#  5. With paging: one physical page mapped at two linear addresses; code
#     written through one alias runs at the other, then is changed through
#     the first alias and runs again (the change must be seen at the other
#     linear address: caches of decoded code go by physical page).
	.include "pmlib.inc"

	.set	FRESH, 0x30000		# the fresh page of part 3
	.set	PD, 0x40000
	.set	PT0, 0x41000
	.set	PT1, 0x42000
	.set	ALIAS_W, 0x400000	# part 5: written through here
	.set	ALIAS_X, 0x401000	# ... and run here; both -> 0x31000

main:
	PUTS	"smc\n"
	# 1. The very next instruction.
	movl	$0x11111111, patch1 + 1
patch1:	movl	$0xdeadbeef, %eax
	PUTS	"patched imm32 of the next instruction: "
	call	puthex32
	PUTS	"\n"
	xorl	%eax, %eax
	movw	$0x4040, patch2		# inc %eax; inc %eax
patch2:	nop
	nop
	PUTS	"the next two nops patched to incs: "
	call	puthex32
	PUTS	"\n"

	# 2. A function in another page, patched between calls.
	PUTS	"function in another page:"
	xorl	%ebx, %ebx
1:	call	func
	PUTS	" "
	call	puthex32
	cmpl	$0, %ebx
	jne	2f
	movl	$2, func + 1		# movl $2, %eax
	jmp	3f
2:	movl	$0x4040c031, func	# xorl %eax,%eax; inc; inc
	movw	$0xc340, func + 4	# inc; ret
3:	incl	%ebx
	cmpl	$3, %ebx
	jb	1b
	PUTS	"\n"

	# 3. Copied code.
	PUTS	"copied code:"
	movl	$blob1, %esi
	movl	$FRESH, %edi
	movl	$blob1_end - blob1, %ecx
	rep movsb
	movl	$FRESH, %edx
	call	*%edx
	PUTS	" "
	call	puthex32
	movl	$blob2, %esi
	movl	$FRESH, %edi
	movl	$blob2_end - blob2, %ecx
	rep movsb
	call	*%edx
	PUTS	" "
	call	puthex32
	movb	$0x10, FRESH + 1	# blob2's imm32 low byte
	call	*%edx
	PUTS	" "
	call	puthex32
	PUTS	"\n"

	# 4. REP STOSB over the bytes that follow it (16 NOPs -> 16 INCs).
	xorl	%edx, %edx
	movl	$0x40, %eax		# inc %eax
	movl	$stos_target, %edi
	movl	$16, %ecx
	rep stosb
stos_target:
	.fill	16, 1, 0x90
	PUTS	"rep stosb over the code after it: eax="
	call	puthex32
	PUTS	"\n"

	# 5. Two linear aliases of one physical page (paging).
	movl	$PD, %edi
	xorl	%eax, %eax
	movl	$3 * 1024, %ecx
	rep stosl
	movl	$PT0 | 3, PD
	movl	$PT1 | 3, PD + 4
	movl	$PT0, %edi
	movl	$3, %eax
	movl	$1024, %ecx
1:	stosl
	addl	$0x1000, %eax
	loop	1b
	movl	$0x31003, PT1
	movl	$0x31003, PT1 + 4
	movl	$PD, %eax
	movl	%eax, %cr3
	movl	%cr0, %eax
	orl	$0x80000000, %eax
	movl	$pg_site, expect_eip	# reported as "site" if this faults
pg_site:
	movl	%eax, %cr0
	jmp	1f
1:	movl	$0, expect_eip
	PUTS	"aliases:"
	movl	$blob1, %esi
	movl	$ALIAS_W, %edi
	movl	$blob1_end - blob1, %ecx
	rep movsb
	movl	$ALIAS_X, %edx
	call	*%edx
	PUTS	" "
	call	puthex32
	movb	$0x77, ALIAS_W + 1	# through the other alias
	call	*%edx
	PUTS	" "
	call	puthex32
	movl	$blob2, %esi
	movl	$ALIAS_W, %edi
	movl	$blob2_end - blob2, %ecx
	rep movsb
	call	*%edx
	PUTS	" "
	call	puthex32
	PUTS	"\n"
	jmp	done

blob1:	movl	$0x600d0001, %eax
	ret
blob1_end:
blob2:	movl	$0x600d0002, %eax
	incl	%eax
	ret
blob2_end:

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

	.p2align 12
func:	movl	$1, %eax		# b8 01 00 00 00
	ret				# c3
	.fill	10, 1, 0xcc
