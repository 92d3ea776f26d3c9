# privilege: ring 0 <-> ring 3 transitions through the TSS (Intel SDM vol. 3,
# chapters 5, 6 and 7). Expected transcript and the SDM sections behind each
# line: tests/vmcore/pm_programs_test.cpp (kPrivilegeTranscript).
#
#  1. GDT with ring-0/ring-3 flat code and data, a 32-bit TSS (SS0:ESP0 =
#     0x10:0x2f000) whose I/O permission bitmap allows only port 0x2f9 (COM2
#     IER), and a call gate (DPL 3, 2 parameter dwords) to ring 0. The 8259A
#     is set up with IRQ 3 (COM2) -> vector 0x23, COM2's MCR.OUT2 is set.
#  2. IRET to ring 3 (CS 0x1b, SS:ESP 0x23:0x27000, EFLAGS 0x202) with the
#     ring-0 selector 0x10 still in DS/ES/FS/GS: IRET must null them.
#  3. `int $0x80` through a DPL-3 interrupt gate; the ring-0 handler prints
#     what the CPU pushed (user SS:ESP, EFLAGS, CS) and its own CS/SS/ESP.
#  4. From ring 3: CLI, HLT, OUT to 0x3f8 (denied by the bitmap) -> #GP(0);
#     loading the DPL-0 data selector into DS -> #GP(0x10).
#  5. OUT of 0x02 to COM2's IER (allowed by the bitmap) makes the 16550
#     raise its THRE interrupt on IRQ 3; the external interrupt arrives in
#     ring 3 and switches to the ring-0 stack.
#  6. A far call through the call gate (2 parameters copied) and LRET $8.
#  7. `int $0x81` through a DPL-0 gate -> #GP(0x81 * 8 + 2 = 0x40a).
#  8. `int $0x80` function 0: back to ring 0 for good; "done".
	.include "pmlib.inc"

	.set	KSTACK0_TOP, 0x2f000	# TSS.ESP0: ring-0 stack for transitions
	.set	USTACK_TOP, 0x27000	# ring-3 stack
	.set	CALLGATE_SEL, 0x33	# GDT index 6, RPL 3

main:
	PUTS	"privilege\n"
	# The TSS: SS0:ESP0 and the I/O bitmap offset (SDM 7.2.1, 19.5.2).
	movl	$KSTACK0_TOP, ptss + 4
	movw	$KDATA, ptss + 8
	movw	$(iomap - ptss), ptss + 0x66
	movl	$gdt + TSS_SEL, %edi
	movl	$ptss, %eax
	movl	$(iomap_end - ptss - 1), %ecx
	call	make_tss_desc
	movw	$TSS_SEL, %ax
	ltr	%ax
	# The call gate: DPL 3, 2 parameters, to KCODE:gate_entry.
	movl	$gdt + (CALLGATE_SEL & ~3), %edi
	movl	$gate_entry, %ebx
	movw	$KCODE, %dx
	movw	$0x0302, %cx
	call	make_call_gate
	# IDT: 0x80 (DPL 3) and 0x81 (DPL 0) interrupt gates, IRQ 3 = 0x23.
	movl	$0x80, %eax
	movl	$int80, %ebx
	movl	$INTGATE_U, %ecx
	call	set_gate
	movl	$0x81, %eax
	movl	$int81, %ebx
	movl	$INTGATE, %ecx
	call	set_gate
	movl	$0x23, %eax
	movl	$irq3, %ebx
	call	set_gate
	# 8259A master: ICW1-4 (edge, cascade, vectors 0x20-0x27, 8086 mode),
	# then OCW1 with only IRQ 3 unmasked.
	movb	$0x11, %al
	outb	%al, $0x20
	movb	$0x20, %al
	outb	%al, $0x21
	movb	$0x04, %al
	outb	%al, $0x21
	movb	$0x01, %al
	outb	%al, $0x21
	movb	$0xf7, %al
	outb	%al, $0x21
	# COM2: no interrupts yet, OUT2 on (it gates the IRQ output on a PC).
	movb	$0x00, %al
	movw	$0x2f9, %dx
	outb	%al, %dx
	movb	$0x08, %al
	movw	$0x2fc, %dx
	outb	%al, %dx

	PUTS	"ring 0: cs="
	movl	%cs, %eax
	call	puthex16
	PUTS	" tr="
	str	%eax
	call	puthex16
	PUTS	"\n"
	# IRET to ring 3 (SDM 6.14 / IRET "RETURN-TO-OUTER-PRIVILEGE-LEVEL").
	pushl	$UDATA
	pushl	$USTACK_TOP
	pushl	$0x202
	pushl	$UCODE
	pushl	$user_main
	iretl

