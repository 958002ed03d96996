/* Kernel loading: format detection, and the boot parameters for the two
 * entries kvmlite offers (Linux 64-bit boot protocol, Xen PVH). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "decompress.h"
#include "layout.h"
#include "loader.h"
#include "util.h"

#define LOADER_MAX_VMLINUX     DECOMPRESS_MAX_DEFAULT
#define LOADER_BOOT_VERSION    0x020F     /* synthesized header */
#define LOADER_TYPE_UNDEFINED  0xFF
#define LOADER_KERNEL_ALIGN    0x1000000
#define LOADER_INITRD_MAX_OLD  0x37FFFFFF /* protocol < 2.03 */
#define LOADER_INITRD_MAX_SYNTH 0x7FFFFFFF /* what x86-64 kernels declare */
#define LOADER_PAGE            4096ULL

/* What every boot mode needs besides the kernel itself. */
struct loader_ctx {
	const struct guest_memory *mem;
	const struct boot_images *img;
	const struct e820_map *e820;
	uint64_t low_end;         /* end of the RAM region at gpa 0 */
	uint64_t k_lo, k_hi;      /* the kernel's footprint, kept clear of the initrd */
	uint64_t initrd_gpa;      /* 0: no initrd */
	uint64_t initrd_len;
};

static int loader_cmdline(struct loader_ctx *c, uint64_t max_len)
{
	size_t len = strlen(c->img->cmdline);
	if (len > max_len || len > X86_CMDLINE_MAX - 1)
		return -ENAMETOOLONG;
	return guest_write(c->mem, X86_CMDLINE, c->img->cmdline, len + 1);
}

/* Puts the initrd as high as possible below min(addr_max + 1, low RAM end),
 * page-aligned, above 1 MiB and clear of the kernel. */
static int loader_initrd(struct loader_ctx *c, uint64_t addr_max)
{
	const struct boot_images *img = c->img;
	c->initrd_gpa = 0;
	c->initrd_len = 0;
	if (!img->initrd || img->initrd_len == 0)
		return 0;
	uint64_t len = img->initrd_len;
	if (len > UINT32_MAX) /* ramdisk_size is 32 bits */
		return -E2BIG;
	uint64_t top = addr_max == UINT64_MAX ? c->low_end : MIN(addr_max + 1, c->low_end);
	if (top < len)
		return -E2BIG;
	uint64_t gpa = ALIGN_DOWN(top - len, LOADER_PAGE);
	if (gpa < c->k_hi && gpa + len > c->k_lo) {
		/* Overlaps the kernel: the highest place below it, then. */
		top = MIN(top, c->k_lo);
		if (top < len)
			return -E2BIG;
		gpa = ALIGN_DOWN(top - len, LOADER_PAGE);
	}
	if (gpa < X86_HIGH_MEMORY)
		return -E2BIG;
	int err = guest_write(c->mem, gpa, img->initrd, len);
	if (err)
		return -E2BIG;
	c->initrd_gpa = gpa;
	c->initrd_len = len;
	return 0;
}

/* Boot parameters for the 64-bit Linux entry. bz is the bzImage whose
 * setup header is passed on, or NULL to synthesize one for a vmlinux. */
static int loader_linux64(struct loader_ctx *c, const struct x86_bzimage *bz, uint64_t entry,
			  struct boot_entry *out)
{
	struct x86_boot_params bp;
	memset(&bp, 0, sizeof(bp));
	struct x86_setup_header *h = &bp.hdr;
	uint64_t cmdline_max, initrd_max;

	if (bz) {
		*h = bz->hdr; /* zero past the header's real end */
		cmdline_max = h->cmdline_size;
		initrd_max = (h->xloadflags & X86_XLF_CAN_BE_LOADED_ABOVE_4G) ? UINT64_MAX
			   : h->initrd_addr_max ? h->initrd_addr_max : LOADER_INITRD_MAX_OLD;
	} else {
		h->boot_flag = X86_BOOT_FLAG;
		/* "jmp 0x26c": the header length readers compute from it. */
		h->jump = 0xEB | (uint16_t)((X86_SETUP_HDR_OFFSET + sizeof(*h) - 0x202) << 8);
		h->header = X86_HDRS_MAGIC;
		h->version = LOADER_BOOT_VERSION;
		h->kernel_alignment = LOADER_KERNEL_ALIGN;
		h->initrd_addr_max = LOADER_INITRD_MAX_SYNTH;
		h->cmdline_size = X86_CMDLINE_MAX - 1;
		cmdline_max = h->cmdline_size;
		initrd_max = h->initrd_addr_max;
	}

