/* The virtio PCI transport without KVM: a VM struct with no KVM fds (so no
 * ioeventfds and no GSIs; kicks reach the notify region as MMIO writes and
 * MSI-X vectors still signal their eventfds), the PCI host, guest RAM in a
 * malloc'd buffer, and a fake device. Registers are driven through the
 * BAR callback or, where the PCI layer's part matters (config space,
 * MSI-X table), through the MMIO bus as a vCPU would. The device's worker
 * thread runs for real. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "layout.h"
#include "virtio/virtio.h"
#include "vm.h"

#define RAM_GPA    0x100000ULL
#define RAM_SIZE   0x100000ULL
#define QMAX       64
#define NR_QUEUES  2
#define FAKE_FEATURE 5      /* a device feature bit the fake offers */
#define DESC_GPA   (RAM_GPA + 0x0000)
#define AVAIL_GPA  (RAM_GPA + 0x1000)
#define USED_GPA   (RAM_GPA + 0x2000)
#define BUF_GPA    (RAM_GPA + 0x10000)

/* BAR 0 offsets (virtio.h) and common config fields (virtio 1.2, 4.1.4.3) */
#define ISR        0x1000
#define DEVCFG     0x2000
#define NOTIFY     0x3000
#define MSIX_TABLE 0x4000
#define C_DFSELECT 0x00
#define C_DF       0x04
#define C_GFSELECT 0x08
#define C_GF       0x0c
#define C_MSIX     0x10
#define C_NUMQ     0x12
#define C_STATUS   0x14
#define C_CFGGEN   0x15
#define C_QSELECT  0x16
#define C_QSIZE    0x18
#define C_QMSIX    0x1a
#define C_QENABLE  0x1c
#define C_QNOFF    0x1e
#define C_QDESC    0x20
#define C_QAVAIL   0x28
#define C_QUSED    0x30

struct fake {
	struct virtio_device vdev;
	uint8_t config[8];
	int notifies[NR_QUEUES];   /* read with atomics: the worker writes them */
	int resets, activates, activate_result;
	int config_writes;
	uint32_t config_write_offset, config_write_len;
	int watch_calls;
	int watch_fd_seen;
	uint64_t bytes_popped;
	/* Plays a driver that refills the ring as fast as it is emptied. */
	bool chase;
	uint16_t *avail_idx;
};

struct fixture {
	struct vm vm;
	uint8_t *ram;
	struct fake dev;
};

static int load(const int *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* ---- The fake device: pops everything, pushes it back ---- */

static void fake_queue_notify(struct virtio_device *vdev, int q)
{
	struct fake *f = (struct fake *)vdev;
	__atomic_fetch_add(&f->notifies[q], 1, __ATOMIC_SEQ_CST);
	struct virtq *vq = virtio_queue(vdev, q);
	if (!vq)
		return;
	static struct virtq_req req;  /* large; only the worker uses it */
	while (virtq_pop(vq, &req) == 0) {
		f->bytes_popped += req.out_len;
		virtq_push(vq, req.head, (uint32_t)req.in_len);
		if (__atomic_load_n(&f->chase, __ATOMIC_SEQ_CST))
			__atomic_fetch_add(f->avail_idx, 1, __ATOMIC_SEQ_CST);
	}
	virtio_queue_notify(vdev, q);
}

static int fake_activate(struct virtio_device *vdev)
{
	struct fake *f = (struct fake *)vdev;
	__atomic_fetch_add(&f->activates, 1, __ATOMIC_SEQ_CST);
	return f->activate_result;
}

static void fake_reset(struct virtio_device *vdev)
{
	struct fake *f = (struct fake *)vdev;
	__atomic_fetch_add(&f->resets, 1, __ATOMIC_SEQ_CST);
}

static void fake_config_write(struct virtio_device *vdev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	struct fake *f = (struct fake *)vdev;
	assert_true(offset + len <= sizeof(f->config));
	memcpy(f->config + offset, data, len);
	f->config_writes++;
	f->config_write_offset = offset;
	f->config_write_len = len;
}

static void fake_watch(struct virtio_device *vdev, int fd, uint32_t events)
{
	struct fake *f = (struct fake *)vdev;
	uint64_t v;
	assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
	f->watch_fd_seen = fd;
	__atomic_fetch_add(&f->watch_calls, 1, __ATOMIC_SEQ_CST);
}

static const struct virtio_device_ops fake_ops = {
	.queue_notify = fake_queue_notify,
	.config_write = fake_config_write,
	.activate = fake_activate,
	.reset = fake_reset,
};

/* ---- Fixture ---- */

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->vdev.name = "virtio-fake0";
	f->vdev.device_id = VIRTIO_ID_BLOCK;
	/* RING_PACKED (34) is not the device's to offer: the transport drops it. */
	f->vdev.features = 1ULL << FAKE_FEATURE | 1ULL << 34;
	f->vdev.nr_queues = NR_QUEUES;
	f->vdev.queue_max_size = QMAX;
	for (int i = 0; i < 8; i++)
		f->config[i] = (uint8_t)(0x10 + i);
	f->vdev.config = f->config;
	f->vdev.config_size = sizeof(f->config);
	f->vdev.ops = &fake_ops;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	struct vm *vm = &fx->vm;
	vm->kvm_fd = vm->vm_fd = vm->stop_fd = vm->console_out_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->state_changed, NULL);
	fx->ram = aligned_alloc(4096, RAM_SIZE);
	assert_non_null(fx->ram);
	memset(fx->ram, 0, RAM_SIZE);
	vm->mem.regions[0] = (struct guest_region){ RAM_GPA, RAM_SIZE, fx->ram };
	vm->mem.nr_regions = 1;
	assert_int_equal(pci_host_init(vm), 0);
	fake_init(&fx->dev);
	assert_int_equal(virtio_device_add(vm, &fx->dev.vdev), 0);
	bus_seal(&vm->pio);
	bus_seal(&vm->mmio);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	vm_destroy(&fx->vm);
	/* destroy resets the device once more on the way out */
	assert_true(fx->dev.resets >= 1);
	free(fx->ram);
	free(fx);
	return 0;
}

