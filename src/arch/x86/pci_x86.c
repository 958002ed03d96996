/* x86 side of PCI and interrupt routing: KVM's default irqchip routes,
 * the INTx swizzle the DSDT's _PRT describes, the BAR window and ECAM, and
 * configuration mechanism #1 on ports 0xCF8-0xCFF (which also hold the
 * reset control register at 0xCF9). */
#include <linux/kvm.h>
#include <string.h>

#include "layout.h"
#include "pci.h"
#include "vm.h"

#define X86_IOAPIC_PINS        24
#define X86_PIC_PINS           16
#define X86_PIC_PINS_PER_CHIP  8

#define CONFIG_ADDRESS_ENABLE  0x80000000u
/* enable, bus, device, function, dword register; the rest reads as 0 */
#define CONFIG_ADDRESS_MASK    0x80fffffcu
#define CONFIG_DATA_OFFSET     4   /* 0xCFC - 0xCF8 */
#define RESET_CONTROL_OFFSET   1   /* 0xCF9 - 0xCF8 */
#define PCI_CONFIG_PORTS       8

static struct kvm_irq_routing_entry irqchip_route(uint32_t gsi, uint32_t chip, uint32_t pin)
{
	return (struct kvm_irq_routing_entry){
		.gsi = gsi,
		.type = KVM_IRQ_ROUTING_IRQCHIP,
		.u.irqchip = { .irqchip = chip, .pin = pin },
	};
}

/* The table KVM installs with KVM_CREATE_IRQCHIP (arch/x86/kvm/irq_comm.c
 * default_routing): GSI n on IOAPIC pin n for 0..23, and for 0..15 also
 * on the 8259 pair. Kept identical, GSI 2 on the master's cascade pin
 * included, so that replacing the table changes nothing for ISA devices. */
int arch_irq_default_routes(struct kvm_irq_routing_entry *routes, int max)
{
	int n = 0;
	for (uint32_t gsi = 0; gsi < X86_IOAPIC_PINS && n < max; gsi++) {
		routes[n++] = irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi);
		if (gsi < X86_PIC_PINS && n < max)
			routes[n++] = irqchip_route(gsi,
						    gsi < X86_PIC_PINS_PER_CHIP ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
						    gsi % X86_PIC_PINS_PER_CHIP);
	}
	return n;
}

uint32_t arch_irq_first_msi_gsi(void)
{
	return X86_IOAPIC_PINS;
}

/* INTA of slot s: what the DSDT's _PRT says (pin p: 16 + (s + p) % 8). */
uint32_t arch_pci_intx_gsi(int slot)
{
	return X86_PCI_INTX_GSI_BASE + (uint32_t)slot % X86_PCI_INTX_NR_GSIS;
}

void arch_pci_mmio_window(uint64_t *base, uint64_t *size)
{
	*base = X86_PCI_MMIO_START;
	*size = X86_PCI_MMIO_SIZE;
}

void arch_pci_ecam(uint64_t *base, uint64_t *size)
{
	*base = X86_PCI_ECAM;
	*size = X86_PCI_ECAM_SIZE;
}

/* 0xCF8: CONFIG_ADDRESS, dword accesses only (byte and word accesses there
 * are ordinary I/O, which is how Linux tells mechanism #1 from #2).
 * 0xCF9: the reset control register, byte accesses. 0xCFC-0xCFF:
 * CONFIG_DATA, the byte lanes of the addressed dword. */
static void pci_config_port_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm *vm = opaque;
	uint32_t *address = &vm->arch.pci_config_address;
	if (offset == 0 && len == 4) {
		uint32_t v;
		if (is_write) {
			memcpy(&v, data, sizeof(v));
			__atomic_store_n(address, v & CONFIG_ADDRESS_MASK, __ATOMIC_RELAXED);
		} else {
			v = __atomic_load_n(address, __ATOMIC_RELAXED);
			memcpy(data, &v, sizeof(v));
		}
		return;
	}
	if (offset == RESET_CONTROL_OFFSET && len == 1) {
		x86_reset_control_io(vm, data, len, is_write);
		return;
	}
	if (offset >= CONFIG_DATA_OFFSET && offset - CONFIG_DATA_OFFSET + len <= 4) {
		uint32_t a = __atomic_load_n(address, __ATOMIC_RELAXED);
		if (a & CONFIG_ADDRESS_ENABLE) {
			pci_config_access(vm, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 0x7,
					  (a & 0xfc) + (uint32_t)(offset - CONFIG_DATA_OFFSET), data, len, is_write);
			return;
		}
	}
	if (!is_write)
		memset(data, 0xff, len);
}

int arch_pci_init(struct vm *vm)
{
	__atomic_store_n(&vm->arch.pci_config_address, 0, __ATOMIC_RELAXED);
	return bus_register(&vm->pio, X86_PORT_PCI_CONFIG, PCI_CONFIG_PORTS, pci_config_port_io, vm, "pci-config");
}
