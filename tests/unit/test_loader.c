/* x86 kernel loader: synthetic ELF vmlinux (with and without a PVH note)
 * and bzImages are loaded into a malloc'd guest; the test checks where
 * every byte landed and what the boot structures say. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compress_fixtures.h"
#include "decompress.h"
#include "layout.h"
#include "loader.h"

#define MiB (1ULL << 20)
#define RAM_SIZE (64 * MiB)
#define RSDP 0xE0000ULL
#define POISON 0xCC

struct fixture {
	struct guest_memory mem;
	struct e820_map map;
	struct boot_images img;
	struct boot_entry out;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->mem.nr_regions = 1;
	f->mem.regions[0].size = RAM_SIZE;
	f->mem.regions[0].hva = malloc(RAM_SIZE);
	if (!f->mem.regions[0].hva)
		return -1;
	/* Poison, so zeroed bss and untouched areas are both visible. */
	memset(f->mem.regions[0].hva, POISON, RAM_SIZE);
	if (e820_build(&f->mem, &f->map))
		return -1;
	f->img.cmdline = "console=ttyS0 root=/dev/vda";
	f->img.rsdp_gpa = RSDP;
	f->img.e820 = &f->map;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->mem.regions[0].hva);
	free(f);
	return 0;
}

static uint8_t *gpa(struct fixture *f, uint64_t addr)
{
	return f->mem.regions[0].hva + addr;
}

static void fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1664525 + 1013904223;
		p[i] = (uint8_t)(seed >> 24);
	}
}

/* ---- synthetic ELF images ---- */

struct seg {
	uint32_t type;
	uint64_t paddr;
	uint64_t filesz, memsz;
	uint32_t seed; /* file bytes are fill_pattern(seed) */
	const uint8_t *bytes; /* or these */
};

#define ELF_DATA_START 0x1000

/* Ehdr, phdrs, then each segment's bytes, 16-byte aligned. */
static struct blob make_elf(uint64_t entry, const struct seg *segs, int n)
{
	size_t len = ELF_DATA_START;
	for (int i = 0; i < n; i++)
		len += (segs[i].filesz + 15) & ~15ULL;
	struct blob b = { calloc(1, len), len };
	assert_non_null(b.buf);

	Elf64_Ehdr eh = {
		.e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT },
		.e_type = ET_EXEC,
		.e_machine = EM_X86_64,
		.e_version = EV_CURRENT,
		.e_entry = entry,
		.e_phoff = sizeof(Elf64_Ehdr),
		.e_ehsize = sizeof(Elf64_Ehdr),
		.e_phentsize = sizeof(Elf64_Phdr),
		.e_phnum = (uint16_t)n,
	};
	memcpy(b.buf, &eh, sizeof(eh));
	size_t off = ELF_DATA_START;
	for (int i = 0; i < n; i++) {
		Elf64_Phdr ph = {
			.p_type = segs[i].type,
			.p_offset = off,
			.p_vaddr = segs[i].paddr + 0xffffffff80000000ULL,
			.p_paddr = segs[i].paddr,
			.p_filesz = segs[i].filesz,
			.p_memsz = segs[i].memsz,
			.p_align = segs[i].type == PT_NOTE ? 4 : 0x200000,
		};
		memcpy(b.buf + sizeof(eh) + (size_t)i * sizeof(ph), &ph, sizeof(ph));
		if (segs[i].bytes)
			memcpy(b.buf + off, segs[i].bytes, segs[i].filesz);
		else
			fill_pattern(b.buf + off, segs[i].filesz, segs[i].seed);
		off += (segs[i].filesz + 15) & ~15ULL;
	}
	return b;
}

static Elf64_Phdr *phdr(struct blob *b, int i)
{
	return (Elf64_Phdr *)(b->buf + sizeof(Elf64_Ehdr) + (size_t)i * sizeof(Elf64_Phdr));
}

/* A Xen PHYS32_ENTRY note; desc_len 8 as Linux emits it, or 4. */
static size_t make_pvh_note(uint8_t *buf, uint32_t entry, int desc_len)
{
	Elf64_Nhdr nh = { .n_namesz = 4, .n_descsz = (Elf64_Word)desc_len, .n_type = 18 };
	/* Another note first, so the parser has to walk. */
	Elf64_Nhdr other = { .n_namesz = 6, .n_descsz = 3, .n_type = 1 };
	size_t off = 0;
	memcpy(buf, &other, sizeof(other));
	off += sizeof(other);
	memcpy(buf + off, "Linux\0\0\0", 8);
	off += 8;
	memcpy(buf + off, "abc\0", 4);
	off += 4;
	memcpy(buf + off, &nh, sizeof(nh));
	off += sizeof(nh);
	memcpy(buf + off, "Xen", 4);
	off += 4;
	uint64_t v = entry;
	memcpy(buf + off, &v, (size_t)desc_len);
	return off + (size_t)desc_len;
}

