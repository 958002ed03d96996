/* The x86 side of the arch interface. Generic code (vm.c, vcpu.c) calls
 * only the arch_* functions below; everything x86 stays in src/arch/x86. */
#ifndef KVMLITE_ARCH_X86_H
#define KVMLITE_ARCH_X86_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "emulate.h"
#include "loader.h"
#include "memory.h"

struct vm;
struct vcpu;

struct arch_vm {
	struct boot_entry boot;
};

struct arch_vcpu {
	uint64_t fallback[EMU_INSN_MAX]; /* instructions handled by the fallback */
	bool unknown_logged;             /* an unknown instruction is logged once */
};

/* Capabilities KVM must offer; -ENOTSUP after logging the missing one. */
int arch_check_kvm(int kvm_fd);
/* The guest-physical RAM regions for ram_size bytes (hva left NULL). */
int arch_memory_layout(uint64_t ram_size, struct guest_memory *mem);
/* After KVM_CREATE_VM, before memory and vCPUs: TSS, irqchip, PIT. */
int arch_vm_init(struct vm *vm);
/* Writes firmware tables and the guest image into guest memory. */
int arch_load_guest(struct vm *vm);
/* CPUID, MSRs and registers; the boot vCPU starts at the entry point,
 * the others wait for INIT/SIPI. */
int arch_vcpu_init(struct vcpu *vcpu);
/* An exit generic code does not handle: 0 to re-enter, negative errno to
 * stop the VM. */
int arch_vcpu_exit(struct vcpu *vcpu);
/* Adds the arch's counter groups to vm->stats (x86: "fallback", the
 * instructions emulated, summed over vCPUs). */
int arch_stats_init(struct vm *vm);

#endif
