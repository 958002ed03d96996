/* PCI bus 0: the host bridge, configuration space, BAR dispatch, MSI-X
 * and INTx. Arch-neutral: the arch supplies the BAR window, the ECAM base,
 * the INTx GSI of a slot and its own config mechanism (x86: 0xCF8/0xCFC,
 * which calls pci_config_access()).
 *
 * Configuration space is a byte model: each function's cfg[] plus, for
 * the bytes the PCI layer owns (the header, every capability's ID and next
 * pointer, the whole MSI-X capability), a mask of writable bits and one of
 * write-1-to-clear bits, as QEMU does. Side effects (BAR moves, decode
 * enable, INTx disable, MSI-X enable and function mask) follow a write
 * that touched the register. Bytes the layer does not own go to the
 * device's cfg_access.
 *
 * The whole BAR window is one range on vm->mmio; an access goes to the BAR
 * that decodes it at that moment, so a guest move needs no bus change.
 *
 * What the host allocates for a device (MSI-X vectors and their eventfds)
 * is also recorded in the host's slot, and freed from there: devices are
 * destroyed first (their cleanups were registered later), so the host
 * never touches a device on the way out. */
#include "pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vm.h"

/* The host bridge is Red Hat's generic PCIe host bridge ID (QEMU's gpex,
 * "QEMU PCIe Host bridge"): no Linux driver or quirk binds it, whereas an
 * Intel chipset ID (Q35's 0x29c0) brings chipset drivers and quirks that
 * expect registers kvmlite does not have. */
#define PCI_HOST_VENDOR_ID    0x1b36
#define PCI_HOST_DEVICE_ID    0x0008
#define PCI_CLASS_HOST_BRIDGE 0x060000

#define PCI_CACHE_LINE_SIZE   0x0c
#define PCI_HEADER_SIZE       0x40
#define PCI_CAP_START         0x40
#define PCI_BAR_END           (PCI_BAR0 + 4 * PCI_NR_BARS)
#define PCI_BAR_FLAGS_MASK    0xfu      /* mem, 32-bit, non-prefetchable: all 0 */
#define PCI_BAR_MIN_SIZE      4096
#define PCI_BAR_MAX_SIZE      0x80000000ULL
#define PCI_COMMAND_WRITABLE  (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE)
/* Parity and abort status bits: write 1 to clear. */
#define PCI_STATUS_W1C        0xf900
#define PCI_INTX_PIN_A        1
#define PCI_MAX_CAPS          48        /* (256 - 64) / 4: bounds a list walk */

#define MSIX_CAP_LEN          12
#define MSIX_CTRL             2         /* message control, in the capability */
#define MSIX_TABLE            4
#define MSIX_PBA              8
#define MSIX_CTRL_ENABLE      0x8000
#define MSIX_CTRL_MASKALL     0x4000
#define MSIX_MAX_VECTORS      2048
#define MSIX_ENTRY_SIZE       16
#define MSIX_ENTRY_MASKED     0x1

struct pci_slot {
	struct pci_device *dev;
	uint8_t wmask[PCI_CFG_SPACE_SIZE];   /* bits a config write may change */
	uint8_t w1cmask[PCI_CFG_SPACE_SIZE]; /* bits a config write of 1 clears */
	bool owned[PCI_CFG_SPACE_SIZE];      /* served by the PCI layer, not cfg_access */
	struct pci_msix_vector *vectors;     /* host-owned copy of dev->msix.vectors */
	int nr_vectors;
	bool intx_disabled;                  /* command INTX_DISABLE (under intx_lock) */
	bool intx_asserted;                  /* what this device drives on its line */
	bool msix_warned;                    /* a route failure was logged */
};

struct pci_host {
	struct vm *vm;
	pthread_rwlock_t lock;      /* config space and BAR mappings */
	pthread_mutex_t intx_lock;  /* INTx levels and lines */
	struct pci_slot slots[PCI_MAX_SLOTS];
	struct pci_device bridge;   /* slot 0 */
	uint64_t mmio_base, mmio_size, mmio_next;
};

static uint16_t cfg_rd16(const uint8_t *cfg, uint32_t off)
{
	return (uint16_t)(cfg[off] | cfg[off + 1] << 8);
}

