# Test guest for a triple fault: real mode to 32-bit protected mode, then an
# empty IDT (limit 0) and `ud2`: #UD cannot be delivered (#GP), nor can
# that (#DF), so the CPU shuts down. Loaded at 0x1000, entered at 0000:1000.
	.code16
	.text
	.globl _start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	lgdtl	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmp	$0x08, $pm32

	.code32
pm32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	movl	$0x9000, %esp
	lidtl	idt_desc
	movl	$0x54524950, %eax	# "TRIP": set before the fault
	ud2
1:	jmp	1b

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff
	.quad	0x00cf92000000ffff
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
idt_desc:
	.word	0
	.long	0
