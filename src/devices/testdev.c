/* The test device (--testdev only): lets tiny guests check port and MMIO
 * dispatch and end the VM with an exit status of their choosing.
 *
 * Ports X86_PORT_TESTDEV + :
 *   0x0  write: stop the VM, kvmlite exits with the value (0-255)
 *   0x4  32-bit scratch register; any width at any offset inside it
 *   0x8  read: number of port accesses served before this one
 * MMIO X86_TESTDEV_MMIO + (4 KiB):
 *   0x000 64-bit scratch register; any width at any offset inside it
 *   0x008 read: number of MMIO accesses served before this one
 *   >= 0x010 read-only pattern: byte at offset o reads (o & 0xFF) ^ 0xA5 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "layout.h"
#include "util.h"
#include "vm.h"

#define TESTDEV_PORTS 16
#define TESTDEV_MMIO_SIZE 0x1000

struct testdev {
	struct vm *vm;
	pthread_mutex_t lock;
	uint8_t pio_scratch[4];
	uint8_t mmio_scratch[8];
	uint64_t pio_count, mmio_count;
};

static void read_counter(uint8_t *data, uint32_t len, uint64_t count, unsigned byte)
{
	for (uint32_t i = 0; i < len; i++)
		data[i] = byte + i < 8 ? (uint8_t)(count >> ((byte + i) * 8)) : 0;
}

static void testdev_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct testdev *t = opaque;
	pthread_mutex_lock(&t->lock);
	uint64_t count = t->pio_count++;
	if (offset < 4) {
		if (is_write) {
			uint32_t code = 0;
			memcpy(&code, data, MIN(len, sizeof(code)));
			pthread_mutex_unlock(&t->lock);
			vm_stop(t->vm, VM_EXIT_TEST, (int)(code & 0xFF));
			return;
		}
		memset(data, 0, len);
	} else if (offset < 8) {
		for (uint32_t i = 0; i < len && offset + i < 8; i++) {
			uint8_t *reg = &t->pio_scratch[offset - 4 + i];
			if (is_write)
				*reg = data[i];
			else
				data[i] = *reg;
		}
	} else if (!is_write) {
		read_counter(data, len, count, (unsigned)(offset - 8));
	}
	pthread_mutex_unlock(&t->lock);
}

static void testdev_mmio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct testdev *t = opaque;
	pthread_mutex_lock(&t->lock);
	uint64_t count = t->mmio_count++;
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = offset + i;
		if (o < 8) {
			if (is_write)
				t->mmio_scratch[o] = data[i];
			else
				data[i] = t->mmio_scratch[o];
		} else if (!is_write) {
			data[i] = o < 16 ? (uint8_t)(count >> ((o - 8) * 8)) : (uint8_t)((o & 0xFF) ^ 0xA5);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

static void testdev_free(void *opaque)
{
	struct testdev *t = opaque;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static int testdev_init(struct vm *vm)
{
	if (!vm->cfg->testdev)
		return 0;
	struct testdev *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->vm = vm;
	pthread_mutex_init(&t->lock, NULL);
	int err = vm_on_destroy(vm, testdev_free, t);
	if (err) {
		testdev_free(t);
		return err;
	}
	err = bus_register(&vm->pio, X86_PORT_TESTDEV, TESTDEV_PORTS, testdev_pio, t, "testdev");
	if (err)
		return err;
	return bus_register(&vm->mmio, X86_TESTDEV_MMIO, TESTDEV_MMIO_SIZE, testdev_mmio, t, "testdev");
}

DEVICE_REGISTER(testdev, testdev_init);
