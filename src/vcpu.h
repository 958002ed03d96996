/* A vCPU: one thread looping on KVM_RUN and handling each exit. */
#ifndef KVMLITE_VCPU_H
#define KVMLITE_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "arch.h"

struct vm;

/* Exit reasons counted per vCPU; --stats prints the sums. */
enum vcpu_stat {
	VCPU_STAT_IO,
	VCPU_STAT_MMIO,
	VCPU_STAT_HLT,
	VCPU_STAT_INTR,          /* KVM_RUN interrupted by a signal */
	VCPU_STAT_INTERNAL_ERROR,
	VCPU_STAT_SYSTEM_EVENT,
	VCPU_STAT_SHUTDOWN,
	VCPU_STAT_UNHANDLED_IO,  /* I/O no device claimed */
	VCPU_STAT_OTHER,
	VCPU_STAT_MAX,
};

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	uint64_t stats[VCPU_STAT_MAX];
	struct arch_vcpu arch;
};

int vcpu_create(struct vm *vm, struct vcpu *vcpu, int id);
int vcpu_start(struct vcpu *vcpu);
/* Makes the vCPU leave KVM_RUN soon (immediate_exit + signal). */
void vcpu_kick(struct vcpu *vcpu);
void vcpu_destroy(struct vcpu *vcpu);

extern const char *const vcpu_stat_names[VCPU_STAT_MAX];

#endif
