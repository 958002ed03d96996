/* pvpanic: the guest writes here when it panics (Linux's pvpanic driver,
 * ACPI device QEMU0001), so kvmlite can exit with a failure status instead
 * of waiting for a guest that will never power off. */
#include "device.h"
#include "layout.h"
#include "log.h"
#include "vm.h"

#define PVPANIC_PANICKED     0x01
#define PVPANIC_CRASH_LOADED 0x02

static void pvpanic_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm *vm = opaque;
	if (!is_write) {
		data[0] = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED; /* what we understand */
		return;
	}
	if (data[0] & PVPANIC_PANICKED)
		vm_stop(vm, VM_EXIT_PANIC, 0);
	else if (data[0] & PVPANIC_CRASH_LOADED)
		log_warn("guest panicked and is loading a crash kernel");
}

static int pvpanic_init(struct vm *vm)
{
	return bus_register(&vm->pio, X86_PORT_PVPANIC, 1, pvpanic_io, vm, "pvpanic");
}

DEVICE_REGISTER(pvpanic, pvpanic_init);
