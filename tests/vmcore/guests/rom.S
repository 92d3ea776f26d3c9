# Test guest for add_rom: a 4 KiB firmware image mapped read-only at
# 0xfffff000 and entered through the reset vector (CS.base 0xffff0000,
# IP 0xfff0 = the last 16 bytes of this image). Linked at 0xf000 (its IPs).
# Prints "hello rom\n" from the ROM itself (`rep outsb` with a CS override)
# to the UART (0x3f8), writes 0x55 over the ROM byte `probe` (a read-only
# slot: this must exit as an MMIO write and leave the byte alone), reads the
# byte back into BL (still 0xa5) and halts with EAX = 0x214d4f52 ("ROM!").
	.code16
	.text
	.globl _start
_start:
	cld
	movw	$0x3f8, %dx
	movw	$msg, %si
	movw	$msg_end - msg, %cx
	rep outsb %cs:(%si), (%dx)
	movb	$0x55, %cs:probe
	movb	%cs:probe, %bl
	movl	$0x214d4f52, %eax
	cli
	hlt
1:	jmp	1b

msg:
	.ascii	"hello rom\n"
msg_end:

	.org	0x800
probe:
	.byte	0xa5

	.org	0xff0			# reset vector: 0xfffffff0
	jmp	_start
	.org	0xfff
	.byte	0xff
