/* PCI bus 0 without KVM: a VM struct with no KVM fds, the host bridge and a
 * fake device laid out like a virtio one (two vendor capabilities, a 32 KiB
 * BAR 0 with the MSI-X table at 0x4000 and the PBA at 0x6000). Every
 * access goes through the port and MMIO buses, as a vCPU's would. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "layout.h"
#include "pci.h"
#include "vm.h"

#define FAKE_BAR_SIZE   0x8000
#define FAKE_VECTORS    3
#define FAKE_TABLE      0x4000
#define FAKE_PBA        0x6000
#define CAP_VNDR_LEN    16

struct fake {
	struct pci_device pci;
	uint8_t mem[FAKE_BAR_SIZE];
	int bar_calls;
	int moves;
	int moved_bar;
	uint64_t moved_old, moved_new;
	int cfg_calls;
	uint32_t cfg_offset, cfg_len;
	bool cfg_write;
};

struct fixture {
	struct vm vm;
	struct fake dev;
};

static void fake_bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct fake *f = opaque;
	f->bar_calls++;
	assert_true(offset + len <= FAKE_BAR_SIZE);
	if (is_write)
		memcpy(f->mem + offset, data, len);
	else
		memcpy(data, f->mem + offset, len);
}

static void fake_bar_moved(struct pci_device *dev, int bar, uint64_t old_addr, uint64_t new_addr)
{
	struct fake *f = (struct fake *)dev;
	f->moves++;
	f->moved_bar = bar;
	f->moved_old = old_addr;
	f->moved_new = new_addr;
}

static void fake_cfg_access(struct pci_device *dev, uint32_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct fake *f = (struct fake *)dev;
	f->cfg_calls++;
	f->cfg_offset = offset;
	f->cfg_len = len;
	f->cfg_write = is_write;
	if (!is_write)
		memset(data, 0x5A, len);
}

static const struct pci_device_ops fake_ops = {
	.cfg_access = fake_cfg_access,
	.bar_moved = fake_bar_moved,
};

static void fake_build(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->pci.name = "fake";
	f->pci.ops = &fake_ops;
	pci_cfg_set_ids(&f->pci, 0x1af4, 0x1041, 0x1af4, 0x1100, 1, 0x020000);
	assert_int_equal(pci_cfg_add_cap(&f->pci, PCI_CAP_ID_VNDR, CAP_VNDR_LEN), 0x40);
	assert_int_equal(pci_cfg_add_cap(&f->pci, PCI_CAP_ID_VNDR, CAP_VNDR_LEN), 0x50);
	pci_cfg_set_bar(&f->pci, 0, FAKE_BAR_SIZE, fake_bar_io, f);
	assert_int_equal(pci_msix_init(&f->pci, FAKE_VECTORS, 0, FAKE_TABLE, FAKE_PBA), 0);
}

static void vm_init_fake(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_fd = vm->console_out_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->state_changed, NULL);
	assert_int_equal(pci_host_init(vm), 0);
	assert_non_null(vm->pci);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	vm_init_fake(&fx->vm);
	fake_build(&fx->dev);
	assert_int_equal(pci_device_add(&fx->vm, &fx->dev.pci), 0);
	bus_seal(&fx->vm.pio);
	bus_seal(&fx->vm.mmio);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	vm_destroy(&fx->vm);
	assert_null(fx->vm.pci);
	free(fx);
	return 0;
}

/* ---- Accessors, the way a guest reaches config space ---- */

static uint64_t ecam_addr(int slot, int fn, uint32_t reg)
{
	return X86_PCI_ECAM + ((uint64_t)slot << 15) + ((uint64_t)fn << 12) + reg;
}

static uint64_t ecam_read(struct vm *vm, int slot, uint32_t reg, uint32_t len)
{
	uint8_t data[8] = { 0 };
	uint64_t v = 0;
	assert_int_equal(bus_dispatch(&vm->mmio, ecam_addr(slot, 0, reg), data, len, false), 0);
	memcpy(&v, data, len);
	return v;
}

static void ecam_write(struct vm *vm, int slot, uint32_t reg, uint64_t v, uint32_t len)
{
	uint8_t data[8];
	memcpy(data, &v, sizeof(data));
	assert_int_equal(bus_dispatch(&vm->mmio, ecam_addr(slot, 0, reg), data, len, true), 0);
}

static uint32_t port_read(struct vm *vm, uint16_t port, uint32_t len)
{
	uint8_t data[4] = { 0 };
	uint32_t v = 0;
	if (bus_dispatch(&vm->pio, port, data, len, false) == -ENOENT)
		memset(data, 0xff, len);
	memcpy(&v, data, len);
	return v;
}

