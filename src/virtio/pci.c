/* The modern virtio-over-PCI transport (virtio 1.2, 4.1).
 *
 * Registers are served from BAR 0 (layout in virtio.h) on vCPU threads,
 * under dev->lock. Queue kicks do not go through here: each queue's notify
 * slot is a KVM ioeventfd bound to the queue's kick eventfd, which the
 * device's worker thread waits on (a write that still reaches userspace,
 * of another width or without KVM, signals the eventfd by hand). The
 * worker calls the device with dev->lock held.
 *
 * Everything the driver writes is checked here: feature bits against
 * what was offered, queue sizes, MSI-X vectors against the table, ring
 * addresses (through virtq_activate()); a broken driver gets FEATURES_OK
 * refused or DEVICE_NEEDS_RESET, never more. */
#include "virtio.h"

#include <endian.h>
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "util.h"
#include "vm.h"

#define VIRTIO_PCI_VENDOR       0x1af4
#define VIRTIO_PCI_DEVICE_BASE  0x1040   /* + device ID: non-transitional */
#define VIRTIO_PCI_SUBSYS_ID    0x40     /* 4.1.2.1: 0x40 or higher */
#define VIRTIO_PCI_REVISION     1

/* BAR 0 */
#define VIRTIO_BAR              0
#define VIRTIO_BAR_SIZE         0x8000
#define VIRTIO_COMMON_OFFSET    0x0000
#define VIRTIO_COMMON_LEN       0x38     /* up to queue_device: no NOTIFICATION_DATA, no RING_RESET */
#define VIRTIO_ISR_OFFSET       0x1000
#define VIRTIO_ISR_LEN          4
#define VIRTIO_DEVCFG_OFFSET    0x2000
#define VIRTIO_DEVCFG_MAX       0x1000
#define VIRTIO_NOTIFY_OFFSET    0x3000
#define VIRTIO_NOTIFY_MULT      4
#define VIRTIO_MSIX_TABLE       0x4000
#define VIRTIO_MSIX_PBA         0x6000

/* struct virtio_pci_cap and its extensions */
#define VIRTIO_PCI_CAP_COMMON_CFG  1
#define VIRTIO_PCI_CAP_NOTIFY_CFG  2
#define VIRTIO_PCI_CAP_ISR_CFG     3
#define VIRTIO_PCI_CAP_DEVICE_CFG  4
#define VIRTIO_PCI_CAP_PCI_CFG     5
#define CAP_LEN_FIELD    2
#define CAP_CFG_TYPE     3
#define CAP_BAR          4
#define CAP_OFFSET       8
#define CAP_LENGTH       12
#define CAP_NOTIFY_MULT  16
#define CAP_PCI_CFG_DATA 16
#define CAP_SIZE         16
#define CAP_NOTIFY_SIZE  20
#define CAP_PCI_CFG_SIZE 20

/* struct virtio_pci_common_cfg */
#define COMMON_DFSELECT   0x00
#define COMMON_DF         0x04
#define COMMON_GFSELECT   0x08
#define COMMON_GF         0x0c
#define COMMON_MSIX       0x10
#define COMMON_NUMQ       0x12
#define COMMON_STATUS     0x14
#define COMMON_CFGGEN     0x15
#define COMMON_Q_SELECT   0x16
#define COMMON_Q_SIZE     0x18
#define COMMON_Q_MSIX     0x1a
#define COMMON_Q_ENABLE   0x1c
#define COMMON_Q_NOFF     0x1e
#define COMMON_Q_DESCLO   0x20
#define COMMON_Q_AVAILLO  0x28
#define COMMON_Q_USEDLO   0x30

#define ISR_QUEUE   1
#define ISR_CONFIG  2

/* Worker epoll tags: kind in the high half of data.u64. */
enum { EV_STOP, EV_KICK, EV_WATCH };

static const struct {
	uint8_t offset, size;
} common_fields[] = {
	{ COMMON_DFSELECT, 4 }, { COMMON_DF, 4 }, { COMMON_GFSELECT, 4 }, { COMMON_GF, 4 },
	{ COMMON_MSIX, 2 }, { COMMON_NUMQ, 2 }, { COMMON_STATUS, 1 }, { COMMON_CFGGEN, 1 },
	{ COMMON_Q_SELECT, 2 }, { COMMON_Q_SIZE, 2 }, { COMMON_Q_MSIX, 2 }, { COMMON_Q_ENABLE, 2 },
	{ COMMON_Q_NOFF, 2 }, { COMMON_Q_DESCLO, 8 }, { COMMON_Q_AVAILLO, 8 }, { COMMON_Q_USEDLO, 8 },
};

static uint64_t ev_data(int kind, int n)
{
	return (uint64_t)kind << 32 | (uint32_t)n;
}

/* Transport feature bits (24..49) that need support this transport or
 * the split queues do not have: never offered, whatever the device sets. */