#define K_TEXT  (16 * MiB)
#define K_DATA  (18 * MiB)
#define K_ENTRY (K_TEXT + 0x200)

/* The usual vmlinux: text at 16 MiB, data+bss at 18 MiB. */
static struct blob make_vmlinux(void)
{
	struct seg segs[] = {
		{ PT_LOAD, K_TEXT, 0x3000, 0x3000, 1, NULL },
		{ PT_LOAD, K_DATA, 0x1800, 0x6000, 2, NULL },
	};
	return make_elf(K_ENTRY, segs, 2);
}

static void expect_vmlinux_loaded(struct fixture *f, const struct blob *elf)
{
	const Elf64_Phdr *t = (const Elf64_Phdr *)(elf->buf + sizeof(Elf64_Ehdr));
	const Elf64_Phdr *d = t + 1;
	assert_memory_equal(gpa(f, K_TEXT), elf->buf + t->p_offset, 0x3000);
	assert_memory_equal(gpa(f, K_DATA), elf->buf + d->p_offset, 0x1800);
	for (uint64_t i = 0x1800; i < 0x6000; i++)
		assert_int_equal(gpa(f, K_DATA)[i], 0); /* bss zeroed */
	assert_int_equal(gpa(f, K_DATA)[0x6000], POISON); /* and no more */
	assert_int_equal(gpa(f, K_TEXT - 1)[0], POISON);
}

static const struct x86_boot_params *boot_params(struct fixture *f)
{
	return (const struct x86_boot_params *)gpa(f, X86_BOOT_PARAMS);
}

static void expect_common_boot_params(struct fixture *f)
{
	const struct x86_boot_params *bp = boot_params(f);
	assert_int_equal(f->out.mode, BOOT_LINUX64);
	assert_int_equal(f->out.param_gpa, X86_BOOT_PARAMS);
	assert_int_equal(bp->hdr.boot_flag, 0xAA55);
	assert_memory_equal(&bp->hdr.header, "HdrS", 4);
	assert_int_equal(bp->hdr.type_of_loader, 0xFF);
	assert_true(bp->hdr.loadflags & X86_LOADED_HIGH);
	assert_int_equal(bp->hdr.cmd_line_ptr, X86_CMDLINE);
	assert_string_equal((const char *)gpa(f, bp->hdr.cmd_line_ptr), f->img.cmdline);
	assert_int_equal(bp->acpi_rsdp_addr, RSDP);
	assert_int_equal(bp->sentinel, 0);
	assert_int_equal(bp->e820_entries, f->map.nr);
	for (int i = 0; i < f->map.nr; i++) {
		assert_int_equal(bp->e820_table[i].addr, f->map.entries[i].addr);
		assert_int_equal(bp->e820_table[i].size, f->map.entries[i].size);
		assert_int_equal(bp->e820_table[i].type, f->map.entries[i].type);
	}
	/* Raw offsets, independent of the struct definition. */
	const uint8_t *raw = (const uint8_t *)bp;
	uint64_t rsdp;
	memcpy(&rsdp, raw + 0x70, 8);
	assert_int_equal(rsdp, RSDP);
	assert_int_equal(raw[0x1e8], f->map.nr);
	uint32_t cmd;
	memcpy(&cmd, raw + 0x228, 4);
	assert_int_equal(cmd, X86_CMDLINE);
	uint64_t e1_addr;
	memcpy(&e1_addr, raw + 0x2d0 + 20, 8);
	assert_int_equal(e1_addr, X86_EBDA_START);
}

/* The initrd is where the boot params say, page-aligned, as high as it
 * goes below `top`, clear of [k_lo, k_hi). */
static void expect_initrd(struct fixture *f, uint64_t at, uint32_t size, uint64_t top, uint64_t k_lo,
			  uint64_t k_hi)
{
	assert_int_equal(size, f->img.initrd_len);
	assert_int_equal(at % 4096, 0);
	assert_true(at >= X86_HIGH_MEMORY);
	assert_true(at + size <= top);
	assert_true(at + size + 4096 > top);
	assert_true(at + size <= k_lo || at >= k_hi);
	assert_memory_equal(gpa(f, at), f->img.initrd, size);
}

static uint8_t *make_initrd(struct fixture *f, size_t len)
{
	uint8_t *p = malloc(len);
	assert_non_null(p);
	fill_pattern(p, len, 77);
	f->img.initrd = p;
	f->img.initrd_len = len;
	return p;
}