	int err = loader_cmdline(c, cmdline_max);
	if (err)
		return err;
	err = loader_initrd(c, initrd_max);
	if (err)
		return err;
	if (c->e820->nr > X86_E820_MAX_ZEROPAGE)
		return -EINVAL;

	h->type_of_loader = LOADER_TYPE_UNDEFINED;
	/* No real-mode setup runs, so no heap; the kernel sits above 1 MiB. */
	h->loadflags = (h->loadflags | X86_LOADED_HIGH) & ~X86_CAN_USE_HEAP;
	h->heap_end_ptr = 0;
	h->cmd_line_ptr = (uint32_t)X86_CMDLINE;
	h->ramdisk_image = (uint32_t)c->initrd_gpa;
	h->ramdisk_size = (uint32_t)c->initrd_len;
	bp.ext_ramdisk_image = (uint32_t)(c->initrd_gpa >> 32);
	h->setup_data = 0; /* no setup_data list; never pass on the file's */
	bp.acpi_rsdp_addr = c->img->rsdp_gpa;
	bp.e820_entries = (uint8_t)c->e820->nr;
	memcpy(bp.e820_table, c->e820->entries, (size_t)c->e820->nr * sizeof(struct e820_entry));

	err = guest_write(c->mem, X86_BOOT_PARAMS, &bp, sizeof(bp));
	if (err)
		return err;
	out->mode = BOOT_LINUX64;
	out->entry = entry;
	out->param_gpa = X86_BOOT_PARAMS;
	return 0;
}

static int loader_pvh(struct loader_ctx *c, uint32_t entry, struct boot_entry *out)
{
	const struct e820_map *map = c->e820;
	uint64_t memmap_len = (uint64_t)map->nr * sizeof(struct x86_hvm_memmap_entry);
	uint64_t modlist = X86_PVH_MEMMAP + memmap_len;
	_Static_assert(X86_PVH_MEMMAP + E820_MAX_ENTRIES * sizeof(struct x86_hvm_memmap_entry) +
		       sizeof(struct x86_hvm_modlist_entry) <= X86_BOOT_PARAMS, "PVH area");
	_Static_assert(X86_PVH_START_INFO + sizeof(struct x86_hvm_start_info) <= X86_PVH_MEMMAP, "PVH area");

	int err = loader_cmdline(c, X86_CMDLINE_MAX - 1);
	if (err)
		return err;
	err = loader_initrd(c, UINT64_MAX);
	if (err)
		return err;

	for (int i = 0; i < map->nr; i++) {
		struct x86_hvm_memmap_entry e = {
			.addr = map->entries[i].addr,
			.size = map->entries[i].size,
			.type = map->entries[i].type,
		};
		err = guest_write(c->mem, X86_PVH_MEMMAP + (uint64_t)i * sizeof(e), &e, sizeof(e));
		if (err)
			return err;
	}

	struct x86_hvm_start_info si = {
		.magic = X86_HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = X86_CMDLINE,
		.rsdp_paddr = c->img->rsdp_gpa,
		.memmap_paddr = X86_PVH_MEMMAP,
		.memmap_entries = (uint32_t)map->nr,
	};
	if (c->initrd_len) {
		struct x86_hvm_modlist_entry mod = { .paddr = c->initrd_gpa, .size = c->initrd_len };
		err = guest_write(c->mem, modlist, &mod, sizeof(mod));
		if (err)
			return err;
		si.nr_modules = 1;
		si.modlist_paddr = modlist;
	}
	err = guest_write(c->mem, X86_PVH_START_INFO, &si, sizeof(si));
	if (err)
		return err;
	out->mode = BOOT_PVH32;
	out->entry = entry;
	out->param_gpa = X86_PVH_START_INFO;
	return 0;
}

