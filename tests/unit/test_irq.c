/* GSI routing without KVM: the x86 default table (it must equal the one
 * KVM installs by itself, or replacing it would move ISA interrupts), the
 * MSI GSI range, and graceful failures when there is no KVM VM. */
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "irq.h"
#include "vm.h"

#define MAX_ROUTES 64

static void test_default_routes_match_kvm(void **state)
{
	struct kvm_irq_routing_entry r[MAX_ROUTES];
	memset(r, 0, sizeof(r));
	int n = arch_irq_default_routes(r, MAX_ROUTES);
	assert_int_equal(n, 24 + 16);

	int ioapic[24] = { 0 }, pic[24] = { 0 };
	for (int i = 0; i < n; i++) {
		assert_int_equal(r[i].type, KVM_IRQ_ROUTING_IRQCHIP);
		assert_int_equal(r[i].flags, 0);
		uint32_t gsi = r[i].gsi;
		assert_true(gsi < 24);
		switch (r[i].u.irqchip.irqchip) {
		case KVM_IRQCHIP_IOAPIC:
			assert_int_equal(r[i].u.irqchip.pin, gsi);
			ioapic[gsi]++;
			break;
		case KVM_IRQCHIP_PIC_MASTER:
			assert_true(gsi < 8);
			assert_int_equal(r[i].u.irqchip.pin, gsi);
			pic[gsi]++;
			break;
		case KVM_IRQCHIP_PIC_SLAVE:
			assert_true(gsi >= 8 && gsi < 16);
			assert_int_equal(r[i].u.irqchip.pin, gsi - 8);
			pic[gsi]++;
			break;
		default:
			fail_msg("unexpected irqchip %u", r[i].u.irqchip.irqchip);
		}
	}
	for (int gsi = 0; gsi < 24; gsi++) {
		assert_int_equal(ioapic[gsi], 1);
		assert_int_equal(pic[gsi], gsi < 16);   /* GSI 2 too, as in KVM's table */
	}
}

static void test_default_routes_bounded(void **state)
{
	struct kvm_irq_routing_entry r[8];
	memset(r, 0xEE, sizeof(r));
	assert_int_equal(arch_irq_default_routes(r, 5), 5);
	for (size_t i = 5; i < 8; i++) {
		const uint8_t *b = (const uint8_t *)&r[i];
		for (size_t j = 0; j < sizeof(r[i]); j++)
			assert_int_equal(b[j], 0xEE);
	}
	assert_int_equal(arch_irq_default_routes(r, 0), 0);
}

static void test_msi_gsis_above_pins(void **state)
{
	assert_int_equal(arch_irq_first_msi_gsi(), 24);
	/* PCI INTx lines are IOAPIC pins, below the MSI range. */
	for (int slot = 0; slot < 32; slot++) {
		uint32_t gsi = arch_pci_intx_gsi(slot);
		assert_true(gsi >= 16 && gsi < arch_irq_first_msi_gsi());
		assert_int_equal(gsi, 16 + (uint32_t)slot % 8);
	}
}

/* Without KVM: init refuses, and every call fails instead of crashing. */
static void test_without_kvm(void **state)
{
	struct vm vm;
	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = -1;
	assert_int_equal(irq_routing_init(&vm), -ENOTSUP);
	assert_false(vm.irq.initialized);
	assert_int_equal(irq_alloc_gsi(&vm), -ENODEV);
	assert_int_equal(irq_set_msi_route(&vm, 24, 0xFEE00000, 0x41, true), -ENODEV);
	assert_int_equal(irq_set_msi_route(&vm, 24, 0, 0, false), -ENODEV);
	int fd = eventfd(0, EFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(irq_irqfd(&vm, fd, 24, true), -EBADF);
	assert_int_equal(irq_irqfd(&vm, -1, 24, true), -EBADF);
	close(fd);
	irq_routing_free(&vm.irq);
	irq_routing_free(&vm.irq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_routes_match_kvm),
		cmocka_unit_test(test_default_routes_bounded),
		cmocka_unit_test(test_msi_gsis_above_pins),
		cmocka_unit_test(test_without_kvm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