static void test_elf_linux64(void **state)
{
	struct fixture *f = *state;
	struct blob elf = make_vmlinux();
	uint8_t *initrd = make_initrd(f, 100001);
	f->img.kernel = elf.buf;
	f->img.kernel_len = elf.len;

	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	assert_int_equal(f->out.entry, K_ENTRY);
	expect_vmlinux_loaded(f, &elf);
	expect_common_boot_params(f);
	const struct x86_boot_params *bp = boot_params(f);
	assert_int_equal(bp->hdr.version, 0x020F);
	assert_int_equal(bp->hdr.kernel_alignment, 0x1000000);
	expect_initrd(f, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size, RAM_SIZE, K_TEXT, K_DATA + 0x6000);
	free(initrd);
	free(elf.buf);
}

static void test_elf_builds_e820_when_missing(void **state)
{
	struct fixture *f = *state;
	struct blob elf = make_vmlinux();
	f->img.kernel = elf.buf;
	f->img.kernel_len = elf.len;
	f->img.e820 = NULL;
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	assert_int_equal(boot_params(f)->e820_entries, 3);
	assert_int_equal(boot_params(f)->hdr.ramdisk_size, 0);
	assert_int_equal(boot_params(f)->hdr.ramdisk_image, 0);
	free(elf.buf);
}

static void expect_pvh(struct fixture *f, uint32_t entry)
{
	assert_int_equal(f->out.mode, BOOT_PVH32);
	assert_int_equal(f->out.entry, entry);
	assert_int_equal(f->out.param_gpa, X86_PVH_START_INFO);

	struct x86_hvm_start_info si;
	memcpy(&si, gpa(f, X86_PVH_START_INFO), sizeof(si));
	assert_int_equal(si.magic, 0x336ec578);
	assert_int_equal(si.version, 1);
	assert_int_equal(si.cmdline_paddr, X86_CMDLINE);
	assert_string_equal((const char *)gpa(f, si.cmdline_paddr), f->img.cmdline);
	assert_int_equal(si.rsdp_paddr, RSDP);
	assert_int_equal(si.memmap_paddr, X86_PVH_MEMMAP);
	assert_int_equal(si.memmap_entries, f->map.nr);
	assert_int_equal(si.reserved, 0);
	for (int i = 0; i < f->map.nr; i++) {
		struct x86_hvm_memmap_entry e;
		memcpy(&e, gpa(f, si.memmap_paddr + (uint64_t)i * 24), sizeof(e));
		assert_int_equal(e.addr, f->map.entries[i].addr);
		assert_int_equal(e.size, f->map.entries[i].size);
		assert_int_equal(e.type, f->map.entries[i].type);
		assert_int_equal(e.reserved, 0);
	}
	if (f->img.initrd) {
		assert_int_equal(si.nr_modules, 1);
		assert_int_equal(si.modlist_paddr, X86_PVH_MEMMAP + (uint64_t)f->map.nr * 24);
		struct x86_hvm_modlist_entry m;
		memcpy(&m, gpa(f, si.modlist_paddr), sizeof(m));
		assert_int_equal(m.size, f->img.initrd_len);
		assert_int_equal(m.cmdline_paddr, 0);
		expect_initrd(f, m.paddr, (uint32_t)m.size, RAM_SIZE, K_TEXT, K_DATA + 0x6000);
	} else {
		assert_int_equal(si.nr_modules, 0);
		assert_int_equal(si.modlist_paddr, 0);
	}
}

static void test_elf_pvh(void **state)
{
	struct fixture *f = *state;
	uint8_t note[64];
	const uint32_t pvh_entry = K_TEXT + 0x40;
	size_t note_len = make_pvh_note(note, pvh_entry, 8);
	struct seg segs[] = {
		{ PT_LOAD, K_TEXT, 0x3000, 0x3000, 1, NULL },
		{ PT_NOTE, 0, note_len, note_len, 0, note },
		{ PT_LOAD, K_DATA, 0x1800, 0x6000, 2, NULL },
	};
	struct blob elf = make_elf(K_ENTRY, segs, 3);
	uint8_t *initrd = make_initrd(f, 3 * MiB + 5);
	f->img.kernel = elf.buf;
	f->img.kernel_len = elf.len;

	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	expect_pvh(f, pvh_entry);
	assert_memory_equal(gpa(f, K_TEXT), elf.buf + phdr(&elf, 0)->p_offset, 0x3000);
	assert_int_equal(gpa(f, K_DATA + 0x5fff)[0], 0);
	/* No zero page for PVH. */
	assert_int_equal(gpa(f, X86_BOOT_PARAMS + 0x1fe)[0], POISON);
	free(initrd);
	free(elf.buf);
}

