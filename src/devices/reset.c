/* The PIIX reset control register at 0xCF9: the FADT's RESET_REG, which
 * Linux tries first on reboot. */
#include "device.h"
#include "layout.h"
#include "vm.h"

#define RESET_CPU 0x04 /* with "system reset" (0x02): 0x06, the FADT's RESET_VALUE */

static void reset_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm *vm = opaque;
	if (!is_write) {
		data[0] = 0;
		return;
	}
	if (data[0] & RESET_CPU)
		vm_stop(vm, VM_EXIT_RESET, 0);
}

static int reset_init(struct vm *vm)
{
	return bus_register(&vm->pio, X86_PORT_RESET, 1, reset_io, vm, "reset");
}

DEVICE_REGISTER(reset, reset_init);
