/* Interrupt routing: KVM's GSI routing table and irqfds.
 *
 * KVM_SET_GSI_ROUTING replaces the whole table, so kvmlite keeps its copy:
 * the arch's default irqchip routes (x86: PIC and IOAPIC pins) plus one MSI
 * route per allocated GSI. Thread-safe. */
#ifndef KVMLITE_IRQ_H
#define KVMLITE_IRQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct kvm_irq_routing_entry;

struct irq_routing {
	pthread_mutex_t lock;
	struct kvm_irq_routing_entry *entries;
	int nr, cap;
	uint32_t next_gsi;     /* next GSI for irq_alloc_gsi() */
	uint32_t nr_gsis;      /* KVM takes GSIs 0 .. nr_gsis - 1 */
	bool initialized;
};

/* After the irqchip exists: installs the default routes. */
int irq_routing_init(struct vm *vm);
void irq_routing_free(struct irq_routing *r);
/* A free GSI above the irqchip's pins, or -ENOSPC. */
int irq_alloc_gsi(struct vm *vm);
/* Sets (or, with enable false, removes) the MSI route of gsi and commits
 * the table to KVM. 0 or -errno. */
int irq_set_msi_route(struct vm *vm, uint32_t gsi, uint64_t address, uint32_t data, bool enable);
/* Binds eventfd fd to gsi (KVM_IRQFD); deassign undoes it. */
int irq_irqfd(struct vm *vm, int fd, uint32_t gsi, bool assign);

#endif
