# features: one protected-mode feature per run, chosen by EBX at entry, so
# that a CPU engine's gaps show up one by one (pm_programs_test.cpp,
# KvmPmPrograms.FeatureMatrix, pins what the nested kvm_pvm hypervisor of
# the project's machines lacks). Each mode prints its name, then what a
# correct CPU does (Intel SDM vol. 3), then "done".
#   0 IRET to the same privilege level      7 external interrupt (8259A)
#   1 INT 0x80 through a DPL-0 gate, ring 0 8 INT3
#   2 far CALL through a call gate, ring 0  9 #GP(selector) to its handler
#   3 far CALL/RET without a gate          10 #DF via a task gate (#GP gate
#   4 far JMP to a TSS (task switch)          beyond the IDT limit)
#   5 #DF via a task gate (#GP gate not    11 MOV CR0 enabling 2-level paging
#     present)                             12 MOV CR0 enabling PAE paging (if
#                                             CPUID.1:EDX.PAE, else says so)
#   6 UD2 to the #UD handler               13 entered with paging on (the
#                                             harness wrote PD 0x40000)
#  14 UD2 with the #UD gate not present (#NP, error code 0x33)
	.include "pmlib.inc"

	.set	TSS2_SEL, 0x38

main:
	movl	%ebx, entry_ebx
	PUTS	"mode "
	HEX8	%bl
	PUTS	": "
	movl	$0x80, %eax
	movl	$h80, %ebx
	movl	$INTGATE, %ecx
	call	set_gate
	movl	$0x23, %eax
	movl	$hirq, %ebx
	call	set_gate
	movl	$gdt + 0x30, %edi	# call gate, DPL 0, to h_gate
	movl	$h_gate, %ebx
	movw	$KCODE, %dx
	movw	$0x0000, %cx
	call	make_call_gate
	movl	$gdt + TSS2_SEL, %edi
	movl	$tss2, %eax
	movl	$103, %ecx
	call	make_tss_desc
	movl	$tss2_entry, tss2 + 0x20
	movl	$0x2, tss2 + 0x24
	movl	$0x3000, tss2 + 0x38
	movw	$KCODE, tss2 + 0x4c
	movw	$KDATA, %ax
	movw	%ax, tss2 + 0x48
	movw	%ax, tss2 + 0x50
	movw	%ax, tss2 + 0x54
	movw	%ax, tss2 + 0x58
	movw	%ax, tss2 + 0x5c
	movl	$KSTACK_TOP, %eax
	call	tss_init
	movl	entry_ebx, %ebx
	cmpl	$14, %ebx
	ja	done
	jmp	*modes(,%ebx,4)
modes:
	.long	m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14
m0:	PUTS	"iret to the same privilege level\n"
	pushfl
	pushl	$KCODE
	pushl	$1f
	iretl
1:	PUTS	"iret returned\n"
	jmp	done
m1:	PUTS	"int 0x80 in ring 0\n"
	int	$0x80
	jmp	done
m2:	PUTS	"far call through a call gate in ring 0\n"
	lcall	$0x30, $0
	PUTS	"returned\n"
	jmp	done
m3:	PUTS	"far call and far return without a gate\n"
	lcall	$KCODE, $h_far
	PUTS	"returned\n"
	jmp	done
m4:	PUTS	"far jmp to a TSS\n"
	ljmp	$TSS2_SEL, $0
	jmp	done
m5:	PUTS	"#DF through a task gate, #GP gate not present\n"
	movl	$8, %eax
	movw	$TSS2_SEL, %bx
	call	set_task_gate
	movb	$0x0e, idt + 13 * 8 + 5
	movw	$0xfff8, %ax
	movw	%ax, %ds
	jmp	done
m6:	PUTS	"ud2\n"
	movl	$1f, expect_eip
1:	ud2
	jmp	done