/* The note only in a SHT_NOTE section, with a 4-byte descriptor. */
static void test_elf_pvh_section_note(void **state)
{
	struct fixture *f = *state;
	uint8_t note[64];
	const uint32_t pvh_entry = K_TEXT + 0x80;
	size_t note_len = make_pvh_note(note, pvh_entry, 4);
	struct seg segs[] = { { PT_LOAD, K_TEXT, 0x3000, 0x3000, 1, NULL } };
	struct blob elf = make_elf(K_ENTRY, segs, 1);
	/* Append the note and a section table: [0] null, [1] the note. */
	size_t note_off = elf.len, sh_off = (elf.len + note_len + 7) & ~7ULL;
	elf.len = sh_off + 2 * sizeof(Elf64_Shdr);
	elf.buf = realloc(elf.buf, elf.len);
	assert_non_null(elf.buf);
	memset(elf.buf + note_off, 0, elf.len - note_off);
	memcpy(elf.buf + note_off, note, note_len);
	Elf64_Shdr sh = { .sh_type = SHT_NOTE, .sh_offset = note_off, .sh_size = note_len, .sh_addralign = 4 };
	memcpy(elf.buf + sh_off + sizeof(Elf64_Shdr), &sh, sizeof(sh));
	Elf64_Ehdr *eh = (Elf64_Ehdr *)elf.buf;
	eh->e_shoff = sh_off;
	eh->e_shentsize = sizeof(Elf64_Shdr);
	eh->e_shnum = 2;
	f->img.kernel = elf.buf;
	f->img.kernel_len = elf.len;
	f->img.cmdline = "";

	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	assert_int_equal(f->out.mode, BOOT_PVH32);
	assert_int_equal(f->out.entry, pvh_entry);
	struct x86_hvm_start_info si;
	memcpy(&si, gpa(f, X86_PVH_START_INFO), sizeof(si));
	assert_int_equal(si.nr_modules, 0);
	assert_int_equal(gpa(f, X86_CMDLINE)[0], 0);
	free(elf.buf);
}

static int load_elf(struct fixture *f, struct blob *elf)
{
	f->img.kernel = elf->buf;
	f->img.kernel_len = elf->len;
	return x86_load_kernel(&f->mem, &f->img, &f->out);
}

static void test_elf_errors(void **state)
{
	struct fixture *f = *state;
	struct blob elf = make_vmlinux();
	struct blob e;
#define MUTATE(stmt, expect) do { \
		e.len = elf.len; \
		e.buf = malloc(e.len); \
		assert_non_null(e.buf); \
		memcpy(e.buf, elf.buf, e.len); \
		stmt; \
		assert_int_equal(load_elf(f, &e), expect); \
		free(e.buf); \
	} while (0)
	Elf64_Ehdr *eh;

	MUTATE(e.len = 40, -ENOEXEC);                            /* cut inside the ELF header */
	MUTATE(e.len = sizeof(Elf64_Ehdr) + 60, -EINVAL);        /* cut inside the phdrs */
	MUTATE(e.len = ELF_DATA_START + 0x1000, -EINVAL);        /* cut inside a segment */
	MUTATE(phdr(&e, 0)->p_offset = elf.len - 0x10, -EINVAL); /* segment past EOF */
	MUTATE(phdr(&e, 0)->p_offset = UINT64_MAX - 0x100, -EINVAL);
	MUTATE(phdr(&e, 1)->p_filesz = UINT64_MAX, -EINVAL);     /* huge p_filesz */
	MUTATE((phdr(&e, 1)->p_filesz = 0x7000, phdr(&e, 1)->p_memsz = 0x7000), -EINVAL); /* past EOF */
	MUTATE(phdr(&e, 1)->p_memsz = 0x100, -EINVAL);           /* memsz < filesz */
	MUTATE(phdr(&e, 1)->p_paddr = RAM_SIZE - 0x1000, -E2BIG);/* runs out of RAM */
	MUTATE(phdr(&e, 1)->p_paddr = 3ULL << 30, -E2BIG);       /* no RAM there */
	MUTATE(phdr(&e, 1)->p_paddr = UINT64_MAX - 0x100, -EINVAL); /* wraps */
	MUTATE(phdr(&e, 0)->p_paddr = 0x8000, -EINVAL);          /* over the boot area */
	MUTATE(phdr(&e, 0)->p_paddr = X86_HIGH_MEMORY - 0x1000, -EINVAL);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_phoff = elf.len), -EINVAL);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_phoff = UINT64_MAX - 8), -EINVAL);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_phnum = 0xffff), -EINVAL);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_phnum = 0), -EINVAL);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_phentsize = 32), -EINVAL);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_entry = 0x1234), -EINVAL); /* entry not loaded */
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_ident[EI_CLASS] = ELFCLASS32), -ENOEXEC);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_ident[EI_DATA] = ELFDATA2MSB), -ENOEXEC);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_machine = EM_AARCH64), -ENOEXEC);
	MUTATE((eh = (Elf64_Ehdr *)e.buf, eh->e_type = ET_DYN), -ENOEXEC);
	MUTATE((phdr(&e, 0)->p_type = PT_NULL, phdr(&e, 1)->p_type = PT_NULL), -EINVAL); /* nothing */
	MUTATE(e.buf[1] = 'X', -ENOEXEC);                        /* not ELF, not bzImage */
