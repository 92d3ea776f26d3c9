# doublefault: exception classes and the double fault through a task gate
# (Intel SDM vol. 3, 6.15 "Interrupt 8" with table 6-5, 6.12.2 "Interrupt
# Tasks", chapter 7 "Task Management"). Expected transcript and the SDM
# sections behind each line: tests/vmcore/pm_programs_test.cpp
# (kDoubleFaultTranscript).
#
# Task 1 (TSS 0x28) is the program; task 2 (TSS 0x30, its own stack at
# 0x2f000) is the #DF handler, reached through a task gate at vector 8.
#  A. #UD (benign) whose gate is not present: the #NP that follows is
#     delivered normally (benign then contributory: serial), error code
#     6 * 8 + IDT + EXT = 0x33.
#  B. #GP whose gate is not present: #NP while delivering #GP is
#     contributory after contributory: #DF, through the task gate. The #DF
#     task prints what the task switch did (back link, error code, NT, TS,
#     busy bits, task 1's registers saved in its TSS), points task 1's EIP
#     past the faulting instruction and IRETs (NT = 1: back to task 1).
#  C. #GP whose vector is beyond the IDT limit (#GP again while delivering
#     #GP): #DF again, into the same task 2, which resumes after its IRET.
	.include "pmlib.inc"

	.set	TSS2_SEL, 0x30
	.set	DFSTACK_TOP, 0x2f000

main:
	PUTS	"doublefault\n"
	# Task 1: the running program.
	movl	$KSTACK_TOP, %eax
	call	tss_init
	# Task 2: the #DF handler task (SDM 7.2.1 fig. 7-2 offsets).
	movl	$gdt + TSS2_SEL, %edi
	movl	$tss2, %eax
	movl	$103, %ecx
	call	make_tss_desc
	movl	$df_task, tss2 + 0x20		# EIP
	movl	$0x00000002, tss2 + 0x24	# EFLAGS
	movl	$DFSTACK_TOP, tss2 + 0x38	# ESP
	movw	$KCODE, tss2 + 0x4c		# CS
	movw	$KDATA, %ax
	movw	%ax, tss2 + 0x48		# ES
	movw	%ax, tss2 + 0x50		# SS
	movw	%ax, tss2 + 0x54		# DS
	movw	%ax, tss2 + 0x58		# FS
	movw	%ax, tss2 + 0x5c		# GS
	movw	$104, tss2 + 0x66		# no I/O bitmap
	movl	$8, %eax
	movw	$TSS2_SEL, %bx
	call	set_task_gate
	PUTS	"tr="
	str	%eax
	call	puthex16
	PUTS	" tss1 type="
	HEX8	gdt+TSS_SEL+5
	PUTS	" tss2 type="
	HEX8	gdt+TSS2_SEL+5
	PUTS	"\n"

	# A. Benign, then contributory: handled serially.
	PUTS	"ud2 with the #UD gate not present:\n"
	movb	$0x0e, idt + 6 * 8 + 5	# P = 0
	EXPECT_FAULT 2f, 3f
2:	ud2
3:	movb	$INTGATE, idt + 6 * 8 + 5

	# B. Contributory, then contributory: #DF through the task gate.
	PUTS	"#GP with the #GP gate not present:\n"
	movb	$0x0e, idt + 13 * 8 + 5	# P = 0
	movl	$resume_b, df_resume
	movl	$0xaaaa0001, %eax
	movl	$0xbbbb0002, %ebx
	movw	$0xfff8, %cx		# beyond the GDT limit: #GP(0xfff8)
site_b:	movw	%cx, %ds
	PUTS	"not reached\n"
resume_b:
	call	task1_report

	# C. #GP beyond the IDT limit while delivering #GP: #DF again.
	PUTS	"#GP with the IDT limit below vector 13:\n"
	movw	$13 * 8 - 1, idt_desc
	lidtl	idt_desc
	movl	$resume_c, df_resume
	movl	$0xaaaa0003, %eax
	movl	$0xbbbb0004, %ebx
	movw	$0xfff8, %cx
site_c:	movw	%cx, %ds
	PUTS	"not reached\n"
resume_c:
	movw	$idt_end - idt - 1, idt_desc
	lidtl	idt_desc
	call	task1_report
	jmp	done

# task1_report: what task 1 sees after the #DF task's IRET.
task1_report:
	PUTS	"back in task 1: tr="
	pushl	%eax
	str	%eax
	call	puthex16
	popl	%eax
	PUTS	" eax="
	call	puthex32
	PUTS	" ebx="
	HEX32	%ebx
	PUTS	" nt="
	pushfl
	popl	%eax
	shrl	$14, %eax
	andl	$1, %eax
	call	puthex8
	PUTS	" ts="
	movl	%cr0, %eax
	shrl	$3, %eax
	andl	$1, %eax
	call	puthex8
	PUTS	" tss1 type="
	HEX8	gdt+TSS_SEL+5
	PUTS	" tss2 type="
	HEX8	gdt+TSS2_SEL+5
	PUTS	"\n"
	clts
	ret

# The #DF task. Entered with the error code on its stack (SDM 6.12.2); every
# later entry resumes after its IRET, hence the loop.
df_task:
	PUTS	"#DF task: tr="
	str	%eax
	call	puthex16
	PUTS	" backlink="
	HEX16	tss2
	PUTS	" esp="
	movl	%esp, %eax
	call	puthex32
	PUTS	" err="
	popl	%eax
	call	puthex32
	PUTS	" nt="
	pushfl
	popl	%eax
	shrl	$14, %eax
	andl	$1, %eax
	call	puthex8
	PUTS	" ts="
	movl	%cr0, %eax
	shrl	$3, %eax
	andl	$1, %eax
	call	puthex8
	PUTS	" tss1 type="
	HEX8	gdt+TSS_SEL+5
	PUTS	" tss2 type="
	HEX8	gdt+TSS2_SEL+5
	PUTS	"\n  task 1 saved: eip="
	movl	tss + 0x20, %eax
	cmpl	$site_b, %eax
	je	1f
	cmpl	$site_c, %eax
	je	1f
	call	puthex32
	jmp	2f
1:	PUTS	"site"
2:	PUTS	" eax="
	HEX32	tss+0x28
	PUTS	" ebx="
	HEX32	tss+0x34
	PUTS	" esp="
	HEX32	tss+0x38
	PUTS	" cs="
	HEX16	tss+0x4c
	PUTS	" ds="
	HEX16	tss+0x54
	PUTS	"\n"
	# Resume task 1 past the fault, with the #GP gate present again.
	movl	df_resume, %eax
	movl	%eax, tss + 0x20
	movb	$INTGATE, idt + 13 * 8 + 5
	clts
	iretl
	jmp	df_task

df_resume:
	.long	0

	.p2align 3
gdt:
	.quad	0
	.quad	DESC_KCODE
	.quad	DESC_KDATA
	.quad	DESC_UCODE
	.quad	DESC_UDATA
	.quad	0			# 0x28 TSS of task 1
	.quad	0			# 0x30 TSS of task 2 (#DF)
gdt_end:
	.word	0
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
	.p2align 4
tss2:
	.fill	104, 1, 0
