/* PCI: one host bridge, bus 0, conventional config space through the
 * 0xCF8/0xCFC ports (x86) and the whole 4 KiB per function through ECAM
 * (described to the guest by ACPI MCFG).
 *
 * Devices are single-function endpoints on slots 1..31 (slot 0 is the host
 * bridge). pci_device_add() gives a device its slot, its INTx line and
 * addresses for its BARs inside the MMIO window; the guest may move a BAR
 * (the PCI layer re-dispatches and tells the device through bar_moved, so
 * ioeventfds follow), and may switch memory decoding off and on.
 *
 * MSI-X: pci_msix_init() adds the capability, and the PCI layer serves the
 * vector table and the pending-bit array inside the device's BAR. Each
 * vector gets a KVM GSI with an MSI route and an irqfd, so that a device
 * thread raises an interrupt with one eventfd write, never through a vCPU.
 *
 * Locking: configuration cycles and BAR dispatch run on vCPU threads under
 * the host's lock (a rwlock: BAR accesses are readers, config writes that
 * move BARs are writers). pci_msix_notify() and pci_intx_set() may be called
 * from any thread. */
#ifndef KVMLITE_PCI_H
#define KVMLITE_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

struct vm;

#define PCI_MAX_SLOTS        32
#define PCI_CFG_SPACE_SIZE   256    /* conventional, reachable through 0xCF8 */
#define PCI_CFG_EXT_SIZE     4096   /* PCIe extended, reachable through ECAM */
#define PCI_NR_BARS          6

/* Standard config space offsets used outside pci.c */
#define PCI_VENDOR_ID        0x00
#define PCI_DEVICE_ID        0x02
#define PCI_COMMAND          0x04
#define PCI_STATUS           0x06
#define PCI_REVISION_ID      0x08
#define PCI_CLASS_PROG       0x09
#define PCI_CLASS_DEVICE     0x0a
#define PCI_HEADER_TYPE      0x0e
#define PCI_BAR0             0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID     0x2e
#define PCI_CAPABILITY_LIST  0x34
#define PCI_INTERRUPT_LINE   0x3c
#define PCI_INTERRUPT_PIN    0x3d

#define PCI_COMMAND_IO       0x1
#define PCI_COMMAND_MEMORY   0x2
#define PCI_COMMAND_MASTER   0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_CAP_LIST  0x10
#define PCI_STATUS_INTERRUPT 0x08

#define PCI_CAP_ID_VNDR      0x09
#define PCI_CAP_ID_MSIX      0x11

struct pci_device;

struct pci_device_ops {
	/* Device-specific config registers (e.g. none for virtio): called for
	 * accesses the PCI layer does not own (header, capabilities it
	 * manages and BARs are its own). NULL: such bytes read from cfg[] and
	 * writes are ignored. On a read, data already holds the cfg[] bytes,
	 * so the callback only changes what it computes. An access that mixes
	 * owned and device bytes reaches it as the device's runs only. */
	void (*cfg_access)(struct pci_device *dev, uint32_t offset, uint8_t *data, uint32_t len, bool is_write);
	/* A memory BAR was unmapped (old_addr != 0) and/or mapped at new_addr
	 * (!= 0): a move, a decode enable or disable. Called with the host's
	 * write lock held, from a vCPU thread; must not call back into PCI. */
	void (*bar_moved)(struct pci_device *dev, int bar, uint64_t old_addr, uint64_t new_addr);
};

struct pci_bar {
	uint64_t size;         /* power of two >= 4096; 0: BAR not implemented */
	uint64_t addr;         /* as the guest last programmed it */
	bool mapped;           /* decoding at addr (memory enable set, addr valid) */
	/* Accesses to [addr, addr + size); offsets are BAR-relative. */
	bus_io_fn fn;
	void *opaque;
};

struct pci_msix {
	int nr_vectors;        /* 0: no MSI-X */
	int bar;
	uint32_t table_offset; /* in the BAR, 16 bytes per vector */
	uint32_t pba_offset;   /* in the BAR, one bit per vector */
	uint8_t cap;           /* config offset of the capability */
	bool enabled, function_masked;
	pthread_mutex_t lock;  /* table, pending bits, routes */
	struct pci_msix_vector {
		uint32_t addr_lo, addr_hi, data, ctrl;
		bool pending;
		int gsi;           /* KVM GSI with this vector's MSI route */
		int irqfd;         /* eventfd bound to gsi */
		bool routed;       /* the KVM route holds addr/data */
	} *vectors;            /* set by pci_device_add() */
};

struct pci_device {
	/* Filled by the device before pci_device_add() */
	const char *name;
	const struct pci_device_ops *ops;
	void *opaque;
	uint8_t cfg[PCI_CFG_EXT_SIZE];  /* IDs, class, capabilities: set with pci_cfg_* */
	struct pci_bar bars[PCI_NR_BARS];

	/* Filled by pci_device_add() */
	struct vm *vm;
	int slot;
	uint32_t intx_gsi;     /* INTA routed here (ACPI _PRT) */
	bool intx_level;
	uint8_t cap_next;      /* where the next capability goes */
	struct pci_msix msix;
};

/* The host bridge; created by vm_create() before devices. */
int pci_host_init(struct vm *vm);

/* A configuration cycle from the arch's config mechanism (x86 0xCF8/0xCFC)
 * or ECAM: reg is the byte offset in the function's space, len 1..4.
 * Anything but an existing function on bus 0 reads all-ones; runs on vCPU
 * threads. */
void pci_config_access(struct vm *vm, uint32_t bus, uint32_t slot, uint32_t fn, uint32_t reg, uint8_t *data,
		       uint32_t len, bool is_write);

/* Helpers to fill cfg[] before pci_device_add(). */
void pci_cfg_set_ids(struct pci_device *dev, uint16_t vendor, uint16_t device, uint16_t subsys_vendor,
		     uint16_t subsys, uint8_t revision, uint32_t class_code /* class<<16|sub<<8|prog */);
/* Appends a capability of len bytes (len >= 2; id and next are filled),
 * returns its config offset, or 0 when the 256-byte space is full. */
uint8_t pci_cfg_add_cap(struct pci_device *dev, uint8_t id, uint8_t len);
/* A 32-bit non-prefetchable memory BAR of size bytes (power of two). */
void pci_cfg_set_bar(struct pci_device *dev, int bar, uint64_t size, bus_io_fn fn, void *opaque);

/* MSI-X with nr_vectors vectors whose table and PBA live in bar at the
 * given offsets (the device's fn never sees those ranges). Call before
 * pci_device_add(); the capability is appended to the list. 0 or -errno. */
int pci_msix_init(struct pci_device *dev, int nr_vectors, int bar, uint32_t table_offset, uint32_t pba_offset);

/* Gives dev a slot, INTx line and BAR addresses; dev must live as long as
 * the VM. The BARs do not decode until the guest sets PCI_COMMAND_MEMORY:
 * bar_moved then reports (0, addr). MSI-X vectors get their eventfds (and,
 * with KVM, a GSI each with the eventfd bound as its irqfd) here; they are
 * the host's, freed after every device is destroyed. 0, -ENOSPC (no slot
 * or no window space), -EINVAL (MSI-X table or PBA outside its BAR), or
 * -errno. */
int pci_device_add(struct vm *vm, struct pci_device *dev);

/* Raises MSI-X vector v: an eventfd write if enabled and unmasked, else
 * sets its pending bit (delivered on unmask). false when MSI-X is off or v
 * is out of range (the caller then falls back to INTx). */
bool pci_msix_notify(struct pci_device *dev, int vector);
bool pci_msix_enabled(struct pci_device *dev);
/* Level of the device's INTA line (shared lines are ORed). */
void pci_intx_set(struct pci_device *dev, bool level);

#endif
