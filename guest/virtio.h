/* A minimal virtio-pci driver for the tiny guest (virtio 1.2, 4.1): finds
 * devices on PCI bus 0 through 0xCF8/0xCFC, everything else through the
 * virtio vendor capabilities, and drives queue 0 by polling (the guest runs
 * with interrupts off). One request at a time or a few in a batch; the
 * rings and buffers are static, identity-mapped guest RAM.
 *
 * Register accessors and raw ring pointers are exported so that the hostile
 * tests (virtio_tests.c) can break every rule a driver can break. */
#ifndef KVMLITE_GUEST_VIRTIO_H
#define KVMLITE_GUEST_VIRTIO_H

#include "guest.h"

#define VIRTIO_PCI_VENDOR       0x1af4
#define VIRTIO_PCI_DEVICE_BASE  0x1040   /* modern: 0x1040 + device ID */
#define VIRTIO_ID_BLOCK         2
#define VIRTIO_ID_RNG           4

/* Device-independent features */
#define VIRTIO_F_INDIRECT_DESC  28
#define VIRTIO_F_EVENT_IDX      29
#define VIRTIO_F_VERSION_1      32
#define FEATURE(bit)            (1ull << (bit))

/* Device status */
#define VIRTIO_S_ACKNOWLEDGE    0x01
#define VIRTIO_S_DRIVER         0x02
#define VIRTIO_S_DRIVER_OK      0x04
#define VIRTIO_S_FEATURES_OK    0x08
#define VIRTIO_S_NEEDS_RESET    0x40
#define VIRTIO_S_FAILED         0x80

/* struct virtio_pci_common_cfg (4.1.4.3): offsets inside the common
 * configuration structure, wherever its capability puts that. */
#define VCC_DFSELECT   0x00
#define VCC_DF         0x04
#define VCC_GFSELECT   0x08
#define VCC_GF         0x0c
#define VCC_MSIX       0x10
#define VCC_NUMQ       0x12
#define VCC_STATUS     0x14
#define VCC_CFGGEN     0x15
#define VCC_Q_SELECT   0x16
#define VCC_Q_SIZE     0x18
#define VCC_Q_MSIX     0x1a
#define VCC_Q_ENABLE   0x1c
#define VCC_Q_NOFF     0x1e
#define VCC_Q_DESC     0x20
#define VCC_Q_DRIVER   0x28
#define VCC_Q_DEVICE   0x30
#define VCC_MIN_LEN    0x38   /* the fields above: what a driver needs */

#define VIRTIO_NO_VECTOR 0xffff

/* Split virtqueue (2.7) */
#define VRING_DESC_F_NEXT      1
#define VRING_DESC_F_WRITE     2
#define VRING_DESC_F_INDIRECT  4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY     1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

#define VQ_MAX_SIZE     256  /* the guest's rings hold this many entries */

struct vq {
	uint16_t size;
	volatile struct vring_desc *desc;
	volatile uint16_t *avail;      /* flags, idx, ring[size], used_event */
	volatile uint8_t *used;        /* flags, idx, {le32 id, le32 len}[size], avail_event */
	uint64_t notify;               /* this queue's notify register */
	uint16_t avail_idx;            /* the driver's next avail->idx */
	uint16_t kicked_idx;           /* avail_idx at the last notify decision */
	uint16_t last_used;            /* next used entry to consume */
	uint16_t next_desc;            /* descriptors are handed out in order */
	bool event_idx;
	bool no_interrupt;             /* set VRING_AVAIL_F_NO_INTERRUPT (default: we poll) */
};

struct vdev {
	int slot;
	uint16_t device_id;            /* virtio device ID */
	uint64_t bar_addr[6], bar_size[6];
	/* From the vendor capabilities: addresses inside the BARs */
	uint64_t common, isr, devcfg, notify_base;
	int common_bar;                /* the BAR the common config is in */
	uint32_t common_len, isr_len, devcfg_len, notify_len, notify_mult;
	uint8_t pcicfg_cap;            /* VIRTIO_PCI_CAP_PCI_CFG, 0: none */
	uint8_t msix_cap;              /* 0: no MSI-X */
	uint64_t offered;              /* device features */
	uint16_t num_queues;
	struct vq q;                   /* queue 0 */
};

/* A buffer of a request: device-readable unless write. */
struct vbuf {
	uint64_t addr;
	uint32_t len;
	bool write;
};

/* PCI configuration space of bus 0, function 0 of slot, via 0xCF8/0xCFC. */
uint32_t pci_read32(int slot, uint32_t off);
uint16_t pci_read16(int slot, uint32_t off);
uint8_t pci_read8(int slot, uint32_t off);
void pci_write32(int slot, uint32_t off, uint32_t v);
void pci_write16(int slot, uint32_t off, uint16_t v);
void pci_write8(int slot, uint32_t off, uint8_t v);

/* The nth (0-based) virtio device with device_id on bus 0: enables memory
 * decoding and bus mastering, reads its BARs and capabilities. 0, or -1
 * (none) with *why set when it exists but its capabilities are unusable. */
int vdev_find(uint16_t device_id, int nth, struct vdev *d, const char **why);
/* Re-reads the BAR addresses and capability addresses (after a BAR move). */
int vdev_remap(struct vdev *d, const char **why);

