/* The guest's physical memory layout and the e820 map that describes it. */
#include "e820.h"

#include <errno.h>
#include <string.h>

#include "layout.h"
#include "util.h"

#define X86_MIN_RAM (2ULL << 20)

int x86_memory_layout(uint64_t ram_size, struct guest_memory *mem)
{
	if (ram_size < X86_MIN_RAM || ram_size % 4096)
		return -EINVAL;
	uint64_t low = MIN(ram_size, X86_MMIO_HOLE_START);
	uint64_t high = ram_size - low;
	if (high > UINT64_MAX - X86_MMIO_HOLE_END)
		return -EINVAL;

	memset(mem, 0, sizeof(*mem));
	mem->regions[0].gpa = 0;
	mem->regions[0].size = low;
	mem->nr_regions = 1;
	if (high) {
		mem->regions[1].gpa = X86_MMIO_HOLE_END;
		mem->regions[1].size = high;
		mem->nr_regions = 2;
	}
	return 0;
}

static void e820_add(struct e820_map *map, uint64_t addr, uint64_t size, uint32_t type)
{
	struct e820_entry *e = &map->entries[map->nr++];
	e->addr = addr;
	e->size = size;
	e->type = type;
}

int e820_build(const struct guest_memory *mem, struct e820_map *map)
{
	if (mem->nr_regions < 1 || mem->nr_regions > 2)
		return -EINVAL;
	const struct guest_region *low = &mem->regions[0];
	if (low->gpa != 0 || low->size < X86_HIGH_MEMORY || low->size > X86_MMIO_HOLE_START)
		return -EINVAL;
	if (mem->nr_regions == 2) {
		const struct guest_region *high = &mem->regions[1];
		if (high->gpa != X86_MMIO_HOLE_END || high->size == 0 ||
		    high->size > UINT64_MAX - high->gpa)
			return -EINVAL;
	}

	memset(map, 0, sizeof(*map));
	/* The EBDA/VGA/BIOS area stays reserved so the guest keeps its hands
	 * off the ACPI tables placed there. */
	e820_add(map, 0, X86_EBDA_START, E820_RAM);
	e820_add(map, X86_EBDA_START, X86_HIGH_MEMORY - X86_EBDA_START, E820_RESERVED);
	if (low->size > X86_HIGH_MEMORY)
		e820_add(map, X86_HIGH_MEMORY, low->size - X86_HIGH_MEMORY, E820_RAM);
	if (mem->nr_regions == 2)
		e820_add(map, mem->regions[1].gpa, mem->regions[1].size, E820_RAM);
	return 0;
}

int e820_reserve(struct e820_map *map, uint64_t addr, uint64_t size)
{
	if (size == 0 || addr > UINT64_MAX - size)
		return -EINVAL;
	if (map->nr >= E820_MAX_ENTRIES)
		return -ENOSPC;
	int i = 0;
	for (int j = 0; j < map->nr; j++) {
		const struct e820_entry *e = &map->entries[j];
		if (addr < e->addr + e->size && e->addr < addr + size)
			return -EINVAL;
		if (e->addr < addr)
			i = j + 1;
	}
	memmove(&map->entries[i + 1], &map->entries[i], (size_t)(map->nr - i) * sizeof(map->entries[0]));
	map->entries[i] = (struct e820_entry){ .addr = addr, .size = size, .type = E820_RESERVED };
	map->nr++;
	return 0;
}