#undef MUTATE

	/* Nothing is written when the image is refused late (2nd segment). */
	memset(gpa(f, K_TEXT), POISON, 0x3000);
	phdr(&elf, 1)->p_paddr = RAM_SIZE;
	assert_int_equal(load_elf(f, &elf), -E2BIG);
	assert_int_equal(gpa(f, K_TEXT)[0], POISON);
	free(elf.buf);
}

static void test_elf_bad_notes(void **state)
{
	struct fixture *f = *state;
	uint8_t note[64];
	size_t note_len = make_pvh_note(note, K_TEXT, 8);
	struct seg segs[] = {
		{ PT_LOAD, K_TEXT, 0x3000, 0x3000, 1, NULL },
		{ PT_NOTE, 0, note_len, note_len, 0, note },
	};
	struct blob elf = make_elf(K_TEXT, segs, 2);
	uint8_t *n = elf.buf + phdr(&elf, 1)->p_offset;
	uint32_t *second_namesz = (uint32_t *)(n + 12 + 8 + 4);

	*second_namesz = 0xfffffff0; /* name runs past the note area */
	assert_int_equal(load_elf(f, &elf), -EINVAL);
	*second_namesz = 4;
	uint32_t *descsz = second_namesz + 1;
	*descsz = 6; /* neither 4 nor 8 */
	assert_int_equal(load_elf(f, &elf), -EINVAL);
	*descsz = 8;
	uint32_t hi = 1; /* entry above 4 GiB */
	memcpy(n + note_len - 4, &hi, 4);
	assert_int_equal(load_elf(f, &elf), -EINVAL);
	hi = 0;
	memcpy(n + note_len - 4, &hi, 4);
	uint32_t lo = 0x1000; /* PVH entry outside what is loaded */
	memcpy(n + note_len - 8, &lo, 4);
	assert_int_equal(load_elf(f, &elf), -EINVAL);
	phdr(&elf, 1)->p_filesz = elf.len; /* note area past EOF */
	assert_int_equal(load_elf(f, &elf), -EINVAL);
	free(elf.buf);
}

/* Random corruption of valid images: any result but a crash (ASan runs
 * this too). */
static void test_fuzz(void **state)
{
	struct fixture *f = *state;
	uint8_t note[64];
	size_t note_len = make_pvh_note(note, K_TEXT, 8);
	struct seg segs[] = {
		{ PT_LOAD, K_TEXT, 0x300, 0x3000, 1, NULL },
		{ PT_NOTE, 0, note_len, note_len, 0, note },
	};
	struct blob elf = make_elf(K_TEXT, segs, 2);
	uint8_t *copy = malloc(elf.len);
	assert_non_null(copy);
	uint32_t x = 99;
	for (int iter = 0; iter < 3000; iter++) {
		memcpy(copy, elf.buf, elf.len);
		for (int k = 0; k < 4; k++) {
			x = x * 1103515245 + 12345;
			size_t at = (x >> 8) % (iter & 1 ? 0x200 : elf.len);
			x = x * 1103515245 + 12345;
			copy[at] = (uint8_t)(x >> 16);
		}
		x = x * 1103515245 + 12345;
		struct blob b = { copy, (iter % 5 == 0) ? (x >> 8) % elf.len : elf.len };
		int err = load_elf(f, &b);
		assert_true(err == 0 || err == -ENOEXEC || err == -EINVAL || err == -E2BIG);
	}
	free(copy);
	free(elf.buf);
}

static void test_cmdline_limits(void **state)
{
	struct fixture *f = *state;
	struct blob elf = make_vmlinux();
	char *cmd = malloc(X86_CMDLINE_MAX + 1);
	assert_non_null(cmd);
	memset(cmd, 'a', X86_CMDLINE_MAX);
	cmd[X86_CMDLINE_MAX] = 0;
	f->img.cmdline = cmd;
	assert_int_equal(load_elf(f, &elf), -ENAMETOOLONG);
	cmd[X86_CMDLINE_MAX - 1] = 0; /* the largest that fits with its NUL */
	assert_int_equal(load_elf(f, &elf), 0);
	assert_int_equal(strlen((const char *)gpa(f, X86_CMDLINE)), X86_CMDLINE_MAX - 1);
	free(cmd);
	free(elf.buf);
}