# ---------------------------------------------------------------- ring 3
user_main:
	xorl	%ecx, %ecx
	xorl	%edx, %edx
	xorl	%esi, %esi
	xorl	%edi, %edi
	movw	%ds, %cx
	movw	%es, %dx
	movw	%fs, %si
	movw	%gs, %di
	movl	$3, %eax		# print the selectors IRET left
	int	$0x80
	movw	$UDATA, %ax
	movw	%ax, %ds
	movw	%ax, %es

	movl	$1, %eax		# print the interrupt frame
	movl	$1f, %ebx
	cmpl	$1, %eax		# EFLAGS: ZF, PF (CMP defines all six)
	int	$0x80
1:	xorl	%ecx, %ecx
	movw	%cs, %cx
	movl	$msg_back, %esi
	movl	$2, %eax
	int	$0x80

	# Privileged instructions at CPL 3 (SDM 6.15 #GP; CLI: IOPL < CPL;
	# HLT: CPL > 0; OUT: IOPL < CPL and the bitmap bit for 0x3f8 is 1).
	EXPECT_FAULT 2f, 3f
2:	cli
3:	EXPECT_FAULT 4f, 5f
4:	hlt
5:	EXPECT_FAULT 6f, 7f
	movw	$0x3f8, %dx
6:	outb	%al, %dx
7:	EXPECT_FAULT 8f, 9f
	movw	$KDATA, %ax
8:	movw	%ax, %ds		# DPL 0 < CPL 3: #GP(0x10)
9:	movl	$0, irq3_count
	# COM2's IER is allowed by the bitmap: THRE interrupt on, wait for IRQ 3.
	movb	$0x02, %al
	movw	$0x2f9, %dx
	outb	%al, %dx
1:	cmpl	$0, irq3_count
	je	1b

	# Far call through the call gate with 2 parameters (SDM 5.8.5).
	movl	%esp, %ecx
	movl	$msg_esp_before, %esi
	movl	$2, %eax
	int	$0x80
	pushl	$0x11111111
	pushl	$0x22222222
	movl	$1f, %ebx
	lcall	$CALLGATE_SEL, $0
1:	movl	%esp, %ecx
	movl	$msg_esp_after, %esi
	movl	$2, %eax
	int	$0x80

	# INT n through a gate with DPL < CPL (SDM 6.12.1.1): #GP(n * 8 + 2).
	EXPECT_FAULT 2f, 3f
2:	int	$0x81
3:	movl	$0, %eax		# exit to ring 0
	int	$0x80
	jmp	.

msg_back:
	.asciz	"back in ring 3 after iret: cs="
msg_esp_before:
	.asciz	"ring 3 esp before the call gate: "
msg_esp_after:
	.asciz	"ring 3 esp after lret $8: "

# ---------------------------------------------------------------- ring 0
# int80: EAX = function (0 exit, 1 print the frame, 2 print the string at
# ESI and ECX, 3 print ECX/EDX/ESI/EDI as the DS/ES/FS/GS seen after IRET).
# Frame after the pushes: 0 ES, 4 DS, 8 PUSHAD (EBX at 24, ECX 32, EAX 36),
# 40 EIP, 44 CS, 48 EFLAGS, 52 ESP, 56 SS.
int80:
	pushal
	pushl	%ds
	pushl	%es
	movw	$KDATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movl	%esp, %ebp
	movl	36(%ebp), %eax
	testl	%eax, %eax
	jz	int80_exit
	cmpl	$1, %eax
	je	int80_frame
	cmpl	$2, %eax
	je	int80_print
	cmpl	$3, %eax
	je	int80_selectors
	PUTS	"int 0x80: bad function\n"
	jmp	int80_ret
int80_frame:
	PUTS	"int 0x80 in ring 0: cs="
	movl	%cs, %eax
	call	puthex16
	PUTS	" ss="
	movl	%ss, %eax
	call	puthex16
	PUTS	" esp="
	leal	40(%ebp), %eax		# ESP when the handler started
	call	puthex32
	PUTS	"\n  pushed: ss="
	HEX16	56(%ebp)
	PUTS	" esp="
	HEX32	52(%ebp)
	PUTS	" eflags="
	HEX32	48(%ebp)
	PUTS	" cs="
	HEX16	44(%ebp)
	PUTS	" eip="
	movl	40(%ebp), %eax
	cmpl	24(%ebp), %eax		# EBX = the expected return address
	jne	1f
	PUTS	"next\n"
	jmp	int80_ret