/* ---- Register access ---- */

static uint64_t bar_read(struct fixture *fx, uint64_t off, uint32_t len)
{
	struct pci_bar *bar = &fx->dev.vdev.pci.bars[0];
	uint8_t data[8];
	memset(data, 0xcc, sizeof(data));
	bar->fn(bar->opaque, off, data, len, false);
	uint64_t v = 0;
	memcpy(&v, data, len);
	return v;
}

static void bar_write(struct fixture *fx, uint64_t off, uint64_t v, uint32_t len)
{
	struct pci_bar *bar = &fx->dev.vdev.pci.bars[0];
	uint8_t data[8];
	memcpy(data, &v, sizeof(data));
	bar->fn(bar->opaque, off, data, len, true);
}

static uint64_t cfg_read(struct fixture *fx, uint32_t reg, uint32_t len)
{
	uint8_t data[4] = { 0 };
	uint64_t v = 0;
	pci_config_access(&fx->vm, 0, (uint32_t)fx->dev.vdev.pci.slot, 0, reg, data, len, false);
	memcpy(&v, data, len);
	return v;
}

static void cfg_write(struct fixture *fx, uint32_t reg, uint32_t v, uint32_t len)
{
	uint8_t data[4];
	memcpy(data, &v, sizeof(data));
	pci_config_access(&fx->vm, 0, (uint32_t)fx->dev.vdev.pci.slot, 0, reg, data, len, true);
}

static uint64_t bar0_addr(struct fixture *fx)
{
	return cfg_read(fx, PCI_BAR0, 4) & ~0xfULL;
}

static void mmio_write(struct fixture *fx, uint64_t off, uint64_t v, uint32_t len)
{
	uint8_t data[8];
	memcpy(data, &v, sizeof(data));
	assert_int_equal(bus_dispatch(&fx->vm.mmio, bar0_addr(fx) + off, data, len, true), 0);
}

static uint64_t mmio_read(struct fixture *fx, uint64_t off, uint32_t len)
{
	uint8_t data[8] = { 0 };
	uint64_t v = 0;
	assert_int_equal(bus_dispatch(&fx->vm.mmio, bar0_addr(fx) + off, data, len, false), 0);
	memcpy(&v, data, len);
	return v;
}

static uint8_t status(struct fixture *fx)
{
	return (uint8_t)bar_read(fx, C_STATUS, 1);
}

/* Waits up to 2 s for *p to reach at least want. */
static bool wait_for(const int *p, int want)
{
	for (int i = 0; i < 2000; i++) {
		if (load(p) >= want)
			return true;
		usleep(1000);
	}
	return false;
}

static bool eventfd_fired(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, timeout_ms) != 1)
		return false;
	uint64_t v;
	return read(fd, &v, sizeof(v)) == sizeof(v);
}

/* ---- Guest side of the rings ---- */

static uint8_t *hva(struct fixture *fx, uint64_t gpa)
{
	return fx->ram + (gpa - RAM_GPA);
}

