/* STUB: replaced by the PCI implementation. */
#include <errno.h>
#include "pci.h"
#include "vm.h"
int pci_host_init(struct vm *vm) { return 0; }
void pci_cfg_set_ids(struct pci_device *dev, uint16_t vendor, uint16_t device, uint16_t subsys_vendor,
		     uint16_t subsys, uint8_t revision, uint32_t class_code) {}
uint8_t pci_cfg_add_cap(struct pci_device *dev, uint8_t id, uint8_t len) { return 0; }
void pci_cfg_set_bar(struct pci_device *dev, int bar, uint64_t size, bus_io_fn fn, void *opaque) {}
int pci_msix_init(struct pci_device *dev, int nr_vectors, int bar, uint32_t table_offset, uint32_t pba_offset) { return -ENOSYS; }
int pci_device_add(struct vm *vm, struct pci_device *dev) { return -ENOSYS; }
bool pci_msix_notify(struct pci_device *dev, int vector) { return false; }
bool pci_msix_enabled(struct pci_device *dev) { return false; }
void pci_intx_set(struct pci_device *dev, bool level) {}
