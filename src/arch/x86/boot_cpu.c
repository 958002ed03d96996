#include "boot_cpu.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "layout.h"

#define CR0_PE  0x00000001ULL
#define CR0_ET  0x00000010ULL
#define CR0_PG  0x80000000ULL
#define CR4_PAE 0x00000020ULL
#define EFER_LME 0x00000100ULL
#define EFER_LMA 0x00000400ULL

#define PTE_PRESENT 0x001ULL
#define PTE_WRITE   0x002ULL
#define PTE_PS      0x080ULL /* 2 MiB page in a PD entry */

#define PAGE_SIZE_4K 0x1000ULL
#define PAGE_SIZE_2M 0x200000ULL
#define BOOT_IDENTITY_GIB 4

/* GDT descriptors: flat 4 GiB segments. */
#define GDT_CODE64 0x00AF9B000000FFFFULL /* L=1, D=0 */
#define GDT_CODE32 0x00CF9B000000FFFFULL /* L=0, D=1 */
#define GDT_DATA   0x00CF93000000FFFFULL
#define GDT_ENTRIES 4

int x86_boot_tables(const struct guest_memory *mem, enum boot_mode mode)
{
	uint64_t gdt[GDT_ENTRIES] = { 0, 0, mode == BOOT_LINUX64 ? GDT_CODE64 : GDT_CODE32, GDT_DATA };
	int err = guest_write(mem, X86_BOOT_GDT, gdt, sizeof(gdt));
	if (err || mode != BOOT_LINUX64)
		return err;

	uint64_t *pml4 = guest_ptr(mem, X86_BOOT_PML4, PAGE_SIZE_4K);
	uint64_t *pdpt = guest_ptr(mem, X86_BOOT_PDPT, PAGE_SIZE_4K);
	uint64_t *pd = guest_ptr(mem, X86_BOOT_PD, BOOT_IDENTITY_GIB * PAGE_SIZE_4K);
	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, PAGE_SIZE_4K);
	memset(pdpt, 0, PAGE_SIZE_4K);
	pml4[0] = X86_BOOT_PDPT | PTE_PRESENT | PTE_WRITE;
	for (uint64_t g = 0; g < BOOT_IDENTITY_GIB; g++)
		pdpt[g] = (X86_BOOT_PD + g * PAGE_SIZE_4K) | PTE_PRESENT | PTE_WRITE;
	for (uint64_t i = 0; i < BOOT_IDENTITY_GIB * 512; i++)
		pd[i] = (i * PAGE_SIZE_2M) | PTE_PRESENT | PTE_WRITE | PTE_PS;
	return 0;
}

static void flat_segment(struct kvm_segment *seg, uint16_t selector, uint8_t type, bool code64)
{
	*seg = (struct kvm_segment){
		.base = 0,
		.limit = 0xFFFFFFFF,
		.selector = selector,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code64 ? 0 : 1,
		.s = 1,
		.l = code64 ? 1 : 0,
		.g = 1,
	};
}

void x86_boot_sregs(enum boot_mode mode, struct kvm_sregs *sregs)
{
	bool long_mode = mode == BOOT_LINUX64;
	flat_segment(&sregs->cs, X86_BOOT_CS, 0xB /* execute/read, accessed */, long_mode);
	flat_segment(&sregs->ds, X86_BOOT_DS, 0x3 /* read/write, accessed */, false);
	sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
	sregs->gdt.base = X86_BOOT_GDT;
	sregs->gdt.limit = GDT_ENTRIES * 8 - 1;
	/* PVH wants a busy 32-bit TSS with limit 0x67; KVM's reset TR is one. */
	sregs->tr.limit = 0x67;
	if (long_mode) {
		sregs->cr0 = CR0_PE | CR0_ET | CR0_PG;
		sregs->cr3 = X86_BOOT_PML4;
		sregs->cr4 = CR4_PAE;
		sregs->efer = EFER_LME | EFER_LMA;
	} else {
		sregs->cr0 = CR0_PE | CR0_ET;
		sregs->cr3 = 0;
		sregs->cr4 = 0;
		sregs->efer = 0;
	}
}

void x86_boot_regs(const struct boot_entry *entry, struct kvm_regs *regs)
{
	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2; /* bit 1 is always set; interrupts off */
	regs->rip = entry->entry;
	if (entry->mode == BOOT_LINUX64)
		regs->rsi = entry->param_gpa;
	else
		regs->rbx = entry->param_gpa;
}