#define VIRTIO_F_RING_PACKED        34
#define VIRTIO_F_SR_IOV             37
#define VIRTIO_F_NOTIFICATION_DATA  38
#define VIRTIO_F_NOTIF_CONFIG_DATA  39
#define VIRTIO_F_RING_RESET         40
#define UNSUPPORTED_FEATURES                                                                       \
	(1ULL << VIRTIO_F_RING_PACKED | 1ULL << VIRTIO_F_SR_IOV | 1ULL << VIRTIO_F_NOTIFICATION_DATA | \
	 1ULL << VIRTIO_F_NOTIF_CONFIG_DATA | 1ULL << VIRTIO_F_RING_RESET)

static uint64_t offered_features(const struct virtio_device *dev)
{
	return (dev->features & ~UNSUPPORTED_FEATURES) | 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC |
	       1ULL << VIRTIO_F_EVENT_IDX;
}

bool virtio_has_feature(const struct virtio_device *dev, unsigned bit)
{
	return bit < 64 && (dev->status & VIRTIO_STATUS_FEATURES_OK) && (dev->driver_features >> bit & 1);
}

static bool queue_usable(const struct virtio_device *dev, int q)
{
	const struct virtio_queue_state *s = &dev->queues[q];
	return (dev->status & VIRTIO_STATUS_DRIVER_OK) && !(dev->status & VIRTIO_STATUS_NEEDS_RESET) &&
	       s->enabled && s->vq.ready && !s->vq.broken;
}

struct virtq *virtio_queue(struct virtio_device *dev, int q)
{
	if (q < 0 || q >= dev->nr_queues)
		return NULL;
	pthread_mutex_lock(&dev->lock);
	struct virtq *vq = queue_usable(dev, q) ? &dev->queues[q].vq : NULL;
	pthread_mutex_unlock(&dev->lock);
	return vq;
}

/* ---- Interrupts (called with dev->lock held) ---- */

/* MSI-X when the driver enabled it (no vector: no interrupt, as the spec
 * says), else INTx with the ISR bit. Nothing before DRIVER_OK: a driver
 * that has not set up its handler would see an unclaimed level interrupt. */
static void raise_interrupt(struct virtio_device *dev, uint16_t vector, uint32_t isr_bit)
{
	if (!(dev->status & VIRTIO_STATUS_DRIVER_OK))
		return;
	dev->nr_interrupts++;
	if (isr_bit == ISR_CONFIG)
		dev->isr |= ISR_CONFIG;
	if (vector != VIRTIO_NO_VECTOR && pci_msix_notify(&dev->pci, vector))
		return;
	if (pci_msix_enabled(&dev->pci))
		return;
	dev->isr |= isr_bit;
	pci_intx_set(&dev->pci, true);
}

void virtio_queue_notify(struct virtio_device *dev, int q)
{
	if (q < 0 || q >= dev->nr_queues)
		return;
	pthread_mutex_lock(&dev->lock);
	struct virtio_queue_state *s = &dev->queues[q];
	if (s->enabled && s->vq.ready && virtq_should_notify(&s->vq))
		raise_interrupt(dev, s->vector, ISR_QUEUE);
	pthread_mutex_unlock(&dev->lock);
}

void virtio_config_changed(struct virtio_device *dev)
{
	pthread_mutex_lock(&dev->lock);
	dev->config_generation++;
	raise_interrupt(dev, dev->config_vector, ISR_CONFIG);
	pthread_mutex_unlock(&dev->lock);
}

void virtio_needs_reset(struct virtio_device *dev, const char *why)
{
	pthread_mutex_lock(&dev->lock);
	dev->nr_bad_chains++;
	if (!(dev->status & VIRTIO_STATUS_NEEDS_RESET)) {
		dev->status |= VIRTIO_STATUS_NEEDS_RESET;
		/* Once at warn level: a guest looping reset and breakage must
		 * not flood the log. */
		if (!dev->warned)
			log_warn("%s: device needs reset: %s", dev->name, why ? why : "driver error");
		else
			log_debug("%s: device needs reset: %s", dev->name, why ? why : "driver error");
		dev->warned = true;
		raise_interrupt(dev, dev->config_vector, ISR_CONFIG);
	}
	pthread_mutex_unlock(&dev->lock);
}

