#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "memory.h"

static uint8_t low[0x10000], high[0x1000];

static struct guest_memory two_regions(void)
{
	struct guest_memory m = { .nr_regions = 2 };
	m.regions[0] = (struct guest_region){ .gpa = 0, .size = sizeof(low), .hva = low };
	m.regions[1] = (struct guest_region){ .gpa = 0x100000000ULL, .size = sizeof(high), .hva = high };
	return m;
}

static void test_guest_ptr_bounds(void **state)
{
	(void)state;
	struct guest_memory m = two_regions();
	assert_ptr_equal(guest_ptr(&m, 0, 1), low);
	assert_ptr_equal(guest_ptr(&m, 0xFFFF, 1), low + 0xFFFF);
	assert_ptr_equal(guest_ptr(&m, 0, sizeof(low)), low);
	assert_null(guest_ptr(&m, 0xFFFF, 2));         /* runs past the end */
	assert_null(guest_ptr(&m, 0x10000, 1));        /* the hole */
	assert_ptr_equal(guest_ptr(&m, 0x100000FFFULL, 1), high + 0xFFF);
	assert_null(guest_ptr(&m, 0x100000000ULL, 0x1001));
	assert_null(guest_ptr(&m, 0xFFFFFFFFFFFFFFFFULL, 2)); /* wraps */
	assert_null(guest_ptr(&m, 0x10, UINT64_MAX));         /* huge length */
	assert_ptr_equal(guest_ptr(&m, 5, 0), low + 5);       /* 0 counts as 1 */
	/* A range spanning two regions is refused, even if both parts are RAM. */
	struct guest_memory adj = { .nr_regions = 2 };
	adj.regions[0] = (struct guest_region){ .gpa = 0, .size = 0x1000, .hva = low };
	adj.regions[1] = (struct guest_region){ .gpa = 0x1000, .size = 0x1000, .hva = high };
	assert_null(guest_ptr(&adj, 0xFFE, 4));
}

static void test_read_write_copy(void **state)
{
	(void)state;
	struct guest_memory m = two_regions();
	uint32_t v = 0xA1B2C3D4, back = 0;
	assert_int_equal(guest_write(&m, 0x100000010ULL, &v, sizeof(v)), 0);
	assert_int_equal(high[0x10], 0xD4);
	assert_int_equal(guest_read(&m, 0x100000010ULL, &back, sizeof(back)), 0);
	assert_int_equal(back, v);
	assert_int_equal(guest_write(&m, 0xFFFE, &v, sizeof(v)), -EFAULT);
	assert_int_equal(guest_read(&m, 0x20000, &back, sizeof(back)), -EFAULT);
	assert_int_equal(guest_ram_size(&m), sizeof(low) + sizeof(high));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_ptr_bounds),
		cmocka_unit_test(test_read_write_copy),
	};
	return cmocka_run_group_tests_name("memory", tests, NULL, NULL);
}
