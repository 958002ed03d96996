/* Boot code of the tiny guest: the PVH entry (32-bit protected mode, paging
 * off, EBX = struct hvm_start_info), the switch to long mode, the exception
 * stubs, and the real-mode trampoline that application processors start in. */

#define SEL_CODE32	0x08
#define SEL_DATA	0x10
#define SEL_CODE64	0x18

#define CR0_PE		0x00000001
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define MSR_EFER	0xC0000080
#define EFER_LME	0x00000100

#define PTE_P		0x001
#define PTE_RW		0x002
#define PTE_PWT		0x008
#define PTE_PCD		0x010
#define PTE_PS		0x080
#define MMIO_PD_INDEX	1536	/* 2 MiB pages from 3 GiB up are device memory: uncached */

#define XEN_ELFNOTE_PHYS32_ENTRY 18

#include "guest.h"	/* TRAMPOLINE_ADDR, AP_MAX, AP_STACK_SHIFT */

#define TRAMP(sym)	((sym) - trampoline_start + TRAMPOLINE_ADDR)

/* The PVH note, as Linux writes it (arch/x86/platform/pvh/head.S): name
 * "Xen", type PHYS32_ENTRY, desc = the 32-bit entry address (a .quad like
 * Linux on x86-64; loaders read its low 32 bits). */
	.pushsection .note.Xen, "a", @note
	.balign 4
	.long 2f - 1f
	.long 4f - 3f
	.long XEN_ELFNOTE_PHYS32_ENTRY
1:	.asciz "Xen"
2:	.balign 4
3:	.quad pvh_start
4:	.balign 4
	.popsection

	.section .text.entry, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	cld
	/* Our own GDT: the one the loader left may be gone or elsewhere. */
	lgdt gdt_desc
	ljmp $SEL_CODE32, $1f
1:	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov %ebx, %esi			/* keep start_info */

	/* Zero .bss (page tables, stacks): not every loader clears it. */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	shr $2, %ecx
	xor %eax, %eax
	rep stosl
	mov $boot_stack_top, %esp

	/* Identity map 0-4 GiB with 2 MiB pages: one PML4 entry, four PDPT
	 * entries, 4 x 512 PD entries. */
	movl $(pdpt + PTE_P + PTE_RW), pml4
	mov $pd, %eax
	or $(PTE_P + PTE_RW), %eax
	xor %ecx, %ecx
2:	mov %eax, pdpt(, %ecx, 8)
	add $0x1000, %eax
	inc %ecx
	cmp $4, %ecx
	jne 2b
	mov $(PTE_P + PTE_RW + PTE_PS), %eax
	xor %ecx, %ecx
3:	mov %eax, %edx
	cmp $MMIO_PD_INDEX, %ecx
	jb 4f
	or $(PTE_PCD + PTE_PWT), %edx
4:	mov %edx, pd(, %ecx, 8)
	add $0x200000, %eax
	inc %ecx
	cmp $2048, %ecx
	jne 3b

	/* PAE, CR3, EFER.LME, paging: then the far jump enters 64-bit mode. */
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG + CR0_PE), %eax
	mov %eax, %cr0
	ljmp $SEL_CODE64, $bsp_entry64

	.code64
bsp_entry64:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov $boot_stack_top, %esp	/* zero-extends: the upper halves are undefined */
	mov %esi, %edi			/* main(start_info physical address) */
	call main
5:	cli
	hlt
	jmp 5b

/* Exceptions: one stub per vector pushes its number; none is expected, so
 * the handler reports and stops (a triple fault would say nothing). */
	.code64
	.globl exception_stubs
	.balign 16
exception_stubs:
	.set vec, 0
	.rept 32
	.balign 16
	push $vec
	jmp exception_common
	.set vec, vec + 1
	.endr
exception_common:
	pop %rdi			/* vector */
	mov %rsp, %rsi			/* error code (if any) and frame */
	and $-16, %rsp
	call exception_handler
6:	cli
	hlt
	jmp 6b

/* AP entry after the trampoline: take a stack slot, then ap_main(). */
ap_entry64:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	mov $1, %eax
	lock xadd %eax, ap_next_slot
	cmp $AP_MAX, %eax
	jae 8f
	inc %eax
	shl $AP_STACK_SHIFT, %eax
	add $ap_stacks, %eax
	mov %eax, %esp
	call ap_main
8:	cli
	hlt
	jmp 8b

/* Real-mode trampoline, copied to TRAMPOLINE_ADDR: a startup IPI with
 * vector TRAMPOLINE_ADDR >> 12 starts an AP here at CS:IP = 0x0800:0000.
 * Everything it references inside itself uses TRAMP() addresses. */
	.section .rodata.trampoline, "a"
	.globl trampoline_start, trampoline_end
	.code16
trampoline_start:
	cli
	cld
	xor %ax, %ax
	mov %ax, %ds
	lgdtl TRAMP(tramp_gdt_desc)
	mov %cr0, %eax
	or $CR0_PE, %eax
	mov %eax, %cr0
	ljmpl $SEL_CODE32, $TRAMP(tramp32)
	.code32
tramp32:
	mov $SEL_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $pml4, %eax			/* the BSP's page tables */
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG + CR0_PE), %eax
	mov %eax, %cr0
	ljmp $SEL_CODE64, $ap_entry64	/* straight into the image, 64-bit */
	.balign 8
tramp_gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt
trampoline_end:

	.section .rodata
	.balign 16
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: 32-bit code, flat */
	.quad 0x00cf92000000ffff	/* 0x10: data, flat */
	.quad 0x00af9a000000ffff	/* 0x18: 64-bit code */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.section .bss
	.balign 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096
	.balign 16
	.skip 8192
boot_stack_top:
	.globl ap_next_slot
ap_next_slot:
	.long 0
	.balign 4096
ap_stacks:
	.skip AP_MAX << AP_STACK_SHIFT

	.section .note.GNU-stack, "", @progbits
