# Instruction snippets for tests/vmcore/emu_insn_test.cpp. Linked at 0x10000
# and run in flat 32-bit protected mode (CPL 0, paging off) set up by the
# test harness (emu_harness.h), which also writes a GDT and an IDT whose 32
# exception vectors point at exc_<n> below. A test sets the registers, enters
# one t_* label, and the snippet ends in HLT (with IF = 0), after which the
# test checks registers and memory. An exception instead lands in exc_<n>,
# which records the vector and the handler's ESP (the CPU-pushed frame) in
# exc_vector / exc_esp and halts.
	.code32
	.text
	.globl	_start
_start:
	hlt

# --- exception catchers ------------------------------------------------------
	.macro	EXC n
	.globl	exc_\n
exc_\n:
	movl	$\n, %ss:exc_vector	# SS: the tests may leave DS unusable
	jmp	exc_common
	.endm
	.irp	n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC	\n
	.endr
exc_common:
	movl	%esp, %ss:exc_esp
	hlt

# --- string instructions ---------------------------------------------------------
	.globl	t_rep_movsb, t_rep_movsw, t_rep_movsd, t_std_rep_movsd, t_rep_stosb, t_rep_stosd
	.globl	t_std_rep_stosw, t_repe_cmpsb, t_repne_scasb, t_a16_rep_movsb, t_lodsd, t_rep_insb
	.globl	t_rep_insw, t_rep_outsb, t_movsb_es_override, t_rep_movsb_fs
t_rep_movsb:
	rep movsb
	hlt
t_rep_movsw:
	rep movsw
	hlt
t_rep_movsd:
	rep movsl
	hlt
t_std_rep_movsd:
	std
	rep movsl
	cld
	hlt
t_rep_stosb:
	rep stosb
	hlt
t_rep_stosd:
	rep stosl
	hlt
t_std_rep_stosw:
	std
	rep stosw
	cld
	hlt
t_repe_cmpsb:
	repe cmpsb
	hlt
t_repne_scasb:
	repne scasb
	hlt
t_a16_rep_movsb:
	addr16 rep movsb
	hlt
t_lodsd:
	lodsl
	hlt
t_rep_insb:
	movw	$0x500, %dx
	rep insb
	hlt
t_rep_insw:
	movw	$0x502, %dx
	rep insw
	hlt
t_rep_outsb:
	movw	$0x3f8, %dx
	rep outsb
	hlt
t_movsb_es_override:
	# A segment override changes the source (DS -> ES), never the destination.
	es movsb
	hlt
t_rep_movsb_fs:
	movw	%ax, %fs
	fs rep movsb
	hlt

# --- data movement, stack ------------------------------------------------------------
	.globl	t_xlat, t_enter, t_leave, t_pusha, t_popa, t_push_esp, t_pop_mem_esp, t_cmpxchg8b, t_cmpxchg
	.globl	t_xadd, t_bswap, t_movzx_movsx, t_setcc_cmov, t_lahf_sahf, t_cbw_cwde_cwd_cdq
t_xlat:
	xlat
	hlt
t_enter:
	enter	$16, $3
	hlt
t_leave:
	leave
	hlt
t_pusha:
	pushal
	hlt
t_popa:
	popal
	hlt
t_push_esp:
	pushl	%esp
	popl	%eax
	hlt
t_pop_mem_esp:
	# POP to an ESP-based address: the address uses the incremented ESP.
	popl	4(%esp)
	hlt
t_cmpxchg8b:
	lock cmpxchg8b (%esi)
	hlt
t_cmpxchg:
	lock cmpxchgl %ecx, (%esi)
	hlt
t_xadd:
	lock xaddl %ecx, (%esi)
	hlt
t_bswap:
	bswap	%eax
	hlt
t_movzx_movsx:
	movzbl	%al, %ebx
	movsbl	%al, %ecx
	movzwl	%ax, %edx
	movswl	%ax, %esi
	hlt
t_setcc_cmov:
	cmpl	%ebx, %eax
	setb	%cl
	setl	%ch
	cmovbl	%ebx, %edx
	cmovgl	%ebx, %esi
	hlt
