/* The PC keyboard controller, reduced to what guests use it for here:
 * pulsing the reset line (command 0xFE), as Linux's reboot=k does. The
 * FADT says there is no 8042, so no driver probes it for a keyboard. */
#include "device.h"
#include "layout.h"
#include "vm.h"

#define I8042_CMD_RESET 0xFE

static void i8042_data_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	if (!is_write)
		data[0] = 0; /* no keyboard: never any data */
}

static void i8042_cmd_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct vm *vm = opaque;
	if (!is_write) {
		/* Status 0: both buffers empty, so a guest waiting to send a
		 * command never spins. */
		data[0] = 0;
		return;
	}
	if (data[0] == I8042_CMD_RESET)
		vm_stop(vm, VM_EXIT_RESET, 0);
}

static int i8042_init(struct vm *vm)
{
	/* Port 0x61, between the two, is the PIT's speaker port, in KVM. */
	int err = bus_register(&vm->pio, X86_PORT_I8042_DATA, 1, i8042_data_io, vm, "i8042");
	if (err)
		return err;
	return bus_register(&vm->pio, X86_PORT_I8042_CMD, 1, i8042_cmd_io, vm, "i8042");
}

DEVICE_REGISTER(i8042, i8042_init);
