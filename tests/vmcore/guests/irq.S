# Test guest (d): external interrupts in real mode. Loaded at 0x1000,
# entered at 0000:1000. Points IVT entry 0x20 at `handler`, then waits in
# `sti; hlt` until the handler has counted 3 interrupts in BX. The handler
# acknowledges each with a non-specific EOI (0x20 written to port 0x20).
# Then prints "3 interrupts\n" with `rep outsb` to the UART (0x3f8) and
# halts for good with interrupts disabled; EAX = 0x21515249 ("IRQ!").
	.code16
	.text
	.globl _start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x8000, %sp
	movw	$handler, 0x20 * 4
	movw	$0, 0x20 * 4 + 2
	xorw	%bx, %bx

wait:
	sti
	hlt
	cmpw	$3, %bx
	jb	wait

	cli
	cld
	movw	$msg, %si
	movw	$msg_end - msg, %cx
	movw	$0x3f8, %dx
	rep outsb
	movl	$0x21515249, %eax
	hlt
1:	jmp	1b

handler:
	incw	%bx
	pushw	%ax
	movb	$0x20, %al
	outb	%al, $0x20
	popw	%ax
	iret

msg:
	.ascii	"3 interrupts\n"
msg_end:
