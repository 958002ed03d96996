/* Instruction fallback, guest-physical side: x86_fallback_gpa_access() on
 * fake guest RAM and an MMIO bus with recording devices. The expected
 * pieces follow the rule "at most 8 bytes, split at 8-byte boundaries;
 * bytewise when no device claims a whole piece", worked out by hand. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bus.h"
#include "emulate.h"
#include "memory.h"

#define RAM0_GPA  0x1000ull
#define RAM0_SIZE 0x2000ull
#define DEV_GPA   0x3000ull /* right after RAM0 */
#define DEV_SIZE  32
#define ODD_GPA   0x4003ull /* 3 bytes, not 8-aligned */
#define RAM1_GPA  0x5000ull /* 5 bytes of RAM, then a device */
#define RAM1_SIZE 5
#define TAIL_GPA  0x5005ull
#define GUARD     64

struct call {
	uint64_t off;
	uint32_t len;
	bool write;
};

struct dev {
	uint8_t regs[DEV_SIZE];
	struct call calls[64];
	int nr;
};

struct fixture {
	uint8_t ram0[GUARD + RAM0_SIZE + GUARD];
	uint8_t ram1[GUARD + RAM1_SIZE + GUARD];
	struct guest_memory mem;
	struct bus bus;
	struct dev dev, odd, tail;
};

static void dev_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct dev *d = opaque;

	if (d->nr < 64)
		d->calls[d->nr++] = (struct call){ offset, len, is_write };
	for (uint32_t i = 0; i < len; i++) {
		if (is_write)
			d->regs[offset + i] = data[i];
		else
			data[i] = d->regs[offset + i];
	}
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	for (size_t i = 0; i < sizeof(f->ram0); i++)
		f->ram0[i] = (uint8_t)(i * 7 + 1);
	memset(f->ram1, 0x5A, sizeof(f->ram1));
	for (int i = 0; i < DEV_SIZE; i++) {
		f->dev.regs[i] = (uint8_t)(0x80 + i);
		f->odd.regs[i] = (uint8_t)(0x40 + i);
		f->tail.regs[i] = (uint8_t)(0x20 + i);
	}
	f->mem.regions[0] = (struct guest_region){ RAM0_GPA, RAM0_SIZE, f->ram0 + GUARD };
	f->mem.regions[1] = (struct guest_region){ RAM1_GPA, RAM1_SIZE, f->ram1 + GUARD };
	f->mem.nr_regions = 2;
	assert_int_equal(bus_register(&f->bus, DEV_GPA, DEV_SIZE, dev_io, &f->dev, "dev"), 0);
	assert_int_equal(bus_register(&f->bus, ODD_GPA, 3, dev_io, &f->odd, "odd"), 0);
	assert_int_equal(bus_register(&f->bus, TAIL_GPA, 3, dev_io, &f->tail, "tail"), 0);
	bus_seal(&f->bus);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	bus_free(&f->bus);
	test_free(f);
	return 0;
}

static void assert_calls(const struct dev *d, const struct call *want, int n)
{
	assert_int_equal(d->nr, n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(d->calls[i].off, want[i].off);
		assert_int_equal(d->calls[i].len, want[i].len);
		assert_int_equal(d->calls[i].write, want[i].write);
	}
}

static void assert_guards(const struct fixture *f)
{
	for (size_t i = 0; i < GUARD; i++) {
		assert_int_equal(f->ram0[i], (uint8_t)(i * 7 + 1));
		size_t j = GUARD + RAM0_SIZE + i;
		assert_int_equal(f->ram0[j], (uint8_t)(j * 7 + 1));
		assert_int_equal(f->ram1[i], 0x5A);
		assert_int_equal(f->ram1[GUARD + RAM1_SIZE + i], 0x5A);
	}
}

static void test_ram_read_write(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[100], out[100];

	for (int i = 0; i < 100; i++)
		out[i] = (uint8_t)(0xF0 ^ i);
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, RAM0_GPA + 0x123, out, 100, true), 0);
	assert_memory_equal(f->ram0 + GUARD + 0x123, out, 100);
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, RAM0_GPA + 0x123, buf, 100, false), 0);
	assert_memory_equal(buf, out, 100);
	/* the last byte of RAM0 */
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, DEV_GPA - 1, buf, 1, false), 0);
	assert_int_equal(buf[0], f->ram0[GUARD + RAM0_SIZE - 1]);
	assert_int_equal(f->dev.nr, 0);
	assert_guards(f);
}

/* 20 bytes at offset 3: [3,8) [8,16) [16,23). */
static void test_mmio_read_pieces(void **state)
{
	struct fixture *f = *state;
	static const struct call want[] = { { 3, 5, false }, { 8, 8, false }, { 16, 7, false } };
	uint8_t buf[20];

	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, DEV_GPA + 3, buf, 20, false), 0);
	assert_calls(&f->dev, want, 3);
	for (int i = 0; i < 20; i++)
		assert_int_equal(buf[i], 0x80 + 3 + i);
}

