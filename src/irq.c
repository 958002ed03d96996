/* STUB: replaced by the GSI routing implementation. */
#include <errno.h>
#include "irq.h"
#include "vm.h"
int irq_routing_init(struct vm *vm) { return 0; }
void irq_routing_free(struct irq_routing *r) {}
int irq_alloc_gsi(struct vm *vm) { return -ENOSPC; }
int irq_set_msi_route(struct vm *vm, uint32_t gsi, uint64_t address, uint32_t data, bool enable) { return -ENOSYS; }
int irq_irqfd(struct vm *vm, int fd, uint32_t gsi, bool assign) { return -ENOSYS; }