static void set_desc(struct fixture *fx, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = hva(fx, DESC_GPA + 16ULL * i);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void make_avail(struct fixture *fx, uint16_t qsize, uint16_t head)
{
	uint16_t idx;
	memcpy(&idx, hva(fx, AVAIL_GPA + 2), 2);
	memcpy(hva(fx, AVAIL_GPA + 4 + 2ULL * (idx % qsize)), &head, 2);
	idx++;
	__atomic_store_n((uint16_t *)hva(fx, AVAIL_GPA + 2), idx, __ATOMIC_RELEASE);
}

static uint16_t used_idx(struct fixture *fx)
{
	return __atomic_load_n((uint16_t *)hva(fx, USED_GPA + 2), __ATOMIC_ACQUIRE);
}

static void negotiate(struct fixture *fx, uint64_t features)
{
	bar_write(fx, C_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	bar_write(fx, C_GFSELECT, 0, 4);
	bar_write(fx, C_GF, (uint32_t)features, 4);
	bar_write(fx, C_GFSELECT, 1, 4);
	bar_write(fx, C_GF, (uint32_t)(features >> 32), 4);
	bar_write(fx, C_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
}

/* Queue 0 of qsize entries at the fixed ring addresses, 64-bit addresses
 * written as two dwords the way Linux does. */
static void setup_queue0(struct fixture *fx, uint16_t qsize)
{
	bar_write(fx, C_QSELECT, 0, 2);
	bar_write(fx, C_QSIZE, qsize, 2);
	bar_write(fx, C_QDESC, (uint32_t)DESC_GPA, 4);
	bar_write(fx, C_QDESC + 4, DESC_GPA >> 32, 4);
	bar_write(fx, C_QAVAIL, (uint32_t)AVAIL_GPA, 4);
	bar_write(fx, C_QAVAIL + 4, 0, 4);
	bar_write(fx, C_QUSED, USED_GPA, 8);
	bar_write(fx, C_QENABLE, 1, 2);
}

static const uint64_t VERSION_1 = 1ULL << VIRTIO_F_VERSION_1;

static void driver_ok(struct fixture *fx)
{
	bar_write(fx, C_STATUS,
		  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, 1);
}

/* ---- Tests ---- */

static void test_pci_identity_and_caps(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(cfg_read(fx, PCI_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(cfg_read(fx, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_BLOCK);
	assert_int_equal(cfg_read(fx, PCI_REVISION_ID, 1), 1);
	assert_int_equal(cfg_read(fx, PCI_REVISION_ID, 4) >> 8, 0x018000);
	assert_int_equal(cfg_read(fx, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(cfg_read(fx, PCI_SUBSYSTEM_ID, 2), 0x40);
	assert_true(cfg_read(fx, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);

	/* Walk the list: one vendor capability of each type, then MSI-X. */
	uint32_t seen = 0, pos = (uint32_t)cfg_read(fx, PCI_CAPABILITY_LIST, 1);
	bool msix = false;
	for (int n = 0; pos && n < 16; n++, pos = (uint32_t)cfg_read(fx, pos + 1, 1)) {
		uint32_t id = (uint32_t)cfg_read(fx, pos, 1);
		if (id == PCI_CAP_ID_MSIX) {
			assert_int_equal((cfg_read(fx, pos + 2, 2) & 0x7ff) + 1, NR_QUEUES + 1);
			assert_int_equal(cfg_read(fx, pos + 4, 4), MSIX_TABLE | 0);
			msix = true;
			continue;
		}
		assert_int_equal(id, PCI_CAP_ID_VNDR);
		uint32_t type = (uint32_t)cfg_read(fx, pos + 3, 1);
		uint32_t offset = (uint32_t)cfg_read(fx, pos + 8, 4), length = (uint32_t)cfg_read(fx, pos + 12, 4);
		assert_int_equal(cfg_read(fx, pos + 4, 1), 0); /* BAR 0 */
		seen |= 1u << type;
		switch (type) {
		case 1: assert_int_equal(offset, 0); assert_true(length >= 0x38); break;
		case 2:
			assert_int_equal(cfg_read(fx, pos + 2, 1), 20);
			assert_int_equal(offset, NOTIFY);
			assert_int_equal(length, 4 * NR_QUEUES);
			assert_int_equal(cfg_read(fx, pos + 16, 4), 4);
			break;
		case 3: assert_int_equal(offset, ISR); assert_true(length >= 1); break;
		case 4: assert_int_equal(offset, DEVCFG); assert_int_equal(length, 8); break;
		case 5: break;
		default: fail_msg("unexpected virtio capability type %u", type);
		}
	}
	assert_true(msix);
	assert_int_equal(seen, 0x3e);
	assert_int_equal(fx->dev.vdev.pci.bars[0].size, 0x8000);
}

static void test_feature_negotiation(void **state)
{
	struct fixture *fx = *state;
	bar_write(fx, C_DFSELECT, 0, 4);
	uint32_t lo = (uint32_t)bar_read(fx, C_DF, 4);
	bar_write(fx, C_DFSELECT, 1, 4);
	uint32_t hi = (uint32_t)bar_read(fx, C_DF, 4);
	bar_write(fx, C_DFSELECT, 2, 4);
	assert_int_equal(bar_read(fx, C_DF, 4), 0);
	assert_true(lo & 1u << FAKE_FEATURE);
	assert_true(lo & 1u << VIRTIO_F_INDIRECT_DESC);
	assert_true(lo & 1u << VIRTIO_F_EVENT_IDX);
	assert_true(hi & 1u << (VIRTIO_F_VERSION_1 - 32));
	assert_false(hi & 1u << (34 - 32));
	assert_false(lo & 1u << 7);

	/* A bit that was not offered: FEATURES_OK reads back clear. */
	negotiate(fx, VERSION_1 | 1ULL << 7);
	assert_false(status(fx) & VIRTIO_STATUS_FEATURES_OK);
	assert_false(virtio_has_feature(&fx->dev.vdev, VIRTIO_F_VERSION_1));
	/* No VERSION_1: refused too (no legacy interface). */
	negotiate(fx, 1ULL << FAKE_FEATURE);
	assert_false(status(fx) & VIRTIO_STATUS_FEATURES_OK);
	/* A subset of what was offered, with VERSION_1: accepted. */
	negotiate(fx, VERSION_1 | 1ULL << FAKE_FEATURE | 1ULL << VIRTIO_F_EVENT_IDX);
	assert_true(status(fx) & VIRTIO_STATUS_FEATURES_OK);
	assert_true(virtio_has_feature(&fx->dev.vdev, FAKE_FEATURE));
	assert_true(virtio_has_feature(&fx->dev.vdev, VIRTIO_F_EVENT_IDX));
	assert_false(virtio_has_feature(&fx->dev.vdev, VIRTIO_F_INDIRECT_DESC));
	assert_false(virtio_has_feature(&fx->dev.vdev, 200));
	/* Fixed from now on. */
	bar_write(fx, C_GFSELECT, 0, 4);
	bar_write(fx, C_GF, 0xffffffff, 4);
	assert_int_equal(bar_read(fx, C_GF, 4), 1u << FAKE_FEATURE | 1u << VIRTIO_F_EVENT_IDX);
	assert_false(virtio_has_feature(&fx->dev.vdev, 7));
}

static void test_status_rules(void **state)
{
	struct fixture *fx = *state;
	/* DRIVER_OK without FEATURES_OK does not start the device. */
	bar_write(fx, C_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK, 1);
	assert_false(status(fx) & VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(load(&fx->dev.activates), 0);
	/* The driver cannot set NEEDS_RESET, nor clear bits but by reset. */
	negotiate(fx, VERSION_1);
	bar_write(fx, C_STATUS, VIRTIO_STATUS_NEEDS_RESET, 1);
	assert_int_equal(status(fx), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	driver_ok(fx);
	assert_true(status(fx) & VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(load(&fx->dev.activates), 1);
	driver_ok(fx);  /* no second activation */
	assert_int_equal(load(&fx->dev.activates), 1);
}

static void test_activate_failure_needs_reset(void **state)
{
	struct fixture *fx = *state;
	fx->dev.activate_result = -EIO;
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	assert_true(status(fx) & VIRTIO_STATUS_NEEDS_RESET);
	assert_null(virtio_queue(&fx->dev.vdev, 0));
	/* Config-change interrupt on INTx: ISR bit 1. */
	assert_int_equal(bar_read(fx, ISR, 1), 2);
	bar_write(fx, C_STATUS, 0, 1);
	assert_int_equal(status(fx), 0);
}

static void test_reset(void **state)
{
	struct fixture *fx = *state;
	int resets = load(&fx->dev.resets);
	negotiate(fx, VERSION_1 | 1ULL << VIRTIO_F_EVENT_IDX);
	setup_queue0(fx, 16);
	bar_write(fx, C_QMSIX, 1, 2);
	bar_write(fx, C_MSIX, 0, 2);
	driver_ok(fx);
	assert_non_null(virtio_queue(&fx->dev.vdev, 0));

	bar_write(fx, C_STATUS, 0, 1);
	assert_int_equal(load(&fx->dev.resets), resets + 1);
	assert_int_equal(status(fx), 0);
	assert_null(virtio_queue(&fx->dev.vdev, 0));
	assert_int_equal(bar_read(fx, C_MSIX, 2), VIRTIO_NO_VECTOR);
	assert_int_equal(bar_read(fx, C_QSELECT, 2), 0);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), QMAX);
	assert_int_equal(bar_read(fx, C_QENABLE, 2), 0);
	assert_int_equal(bar_read(fx, C_QMSIX, 2), VIRTIO_NO_VECTOR);
	assert_int_equal(bar_read(fx, C_QDESC, 8), 0);
	assert_int_equal(bar_read(fx, C_QUSED, 4), 0);
	bar_write(fx, C_GFSELECT, 1, 4);
	assert_int_equal(bar_read(fx, C_GF, 4), 0);
	assert_int_equal(bar_read(fx, ISR, 1), 0);
	assert_false(fx->dev.vdev.pci.intx_level);
	/* It comes back up from scratch. */
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	assert_non_null(virtio_queue(&fx->dev.vdev, 0));
	assert_false(fx->dev.vdev.queues[0].vq.event_idx);
}

static void test_queue_registers(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(bar_read(fx, C_NUMQ, 2), NR_QUEUES);
	/* No such queue: size 0, everything else inert. */
	bar_write(fx, C_QSELECT, NR_QUEUES, 2);
	assert_int_equal(bar_read(fx, C_QSELECT, 2), NR_QUEUES);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), 0);
	bar_write(fx, C_QSIZE, 8, 2);
	bar_write(fx, C_QDESC, DESC_GPA, 8);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), 0);
	assert_int_equal(bar_read(fx, C_QDESC, 8), 0);
	bar_write(fx, C_QSELECT, 0xffff, 2);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), 0);

	/* Sizes: a power of two up to the maximum, else ignored. */
	bar_write(fx, C_QSELECT, 1, 2);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), QMAX);
	assert_int_equal(bar_read(fx, C_QNOFF, 2), 1);
	bar_write(fx, C_QSIZE, 3, 2);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), QMAX);
	bar_write(fx, C_QSIZE, 2 * QMAX, 2);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), QMAX);
	bar_write(fx, C_QSIZE, 0, 2);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), QMAX);
	bar_write(fx, C_QSIZE, 16, 2);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), 16);

	/* Vectors beyond the MSI-X table read back NO_VECTOR. */
	bar_write(fx, C_QMSIX, NR_QUEUES, 2);
	assert_int_equal(bar_read(fx, C_QMSIX, 2), NR_QUEUES);
	bar_write(fx, C_QMSIX, NR_QUEUES + 1, 2);
	assert_int_equal(bar_read(fx, C_QMSIX, 2), VIRTIO_NO_VECTOR);
	bar_write(fx, C_MSIX, 0x7ff, 2);
	assert_int_equal(bar_read(fx, C_MSIX, 2), VIRTIO_NO_VECTOR);
	bar_write(fx, C_MSIX, 0, 2);
	assert_int_equal(bar_read(fx, C_MSIX, 2), 0);

	/* Addresses, 64-bit or as halves, and byte-wise reads of them. */
	bar_write(fx, C_QDESC, 0x1122334455667788ULL, 8);
	assert_int_equal(bar_read(fx, C_QDESC, 8), 0x1122334455667788ULL);
	bar_write(fx, C_QDESC + 4, 0, 4);
	assert_int_equal(bar_read(fx, C_QDESC, 8), 0x55667788ULL);
	assert_int_equal(bar_read(fx, C_QDESC + 1, 1), 0x77);
	assert_int_equal(bar_read(fx, C_QDESC + 2, 2), 0x5566);

	/* Enable before FEATURES_OK: ignored. */
	bar_write(fx, C_QSELECT, 0, 2);
	bar_write(fx, C_QSIZE, 8, 2);
	bar_write(fx, C_QENABLE, 1, 2);
	assert_int_equal(bar_read(fx, C_QENABLE, 2), 0);
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	assert_int_equal(bar_read(fx, C_QENABLE, 2), 1);
	assert_int_equal(bar_read(fx, C_QDESC, 8), DESC_GPA);
	assert_int_equal(bar_read(fx, C_QUSED, 8), USED_GPA);
	/* Once enabled: size and addresses are fixed, enable 0 means nothing. */
	bar_write(fx, C_QSIZE, 4, 2);
	bar_write(fx, C_QDESC, RAM_GPA + 0x8000, 8);
	bar_write(fx, C_QENABLE, 0, 2);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), 8);
	assert_int_equal(bar_read(fx, C_QDESC, 8), DESC_GPA);
	assert_int_equal(bar_read(fx, C_QENABLE, 2), 1);
	assert_false(status(fx) & VIRTIO_STATUS_NEEDS_RESET);

	/* Accesses straddling fields, or outside them, do nothing. */
	bar_write(fx, C_QSIZE, 0xffffffff, 4);
	assert_int_equal(bar_read(fx, C_QSIZE, 2), 8);
	assert_int_equal(bar_read(fx, 0x38, 4), 0);
	assert_int_equal(bar_read(fx, 0x800, 8), 0);
	bar_write(fx, 0x38, 0xffffffff, 4);
	/* Read-only fields */
	bar_write(fx, C_NUMQ, 7, 2);
	bar_write(fx, C_QNOFF, 7, 2);
	bar_write(fx, C_CFGGEN, 7, 1);
	assert_int_equal(bar_read(fx, C_NUMQ, 2), NR_QUEUES);
	assert_int_equal(bar_read(fx, C_QNOFF, 2), 0);
	assert_int_equal(bar_read(fx, C_CFGGEN, 1), 0);
}

