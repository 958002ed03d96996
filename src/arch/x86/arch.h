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
struct kvm_irq_routing_entry;

struct arch_vm {
	struct boot_entry boot;
	uint32_t pci_config_address;     /* 0xCF8 CONFIG_ADDRESS (atomic: any vCPU) */
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

/* Interrupt routing (irq.c): the irqchip's own GSI routes, written into
 * routes (at most max); returns how many. */
int arch_irq_default_routes(struct kvm_irq_routing_entry *routes, int max);
/* The first GSI above the irqchip's pins, for MSI routes. */
uint32_t arch_irq_first_msi_gsi(void);

/* PCI (pci.c): the GSI of INTA for a device in slot; the 32-bit window BARs
 * live in; the ECAM range of bus 0; the arch's own config mechanism (x86:
 * ports 0xCF8-0xCFF), registered by pci_host_init(). */
uint32_t arch_pci_intx_gsi(int slot);
void arch_pci_mmio_window(uint64_t *base, uint64_t *size);
void arch_pci_ecam(uint64_t *base, uint64_t *size);
int arch_pci_init(struct vm *vm);

/* x86 only: the reset control register (devices/reset.c), which shares
 * ports 0xCF8-0xCFF with PCI config mechanism #1 (pci_x86.c). */
void x86_reset_control_io(struct vm *vm, uint8_t *data, uint32_t len, bool is_write);

#endif
