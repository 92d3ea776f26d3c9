# Test guest for coalesced PIO: real mode, loaded at 0x1000, entered at
# 0000:1000. `rep outsb` of 64 bytes (3*i + 1 for i = 0..63) to port 0x510,
# which the test registers as a coalesced PIO zone, then one `outb` of '!'
# to the UART (0x3f8), which exits normally and must be seen after all 64.
# Halts with interrupts disabled; EAX = 0x4c414f43 ("COAL").
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
	cld
	movw	$0x510, %dx
	movw	$data, %si
	movw	$64, %cx
	rep outsb
	movb	$'!', %al
	movw	$0x3f8, %dx
	outb	%al, %dx
	movl	$0x4c414f43, %eax
	cli
	hlt
1:	jmp	1b

data:
	.set	i, 0
	.rept	64
	.byte	3 * i + 1
	.set	i, i + 1
	.endr
