/* The BIOS-style memory map handed to the guest (boot_params, PVH memmap). */
#ifndef KVMLITE_X86_E820_H
#define KVMLITE_X86_E820_H

#include <stdint.h>

#include "memory.h"

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3

#define E820_MAX_ENTRIES 16

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

struct e820_map {
	struct e820_entry entries[E820_MAX_ENTRIES];
	int nr;
};

/* The memory map for guest RAM laid out by x86_memory_layout(): low RAM
 * minus the EBDA/VGA/BIOS hole below 1 MiB, and RAM above 4 GiB.
 * -EINVAL unless region 0 is [0, >= 1 MiB) ending by X86_MMIO_HOLE_START
 * and an optional region 1 starts at 4 GiB. */
int e820_build(const struct guest_memory *mem, struct e820_map *map);

/* Adds a reserved range for platform MMIO the OS must leave alone (the PCI
 * ECAM, which Linux only trusts when e820 or ACPI reserves it), in address
 * order. -EINVAL if empty, wrapping or overlapping an entry; -ENOSPC when
 * the map is full. */
int e820_reserve(struct e820_map *map, uint64_t addr, uint64_t size);

/* Guest-physical RAM regions for ram_size bytes: region 0 is
 * [0, min(ram_size, X86_MMIO_HOLE_START)), region 1 the rest from 4 GiB.
 * hva is left NULL. -EINVAL if ram_size < 2 MiB or not 4 KiB-aligned. */
int x86_memory_layout(uint64_t ram_size, struct guest_memory *mem);

#endif
