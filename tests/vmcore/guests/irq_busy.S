# Test guest for an interrupt that arrives while the guest is running (not
# halted): real mode, loaded at 0x1000, entered at 0000:1000. Points IVT
# entry 0x20 at `handler`, enables interrupts and spins until the handler
# has run once (BX = 1). The test raises the request from another thread
# and kicks, as the Monitor does on InterruptController::on_intr_raised.
# Then prints "busy irq\n" to the UART (0x3f8) and halts with interrupts
# disabled; EAX = 0x59535542 ("BUSY").
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
	sti
1:	testw	%bx, %bx
	jz	1b

	cli
	cld
	movw	$msg, %si
	movw	$msg_end - msg, %cx
	movw	$0x3f8, %dx
	rep outsb
	movl	$0x59535542, %eax
	hlt
2:	jmp	2b

handler:
	incw	%bx
	pushw	%ax
	movb	$0x20, %al
	outb	%al, $0x20
	popw	%ax
	iret

msg:
	.ascii	"busy irq\n"
msg_end:
