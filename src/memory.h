/* Guest physical memory: a few regions, each backed by one host mapping.
 * Every access the VMM makes on behalf of the guest goes through guest_ptr(),
 * which refuses any range not wholly inside one region. */
#ifndef KVMLITE_MEMORY_H
#define KVMLITE_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_MAX_REGIONS 4

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_memory {
	struct guest_region regions[GUEST_MAX_REGIONS];
	int nr_regions;
};

/* Host pointer for [gpa, gpa + len), or NULL if any byte of it is outside
 * guest RAM (overflow-safe; len 0 is treated as 1). */
void *guest_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* Copy to/from guest RAM; -EFAULT if the range is not all RAM. */
int guest_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len);
int guest_read(const struct guest_memory *mem, uint64_t gpa, void *dst, uint64_t len);

/* Total bytes of RAM. */
uint64_t guest_ram_size(const struct guest_memory *mem);

#endif