static void port_write(struct vm *vm, uint16_t port, uint32_t v, uint32_t len)
{
	uint8_t data[4];
	memcpy(data, &v, sizeof(data));
	bus_dispatch(&vm->pio, port, data, len, true);
}

static uint32_t cf8_address(int bus, int slot, int fn, uint32_t reg)
{
	return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)slot << 11 | (uint32_t)fn << 8 | (reg & 0xfc);
}

static uint64_t mmio_read(struct vm *vm, uint64_t addr, uint32_t len)
{
	uint8_t data[8] = { 0 };
	uint64_t v = 0;
	assert_int_equal(bus_dispatch(&vm->mmio, addr, data, len, false), 0);
	memcpy(&v, data, len);
	return v;
}

static void mmio_write(struct vm *vm, uint64_t addr, uint64_t v, uint32_t len)
{
	uint8_t data[8];
	memcpy(data, &v, sizeof(data));
	assert_int_equal(bus_dispatch(&vm->mmio, addr, data, len, true), 0);
}

static uint64_t bar0(struct fixture *fx)
{
	return ecam_read(&fx->vm, 1, PCI_BAR0, 4) & ~0xfULL;
}

static void enable_memory(struct fixture *fx)
{
	ecam_write(&fx->vm, 1, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

/* ---- Host bridge, empty slots, the x86 mechanism ---- */

static void test_host_bridge(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	assert_int_equal(ecam_read(vm, 0, PCI_VENDOR_ID, 2), 0x1b36);
	assert_int_equal(ecam_read(vm, 0, PCI_DEVICE_ID, 2), 0x0008);
	assert_int_equal(ecam_read(vm, 0, PCI_REVISION_ID, 4) >> 8, 0x060000);
	assert_int_equal(ecam_read(vm, 0, PCI_HEADER_TYPE, 1), 0);
	assert_int_equal(ecam_read(vm, 0, PCI_INTERRUPT_PIN, 1), 0);

	/* The same through 0xCF8/0xCFC, at every byte lane. */
	port_write(vm, 0xCF8, cf8_address(0, 0, 0, 0), 4);
	assert_int_equal(port_read(vm, 0xCF8, 4), 0x80000000);
	assert_int_equal(port_read(vm, 0xCFC, 4), 0x00081b36);
	assert_int_equal(port_read(vm, 0xCFC, 2), 0x1b36);
	assert_int_equal(port_read(vm, 0xCFE, 2), 0x0008);
	assert_int_equal(port_read(vm, 0xCFD, 1), 0x1b);
	port_write(vm, 0xCF8, cf8_address(0, 0, 0, 0x08), 4);
	assert_int_equal(port_read(vm, 0xCFF, 1), 0x06);
	/* The register's low two bits and reserved bits read as 0. */
	port_write(vm, 0xCF8, 0xFFFFFFFF, 4);
	assert_int_equal(port_read(vm, 0xCF8, 4), 0x80FFFFFC);
	/* Enable bit clear: data port floats. */
	port_write(vm, 0xCF8, 0, 4);
	assert_int_equal(port_read(vm, 0xCFC, 4), 0xFFFFFFFF);
}

static void test_empty_slots_read_ones(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	for (int slot = 2; slot < 32; slot++)
		assert_int_equal(ecam_read(vm, slot, 0, 4), 0xFFFFFFFF);
	/* Functions 1..7 and other buses do not exist. */
	uint8_t d[4];
	assert_int_equal(bus_dispatch(&vm->mmio, ecam_addr(1, 3, 0), d, 4, false), 0);
	assert_int_equal(d[0] & d[1] & d[2] & d[3], 0xff);
	port_write(vm, 0xCF8, cf8_address(1, 0, 0, 0), 4);
	assert_int_equal(port_read(vm, 0xCFC, 4), 0xFFFFFFFF);
	port_write(vm, 0xCF8, cf8_address(0, 0, 2, 0), 4);
	assert_int_equal(port_read(vm, 0xCFC, 4), 0xFFFFFFFF);
	/* Writing an empty slot changes nothing anywhere. */
	ecam_write(vm, 9, PCI_COMMAND, 0xFFFF, 2);
	assert_int_equal(ecam_read(vm, 9, PCI_COMMAND, 2), 0xFFFF);
}

static void test_device_header(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	assert_int_equal(fx->dev.pci.slot, 1);
	assert_int_equal(ecam_read(vm, 1, PCI_VENDOR_ID, 4), 0x10411af4);
	assert_int_equal(ecam_read(vm, 1, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x11001af4);
	assert_int_equal(ecam_read(vm, 1, PCI_REVISION_ID, 4), 0x02000001);
	assert_int_equal(ecam_read(vm, 1, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(ecam_read(vm, 1, PCI_INTERRUPT_LINE, 1), 17);   /* 16 + 1 % 8 */
	assert_int_equal(fx->dev.pci.intx_gsi, 17);
	assert_int_equal(ecam_read(vm, 1, PCI_COMMAND, 2), 0);
	assert_int_not_equal(ecam_read(vm, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
	/* BAR 0 placed in the window, naturally aligned, not decoding yet. */
	uint64_t addr = bar0(fx);
	assert_true(addr >= X86_PCI_MMIO_START && addr + FAKE_BAR_SIZE <= X86_PCI_MMIO_START + X86_PCI_MMIO_SIZE);
	assert_int_equal(addr % FAKE_BAR_SIZE, 0);
	assert_int_equal(fx->dev.pci.bars[0].addr, addr);
	assert_false(fx->dev.pci.bars[0].mapped);
	for (int i = 1; i < PCI_NR_BARS; i++)
		assert_int_equal(ecam_read(vm, 1, PCI_BAR0 + 4 * (uint32_t)i, 4), 0);
	assert_int_equal(mmio_read(vm, addr, 4), 0xFFFFFFFF);
	assert_int_equal(fx->dev.bar_calls, 0);
}

/* ---- BARs ---- */

static void test_bar_sizing(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	uint64_t addr = bar0(fx);
	ecam_write(vm, 1, PCI_BAR0, 0xFFFFFFFF, 4);
	assert_int_equal(ecam_read(vm, 1, PCI_BAR0, 4), (uint32_t)~(FAKE_BAR_SIZE - 1));
	/* Unimplemented BARs size as 0. */
	ecam_write(vm, 1, PCI_BAR0 + 4, 0xFFFFFFFF, 4);
	assert_int_equal(ecam_read(vm, 1, PCI_BAR0 + 4, 4), 0);
	ecam_write(vm, 1, PCI_BAR0, addr, 4);
	assert_int_equal(bar0(fx), addr);
	assert_int_equal(fx->dev.moves, 0);    /* decode was off throughout */
	/* The expansion ROM BAR is not implemented. */
	ecam_write(vm, 1, 0x30, 0xFFFFFFFF, 4);
	assert_int_equal(ecam_read(vm, 1, 0x30, 4), 0);
}

static void test_bar_decode_and_move(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	uint64_t addr = bar0(fx);

	enable_memory(fx);
	assert_int_equal(fx->dev.moves, 1);
	assert_int_equal(fx->dev.moved_bar, 0);
	assert_int_equal(fx->dev.moved_old, 0);
	assert_int_equal(fx->dev.moved_new, addr);
	assert_true(fx->dev.pci.bars[0].mapped);
	mmio_write(vm, addr + 0x10, 0x1122334455667788ULL, 8);
	assert_int_equal(mmio_read(vm, addr + 0x10, 4), 0x55667788);
	assert_memory_equal(fx->dev.mem + 0x10, "\x88\x77\x66\x55\x44\x33\x22\x11", 8);

	/* Moved by the guest while decoding. */
	uint64_t moved = X86_PCI_MMIO_START + 0x100000;
	ecam_write(vm, 1, PCI_BAR0, moved, 4);
	assert_int_equal(fx->dev.moves, 2);
	assert_int_equal(fx->dev.moved_old, addr);
	assert_int_equal(fx->dev.moved_new, moved);
	assert_int_equal(mmio_read(vm, addr + 0x10, 4), 0xFFFFFFFF);
	assert_int_equal(mmio_read(vm, moved + 0x10, 4), 0x55667788);
	/* The last bytes of the BAR are its own; an access past the end is not. */
	fx->dev.mem[FAKE_BAR_SIZE - 1] = 0xAB;
	assert_int_equal(mmio_read(vm, moved + FAKE_BAR_SIZE - 1, 1), 0xAB);
	assert_int_equal(mmio_read(vm, moved + FAKE_BAR_SIZE - 2, 4), 0xFFFFFFFF);

	/* Decode off: unmapped. */
	ecam_write(vm, 1, PCI_COMMAND, 0, 2);
	assert_int_equal(fx->dev.moves, 3);
	assert_int_equal(fx->dev.moved_old, moved);
	assert_int_equal(fx->dev.moved_new, 0);
	assert_int_equal(mmio_read(vm, moved + 0x10, 4), 0xFFFFFFFF);

	/* Outside the window the BAR does not decode, even enabled. */
	ecam_write(vm, 1, PCI_BAR0, 0xF0000000, 4);
	enable_memory(fx);
	assert_int_equal(fx->dev.moves, 3);
	assert_false(fx->dev.pci.bars[0].mapped);
	/* Back in: mapped again, one call. */
	ecam_write(vm, 1, PCI_BAR0, addr, 4);
	assert_int_equal(fx->dev.moves, 4);
	assert_int_equal(fx->dev.moved_old, 0);
	assert_int_equal(fx->dev.moved_new, addr);
	/* Writing the same command again moves nothing. */
	enable_memory(fx);
	assert_int_equal(fx->dev.moves, 4);
}

/* ---- Write masks ---- */

static void test_read_only_fields(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	ecam_write(vm, 1, PCI_VENDOR_ID, 0xdeadbeef, 4);
	ecam_write(vm, 1, PCI_REVISION_ID, 0xdeadbeef, 4);
	ecam_write(vm, 1, PCI_SUBSYSTEM_VENDOR_ID, 0xdeadbeef, 4);
	ecam_write(vm, 1, PCI_CAPABILITY_LIST, 0xff, 1);
	ecam_write(vm, 1, PCI_HEADER_TYPE, 0x80, 1);
	ecam_write(vm, 1, PCI_INTERRUPT_LINE, 0xffff, 2);
	assert_int_equal(ecam_read(vm, 1, PCI_VENDOR_ID, 4), 0x10411af4);
	assert_int_equal(ecam_read(vm, 1, PCI_REVISION_ID, 4), 0x02000001);
	assert_int_equal(ecam_read(vm, 1, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x11001af4);
	assert_int_equal(ecam_read(vm, 1, PCI_CAPABILITY_LIST, 1), 0x40);
	assert_int_equal(ecam_read(vm, 1, PCI_HEADER_TYPE, 1), 0);
	assert_int_equal(ecam_read(vm, 1, PCI_INTERRUPT_LINE, 1), 0xff);   /* writable */
	assert_int_equal(ecam_read(vm, 1, PCI_INTERRUPT_PIN, 1), 1);       /* not */
	/* Command: only IO, MEMORY, MASTER, INTX_DISABLE. Status: CAP_LIST
	 * stays, nothing else appears. */
	ecam_write(vm, 1, PCI_COMMAND, 0xFFFFFFFF, 4);
	assert_int_equal(ecam_read(vm, 1, PCI_COMMAND, 2), 0x0407);
	assert_int_equal(ecam_read(vm, 1, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	/* Capability IDs and links are read-only; the host bridge too. */
	ecam_write(vm, 1, 0x40, 0xFFFF, 2);
	assert_int_equal(ecam_read(vm, 1, 0x40, 2), 0x5009);
	ecam_write(vm, 0, PCI_VENDOR_ID, 0, 4);
	assert_int_equal(ecam_read(vm, 0, PCI_VENDOR_ID, 4), 0x00081b36);
	assert_int_equal(fx->dev.cfg_calls, 0);  /* all of that was the PCI layer's */
}

/* ---- Capabilities ---- */

static void test_capability_list(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	static const uint8_t want_ids[] = { PCI_CAP_ID_VNDR, PCI_CAP_ID_VNDR, PCI_CAP_ID_MSIX };
	uint32_t off = (uint32_t)ecam_read(vm, 1, PCI_CAPABILITY_LIST, 1);
	uint32_t prev = 0;
	int n = 0;
	while (off && n < 48) {
		assert_int_equal(off % 4, 0);
		assert_true(off >= 0x40 && off < 256);
		assert_true(off > prev);   /* in added order */
		assert_true(n < 3);
		assert_int_equal(ecam_read(vm, 1, off, 1), want_ids[n]);
		prev = off;
		off = (uint32_t)ecam_read(vm, 1, off + 1, 1);
		n++;
	}
	assert_int_equal(n, 3);
	assert_int_equal(fx->dev.pci.msix.cap, prev);
	assert_int_equal(prev, 0x60);
}

static void test_cap_space_full(void **state)
{
	struct pci_device *dev = calloc(1, sizeof(*dev));
	assert_non_null(dev);
	int n = 0;
	uint8_t off;
	while ((off = pci_cfg_add_cap(dev, PCI_CAP_ID_VNDR, 20)) != 0) {
		assert_true(off + 20 <= 256);
		n++;
	}
	assert_int_equal(n, (256 - 64) / 20);
	/* 0x40 + 9 * 20 = 0xF4: smaller ones still fit, to the last byte. */
	assert_int_equal(pci_cfg_add_cap(dev, PCI_CAP_ID_VNDR, 16), 0);
	assert_int_equal(pci_cfg_add_cap(dev, PCI_CAP_ID_VNDR, 4), 0xF4);
	assert_int_equal(pci_cfg_add_cap(dev, PCI_CAP_ID_VNDR, 1), 0);  /* too short for id + next */
	assert_int_equal(pci_cfg_add_cap(dev, PCI_CAP_ID_VNDR, 8), 0xF8);
	assert_int_equal(pci_cfg_add_cap(dev, PCI_CAP_ID_VNDR, 2), 0);  /* full */
	n += 2;
	/* The list still terminates and is in order. */
	uint32_t o = dev->cfg[PCI_CAPABILITY_LIST];
	int walked = 0;
	while (o && walked < 64) {
		o = dev->cfg[o + 1];
		walked++;
	}
	assert_int_equal(walked, n);
	free(dev);
}

/* Bytes of a vendor capability past its ID and link are the device's. */
static void test_device_config_runs(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	uint64_t v = ecam_read(vm, 1, 0x40, 4);
	assert_int_equal(v, 0x5A5A5009);      /* id, next from PCI; the rest from cfg_access */
	assert_int_equal(fx->dev.cfg_calls, 1);
	assert_int_equal(fx->dev.cfg_offset, 0x42);
	assert_int_equal(fx->dev.cfg_len, 2);
	assert_false(fx->dev.cfg_write);
	ecam_write(vm, 1, 0x44, 0x12345678, 4);
	assert_int_equal(fx->dev.cfg_calls, 2);
	assert_int_equal(fx->dev.cfg_offset, 0x44);
	assert_int_equal(fx->dev.cfg_len, 4);
	assert_true(fx->dev.cfg_write);
	/* Extended space (ECAM only) is the device's as well. */
	assert_int_equal(ecam_read(vm, 1, 0x100, 4), 0x5A5A5A5A);
	assert_int_equal(fx->dev.cfg_offset, 0x100);
	/* The MSI-X capability never reaches it. */
	int calls = fx->dev.cfg_calls;
	ecam_read(vm, 1, 0x60, 4);
	ecam_write(vm, 1, 0x64, 0, 4);
	assert_int_equal(fx->dev.cfg_calls, calls);
}

/* ---- MSI-X ---- */

static uint32_t msix_cap(struct fixture *fx)
{
	return fx->dev.pci.msix.cap;
}

static void msix_control(struct fixture *fx, uint16_t ctrl)
{
	ecam_write(&fx->vm, 1, msix_cap(fx) + 2, ctrl, 2);
}

static uint64_t eventfd_count(struct fixture *fx, int v)
{
	uint64_t n = 0;
	if (read(fx->dev.pci.msix.vectors[v].irqfd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static void test_msix_capability(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	uint32_t cap = msix_cap(fx);
	assert_int_equal(ecam_read(vm, 1, cap, 1), PCI_CAP_ID_MSIX);
	assert_int_equal(ecam_read(vm, 1, cap + 1, 1), 0);
	assert_int_equal(ecam_read(vm, 1, cap + 2, 2), FAKE_VECTORS - 1);
	assert_int_equal(ecam_read(vm, 1, cap + 4, 4), FAKE_TABLE | 0);
	assert_int_equal(ecam_read(vm, 1, cap + 8, 4), FAKE_PBA | 0);
	/* Only enable and function mask are writable. */
	msix_control(fx, 0xFFFF);
	assert_int_equal(ecam_read(vm, 1, cap + 2, 2), 0xC000 | (FAKE_VECTORS - 1));
	assert_true(pci_msix_enabled(&fx->dev.pci));
	assert_true(fx->dev.pci.msix.function_masked);
	ecam_write(vm, 1, cap + 4, 0, 4);
	ecam_write(vm, 1, cap + 8, 0, 4);
	assert_int_equal(ecam_read(vm, 1, cap + 4, 4), FAKE_TABLE);
	assert_int_equal(ecam_read(vm, 1, cap + 8, 4), FAKE_PBA);
	msix_control(fx, 0);
	assert_false(pci_msix_enabled(&fx->dev.pci));
	/* Without KVM the vectors have eventfds but no GSI. */
	for (int v = 0; v < FAKE_VECTORS; v++) {
		assert_true(fx->dev.pci.msix.vectors[v].irqfd >= 0);
		assert_int_equal(fx->dev.pci.msix.vectors[v].gsi, -1);
	}
}

static void test_msix_table(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	enable_memory(fx);
	uint64_t t = bar0(fx) + FAKE_TABLE;
	for (int v = 0; v < FAKE_VECTORS; v++) {
		assert_int_equal(mmio_read(vm, t + 16 * (uint64_t)v, 4), 0);
		assert_int_equal(mmio_read(vm, t + 16 * (uint64_t)v + 12, 4), 1);   /* masked at reset */
	}
	mmio_write(vm, t + 16, 0xFEE01000, 4);
	mmio_write(vm, t + 20, 0, 4);
	mmio_write(vm, t + 24, 0x4041, 4);
	assert_int_equal(mmio_read(vm, t + 16, 8), 0xFEE01000);
	assert_int_equal(mmio_read(vm, t + 24, 4), 0x4041);
	/* A qword write of the address; the low two address bits do not exist. */
	mmio_write(vm, t + 32, 0x00000001FEE0200FULL, 8);
	assert_int_equal(mmio_read(vm, t + 32, 8), 0x00000001FEE0200CULL);
	/* Vector control keeps only the mask bit. */
	mmio_write(vm, t + 28, 0xFFFFFFFE, 4);
	assert_int_equal(mmio_read(vm, t + 28, 4), 0);
	mmio_write(vm, t + 28, 0xFFFFFFFF, 4);
	assert_int_equal(mmio_read(vm, t + 28, 4), 1);
	struct pci_msix_vector *vec = &fx->dev.pci.msix.vectors[1];
	assert_int_equal(vec->addr_lo, 0xFEE01000);
	assert_int_equal(vec->data, 0x4041);
	/* The PBA is read-only. */
	uint64_t pba = bar0(fx) + FAKE_PBA;
	mmio_write(vm, pba, ~0ULL, 8);
	assert_int_equal(mmio_read(vm, pba, 8), 0);
	/* Past the last entry, and around the table, the device's own BAR. */
	int calls = fx->dev.bar_calls;
	assert_int_equal(fx->dev.bar_calls, 0);
	mmio_write(vm, t + 16 * FAKE_VECTORS, 0x77, 1);
	assert_int_equal(fx->dev.mem[FAKE_TABLE + 16 * FAKE_VECTORS], 0x77);
	assert_int_equal(fx->dev.bar_calls, calls + 1);
	/* Straddling the table's edge: nobody's. */
	assert_int_equal(mmio_read(vm, t - 4, 8), ~0ULL);
	assert_int_equal(fx->dev.bar_calls, calls + 1);
}

static void test_msix_pending_and_delivery(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	struct pci_device *dev = &fx->dev.pci;
	enable_memory(fx);
	uint64_t t = bar0(fx) + FAKE_TABLE, pba = bar0(fx) + FAKE_PBA;

	/* MSI-X off: the caller must use INTx; nothing is remembered. */
	assert_false(pci_msix_notify(dev, 0));
	assert_int_equal(mmio_read(vm, pba, 8), 0);

	/* On, vector masked: pending. */
	msix_control(fx, 0x8000);
	assert_true(pci_msix_notify(dev, 2));
	assert_int_equal(mmio_read(vm, pba, 8), 1u << 2);
	assert_int_equal(eventfd_count(fx, 2), 0);
	/* Unmasking delivers it and clears the bit. */
	mmio_write(vm, t + 32 + 12, 0, 4);
	assert_int_equal(mmio_read(vm, pba, 8), 0);
	assert_int_equal(eventfd_count(fx, 2), 1);
	assert_true(pci_msix_notify(dev, 2));
	assert_true(pci_msix_notify(dev, 2));
	assert_int_equal(eventfd_count(fx, 2), 2);

	/* Function mask holds every vector back; clearing it delivers. */
	msix_control(fx, 0xC000);
	assert_true(pci_msix_notify(dev, 2));
	assert_int_equal(eventfd_count(fx, 2), 0);
	assert_int_equal(mmio_read(vm, pba, 1), 1u << 2);
	msix_control(fx, 0x8000);
	assert_int_equal(eventfd_count(fx, 2), 1);
	assert_int_equal(mmio_read(vm, pba, 1), 0);

	/* Masking the vector again: pending, not delivered. */
	mmio_write(vm, t + 32 + 12, 1, 4);
	assert_true(pci_msix_notify(dev, 2));
	assert_int_equal(eventfd_count(fx, 2), 0);
	assert_int_equal(mmio_read(vm, pba, 1), 1u << 2);

	/* Vectors out of range are refused. */
	assert_false(pci_msix_notify(dev, FAKE_VECTORS));
	assert_false(pci_msix_notify(dev, -1));
	assert_false(pci_msix_notify(dev, 0xffff));
	/* Other vectors untouched. */
	assert_int_equal(eventfd_count(fx, 0), 0);
	assert_int_equal(eventfd_count(fx, 1), 0);
}

/* ---- INTx ---- */

static void test_intx_status(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	struct pci_device *dev = &fx->dev.pci;
	pci_intx_set(dev, true);
	assert_int_not_equal(ecam_read(vm, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	/* INTX_DISABLE stops the line, not the status bit. */
	ecam_write(vm, 1, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, 2);
	assert_int_not_equal(ecam_read(vm, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	pci_intx_set(dev, false);
	assert_int_equal(ecam_read(vm, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	/* Status writes do not clear or set it. */
	pci_intx_set(dev, true);
	ecam_write(vm, 1, PCI_STATUS, 0xFFFF, 2);
	assert_int_not_equal(ecam_read(vm, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	pci_intx_set(dev, false);
}

/* ---- Bad input ---- */

static void test_malformed_accesses(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	uint8_t d[8];

	/* 8-byte ECAM access: two dwords. */
	assert_int_equal(ecam_read(vm, 1, 0, 8), 0x0010000010411af4ULL);
	/* Odd offsets read the right bytes. */
	assert_int_equal(ecam_read(vm, 1, 1, 2), 0x411a);
	assert_int_equal(ecam_read(vm, 1, 3, 1), 0x10);
	/* Past the end of the function's 4 KiB. */
	assert_int_equal(ecam_read(vm, 1, 0xFFE, 4), 0xFFFFFFFF);
	assert_int_equal(ecam_read(vm, 1, 0xFFC, 8), 0xFFFFFFFF5A5A5A5AULL);
	/* Through the PCI layer's own entry point, any length. */
	memset(d, 0, sizeof(d));
	pci_config_access(vm, 0, 1, 0, 0, d, 0, false);
	pci_config_access(vm, 0, 1, 0, 0, d, 5, false);
	assert_int_equal(d[0] & d[4], 0xff);
	pci_config_access(vm, 0, 1, 0, 4096, d, 1, false);
	pci_config_access(vm, 0, 1, 0, UINT32_MAX, d, 4, false);
	pci_config_access(vm, 0, 99, 0, 0, d, 4, false);
	pci_config_access(vm, 0, 1, 0, UINT32_MAX, d, 4, true);
	pci_config_access(vm, 0, 1, 9, 0, d, 4, true);
	/* Config ports at the wrong widths: ordinary I/O that floats. */
	port_write(vm, 0xCF8, cf8_address(0, 1, 0, 0), 4);
	assert_int_equal(port_read(vm, 0xCF8, 2), 0xFFFF);
	assert_int_equal(port_read(vm, 0xCF8, 1), 0xFF);
	assert_int_equal(port_read(vm, 0xCFA, 4), 0xFFFFFFFF);
	port_write(vm, 0xCFB, 0x01, 1);
	assert_int_equal(port_read(vm, 0xCF8, 4), cf8_address(0, 1, 0, 0));
	assert_int_equal(port_read(vm, 0xCFC, 4), 0x10411af4);

	/* A storm of junk writes over the whole config space and BAR window
	 * is survived, and the IDs stay. */
	enable_memory(fx);
	uint32_t seed = 12345;
	for (int i = 0; i < 20000; i++) {
		seed = seed * 1103515245 + 12345;
		static const uint32_t lens[] = { 1, 2, 4, 8 };
		uint32_t len = lens[(seed >> 8) & 3];
		uint32_t reg = (seed >> 12) & 0xFFF;
		uint64_t v = (uint64_t)seed * 0x9E3779B97F4A7C15ULL;
		memcpy(d, &v, sizeof(d));
		bus_dispatch(&vm->mmio, ecam_addr((seed >> 24) & 1, 0, reg), d, len, (seed & 1) != 0);
		bus_dispatch(&vm->mmio, X86_PCI_MMIO_START + ((uint64_t)seed & 0xFFFFF), d, len, (seed & 2) != 0);
		if ((seed & 0x3F) == 0) /* and the MSI-X control word */
			msix_control(fx, (uint16_t)v);
		pci_msix_notify(&fx->dev.pci, (int)(seed % 5) - 1);
	}
	assert_int_equal(ecam_read(vm, 1, PCI_VENDOR_ID, 4), 0x10411af4);
	assert_int_equal(ecam_read(vm, 0, PCI_VENDOR_ID, 4), 0x00081b36);
	assert_int_equal(ecam_read(vm, 1, PCI_CAPABILITY_LIST, 1), 0x40);
}

/* The reset control register shares the config ports. */
static void test_reset_port(void **state)
{
	struct fixture *fx = *state;
	struct vm *vm = &fx->vm;
	port_write(vm, 0xCF8, cf8_address(0, 0, 0, 0), 4);
	assert_int_equal(port_read(vm, 0xCF9, 1), 0);
	port_write(vm, 0xCF9, 0x02, 1);
	assert_int_equal(vm->exit_reason, VM_EXIT_NONE);
	assert_int_equal(port_read(vm, 0xCF8, 4), 0x80000000);   /* untouched */
	port_write(vm, 0xCF9, 0x06, 1);
	assert_int_equal(vm->state, VM_STOPPED);
	assert_int_equal(vm->exit_reason, VM_EXIT_RESET);
}

/* ---- Adding devices ---- */

static void test_add_limits(void **state)
{
	struct vm vm;
	vm_init_fake(&vm);
	struct fake *devs = calloc(32, sizeof(*devs));
	assert_non_null(devs);
	for (int i = 0; i < 31; i++) {
		fake_build(&devs[i]);
		assert_int_equal(pci_device_add(&vm, &devs[i].pci), 0);
		assert_int_equal(devs[i].pci.slot, i + 1);
		assert_int_equal(devs[i].pci.intx_gsi, 16 + (uint32_t)(i + 1) % 8);
		if (i)   /* BARs do not overlap */
			assert_true(devs[i].pci.bars[0].addr >= devs[i - 1].pci.bars[0].addr + FAKE_BAR_SIZE);
	}
	fake_build(&devs[31]);
	assert_int_equal(pci_device_add(&vm, &devs[31].pci), -ENOSPC);
	vm_destroy(&vm);
	free(devs);
}

static void test_add_rejects_bad_devices(void **state)
{
	struct vm vm;
	vm_init_fake(&vm);
	struct fake *f = calloc(1, sizeof(*f));
	assert_non_null(f);

	/* MSI-X arguments */
	assert_int_equal(pci_msix_init(&f->pci, 0, 0, 0, 0x100), -EINVAL);
	assert_int_equal(pci_msix_init(&f->pci, 2049, 0, 0, 0x100), -EINVAL);
	assert_int_equal(pci_msix_init(&f->pci, 1, 6, 0, 0x100), -EINVAL);
	assert_int_equal(pci_msix_init(&f->pci, 1, 0, 4, 0x100), -EINVAL);
	/* Table outside its BAR. */
	memset(f, 0, sizeof(*f));
	pci_cfg_set_bar(&f->pci, 0, 0x1000, fake_bar_io, f);
	assert_int_equal(pci_msix_init(&f->pci, 300, 0, 0, 0x800), 0);
	assert_int_equal(pci_device_add(&vm, &f->pci), -EINVAL);
	assert_null(f->pci.msix.vectors);
	/* A BAR bigger than the window: refused at set time, so none. */
	memset(f, 0, sizeof(*f));
	pci_cfg_set_bar(&f->pci, 0, 3000, fake_bar_io, f);
	assert_int_equal(f->pci.bars[0].size, 0);
	pci_cfg_set_bar(&f->pci, 0, 1ULL << 32, fake_bar_io, f);
	assert_int_equal(f->pci.bars[0].size, 0);
	/* Fills the window: the second no longer fits. */
	memset(f, 0, sizeof(*f));
	pci_cfg_set_bar(&f->pci, 0, X86_PCI_MMIO_SIZE, fake_bar_io, f);
	assert_int_equal(pci_device_add(&vm, &f->pci), 0);
	struct fake *g = calloc(1, sizeof(*g));
	assert_non_null(g);
	pci_cfg_set_bar(&g->pci, 0, 0x1000, fake_bar_io, g);
	assert_int_equal(pci_device_add(&vm, &g->pci), -ENOSPC);
	vm_destroy(&vm);
	free(f);
	free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_host_bridge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_slots_read_ones, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_decode_and_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capability_list, setup, teardown),
		cmocka_unit_test(test_cap_space_full),
		cmocka_unit_test_setup_teardown(test_device_config_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_capability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_pending_and_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_port, setup, teardown),
		cmocka_unit_test(test_add_limits),
		cmocka_unit_test(test_add_rejects_bad_devices),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
