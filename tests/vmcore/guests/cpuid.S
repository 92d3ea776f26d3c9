# Test guest for the CPUID table: real mode, loaded at 0x1000, entered at
# 0000:1000. Executes CPUID leaf 1 and halts with its EAX, EBX, ECX, EDX.
	.code16
	.text
	.globl _start
_start:
	cli
	movl	$1, %eax
	xorl	%ecx, %ecx
	cpuid
	hlt
1:	jmp	1b