static void test_initrd_placement(void **state)
{
	struct fixture *f = *state;
	/* Kernel high in RAM: the initrd does not fit above it, so it goes
	 * right below it. */
	struct seg segs[] = { { PT_LOAD, 40 * MiB, 0x1000, 0x1000, 3, NULL } };
	struct blob elf = make_elf(40 * MiB, segs, 1);
	uint8_t *initrd = make_initrd(f, 30 * MiB);
	assert_int_equal(load_elf(f, &elf), 0);
	const struct x86_boot_params *bp = boot_params(f);
	expect_initrd(f, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size, 40 * MiB, 40 * MiB, 40 * MiB + 0x1000);
	free(initrd);

	/* Too big for RAM at all, and too big for either side of the kernel. */
	initrd = make_initrd(f, RAM_SIZE - MiB);
	assert_int_equal(load_elf(f, &elf), -E2BIG);
	free(initrd);
	initrd = make_initrd(f, 39 * MiB + 1);
	assert_int_equal(load_elf(f, &elf), -E2BIG);
	free(initrd);
	free(elf.buf);
}

static void test_not_a_kernel(void **state)
{
	struct fixture *f = *state;
	uint8_t junk[4096];
	fill_pattern(junk, sizeof(junk), 5);
	struct blob b = { junk, sizeof(junk) };
	assert_int_equal(load_elf(f, &b), -ENOEXEC);
	b.len = 0;
	assert_int_equal(load_elf(f, &b), -ENOEXEC);
}

/* ---- synthetic bzImages ---- */

#define BZ_SETUP_SECTS 4
#define BZ_SETUP_LEN   ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PAYLOAD_OFF 0x400 /* in the protected-mode part */
#define BZ_HDR_END     0x268 /* the jump says the header ends here */
#define BZ_INIT_SIZE   (8 * MiB)

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static struct blob make_bzimage(const uint8_t *payload, size_t payload_len)
{
	size_t pm_len = BZ_PAYLOAD_OFF + payload_len + 4;
	size_t len = BZ_SETUP_LEN + pm_len;
	struct blob b = { malloc(len), len };
	assert_non_null(b.buf);
	fill_pattern(b.buf, len, 11);
	uint8_t *h = b.buf;
	memset(h + 0x1f1, 0, 0x26c - 0x1f1);
	h[0x1f1] = BZ_SETUP_SECTS;
	put32(h + 0x1f4, (uint32_t)((pm_len + 15) / 16));   /* syssize */
	put16(h + 0x1fe, 0xAA55);
	h[0x200] = 0xEB;
	h[0x201] = BZ_HDR_END - 0x202;
	memcpy(h + 0x202, "HdrS", 4);
	put16(h + 0x206, 0x020F);
	put16(h + 0x20e, 0x1234);                            /* kernel_version */
	h[0x211] = X86_LOADED_HIGH | X86_CAN_USE_HEAP;
	put32(h + 0x22c, 0x7fffffff);                        /* initrd_addr_max */
	put32(h + 0x230, 0x200000);                          /* kernel_alignment */
	h[0x234] = 1;                                        /* relocatable */
	put16(h + 0x236, X86_XLF_KERNEL_64);
	put32(h + 0x238, 2047);                              /* cmdline_size */
	put32(h + 0x248, BZ_PAYLOAD_OFF);
	put32(h + 0x24c, (uint32_t)payload_len);
	put64(h + 0x250, 0xdeadbeef);                        /* setup_data: not passed on */
	put64(h + 0x258, 0x1000000);                         /* pref_address */
	put32(h + 0x260, BZ_INIT_SIZE);
	put32(h + 0x264, 0x190);                             /* handover_offset */
	put32(h + 0x268, 0x5555);                            /* beyond the header's end */
	memcpy(h + BZ_SETUP_LEN + BZ_PAYLOAD_OFF, payload, payload_len);
	put32(h + BZ_SETUP_LEN + BZ_PAYLOAD_OFF + payload_len, 0); /* size_append, filled by caller */
	return b;
}

/* The fields the loader must pass on unchanged from the file. */
static void expect_header_copied(struct fixture *f, const struct blob *bz)
{
	const struct x86_setup_header *h = &boot_params(f)->hdr;
	const uint8_t *raw = (const uint8_t *)h;
	const uint8_t *file = bz->buf + 0x1f1;
	assert_memory_equal(raw, file, 0x210 - 0x1f1); /* up to type_of_loader */
	assert_int_equal(h->kernel_version, 0x1234);
	assert_int_equal(h->kernel_alignment, 0x200000);
	assert_int_equal(h->xloadflags, X86_XLF_KERNEL_64);
	assert_int_equal(h->cmdline_size, 2047);
	assert_int_equal(h->init_size, BZ_INIT_SIZE);
	assert_int_equal(h->handover_offset, 0x190);
	assert_int_equal(h->pref_address, 0x1000000);
	assert_int_equal(h->kernel_info_offset, 0);  /* past the header's end */
	assert_int_equal(h->setup_data, 0);
	assert_false(h->loadflags & X86_CAN_USE_HEAP);
}