void virtio_queue_kick(struct virtio_device *dev, int q)
{
	if (q < 0 || q >= dev->nr_queues || !dev->added)
		return;
	uint64_t one = 1;
	if (write(dev->queues[q].kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("%s: queue %d kick: %s", dev->name, q, strerror(errno));
}

/* ---- Status, reset, queues (dev->lock held) ---- */

/* The transport's side of a reset: every register to its initial value. */
static void reset_registers(struct virtio_device *dev)
{
	for (int q = 0; q < dev->nr_queues; q++) {
		struct virtio_queue_state *s = &dev->queues[q];
		virtq_reset(&s->vq);
		s->vq.size = dev->queue_max_size;
		s->vq.desc_gpa = s->vq.avail_gpa = s->vq.used_gpa = 0;
		s->vq.event_idx = s->vq.indirect = false;
		s->vector = VIRTIO_NO_VECTOR;
		s->enabled = false;
	}
	dev->driver_features = 0;
	dev->device_feature_select = dev->driver_feature_select = 0;
	dev->queue_select = 0;
	dev->config_vector = VIRTIO_NO_VECTOR;
	dev->status = 0;
	dev->isr = 0;
	pci_intx_set(&dev->pci, false);
}

static void device_reset(struct virtio_device *dev)
{
	if (dev->ops->reset)
		dev->ops->reset(dev);
	reset_registers(dev);
}

static bool features_acceptable(const struct virtio_device *dev)
{
	return !(dev->driver_features & ~offered_features(dev)) &&
	       (dev->driver_features >> VIRTIO_F_VERSION_1 & 1);
}

static void status_write(struct virtio_device *dev, uint8_t value)
{
	if (value == 0) {
		device_reset(dev);
		return;
	}
	/* Bits only go up until reset; NEEDS_RESET is the device's. */
	uint8_t old = dev->status;
	uint8_t added = value & ~old;
	dev->status |= value & (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FAILED);
	if (added & VIRTIO_STATUS_FEATURES_OK) {
		if (features_acceptable(dev))
			dev->status |= VIRTIO_STATUS_FEATURES_OK;
		else
			log_debug("%s: driver features %#llx refused (offered %#llx)", dev->name,
				  (unsigned long long)dev->driver_features, (unsigned long long)offered_features(dev));
	}
	if ((added & VIRTIO_STATUS_DRIVER_OK) && (dev->status & VIRTIO_STATUS_FEATURES_OK) &&
	    !(dev->status & VIRTIO_STATUS_NEEDS_RESET)) {
		dev->status |= VIRTIO_STATUS_DRIVER_OK;
		int err = dev->ops->activate ? dev->ops->activate(dev) : 0;
		if (err) {
			virtio_needs_reset(dev, "the device could not start");
			return;
		}
		/* Buffers made available before DRIVER_OK had no kick that
		 * counted: have the worker look at every queue once. */
		for (int q = 0; q < dev->nr_queues; q++)
			if (dev->queues[q].enabled)
				virtio_queue_kick(dev, q);
	}
}

static void queue_enable(struct virtio_device *dev, int q)
{
	struct virtio_queue_state *s = &dev->queues[q];
	virtq_reset(&s->vq);
	s->vq.event_idx = virtio_has_feature(dev, VIRTIO_F_EVENT_IDX);
	s->vq.indirect = virtio_has_feature(dev, VIRTIO_F_INDIRECT_DESC);
	s->enabled = true;
	if (virtq_activate(&s->vq, &dev->vm->mem)) {
		char why[96];
		snprintf(why, sizeof(why), "queue %d: %s", q, s->vq.error ? s->vq.error : "bad rings");
		virtio_needs_reset(dev, why);
	}
}

static bool vector_valid(const struct virtio_device *dev, uint64_t vector)
{
	return vector < (uint64_t)dev->pci.msix.nr_vectors;
}

/* ---- Common configuration ---- */

static int common_field(uint64_t offset, uint32_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(common_fields); i++) {
		uint64_t start = common_fields[i].offset, size = common_fields[i].size;
		if (offset >= start && offset + len <= start + size)
			return (int)i;
	}
	return -1;
}

static struct virtio_queue_state *selected_queue(struct virtio_device *dev)
{
	return dev->queue_select < dev->nr_queues ? &dev->queues[dev->queue_select] : NULL;
}

static uint64_t common_read(struct virtio_device *dev, uint32_t field)
{
	struct virtio_queue_state *s = selected_queue(dev);
	switch (field) {
	case COMMON_DFSELECT: return dev->device_feature_select;
	case COMMON_DF:
		return dev->device_feature_select < 2 ? (uint32_t)(offered_features(dev) >> (32 * dev->device_feature_select)) : 0;
	case COMMON_GFSELECT: return dev->driver_feature_select;
	case COMMON_GF:
		return dev->driver_feature_select < 2 ? (uint32_t)(dev->driver_features >> (32 * dev->driver_feature_select)) : 0;
	case COMMON_MSIX: return dev->config_vector;
	case COMMON_NUMQ: return (uint64_t)dev->nr_queues;
	case COMMON_STATUS: return dev->status;
	case COMMON_CFGGEN: return dev->config_generation;
	case COMMON_Q_SELECT: return dev->queue_select;
	}
	if (!s)
		return 0;   /* no such queue: size 0 tells the driver */
	switch (field) {
	case COMMON_Q_SIZE: return s->vq.size;
	case COMMON_Q_MSIX: return s->vector;
	case COMMON_Q_ENABLE: return s->enabled;
	case COMMON_Q_NOFF: return dev->queue_select;
	case COMMON_Q_DESCLO: return s->vq.desc_gpa;
	case COMMON_Q_AVAILLO: return s->vq.avail_gpa;
	case COMMON_Q_USEDLO: return s->vq.used_gpa;
	}
	return 0;
}

static void common_write(struct virtio_device *dev, uint32_t field, uint64_t value)
{
	struct virtio_queue_state *s = selected_queue(dev);
	switch (field) {
	case COMMON_DFSELECT:
		dev->device_feature_select = (uint32_t)value;
		return;
	case COMMON_GFSELECT:
		dev->driver_feature_select = (uint32_t)value;
		return;
	case COMMON_GF:
		/* Fixed once FEATURES_OK was accepted. */
		if (dev->driver_feature_select < 2 && !(dev->status & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned shift = 32 * dev->driver_feature_select;
			dev->driver_features = (dev->driver_features & ~(0xffffffffULL << shift)) | (value & 0xffffffff) << shift;
		}
		return;
	case COMMON_MSIX:
		dev->config_vector = vector_valid(dev, value) ? (uint16_t)value : VIRTIO_NO_VECTOR;
		return;
	case COMMON_STATUS:
		status_write(dev, (uint8_t)value);
		return;
	case COMMON_Q_SELECT:
		dev->queue_select = (uint16_t)value;
		return;
	}
	if (!s)
		return;
	switch (field) {
	case COMMON_Q_SIZE:
		if (!s->enabled && value && value <= dev->queue_max_size && !(value & (value - 1)))
			s->vq.size = (uint16_t)value;
		return;
	case COMMON_Q_MSIX:
		s->vector = vector_valid(dev, value) ? (uint16_t)value : VIRTIO_NO_VECTOR;
		return;
	case COMMON_Q_ENABLE:
		/* 0 means nothing without VIRTIO_F_RING_RESET; queues are set up
		 * between FEATURES_OK and DRIVER_OK (3.1.1). */
		if (value == 1 && !s->enabled && (dev->status & VIRTIO_STATUS_FEATURES_OK) &&
		    !(dev->status & VIRTIO_STATUS_NEEDS_RESET))
			queue_enable(dev, dev->queue_select);
		return;
	case COMMON_Q_DESCLO:
		if (!s->enabled)
			s->vq.desc_gpa = value;
		return;
	case COMMON_Q_AVAILLO:
		if (!s->enabled)
			s->vq.avail_gpa = value;
		return;
	case COMMON_Q_USEDLO:
		if (!s->enabled)
			s->vq.used_gpa = value;
		return;
	}
}

/* Any access that stays inside one field; a write of part of a field
 * (a 64-bit address as two dwords) merges with its current value. */
static void common_access(struct virtio_device *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	int i = common_field(offset, len);
	if (i < 0) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	uint32_t field = common_fields[i].offset;
	unsigned shift = (unsigned)(offset - field) * 8;
	uint64_t value = common_read(dev, field);
	if (!is_write) {
		value >>= shift;
		for (uint32_t b = 0; b < len; b++)
			data[b] = (uint8_t)(value >> (8 * b));
		return;
	}
	uint64_t bits = 0;
	for (uint32_t b = 0; b < len; b++)
		bits |= (uint64_t)data[b] << (8 * b);
	uint64_t mask = (len == 8 ? ~0ULL : (1ULL << (8 * len)) - 1) << shift;
	common_write(dev, field, (value & ~mask) | (bits << shift & mask));
}

/* ---- BAR 0 ---- */

static void isr_access(struct virtio_device *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	if (is_write)
		return;
	memset(data, 0, len);
	if (offset != 0)
		return;
	/* Reading clears it and lowers the line (4.1.4.5). */
	data[0] = (uint8_t)dev->isr;
	dev->isr = 0;
	pci_intx_set(&dev->pci, false);
}

static void devcfg_access(struct virtio_device *dev, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	if (!is_write)
		memset(data, 0, len);
	if (offset >= dev->config_size)
		return;
	uint32_t n = (uint32_t)MIN((uint64_t)len, dev->config_size - offset);
	if (is_write) {
		if (dev->ops->config_write)
			dev->ops->config_write(dev, (uint32_t)offset, data, n);
	} else if (dev->ops->config_read) {
		dev->ops->config_read(dev, (uint32_t)offset, data, n);
	} else if (dev->config) {
		memcpy(data, dev->config + offset, n);
	}
}

static void virtio_bar_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_device *dev = opaque;
	uint64_t notify_end = VIRTIO_NOTIFY_OFFSET + (uint64_t)VIRTIO_NOTIFY_MULT * dev->nr_queues;
	if (offset >= VIRTIO_NOTIFY_OFFSET && offset < notify_end) {
		/* A kick KVM's ioeventfd did not take (another width, or no
		 * KVM): do what it would have done. */
		if (is_write) {
			virtio_queue_kick(dev, (int)((offset - VIRTIO_NOTIFY_OFFSET) / VIRTIO_NOTIFY_MULT));
		} else {
			memset(data, 0, len);
		}
		return;
	}
	pthread_mutex_lock(&dev->lock);
	if (offset < VIRTIO_COMMON_OFFSET + VIRTIO_COMMON_LEN)
		common_access(dev, offset - VIRTIO_COMMON_OFFSET, data, len, is_write);
	else if (offset >= VIRTIO_ISR_OFFSET && offset < VIRTIO_ISR_OFFSET + VIRTIO_ISR_LEN)
		isr_access(dev, offset - VIRTIO_ISR_OFFSET, data, len, is_write);
	else if (offset >= VIRTIO_DEVCFG_OFFSET && offset < VIRTIO_DEVCFG_OFFSET + VIRTIO_DEVCFG_MAX)
		devcfg_access(dev, offset - VIRTIO_DEVCFG_OFFSET, data, len, is_write);
	else if (!is_write)
		memset(data, 0, len);
	pthread_mutex_unlock(&dev->lock);
}

/* ---- PCI glue ---- */

static uint32_t cfg_rd32(const uint8_t *cfg, uint32_t off)
{
	return (uint32_t)cfg[off] | (uint32_t)cfg[off + 1] << 8 | (uint32_t)cfg[off + 2] << 16 | (uint32_t)cfg[off + 3] << 24;
}

static void cfg_wr32(uint8_t *cfg, uint32_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		cfg[off + (uint32_t)i] = (uint8_t)(v >> (8 * i));
}

/* The VIRTIO_PCI_CAP_PCI_CFG window (4.1.4.9): the driver sets bar,
 * offset and length, then reads or writes pci_cfg_data, which reaches BAR
 * 0 at that offset. Everything else in the vendor capabilities is
 * read-only. Called under the PCI host lock (a read lock for reads, so
 * reads keep their result off cfg[]). */
static void virtio_cfg_access(struct pci_device *pci, uint32_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_device *dev = pci->opaque;
	uint32_t cap = dev->pci_cfg_cap;
	if (!cap || offset + len <= cap || offset >= cap + CAP_PCI_CFG_SIZE)
		return;
	bool touches_data = offset + len > cap + CAP_PCI_CFG_DATA;
	if (is_write) {
		for (uint32_t i = 0; i < len; i++) {
			uint32_t o = offset + i;
			if (o == cap + CAP_BAR || (o >= cap + CAP_OFFSET && o < cap + CAP_PCI_CFG_SIZE))
				pci->cfg[o] = data[i];
		}
	}
	if (!touches_data)
		return;
	uint32_t bar = pci->cfg[cap + CAP_BAR];
	uint32_t bar_off = cfg_rd32(pci->cfg, cap + CAP_OFFSET);
	uint32_t bar_len = cfg_rd32(pci->cfg, cap + CAP_LENGTH);
	bool valid = bar == VIRTIO_BAR && (bar_len == 1 || bar_len == 2 || bar_len == 4) && bar_off % bar_len == 0 &&
		     bar_off < VIRTIO_MSIX_TABLE;   /* the MSI-X table is the PCI layer's */
	uint8_t window[4] = { 0 };
	if (is_write) {
		if (valid) {
			memcpy(window, &pci->cfg[cap + CAP_PCI_CFG_DATA], 4);
			virtio_bar_io(dev, bar_off, window, bar_len, true);
		}
		return;
	}
	if (valid)
		virtio_bar_io(dev, bar_off, window, bar_len, false);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = offset + i;
		if (o >= cap + CAP_PCI_CFG_DATA && o < cap + CAP_PCI_CFG_SIZE)
			data[i] = window[o - cap - CAP_PCI_CFG_DATA];
	}
}

static int set_ioeventfd(struct virtio_device *dev, int q, uint64_t base, bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = base + VIRTIO_NOTIFY_OFFSET + (uint64_t)VIRTIO_NOTIFY_MULT * (uint64_t)q,
		.len = 2,
		.fd = dev->queues[q].kick_fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};
	return ioctl(dev->vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

/* BAR 0 moved, or decoding went on or off: the ioeventfds follow. Runs on
 * a vCPU thread under the PCI host's write lock. */
static void virtio_bar_moved(struct pci_device *pci, int bar, uint64_t old_addr, uint64_t new_addr)
{
	struct virtio_device *dev = pci->opaque;
	if (bar != VIRTIO_BAR || dev->vm->vm_fd < 0)
		return;
	for (int q = 0; q < dev->nr_queues; q++) {
		if (!dev->queues[q].ioeventfd)
			continue;
		int err = set_ioeventfd(dev, q, dev->ioeventfd_base, false);
		if (err)
			log_debug("%s: queue %d: cannot remove ioeventfd: %s", dev->name, q, strerror(-err));
		dev->queues[q].ioeventfd = false;
	}
	dev->ioeventfd_base = new_addr;
	if (!new_addr)
		return;
	for (int q = 0; q < dev->nr_queues; q++) {
		int err = set_ioeventfd(dev, q, new_addr, true);
		dev->queues[q].ioeventfd = !err;
		if (err)  /* kicks still work, through the MMIO exit */
			log_debug("%s: queue %d: no ioeventfd: %s", dev->name, q, strerror(-err));
	}
}

static const struct pci_device_ops virtio_pci_ops = {
	.cfg_access = virtio_cfg_access,
	.bar_moved = virtio_bar_moved,
};

static uint32_t class_code(uint16_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_BLOCK: return 0x018000;   /* mass storage, other */
	case VIRTIO_ID_NET: return 0x020000;     /* Ethernet */
	case VIRTIO_ID_CONSOLE: return 0x078000; /* communication, other */
	default: return 0x00ff00;
	}
}

static uint8_t add_virtio_cap(struct pci_device *pci, uint8_t type, uint8_t len, uint32_t offset, uint32_t length)
{
	uint8_t cap = pci_cfg_add_cap(pci, PCI_CAP_ID_VNDR, len);
	if (!cap)
		return 0;
	pci->cfg[cap + CAP_LEN_FIELD] = len;
	pci->cfg[cap + CAP_CFG_TYPE] = type;
	pci->cfg[cap + CAP_BAR] = VIRTIO_BAR;
	cfg_wr32(pci->cfg, cap + CAP_OFFSET, offset);
	cfg_wr32(pci->cfg, cap + CAP_LENGTH, length);
	return cap;
}

static int build_pci_function(struct virtio_device *dev)
{
	struct pci_device *pci = &dev->pci;
	pci->name = dev->name;
	pci->ops = &virtio_pci_ops;
	pci->opaque = dev;
	pci_cfg_set_ids(pci, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + dev->device_id), VIRTIO_PCI_VENDOR,
			VIRTIO_PCI_SUBSYS_ID, VIRTIO_PCI_REVISION, class_code(dev->device_id));
	uint32_t notify_len = VIRTIO_NOTIFY_MULT * (uint32_t)dev->nr_queues;
	uint8_t notify;
	if (!add_virtio_cap(pci, VIRTIO_PCI_CAP_COMMON_CFG, CAP_SIZE, VIRTIO_COMMON_OFFSET, VIRTIO_COMMON_LEN) ||
	    !(notify = add_virtio_cap(pci, VIRTIO_PCI_CAP_NOTIFY_CFG, CAP_NOTIFY_SIZE, VIRTIO_NOTIFY_OFFSET, notify_len)) ||
	    !add_virtio_cap(pci, VIRTIO_PCI_CAP_ISR_CFG, CAP_SIZE, VIRTIO_ISR_OFFSET, VIRTIO_ISR_LEN) ||
	    (dev->config_size &&
	     !add_virtio_cap(pci, VIRTIO_PCI_CAP_DEVICE_CFG, CAP_SIZE, VIRTIO_DEVCFG_OFFSET, dev->config_size)) ||
	    !(dev->pci_cfg_cap = add_virtio_cap(pci, VIRTIO_PCI_CAP_PCI_CFG, CAP_PCI_CFG_SIZE, 0, 0)))
		return -ENOSPC;
	cfg_wr32(pci->cfg, notify + CAP_NOTIFY_MULT, VIRTIO_NOTIFY_MULT);
	pci_cfg_set_bar(pci, VIRTIO_BAR, VIRTIO_BAR_SIZE, virtio_bar_io, dev);
	/* One vector per queue and one for config changes. */
	return pci_msix_init(pci, dev->nr_queues + 1, VIRTIO_BAR, VIRTIO_MSIX_TABLE, VIRTIO_MSIX_PBA);
}

/* ---- Worker ---- */

static struct virtio_fd_watch *find_watch(struct virtio_device *dev, int fd)
{
	for (int i = 0; i < dev->nr_watches; i++)
		if (dev->watches[i].fd == fd)
			return &dev->watches[i];
	return NULL;
}

/* A device callback may have popped a malformed chain: the queue says
 * so, and the transport reports it for the device. */
static void check_broken_queues(struct virtio_device *dev)
{
	for (int q = 0; q < dev->nr_queues; q++) {
		const struct virtq *vq = &dev->queues[q].vq;
		if (vq->broken && !(dev->status & VIRTIO_STATUS_NEEDS_RESET)) {
			char why[96];
			snprintf(why, sizeof(why), "queue %d: %s", q, vq->error ? vq->error : "malformed chain");
			virtio_needs_reset(dev, why);
		}
	}
}

/* Around each device callback: a fresh pop budget for every queue, and a
 * queue that spent it gets looked at again after the worker has let go
 * of the lock once. */
static void begin_callback(struct virtio_device *dev)
{
	for (int q = 0; q < dev->nr_queues; q++)
		virtq_refill_budget(&dev->queues[q].vq);
}

static void end_callback(struct virtio_device *dev)
{
	for (int q = 0; q < dev->nr_queues; q++) {
		struct virtq *vq = &dev->queues[q].vq;
		if (vq->budget_spent) {
			vq->budget_spent = false;
			virtio_queue_kick(dev, q);
		}
	}
	check_broken_queues(dev);
}

static void handle_event(struct virtio_device *dev, const struct epoll_event *ev)
{
	int kind = (int)(ev->data.u64 >> 32), n = (int)(uint32_t)ev->data.u64;
	if (kind == EV_KICK && n < dev->nr_queues) {
		uint64_t count;
		if (read(dev->queues[n].kick_fd, &count, sizeof(count)) < 0)
			return;   /* EAGAIN: drained with an earlier event */
		dev->nr_kicks += count;
		if (queue_usable(dev, n)) {
			begin_callback(dev);
			dev->ops->queue_notify(dev, n);
			end_callback(dev);
		}
	} else if (kind == EV_WATCH) {
		struct virtio_fd_watch *w = find_watch(dev, n);
		if (w) {
			begin_callback(dev);
			w->fn(dev, w->fd, ev->events);
			end_callback(dev);
		}
	}
}

static void *virtio_worker(void *opaque)
{
	struct virtio_device *dev = opaque;
	struct epoll_event events[16];
	if (sandbox_enter(THREAD_DEVICE) < 0) {
		vm_stop(dev->vm, VM_EXIT_ERROR, 0);
		return NULL;
	}
	for (;;) {
		int n = epoll_wait(dev->epoll_fd, events, (int)ARRAY_SIZE(events), -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("%s: epoll_wait: %s", dev->name, strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&dev->lock);
		while (dev->paused && !dev->stopping)
			pthread_cond_wait(&dev->wake, &dev->lock);
		if (dev->stopping) {
			pthread_mutex_unlock(&dev->lock);
			return NULL;
		}
		for (int i = 0; i < n; i++)
			handle_event(dev, &events[i]);
		pthread_mutex_unlock(&dev->lock);
	}
}

static int epoll_add(struct virtio_device *dev, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	return epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int virtio_watch_fd(struct virtio_device *dev, int fd, uint32_t events, virtio_fd_fn fn)
{
	if (fd < 0 || !fn)
		return -EINVAL;
	if (dev->added)
		pthread_mutex_lock(&dev->lock);
	int err = 0;
	if (find_watch(dev, fd))
		err = -EEXIST;
	else if (dev->nr_watches >= VIRTIO_MAX_FDS)
		err = -ENOSPC;
	else if (dev->added)
		err = epoll_add(dev, fd, events ? events : EPOLLIN, ev_data(EV_WATCH, fd));
	if (!err)
		dev->watches[dev->nr_watches++] = (struct virtio_fd_watch){ fd, fn, events ? events : EPOLLIN };
	if (dev->added)
		pthread_mutex_unlock(&dev->lock);
	return err;
}

int virtio_unwatch_fd(struct virtio_device *dev, int fd)
{
	if (dev->added)
		pthread_mutex_lock(&dev->lock);
	struct virtio_fd_watch *w = find_watch(dev, fd);
	int err = w ? 0 : -ENOENT;
	if (w) {
		if (dev->added && epoll_ctl(dev->epoll_fd, EPOLL_CTL_DEL, fd, NULL) < 0)
			err = -errno;
		*w = dev->watches[--dev->nr_watches];
	}
	if (dev->added)
		pthread_mutex_unlock(&dev->lock);
	return err;
}

/* ---- Lifetime ---- */

static void virtio_pause(void *opaque)
{
	struct virtio_device *dev = opaque;
	/* Holding the lock once means no callback is running; the flag
	 * keeps the worker from starting another. */
	pthread_mutex_lock(&dev->lock);
	dev->paused = true;
	pthread_mutex_unlock(&dev->lock);
}

static void virtio_resume(void *opaque)
{
	struct virtio_device *dev = opaque;
	pthread_mutex_lock(&dev->lock);
	dev->paused = false;
	pthread_cond_broadcast(&dev->wake);
	pthread_mutex_unlock(&dev->lock);
}

static void close_transport_fds(struct virtio_device *dev)
{
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		if (dev->queues[q].kick_fd >= 0)
			close(dev->queues[q].kick_fd);
		dev->queues[q].kick_fd = -1;
	}
	if (dev->stop_fd >= 0)
		close(dev->stop_fd);
	if (dev->epoll_fd >= 0)
		close(dev->epoll_fd);
	dev->stop_fd = dev->epoll_fd = -1;
}

static void virtio_device_destroy(void *opaque)
{
	struct virtio_device *dev = opaque;
	if (dev->worker_started) {
		pthread_mutex_lock(&dev->lock);
		dev->stopping = true;
		pthread_cond_broadcast(&dev->wake);
		pthread_mutex_unlock(&dev->lock);
		uint64_t one = 1;
		if (write(dev->stop_fd, &one, sizeof(one)) < 0)
			log_warn("%s: cannot stop the worker: %s", dev->name, strerror(errno));
		pthread_join(dev->worker, NULL);
		dev->worker_started = false;
	}
	pthread_mutex_lock(&dev->lock);
	if (dev->ops->reset)
		dev->ops->reset(dev);
	pthread_mutex_unlock(&dev->lock);
	close_transport_fds(dev);
	dev->added = false;
	pthread_cond_destroy(&dev->wake);
	pthread_mutex_destroy(&dev->lock);
	/* Last: it may free the memory dev lives in. */
	if (dev->ops->destroy)
		dev->ops->destroy(dev);
}

static int start_worker(struct virtio_device *dev)
{
	/* Signals belong to the main thread (signalfd) and the vCPUs. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int err = -pthread_create(&dev->worker, NULL, virtio_worker, dev);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return err;
	dev->worker_started = true;
	char name[16];
	snprintf(name, sizeof(name), "%s", dev->name);
	pthread_setname_np(dev->worker, name);
	return 0;
}

static int check_device(const struct virtio_device *dev)
{
	uint16_t max = dev->queue_max_size;
	if (!dev->ops || !dev->ops->queue_notify || dev->nr_queues < 1 || dev->nr_queues > VIRTIO_MAX_QUEUES ||
	    !max || max > VIRTQ_MAX_SIZE || (max & (max - 1)) || dev->config_size > VIRTIO_DEVCFG_MAX ||
	    dev->nr_watches < 0 || dev->nr_watches > VIRTIO_MAX_FDS)
		return -EINVAL;
	return 0;
}

/* The transport's state, fds and worker wait set; the device's fields and
 * any watches it registered already are kept. */
static int init_transport(struct virtio_device *dev)
{
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&dev->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_cond_init(&dev->wake, NULL);
	dev->paused = dev->stopping = dev->worker_started = false;
	dev->status = 0;
	dev->config_generation = 0;
	dev->nr_kicks = dev->nr_interrupts = dev->nr_bad_chains = 0;
	dev->warned = false;
	dev->ioeventfd_base = 0;
	for (int q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		dev->queues[q] = (struct virtio_queue_state){ .kick_fd = -1, .vector = VIRTIO_NO_VECTOR };
		dev->queues[q].vq.mem = &dev->vm->mem;
	}
	dev->stop_fd = dev->epoll_fd = -1;
	dev->added = true;
	for (int q = 0; q < dev->nr_queues; q++)
		if ((dev->queues[q].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
			return -errno;
	if ((dev->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (dev->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return -errno;
	int err = epoll_add(dev, dev->stop_fd, EPOLLIN, ev_data(EV_STOP, 0));
	for (int q = 0; !err && q < dev->nr_queues; q++)
		err = epoll_add(dev, dev->queues[q].kick_fd, EPOLLIN, ev_data(EV_KICK, q));
	for (int i = 0; !err && i < dev->nr_watches; i++)
		err = epoll_add(dev, dev->watches[i].fd, dev->watches[i].events, ev_data(EV_WATCH, dev->watches[i].fd));
	if (err)
		return err;
	reset_registers(dev);
	return 0;
}

int virtio_device_add(struct vm *vm, struct virtio_device *dev)
{
	if (!dev->name)
		dev->name = "virtio";
	int err = check_device(dev);
	if (err) {
		log_error("%s: invalid virtio device description", dev->name);
		return err;
	}
	dev->vm = vm;
	memset(&dev->pci, 0, sizeof(dev->pci));
	if ((err = init_transport(dev)) || (err = build_pci_function(dev)) ||
	    (err = vm_on_destroy(vm, virtio_device_destroy, dev))) {
		log_error("%s: cannot set up the virtio transport: %s", dev->name, strerror(-err));
		close_transport_fds(dev);
		dev->added = false;
		pthread_cond_destroy(&dev->wake);
		pthread_mutex_destroy(&dev->lock);
		return err;
	}
	/* From here vm_destroy() cleans up. pci_device_add() logs its own
	 * failure. */
	if ((err = pci_device_add(vm, &dev->pci)))
		return err;
	if ((err = vm_on_pause(vm, virtio_pause, virtio_resume, dev)) || (err = start_worker(dev))) {
		log_error("%s: cannot start the virtio worker: %s", dev->name, strerror(-err));
		return err;
	}
	log_debug("%s: virtio device %u, %d queues of up to %u", dev->name, dev->device_id, dev->nr_queues,
		  dev->queue_max_size);
	return 0;
}
