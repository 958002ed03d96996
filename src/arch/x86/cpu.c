/* x86 vCPU set-up (CPUID, MSRs, LAPIC, boot registers) and the exits only
 * x86 knows about. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "boot_cpu.h"
#include "log.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

#define CPUID_MAX_ENTRIES 256
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define MSR_IA32_MISC_ENABLE 0x000001A0
#define MISC_ENABLE_FAST_STRING 0x1
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static int vcpu_set_cpuid(struct vcpu *vcpu)
{
	size_t size = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *cpuid = calloc(1, size);
	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = CPUID_MAX_ENTRIES;
	if (ioctl(vcpu->vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
		int err = -errno;
		log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(-err));
		free(cpuid);
		return err;
	}
	uint32_t apic_id = (uint32_t)vcpu->id;
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		switch (e->function) {
		case 1:
			/* Initial APIC ID and logical processor count. */
			e->ebx = (e->ebx & 0x0000FFFF) | (((uint32_t)vcpu->vm->cfg->nr_cpus & 0xFF) << 16) | (apic_id << 24);
			e->ecx |= CPUID_1_ECX_HYPERVISOR;
			break;
		case 0xB:
		case 0x1F:
			e->edx = apic_id; /* x2APIC ID */
			break;
		default:
			break;
		}
	}
	int err = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	if (err)
		log_error("vCPU %d: KVM_SET_CPUID2: %s", vcpu->id, strerror(-err));
	free(cpuid);
	return err;
}

static int vcpu_set_msrs(struct vcpu *vcpu)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[1];
	} msrs = { .hdr.nmsrs = 1, .entries = { { .index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING } } };
	if (ioctl(vcpu->fd, KVM_SET_MSRS, &msrs) != 1) {
		log_error("vCPU %d: KVM_SET_MSRS failed", vcpu->id);
		return -EIO;
	}
	return 0;
}

static void lapic_set_lvt_mode(struct kvm_lapic_state *lapic, int reg, uint32_t mode)
{
	uint32_t v;
	memcpy(&v, &lapic->regs[reg], sizeof(v));
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&lapic->regs[reg], &v, sizeof(v));
}

/* LINT0 takes the PIC's ExtINT, LINT1 the NMI, as a PC BIOS leaves them. */
static int vcpu_set_lapic(struct vcpu *vcpu)
{
	struct kvm_lapic_state lapic;
	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	lapic_set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
	lapic_set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

static int vcpu_set_fpu(struct vcpu *vcpu)
{
	struct kvm_fpu fpu = { .fcw = 0x37F, .mxcsr = 0x1F80 };
	if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

static int vcpu_set_boot_registers(struct vcpu *vcpu)
{
	const struct boot_entry *entry = &vcpu->vm->arch.boot;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	x86_boot_sregs(entry->mode, &sregs);
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	x86_boot_regs(entry, &regs);
	if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

int arch_vcpu_init(struct vcpu *vcpu)
{
	int err;
	if ((err = vcpu_set_cpuid(vcpu)) || (err = vcpu_set_msrs(vcpu)))
		return err;
	if ((err = vcpu_set_fpu(vcpu)) || (err = vcpu_set_lapic(vcpu))) {
		log_error("vCPU %d: initial FPU/LAPIC state: %s", vcpu->id, strerror(-err));
		return err;
	}
	/* The other vCPUs stay in wait-for-SIPI (KVM's reset MP state for
	 * non-boot vCPUs with an in-kernel LAPIC) until the guest starts them. */
	if (vcpu->id == 0 && (err = vcpu_set_boot_registers(vcpu))) {
		log_error("vCPU 0: boot registers: %s", strerror(-err));
		return err;
	}
	return 0;
}

static void vcpu_log_internal_error(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct kvm_regs regs;
	unsigned long long rip = ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0 ? regs.rip : 0;
	log_error("vCPU %d: KVM internal error, suberror %u, rip 0x%llx, %u data words%s%llx",
		  vcpu->id, run->internal.suberror, rip, run->internal.ndata,
		  run->internal.ndata ? ", first 0x" : "",
		  run->internal.ndata ? (unsigned long long)run->internal.data[0] : 0ULL);
}

int arch_vcpu_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
			return x86_fallback_handle(vcpu);
		vcpu_log_internal_error(vcpu);
		return -EIO;
	}
	log_error("vCPU %d: unhandled KVM exit reason %u", vcpu->id, run->exit_reason);
	return -ENOSYS;
}

static uint64_t read_fallback(const void *opaque, int index)
{
	const struct vm *vm = opaque;
	uint64_t total = 0;
	for (int i = 0; i < vm->nr_vcpus; i++)
		total += __atomic_load_n(&vm->vcpus[i].arch.fallback[index], __ATOMIC_RELAXED);
	return total;
}

int arch_stats_init(struct vm *vm)
{
	static const char *names[EMU_INSN_MAX];
	for (int k = 0; k < EMU_INSN_MAX; k++)
		names[k] = emu_insn_name((enum emu_insn)k);
	return stats_add(&vm->stats, "fallback", EMU_INSN_MAX, names, read_fallback, vm);
}
