/* Guest kernel loaders: bzImage and ELF vmlinux (64-bit Linux boot protocol
 * entry), ELF with a Xen PVH note (PVH 32-bit entry). Pure functions over a
 * guest_memory, so they are unit-tested without KVM. */
#ifndef KVMLITE_X86_LOADER_H
#define KVMLITE_X86_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "e820.h"
#include "memory.h"

enum boot_mode {
	BOOT_LINUX64, /* long mode, paging identity-mapped, RSI = boot_params */
	BOOT_PVH32,   /* 32-bit protected mode, paging off, EBX = hvm_start_info */
};

struct boot_entry {
	enum boot_mode mode;
	uint64_t entry;     /* RIP */
	uint64_t param_gpa; /* boot_params or hvm_start_info */
};

struct boot_images {
	const uint8_t *kernel;
	size_t kernel_len;
	const uint8_t *initrd; /* NULL: none */
	size_t initrd_len;
	const char *cmdline;   /* never NULL */
	uint64_t rsdp_gpa;
	const struct e820_map *e820;
};

/* Loads a kernel into guest memory and writes the boot parameters.
 * Format detection: ELF with a PVH note -> PVH; other ELF64 -> Linux 64-bit;
 * bzImage -> its compressed payload is extracted on the host when it holds
 * an ELF vmlinux (gzip, xz, zstd, lz4, ...) and booted as such, else the
 * bzImage is loaded as is and entered at its 64-bit entry.
 * Errors: -ENOEXEC unrecognized format, -EINVAL corrupt image, -E2BIG does
 * not fit in guest RAM (kernel, initrd or cmdline), -EFAULT. */
int x86_load_kernel(const struct guest_memory *mem, const struct boot_images *img, struct boot_entry *out);

#endif
