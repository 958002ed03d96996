#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "pci.h"
#include "vcpu.h"

#define KVM_DEVICE_PATH "/dev/kvm"

static int vm_open_kvm(struct vm *vm)
{
	vm->kvm_fd = open(KVM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int err = -errno;
		log_error("cannot open %s: %s%s", KVM_DEVICE_PATH, strerror(-err),
			  err == -ENOENT ? " (is KVM enabled on this host?)" : "");
		return err;
	}
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		log_error("%s: unsupported KVM API version %d", KVM_DEVICE_PATH, version);
		return -ENOTSUP;
	}
	int max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_vcpus > 0 && vm->cfg->nr_cpus > max_vcpus) {
		log_error("--cpus %d: this host's KVM supports at most %d vCPUs", vm->cfg->nr_cpus, max_vcpus);
		return -EINVAL;
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		log_error("KVM_GET_VCPU_MMAP_SIZE failed");
		return -ENOTSUP;
	}
	return arch_check_kvm(vm->kvm_fd);
}

static int vm_setup_memory(struct vm *vm)
{
	int err = arch_memory_layout(vm->cfg->ram_size, &vm->mem);
	if (err) {
		log_error("--memory: cannot lay out %llu bytes of guest RAM", (unsigned long long)vm->cfg->ram_size);
		return err;
	}
	uint64_t total = guest_ram_size(&vm->mem);
	/* MAP_NORESERVE: pages are taken as the guest touches them. */
	vm->ram = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->ram == MAP_FAILED) {
		vm->ram = NULL;
		log_error("--memory: cannot map %llu MiB of guest RAM: %s",
			  (unsigned long long)(total >> 20), strerror(errno));
		return -ENOMEM;
	}
	vm->ram_map_size = total;
	madvise(vm->ram, total, MADV_MERGEABLE);

	uint64_t offset = 0;
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		struct guest_region *r = &vm->mem.regions[i];
		r->hva = (uint8_t *)vm->ram + offset;
		offset += r->size;
		struct kvm_userspace_memory_region slot = {
			.slot = (uint32_t)i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			int e = -errno;
			log_error("KVM_SET_USER_MEMORY_REGION (slot %d, %llu MiB): %s", i,
				  (unsigned long long)(r->size >> 20), strerror(-e));
			return e;
		}
	}
	return 0;
}

static int vm_init_devices(struct vm *vm)
{
	for_each_device(dev) {
		int err = dev->init(vm);
		if (err) {
			log_error("device %s: %s", dev->name, strerror(-err));
			return err;
		}
	}
	bus_seal(&vm->pio);
	bus_seal(&vm->mmio);
	return 0;
}

/* The "exits" group: each exit reason summed over the vCPUs. */
static uint64_t vm_read_exits(const void *opaque, int index)
{
	const struct vm *vm = opaque;
	uint64_t total = 0;
	for (int i = 0; i < vm->nr_vcpus; i++)
		total += __atomic_load_n(&vm->vcpus[i].stats[index], __ATOMIC_RELAXED);
	return total;
}

int vm_create(struct vm *vm, const struct vm_config *cfg)
{
	*vm = (struct vm){
		.cfg = cfg,
		.kvm_fd = -1,
		.vm_fd = -1,
		.stop_fd = -1,
		.console_out_fd = cfg->console == CONSOLE_SERIAL ? STDOUT_FILENO : -1,
	};
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->state_changed, NULL);

	int err = stats_add(&vm->stats, "exits", VCPU_STAT_MAX, vcpu_stat_names, vm_read_exits, vm);
	if (err)
		return err;
	if ((err = vm_open_kvm(vm)))
		return err;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		err = -errno;
		log_error("KVM_CREATE_VM: %s", strerror(-err));
		return err;
	}
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_fd < 0)
		return -errno;

	if ((err = arch_vm_init(vm)) || (err = irq_routing_init(vm)) || (err = vm_setup_memory(vm)) ||
	    (err = pci_host_init(vm)) || (err = vm_init_devices(vm)) ||
	    (err = arch_load_guest(vm)))
		return err;

	vm->vcpus = calloc((size_t)cfg->nr_cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (int i = 0; i < cfg->nr_cpus; i++) {
		err = vcpu_create(vm, &vm->vcpus[i], i);
		if (err)
			return err;
		vm->nr_vcpus++;
	}
	return arch_stats_init(vm);
}

int vm_start(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_NOT_STARTED) {
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	__atomic_store_n(&vm->state, VM_RUNNING, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->lock);
	for (int i = 0; i < vm->nr_vcpus; i++) {
		int err = vcpu_start(&vm->vcpus[i]);
		if (err) {
			log_error("cannot start vCPU %d: %s", i, strerror(-err));
			vm_stop(vm, VM_EXIT_ERROR, 0);
			return err;
		}
	}
	return 0;
}

void vm_stop(struct vm *vm, enum vm_exit_reason reason, int code)
{
	pthread_mutex_lock(&vm->lock);
	bool first = vm->state != VM_STOPPED;
	if (first) {
		__atomic_store_n(&vm->state, VM_STOPPED, __ATOMIC_SEQ_CST);
		vm->exit_reason = reason;
		vm->exit_code = code;
		pthread_cond_broadcast(&vm->state_changed); /* parked vCPUs leave */
	}
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	uint64_t one = 1;
	if (write(vm->stop_fd, &one, sizeof(one)) < 0)
		log_warn("cannot signal VM stop: %s", strerror(errno));
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_RUNNING) {
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	__atomic_store_n(&vm->state, VM_PAUSED, __ATOMIC_SEQ_CST);
	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	/* Paused means no vCPU is in the guest: wait until all are parked
	 * (or one stopped the VM meanwhile). */
	while (vm->state == VM_PAUSED && vm->nr_parked < vm->nr_vcpus)
		pthread_cond_wait(&vm->state_changed, &vm->lock);
	int err = vm->state == VM_PAUSED ? 0 : -ESHUTDOWN;
	pthread_mutex_unlock(&vm->lock);
	/* Outside vm->lock: a device thread may be calling into the VM. */
	for (struct vm_pause_hook *h = vm->pause_hooks; !err && h; h = h->next)
		h->pause(h->opaque);
	return err;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_PAUSED) {
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	pthread_mutex_unlock(&vm->lock);
	for (struct vm_pause_hook *h = vm->pause_hooks; h; h = h->next)
		h->resume(h->opaque);
	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_PAUSED) { /* stopped meanwhile */
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	__atomic_store_n(&vm->state, VM_RUNNING, __ATOMIC_SEQ_CST);
	pthread_cond_broadcast(&vm->state_changed);
	/* Return once every vCPU has left its parking spot, so that a pause
	 * right after this resume waits for fresh acknowledgements. */
	while (vm->state == VM_RUNNING && vm->nr_parked > 0)
		pthread_cond_wait(&vm->state_changed, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_park_vcpu(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED) {
		vm->nr_parked++;
		pthread_cond_broadcast(&vm->state_changed);
		while (vm->state == VM_PAUSED)
			pthread_cond_wait(&vm->state_changed, &vm->lock);
		vm->nr_parked--;
		pthread_cond_broadcast(&vm->state_changed);
	}
	pthread_mutex_unlock(&vm->lock);
}

enum vm_state vm_get_state(struct vm *vm)
{
	return __atomic_load_n(&vm->state, __ATOMIC_SEQ_CST);
}

const char *vm_state_name(enum vm_state state)
{
	switch (state) {
	case VM_NOT_STARTED: return "Not started";
	case VM_RUNNING: return "Running";
	case VM_PAUSED: return "Paused";
	case VM_STOPPED: return "Stopped";
	}
	return "?";
}

void vm_wait(struct vm *vm)
{
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];
		if (vcpu->thread_started) {
			pthread_join(vcpu->thread, NULL);
			vcpu->thread_started = false;
		}
	}
}

void vm_destroy(struct vm *vm)
{
	vm_wait(vm);
	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->nr_vcpus = 0;
	while (vm->pause_hooks) {
		struct vm_pause_hook *h = vm->pause_hooks;
		vm->pause_hooks = h->next;
		free(h);
	}
	while (vm->cleanups) {
		struct vm_cleanup *c = vm->cleanups;
		vm->cleanups = c->next;
		c->fn(c->opaque);
		free(c);
	}
	bus_free(&vm->pio);
	bus_free(&vm->mmio);
	irq_routing_free(&vm->irq);
	stats_free(&vm->stats);
	if (vm->ram)
		munmap(vm->ram, vm->ram_map_size);
	vm->ram = NULL;
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->stop_fd = vm->vm_fd = vm->kvm_fd = -1;
	pthread_cond_destroy(&vm->state_changed);
	pthread_mutex_destroy(&vm->lock);
}

int vm_irq_line(struct vm *vm, uint32_t gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

int vm_on_pause(struct vm *vm, vm_cleanup_fn pause, vm_cleanup_fn resume, void *opaque)
{
	struct vm_pause_hook *h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	*h = (struct vm_pause_hook){ pause, resume, opaque, vm->pause_hooks };
	vm->pause_hooks = h;
	return 0;
}

int vm_on_destroy(struct vm *vm, vm_cleanup_fn fn, void *opaque)
{
	struct vm_cleanup *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct vm_cleanup){ fn, opaque, vm->cleanups };
	vm->cleanups = c;
	return 0;
}

const char *vm_exit_reason_name(enum vm_exit_reason reason)
{
	switch (reason) {
	case VM_EXIT_NONE: return "none";
	case VM_EXIT_POWEROFF: return "power-off";
	case VM_EXIT_RESET: return "reset";
	case VM_EXIT_PANIC: return "guest panic";
	case VM_EXIT_ERROR: return "error";
	case VM_EXIT_TEST: return "test device exit";
	}
	return "?";
}