static int loader_elf(struct loader_ctx *c, struct boot_entry *out)
{
	struct x86_elf_image ei;
	int err = x86_elf_load(c->mem, c->img->kernel, c->img->kernel_len, &ei);
	if (err)
		return err;
	c->k_lo = ei.lo;
	c->k_hi = ei.hi;
	if (ei.has_pvh)
		return loader_pvh(c, ei.pvh_entry, out);
	return loader_linux64(c, NULL, ei.entry, out);
}

/* Extracts the vmlinux from the payload: 0 loaded, 1 not possible (the
 * kernel's own decompressor must do it), negative errno. */
static int loader_bz_extract(struct loader_ctx *c, const struct x86_bzimage *bz, uint64_t *entry)
{
	if (!bz->payload)
		return 1;
	uint8_t *vm;
	size_t vm_len;
	int err = decompress(bz->payload, bz->payload_len, &vm, &vm_len, LOADER_MAX_VMLINUX);
	if (err == -ENOTSUP || err == -EFBIG)
		return 1;
	if (err)
		return err;
	if (!x86_elf_probe(vm, vm_len)) {
		free(vm);
		return 1;
	}
	struct x86_elf_image ei;
	err = x86_elf_load(c->mem, vm, vm_len, &ei);
	free(vm);
	if (err)
		return err;
	c->k_lo = ei.lo;
	c->k_hi = ei.hi;
	*entry = ei.entry;
	return 0;
}

/* Loads the protected-mode part as is, for the 64-bit entry at +0x200. */
static int loader_bz_raw(struct loader_ctx *c, const struct x86_bzimage *bz, uint64_t *entry)
{
	const struct x86_setup_header *h = &bz->hdr;
	uint64_t load = X86_KERNEL_DEFAULT;
	if (h->relocatable_kernel) {
		uint64_t align = h->kernel_alignment;
		if (align == 0 || (align & (align - 1)))
			return -EINVAL;
		load = ALIGN_UP(load, align);
	} else if (h->pref_address >= X86_HIGH_MEMORY) {
		load = h->pref_address; /* where it decompresses itself anyway */
	}
	/* init_size: what the kernel needs from its load address until it
	 * has read the memory map. */
	uint64_t span = MAX((uint64_t)bz->pm_len, (uint64_t)h->init_size);
	if (load > UINT64_MAX - span)
		return -EINVAL;
	uint8_t *dst = guest_ptr(c->mem, load, span);
	if (!dst)
		return -E2BIG;
	memcpy(dst, bz->pm, bz->pm_len);
	c->k_lo = load;
	c->k_hi = load + span;
	*entry = load + X86_BZIMAGE_ENTRY64;
	return 0;
}

static int loader_bzimage(struct loader_ctx *c, struct boot_entry *out)
{
	struct x86_bzimage bz;
	int err = x86_bzimage_parse(c->img->kernel, c->img->kernel_len, &bz);
	if (err)
		return err;
	uint64_t entry;
	err = loader_bz_extract(c, &bz, &entry);
	if (err == 1)
		err = loader_bz_raw(c, &bz, &entry);
	if (err)
		return err;
	return loader_linux64(c, &bz, entry, out);
}

int x86_load_kernel(const struct guest_memory *mem, const struct boot_images *img, struct boot_entry *out)
{
	if (!img->kernel || !img->cmdline)
		return -EINVAL;

	struct e820_map built;
	struct loader_ctx c = { .mem = mem, .img = img, .e820 = img->e820 };
	if (!c.e820) {
		int err = e820_build(mem, &built);
		if (err)
			return err;
		c.e820 = &built;
	}
	if (c.e820->nr < 0 || c.e820->nr > E820_MAX_ENTRIES)
		return -EINVAL;
	for (int i = 0; i < mem->nr_regions; i++) {
		if (mem->regions[i].gpa == 0)
			c.low_end = mem->regions[i].size;
	}
	if (c.low_end < X86_HIGH_MEMORY)
		return -EINVAL;

	if (x86_elf_probe(img->kernel, img->kernel_len))
		return loader_elf(&c, out);
	if (x86_bzimage_probe(img->kernel, img->kernel_len))
		return loader_bzimage(&c, out);
	return -ENOEXEC;
}
