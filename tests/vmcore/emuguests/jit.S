# Programs for tests/vmcore/emu_jit_test.cpp: control flow that the JIT's
# block transitions (return-address stack, links) must get right. Linked at
# 0x100000 and run in flat 32-bit protected mode (emu_harness.h), with or
# without paging as each test says; each t_* snippet ends in HLT and leaves
# its results in registers. The tests run them interpreted and compiled and
# compare.
	.code32
	.text
	.globl	_start
_start:
	hlt

# Exception handlers (the harness's IDT points vector n at exc_<n>): #DB
# counts in EBP and returns, anything else halts with the vector in EBP.
	.macro	EXC n
	.globl	exc_\n
exc_\n:
	movl	$(0x100 + \n), %ebp
	hlt
	.endm
	.irp	n, 0,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC	\n
	.endr
	.globl	exc_1
exc_1:
	incl	%ebp
	iret

# A loop that runs compiled, then again under single-step (TF): each of
# its instructions must trap alone, as interpreted (EBP = the #DB count).
	.globl	t_single_step
t_single_step:
	xorl	%eax, %eax
	xorl	%ebp, %ebp
	xorl	%esi, %esi
	movl	$20, %ecx
2:	incl	%eax
	decl	%ecx
	jnz	2b
	testl	%esi, %esi
	jnz	3f
	incl	%esi
	movl	$3, %ecx
	pushfl
	orl	$0x100, (%esp)
	popfl
	jmp	2b
3:	pushfl
	andl	$~0x100, (%esp)
	popfl
	hlt

# A POPF that sets TF in the middle of a block: the instruction after it
# runs, then #DB, and so on for each instruction until the POPF that clears
# TF (SDM Vol. 3 §18.3.1.4), which traps too: EBP = 3 + 3, EAX = 3.
	.globl	t_popf_tf
t_popf_tf:
	xorl	%ebp, %ebp
	xorl	%eax, %eax
	pushfl
	orl	$0x100, (%esp)
	popfl
	incl	%eax
	incl	%eax
	incl	%eax
	pushfl
	andl	$~0x100, (%esp)
	popfl
	hlt

# EAX = 50 * (1 + 2 + ... + 40), EBX = 50 * 40: recursion deeper than the
# return-address stack (16 entries), so it wraps and its oldest entries miss.
	.globl	t_ras_calls
t_ras_calls:
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	movl	$50, %edi
1:	movl	$40, %ecx
	call	rec
	decl	%edi
	jnz	1b
	hlt
rec:
	testl	%ecx, %ecx
	jz	2f
	addl	%ecx, %eax
	decl	%ecx
	call	rec
	incl	%ecx
	incl	%ebx
2:	ret

# A callee that returns one byte past its return address: the INC EAX
# after the CALL never runs (EAX = 0, ECX = 20).
	.globl	t_ras_fake_return
t_ras_fake_return:
	xorl	%eax, %eax
	xorl	%ecx, %ecx
	movl	$20, %edi
1:	call	skip1
	incl	%eax
	incl	%ecx
	decl	%edi
	jnz	1b
	hlt
skip1:
	incl	(%esp)
	ret

# The callee (another page) rewrites the instruction at its return address
# on the 6th call: INC EAX becomes INC ECX (EAX = 5, ECX = 5).
	.balign	4096
	.globl	t_ras_smc, smc_target
t_ras_smc:
	xorl	%eax, %eax
	xorl	%ecx, %ecx
	movl	$10, %edi
1:	call	smc_patch
smc_target:
	incl	%eax
	decl	%edi
	jnz	1b
	hlt
	.balign	4096
smc_patch:
	cmpl	$5, %edi
	jne	3f
	movb	$0x41, smc_target
3:	ret

# With paging (ESI = the address of the PTE of this page, EDX = a PTE that
# maps it to a copy whose remap_target holds INC ECX): on the 6th call the
# callee (another page) remaps this page and reads from it (the TLB now
# holds the new mapping) before it returns (EAX = 5, ECX = 5).
	.balign	4096
	.globl	t_ras_remap, remap_target
t_ras_remap:
	xorl	%eax, %eax
	xorl	%ecx, %ecx
	movl	$10, %edi
1:	call	remap
remap_target:
	incl	%eax
	decl	%edi
	jnz	1b
	hlt
	.balign	4096
remap:
	cmpl	$5, %edi
	jne	3f
	movl	%edx, (%esi)
	invlpg	t_ras_remap
	movb	remap_target, %bl
3:	ret
	.balign	4096
	.globl	remap_copy
remap_copy:
	.space	4096

# A static jump into the next page, linked through a guard (Jit::link_exit);
# on the 6th round a routine in a third page rewrites the target's first
# instruction (INC EAX -> INC ECX) before the jump runs again (EAX = 5,
# ECX = 5).
	.balign	4096
	.globl	t_xlink_smc
t_xlink_smc:
	xorl	%eax, %eax
	xorl	%ecx, %ecx
	movl	$10, %edi
1:	cmpl	$5, %edi
	jne	2f
	call	xlink_patch
2:	jmp	xlink_target
xlink_back:
	decl	%edi
	jnz	1b
	hlt
	.balign	4096
xlink_target:
	incl	%eax
	jmp	xlink_back
	.balign	4096
xlink_patch:
	movb	$0x41, xlink_target
	ret

# With paging (ESI = the address of the PTE of xremap_page, EDX = a PTE that
# maps it to xremap_copy, whose first instruction is INC ECX): as above, but
# the routine remaps the target page and reads from it (the TLB holds the
# new mapping) instead (EAX = 5, ECX = 5).
	.balign	4096
	.globl	t_xlink_remap
t_xlink_remap:
	xorl	%eax, %eax
	xorl	%ecx, %ecx
	movl	$10, %edi
1:	cmpl	$5, %edi
	jne	2f
	call	xremap
2:	jmp	xremap_page
xremap_back:
	decl	%edi
	jnz	1b
	hlt
	.balign	4096
	.globl	xremap_page
xremap_page:
	incl	%eax
	jmp	xremap_back
	.balign	4096
xremap:
	movl	%edx, (%esi)
	invlpg	xremap_page
	movb	xremap_page, %bl
	ret
	.balign	4096
	.globl	xremap_copy
xremap_copy:
	.space	4096

# A block compiled while DS is flat runs again after DS was loaded with a
# 4 KiB segment (the harness's selector 0x38): its accesses must check the
# limit again. The last call reads past the limit, from a page the TLB
# holds: #GP (EBP = 0x10d).
	.balign	4096
	.globl	t_flat_then_not
t_flat_then_not:
	xorl	%eax, %eax
	movl	$0x2000, %esi
	call	flat_read
	call	flat_read
	movw	$0x38, %cx
	movw	%cx, %ds
	movl	$0x800, %esi
	call	flat_read
	movl	$0x2000, %esi
	call	flat_read
	hlt

# DS loaded with the 4 KiB segment and read past its limit in the same
# block, from a page the TLB holds (the first read): the load ends the
# block (Cpu::load_segment), so the read is checked: #GP (EBP = 0x10d),
# EBX = 0.
	.globl	t_flat_load_in_block
t_flat_load_in_block:
	xorl	%ebx, %ebx
	movl	$0x2000, %esi
	movl	(%esi), %edx
	movw	$0x38, %cx
	movw	%cx, %ds
	movl	(%esi), %edx
	incl	%ebx
	hlt
flat_read:
	movl	(%esi), %edx
	addl	%edx, %eax
	incl	%ebx
	ret