/* The vmlinux payloads: zstd with its content checksum, plain xz (no BCJ),
 * lz4 legacy in a single block. */
static struct blob compress_zstd(const uint8_t *in, size_t len)
{
	return zstd_compress(in, len, true);
}

static struct blob compress_xz(const uint8_t *in, size_t len)
{
	return xz_compress(in, len, 1, false);
}

static struct blob compress_lz4(const uint8_t *in, size_t len)
{
	return lz4_legacy_compress(in, len, len);
}

static void test_bzimage_extracts_vmlinux(void **state)
{
	struct fixture *f = *state;
	struct blob elf = make_vmlinux();
	struct blob (*compressors[])(const uint8_t *, size_t) = { compress_zstd, gzip_compress, compress_xz,
								 compress_lz4 };
	for (size_t i = 0; i < sizeof(compressors) / sizeof(compressors[0]); i++) {
		memset(f->mem.regions[0].hva, POISON, RAM_SIZE);
		struct blob z = compressors[i](elf.buf, elf.len);
		struct blob bz = make_bzimage(z.buf, z.len);
		put32(bz.buf + BZ_SETUP_LEN + BZ_PAYLOAD_OFF + z.len, (uint32_t)elf.len);
		uint8_t *initrd = make_initrd(f, 2 * MiB + 3);
		f->img.kernel = bz.buf;
		f->img.kernel_len = bz.len;

		assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
		assert_int_equal(f->out.entry, K_ENTRY); /* e_entry, not load + 0x200 */
		expect_vmlinux_loaded(f, &elf);
		expect_common_boot_params(f);
		expect_header_copied(f, &bz);
		const struct x86_boot_params *bp = boot_params(f);
		expect_initrd(f, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size, RAM_SIZE, K_TEXT, K_DATA + 0x6000);
		free(initrd);
		f->img.initrd = NULL;
		f->img.initrd_len = 0;
		free(bz.buf);
		free(z.buf);
	}
	free(elf.buf);
}

static void expect_raw_load(struct fixture *f, const struct blob *bz, uint64_t load)
{
	assert_int_equal(f->out.mode, BOOT_LINUX64);
	assert_int_equal(f->out.entry, load + 0x200);
	size_t pm_len = bz->len - BZ_SETUP_LEN;
	assert_memory_equal(gpa(f, load), bz->buf + BZ_SETUP_LEN, pm_len);
	expect_common_boot_params(f);
	expect_header_copied(f, bz);
}

static void test_bzimage_raw_fallback(void **state)
{
	struct fixture *f = *state;
	/* A payload in no known format. */
	uint8_t junk[5000];
	fill_pattern(junk, sizeof(junk), 8);
	junk[0] = 0x42;
	struct blob bz = make_bzimage(junk, sizeof(junk));
	uint8_t *initrd = make_initrd(f, 20 * MiB);
	f->img.kernel = bz.buf;
	f->img.kernel_len = bz.len;
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	expect_raw_load(f, &bz, X86_KERNEL_DEFAULT);
	const struct x86_boot_params *bp = boot_params(f);
	/* Kept clear of init_size, not just the file's bytes. */
	expect_initrd(f, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size, RAM_SIZE, X86_KERNEL_DEFAULT,
		      X86_KERNEL_DEFAULT + BZ_INIT_SIZE);
	free(initrd);
	f->img.initrd = NULL;
	f->img.initrd_len = 0;
	free(bz.buf);

	/* Compressed, but not an ELF inside. */
	struct blob z = compress_zstd(junk, sizeof(junk));
	bz = make_bzimage(z.buf, z.len);
	f->img.kernel = bz.buf;
	f->img.kernel_len = bz.len;
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	expect_raw_load(f, &bz, X86_KERNEL_DEFAULT);

	/* Not relocatable: loaded at pref_address. */
	bz.buf[0x234] = 0;
	put64(bz.buf + 0x258, 0x2000000);
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	assert_int_equal(f->out.entry, 0x2000000 + 0x200);
	assert_memory_equal(gpa(f, 0x2000000), bz.buf + BZ_SETUP_LEN, bz.len - BZ_SETUP_LEN);

	/* Relocatable with an alignment that is not a power of two. */
	bz.buf[0x234] = 1;
	put32(bz.buf + 0x230, 0x300000);
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), -EINVAL);
	/* A large alignment moves the load address up. */
	put32(bz.buf + 0x230, 0x2000000);
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	assert_int_equal(f->out.entry, 0x2000000 + 0x200);
	put32(bz.buf + 0x230, 0x200000);

	/* init_size beyond RAM. */
	put32(bz.buf + 0x260, (uint32_t)(RAM_SIZE - X86_KERNEL_DEFAULT + 4096));
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), -E2BIG);
	free(bz.buf);
	free(z.buf);
}

