/* The x86 platform: what a VM gets before its vCPUs run. In-kernel PIC,
 * IOAPIC, LAPICs and PIT; ACPI tables; the guest image and its boot
 * parameters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "acpi.h"
#include "boot_cpu.h"
#include "e820.h"
#include "layout.h"
#include "log.h"
#include "util.h"
#include "vm.h"

/* Linux: the console (ttyS0, or hvc0 with --console virtio); reboot
 * through the keyboard controller, the simplest path; panic reboots at
 * once rather than hanging (and pvpanic tells kvmlite first); skip the
 * IOAPIC timer check and the TSC watchdog, slow on an emulating host and
 * pointless on KVM's stable clocks. */
#define X86_DEFAULT_LINUX_CMDLINE_REST "reboot=k panic=-1 no_timer_check tsc=reliable"

extern const uint8_t embedded_guest_start[];
extern const uint8_t embedded_guest_end[];

struct kvm_cap_need {
	int cap;
	const char *name;
};

int arch_check_kvm(int kvm_fd)
{
	static const struct kvm_cap_need needed[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
		{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
		{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(needed); i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0) {
			log_error("this host's KVM lacks %s", needed[i].name);
			return -ENOTSUP;
		}
	}
	return 0;
}

int arch_memory_layout(uint64_t ram_size, struct guest_memory *mem)
{
	return x86_memory_layout(ram_size, mem);
}

int arch_vm_init(struct vm *vm)
{
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_TSS_ADDR) < 0) {
		log_error("KVM_SET_TSS_ADDR: %s", strerror(errno));
		return -errno;
	}
	uint64_t identity = X86_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) {
		log_error("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		log_error("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -errno;
	}
	struct kvm_pit_config pit = { .flags = 0 };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("KVM_CREATE_PIT2: %s", strerror(errno));
		return -errno;
	}
	/* Where KVM can, have it hand us the bytes of an instruction it could
	 * not emulate, for the fallback. */
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = { 1 } };
		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			log_warn("KVM_CAP_EXIT_ON_EMULATION_FAILURE: %s", strerror(errno));
	}
	return 0;
}

static const char *loader_error(int err)
{
	switch (err) {
	case -ENOEXEC: return "not a bzImage or an ELF64 x86-64 kernel";
	case -EINVAL:  return "corrupt or unsupported image";
	case -E2BIG:   return "does not fit in guest memory (try a larger --memory)";
	case -ENAMETOOLONG: return "kernel command line is longer than this kernel accepts";
	default:       return strerror(-err);
	}
}

/* The command line the guest gets: --cmdline or the default, then --append. */
static char *build_cmdline(const struct vm_config *cfg)
{
	const char *base = cfg->cmdline                         ? cfg->cmdline
			   : !cfg->kernel_path                  ? ""
			   : cfg->console == CONSOLE_VIRTIO     ? "console=hvc0 " X86_DEFAULT_LINUX_CMDLINE_REST
								: "console=ttyS0 " X86_DEFAULT_LINUX_CMDLINE_REST;
	const char *append = cfg->append ? cfg->append : "";
	char *line = NULL;
	if (asprintf(&line, "%s%s%s", base, *base && *append ? " " : "", append) < 0)
		return NULL;
	return line;
}

int arch_load_guest(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	struct e820_map e820;
	int err = e820_build(&vm->mem, &e820);
	if (!err)
		err = e820_reserve(&e820, X86_PCI_ECAM, X86_PCI_ECAM_SIZE);
	if (err) {
		log_error("cannot build the e820 memory map: %s", strerror(-err));
		return err;
	}
	struct acpi_params acpi = { .nr_cpus = cfg->nr_cpus };
	uint64_t rsdp = 0;
	if ((err = acpi_build(&vm->mem, &acpi, &rsdp))) {
		log_error("cannot build ACPI tables: %s", strerror(-err));
		return err;
	}

	uint8_t *kernel = NULL, *initrd = NULL;
	size_t kernel_len = 0, initrd_len = 0;
	char *cmdline = build_cmdline(cfg);
	if (!cmdline)
		return -ENOMEM;
	struct boot_images img = { .cmdline = cmdline, .rsdp_gpa = rsdp, .e820 = &e820 };
	if (cfg->kernel_path) {
		if ((err = read_file(cfg->kernel_path, &kernel, &kernel_len))) {
			log_error("--kernel %s: %s", cfg->kernel_path, strerror(-err));
			goto out;
		}
		img.kernel = kernel;
		img.kernel_len = kernel_len;
	} else {
		img.kernel = embedded_guest_start;
		img.kernel_len = (size_t)(embedded_guest_end - embedded_guest_start);
	}
	if (cfg->initrd_path) {
		if ((err = read_file(cfg->initrd_path, &initrd, &initrd_len))) {
			log_error("--initrd %s: %s", cfg->initrd_path, strerror(-err));
			goto out;
		}
		img.initrd = initrd;
		img.initrd_len = initrd_len;
	}
	err = x86_load_kernel(&vm->mem, &img, &vm->arch.boot);
	if (err) {
		log_error("--kernel %s: %s", cfg->kernel_path ? cfg->kernel_path : "(embedded guest)", loader_error(err));
		goto out;
	}
	if ((err = x86_boot_tables(&vm->mem, vm->arch.boot.mode)))
		log_error("cannot write the boot page tables: %s", strerror(-err));
out:
	free(kernel);
	free(initrd);
	free(cmdline);
	return err;
}