static void test_enable_bad_rings_needs_reset(void **state)
{
	struct fixture *fx = *state;
	negotiate(fx, VERSION_1);
	bar_write(fx, C_QSELECT, 1, 2);
	bar_write(fx, C_QSIZE, 8, 2);
	bar_write(fx, C_QDESC, RAM_GPA + RAM_SIZE - 64, 8);  /* runs off the end */
	bar_write(fx, C_QAVAIL, AVAIL_GPA, 8);
	bar_write(fx, C_QUSED, USED_GPA, 8);
	bar_write(fx, C_QENABLE, 1, 2);
	assert_true(status(fx) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(fx->dev.vdev.nr_bad_chains, 1);
	/* Misaligned used ring on queue 0: the device is already broken. */
	bar_write(fx, C_STATUS, 0, 1);
	negotiate(fx, VERSION_1);
	bar_write(fx, C_QSELECT, 0, 2);
	bar_write(fx, C_QSIZE, 8, 2);
	bar_write(fx, C_QDESC, DESC_GPA, 8);
	bar_write(fx, C_QAVAIL, AVAIL_GPA, 8);
	bar_write(fx, C_QUSED, USED_GPA + 2, 8);
	bar_write(fx, C_QENABLE, 1, 2);
	assert_true(status(fx) & VIRTIO_STATUS_NEEDS_RESET);
	driver_ok(fx);
	assert_false(status(fx) & VIRTIO_STATUS_DRIVER_OK);
}

static void test_device_config_bounds(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(bar_read(fx, DEVCFG, 4), 0x13121110);
	assert_int_equal(bar_read(fx, DEVCFG + 4, 8), 0x17161514);
	assert_int_equal(bar_read(fx, DEVCFG + 6, 4), 0x1716);
	assert_int_equal(bar_read(fx, DEVCFG + 8, 4), 0);
	assert_int_equal(bar_read(fx, DEVCFG + 0xfff, 1), 0);
	bar_write(fx, DEVCFG + 6, 0xaabbccdd, 4);
	assert_int_equal(fx->dev.config_writes, 1);
	assert_int_equal(fx->dev.config_write_offset, 6);
	assert_int_equal(fx->dev.config_write_len, 2);
	assert_int_equal(fx->dev.config[6], 0xdd);
	assert_int_equal(fx->dev.config[7], 0xcc);
	bar_write(fx, DEVCFG + 8, 1, 4);
	bar_write(fx, DEVCFG + 0x800, 1, 8);
	assert_int_equal(fx->dev.config_writes, 1);

	/* Generation moves with virtio_config_changed(). */
	assert_int_equal(bar_read(fx, C_CFGGEN, 1), 0);
	virtio_config_changed(&fx->dev.vdev);
	assert_int_equal(bar_read(fx, C_CFGGEN, 1), 1);
	/* Before DRIVER_OK, no interrupt is raised. */
	assert_false(fx->dev.vdev.pci.intx_level);
	/* Unused parts of the BAR */
	assert_int_equal(bar_read(fx, 0x1800, 4), 0);
	assert_int_equal(bar_read(fx, ISR + 1, 1), 0);
	assert_int_equal(bar_read(fx, NOTIFY, 2), 0);
	assert_int_equal(bar_read(fx, 0x3ffc, 4), 0);
}

/* Kick through the notify region, the worker runs the device, the device
 * pushes and interrupts through INTx; reading ISR clears it. */
static void test_kick_and_intx(void **state)
{
	struct fixture *fx = *state;
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	/* DRIVER_OK looks at every enabled queue once. */
	assert_true(wait_for(&fx->dev.notifies[0], 1));

	set_desc(fx, 0, BUF_GPA, 100, VIRTQ_DESC_F_NEXT, 1);
	set_desc(fx, 1, BUF_GPA + 0x1000, 50, VIRTQ_DESC_F_WRITE, 0);
	make_avail(fx, 8, 0);
	int before = load(&fx->dev.notifies[0]);
	bar_write(fx, NOTIFY, 0, 2);
	assert_true(wait_for(&fx->dev.notifies[0], before + 1));
	for (int i = 0; i < 2000 && used_idx(fx) != 1; i++)
		usleep(1000);
	assert_int_equal(used_idx(fx), 1);
	uint32_t used_len;
	memcpy(&used_len, hva(fx, USED_GPA + 8), 4);
	assert_int_equal(used_len, 50);
	for (int i = 0; i < 2000 && !__atomic_load_n(&fx->dev.vdev.pci.intx_level, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	assert_true(fx->dev.vdev.pci.intx_level);
	assert_int_equal(bar_read(fx, ISR, 1), 1);
	assert_false(fx->dev.vdev.pci.intx_level);
	assert_int_equal(bar_read(fx, ISR, 1), 0);

	/* Queue 1 is not enabled: its kicks reach no device. */
	bar_write(fx, NOTIFY + 4, 1, 2);
	usleep(20000);
	assert_int_equal(load(&fx->dev.notifies[1]), 0);
	/* Past the last queue's slot: nothing at all. */
	bar_write(fx, NOTIFY + 4 * NR_QUEUES, 0, 2);

	/* A 4-byte write (not what the ioeventfd would take) kicks too. */
	before = load(&fx->dev.notifies[0]);
	bar_write(fx, NOTIFY, 0, 4);
	assert_true(wait_for(&fx->dev.notifies[0], before + 1));
}

/* MSI-X through the real PCI path: enable it in config space, unmask the
 * vector in the table (served by the PCI layer in our BAR), and the queue
 * interrupt arrives as an eventfd signal on that vector. */
static void test_msix_interrupts(void **state)
{
	struct fixture *fx = *state;
	struct pci_device *pci = &fx->dev.vdev.pci;
	cfg_write(fx, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	cfg_write(fx, pci->msix.cap + 2, 0x8000, 2);
	assert_true(pci_msix_enabled(pci));
	for (int v = 0; v <= NR_QUEUES; v++) {
		mmio_write(fx, MSIX_TABLE + 16 * v, 0xfee00000, 4);
		mmio_write(fx, MSIX_TABLE + 16 * v + 8, 0x40 + v, 4);
		mmio_write(fx, MSIX_TABLE + 16 * v + 12, 0, 4);
	}
	/* The common config is reachable through the bus too. */
	assert_int_equal(mmio_read(fx, C_NUMQ, 2), NR_QUEUES);

	negotiate(fx, VERSION_1);
	bar_write(fx, C_MSIX, 0, 2);
	bar_write(fx, C_QSELECT, 0, 2);
	bar_write(fx, C_QMSIX, 1, 2);
	setup_queue0(fx, 8);
	driver_ok(fx);
	assert_true(wait_for(&fx->dev.notifies[0], 1));

	set_desc(fx, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	make_avail(fx, 8, 0);
	mmio_write(fx, NOTIFY, 0, 2);
	assert_true(eventfd_fired(pci->msix.vectors[1].irqfd, 2000));
	assert_false(eventfd_fired(pci->msix.vectors[0].irqfd, 0));
	/* No INTx, no ISR queue bit with MSI-X. */
	assert_false(pci->intx_level);
	assert_int_equal(mmio_read(fx, ISR, 1), 0);

	/* Config change: the config vector, and ISR bit 1. */
	virtio_config_changed(&fx->dev.vdev);
	assert_true(eventfd_fired(pci->msix.vectors[0].irqfd, 2000));
	assert_int_equal(mmio_read(fx, ISR, 1), 2);

	/* A queue with NO_VECTOR under MSI-X gets no interrupt at all. */
	bar_write(fx, C_STATUS, 0, 1);
	memset(hva(fx, AVAIL_GPA), 0, 0x2000);   /* fresh rings before the device looks */
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	assert_int_equal(bar_read(fx, C_QMSIX, 2), VIRTIO_NO_VECTOR);
	set_desc(fx, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	make_avail(fx, 8, 0);
	mmio_write(fx, NOTIFY, 0, 2);
	for (int i = 0; i < 2000 && used_idx(fx) != 1; i++)
		usleep(1000);
	assert_int_equal(used_idx(fx), 1);
	assert_false(eventfd_fired(pci->msix.vectors[1].irqfd, 50));
	assert_false(pci->intx_level);
}

/* A malformed chain popped by the device: the worker reports
 * NEEDS_RESET with a config interrupt, and the queue is dead until reset. */
static void test_bad_chain_needs_reset(void **state)
{
	struct fixture *fx = *state;
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	assert_true(wait_for(&fx->dev.notifies[0], 1));
	set_desc(fx, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(fx, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	make_avail(fx, 8, 0);
	bar_write(fx, NOTIFY, 0, 2);
	for (int i = 0; i < 2000 && !(status(fx) & VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(1000);
	assert_true(status(fx) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(fx->dev.vdev.nr_bad_chains, 1);
	assert_int_equal(bar_read(fx, ISR, 1), 2);
	assert_null(virtio_queue(&fx->dev.vdev, 0));
	/* Further kicks reach no device. */
	int before = load(&fx->dev.notifies[0]);
	bar_write(fx, NOTIFY, 0, 2);
	usleep(20000);
	assert_int_equal(load(&fx->dev.notifies[0]), before);
	assert_int_equal(used_idx(fx), 0);

	/* After reset and a clean setup it works again. */
	bar_write(fx, C_STATUS, 0, 1);
	memset(hva(fx, DESC_GPA), 0, 0x3000);
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	set_desc(fx, 0, BUF_GPA, 8, 0, 0);
	make_avail(fx, 8, 0);
	bar_write(fx, NOTIFY, 0, 2);
	for (int i = 0; i < 2000 && used_idx(fx) != 1; i++)
		usleep(1000);
	assert_int_equal(used_idx(fx), 1);
}

/* A ring that never runs dry: the device's pop loop stops at the budget,
 * the worker re-kicks the queue and lets go of the lock in between, so
 * the driver can still reset the device. */
static void test_endless_ring_does_not_hang(void **state)
{
	struct fixture *fx = *state;
	fx->dev.avail_idx = (uint16_t *)hva(fx, AVAIL_GPA + 2);
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	assert_true(wait_for(&fx->dev.notifies[0], 1));
	set_desc(fx, 0, BUF_GPA, 8, 0, 0);
	__atomic_store_n(&fx->dev.chase, true, __ATOMIC_SEQ_CST);
	int before = load(&fx->dev.notifies[0]);
	make_avail(fx, 8, 0);
	bar_write(fx, NOTIFY, 0, 2);
	/* Round after round, with no kick from the driver. */
	assert_true(wait_for(&fx->dev.notifies[0], before + 20));
	bar_write(fx, C_STATUS, 0, 1);
	assert_int_equal(status(fx), 0);
	__atomic_store_n(&fx->dev.chase, false, __ATOMIC_SEQ_CST);
}

/* While the VM is paused the worker calls nothing; resume catches up. */
static void test_pause_quiets_worker(void **state)
{
	struct fixture *fx = *state;
	negotiate(fx, VERSION_1);
	setup_queue0(fx, 8);
	driver_ok(fx);
	assert_true(wait_for(&fx->dev.notifies[0], 1));
	struct vm_pause_hook *h = fx->vm.pause_hooks;
	assert_non_null(h);
	h->pause(h->opaque);
	int before = load(&fx->dev.notifies[0]);
	virtio_queue_kick(&fx->dev.vdev, 0);
	usleep(50000);
	assert_int_equal(load(&fx->dev.notifies[0]), before);
	h->resume(h->opaque);
	assert_true(wait_for(&fx->dev.notifies[0], before + 1));
}

static void test_watch_fd(void **state)
{
	struct fixture *fx = *state;
	int a = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), b = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(a >= 0 && b >= 0);
	assert_int_equal(virtio_watch_fd(&fx->dev.vdev, a, 0, fake_watch), 0);
	assert_int_equal(virtio_watch_fd(&fx->dev.vdev, a, 0, fake_watch), -EEXIST);
	assert_int_equal(virtio_watch_fd(&fx->dev.vdev, -1, 0, fake_watch), -EINVAL);
	uint64_t one = 1;
	assert_int_equal(write(a, &one, 8), 8);
	assert_true(wait_for(&fx->dev.watch_calls, 1));
	assert_int_equal(fx->dev.watch_fd_seen, a);
	assert_int_equal(virtio_unwatch_fd(&fx->dev.vdev, a), 0);
	assert_int_equal(virtio_unwatch_fd(&fx->dev.vdev, a), -ENOENT);
	assert_int_equal(write(a, &one, 8), 8);
	assert_int_equal(virtio_watch_fd(&fx->dev.vdev, b, 0, fake_watch), 0);
	assert_int_equal(write(b, &one, 8), 8);
	assert_true(wait_for(&fx->dev.watch_calls, 2));
	usleep(20000);
	assert_int_equal(load(&fx->dev.watch_calls), 2);
	assert_int_equal(fx->dev.watch_fd_seen, b);
	assert_int_equal(virtio_unwatch_fd(&fx->dev.vdev, b), 0);
	close(a);
	close(b);
}

/* The VIRTIO_PCI_CAP_PCI_CFG window reaches BAR 0 through config space. */
static void test_pci_cfg_window(void **state)
{
	struct fixture *fx = *state;
	uint32_t cap = fx->dev.vdev.pci_cfg_cap;
	assert_true(cap >= 0x40);
	cfg_write(fx, cap + 4, 0, 1);
	cfg_write(fx, cap + 8, C_NUMQ, 4);
	cfg_write(fx, cap + 12, 2, 4);
	assert_int_equal(cfg_read(fx, cap + 16, 4) & 0xffff, NR_QUEUES);
	/* A write: queue_select through the window. */
	cfg_write(fx, cap + 8, C_QSELECT, 4);
	cfg_write(fx, cap + 16, 1, 4);
	assert_int_equal(bar_read(fx, C_QSELECT, 2), 1);
	/* Bad length, misaligned offset, another BAR: nothing. */
	cfg_write(fx, cap + 12, 3, 4);
	assert_int_equal(cfg_read(fx, cap + 16, 4), 0);
	cfg_write(fx, cap + 12, 2, 4);
	cfg_write(fx, cap + 8, C_QSELECT + 1, 4);
	assert_int_equal(cfg_read(fx, cap + 16, 4), 0);
	cfg_write(fx, cap + 8, C_QSELECT, 4);
	cfg_write(fx, cap + 4, 1, 1);
	assert_int_equal(cfg_read(fx, cap + 16, 4), 0);
	/* The capability's identity is read-only. */
	cfg_write(fx, cap + 3, 0xff, 1);
	assert_int_equal(cfg_read(fx, cap + 3, 1), 5);
}

static void test_add_rejects_bad_devices(void **state)
{
	struct fixture *fx = *state;
	struct fake bad;
	fake_init(&bad);
	bad.vdev.nr_queues = 0;
	assert_int_equal(virtio_device_add(&fx->vm, &bad.vdev), -EINVAL);
	fake_init(&bad);
	bad.vdev.nr_queues = VIRTIO_MAX_QUEUES + 1;
	assert_int_equal(virtio_device_add(&fx->vm, &bad.vdev), -EINVAL);
	fake_init(&bad);
	bad.vdev.queue_max_size = 100;
	assert_int_equal(virtio_device_add(&fx->vm, &bad.vdev), -EINVAL);
	fake_init(&bad);
	bad.vdev.config_size = 0x1001;
	assert_int_equal(virtio_device_add(&fx->vm, &bad.vdev), -EINVAL);
	fake_init(&bad);
	bad.vdev.ops = NULL;
	assert_int_equal(virtio_device_add(&fx->vm, &bad.vdev), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pci_identity_and_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_feature_negotiation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_activate_failure_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enable_bad_rings_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_config_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kick_and_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix_interrupts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_chain_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_endless_ring_does_not_hang, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_quiets_worker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pci_cfg_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_rejects_bad_devices, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
