#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bus.h"

struct recorder {
	uint64_t offset;
	uint32_t len;
	bool is_write;
	int calls;
	uint8_t fill;
};

static void record_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct recorder *r = opaque;
	r->offset = offset;
	r->len = len;
	r->is_write = is_write;
	r->calls++;
	if (!is_write)
		memset(data, r->fill, len);
}

static void test_register_rejects_overlap_and_empty(void **state)
{
	(void)state;
	struct bus bus = { 0 };
	struct recorder r = { 0 };
	assert_int_equal(bus_register(&bus, 0x100, 0x10, record_io, &r, "a"), 0);
	assert_int_equal(bus_register(&bus, 0x10F, 1, record_io, &r, "b"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0xF8, 0x10, record_io, &r, "c"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x0, 0x200, record_io, &r, "d"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x110, 0, record_io, &r, "e"), -EINVAL);
	assert_int_equal(bus_register(&bus, UINT64_MAX, 2, record_io, &r, "f"), -EINVAL);
	assert_int_equal(bus_register(&bus, 0x110, 1, record_io, &r, "g"), 0); /* adjacent is fine */
	bus_seal(&bus);
	assert_int_equal(bus_register(&bus, 0x500, 1, record_io, &r, "h"), -EBUSY);
	bus_free(&bus);
}

static void test_find_over_many_ranges(void **state)
{
	(void)state;
	struct bus bus = { 0 };
	struct recorder rec[64];
	/* Registered in a scrambled order, looked up after sealing. */
	for (int i = 0; i < 64; i++) {
		int k = (i * 37) % 64;
		rec[k] = (struct recorder){ .fill = (uint8_t)k };
		assert_int_equal(bus_register(&bus, 0x1000 + (uint64_t)k * 0x100, 0x80, record_io, &rec[k], "r"), 0);
	}
	bus_seal(&bus);
	for (int k = 0; k < 64; k++) {
		uint64_t base = 0x1000 + (uint64_t)k * 0x100;
		const struct bus_range *r = bus_find(&bus, base + 0x7F, 1);
		assert_non_null(r);
		assert_ptr_equal(r->opaque, &rec[k]);
		assert_null(bus_find(&bus, base + 0x80, 1)); /* the gap */
		assert_null(bus_find(&bus, base + 0x7E, 4)); /* straddles the end */
	}
	assert_null(bus_find(&bus, 0, 1));
	assert_null(bus_find(&bus, UINT64_MAX, 8));
	bus_free(&bus);
}

static void test_dispatch_passes_offset_and_direction(void **state)
{
	(void)state;
	struct bus bus = { 0 };
	struct recorder r = { .fill = 0x5A };
	assert_int_equal(bus_register(&bus, 0x3F8, 8, record_io, &r, "serial"), 0);
	bus_seal(&bus);
	uint8_t data[4] = { 1, 2, 3, 4 };
	assert_int_equal(bus_dispatch(&bus, 0x3FA, data, 2, true), 0);
	assert_int_equal(r.offset, 2);
	assert_int_equal(r.len, 2);
	assert_true(r.is_write);
	assert_int_equal(bus_dispatch(&bus, 0x3FC, data, 4, false), 0);
	assert_false(r.is_write);
	assert_int_equal(data[3], 0x5A);
	assert_int_equal(bus_dispatch(&bus, 0x400, data, 1, false), -ENOENT);
	assert_int_equal(r.calls, 2);
	bus_free(&bus);
}

static void test_empty_bus(void **state)
{
	(void)state;
	struct bus bus = { 0 };
	bus_seal(&bus);
	uint8_t b = 0;
	assert_null(bus_find(&bus, 0x3F8, 1));
	assert_int_equal(bus_dispatch(&bus, 0x3F8, &b, 1, false), -ENOENT);
	bus_free(&bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_rejects_overlap_and_empty),
		cmocka_unit_test(test_find_over_many_ranges),
		cmocka_unit_test(test_dispatch_passes_offset_and_direction),
		cmocka_unit_test(test_empty_bus),
	};
	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
