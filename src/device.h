/* Self-registering devices: each device file ends with DEVICE_REGISTER(),
 * which puts its descriptor in a linker section; vm_create() calls every
 * init in turn. Adding a device never means editing a central list. */
#ifndef KVMLITE_DEVICE_H
#define KVMLITE_DEVICE_H

struct vm;

struct device_desc {
	const char *name;
	/* Registers the device's bus ranges and hooks; 0, or negative errno.
	 * A device that the configuration leaves out returns 0 and does nothing. */
	int (*init)(struct vm *vm);
};

#define DEVICE_REGISTER(id, init_fn)                                            \
	static const struct device_desc device_desc_##id                         \
		__attribute__((used, section("kvmlite_devices"), aligned(8))) = { #id, init_fn }

extern const struct device_desc __start_kvmlite_devices[];
extern const struct device_desc __stop_kvmlite_devices[];

#define for_each_device(d) \
	for (const struct device_desc *d = __start_kvmlite_devices; d < __stop_kvmlite_devices; d++)

#endif
