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
 * not fit in guest RAM (kernel or initrd), -ENAMETOOLONG command line
 * longer than the kernel accepts, -EFAULT; -ENOMEM if
 * the host cannot hold the decompressed vmlinux. img->e820 may be NULL:
 * the map is then built from mem with e820_build(). */
int x86_load_kernel(const struct guest_memory *mem, const struct boot_images *img, struct boot_entry *out);

/* ---- Boot protocol structures, exact layouts (Linux boot.rst, Xen
 * start_info.h). Own definitions so no kernel header is needed. ---- */

#define X86_SETUP_HDR_OFFSET  0x1f1
#define X86_BOOT_FLAG         0xAA55
#define X86_HDRS_MAGIC        0x53726448 /* "HdrS" */
#define X86_BZIMAGE_ENTRY64   0x200      /* 64-bit entry, from the load address */
#define X86_LOADED_HIGH       (1 << 0)
#define X86_KEEP_SEGMENTS     (1 << 6)
#define X86_CAN_USE_HEAP      (1 << 7)
#define X86_XLF_KERNEL_64     (1 << 0)
#define X86_XLF_CAN_BE_LOADED_ABOVE_4G (1 << 1)
#define X86_E820_MAX_ZEROPAGE 128

struct x86_setup_header {
	uint8_t setup_sects;        /* 0x1f1 */
	uint16_t root_flags;
	uint32_t syssize;
	uint16_t ram_size;
	uint16_t vid_mode;
	uint16_t root_dev;
	uint16_t boot_flag;         /* 0x1fe */
	uint16_t jump;              /* 0x200 */
	uint32_t header;            /* 0x202 */
	uint16_t version;           /* 0x206 */
	uint32_t realmode_swtch;
	uint16_t start_sys_seg;
	uint16_t kernel_version;
	uint8_t type_of_loader;     /* 0x210 */
	uint8_t loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start;
	uint32_t ramdisk_image;     /* 0x218 */
	uint32_t ramdisk_size;
	uint32_t bootsect_kludge;
	uint16_t heap_end_ptr;
	uint8_t ext_loader_ver;
	uint8_t ext_loader_type;
	uint32_t cmd_line_ptr;      /* 0x228 */
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable_kernel;
	uint8_t min_alignment;
	uint16_t xloadflags;        /* 0x236 */
	uint32_t cmdline_size;
	uint32_t hardware_subarch;
	uint64_t hardware_subarch_data;
	uint32_t payload_offset;    /* 0x248 */
	uint32_t payload_length;
	uint64_t setup_data;
	uint64_t pref_address;      /* 0x258 */
	uint32_t init_size;
	uint32_t handover_offset;
	uint32_t kernel_info_offset;
} __attribute__((packed));

/* The "zero page"; only the fields kvmlite fills are named. */
struct x86_boot_params {
	uint8_t _pad0[0x70];
	uint64_t acpi_rsdp_addr;    /* 0x070 */
	uint8_t _pad1[0xc0 - 0x78];
	uint32_t ext_ramdisk_image; /* 0x0c0 */
	uint32_t ext_ramdisk_size;
	uint32_t ext_cmd_line_ptr;
	uint8_t _pad2[0x1e8 - 0xcc];
	uint8_t e820_entries;       /* 0x1e8 */
	uint8_t _pad3[6];
	uint8_t sentinel;           /* 0x1ef */
	uint8_t _pad4;
	struct x86_setup_header hdr; /* 0x1f1 */
	uint8_t _pad5[0x2d0 - 0x1f1 - sizeof(struct x86_setup_header)];
	struct e820_entry e820_table[X86_E820_MAX_ZEROPAGE]; /* 0x2d0 */
	uint8_t _pad6[0x1000 - 0xcd0];
} __attribute__((packed));

#define X86_HVM_START_MAGIC     0x336ec578
#define X86_XEN_ELFNOTE_PHYS32_ENTRY 18

struct x86_hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;      /* version 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct x86_hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct x86_hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;              /* same values as E820_* */
	uint32_t reserved;
};

