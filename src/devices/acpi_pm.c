/* ACPI fixed hardware: the PM1a event and control blocks. The guest powers
 * off by writing SLP_TYP = S5 with SLP_EN to PM1a_CNT. SMI_CMD is 0 in the
 * FADT, so ACPI mode is always on: SCI_EN reads as set. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "device.h"
#include "layout.h"
#include "vm.h"

#define PM1_SCI_EN       0x0001
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_TYP_MASK (7u << PM1_SLP_TYP_SHIFT)
#define PM1_SLP_EN       0x2000

struct acpi_pm {
	struct vm *vm;
	pthread_mutex_t lock;
	uint16_t status, enable, control;
};

static void reg16_access(uint16_t *reg, unsigned byte, uint8_t *data, bool is_write)
{
	unsigned shift = byte * 8;
	if (is_write)
		*reg = (uint16_t)((*reg & ~(0xFFu << shift)) | ((unsigned)*data << shift));
	else
		*data = (uint8_t)(*reg >> shift);
}

static void acpi_pm_evt_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct acpi_pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len && offset + i < 4; i++) {
		unsigned off = (unsigned)(offset + i);
		if (off < 2) {
			if (is_write) /* status bits are write-one-to-clear */
				pm->status &= (uint16_t)~((unsigned)data[i] << (off * 8));
			else
				data[i] = (uint8_t)(pm->status >> (off * 8));
		} else {
			reg16_access(&pm->enable, off - 2, &data[i], is_write);
		}
	}
	pthread_mutex_unlock(&pm->lock);
}

static void acpi_pm_cnt_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct acpi_pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	for (uint32_t i = 0; i < len && offset + i < 2; i++)
		reg16_access(&pm->control, (unsigned)(offset + i), &data[i], is_write);
	uint16_t control = pm->control;
	pm->control &= (uint16_t)~PM1_SLP_EN; /* SLP_EN always reads 0 */
	pm->control |= PM1_SCI_EN;
	pthread_mutex_unlock(&pm->lock);

	if (is_write && (control & PM1_SLP_EN) &&
	    ((control & PM1_SLP_TYP_MASK) >> PM1_SLP_TYP_SHIFT) == X86_ACPI_SLP_TYP_S5)
		vm_stop(pm->vm, VM_EXIT_POWEROFF, 0);
}

static void acpi_pm_free(void *opaque)
{
	struct acpi_pm *pm = opaque;
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

static int acpi_pm_init(struct vm *vm)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	pm->vm = vm;
	pm->control = PM1_SCI_EN;
	pthread_mutex_init(&pm->lock, NULL);
	int err = vm_on_destroy(vm, acpi_pm_free, pm);
	if (err) {
		acpi_pm_free(pm);
		return err;
	}
	err = bus_register(&vm->pio, X86_PORT_ACPI_PM1A_EVT, 4, acpi_pm_evt_io, pm, "acpi-pm1a-evt");
	if (err)
		return err;
	return bus_register(&vm->pio, X86_PORT_ACPI_PM1A_CNT, 2, acpi_pm_cnt_io, pm, "acpi-pm1a-cnt");
}

DEVICE_REGISTER(acpi_pm, acpi_pm_init);