t_lahf_sahf:
	lahf
	movb	%ah, %bl
	movb	$0xd5, %ah
	sahf
	hlt
t_cbw_cwde_cwd_cdq:
	movb	$0x80, %al
	cbw
	movw	%ax, %bx
	cwde
	movl	%eax, %ecx
	cwd
	movl	$0x80000000, %eax
	cdq
	hlt

# --- exceptions from instructions -------------------------------------------------------
	.globl	t_div0, t_divovf, t_bound, t_ud2, t_int3, t_into, t_bad_ds, t_null_ss, t_limit, t_expand_down
	.globl	t_int_n
t_div0:
	divl	%ecx
	hlt
t_divovf:
	idivl	%ecx
	hlt
t_bound:
	boundl	%eax, (%esi)
	hlt
t_ud2:
	ud2
	hlt
t_int3:
	int3
	hlt
t_into:
	into
	hlt
t_int_n:
	int	$0x1f
	hlt
t_bad_ds:
	movw	%ax, %ds
	hlt
t_null_ss:
	movw	%ax, %ss
	hlt
t_limit:
	# DS = a data segment with limit 0xfff: reading at ESI must fault past it.
	movw	$0x38, %ax
	movw	%ax, %ds
	movl	(%esi), %eax
	hlt
t_expand_down:
	# DS = an expand-down segment with limit 0xfff: offsets <= 0xfff fault.
	movw	$0x40, %ax
	movw	%ax, %ds
	movl	(%esi), %eax
	hlt

# --- system ---------------------------------------------------------------------------------
	.globl	t_cpuid0, t_cpuid1, t_rdtsc2, t_sysexit, t_sysexit_user, t_sysenter_back, t_rdmsr_bad
	.globl	t_popf_user, t_smc_block, t_loop, t_fpu, t_fpu_nm, t_lar_lsl, t_sysexit_popf
t_cpuid0:
	xorl	%eax, %eax
	cpuid
	hlt
t_cpuid1:
	movl	$1, %eax
	cpuid
	hlt
t_rdtsc2:
	rdtsc
	movl	%eax, %esi
	movl	%edx, %edi
	rdtsc
	hlt
t_rdmsr_bad:
	movl	$0xdeadbeef, %ecx
	rdmsr
	hlt
t_sysexit:
	movl	$t_sysexit_user, %ebx
	jmp	sysexit_to_ebx
t_sysexit_popf:
	movl	$t_popf_user, %ebx
sysexit_to_ebx:
	# SYSENTER_CS = 0x08 (so SS0 = 0x10, user CS = 0x1b, user SS = 0x23).
	movl	$0x174, %ecx
	movl	$0x08, %eax
	xorl	%edx, %edx
	wrmsr
	movl	$0x175, %ecx
	movl	$0xe000, %eax
	wrmsr
	movl	$0x176, %ecx
	movl	$t_sysenter_back, %eax
	wrmsr
	movl	%ebx, %edx
	movl	$0xd000, %ecx
	sysexit
t_sysexit_user:
	movl	%cs, %ebx
	movl	%ss, %esi
	movl	%esp, %edi
	pushfl
	popl	%ebp
	sysenter
t_sysenter_back:
	hlt
t_popf_user:
	# In ring 3 with IOPL 0, POPF changes neither IF nor IOPL (no fault).
	pushl	$0x3202
	popfl
	pushfl
	popl	%ebx
	sysenter
t_smc_block:
	# A store into an instruction later in the same block.
	movb	$0x22, 1f + 1
1:	movl	$0x11111111, %ebx
	hlt
t_loop:
	xorl	%eax, %eax
1:	addl	%ecx, %eax
	loop	1b
	hlt
t_fpu:
	fninit
	fld1
	fldpi
	faddp
	fstpl	(%esi)
	fnstsw	%ax
	hlt
t_fpu_nm:
	fld1
	hlt
t_lar_lsl:
	larl	%eax, %ebx
	lsll	%eax, %ecx
	hlt

# --- data (in .text: there is no paging, and the flat binary stays compact) -----------
	.globl	exc_vector, exc_esp
	.p2align 2
exc_vector:
	.long	0xffffffff
exc_esp:
	.long	0
