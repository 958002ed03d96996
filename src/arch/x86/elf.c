/* ELF64 vmlinux loading, and the Xen PVH entry note that selects the
 * 32-bit PVH boot. The whole image is validated before one byte is
 * written to the guest. */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "layout.h"
#include "loader.h"
#include "util.h"

int x86_elf_probe(const uint8_t *buf, size_t len)
{
	return len >= SELFMAG && memcmp(buf, ELFMAG, SELFMAG) == 0;
}

/* [off, off + size) lies within a file of len bytes. */
static int in_file(uint64_t off, uint64_t size, size_t len)
{
	return off <= len && size <= len - off;
}

/* Looks through one note area for Xen's PHYS32_ENTRY: 1 found, 0 not
 * there, -EINVAL malformed. */
static int elf_find_pvh(const uint8_t *notes, uint64_t size, uint64_t align, uint32_t *entry)
{
	/* 8-byte aligned notes exist in ELF64 files (.note.gnu.property). */
	uint64_t a = align == 8 ? 8 : 4;
	uint64_t off = 0;
	while (size - off >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		memcpy(&nh, notes + off, sizeof(nh));
		off += sizeof(nh);
		uint64_t name_sz = ALIGN_UP((uint64_t)nh.n_namesz, a);
		uint64_t desc_sz = ALIGN_UP((uint64_t)nh.n_descsz, a);
		if (name_sz > size - off)
			return -EINVAL;
		const uint8_t *name = notes + off;
		off += name_sz;
		if (nh.n_descsz > size - off)
			return -EINVAL;
		const uint8_t *desc = notes + off;
		off += MIN(desc_sz, size - off);

		if (nh.n_type != X86_XEN_ELFNOTE_PHYS32_ENTRY || nh.n_namesz != 4 || memcmp(name, "Xen", 4) != 0)
			continue;
		/* Linux emits it with _ASM_PTR: 8 bytes on x86-64. */
		uint64_t v;
		if (nh.n_descsz == 4) {
			uint32_t v32;
			memcpy(&v32, desc, 4);
			v = v32;
		} else if (nh.n_descsz == 8) {
			memcpy(&v, desc, 8);
		} else {
			return -EINVAL;
		}
		if (v > UINT32_MAX)
			return -EINVAL;
		*entry = (uint32_t)v;
		return 1;
	}
	return 0;
}

/* Program header i, copied out: e_phoff need not be aligned. The table
 * was bounds-checked by the caller. */
static Elf64_Phdr elf_phdr(const uint8_t *buf, const Elf64_Ehdr *eh, int i)
{
	Elf64_Phdr p;
	memcpy(&p, buf + eh->e_phoff + (uint64_t)i * sizeof(p), sizeof(p));
	return p;
}

static int elf_scan_notes(const uint8_t *buf, size_t len, const Elf64_Ehdr *eh, uint32_t *entry)
{
	for (int i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr p = elf_phdr(buf, eh, i);
		if (p.p_type != PT_NOTE)
			continue;
		if (!in_file(p.p_offset, p.p_filesz, len))
			return -EINVAL;
		int r = elf_find_pvh(buf + p.p_offset, p.p_filesz, p.p_align, entry);
		if (r)
			return r;
	}

	/* Some linkers put the note only in a section. The section table is
	 * not needed for loading, so a bad one is ignored rather than fatal. */
	if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr) ||
	    !in_file(eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr), len))
		return 0;
	for (int i = 0; i < eh->e_shnum; i++) {
		Elf64_Shdr sh;
		memcpy(&sh, buf + eh->e_shoff + (uint64_t)i * sizeof(sh), sizeof(sh));
		if (sh.sh_type != SHT_NOTE || !in_file(sh.sh_offset, sh.sh_size, len))
			continue;
		int r = elf_find_pvh(buf + sh.sh_offset, sh.sh_size, sh.sh_addralign, entry);
		if (r)
			return r;
	}
	return 0;
}

int x86_elf_load(const struct guest_memory *mem, const uint8_t *buf, size_t len, struct x86_elf_image *out)
{
	Elf64_Ehdr eh;
	if (!x86_elf_probe(buf, len) || len < sizeof(eh))
		return -ENOEXEC;
	memcpy(&eh, buf, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64 || eh.e_type != ET_EXEC)
		return -ENOEXEC;
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum == PN_XNUM ||
	    !in_file(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), len))
		return -EINVAL;

	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph = elf_phdr(buf, &eh, i), *p = &ph;
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		if (p->p_filesz > p->p_memsz || !in_file(p->p_offset, p->p_filesz, len) ||
		    p->p_paddr > UINT64_MAX - p->p_memsz)
			return -EINVAL;
		/* Below 1 MiB live the boot structures the loader writes. */
		if (p->p_paddr < X86_HIGH_MEMORY)
			return -EINVAL;
		if (!guest_ptr(mem, p->p_paddr, p->p_memsz))
			return -E2BIG;
		lo = MIN(lo, p->p_paddr);
		hi = MAX(hi, p->p_paddr + p->p_memsz);
	}
	if (lo >= hi)
		return -EINVAL; /* nothing to load */

	memset(out, 0, sizeof(*out));
	int r = elf_scan_notes(buf, len, &eh, &out->pvh_entry);
	if (r < 0)
		return r;
	out->has_pvh = r;
	out->entry = eh.e_entry;
	out->lo = lo;
	out->hi = hi;
	/* Entry points must be in what we load (a bzImage's vmlinux is entered
	 * at e_entry even when it has a PVH note). */
	if (out->entry < lo || out->entry >= hi ||
	    (out->has_pvh && (out->pvh_entry < lo || out->pvh_entry >= hi)))
		return -EINVAL;

	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph = elf_phdr(buf, &eh, i), *p = &ph;
		if (p->p_type != PT_LOAD || p->p_memsz == 0)
			continue;
		uint8_t *dst = guest_ptr(mem, p->p_paddr, p->p_memsz);
		memcpy(dst, buf + p->p_offset, p->p_filesz);
		memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz);
	}
	return 0;
}
