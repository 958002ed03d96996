#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "boot_cpu.h"
#include "layout.h"

#define MEM_SIZE (1u << 20)

static struct guest_memory mem;

static int setup(void **state)
{
	(void)state;
	mem = (struct guest_memory){ .nr_regions = 1 };
	mem.regions[0] = (struct guest_region){ .gpa = 0, .size = MEM_SIZE, .hva = calloc(1, MEM_SIZE) };
	return mem.regions[0].hva ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	free(mem.regions[0].hva);
	return 0;
}

static uint64_t read64(uint64_t gpa)
{
	uint64_t v;
	memcpy(&v, mem.regions[0].hva + gpa, 8);
	return v;
}

/* A 4-level walk, as the MMU does it: virtual -> physical, or ~0 if unmapped. */
static uint64_t walk(uint64_t cr3, uint64_t va)
{
	uint64_t e = read64((cr3 & ~0xFFFULL) + ((va >> 39) & 511) * 8);
	if (!(e & 1))
		return ~0ULL;
	e = read64((e & 0xFFFFFFFFF000ULL) + ((va >> 30) & 511) * 8);
	if (!(e & 1))
		return ~0ULL;
	e = read64((e & 0xFFFFFFFFF000ULL) + ((va >> 21) & 511) * 8);
	if (!(e & 1) || !(e & 0x80))
		return ~0ULL;
	return (e & 0xFFFFFFE00000ULL) | (va & 0x1FFFFF);
}

static void test_linux64_identity_maps_4g(void **state)
{
	(void)state;
	assert_int_equal(x86_boot_tables(&mem, BOOT_LINUX64), 0);
	struct kvm_sregs sregs;
	memset(&sregs, 0, sizeof(sregs));
	x86_boot_sregs(BOOT_LINUX64, &sregs);
	static const uint64_t probes[] = { 0, 0x7000, 0x1000000, 0x3FFFFFFF, 0x40000000, 0xBFFFF123, 0xFEE00000, 0xFFFFFFFF };
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		assert_int_equal(walk(sregs.cr3, probes[i]), probes[i]);
	assert_int_equal(walk(sregs.cr3, 0x100000000ULL), ~0ULL);
	/* Long mode: paging, PAE, LME+LMA; CS is a 64-bit code segment. */
	assert_true(sregs.cr0 & 0x80000001);
	assert_true(sregs.cr4 & 0x20);
	assert_int_equal(sregs.efer & 0x500, 0x500);
	assert_int_equal(sregs.cs.l, 1);
	assert_int_equal(sregs.cs.db, 0);
	assert_int_equal(sregs.cs.selector, 0x10);
	assert_int_equal(sregs.ds.selector, 0x18);
	/* The GDT entry behind CS says the same (L bit 53, D bit 54). */
	uint64_t cs_desc = read64(X86_BOOT_GDT + sregs.cs.selector);
	assert_true(cs_desc & (1ULL << 53));
	assert_false(cs_desc & (1ULL << 54));
	assert_true(sregs.gdt.limit >= sregs.ds.selector + 7);
}

static void test_pvh32_is_flat_protected_mode(void **state)
{
	(void)state;
	assert_int_equal(x86_boot_tables(&mem, BOOT_PVH32), 0);
	struct kvm_sregs sregs;
	memset(&sregs, 0, sizeof(sregs));
	x86_boot_sregs(BOOT_PVH32, &sregs);
	assert_int_equal(sregs.cr0 & 0x80000001, 1); /* PE without PG */
	assert_int_equal(sregs.efer, 0);
	assert_int_equal(sregs.cs.db, 1);
	assert_int_equal(sregs.cs.l, 0);
	assert_int_equal(sregs.cs.limit, 0xFFFFFFFF);
	assert_int_equal(sregs.ss.selector, 0x18);
	uint64_t cs_desc = read64(X86_BOOT_GDT + sregs.cs.selector);
	assert_true(cs_desc & (1ULL << 54));
	assert_false(cs_desc & (1ULL << 53));
	struct boot_entry entry = { .mode = BOOT_PVH32, .entry = 0x100040, .param_gpa = 0x6000 };
	struct kvm_regs regs;
	x86_boot_regs(&entry, &regs);
	assert_int_equal(regs.rip, 0x100040);
	assert_int_equal(regs.rbx, 0x6000);
	assert_int_equal(regs.rflags, 2);
	entry = (struct boot_entry){ .mode = BOOT_LINUX64, .entry = 0x1000000, .param_gpa = X86_BOOT_PARAMS };
	x86_boot_regs(&entry, &regs);
	assert_int_equal(regs.rsi, X86_BOOT_PARAMS);
	assert_int_equal(regs.rbx, 0);
}

static void test_tables_need_ram(void **state)
{
	(void)state;
	struct guest_memory tiny = { .nr_regions = 1 };
	static uint8_t page[0x1000];
	tiny.regions[0] = (struct guest_region){ .gpa = 0, .size = sizeof(page), .hva = page };
	assert_int_equal(x86_boot_tables(&tiny, BOOT_LINUX64), -14 /* -EFAULT */);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_linux64_identity_maps_4g, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pvh32_is_flat_protected_mode, setup, teardown),
		cmocka_unit_test(test_tables_need_ram),
	};
	return cmocka_run_group_tests_name("boot_cpu", tests, NULL, NULL);
}