/* 13 bytes at offset 6: [6,8) [8,16) [16,19); nothing else changes. */
static void test_mmio_write_pieces(void **state)
{
	struct fixture *f = *state;
	static const struct call want[] = { { 6, 2, true }, { 8, 8, true }, { 16, 3, true } };
	uint8_t buf[13];

	for (int i = 0; i < 13; i++)
		buf[i] = (uint8_t)(0x10 + i);
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, DEV_GPA + 6, buf, 13, true), 0);
	assert_calls(&f->dev, want, 3);
	for (int i = 0; i < DEV_SIZE; i++)
		assert_int_equal(f->dev.regs[i], i >= 6 && i < 19 ? 0x10 + (i - 6) : 0x80 + i);
}

/* A whole 8-byte aligned register is one access (the common MMIO case). */
static void test_mmio_aligned_qword(void **state)
{
	struct fixture *f = *state;
	static const struct call want[] = { { 8, 8, false } };
	uint64_t v;

	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, DEV_GPA + 8, &v, 8, false), 0);
	assert_calls(&f->dev, want, 1);
	assert_int_equal(v, 0x8F8E8D8C8B8A8988ull);
}

static void test_unclaimed(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[24];

	memset(buf, 0, sizeof(buf));
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, 0x10000, buf, sizeof(buf), false), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xFF);
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, 0x10000, buf, sizeof(buf), true), 0);
	/* the device's end: [0x3018,0x3020) claimed, [0x3020,0x3028) not */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, DEV_GPA + 24, buf, 16, false), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(buf[i], 0x80 + 24 + i);
	for (int i = 8; i < 16; i++)
		assert_int_equal(buf[i], 0xFF);
	assert_int_equal(f->dev.nr, 1);
	assert_guards(f);
}

/* A piece no device claims whole goes bytewise: 0x4000..0x4007 holds an
 * odd 3-byte device at 0x4003. */
static void test_partial_piece(void **state)
{
	struct fixture *f = *state;
	static const struct call rd[] = { { 0, 1, false }, { 1, 1, false }, { 2, 1, false } };
	static const struct call wr[] = { { 0, 1, true }, { 1, 1, true }, { 2, 1, true } };
	uint8_t buf[8], in[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, 0x4000, buf, 8, false), 0);
	assert_calls(&f->odd, rd, 3);
	for (int i = 0; i < 8; i++)
		assert_int_equal(buf[i], i >= 3 && i < 6 ? 0x40 + (i - 3) : 0xFF);
	f->odd.nr = 0;
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, 0x4000, in, 8, true), 0);
	assert_calls(&f->odd, wr, 3);
	assert_int_equal(f->odd.regs[0], 4);
	assert_int_equal(f->odd.regs[2], 6);
	assert_int_equal(f->odd.regs[3], 0x43);
}

/* RAM then MMIO in one access: RAM0's end and the device, and RAM1 (5
 * bytes) with a device in the same 8-byte piece. */
static void test_ram_then_mmio(void **state)
{
	struct fixture *f = *state;
	static const struct call want_dev[] = { { 0, 4, true } };
	static const struct call want_tail[] = { { 0, 1, false }, { 1, 1, false }, { 2, 1, false } };
	uint8_t buf[8] = { 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7 };

	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, DEV_GPA - 4, buf, 8, true), 0);
	assert_memory_equal(f->ram0 + GUARD + RAM0_SIZE - 4, buf, 4);
	assert_calls(&f->dev, want_dev, 1);
	assert_memory_equal(f->dev.regs, buf + 4, 4);

	memset(buf, 0, sizeof(buf));
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, RAM1_GPA, buf, 8, false), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(buf[i], 0x5A);
	for (int i = 5; i < 8; i++)
		assert_int_equal(buf[i], 0x20 + (i - 5));
	assert_calls(&f->tail, want_tail, 3);
	assert_guards(f);
}

static void test_bad_ranges(void **state)
{
	struct fixture *f = *state;
	static uint8_t big[8192];
	uint8_t buf[16];

	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, RAM0_GPA, big, 4097, false), -EINVAL);
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, UINT64_MAX - 3, buf, 8, false), -EINVAL);
	/* the top of the address space, not wrapping: unclaimed */
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, UINT64_MAX - 15, buf, 15, false), 0);
	for (int i = 0; i < 15; i++)
		assert_int_equal(buf[i], 0xFF);
	assert_int_equal(x86_fallback_gpa_access(&f->mem, &f->bus, UINT64_MAX - 15, buf, 15, true), 0);
	assert_int_equal(f->dev.nr + f->odd.nr + f->tail.nr, 0);
	assert_guards(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ram_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio_read_pieces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio_write_pieces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mmio_aligned_qword, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unclaimed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_piece, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ram_then_mmio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_ranges, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