m7:	PUTS	"external interrupt: COM2 THRE on IRQ 3 through the 8259A\n"
	movb	$0x11, %al
	outb	%al, $0x20
	movb	$0x20, %al
	outb	%al, $0x21
	movb	$0x04, %al
	outb	%al, $0x21
	movb	$0x01, %al
	outb	%al, $0x21
	movb	$0xf7, %al
	outb	%al, $0x21
	movw	$0x2fc, %dx		# MCR: OUT2
	movb	$0x08, %al
	outb	%al, %dx
	movw	$0x2f9, %dx		# IER: THRE
	movb	$0x02, %al
	outb	%al, %dx
	sti
1:	hlt
	jmp	1b
m8:	PUTS	"int3\n"
	movl	$1f, expect_eip
	int3
1:	jmp	done
m9:	PUTS	"#GP(0xfff8) from loading DS\n"
	movl	$1f, expect_eip
	movw	$0xfff8, %ax
1:	movw	%ax, %ds
	jmp	done
m10:	PUTS	"#DF through a task gate, IDT limit below vector 13\n"
	movl	$8, %eax
	movw	$TSS2_SEL, %bx
	call	set_task_gate
	movw	$(13 * 8 - 1), idt_desc
	lidtl	idt_desc
	movw	$0xfff8, %ax
	movw	%ax, %ds
	jmp	done
m14:	PUTS	"ud2 with the #UD gate not present\n"
	movb	$0x0e, idt + 6 * 8 + 5
	movl	$1f, expect_eip
1:	ud2
	jmp	done
m11:	PUTS	"mov to cr0 enabling 2-level paging\n"
	call	make_tables
	movl	$0x40000, %eax
	movl	%eax, %cr3
	jmp	enable
m12:	PUTS	"mov to cr0 enabling PAE paging\n"
	movl	$1, %eax
	cpuid
	testl	$0x40, %edx		# CPUID.1:EDX.PAE (bit 6)
	jnz	1f
	PUTS	"cpuid: no PAE\n"
	jmp	done
1:
	movl	$0x43000, %edi
	xorl	%eax, %eax
	movl	$2048, %ecx
	rep stosl
	movl	$0x44001, 0x43000	# PDPTE 0 -> PD 0x44000
	movl	$0x00000083, 0x44000	# 2 MiB page at 0
	movl	%cr4, %eax
	orl	$0x20, %eax
	movl	%eax, %cr4
	movl	$0x43000, %eax
	movl	%eax, %cr3
enable:	movl	%cr0, %eax
	orl	$0x80000000, %eax
	movl	$1f, expect_eip
1:	movl	%eax, %cr0
	jmp	2f
2:	movl	$0, expect_eip
m13:	PUTS	"paging on: cr0="
	movl	%cr0, %eax
	call	puthex32
	PUTS	"\n"
	jmp	done

make_tables:
	movl	$0x40000, %edi
	xorl	%eax, %eax
	movl	$2048, %ecx
	rep stosl
	movl	$0x41003, 0x40000
	movl	$0x41000, %edi
	movl	$0x003, %eax
	movl	$1024, %ecx
1:	stosl
	addl	$0x1000, %eax
	loop	1b
	ret

h80:	PUTS	"int 0x80 handler ran\n"
	jmp	done
hirq:	PUTS	"irq 3 handler ran\n"
	jmp	done
h_gate:	PUTS	"call gate target ran\n"
	lretl
h_far:	PUTS	"far target ran\n"
	lretl
tss2_entry:
	PUTS	"task 2 running: tr="
	str	%eax
	call	puthex16
	PUTS	" backlink="
	HEX16	tss2
	PUTS	"\n"
	jmp	done

entry_ebx:
	.long	0
	.p2align 3
gdt:
	.quad	0
	.quad	DESC_KCODE
	.quad	DESC_KDATA
	.quad	DESC_UCODE
	.quad	DESC_UDATA
	.quad	0			# 0x28 TSS (task 1)
	.quad	0			# 0x30 call gate
	.quad	0			# 0x38 TSS (task 2)
gdt_end:
	.word	0
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
	.p2align 4
tss2:	.fill	104, 1, 0
