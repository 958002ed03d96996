#include "vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"
#include "util.h"
#include "vm.h"

/* Sent to a vCPU thread to make KVM_RUN return (with immediate_exit set). */
#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void vcpu_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL); /* no SA_RESTART: KVM_RUN returns EINTR */
}

int vcpu_create(struct vm *vm, struct vcpu *vcpu, int id)
{
	*vcpu = (struct vcpu){ .vm = vm, .id = id, .fd = -1 };
	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (vcpu->fd < 0) {
		int err = -errno;
		log_error("KVM_CREATE_VCPU %d: %s", id, strerror(-err));
		return err;
	}
	vcpu->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		int err = -errno;
		vcpu->run = NULL;
		log_error("vCPU %d: cannot map kvm_run: %s", id, strerror(-err));
		return err;
	}
	return arch_vcpu_init(vcpu);
}

/* Before each KVM_RUN: false once the VM stopped; parks while it is
 * paused. immediate_exit is cleared before the state is read, so a kick
 * that follows a state change is never lost. */
static bool vcpu_should_run(struct vcpu *vcpu)
{
	for (;;) {
		__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		switch (vm_get_state(vcpu->vm)) {
		case VM_RUNNING:
			return true;
		case VM_PAUSED:
			vm_park_vcpu(vcpu->vm);
			continue;
		default:
			return false;
		}
	}
}

static void vcpu_handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	/* "rep ins/outs" arrive as one exit with count > 1. */
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (bus_dispatch(&vcpu->vm->pio, run->io.port, data, run->io.size, is_write) == -ENOENT) {
			vcpu->stats[VCPU_STAT_UNHANDLED_IO]++;
			if (!is_write)
				memset(data, 0xFF, run->io.size); /* nothing there: the bus floats high */
		}
	}
}

static void vcpu_handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint32_t len = run->mmio.len;
	if (len > sizeof(run->mmio.data))
		len = sizeof(run->mmio.data);
	if (bus_dispatch(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write) == -ENOENT) {
		vcpu->stats[VCPU_STAT_UNHANDLED_IO]++;
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xFF, len);
	}
}

static int vcpu_handle_system_event(struct vcpu *vcpu)
{
	switch (vcpu->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_stop(vcpu->vm, VM_EXIT_POWEROFF, 0);
		return 0;
	case KVM_SYSTEM_EVENT_RESET:
		vm_stop(vcpu->vm, VM_EXIT_RESET, 0);
		return 0;
	case KVM_SYSTEM_EVENT_CRASH:
		vm_stop(vcpu->vm, VM_EXIT_PANIC, 0);
		return 0;
	default:
		log_error("vCPU %d: unknown system event %u", vcpu->id, vcpu->run->system_event.type);
		return -ENOSYS;
	}
}

/* One exit: 0 to re-enter the guest, negative errno to stop the VM. */
static int vcpu_handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu->stats[VCPU_STAT_IO]++;
		vcpu_handle_io(vcpu);
		return 0;
	case KVM_EXIT_MMIO:
		vcpu->stats[VCPU_STAT_MMIO]++;
		vcpu_handle_mmio(vcpu);
		return 0;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; nothing to wake us: re-enter. */
		vcpu->stats[VCPU_STAT_HLT]++;
		return 0;
	case KVM_EXIT_INTR:
		vcpu->stats[VCPU_STAT_INTR]++;
		return 0;
	case KVM_EXIT_SHUTDOWN:
		/* A triple fault: a PC resets. */
		vcpu->stats[VCPU_STAT_SHUTDOWN]++;
		vm_stop(vcpu->vm, VM_EXIT_RESET, 0);
		return 0;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu->stats[VCPU_STAT_SYSTEM_EVENT]++;
		return vcpu_handle_system_event(vcpu);
	case KVM_EXIT_FAIL_ENTRY:
		log_error("vCPU %d: KVM could not enter the guest (hardware reason 0x%llx)", vcpu->id,
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu->stats[VCPU_STAT_INTERNAL_ERROR]++;
		return arch_vcpu_exit(vcpu);
	default:
		vcpu->stats[VCPU_STAT_OTHER]++;
		return arch_vcpu_exit(vcpu);
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", vcpu->id);
	pthread_setname_np(pthread_self(), name);

	sigset_t kick;
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	struct vm *vm = vcpu->vm;
	if (sandbox_enter(THREAD_VCPU) < 0) {
		vm_stop(vm, VM_EXIT_ERROR, 0);
		return NULL;
	}
	if (vcpu->id == 0)
		vm->first_run_ns = monotonic_ns();
	while (vcpu_should_run(vcpu)) {
		int ret = ioctl(vcpu->fd, KVM_RUN, 0);
		if (!__atomic_load_n(&vm->first_exit_ns, __ATOMIC_RELAXED)) {
			uint64_t zero = 0;
			__atomic_compare_exchange_n(&vm->first_exit_ns, &zero, monotonic_ns(), false,
						    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		}
		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->stats[VCPU_STAT_INTR]++;
				continue;
			}
			log_error("vCPU %d: KVM_RUN: %s", vcpu->id, strerror(errno));
			vm_stop(vcpu->vm, VM_EXIT_ERROR, 0);
			break;
		}
		if (vcpu_handle_exit(vcpu) < 0) {
			vm_stop(vcpu->vm, VM_EXIT_ERROR, 0);
			break;
		}
	}
	return NULL;
}

int vcpu_start(struct vcpu *vcpu)
{
	pthread_once(&kick_once, vcpu_install_kick_handler);
	/* Only vCPU threads take the kick signal: block it in the new thread's
	 * inherited mask until the thread unblocks it itself. */
	sigset_t kick, old;
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, &old);
	int err = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	vcpu->thread_started = true;
	return 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
	if (!vcpu->run)
		return;
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->vm->vcpu_mmap_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

const char *const vcpu_stat_names[VCPU_STAT_MAX] = {
	[VCPU_STAT_IO] = "io",
	[VCPU_STAT_MMIO] = "mmio",
	[VCPU_STAT_HLT] = "hlt",
	[VCPU_STAT_INTR] = "intr",
	[VCPU_STAT_INTERNAL_ERROR] = "internal_error",
	[VCPU_STAT_SYSTEM_EVENT] = "system_event",
	[VCPU_STAT_SHUTDOWN] = "shutdown",
	[VCPU_STAT_UNHANDLED_IO] = "unhandled_io",
	[VCPU_STAT_OTHER] = "other",
};
