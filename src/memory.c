#include "memory.h"

#include <errno.h>
#include <string.h>

void *guest_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	for (int i = 0; i < mem->nr_regions; i++) {
		const struct guest_region *r = &mem->regions[i];
		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		if (off >= r->size || len > r->size - off)
			continue;
		return r->hva + off;
	}
	return NULL;
}

int guest_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = guest_ptr(mem, gpa, len);
	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int guest_read(const struct guest_memory *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = guest_ptr(mem, gpa, len);
	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

uint64_t guest_ram_size(const struct guest_memory *mem)
{
	uint64_t total = 0;
	for (int i = 0; i < mem->nr_regions; i++)
		total += mem->regions[i].size;
	return total;
}
