# Test guest (b): switches itself from real mode to 32-bit protected mode.
# Loaded at 0x1000, entered at 0000:1000 in real mode.
#  1. lgdt (flat code 0x08, flat data 0x10), CR0.PE, far jump to 32-bit code;
#  2. prints "hello prot\n" with `rep outsb` to the UART (0x3f8);
#  3. `rep insb` of 16 bytes from port 0x500 and `rep insw` of 8 words from
#     port 0x502 into buf (32 bytes);
#  4. checksum: for each byte b of buf, eax = rol(eax, 5) + b; writes it to
#     port 0x504 with one `outl`, and halts with EAX = checksum,
#     EBX = 0x544f5250 ("PROT").
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
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$0x9000, %esp
	cld

	movl	$msg, %esi
	movl	$msg_end - msg, %ecx
	movw	$0x3f8, %dx
	rep outsb

	movl	$buf, %edi
	movw	$0x500, %dx
	movl	$16, %ecx
	rep insb
	movw	$0x502, %dx
	movl	$8, %ecx
	rep insw

	xorl	%eax, %eax
	movl	$buf, %esi
	movl	$32, %ecx
1:	roll	$5, %eax
	movzbl	(%esi), %ebx
	addl	%ebx, %eax
	incl	%esi
	loop	1b

	movw	$0x504, %dx
	outl	%eax, %dx
	movl	$0x544f5250, %ebx
	cli
	hlt
2:	jmp	2b

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	# 0x08: code, base 0, 4 GiB, 32-bit
	.quad	0x00cf92000000ffff	# 0x10: data, base 0, 4 GiB
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
msg:
	.ascii	"hello prot\n"
msg_end:
	.p2align 4
buf:
	.fill	32, 1, 0
