# realmode: a real-mode program for tests/vmcore/emu_engine_test.cpp, loaded at
# 0x7c00 and entered at 0000:7c00 with interrupts disabled. It prints a
# transcript to the UART data port 0x3f8 (one line per check) and halts with
# CLI; HLT. Each line is what a correct 8086-compatible real mode gives
# (Intel SDM vol. 3, chapter 20):
#   "int30 ax=1234"     INT 30h through the IVT; the handler sees AX and
#                       returns with IRET (FLAGS restored: IF stays 0).
#   "de ip ok"          DIV by zero: #DE pushes the IP of the DIV itself
#                       (a fault); the handler skips the 2-byte DIV.
#   "far 0800"          far CALL to 0800:0010 (a copy of a routine), LRET.
#   "o32 12345678"      a 32-bit operand (66h) and 32-bit address (67h)
#                       in real mode.
#   "pm back"           to protected mode (flat 32-bit) and back to real mode.
#   "done"
	.code16
	.text
	.globl	_start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x7000, %sp
	cld
	# IVT: vector 0 (#DE) and 0x30.
	movw	$de_handler, 0
	movw	$0, 2
	movw	$int30_handler, 0x30*4
	movw	$0, 0x30*4+2

	movw	$0x1234, %ax
	int	$0x30

	xorw	%dx, %dx
	movw	$7, %ax
	xorw	%cx, %cx
	divw	%cx			# #DE: the handler skips these 2 bytes
	movw	$msg_de, %si
	call	puts

	# Copy far_routine to 0800:0010 and call it there.
	movw	$0x0800, %ax
	movw	%ax, %es
	movw	$far_routine, %si
	movw	$0x10, %di
	movw	$far_routine_end - far_routine, %cx
	rep movsb
	xorw	%ax, %ax
	movw	%ax, %es
	lcall	$0x0800, $0x10

	movl	$0x12345678, %eax
	movl	$scratch, %ebx
	movl	%eax, (%ebx)		# 67h: 32-bit address in real mode
	movl	(%ebx), %ecx
	movw	$msg_o32, %si
	call	puts
	movl	%ecx, %eax
	call	puthex32
	movw	$msg_nl, %si
	call	puts

	# To protected mode and back.
	lgdtl	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $pm32
	.code32
pm32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movl	$0xabcd, %ebx
	ljmp	$0x18, $pm16		# 16-bit code segment with real-mode-like limits
	.code16
pm16:
	movw	$0x20, %ax		# 16-bit data segment, limit 0xffff
	movw	%ax, %ds
	movw	%ax, %ss
	movl	%cr0, %eax
	andl	$~1, %eax
	movl	%eax, %cr0
	ljmp	$0, $real_again
real_again:
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	cmpl	$0xabcd, %ebx
	jne	1f
	movw	$msg_pm, %si
	call	puts
1:	movw	$msg_done, %si
	call	puts
	cli
	hlt
2:	jmp	2b

int30_handler:
	pushw	%ax
	movw	$msg_int30, %si
	call	puts
	popw	%ax
	call	puthex16
	movw	$msg_nl, %si
	call	puts
	iret

de_handler:
	pushw	%bp
	movw	%sp, %bp
	addw	$2, 2(%bp)		# skip the DIV (F7 F1)
	popw	%bp
	iret

# far_routine runs at 0800:0010 (copied there): prints "far " and CS.
far_routine:
	movw	%cs, %ax
	pushw	%ds
	xorw	%bx, %bx
	movw	%bx, %ds
	movw	$msg_far, %si
	lcall	$0, $puts_far
	popw	%ds
	lcall	$0, $puthex16_far
	xorw	%bx, %bx
	pushw	%ds
	movw	%bx, %ds
	movw	$msg_nl, %si
	lcall	$0, $puts_far
	popw	%ds
	lret
far_routine_end:

puts_far:
	call	puts
	lret
puthex16_far:
	pushw	%ds
	pushw	%ax
	xorw	%ax, %ax
	movw	%ax, %ds
	popw	%ax
	call	puthex16
	popw	%ds
	lret

# puts: DS:SI, NUL-terminated, to the UART.
puts:
	pushw	%ax
	pushw	%dx
	movw	$0x3f8, %dx
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:	popw	%dx
	popw	%ax
	ret

# puthex16: AX as 4 hex digits; puthex32: EAX as 8.
puthex32:
	pushl	%eax
	shrl	$16, %eax
	call	puthex16
	popl	%eax
puthex16:
	pushw	%cx
	pushw	%dx
	pushw	%ax
	movw	$4, %cx
1:	rolw	$4, %ax
	pushw	%ax
	andw	$0xf, %ax
	movw	$hexdigits, %bx
	xlat
	movw	$0x3f8, %dx
	outb	%al, %dx
	popw	%ax
	loop	1b
	popw	%ax
	popw	%dx
	popw	%cx
	ret

hexdigits:	.ascii	"0123456789abcdef"
msg_int30:	.asciz	"int30 ax="
msg_de:		.asciz	"de ip ok\n"
msg_far:	.asciz	"far "
msg_o32:	.asciz	"o32 "
msg_pm:		.asciz	"pm back\n"
msg_done:	.asciz	"done\n"
msg_nl:		.asciz	"\n"
	.p2align 2
scratch:	.long	0
	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	# 0x08: 32-bit code, base 0, 4 GiB
	.quad	0x00cf92000000ffff	# 0x10: data, base 0, 4 GiB
	.quad	0x00009a000000ffff	# 0x18: 16-bit code, base 0, 64 KiB
	.quad	0x000092000000ffff	# 0x20: 16-bit data, base 0, 64 KiB
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
