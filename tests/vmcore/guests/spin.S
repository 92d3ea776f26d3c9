# Test guest for kick(): real mode, loaded at 0x1000, entered at 0000:1000.
# Writes 1 to port 0xf0 (a test device that calls kick(), as the Monitor
# does when a device asks for shutdown), then spins forever in `jmp .`
# with interrupts disabled, so only kick() can end run().
	.code16
	.text
	.globl _start
_start:
	cli
	movb	$1, %al
	outb	%al, $0xf0
1:	jmp	1b
