/* The PIIX reset control register at 0xCF9: the FADT's RESET_REG, which
 * Linux tries first on reboot. It sits inside the PCI configuration ports
 * 0xCF8-0xCFF, so the x86 PCI glue (arch/x86/pci_x86.c) owns those ports
 * and hands byte accesses to 0xCF9 here. */
#include <string.h>

#include "vm.h"

#define RESET_CPU 0x04 /* with "system reset" (0x02): 0x06, the FADT's RESET_VALUE */

void x86_reset_control_io(struct vm *vm, uint8_t *data, uint32_t len, bool is_write)
{
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	if (data[0] & RESET_CPU)
		vm_stop(vm, VM_EXIT_RESET, 0);
}