static void test_bzimage_errors(void **state)
{
	struct fixture *f = *state;
	struct blob elf = make_vmlinux();
	struct blob z = compress_zstd(elf.buf, elf.len);
	struct blob good = make_bzimage(z.buf, z.len);
	struct blob e;
#define MUTATE(stmt, expect) do { \
		e.len = good.len; \
		e.buf = malloc(e.len); \
		assert_non_null(e.buf); \
		memcpy(e.buf, good.buf, e.len); \
		stmt; \
		f->img.kernel = e.buf; \
		f->img.kernel_len = e.len; \
		assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), expect); \
		free(e.buf); \
	} while (0)
	MUTATE((void)0, 0);
	MUTATE(put16(e.buf + 0x1fe, 0x55AA), -ENOEXEC);          /* boot flag */
	MUTATE(memcpy(e.buf + 0x202, "HdrZ", 4), -ENOEXEC);
	MUTATE(put16(e.buf + 0x206, 0x020B), -ENOEXEC);          /* too old for 64-bit */
	MUTATE(put16(e.buf + 0x236, 0), -ENOEXEC);               /* not 64-bit */
	MUTATE(e.len = 1000, -EINVAL);                           /* below 1 KiB */
	MUTATE(e.len = BZ_SETUP_LEN, -EINVAL);                   /* no kernel */
	MUTATE(e.len = BZ_SETUP_LEN + 0x300, -EINVAL);           /* shorter than syssize */
	MUTATE(e.buf[0x1f1] = 200, -EINVAL);                     /* setup_sects past EOF */
	MUTATE(put32(e.buf + 0x1f4, 0), -EINVAL);                /* syssize 0 */
	MUTATE(put32(e.buf + 0x1f4, 0x10), -EINVAL);             /* pm part without its entry */
	MUTATE(e.buf[0x201] = 0x10, -ENOEXEC);                   /* header ends before xloadflags */
	MUTATE(e.buf[0x201] = 0x240 - 0x202, -EINVAL);           /* ... before init_size */
	MUTATE(put32(e.buf + 0x24c, 0xffffffff), -EINVAL);       /* payload past the end */
	MUTATE(put32(e.buf + 0x248, 0xfffffff0), -EINVAL);
	MUTATE(e.buf[BZ_SETUP_LEN + BZ_PAYLOAD_OFF + z.len / 2] ^= 0xff, -EINVAL); /* corrupt zstd */
	MUTATE(put32(e.buf + 0x24c, (uint32_t)z.len / 2), -EINVAL); /* truncated payload */
#undef MUTATE

	/* The header's cmdline_size is the limit: 2047 characters. */
	char cmd[2049];
	memset(cmd, 'x', sizeof(cmd) - 1);
	cmd[2048] = 0;
	f->img.cmdline = cmd;
	f->img.kernel = good.buf;
	f->img.kernel_len = good.len;
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), -ENAMETOOLONG);
	cmd[2047] = 0;
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	assert_string_equal((const char *)gpa(f, X86_CMDLINE), cmd);

	/* initrd_addr_max is honoured when the kernel cannot take more. */
	f->img.cmdline = "";
	put32(good.buf + 0x22c, 48 * MiB - 1);
	uint8_t *initrd = make_initrd(f, 5 * MiB);
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	const struct x86_boot_params *bp = boot_params(f);
	expect_initrd(f, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size, 48 * MiB, K_TEXT, K_DATA + 0x6000);
	/* ... and ignored when it can be loaded anywhere. */
	put16(good.buf + 0x236, X86_XLF_KERNEL_64 | X86_XLF_CAN_BE_LOADED_ABOVE_4G);
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), 0);
	expect_initrd(f, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size, RAM_SIZE, K_TEXT, K_DATA + 0x6000);
	/* Too big below the limit. */
	put16(good.buf + 0x236, X86_XLF_KERNEL_64);
	put32(good.buf + 0x22c, 4 * MiB);
	assert_int_equal(x86_load_kernel(&f->mem, &f->img, &f->out), -E2BIG);
	free(initrd);
	free(good.buf);
	free(z.buf);
	free(elf.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_elf_linux64, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_builds_e820_when_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_pvh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_pvh_section_note, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf_bad_notes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initrd_placement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bzimage_extracts_vmlinux, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bzimage_raw_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bzimage_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
