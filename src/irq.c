/* Interrupt routing: kvmlite's copy of KVM's GSI routing table, and irqfds.
 *
 * The table starts as the arch's irqchip routes (the same KVM installs by
 * itself) and gains one MSI route per GSI that PCI hands out from
 * arch_irq_first_msi_gsi() up. Every change commits the whole table with
 * KVM_SET_GSI_ROUTING; when KVM refuses it, the copy is rolled back so it
 * keeps saying what KVM has. */
#include "irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "vm.h"

#define IRQ_MAX_DEFAULT_ROUTES 64

/* Commits r's table to KVM. Called with r->lock held. */
static int irq_commit(struct vm *vm)
{
	struct irq_routing *r = &vm->irq;
	size_t size = sizeof(struct kvm_irq_routing) + (size_t)r->nr * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *table = calloc(1, size);
	if (!table)
		return -ENOMEM;
	table->nr = (uint32_t)r->nr;
	memcpy(table->entries, r->entries, (size_t)r->nr * sizeof(*r->entries));
	int err = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, table) < 0 ? -errno : 0;
	free(table);
	return err;
}

static int irq_reserve(struct irq_routing *r, int nr)
{
	if (nr <= r->cap)
		return 0;
	int cap = r->cap ? r->cap : 32;
	while (cap < nr)
		cap *= 2;
	struct kvm_irq_routing_entry *n = realloc(r->entries, (size_t)cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	r->entries = n;
	r->cap = cap;
	return 0;
}

int irq_routing_init(struct vm *vm)
{
	struct irq_routing *r = &vm->irq;
	int nr_routes = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);
	if (nr_routes <= 0) {
		log_error("this host's KVM lacks KVM_CAP_IRQ_ROUTING (needed for PCI interrupts)");
		return -ENOTSUP;
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD) <= 0) {
		log_error("this host's KVM lacks KVM_CAP_IRQFD (needed for PCI interrupts)");
		return -ENOTSUP;
	}

	*r = (struct irq_routing){ .next_gsi = arch_irq_first_msi_gsi(), .nr_gsis = (uint32_t)nr_routes };
	int err = irq_reserve(r, IRQ_MAX_DEFAULT_ROUTES);
	if (err)
		return err;
	memset(r->entries, 0, (size_t)r->cap * sizeof(*r->entries));
	r->nr = arch_irq_default_routes(r->entries, IRQ_MAX_DEFAULT_ROUTES);
	pthread_mutex_init(&r->lock, NULL);
	r->initialized = true;
	if ((err = irq_commit(vm))) {
		log_error("KVM_SET_GSI_ROUTING (default routes): %s", strerror(-err));
		irq_routing_free(r);
	}
	return err;
}

void irq_routing_free(struct irq_routing *r)
{
	if (!r->initialized)
		return;
	free(r->entries);
	pthread_mutex_destroy(&r->lock);
	*r = (struct irq_routing){ 0 };
}

int irq_alloc_gsi(struct vm *vm)
{
	struct irq_routing *r = &vm->irq;
	if (!r->initialized)
		return -ENODEV;
	pthread_mutex_lock(&r->lock);
	int gsi = r->next_gsi < r->nr_gsis ? (int)r->next_gsi++ : -ENOSPC;
	pthread_mutex_unlock(&r->lock);
	return gsi;
}

static int irq_find_msi(const struct irq_routing *r, uint32_t gsi)
{
	for (int i = 0; i < r->nr; i++)
		if (r->entries[i].gsi == gsi && r->entries[i].type == KVM_IRQ_ROUTING_MSI)
			return i;
	return -1;
}

int irq_set_msi_route(struct vm *vm, uint32_t gsi, uint64_t address, uint32_t data, bool enable)
{
	struct irq_routing *r = &vm->irq;
	if (!r->initialized)
		return -ENODEV;
	if (gsi < arch_irq_first_msi_gsi() || gsi >= r->nr_gsis)
		return -EINVAL;

	pthread_mutex_lock(&r->lock);
	int err = 0;
	int i = irq_find_msi(r, gsi);
	struct kvm_irq_routing_entry saved = { 0 };
	struct kvm_irq_routing_entry route = {
		.gsi = gsi,
		.type = KVM_IRQ_ROUTING_MSI,
		.u.msi = { .address_lo = (uint32_t)address, .address_hi = (uint32_t)(address >> 32), .data = data },
	};
	if (i >= 0)
		saved = r->entries[i];
	if (enable && i >= 0) {
		r->entries[i] = route;
	} else if (enable) {
		if ((err = irq_reserve(r, r->nr + 1)))
			goto out;
		r->entries[r->nr++] = route;
	} else if (i >= 0) {
		r->entries[i] = r->entries[--r->nr];
	} else {
		goto out; /* no route to remove */
	}

	if ((err = irq_commit(vm))) {
		/* Undo, so the copy keeps matching KVM's table. */
		if (enable && i < 0)
			r->nr--;
		else if (enable)
			r->entries[i] = saved;
		else
			r->entries[r->nr++] = saved; /* order does not matter to KVM */
	}
out:
	pthread_mutex_unlock(&r->lock);
	return err;
}

int irq_irqfd(struct vm *vm, int fd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd irqfd = {
		.fd = (uint32_t)fd,
		.gsi = gsi,
		.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};
	if (fd < 0)
		return -EBADF;
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		return -errno;
	return 0;
}