static uint32_t cfg_rd32(const uint8_t *cfg, uint32_t off)
{
	return cfg_rd16(cfg, off) | (uint32_t)cfg_rd16(cfg, off + 2) << 16;
}

static void cfg_wr16(uint8_t *cfg, uint32_t off, uint16_t v)
{
	cfg[off] = (uint8_t)v;
	cfg[off + 1] = (uint8_t)(v >> 8);
}

static void cfg_wr32(uint8_t *cfg, uint32_t off, uint32_t v)
{
	cfg_wr16(cfg, off, (uint16_t)v);
	cfg_wr16(cfg, off + 2, (uint16_t)(v >> 16));
}

/* Do [a, a + alen) and [b, b + blen) overlap? */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* ---- Filling cfg[] before pci_device_add() ---- */

void pci_cfg_set_ids(struct pci_device *dev, uint16_t vendor, uint16_t device, uint16_t subsys_vendor,
		     uint16_t subsys, uint8_t revision, uint32_t class_code)
{
	cfg_wr16(dev->cfg, PCI_VENDOR_ID, vendor);
	cfg_wr16(dev->cfg, PCI_DEVICE_ID, device);
	dev->cfg[PCI_REVISION_ID] = revision;
	dev->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	cfg_wr16(dev->cfg, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	dev->cfg[PCI_HEADER_TYPE] = 0;
	cfg_wr16(dev->cfg, PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	cfg_wr16(dev->cfg, PCI_SUBSYSTEM_ID, subsys);
}

uint8_t pci_cfg_add_cap(struct pci_device *dev, uint8_t id, uint8_t len)
{
	uint32_t off = ALIGN_UP(dev->cap_next ? dev->cap_next : PCI_CAP_START, 4);
	if (len < 2 || off + len > PCI_CFG_SPACE_SIZE)
		return 0;
	/* Link it after the last capability, so the list is in added order. */
	uint8_t *link = &dev->cfg[PCI_CAPABILITY_LIST];
	for (int n = 0; *link && n < PCI_MAX_CAPS; n++)
		link = &dev->cfg[*link + 1];
	*link = (uint8_t)off;
	dev->cfg[off] = id;
	dev->cfg[off + 1] = 0;
	cfg_wr16(dev->cfg, PCI_STATUS, cfg_rd16(dev->cfg, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	/* 0xff when full: it aligns up past the end, so nothing else fits. */
	dev->cap_next = (uint8_t)MIN(off + len, 0xffu);
	return (uint8_t)off;
}

void pci_cfg_set_bar(struct pci_device *dev, int bar, uint64_t size, bus_io_fn fn, void *opaque)
{
	if (bar < 0 || bar >= PCI_NR_BARS)
		return;
	if (size < PCI_BAR_MIN_SIZE || size > PCI_BAR_MAX_SIZE || (size & (size - 1))) {
		log_error("%s: BAR %d: size %llu is not a power of two in [4 KiB, 2 GiB]",
			  dev->name ? dev->name : "pci", bar, (unsigned long long)size);
		size = 0;
	}
	dev->bars[bar] = (struct pci_bar){ .size = size, .fn = fn, .opaque = opaque };
	cfg_wr32(dev->cfg, PCI_BAR0 + 4 * (uint32_t)bar, 0);
}

int pci_msix_init(struct pci_device *dev, int nr_vectors, int bar, uint32_t table_offset, uint32_t pba_offset)
{
	if (nr_vectors < 1 || nr_vectors > MSIX_MAX_VECTORS || bar < 0 || bar >= PCI_NR_BARS ||
	    table_offset % 8 || pba_offset % 8 || dev->msix.nr_vectors)
		return -EINVAL;
	uint8_t cap = pci_cfg_add_cap(dev, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
	if (!cap)
		return -ENOSPC;
	cfg_wr16(dev->cfg, cap + MSIX_CTRL, (uint16_t)(nr_vectors - 1));
	cfg_wr32(dev->cfg, cap + MSIX_TABLE, table_offset | (uint32_t)bar);
	cfg_wr32(dev->cfg, cap + MSIX_PBA, pba_offset | (uint32_t)bar);
	dev->msix.nr_vectors = nr_vectors;
	dev->msix.bar = bar;
	dev->msix.table_offset = table_offset;
	dev->msix.pba_offset = pba_offset;
	dev->msix.cap = cap;
	dev->msix.enabled = dev->msix.function_masked = false;
	return 0;
}

/* ---- MSI-X ---- */

static uint32_t msix_table_size(const struct pci_msix *m)
{
	return (uint32_t)m->nr_vectors * MSIX_ENTRY_SIZE;
}

static uint32_t msix_pba_size(const struct pci_msix *m)
{
	return (uint32_t)(m->nr_vectors + 63) / 64 * 8;
}

static bool msix_deliverable(const struct pci_msix *m, const struct pci_msix_vector *vec)
{
	return m->enabled && !m->function_masked && !(vec->ctrl & MSIX_ENTRY_MASKED);
}

static void msix_signal(const struct pci_msix_vector *vec)
{
	uint64_t one = 1;
	if (vec->irqfd >= 0 && write(vec->irqfd, &one, sizeof(one)) < 0)
		log_debug("MSI-X eventfd write: %s", strerror(errno));
}

/* The vector's state changed: when it can be delivered, make KVM's route
 * hold its address and data, then deliver what was pending. Called with
 * the MSI-X lock held. */
static void msix_vector_update(struct pci_slot *s, struct pci_device *dev, int v)
{
	struct pci_msix *m = &dev->msix;
	struct pci_msix_vector *vec = &m->vectors[v];
	if (!msix_deliverable(m, vec))
		return;
	if (!vec->routed && vec->gsi >= 0) {
		uint64_t addr = (uint64_t)vec->addr_hi << 32 | vec->addr_lo;
		int err = irq_set_msi_route(dev->vm, (uint32_t)vec->gsi, addr, vec->data, true);
		vec->routed = !err;
		if (err && !s->msix_warned) {
			log_warn("%s: MSI-X vector %d: cannot set its route (GSI %d): %s", dev->name, v, vec->gsi,
				 strerror(-err));
			s->msix_warned = true;
		}
	}
	if (vec->pending) {
		vec->pending = false;
		msix_signal(vec);
	}
}

/* The guest wrote the message control word. Called with the write lock. */
static void msix_control_update(struct pci_slot *s, struct pci_device *dev)
{
	struct pci_msix *m = &dev->msix;
	uint16_t ctrl = cfg_rd16(dev->cfg, m->cap + MSIX_CTRL);
	pthread_mutex_lock(&m->lock);
	m->enabled = ctrl & MSIX_CTRL_ENABLE;
	m->function_masked = ctrl & MSIX_CTRL_MASKALL;
	for (int v = 0; v < m->nr_vectors; v++)
		msix_vector_update(s, dev, v);
	pthread_mutex_unlock(&m->lock);
}

static uint32_t *msix_entry_word(struct pci_msix_vector *vec, uint32_t word)
{
	switch (word) {
	case 0: return &vec->addr_lo;
	case 1: return &vec->addr_hi;
	case 2: return &vec->data;
	default: return &vec->ctrl;
	}
}

/* An access inside the table; offset is table-relative and in range. */
static void msix_table_access(struct pci_slot *s, struct pci_device *dev, uint32_t offset, uint8_t *data,
			      uint32_t len, bool is_write)
{
	struct pci_msix *m = &dev->msix;
	pthread_mutex_lock(&m->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = offset + i;
		struct pci_msix_vector *vec = &m->vectors[o / MSIX_ENTRY_SIZE];
		uint32_t word = o % MSIX_ENTRY_SIZE / 4, shift = o % 4 * 8;
		uint32_t *w = msix_entry_word(vec, word);
		if (!is_write) {
			data[i] = (uint8_t)(*w >> shift);
			continue;
		}
		/* The address is dword-aligned; of vector control, only the
		 * mask bit exists. */
		uint32_t writable = word == 0 ? ~3u : word == 3 ? MSIX_ENTRY_MASKED : ~0u;
		uint32_t mask = writable & (0xffu << shift);
		uint32_t nw = (*w & ~mask) | ((uint32_t)data[i] << shift & mask);
		if (nw != *w && word < 3)
			vec->routed = false;   /* the route no longer holds addr/data */
		*w = nw;
	}
	if (is_write) {
		for (uint32_t v = offset / MSIX_ENTRY_SIZE; v <= (offset + len - 1) / MSIX_ENTRY_SIZE; v++)
			msix_vector_update(s, dev, (int)v);
	}
	pthread_mutex_unlock(&m->lock);
}

/* Pending bits: read-only, one per vector, in 64-bit words. */
static void msix_pba_read(struct pci_device *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	struct pci_msix *m = &dev->msix;
	pthread_mutex_lock(&m->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint8_t byte = 0;
		for (int bit = 0; bit < 8; bit++) {
			uint32_t v = (offset + i) * 8 + (uint32_t)bit;
			if (v < (uint32_t)m->nr_vectors && m->vectors[v].pending)
				byte |= (uint8_t)(1u << bit);
		}
		data[i] = byte;
	}
	pthread_mutex_unlock(&m->lock);
}

bool pci_msix_notify(struct pci_device *dev, int vector)
{
	struct pci_msix *m = &dev->msix;
	if (!m->vectors || vector < 0 || vector >= m->nr_vectors)
		return false;
	pthread_mutex_lock(&m->lock);
	bool enabled = m->enabled;
	if (enabled) {
		struct pci_msix_vector *vec = &m->vectors[vector];
		if (msix_deliverable(m, vec))
			msix_signal(vec);
		else
			vec->pending = true;
	}
	pthread_mutex_unlock(&m->lock);
	return enabled;
}

bool pci_msix_enabled(struct pci_device *dev)
{
	struct pci_msix *m = &dev->msix;
	if (!m->vectors)
		return false;
	pthread_mutex_lock(&m->lock);
	bool enabled = m->enabled;
	pthread_mutex_unlock(&m->lock);
	return enabled;
}

/* ---- INTx ---- */

/* Drives the device's line from its level and INTX_DISABLE; the GSI's
 * level is the OR of every device sharing it. Called with intx_lock. */
static void intx_update(struct pci_host *h, int slot)
{
	struct pci_slot *s = &h->slots[slot];
	struct pci_device *dev = s->dev;
	bool asserted = __atomic_load_n(&dev->intx_level, __ATOMIC_RELAXED) && !s->intx_disabled;
	if (asserted == s->intx_asserted)
		return;
	s->intx_asserted = asserted;
	bool line = false;
	for (int i = 1; i < PCI_MAX_SLOTS; i++)
		if (h->slots[i].dev && h->slots[i].dev->intx_gsi == dev->intx_gsi)
			line |= h->slots[i].intx_asserted;
	int err = vm_irq_line(h->vm, dev->intx_gsi, line);
	if (err)
		log_debug("%s: INTx GSI %u: %s", dev->name, dev->intx_gsi, strerror(-err));
}

void pci_intx_set(struct pci_device *dev, bool level)
{
	struct pci_host *h = dev->vm ? dev->vm->pci : NULL;
	if (!h || dev->slot <= 0 || dev->slot >= PCI_MAX_SLOTS || h->slots[dev->slot].dev != dev)
		return;
	pthread_mutex_lock(&h->intx_lock);
	__atomic_store_n(&dev->intx_level, level, __ATOMIC_RELAXED);
	intx_update(h, dev->slot);
	pthread_mutex_unlock(&h->intx_lock);
}

/* ---- BARs ---- */

/* Re-derives whether BAR i decodes, and where, from cfg[]; tells the
 * device when that changed. Called with the write lock. */
static void bar_update(struct pci_host *h, struct pci_device *dev, int i)
{
	struct pci_bar *bar = &dev->bars[i];
	if (!bar->size)
		return;
	uint64_t addr = cfg_rd32(dev->cfg, PCI_BAR0 + 4 * (uint32_t)i) & ~(uint64_t)PCI_BAR_FLAGS_MASK;
	bool decode = (cfg_rd16(dev->cfg, PCI_COMMAND) & PCI_COMMAND_MEMORY) && addr &&
		      bar->size <= h->mmio_size && addr >= h->mmio_base && addr - h->mmio_base <= h->mmio_size - bar->size;
	uint64_t old_addr = bar->mapped ? bar->addr : 0;
	uint64_t new_addr = decode ? addr : 0;
	bar->addr = addr;
	bar->mapped = decode;
	if (old_addr == new_addr)
		return;
	log_debug("%s: BAR %d: %#llx -> %#llx", dev->name, i, (unsigned long long)old_addr,
		  (unsigned long long)new_addr);
	if (dev->ops && dev->ops->bar_moved)
		dev->ops->bar_moved(dev, i, old_addr, new_addr);
}

static void bar_access(struct pci_slot *s, struct pci_device *dev, int i, uint64_t offset, uint8_t *data,
		       uint32_t len, bool is_write)
{
	struct pci_bar *bar = &dev->bars[i];
	struct pci_msix *m = &dev->msix;
	if (m->vectors && m->bar == i) {
		uint32_t table = msix_table_size(m), pba = msix_pba_size(m);
		if (offset >= m->table_offset && offset - m->table_offset + len <= table) {
			msix_table_access(s, dev, (uint32_t)(offset - m->table_offset), data, len, is_write);
			return;
		}
		if (offset >= m->pba_offset && offset - m->pba_offset + len <= pba) {
			if (!is_write)
				msix_pba_read(dev, (uint32_t)(offset - m->pba_offset), data, len);
			return;
		}
		if (ranges_overlap(offset, len, m->table_offset, table) || ranges_overlap(offset, len, m->pba_offset, pba))
			goto unclaimed; /* straddles the table or PBA: meaningless */
	}
	if (bar->fn) {
		bar->fn(bar->opaque, offset, data, len, is_write);
		return;
	}
unclaimed:
	if (!is_write)
		memset(data, 0xff, len);
}

/* The BAR window: whichever BAR decodes addr serves it. */
static void pci_mmio_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_host *h = opaque;
	uint64_t addr = h->mmio_base + offset;
	pthread_rwlock_rdlock(&h->lock);
	for (int slot = 0; slot < PCI_MAX_SLOTS; slot++) {
		struct pci_device *dev = h->slots[slot].dev;
		if (!dev)
			continue;
		for (int i = 0; i < PCI_NR_BARS; i++) {
			const struct pci_bar *bar = &dev->bars[i];
			if (!bar->mapped || addr < bar->addr || addr - bar->addr >= bar->size)
				continue;
			uint64_t off = addr - bar->addr;
			if (len <= bar->size - off) {
				bar_access(&h->slots[slot], dev, i, off, data, len, is_write);
				pthread_rwlock_unlock(&h->lock);
				return;
			}
		}
	}
	pthread_rwlock_unlock(&h->lock);
	if (!is_write)
		memset(data, 0xff, len);
}

/* ---- Configuration space ---- */

static bool cfg_owned(const struct pci_slot *s, uint32_t off)
{
	return off < PCI_CFG_SPACE_SIZE && s->owned[off];
}

/* Hands each run of bytes the PCI layer does not own to cfg_access. */
static void cfg_device_access(struct pci_slot *s, uint32_t reg, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_device *dev = s->dev;
	if (!dev->ops || !dev->ops->cfg_access)
		return;
	for (uint32_t i = 0; i < len;) {
		if (cfg_owned(s, reg + i)) {
			i++;
			continue;
		}
		uint32_t start = i;
		while (i < len && !cfg_owned(s, reg + i))
			i++;
		dev->ops->cfg_access(dev, reg + start, data + start, i - start, is_write);
	}
}

static void cfg_read(struct pci_slot *s, uint32_t reg, uint8_t *data, uint32_t len)
{
	struct pci_device *dev = s->dev;
	memcpy(data, dev->cfg + reg, len);
	if (reg <= PCI_STATUS && PCI_STATUS < reg + len) {
		bool level = __atomic_load_n(&dev->intx_level, __ATOMIC_RELAXED);
		uint8_t *status = &data[PCI_STATUS - reg];
		*status = (uint8_t)((*status & ~PCI_STATUS_INTERRUPT) | (level ? PCI_STATUS_INTERRUPT : 0));
	}
	cfg_device_access(s, reg, data, len, false);
}

static void cfg_write(struct pci_host *h, int slot, uint32_t reg, const uint8_t *data, uint32_t len)
{
	struct pci_slot *s = &h->slots[slot];
	struct pci_device *dev = s->dev;
	uint8_t buf[4];
	memcpy(buf, data, len);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t o = reg + i;
		if (!cfg_owned(s, o))
			continue;
		uint8_t v = (uint8_t)((dev->cfg[o] & ~s->wmask[o]) | (data[i] & s->wmask[o]));
		dev->cfg[o] = (uint8_t)(v & ~(data[i] & s->w1cmask[o]));
	}
	cfg_device_access(s, reg, buf, len, true);

	if (ranges_overlap(reg, len, PCI_COMMAND, 2)) {
		for (int i = 0; i < PCI_NR_BARS; i++)
			bar_update(h, dev, i);
		pthread_mutex_lock(&h->intx_lock);
		s->intx_disabled = cfg_rd16(dev->cfg, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
		if (slot > 0)
			intx_update(h, slot);
		pthread_mutex_unlock(&h->intx_lock);
	} else if (ranges_overlap(reg, len, PCI_BAR0, PCI_BAR_END - PCI_BAR0)) {
		for (int i = 0; i < PCI_NR_BARS; i++)
			if (ranges_overlap(reg, len, PCI_BAR0 + 4 * (uint32_t)i, 4))
				bar_update(h, dev, i);
	}
	if (dev->msix.vectors && ranges_overlap(reg, len, dev->msix.cap + MSIX_CTRL, 2))
		msix_control_update(s, dev);
}

void pci_config_access(struct vm *vm, uint32_t bus, uint32_t slot, uint32_t fn, uint32_t reg, uint8_t *data,
		       uint32_t len, bool is_write)
{
	struct pci_host *h = vm->pci;
	/* Bus 0 only; every device is single-function. */
	bool valid = h && bus == 0 && slot < PCI_MAX_SLOTS && fn == 0 && len >= 1 && len <= 4 &&
		     reg < PCI_CFG_EXT_SIZE && len <= PCI_CFG_EXT_SIZE - reg;
	if (valid) {
		if (is_write)
			pthread_rwlock_wrlock(&h->lock);
		else
			pthread_rwlock_rdlock(&h->lock);
		bool present = h->slots[slot].dev != NULL;
		if (present && is_write)
			cfg_write(h, (int)slot, reg, data, len);
		else if (present)
			cfg_read(&h->slots[slot], reg, data, len);
		pthread_rwlock_unlock(&h->lock);
		if (present)
			return;
	}
	if (!is_write)
		memset(data, 0xff, len); /* no such function: master abort */
}

/* ECAM: bus 0 in 1 MiB, 4 KiB per function. */
static void pci_ecam_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_host *h = opaque;
	if (len == 8) { /* as two dword cycles */
		pci_ecam_io(opaque, offset, data, 4, is_write);
		pci_ecam_io(opaque, offset + 4, data + 4, 4, is_write);
		return;
	}
	pci_config_access(h->vm, (uint32_t)(offset >> 20), (uint32_t)(offset >> 15) & 31,
			  (uint32_t)(offset >> 12) & 7, (uint32_t)offset & 0xfff, data, len, is_write);
}

/* ---- Devices ---- */

/* What the guest may write, and which bytes are the PCI layer's. */
static void slot_init_masks(struct pci_slot *s, const struct pci_device *dev)
{
	memset(s->wmask, 0, sizeof(s->wmask));
	memset(s->w1cmask, 0, sizeof(s->w1cmask));
	memset(s->owned, 0, sizeof(s->owned));
	memset(s->owned, 1, PCI_HEADER_SIZE);
	cfg_wr16(s->wmask, PCI_COMMAND, PCI_COMMAND_WRITABLE);
	cfg_wr16(s->w1cmask, PCI_STATUS, PCI_STATUS_W1C);
	s->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	s->wmask[PCI_INTERRUPT_LINE] = 0xff;
	for (int i = 0; i < PCI_NR_BARS; i++)
		if (dev->bars[i].size)
			cfg_wr32(s->wmask, PCI_BAR0 + 4 * (uint32_t)i,
				 (uint32_t)~(dev->bars[i].size - 1) & ~PCI_BAR_FLAGS_MASK);

	uint32_t off = dev->cfg[PCI_CAPABILITY_LIST];
	for (int n = 0; off >= PCI_CAP_START && off + 1 < PCI_CFG_SPACE_SIZE && n < PCI_MAX_CAPS; n++) {
		s->owned[off] = s->owned[off + 1] = true;
		if (dev->cfg[off] == PCI_CAP_ID_MSIX && off == dev->msix.cap && off + MSIX_CAP_LEN <= PCI_CFG_SPACE_SIZE) {
			memset(&s->owned[off], 1, MSIX_CAP_LEN);
			cfg_wr16(s->wmask, off + MSIX_CTRL, MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL);
		}
		off = dev->cfg[off + 1];
	}
}

static void slot_free_vectors(struct pci_slot *s)
{
	for (int v = 0; v < s->nr_vectors; v++)
		if (s->vectors[v].irqfd >= 0)
			close(s->vectors[v].irqfd);
	free(s->vectors);
	s->vectors = NULL;
	s->nr_vectors = 0;
}

/* Each vector starts masked, with an eventfd bound to its own GSI; the
 * route is set when the guest unmasks it. */
static int slot_init_msix(struct pci_host *h, struct pci_slot *s, struct pci_device *dev)
{
	struct pci_msix *m = &dev->msix;
	if (!m->nr_vectors)
		return 0;
	uint64_t bar_size = dev->bars[m->bar].size;
	uint32_t table = msix_table_size(m), pba = msix_pba_size(m);
	if (!bar_size || m->table_offset > bar_size - table || m->pba_offset > bar_size - pba ||
	    ranges_overlap(m->table_offset, table, m->pba_offset, pba)) {
		log_error("%s: MSI-X table or PBA outside BAR %d or overlapping", dev->name, m->bar);
		return -EINVAL;
	}
	s->vectors = calloc((size_t)m->nr_vectors, sizeof(*s->vectors));
	if (!s->vectors)
		return -ENOMEM;
	s->nr_vectors = m->nr_vectors;
	for (int v = 0; v < m->nr_vectors; v++)
		s->vectors[v] = (struct pci_msix_vector){ .ctrl = MSIX_ENTRY_MASKED, .gsi = -1, .irqfd = -1 };
	for (int v = 0; v < m->nr_vectors; v++) {
		struct pci_msix_vector *vec = &s->vectors[v];
		vec->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vec->irqfd < 0) {
			int err = -errno;
			log_error("%s: MSI-X eventfd: %s", dev->name, strerror(-err));
			return err;
		}
		/* Without a KVM VM (unit tests build the PCI model alone) the
		 * vectors get no GSI: table, masks and pending bits still work. */
		if (h->vm->vm_fd < 0)
			continue;
		int gsi = irq_alloc_gsi(h->vm);
		int err = gsi < 0 ? gsi : irq_irqfd(h->vm, vec->irqfd, (uint32_t)gsi, true);
		if (err) {
			log_error("%s: MSI-X vector %d: no GSI or irqfd: %s", dev->name, v, strerror(-err));
			return err;
		}
		vec->gsi = gsi;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->vectors = s->vectors;
	m->enabled = m->function_masked = false;
	return 0;
}

/* Gives BARs addresses in the window (naturally aligned), all or none. */
static int slot_place_bars(struct pci_host *h, struct pci_device *dev)
{
	uint64_t next = h->mmio_next, end = h->mmio_base + h->mmio_size;
	uint64_t addr[PCI_NR_BARS] = { 0 };
	for (int i = 0; i < PCI_NR_BARS; i++) {
		uint64_t size = dev->bars[i].size;
		if (!size)
			continue;
		addr[i] = ALIGN_UP(next, size);
		if (addr[i] < next || addr[i] > end || size > end - addr[i])
			return -ENOSPC;
		next = addr[i] + size;
	}
	for (int i = 0; i < PCI_NR_BARS; i++) {
		dev->bars[i].addr = addr[i];
		dev->bars[i].mapped = false;
		cfg_wr32(dev->cfg, PCI_BAR0 + 4 * (uint32_t)i, (uint32_t)addr[i]);
	}
	h->mmio_next = next;
	return 0;
}

static int pci_attach(struct pci_host *h, int slot, struct pci_device *dev)
{
	struct pci_slot *s = &h->slots[slot];
	if (!dev->name)
		dev->name = "pci";
	dev->vm = h->vm;
	dev->slot = slot;
	dev->intx_level = false;
	cfg_wr16(dev->cfg, PCI_COMMAND, 0);
	cfg_wr16(dev->cfg, PCI_STATUS, cfg_rd16(dev->cfg, PCI_STATUS) & PCI_STATUS_CAP_LIST);
	dev->cfg[PCI_HEADER_TYPE] = 0;
	if (slot > 0) {
		dev->intx_gsi = arch_pci_intx_gsi(slot);
		dev->cfg[PCI_INTERRUPT_PIN] = PCI_INTX_PIN_A;
		dev->cfg[PCI_INTERRUPT_LINE] = (uint8_t)dev->intx_gsi;
	}

	int err = slot_init_msix(h, s, dev);
	if (!err)
		err = slot_place_bars(h, dev);
	if (err) {
		slot_free_vectors(s);
		dev->msix.vectors = NULL;
		return err;
	}
	slot_init_masks(s, dev);
	s->intx_disabled = s->intx_asserted = s->msix_warned = false;
	s->dev = dev;
	return 0;
}

int pci_device_add(struct vm *vm, struct pci_device *dev)
{
	struct pci_host *h = vm->pci;
	if (!h)
		return -ENODEV;
	pthread_rwlock_wrlock(&h->lock);
	int slot = 1;
	while (slot < PCI_MAX_SLOTS && h->slots[slot].dev)
		slot++;
	int err = slot < PCI_MAX_SLOTS ? pci_attach(h, slot, dev) : -ENOSPC;
	pthread_rwlock_unlock(&h->lock);
	if (err)
		log_error("%s: cannot add PCI device: %s", dev->name ? dev->name : "pci", strerror(-err));
	else
		log_debug("%s: PCI 00:%02x.0, INTx GSI %u", dev->name, slot, dev->intx_gsi);
	return err;
}

/* ---- The host ---- */

static void pci_host_free(void *opaque)
{
	struct pci_host *h = opaque;
	for (int i = 0; i < PCI_MAX_SLOTS; i++)
		slot_free_vectors(&h->slots[i]);
	pthread_rwlock_destroy(&h->lock);
	pthread_mutex_destroy(&h->intx_lock);
	if (h->vm->pci == h)
		h->vm->pci = NULL;
	free(h);
}

int pci_host_init(struct vm *vm)
{
	struct pci_host *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->vm = vm;
	pthread_rwlock_init(&h->lock, NULL);
	pthread_mutex_init(&h->intx_lock, NULL);
	arch_pci_mmio_window(&h->mmio_base, &h->mmio_size);
	h->mmio_next = h->mmio_base;
	int err = vm_on_destroy(vm, pci_host_free, h);
	if (err) {
		pci_host_free(h);
		return err;
	}
	vm->pci = h;

	uint64_t ecam, ecam_size;
	arch_pci_ecam(&ecam, &ecam_size);
	if ((err = bus_register(&vm->mmio, h->mmio_base, h->mmio_size, pci_mmio_io, h, "pci-bars")) ||
	    (err = bus_register(&vm->mmio, ecam, ecam_size, pci_ecam_io, h, "pci-ecam"))) {
		log_error("cannot register the PCI MMIO ranges: %s", strerror(-err));
		return err;
	}

	h->bridge.name = "host-bridge";
	pci_cfg_set_ids(&h->bridge, PCI_HOST_VENDOR_ID, PCI_HOST_DEVICE_ID, 0, 0, 0, PCI_CLASS_HOST_BRIDGE);
	if ((err = pci_attach(h, 0, &h->bridge)))
		return err;
	if ((err = arch_pci_init(vm)))
		log_error("cannot register the PCI config mechanism: %s", strerror(-err));
	return err;
}
