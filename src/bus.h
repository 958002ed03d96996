/* An I/O bus: address ranges mapped to device callbacks. Devices register
 * while the VM is built; bus_seal() sorts the ranges and freezes the bus, so
 * vCPU threads look up without taking any lock. */
#ifndef KVMLITE_BUS_H
#define KVMLITE_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* offset is relative to the range base; data holds len bytes (1..8),
 * little-endian; on a read the callback fills it. */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_io_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	struct bus_range *ranges;
	size_t nr, cap;
	bool sealed;
};

/* 0, or -EINVAL (empty/overflowing range), -EEXIST (overlap), -EBUSY (sealed), -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque, const char *name);
void bus_seal(struct bus *bus);
void bus_free(struct bus *bus);

/* The range holding all of [addr, addr + len), or NULL. */
const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, uint32_t len);

/* Calls the device; -ENOENT when no device claims the access (the caller
 * decides what an unclaimed access means). */
int bus_dispatch(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