/* Common config accessors (offsets: VCC_*) */
uint8_t vcc_read8(const struct vdev *d, uint32_t off);
uint16_t vcc_read16(const struct vdev *d, uint32_t off);
uint32_t vcc_read32(const struct vdev *d, uint32_t off);
void vcc_write8(const struct vdev *d, uint32_t off, uint8_t v);
void vcc_write16(const struct vdev *d, uint32_t off, uint16_t v);
void vcc_write32(const struct vdev *d, uint32_t off, uint32_t v);
void vcc_write64(const struct vdev *d, uint32_t off, uint64_t v); /* as two dwords, low first */
uint8_t vdev_status(const struct vdev *d);

/* Writes 0 to device_status and waits until it reads 0. 0 or -1. */
int vdev_reset(struct vdev *d);
/* Reads the device features into d->offered (both 32-bit windows). */
void vdev_read_features(struct vdev *d);
/* Reset, ACKNOWLEDGE, DRIVER, features (must include VERSION_1; bits not
 * offered make it fail), FEATURES_OK read back. NULL or why not. */
const char *vdev_negotiate(struct vdev *d, uint64_t features);
/* Queue 0 with size entries (0: the device's, capped at VQ_MAX_SIZE) in
 * the guest's static rings. Needs FEATURES_OK. NULL or why not. */
const char *vq_setup(struct vdev *d, uint16_t size);
/* Sets DRIVER_OK; NULL or why not (NEEDS_RESET or FAILED read back). */
const char *vdev_driver_ok(struct vdev *d);
/* All of the above. */
const char *vdev_init(struct vdev *d, uint64_t features, uint16_t qsize);

/* The device config (4.1.4.6) at off, read as a driver must: 32-bit
 * reads with config_generation unchanged around them. */
uint32_t vdev_cfg_read32(const struct vdev *d, uint32_t off);
uint64_t vdev_cfg_read64(const struct vdev *d, uint32_t off);

/* Puts a chain of n buffers in the ring (descriptors taken in order; an
 * indirect table in the guest's static memory when indirect), publishes it
 * in avail, and returns its head (no notify). */
uint16_t vq_add(struct vdev *d, const struct vbuf *bufs, int n, bool indirect);
/* Publishes count raw head indexes as they are (hostile tests). */
void vq_add_heads(struct vdev *d, const uint16_t *heads, int count);
/* Notifies the device if the ring's suppression says it wants it (or
 * always with force). */
void vq_kick(struct vdev *d, bool force);

#define VQ_OK            0
#define VQ_TIMEOUT      -1
#define VQ_NEEDS_RESET  -2
#define VQ_BAD_ID       -3   /* vq_request: the used entry is not our head */
/* Polls for the next used entry: VQ_OK with *id and *len, VQ_TIMEOUT, or
 * VQ_NEEDS_RESET when the device status says so first. */
int vq_wait(struct vdev *d, uint32_t *id, uint32_t *len);
/* Polls device_status for NEEDS_RESET: true when set before the timeout. */
bool vdev_wait_needs_reset(struct vdev *d);

/* One synchronous request: add, kick, wait; checks the used id. */
const char *vq_strerror(int rc);
int vq_request(struct vdev *d, const struct vbuf *bufs, int n, bool indirect, uint32_t *len);

/* The byte at offset o of the disk image tests/guest/run makes. */
static inline uint8_t vtest_disk_byte(uint64_t o)
{
	return (uint8_t)((o % 251) ^ ((o >> 9) & 0xff));
}

/* Static memory for buffers and rings, identity-mapped guest RAM. */
#define VIRTIO_SCRATCH_SIZE 0x10000
extern uint8_t virtio_scratch[VIRTIO_SCRATCH_SIZE];
static inline uint64_t gpa(const volatile void *p) { return (uint64_t)(uintptr_t)p; }

const char *vdev_name(const struct vdev *d);

/* ---- For the test modes (virtio_tests.c, virtio_hostile.c) ---- */

/* Each check has its own exit code; a file may start its codes higher. */
#ifndef VTEST_CODE_BASE
#define VTEST_CODE_BASE 0
#endif
#define CHECK(what, got, want)                                                                \
	do {                                                                                  \
		uint64_t got_ = (uint64_t)(got), want_ = (uint64_t)(want);                    \
		test_check(got_ == want_, VTEST_CODE_BASE + __COUNTER__ + 1, what, -1, -1, got_, want_); \
	} while (0)
#define CHECK_TRUE(what, cond) CHECK(what, !!(cond), 1)
/* A step that returns NULL or why it failed. */
#define MUST(what, expr)                                                                      \
	do {                                                                                  \
		const char *why_ = (expr);                                                    \
		if (why_)                                                                     \
			vtest_fail(VTEST_CODE_BASE + __COUNTER__ + 1, what, why_);            \
	} while (0)

/* "FAIL: what: why", exit with code (capped at 255). */
__attribute__((noreturn)) void vtest_fail(int code, const char *what, const char *why);
/* "kvmlite guest: " a b c, newline; b and c may be NULL. */
void vtest_say(const char *a, const char *b, const char *c);
/* The first device_id device, or FAIL; prints where it is. */
void vtest_find_device(uint16_t id, struct vdev *d);

#endif