_Static_assert(sizeof(struct e820_entry) == 20, "boot protocol e820 entry");
_Static_assert(sizeof(struct x86_setup_header) == 0x26c - 0x1f1, "setup_header");
_Static_assert(offsetof(struct x86_setup_header, boot_flag) == 0x1fe - 0x1f1, "boot_flag");
_Static_assert(offsetof(struct x86_setup_header, header) == 0x202 - 0x1f1, "header");
_Static_assert(offsetof(struct x86_setup_header, cmd_line_ptr) == 0x228 - 0x1f1, "cmd_line_ptr");
_Static_assert(offsetof(struct x86_setup_header, xloadflags) == 0x236 - 0x1f1, "xloadflags");
_Static_assert(offsetof(struct x86_setup_header, payload_offset) == 0x248 - 0x1f1, "payload_offset");
_Static_assert(offsetof(struct x86_setup_header, pref_address) == 0x258 - 0x1f1, "pref_address");
_Static_assert(offsetof(struct x86_setup_header, init_size) == 0x260 - 0x1f1, "init_size");
_Static_assert(offsetof(struct x86_setup_header, kernel_info_offset) == 0x268 - 0x1f1, "kernel_info_offset");
_Static_assert(sizeof(struct x86_boot_params) == 4096, "boot_params");
_Static_assert(offsetof(struct x86_boot_params, acpi_rsdp_addr) == 0x70, "acpi_rsdp_addr");
_Static_assert(offsetof(struct x86_boot_params, ext_ramdisk_image) == 0xc0, "ext_ramdisk_image");
_Static_assert(offsetof(struct x86_boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(offsetof(struct x86_boot_params, sentinel) == 0x1ef, "sentinel");
_Static_assert(offsetof(struct x86_boot_params, hdr) == 0x1f1, "hdr");
_Static_assert(offsetof(struct x86_boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(sizeof(struct x86_hvm_start_info) == 56, "hvm_start_info");
_Static_assert(sizeof(struct x86_hvm_modlist_entry) == 32, "hvm_modlist_entry");
_Static_assert(sizeof(struct x86_hvm_memmap_entry) == 24, "hvm_memmap_table_entry");

/* ---- Internal to the loader (loader.c, elf.c, bzimage.c), exposed for
 * the unit tests. ---- */

/* Where an ELF kernel landed. */
struct x86_elf_image {
	uint64_t entry;       /* e_entry */
	uint64_t lo, hi;      /* [lo, hi): span of the PT_LOAD segments */
	int has_pvh;          /* a Xen PHYS32_ENTRY note was found */
	uint32_t pvh_entry;
};

/* 1 if buf starts with the ELF magic. */
int x86_elf_probe(const uint8_t *buf, size_t len);
/* Validates an ELF64 x86-64 ET_EXEC image, then copies its PT_LOAD
 * segments to guest RAM at p_paddr and zeroes their bss. Nothing is
 * written unless the whole image is valid. -ENOEXEC not ELF64 x86-64
 * executable, -EINVAL corrupt or below 1 MiB, -E2BIG outside RAM. */
int x86_elf_load(const struct guest_memory *mem, const uint8_t *buf, size_t len, struct x86_elf_image *out);

/* A validated bzImage; pointers point into the caller's buffer. */
struct x86_bzimage {
	struct x86_setup_header hdr; /* zero-extended past the header's end */
	size_t hdr_len;              /* bytes of header present, from 0x1f1 */
	const uint8_t *pm;           /* protected-mode kernel */
	size_t pm_len;
	const uint8_t *payload;      /* compressed vmlinux, NULL if unknown */
	size_t payload_len;
};

/* 1 if buf looks like a bzImage (boot flag and "HdrS"). */
int x86_bzimage_probe(const uint8_t *buf, size_t len);
/* -ENOEXEC not a 64-bit bzImage (too old, no XLF_KERNEL_64), -EINVAL
 * inconsistent sizes. */
int x86_bzimage_parse(const uint8_t *buf, size_t len, struct x86_bzimage *bz);

#endif
