# Test guest (a): real mode. Loaded at 0x1000 and entered at 0000:1000.
# Prints "hello real\n" one byte at a time with `out %al, %dx` to the UART
# data port 0x3f8, then "rep outsb\n" with one `rep outsb`, then halts with
# interrupts disabled. Final state: EAX = 0x5245414c ("REAL").
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

	movw	$0x3f8, %dx
	movw	$greeting, %si
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b

2:	movw	$tail, %si
	movw	$tail_end - tail, %cx
	rep outsb

	movl	$0x5245414c, %eax
	cli
	hlt
3:	jmp	3b

greeting:
	.asciz	"hello real\n"
tail:
	.ascii	"rep outsb\n"
tail_end:
