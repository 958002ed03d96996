/* The tiny guest's virtio-pci driver (virtio.h): PCI discovery through
 * 0xCF8/0xCFC, the vendor capabilities for every register block, the
 * initialization sequence of 3.1.1, and a polled split virtqueue. */
#include "virtio.h"

#define PCI_CONFIG_ADDRESS  X86_PORT_PCI_CONFIG
#define PCI_CONFIG_DATA     (X86_PORT_PCI_CONFIG + 4)

#define PCI_VENDOR_ID       0x00
#define PCI_DEVICE_ID       0x02
#define PCI_COMMAND         0x04
#define PCI_STATUS          0x06
#define PCI_HEADER_TYPE     0x0e
#define PCI_BAR0            0x10
#define PCI_CAPABILITY_LIST 0x34
#define PCI_COMMAND_MEMORY  0x2
#define PCI_COMMAND_MASTER  0x4
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CAP_ID_VNDR     0x09
#define PCI_CAP_ID_MSIX     0x11
#define PCI_MAX_CAPS        48   /* (256 - 64) / 4: bounds a looping list */

/* struct virtio_pci_cap (4.1.4) */
#define VCAP_LEN      2
#define VCAP_CFG_TYPE 3
#define VCAP_BAR      4
#define VCAP_OFFSET   8
#define VCAP_LENGTH   12
#define VCAP_NOTIFY_MULT 16
#define VCAP_COMMON   1
#define VCAP_NOTIFY   2
#define VCAP_ISR      3
#define VCAP_DEVICE   4
#define VCAP_PCI_CFG  5

/* Polls give up after this many TSC cycles (seconds at any plausible
 * rate; the nested test host is slow). */
#define TIMEOUT_CYCLES (40ull << 30)

uint8_t virtio_scratch[VIRTIO_SCRATCH_SIZE] __attribute__((aligned(4096)));

/* Rings for queue 0: descriptor table, avail ring, used ring, one page
 * each, and indirect tables. */
static uint8_t ring_mem[3][4096] __attribute__((aligned(4096)));
#define VQ_INDIRECT_TABLES 8
#define VQ_INDIRECT_MAX    16
static struct vring_desc indirect_mem[VQ_INDIRECT_TABLES][VQ_INDIRECT_MAX] __attribute__((aligned(16)));

/* ---- PCI configuration space ---- */

static void pci_select(int slot, uint32_t off)
{
	outl(PCI_CONFIG_ADDRESS, 0x80000000u | (uint32_t)slot << 11 | (off & 0xfc));
}

uint32_t pci_read32(int slot, uint32_t off)
{
	pci_select(slot, off);
	return inl(PCI_CONFIG_DATA);
}

uint16_t pci_read16(int slot, uint32_t off)
{
	pci_select(slot, off);
	return inw((uint16_t)(PCI_CONFIG_DATA + (off & 2)));
}

uint8_t pci_read8(int slot, uint32_t off)
{
	pci_select(slot, off);
	return inb((uint16_t)(PCI_CONFIG_DATA + (off & 3)));
}

void pci_write32(int slot, uint32_t off, uint32_t v)
{
	pci_select(slot, off);
	outl(PCI_CONFIG_DATA, v);
}

void pci_write16(int slot, uint32_t off, uint16_t v)
{
	pci_select(slot, off);
	outw((uint16_t)(PCI_CONFIG_DATA + (off & 2)), v);
}

void pci_write8(int slot, uint32_t off, uint8_t v)
{
	pci_select(slot, off);
	outb((uint16_t)(PCI_CONFIG_DATA + (off & 3)), v);
}

/* ---- Discovery ---- */

const char *vdev_name(const struct vdev *d)
{
	switch (d->device_id) {
	case VIRTIO_ID_RNG: return "virtio-rng";
	case VIRTIO_ID_BLOCK: return "virtio-blk";
	default: return "virtio-?";
	}
}

/* BAR addresses from config space, and sizes by the usual probe (decoding
 * off meanwhile, as firmware does it). */
static void read_bars(struct vdev *d)
{
	uint16_t cmd = pci_read16(d->slot, PCI_COMMAND);

	pci_write16(d->slot, PCI_COMMAND, (uint16_t)(cmd & ~PCI_COMMAND_MEMORY));
	for (int i = 0; i < 6; i++) {
		uint32_t off = PCI_BAR0 + 4 * (uint32_t)i;
		uint32_t lo = pci_read32(d->slot, off), size_lo;
		bool is64 = !(lo & 1) && (lo & 6) == 4;

		d->bar_addr[i] = d->bar_size[i] = 0;
		if (lo & 1) /* I/O BAR: virtio structures are in memory BARs here */
			continue;
		pci_write32(d->slot, off, 0xffffffff);
		size_lo = pci_read32(d->slot, off) & ~0xfu;
		pci_write32(d->slot, off, lo);
		d->bar_addr[i] = lo & ~0xfull;
		if (is64 && i < 5) {
			uint32_t hi = pci_read32(d->slot, off + 4), size_hi;

			pci_write32(d->slot, off + 4, 0xffffffff);
			size_hi = pci_read32(d->slot, off + 4);
			pci_write32(d->slot, off + 4, hi);
			d->bar_addr[i] |= (uint64_t)hi << 32;
			d->bar_size[i] = ~((uint64_t)size_hi << 32 | size_lo) + 1;
			d->bar_size[++i] = 0;
			d->bar_addr[i] = 0;
		} else if (size_lo) {
			d->bar_size[i] = (uint32_t)(~size_lo + 1);
		}
	}
	pci_write16(d->slot, PCI_COMMAND, (uint16_t)(cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
}

/* Resolves one vendor capability into an address; false when it points
 * outside an implemented BAR. */
static bool cap_address(struct vdev *d, uint8_t cap, uint64_t *addr, uint32_t *len, int *bar_out)
{
	uint8_t bar = pci_read8(d->slot, cap + VCAP_BAR);
	uint32_t off = pci_read32(d->slot, cap + VCAP_OFFSET);
	uint32_t length = pci_read32(d->slot, cap + VCAP_LENGTH);

	if (bar > 5 || !d->bar_addr[bar] || !d->bar_size[bar] || (uint64_t)off + length > d->bar_size[bar])
		return false;
	*addr = d->bar_addr[bar] + off;
	*len = length;
	*bar_out = bar;
	return true;
}

int vdev_remap(struct vdev *d, const char **why)
{
	uint8_t cap;
	int n;
	bool have[6] = { false };

	d->pcicfg_cap = d->msix_cap = 0;
	read_bars(d);
	if (!(pci_read16(d->slot, PCI_STATUS) & PCI_STATUS_CAP_LIST)) {
		*why = "no capability list";
		return -1;
	}
	cap = pci_read8(d->slot, PCI_CAPABILITY_LIST) & 0xfc;
	for (n = 0; cap && n < PCI_MAX_CAPS; n++, cap = pci_read8(d->slot, cap + 1u) & 0xfc) {
		uint8_t id = pci_read8(d->slot, cap), type, clen;
		uint64_t addr;
		uint32_t len;
		int bar;

		if (cap < 0x40) {
			*why = "capability pointer into the header";
			return -1;
		}
		if (id == PCI_CAP_ID_MSIX && !d->msix_cap)
			d->msix_cap = cap;
		if (id != PCI_CAP_ID_VNDR)
			continue;
		type = pci_read8(d->slot, cap + VCAP_CFG_TYPE);
		clen = pci_read8(d->slot, cap + VCAP_LEN);
		if (type == 0 || type > VCAP_PCI_CFG || have[type] || clen < 16)
			continue; /* the first of each type is the one to use (4.1.4) */
		if (type == VCAP_PCI_CFG) {
			have[type] = true;
			d->pcicfg_cap = cap;
			continue;
		}
		if (!cap_address(d, cap, &addr, &len, &bar))
			continue;
		have[type] = true;
		switch (type) {
		case VCAP_COMMON: d->common = addr; d->common_len = len; d->common_bar = bar; break;
		case VCAP_ISR: d->isr = addr; d->isr_len = len; break;
		case VCAP_DEVICE: d->devcfg = addr; d->devcfg_len = len; break;
		case VCAP_NOTIFY:
			if (clen < 20) {
				have[type] = false;
				continue;
			}
			d->notify_base = addr;
			d->notify_len = len;
			d->notify_mult = pci_read32(d->slot, cap + VCAP_NOTIFY_MULT);
			break;
		}
	}
	if (n == PCI_MAX_CAPS) {
		*why = "capability list does not end";
		return -1;
	}
	if (!have[VCAP_COMMON] || d->common_len < VCC_MIN_LEN) {
		*why = "no usable common configuration capability";
		return -1;
	}
	if (!have[VCAP_NOTIFY]) {
		*why = "no usable notify capability";
		return -1;
	}
	if (!have[VCAP_ISR]) {
		*why = "no usable ISR capability";
		return -1;
	}
	if (!have[VCAP_DEVICE])
		d->devcfg = 0, d->devcfg_len = 0; /* allowed: a device without config (rng) */
	return 0;
}

int vdev_find(uint16_t device_id, int nth, struct vdev *d, const char **why)
{
	*why = NULL;
	for (int slot = 0; slot < 32; slot++) {
		uint32_t id = pci_read32(slot, PCI_VENDOR_ID);

		if ((id & 0xffff) != VIRTIO_PCI_VENDOR || (id >> 16) != (uint32_t)VIRTIO_PCI_DEVICE_BASE + device_id)
			continue;
		if (nth-- > 0)
			continue;
		memset(d, 0, sizeof(*d));
		d->slot = slot;
		d->device_id = device_id;
		return vdev_remap(d, why);
	}
	return -1;
}

/* ---- Common configuration ---- */

uint8_t vcc_read8(const struct vdev *d, uint32_t off) { return mmio_read8(d->common + off); }
uint16_t vcc_read16(const struct vdev *d, uint32_t off) { return mmio_read16(d->common + off); }
uint32_t vcc_read32(const struct vdev *d, uint32_t off) { return mmio_read32(d->common + off); }
void vcc_write8(const struct vdev *d, uint32_t off, uint8_t v) { mmio_write8(d->common + off, v); }
void vcc_write16(const struct vdev *d, uint32_t off, uint16_t v) { mmio_write16(d->common + off, v); }
void vcc_write32(const struct vdev *d, uint32_t off, uint32_t v) { mmio_write32(d->common + off, v); }

void vcc_write64(const struct vdev *d, uint32_t off, uint64_t v)
{
	vcc_write32(d, off, (uint32_t)v);
	vcc_write32(d, off + 4, (uint32_t)(v >> 32));
}

uint8_t vdev_status(const struct vdev *d)
{
	return vcc_read8(d, VCC_STATUS);
}

int vdev_reset(struct vdev *d)
{
	uint64_t start = rdtsc();

	vcc_write8(d, VCC_STATUS, 0);
	/* 4.1.4.3.2: the reset is done when device_status reads 0. */
	while (vdev_status(d) != 0) {
		if (rdtsc() - start > TIMEOUT_CYCLES)
			return -1;
		cpu_relax();
	}
	d->q.size = 0;
	return 0;
}

void vdev_read_features(struct vdev *d)
{
	vcc_write32(d, VCC_DFSELECT, 0);
	d->offered = vcc_read32(d, VCC_DF);
	vcc_write32(d, VCC_DFSELECT, 1);
	d->offered |= (uint64_t)vcc_read32(d, VCC_DF) << 32;
}

const char *vdev_negotiate(struct vdev *d, uint64_t features)
{
	uint8_t status;

	if (vdev_reset(d))
		return "device_status does not read 0 after reset";
	vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE);
	vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	vdev_read_features(d);
	if (!(d->offered & FEATURE(VIRTIO_F_VERSION_1)))
		return "device does not offer VIRTIO_F_VERSION_1";
	vcc_write32(d, VCC_GFSELECT, 0);
	vcc_write32(d, VCC_GF, (uint32_t)features);
	vcc_write32(d, VCC_GFSELECT, 1);
	vcc_write32(d, VCC_GF, (uint32_t)(features >> 32));
	vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	status = vdev_status(d);
	if (!(status & VIRTIO_S_FEATURES_OK))
		return "FEATURES_OK not accepted";
	d->q.event_idx = features & FEATURE(VIRTIO_F_EVENT_IDX);
	d->num_queues = vcc_read16(d, VCC_NUMQ);
	return NULL;
}

const char *vq_setup(struct vdev *d, uint16_t size)
{
	struct vq *q = &d->q;
	uint16_t max, noff;

	vcc_write16(d, VCC_Q_SELECT, 0);
	max = vcc_read16(d, VCC_Q_SIZE);
	if (max == 0)
		return "queue 0 has size 0 (unavailable)";
	if (vcc_read16(d, VCC_Q_ENABLE))
		return "queue 0 is enabled before the driver set it up";
	if (!size)
		size = max < VQ_MAX_SIZE ? max : VQ_MAX_SIZE;
	if (size > max || size > VQ_MAX_SIZE || (size & (size - 1)))
		return "requested queue size not possible";
	if (size != max) {
		vcc_write16(d, VCC_Q_SIZE, size);
		if (vcc_read16(d, VCC_Q_SIZE) != size)
			return "queue_size write did not stick";
	}
	memset(ring_mem, 0, sizeof(ring_mem));
	q->size = size;
	q->desc = (volatile struct vring_desc *)ring_mem[0];
	q->avail = (volatile uint16_t *)ring_mem[1];
	q->used = ring_mem[2];
	q->avail_idx = q->kicked_idx = q->last_used = q->next_desc = 0;
	q->no_interrupt = true;
	q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
	vcc_write64(d, VCC_Q_DESC, gpa(q->desc));
	vcc_write64(d, VCC_Q_DRIVER, gpa(q->avail));
	vcc_write64(d, VCC_Q_DEVICE, gpa(q->used));
	if (vcc_read32(d, VCC_Q_DESC) != (uint32_t)gpa(q->desc))
		return "queue_desc does not read back";
	noff = vcc_read16(d, VCC_Q_NOFF);
	/* 4.1.4.4: the notify structure must cover this queue's register. */
	if ((uint64_t)noff * d->notify_mult + 2 > d->notify_len)
		return "queue_notify_off outside the notify structure";
	q->notify = d->notify_base + (uint64_t)noff * d->notify_mult;
	vcc_write16(d, VCC_Q_ENABLE, 1);
	if (vcc_read16(d, VCC_Q_ENABLE) != 1)
		return "queue_enable does not read back 1";
	return NULL;
}

const char *vdev_driver_ok(struct vdev *d)
{
	uint8_t status;

	vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
	status = vdev_status(d);
	if (status & VIRTIO_S_NEEDS_RESET)
		return "DEVICE_NEEDS_RESET after DRIVER_OK";
	if (!(status & VIRTIO_S_DRIVER_OK))
		return "DRIVER_OK does not read back";
	return NULL;
}

const char *vdev_init(struct vdev *d, uint64_t features, uint16_t qsize)
{
	const char *why = vdev_negotiate(d, features);

	if (!why)
		why = vq_setup(d, qsize);
	if (!why)
		why = vdev_driver_ok(d);
	return why;
}

/* ---- Device config ---- */

uint32_t vdev_cfg_read32(const struct vdev *d, uint32_t off)
{
	uint8_t gen;
	uint32_t v;

	do {
		gen = vcc_read8(d, VCC_CFGGEN);
		v = mmio_read32(d->devcfg + off);
	} while (vcc_read8(d, VCC_CFGGEN) != gen);
	return v;
}

uint64_t vdev_cfg_read64(const struct vdev *d, uint32_t off)
{
	uint8_t gen;
	uint64_t v;

	do {
		gen = vcc_read8(d, VCC_CFGGEN);
		v = mmio_read32(d->devcfg + off) | (uint64_t)mmio_read32(d->devcfg + off + 4) << 32;
	} while (vcc_read8(d, VCC_CFGGEN) != gen);
	return v;
}

/* ---- Virtqueue ---- */

static volatile uint16_t *used_idx_ptr(const struct vq *q)
{
	return (volatile uint16_t *)(q->used + 2);
}

static volatile uint16_t *avail_event_ptr(const struct vq *q)
{
	return (volatile uint16_t *)(q->used + 4 + 8 * (uint32_t)q->size);
}

static void publish(struct vq *q, uint16_t head)
{
	q->avail[2 + q->avail_idx % q->size] = head;
	/* The entry (and the descriptors) before the index: x86 keeps stores
	 * in order, the compiler must too. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
	q->avail[0] = q->no_interrupt ? VRING_AVAIL_F_NO_INTERRUPT : 0;
}

uint16_t vq_add(struct vdev *d, const struct vbuf *bufs, int n, bool indirect)
{
	struct vq *q = &d->q;
	uint16_t head = q->next_desc % q->size;

	if (indirect) {
		struct vring_desc *t = indirect_mem[head % VQ_INDIRECT_TABLES];

		for (int i = 0; i < n && i < VQ_INDIRECT_MAX; i++) {
			t[i].addr = bufs[i].addr;
			t[i].len = bufs[i].len;
			t[i].flags = (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0));
			t[i].next = (uint16_t)(i + 1);
		}
		q->desc[head].addr = gpa(t);
		q->desc[head].len = (uint32_t)(n * (int)sizeof(*t));
		q->desc[head].flags = VRING_DESC_F_INDIRECT;
		q->desc[head].next = 0;
		q->next_desc++;
	} else {
		for (int i = 0; i < n; i++) {
			uint16_t idx = q->next_desc++ % q->size;

			q->desc[idx].addr = bufs[i].addr;
			q->desc[idx].len = bufs[i].len;
			q->desc[idx].flags = (uint16_t)((bufs[i].write ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0));
			q->desc[idx].next = (uint16_t)(q->next_desc % q->size);
		}
	}
	publish(q, head);
	return head;
}

void vq_add_heads(struct vdev *d, const uint16_t *heads, int count)
{
	for (int i = 0; i < count; i++)
		publish(&d->q, heads[i]);
}

/* 2.7.10: the device asked for a kick once avail->idx passes its event. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

void vq_kick(struct vdev *d, bool force)
{
	struct vq *q = &d->q;
	bool kick;

	/* The avail index store before the read of the device's suppression
	 * field (the device does the reverse). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->event_idx)
		kick = need_event(*avail_event_ptr(q), q->avail_idx, q->kicked_idx);
	else
		kick = !(((volatile uint16_t *)q->used)[0] & VRING_USED_F_NO_NOTIFY);
	q->kicked_idx = q->avail_idx;
	if (kick || force)
		mmio_write16(q->notify, 0); /* the queue index; only queue 0 here */
}

int vq_wait(struct vdev *d, uint32_t *id, uint32_t *len)
{
	struct vq *q = &d->q;
	uint64_t start = rdtsc();

	for (uint32_t i = 1;; i++) {
		if (*used_idx_ptr(q) != q->last_used) {
			volatile uint32_t *elem;

			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			elem = (volatile uint32_t *)(q->used + 4 + 8 * (uint32_t)(q->last_used % q->size));
			*id = elem[0];
			*len = elem[1];
			q->last_used++;
			if (q->event_idx) /* used_event: interrupts are not wanted anyway */
				q->avail[2 + q->size] = q->last_used;
			return VQ_OK;
		}
		/* A status read is an exit: not on every spin. */
		if (i % 64 == 0 && (vdev_status(d) & VIRTIO_S_NEEDS_RESET))
			return VQ_NEEDS_RESET;
		if (rdtsc() - start > TIMEOUT_CYCLES)
			return VQ_TIMEOUT;
		cpu_relax();
	}
}

bool vdev_wait_needs_reset(struct vdev *d)
{
	uint64_t start = rdtsc();

	while (!(vdev_status(d) & VIRTIO_S_NEEDS_RESET)) {
		if (rdtsc() - start > TIMEOUT_CYCLES)
			return false;
		cpu_relax();
	}
	return true;
}

int vq_request(struct vdev *d, const struct vbuf *bufs, int n, bool indirect, uint32_t *len)
{
	uint32_t id;
	uint16_t head = vq_add(d, bufs, n, indirect);
	int rc;

	vq_kick(d, false);
	rc = vq_wait(d, &id, len);
	if (rc == VQ_OK && id != head) {
		serial_puts("kvmlite guest: used id ");
		serial_put_dec(id);
		serial_puts(", expected head ");
		serial_put_dec(head);
		serial_putc('\n');
		return VQ_BAD_ID;
	}
	return rc;
}

const char *vq_strerror(int rc)
{
	switch (rc) {
	case VQ_OK: return "completed";
	case VQ_TIMEOUT: return "timed out";
	case VQ_NEEDS_RESET: return "DEVICE_NEEDS_RESET";
	case VQ_BAD_ID: return "wrong used id";
	default: return "?";
	}
}
