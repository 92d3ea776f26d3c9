# Test guest (c): goes from real mode through 32-bit protected mode to
# 64-bit long mode by itself. Loaded at 0x1000, entered at 0000:1000.
#  - GDT: 0x08 flat 32-bit code, 0x10 flat data, 0x18 64-bit code;
#  - page tables at 0x10000 (PML4), 0x11000 (PDPT), 0x12000 (PD): one 2 MiB
#    page identity-mapping [0, 2 MiB);
#  - CR4.PAE, CR3, EFER.LME (WRMSR 0xc0000080), CR0.PG, far jump to 64-bit;
#  - prints "hello long\n" with `rep outsb` to the UART (0x3f8) and halts
#    with RAX = 0x4c4f4e474d4f4445.
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
	movw	%ax, %es
	movw	%ax, %ss
	movl	$0x9000, %esp
	cld

	movl	$0x10000, %edi		# clear the three tables
	xorl	%eax, %eax
	movl	$3 * 1024, %ecx
	rep stosl
	movl	$0x11003, 0x10000	# PML4[0] -> PDPT, present + writable
	movl	$0x12003, 0x11000	# PDPT[0] -> PD
	movl	$0x00000083, 0x12000	# PD[0]: 2 MiB page at 0, present + writable + PS

	movl	%cr4, %eax
	orl	$0x20, %eax		# PAE
	movl	%eax, %cr4
	movl	$0x10000, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx	# EFER
	rdmsr
	orl	$0x100, %eax		# LME
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000000, %eax	# PG: long mode becomes active
	movl	%eax, %cr0
	ljmp	$0x18, $lm64

	.code64
lm64:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	leaq	msg(%rip), %rsi
	movl	$msg_end - msg, %ecx
	movw	$0x3f8, %dx
	rep outsb
	movabsq	$0x4c4f4e474d4f4445, %rax
	cli
	hlt
1:	jmp	1b

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	# 0x08: 32-bit code
	.quad	0x00cf92000000ffff	# 0x10: data
	.quad	0x00af9a000000ffff	# 0x18: 64-bit code (L=1)
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
msg:
	.ascii	"hello long\n"
msg_end:
