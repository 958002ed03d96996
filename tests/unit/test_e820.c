/* x86 guest memory layout and e820 map. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "e820.h"
#include "layout.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static void expect_entry(const struct e820_map *map, int i, uint64_t addr, uint64_t size, uint32_t type)
{
	assert_true(i < map->nr);
	assert_int_equal(map->entries[i].addr, addr);
	assert_int_equal(map->entries[i].size, size);
	assert_int_equal(map->entries[i].type, type);
}

/* Builds the layout and map for ram bytes and checks the invariants every
 * size shares: low map, RAM total, entries sorted and disjoint. */
static void check_layout(uint64_t ram, struct guest_memory *mem, struct e820_map *map)
{
	assert_int_equal(x86_memory_layout(ram, mem), 0);
	assert_int_equal(guest_ram_size(mem), ram);
	assert_int_equal(e820_build(mem, map), 0);

	expect_entry(map, 0, 0, X86_EBDA_START, E820_RAM);
	expect_entry(map, 1, X86_EBDA_START, X86_HIGH_MEMORY - X86_EBDA_START, E820_RESERVED);
	uint64_t ram_total = 0;
	for (int i = 0; i < map->nr; i++) {
		if (map->entries[i].type == E820_RAM)
			ram_total += map->entries[i].size;
		if (i > 0)
			assert_true(map->entries[i].addr >= map->entries[i - 1].addr + map->entries[i - 1].size);
	}
	/* All RAM is in the map except the reserved hole below 1 MiB. */
	assert_int_equal(ram_total, ram - (X86_HIGH_MEMORY - X86_EBDA_START));
	for (int i = 0; i < mem->nr_regions; i++)
		assert_null(mem->regions[i].hva);
}

static void test_512m(void **state)
{
	struct guest_memory mem;
	struct e820_map map;
	check_layout(512 * MiB, &mem, &map);
	assert_int_equal(mem.nr_regions, 1);
	assert_int_equal(mem.regions[0].gpa, 0);
	assert_int_equal(mem.regions[0].size, 512 * MiB);
	assert_int_equal(map.nr, 3);
	expect_entry(&map, 2, MiB, 511 * MiB, E820_RAM);
}

static void test_3g_fills_low_region(void **state)
{
	struct guest_memory mem;
	struct e820_map map;
	check_layout(3 * GiB, &mem, &map);
	assert_int_equal(mem.nr_regions, 1);
	assert_int_equal(mem.regions[0].size, X86_MMIO_HOLE_START);
	assert_int_equal(map.nr, 3);
	expect_entry(&map, 2, MiB, 3 * GiB - MiB, E820_RAM);
}

static void test_4g_splits_around_hole(void **state)
{
	struct guest_memory mem;
	struct e820_map map;
	check_layout(4 * GiB, &mem, &map);
	assert_int_equal(mem.nr_regions, 2);
	assert_int_equal(mem.regions[0].size, 3 * GiB);
	assert_int_equal(mem.regions[1].gpa, 4 * GiB);
	assert_int_equal(mem.regions[1].size, GiB);
	assert_int_equal(map.nr, 4);
	expect_entry(&map, 3, 4 * GiB, GiB, E820_RAM);
}

static void test_6g(void **state)
{
	struct guest_memory mem;
	struct e820_map map;
	check_layout(6 * GiB, &mem, &map);
	assert_int_equal(mem.nr_regions, 2);
	assert_int_equal(mem.regions[1].gpa, X86_MMIO_HOLE_END);
	assert_int_equal(mem.regions[1].size, 6 * GiB - X86_MMIO_HOLE_START);
	expect_entry(&map, 3, 4 * GiB, 3 * GiB, E820_RAM);
}

static void test_smallest(void **state)
{
	struct guest_memory mem;
	struct e820_map map;
	check_layout(2 * MiB, &mem, &map);
	assert_int_equal(map.nr, 3);
	expect_entry(&map, 2, MiB, MiB, E820_RAM);
}

static void test_invalid_sizes(void **state)
{
	struct guest_memory mem;
	const uint64_t bad[] = { 0, 4096, MiB, 2 * MiB - 4096, 2 * MiB + 1, 512 * MiB + 2048,
				 UINT64_MAX & ~0xfffULL };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(x86_memory_layout(bad[i], &mem), -EINVAL);
}

static void test_build_rejects_bad_regions(void **state)
{
	struct guest_memory mem;
	struct e820_map map;

	memset(&mem, 0, sizeof(mem));
	assert_int_equal(e820_build(&mem, &map), -EINVAL); /* no region */

	mem.nr_regions = 1;
	mem.regions[0] = (struct guest_region){ .gpa = 4096, .size = 64 * MiB };
	assert_int_equal(e820_build(&mem, &map), -EINVAL); /* not at 0 */
	mem.regions[0] = (struct guest_region){ .gpa = 0, .size = MiB - 4096 };
	assert_int_equal(e820_build(&mem, &map), -EINVAL); /* below 1 MiB */
	mem.regions[0] = (struct guest_region){ .gpa = 0, .size = X86_MMIO_HOLE_START + 4096 };
	assert_int_equal(e820_build(&mem, &map), -EINVAL); /* into the hole */

	mem.regions[0] = (struct guest_region){ .gpa = 0, .size = 64 * MiB };
	mem.nr_regions = 2;
	mem.regions[1] = (struct guest_region){ .gpa = 3 * GiB, .size = MiB };
	assert_int_equal(e820_build(&mem, &map), -EINVAL); /* high region not at 4 GiB */
	mem.regions[1] = (struct guest_region){ .gpa = 4 * GiB, .size = UINT64_MAX - 2 * GiB };
	assert_int_equal(e820_build(&mem, &map), -EINVAL); /* wraps */
	mem.nr_regions = 3;
	assert_int_equal(e820_build(&mem, &map), -EINVAL);

	mem.nr_regions = 1; /* and the minimal valid one */
	mem.regions[0] = (struct guest_region){ .gpa = 0, .size = MiB };
	assert_int_equal(e820_build(&mem, &map), 0);
	assert_int_equal(map.nr, 2);
}

/* The platform reserves the PCI ECAM in every map: sorted into place,
 * outside RAM, for small and large guests. */
static void check_ecam_reserved(uint64_t ram, int want_index)
{
	struct guest_memory mem;
	struct e820_map map;
	check_layout(ram, &mem, &map);
	int nr = map.nr;
	assert_int_equal(e820_reserve(&map, X86_PCI_ECAM, X86_PCI_ECAM_SIZE), 0);
	assert_int_equal(map.nr, nr + 1);
	expect_entry(&map, want_index, X86_PCI_ECAM, X86_PCI_ECAM_SIZE, E820_RESERVED);
	for (int i = 1; i < map.nr; i++)
		assert_true(map.entries[i].addr >= map.entries[i - 1].addr + map.entries[i - 1].size);
	/* Twice is an overlap. */
	assert_int_equal(e820_reserve(&map, X86_PCI_ECAM, X86_PCI_ECAM_SIZE), -EINVAL);
	assert_int_equal(map.nr, nr + 1);
}

static void test_reserve_ecam(void **state)
{
	check_ecam_reserved(2 * MiB, 3);
	check_ecam_reserved(512 * MiB, 3);
	check_ecam_reserved(3 * GiB, 3);
	check_ecam_reserved(4 * GiB, 3);      /* between low RAM and RAM above 4 GiB */
	check_ecam_reserved(6 * GiB, 3);
}

static void test_reserve_rejects(void **state)
{
	struct guest_memory mem;
	struct e820_map map;
	check_layout(512 * MiB, &mem, &map);
	assert_int_equal(e820_reserve(&map, 64 * MiB, MiB), -EINVAL);          /* inside RAM */
	assert_int_equal(e820_reserve(&map, X86_EBDA_START - 4096, 8192), -EINVAL); /* straddles */
	assert_int_equal(e820_reserve(&map, 3 * GiB, 0), -EINVAL);
	assert_int_equal(e820_reserve(&map, UINT64_MAX - 4095, 8192), -EINVAL); /* wraps */
	assert_int_equal(map.nr, 3);
	/* Below everything else is not possible (RAM starts at 0); above it is. */
	assert_int_equal(e820_reserve(&map, 0xFEC00000ULL, 4096), 0);
	expect_entry(&map, 3, 0xFEC00000ULL, 4096, E820_RESERVED);
	/* Fills up. */
	int added = 0;
	for (uint64_t a = 3 * GiB; map.nr < E820_MAX_ENTRIES; a += 2 * 4096, added++)
		assert_int_equal(e820_reserve(&map, a, 4096), 0);
	assert_int_equal(e820_reserve(&map, 2 * GiB + 4096ULL * 3, 4096), -ENOSPC);
	for (int i = 1; i < map.nr; i++)
		assert_true(map.entries[i].addr > map.entries[i - 1].addr);
	assert_true(added > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_512m),
		cmocka_unit_test(test_3g_fills_low_region),
		cmocka_unit_test(test_4g_splits_around_hole),
		cmocka_unit_test(test_6g),
		cmocka_unit_test(test_smallest),
		cmocka_unit_test(test_invalid_sizes),
		cmocka_unit_test(test_build_rejects_bad_regions),
		cmocka_unit_test(test_reserve_ecam),
		cmocka_unit_test(test_reserve_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