1:	call	puthex32
	PUTS	"\n"
	jmp	int80_ret
int80_print:
	movl	12(%ebp), %esi
	call	puts_esi
	HEX32	32(%ebp)
	PUTS	"\n"
	jmp	int80_ret
int80_selectors:
	PUTS	"ring 3 after iret: ds="
	HEX16	32(%ebp)
	PUTS	" es="
	HEX16	28(%ebp)
	PUTS	" fs="
	HEX16	12(%ebp)
	PUTS	" gs="
	HEX16	8(%ebp)
	PUTS	"\n"
int80_ret:
	popl	%es
	popl	%ds
	popal
	iretl
int80_exit:
	PUTS	"exit from ring 3: cpl="
	movl	%cs, %eax
	andl	$3, %eax
	call	puthex8
	PUTS	"\n"
	jmp	done

# int81 must never run: its gate's DPL is 0.
int81:
	PUTS	"int 0x81 handler ran\n"
	jmp	done

# irq3: IRQ 3 from the 8259A, taken in ring 3 (gate DPL is ignored for
# external interrupts, SDM 6.12.1.1). Prints the frame (not EIP: where the
# wait loop was is timing), reads COM2's IIR (THRE: 0x02, which clears
# it), turns COM2's interrupts off, EOI.
irq3:
	pushal
	pushl	%ds
	pushl	%es
	movw	$KDATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movl	%esp, %ebp
	PUTS	"irq 3 in ring 0: esp="
	leal	40(%ebp), %eax
	call	puthex32
	PUTS	" pushed ss="
	HEX16	56(%ebp)
	PUTS	" esp="
	HEX32	52(%ebp)
	PUTS	" eflags="
	HEX32	48(%ebp)
	PUTS	" cs="
	HEX16	44(%ebp)
	PUTS	"\n"
	PUTS	"  com2 iir="
	movw	$0x2fa, %dx
	inb	%dx, %al
	call	puthex8
	PUTS	"\n"
	movb	$0x00, %al
	movw	$0x2f9, %dx
	outb	%al, %dx
	movb	$0x20, %al		# non-specific EOI
	outb	%al, $0x20
	incl	irq3_count
	popl	%es
	popl	%ds
	popal
	iretl

# gate_entry: reached through the call gate from ring 3. Stack (SDM 5.8.5
# fig. 5-13): 0 EIP, 4 CS, 8 and 12 the two parameters, 16 ESP, 20 SS.
gate_entry:
	pushl	%ds
	pushl	%es
	pushl	%ebp
	pushl	%eax
	movw	$KDATA, %ax
	movw	%ax, %ds
	movl	%esp, %ebp		# +16: the CPU's frame
	PUTS	"call gate in ring 0: cs="
	movl	%cs, %eax
	call	puthex16
	PUTS	" ss="
	movl	%ss, %eax
	call	puthex16
	PUTS	" esp="
	leal	16(%ebp), %eax
	call	puthex32
	PUTS	"\n  pushed: ss="
	HEX16	36(%ebp)
	PUTS	" esp="
	HEX32	32(%ebp)
	PUTS	" params="
	HEX32	24(%ebp)
	PUTS	","
	HEX32	28(%ebp)
	PUTS	" cs="
	HEX16	20(%ebp)
	PUTS	" eip="
	movl	16(%ebp), %eax
	cmpl	%ebx, %eax
	jne	1f
	PUTS	"next\n"
	jmp	2f
1:	call	puthex32
	PUTS	"\n"
2:	popl	%eax
	popl	%ebp
	popl	%es
	popl	%ds
	lretl	$8

irq3_count:
	.long	0

	.p2align 3
gdt:
	.quad	0
	.quad	DESC_KCODE		# 0x08
	.quad	DESC_KDATA		# 0x10
	.quad	DESC_UCODE		# 0x18
	.quad	DESC_UDATA		# 0x20
	.quad	0			# 0x28 TSS (filled in)
	.quad	0			# 0x30 call gate (filled in)
gdt_end:
	.word	0
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt

# The TSS (SDM 7.2.1 fig. 7-2) and its I/O permission bitmap (SDM vol. 1,
# 19.5.2): ports 0-0x2ff are covered, only 0x2f9 is allowed; the byte after
# the map is 0xff, and ports beyond the limit are denied.
	.p2align 4
ptss:
	.fill	104, 1, 0
iomap:
	.fill	0x2f9 / 8, 1, 0xff
	.byte	0xfd			# ports 0x2f8-0x2ff: only 0x2f9 allowed
	.byte	0xff
iomap_end:
