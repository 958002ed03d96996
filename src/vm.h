/* The VM: guest memory, I/O buses, vCPUs and a small state machine.
 *
 *   NOT_STARTED --vm_start--> RUNNING <--vm_pause/vm_resume--> PAUSED
 *                               |                               |
 *                               +----------vm_stop-------> STOPPED
 *
 * vm_stop() may be called from any thread (a device, a vCPU, the main
 * loop, the API); the first call decides the exit reason. vm_pause()
 * returns once every vCPU is out of KVM_RUN; KVM keeps each vCPU's MP
 * state (a halted vCPU stays halted), so vm_resume() continues each one
 * as it was; device threads are quiesced through their pause hooks. */
#ifndef KVMLITE_VM_H
#define KVMLITE_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch.h"
#include "bus.h"
#include "config.h"
#include "irq.h"
#include "memory.h"
#include "stats.h"

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED, VM_STOPPED };

enum vm_exit_reason {
	VM_EXIT_NONE,
	VM_EXIT_POWEROFF,   /* guest powered off (ACPI S5) */
	VM_EXIT_RESET,      /* guest asked for a reset, or triple-faulted */
	VM_EXIT_PANIC,      /* guest reported a panic (pvpanic) */
	VM_EXIT_ERROR,      /* the VMM could not go on */
	VM_EXIT_TEST,       /* --testdev: the guest set an exit code */
};

struct vcpu;

typedef void (*vm_input_fn)(void *opaque, const uint8_t *buf, size_t len);
typedef void (*vm_cleanup_fn)(void *opaque);

struct vm_cleanup {
	vm_cleanup_fn fn;
	void *opaque;
	struct vm_cleanup *next;
};

/* Device threads that must be quiet while the VM is paused. */
struct vm_pause_hook {
	vm_cleanup_fn pause, resume;
	void *opaque;
	struct vm_pause_hook *next;
};

struct vm {
	const struct vm_config *cfg;
	int kvm_fd;
	int vm_fd;
	int vcpu_mmap_size;

	struct guest_memory mem;
	void *ram;           /* one host mapping behind every RAM region */
	uint64_t ram_map_size;

	struct bus pio;
	struct bus mmio;
	struct pci_host *pci;     /* bus 0 (pci.c) */
	struct irq_routing irq;   /* GSI routes and irqfds (irq.c) */

	int nr_vcpus;
	struct vcpu *vcpus;

	/* Console input from the host terminal (set by the console device). */
	vm_input_fn console_input;
	void *console_opaque;
	int console_out_fd;  /* where the guest console writes; -1 for none */

	struct vm_cleanup *cleanups;
	struct vm_pause_hook *pause_hooks;
	struct stats_group *stats;   /* counters for --stats and metrics */

	pthread_mutex_t lock;  /* guards state, exit fields and nr_parked */
	pthread_cond_t state_changed;
	enum vm_state state;   /* written under lock, read by vCPUs with atomics */
	int nr_parked;         /* vCPUs parked outside KVM_RUN while PAUSED */
	enum vm_exit_reason exit_reason;
	int exit_code;         /* VM_EXIT_TEST: the guest's code */
	int stop_fd;           /* eventfd: readable once the VM stopped */

	/* Start-up milestones (monotonic ns; 0 until reached), for --stats. */
	uint64_t first_run_ns;   /* the boot vCPU first enters KVM_RUN */
	uint64_t first_exit_ns;  /* the first exit of any vCPU: the guest has run */

	struct arch_vm arch;
};

/* Creates the VM from cfg: KVM VM, memory, devices, guest image, vCPUs.
 * On error returns a negative errno after logging what failed. */
int vm_create(struct vm *vm, const struct vm_config *cfg);
int vm_start(struct vm *vm);
void vm_stop(struct vm *vm, enum vm_exit_reason reason, int code);
/* -EINVAL unless RUNNING (pause) or PAUSED (resume). */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
enum vm_state vm_get_state(struct vm *vm);
const char *vm_state_name(enum vm_state state);
/* Called by a vCPU thread that saw PAUSED: parks until resumed or stopped. */
void vm_park_vcpu(struct vm *vm);
/* Waits until the VM stopped, joins the vCPU threads. */
void vm_wait(struct vm *vm);
void vm_destroy(struct vm *vm);

/* Set the level of a guest interrupt line (in-kernel irqchip). */
int vm_irq_line(struct vm *vm, uint32_t gsi, int level);

/* Called in reverse order of registration by vm_destroy(). */
int vm_on_destroy(struct vm *vm, vm_cleanup_fn fn, void *opaque);
/* vm_pause() calls pause once every vCPU is parked; it returns when the
 * device has stopped touching guest state. vm_resume() calls resume before
 * the vCPUs go on. Register while the VM is built. */
int vm_on_pause(struct vm *vm, vm_cleanup_fn pause, vm_cleanup_fn resume, void *opaque);

const char *vm_exit_reason_name(enum vm_exit_reason reason);

#endif
