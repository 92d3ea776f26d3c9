# Firmware image for the twoostwo-vmm end-to-end tests (kvm_vmm_e2e_test.cpp):
# a 64 KiB raw BIOS image run through --bios on the real machine model.
# From the reset vector it jumps to F000:start (the copy below 1 MiB), prints
# a banner on COM1, sets IVT[8] to its IRQ 0 handler, initialises the 8259A
# pair as a PC BIOS does (vectors 0x08/0x70, IRQ 0 unmasked only) and the
# 8254 channel 0 in mode 2 at 100 Hz, then sleeps in `sti; hlt` until three
# timer interrupts have arrived, prints "3 ticks" with the PIT count read
# back through the latch command, and resets the machine through the i8042
# (0xFE to port 0x64), which ends twoostwo-vmm with status 0.
	.code16
	.text
	.globl _start
_start:
start:
	cli
	cld
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	movw	$0x7000, %sp
	movw	$0, 0x500			# tick counter
	movw	$banner, %si
	call	puts
	movw	$irq0, 0x20			# IVT[8] = F000:irq0
	movw	%cs, 0x22
	# 8259A master: ICW1 edge+ICW4, ICW2 vector 0x08, ICW3 slave on IR2, ICW4 8086
	movb	$0x11, %al
	outb	%al, $0x20
	movb	$0x08, %al
	outb	%al, $0x21
	movb	$0x04, %al
	outb	%al, $0x21
	movb	$0x01, %al
	outb	%al, $0x21
	movb	$0xfe, %al			# only IRQ 0
	outb	%al, $0x21
	movb	$0x11, %al			# slave
	outb	%al, $0xa0
	movb	$0x70, %al
	outb	%al, $0xa1
	movb	$0x02, %al
	outb	%al, $0xa1
	movb	$0x01, %al
	outb	%al, $0xa1
	movb	$0xff, %al
	outb	%al, $0xa1
	# 8254 channel 0: lobyte/hibyte, mode 2, count 11932 (1193182 Hz / 100)
	movb	$0x34, %al
	outb	%al, $0x43
	movw	$11932, %ax
	outb	%al, $0x40
	movb	%ah, %al
	outb	%al, $0x40
wait:
	sti
	hlt
	cli
	cmpw	$3, 0x500
	jb	wait
	movw	$ticks, %si
	call	puts
	movb	$0xfe, %al			# i8042: pulse the reset line
	outb	%al, $0x64
1:	hlt
	jmp	1b

irq0:
	pushw	%ax
	pushw	%ds
	xorw	%ax, %ax
	movw	%ax, %ds
	incw	0x500
	movb	$0x20, %al			# non-specific EOI
	outb	%al, $0x20
	popw	%ds
	popw	%ax
	iret

# puts: print the NUL-terminated string at CS:SI on COM1.
puts:
	movw	$0x3f8, %dx
2:	movb	%cs:(%si), %al
	incw	%si
	testb	%al, %al
	jz	3f
	outb	%al, %dx
	jmp	2b
3:	ret

banner:
	.asciz	"tick firmware: waiting for 3 PIT interrupts\n"
ticks:
	.asciz	"3 ticks\n"

	.org	0xfff0				# reset vector: 0xfffffff0
	ljmp	$0xf000, $start
	.org	0xffff
	.byte	0
