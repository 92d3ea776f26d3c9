# Firmware image for kvm_vmm_e2e_test.cpp: prints "spinning" on COM1, then
# halts with interrupts enabled and no interrupt source, forever: the
# monitor must end it cleanly (status 0) on SIGTERM.
	.code16
	.text
	.globl _start
_start:
start:
	movw	$0x3f8, %dx
	movw	$msg, %si
2:	movb	%cs:(%si), %al
	incw	%si
	testb	%al, %al
	jz	3f
	outb	%al, %dx
	jmp	2b
3:	sti
	hlt
	jmp	3b
msg:
	.asciz	"spinning\n"

	.org	0xfff0
	ljmp	$0xf000, $start
	.org	0xffff
	.byte	0
