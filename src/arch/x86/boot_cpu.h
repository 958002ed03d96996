/* The boot vCPU's initial state for each entry mode: GDT, identity page
 * tables and register values. Pure, so unit-tested without KVM. */
#ifndef KVMLITE_X86_BOOT_CPU_H
#define KVMLITE_X86_BOOT_CPU_H

#include <linux/kvm.h>

#include "loader.h"
#include "memory.h"

#define X86_BOOT_CS 0x10 /* __BOOT_CS in Linux */
#define X86_BOOT_DS 0x18 /* __BOOT_DS */

/* Writes the boot GDT and, for BOOT_LINUX64, page tables identity-mapping
 * the first 4 GiB (2 MiB pages) into guest memory. */
int x86_boot_tables(const struct guest_memory *mem, enum boot_mode mode);
/* Segment and control registers on top of KVM's reset values. */
void x86_boot_sregs(enum boot_mode mode, struct kvm_sregs *sregs);
void x86_boot_regs(const struct boot_entry *entry, struct kvm_regs *regs);

#endif
