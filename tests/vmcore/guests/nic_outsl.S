# Test guest for an NE2000's data port as a coalesced PIO zone
# (kvm_nic_test.cpp): real mode, loaded at 0x1000, entered at 0000:1000, with
# an ISA NE2000 at port 0x300 (nic/dp8390.h's port map). It sets up a remote
# DMA write of 1024 bytes to card address 0x4000 and sends them with one
# `rep outsl` of 256 dwords (0xa5000000 + i) to the data port 0x310 -- more
# writes than KVM's coalesced ring holds at once (169) --, reads ISR (RDC set
# only once all 1024 bytes arrived), then transmits the 1024 bytes from page
# 0x40 as one frame and reads TSR.
# Halts with interrupts disabled; BL = ISR after the DMA, BH = TSR after the
# transmit, EAX = 0x4e455432 ("2TEN").
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
	movw	$0x300, %dx		# CR: page 0, stopped, remote DMA aborted
	movb	$0x21, %al
	outb	%al, %dx
	movw	$0x30e, %dx		# DCR: word-wide, normal (not loopback), FIFO 8 bytes
	movb	$0x49, %al
	outb	%al, %dx
	movw	$0x30a, %dx		# RBCR = 0x0400 bytes
	movb	$0x00, %al
	outb	%al, %dx
	movw	$0x30b, %dx
	movb	$0x04, %al
	outb	%al, %dx
	movw	$0x308, %dx		# RSAR = 0x4000 (page 0x40)
	movb	$0x00, %al
	outb	%al, %dx
	movw	$0x309, %dx
	movb	$0x40, %al
	outb	%al, %dx
	movw	$0x300, %dx		# CR: remote write, start
	movb	$0x12, %al
	outb	%al, %dx
	movw	$0x310, %dx		# the data port
	movw	$data, %si
	movw	$256, %cx
	rep outsl
	movw	$0x307, %dx		# ISR
	inb	%dx, %al
	movb	%al, %bl
	movw	$0x304, %dx		# TPSR = page 0x40
	movb	$0x40, %al
	outb	%al, %dx
	movw	$0x305, %dx		# TBCR = 0x0400 bytes
	movb	$0x00, %al
	outb	%al, %dx
	movw	$0x306, %dx
	movb	$0x04, %al
	outb	%al, %dx
	movw	$0x300, %dx		# CR: start, transmit, remote DMA aborted
	movb	$0x26, %al
	outb	%al, %dx
	movw	$0x304, %dx		# TSR
	inb	%dx, %al
	movb	%al, %bh
	movl	$0x4e455432, %eax
	cli
	hlt
1:	jmp	1b

	.balign	4
data:
	.set	i, 0
	.rept	256
	.long	0xa5000000 + i
	.set	i, i + 1
	.endr
