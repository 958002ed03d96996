#include "bus.h"

#include <errno.h>
#include <stdlib.h>

static int range_cmp(const void *a, const void *b)
{
	const struct bus_range *x = a, *y = b;
	return x->base < y->base ? -1 : x->base > y->base;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque, const char *name)
{
	if (bus->sealed)
		return -EBUSY;
	if (len == 0 || base + len < base || !fn)
		return -EINVAL;
	for (size_t i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
	}
	if (bus->nr == bus->cap) {
		size_t cap = bus->cap ? bus->cap * 2 : 8;
		struct bus_range *n = realloc(bus->ranges, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		bus->ranges = n;
		bus->cap = cap;
	}
	bus->ranges[bus->nr++] = (struct bus_range){ base, len, fn, opaque, name };
	return 0;
}

void bus_seal(struct bus *bus)
{
	if (bus->nr)
		qsort(bus->ranges, bus->nr, sizeof(*bus->ranges), range_cmp);
	bus->sealed = true;
}

void bus_free(struct bus *bus)
{
	free(bus->ranges);
	*bus = (struct bus){ 0 };
}

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, uint32_t len)
{
	size_t lo = 0, hi = bus->nr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return (len <= r->len - (addr - r->base)) ? r : NULL;
	}
	return NULL;
}

int bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	const struct bus_range *r = bus_find(bus, addr, len);
	if (!r)
		return -ENOENT;
	r->fn(r->opaque, addr - r->base, data, len, is_write);
	return 0;
}
