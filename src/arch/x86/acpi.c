/* ACPI tables for an x86 guest.
 *
 * Everything is laid out in a host scratch image of the table area and then
 * copied into guest RAM in one write, so a guest too small for the area gets
 * -EFAULT and never a half-built set of tables.  Tables are byte arrays
 * filled with explicit little-endian stores (never host structs), so the
 * layout is the spec's and does not depend on the compiler.
 *
 * Layout, from X86_ACPI_TABLES (0xE0000, where a legacy RSDP scan looks):
 *   RSDP (36, 16-aligned)  FACS (64, 64-aligned)  XSDT  RSDT  FADT  MADT  MCFG  DSDT
 */
#include "acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"
#include "util.h"

#define ACPI_OEM_ID        "KVMLTE"
#define ACPI_OEM_TABLE_ID  "KVMLITE "
#define ACPI_CREATOR_ID    "KVML"
#define ACPI_HDR_LEN       36

#define RSDP_LEN           36
#define FACS_LEN           64
#define FADT_LEN           276      /* revision 6 */
#define FADT_REVISION      6
#define FADT_MINOR         3        /* ACPI 6.3 */
#define MADT_REVISION      5        /* ACPI 6.3 */
#define MCFG_REVISION      1
#define MCFG_LEN           (ACPI_HDR_LEN + 8 + 16)   /* one allocation: bus 0 */
#define DSDT_REVISION      2        /* 64-bit AML integers */

/* Generic Address Structure address spaces and access sizes */
#define GAS_SYSTEM_IO      1
#define GAS_ACCESS_BYTE    1
#define GAS_ACCESS_WORD    2

/* FADT flags */
#define FADT_F_WBINVD         (1u << 0)
#define FADT_F_PROC_C1        (1u << 2)
#define FADT_F_PWR_BUTTON     (1u << 4)   /* 1: no fixed-feature power button */
#define FADT_F_SLP_BUTTON     (1u << 5)   /* 1: no fixed-feature sleep button */
#define FADT_F_FIX_RTC        (1u << 6)   /* 1: no RTC wake status in PM1 */
#define FADT_F_RESET_REG_SUP  (1u << 10)

/* FADT IAPC_BOOT_ARCH */
#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)
#define BOOT_ARCH_CMOS_RTC_NOT_PRESENT (1u << 5)

/* MADT */
#define MADT_PCAT_COMPAT      1u
#define MADT_LAPIC            0
#define MADT_IOAPIC           1
#define MADT_INT_OVERRIDE     2
#define MADT_LAPIC_NMI        4
#define MADT_LAPIC_ENABLED    1u
#define MPS_ACTIVE_HIGH       0x1
#define MPS_LEVEL             (0x3 << 2)

/* KVM's in-kernel IOAPIC resets its ID register to 0 (and keeps only 4 bits
 * of it), so the MADT says 0 too: what the OS reads back then agrees.  IOAPIC
 * and local APIC IDs are separate name spaces on xAPIC systems, which is why
 * QEMU uses 0 as well; 64-bit Linux only wants IOAPIC IDs unique among
 * IOAPICs. */
#define IOAPIC_ID             0

#define RESET_VALUE           0x06

/* PCI: one root bridge, bus 0. _PRT covers slots 1..31 (slot 0 is the host
 * bridge) and pins INTA..INTD, swizzled over GSIs 16..23 exactly as
 * arch_pci_intx_gsi() does for INTA. */
#define PCI_PRT_FIRST_SLOT    1
#define PCI_PRT_SLOTS         31
#define PCI_PRT_PINS          4
#define PCI_IO_WINDOW_END     0xFFFF

/* Scratch image of [X86_ACPI_TABLES, + X86_ACPI_TABLES_MAX); offsets in it
 * are offsets from X86_ACPI_TABLES. */
struct acpi_image {
	uint8_t *buf;
	size_t len;
	size_t cap;
	bool overflow;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void put_gas(uint8_t *p, uint8_t space, uint8_t bit_width, uint8_t access, uint64_t addr)
{
	p[0] = space;
	p[1] = bit_width;
	p[2] = 0;               /* bit offset */
	p[3] = access;
	put64(p + 4, addr);
}

static uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)-sum;
}

/* Reserves size zeroed bytes at the next multiple of align; returns the
 * host pointer, or NULL (and marks the image) when the area is full. */
static uint8_t *acpi_alloc(struct acpi_image *img, size_t size, size_t align)
{
	size_t off = ALIGN_UP(img->len, align);
	if (img->overflow || off > img->cap || size > img->cap - off) {
		img->overflow = true;
		return NULL;
	}
	img->len = off + size;
	return img->buf + off;
}

static uint64_t acpi_gpa(const struct acpi_image *img, const uint8_t *p)
{
	return X86_ACPI_TABLES + (uint64_t)(p - img->buf);
}

/* Standard header; length and checksum are filled by acpi_finish(). */
static void acpi_header(uint8_t *t, const char *sig, uint8_t revision)
{
	memcpy(t, sig, 4);
	t[8] = revision;
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put32(t + 24, 1);                  /* OEM revision */
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put32(t + 32, 1);                  /* creator revision */
}

static void acpi_finish(uint8_t *t, uint32_t len)
{
	put32(t + 4, len);
	t[9] = 0;
	t[9] = acpi_checksum(t, len);
}

/* ---- AML emitter (just the subset the DSDT needs) ---- */

struct aml {
	uint8_t *p;
	size_t len;
	size_t cap;
	bool overflow;
};

#define AML_ZERO        0x00
#define AML_ONE         0x01
#define AML_NAME        0x08
#define AML_BYTE        0x0A
#define AML_WORD        0x0B
#define AML_DWORD       0x0C
#define AML_STRING      0x0D
#define AML_QWORD       0x0E
#define AML_SCOPE       0x10
#define AML_BUFFER      0x11
#define AML_PACKAGE     0x12
#define AML_DUAL_NAME   0x2E
#define AML_MULTI_NAME  0x2F
#define AML_EXT         0x5B
#define AML_EXT_DEVICE  0x82
#define AML_ROOT        0x5C     /* '\' */
#define AML_ONES        0xFF
#define AML_PKGLEN_MAX  4

static void aml_bytes(struct aml *a, const void *src, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memcpy(a->p + a->len, src, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

/* One NameSeg: up to 4 characters, padded with '_' as ASL does. */
static void aml_nameseg(struct aml *a, const char *seg, size_t n)
{
	char s[4] = { '_', '_', '_', '_' };
	memcpy(s, seg, MIN(n, sizeof(s)));
	aml_bytes(a, s, sizeof(s));
}

/* NameString from ASL spelling: "\_SB", "PEVT", "\_SB.PCI0". */
static void aml_namestring(struct aml *a, const char *path)
{
	int nsegs = 1;
	if (*path == '\\') {
		aml_byte(a, AML_ROOT);
		path++;
	}
	for (const char *c = path; *c; c++)
		nsegs += *c == '.';
	if (nsegs == 2)
		aml_byte(a, AML_DUAL_NAME);
	else if (nsegs > 2) {
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, (uint8_t)nsegs);
	}
	while (nsegs--) {
		size_t n = strcspn(path, ".");
		aml_nameseg(a, path, n);
		path += n + (path[n] == '.');
	}
}

/* PkgLength is written after its body is known: reserve the longest form,
 * then slide the body back over the bytes the real encoding doesn't use. */
static size_t aml_pkg_begin(struct aml *a)
{
	static const uint8_t zero[AML_PKGLEN_MAX];
	size_t start = a->len;
	aml_bytes(a, zero, sizeof(zero));
	return start;
}

static void aml_pkg_end(struct aml *a, size_t start)
{
	if (a->overflow)
		return;
	size_t body = a->len - start - AML_PKGLEN_MAX;
	size_t n = body + 1 <= 0x3F ? 1 : body + 2 < (1u << 12) ? 2 : body + 3 < (1u << 20) ? 3 : 4;
	size_t total = body + n;       /* PkgLength counts its own bytes */
	if (total >= (1u << 28)) {
		a->overflow = true;
		return;
	}
	uint8_t *p = a->p + start;
	memmove(p + n, p + AML_PKGLEN_MAX, body);
	if (n == 1) {
		p[0] = (uint8_t)total;
	} else {
		p[0] = (uint8_t)(((n - 1) << 6) | (total & 0xF));
		for (size_t i = 1; i < n; i++)
			p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	a->len -= AML_PKGLEN_MAX - n;
}

static void aml_integer(struct aml *a, uint64_t v)
{
	uint8_t b[8];
	if (v == 0) {
		aml_byte(a, AML_ZERO);
	} else if (v == 1) {
		aml_byte(a, AML_ONE);
	} else if (v <= 0xFF) {
		aml_byte(a, AML_BYTE);
		aml_byte(a, (uint8_t)v);
	} else if (v <= 0xFFFF) {
		aml_byte(a, AML_WORD);
		put16(b, (uint16_t)v);
		aml_bytes(a, b, 2);
	} else if (v <= 0xFFFFFFFF) {
		aml_byte(a, AML_DWORD);
		put32(b, (uint32_t)v);
		aml_bytes(a, b, 4);
	} else {
		aml_byte(a, AML_QWORD);
		put64(b, v);
		aml_bytes(a, b, 8);
	}
}

static void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING);
	aml_bytes(a, s, strlen(s) + 1);
}

/* EisaId ("PNP0501"): three letters packed 5 bits each, four hex digits,
 * stored as a big-endian DWord. */
static void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = (uint32_t)((id[0] - 0x40) & 0x1F) << 26 |
		     (uint32_t)((id[1] - 0x40) & 0x1F) << 21 |
		     (uint32_t)((id[2] - 0x40) & 0x1F) << 16;
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		uint32_t d = c >= '0' && c <= '9' ? (uint32_t)(c - '0') : (uint32_t)((c | 0x20) - 'a' + 10);
		v |= d << (4 * (6 - i));
	}
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	aml_byte(a, AML_DWORD);
	aml_bytes(a, b, 4);
}

/* Name (name, <data>): the caller emits the data object next. */
static void aml_name(struct aml *a, const char *name)
{
	aml_byte(a, AML_NAME);
	aml_namestring(a, name);
}

static size_t aml_scope_begin(struct aml *a, const char *name)
{
	aml_byte(a, AML_SCOPE);
	size_t start = aml_pkg_begin(a);
	aml_namestring(a, name);
	return start;
}

static size_t aml_device_begin(struct aml *a, const char *name)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_EXT_DEVICE);
	size_t start = aml_pkg_begin(a);
	aml_namestring(a, name);
	return start;
}

static size_t aml_package_begin(struct aml *a, uint8_t nr_elements)
{
	aml_byte(a, AML_PACKAGE);
	size_t start = aml_pkg_begin(a);
	aml_byte(a, nr_elements);
	return start;
}

static void aml_buffer(struct aml *a, const uint8_t *data, size_t len)
{
	aml_byte(a, AML_BUFFER);
	size_t start = aml_pkg_begin(a);
	aml_integer(a, len);
	aml_bytes(a, data, len);
	aml_pkg_end(a, start);
}

/* ---- Resource descriptors for _CRS (ACPI 6.3, 6.4.2) ---- */

struct res_template {
	uint8_t b[128];
	size_t len;
};

/* Address space descriptors: a range the bridge produces (decodes for
 * its children), with fixed bounds and positive decoding. */
#define RES_ADDR_PRODUCER_FIXED 0x0C      /* _MAF | _MIF, producer, positive decode */
#define RES_ADDR_MEMORY         0
#define RES_ADDR_IO             1
#define RES_ADDR_BUS            2
#define RES_IO_ENTIRE_RANGE     0x03
#define RES_MEM_RW_UNCACHED     0x01

static void res_word_addr(struct res_template *r, uint8_t type, uint8_t type_flags, uint16_t min, uint16_t max)
{
	uint8_t *p = r->b + r->len;
	p[0] = 0x88;                   /* large item: Word Address Space */
	put16(p + 1, 13);
	p[3] = type;
	p[4] = RES_ADDR_PRODUCER_FIXED;
	p[5] = type_flags;
	put16(p + 6, 0);               /* granularity */
	put16(p + 8, min);
	put16(p + 10, max);
	put16(p + 12, 0);              /* translation */
	put16(p + 14, (uint16_t)(max - min + 1));
	r->len += 16;
}

static void res_dword_memory(struct res_template *r, uint32_t min, uint32_t len)
{
	uint8_t *p = r->b + r->len;
	p[0] = 0x87;                   /* large item: DWord Address Space */
	put16(p + 1, 23);
	p[3] = RES_ADDR_MEMORY;
	p[4] = RES_ADDR_PRODUCER_FIXED;
	p[5] = RES_MEM_RW_UNCACHED;
	put32(p + 6, 0);               /* granularity */
	put32(p + 10, min);
	put32(p + 14, min + len - 1);
	put32(p + 18, 0);              /* translation */
	put32(p + 22, len);
	r->len += 26;
}

static void res_memory32_fixed(struct res_template *r, uint32_t base, uint32_t len)
{
	uint8_t *p = r->b + r->len;
	p[0] = 0x86;                   /* large item: 32-bit Fixed Memory Range */
	put16(p + 1, 9);
	p[3] = 1;                      /* read-write */
	put32(p + 4, base);
	put32(p + 8, len);
	r->len += 12;
}

static void res_io16(struct res_template *r, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	uint8_t *p = r->b + r->len;
	p[0] = 0x47;                   /* small item: I/O port, 7 bytes */
	p[1] = 0x01;                   /* Decode16 */
	put16(p + 2, min);
	put16(p + 4, max);
	p[6] = align;
	p[7] = len;
	r->len += 8;
}

static void res_irq_noflags(struct res_template *r, unsigned irq)
{
	uint8_t *p = r->b + r->len;
	p[0] = 0x22;                   /* small item: IRQ, 2 bytes (no flags) */
	put16(p + 1, (uint16_t)(1u << irq));
	r->len += 3;
}

static void res_end(struct res_template *r)
{
	r->b[r->len++] = 0x79;         /* End Tag */
	r->b[r->len++] = 0x00;         /* 0: treat the checksum as correct */
}

/* Device (PCI0): the root bridge.
 *   _HID PNP0A08 (PCI Express), _CID PNP0A03 (PCI), _SEG 0, _BBN 0, _UID 0
 *   _CRS: bus 0; the config ports; the I/O window around them (so ISA ports
 *         stay reachable); the 32-bit BAR window
 *   _PRT: Package { Package { slot << 16 | 0xFFFF, pin, 0, GSI } ... },
 *         the source 0 meaning "GSI, not a link device" */
static void dsdt_pci0(struct aml *a)
{
	struct res_template r = { .len = 0 };
	size_t dev = aml_device_begin(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A08");
	aml_name(a, "_CID");
	aml_eisaid(a, "PNP0A03");
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, 0);
	aml_name(a, "_UID");
	aml_integer(a, 0);

	res_word_addr(&r, RES_ADDR_BUS, 0, 0, 0);
	res_io16(&r, X86_PORT_PCI_CONFIG, X86_PORT_PCI_CONFIG, 1, 8);
	res_word_addr(&r, RES_ADDR_IO, RES_IO_ENTIRE_RANGE, 0, X86_PORT_PCI_CONFIG - 1);
	res_word_addr(&r, RES_ADDR_IO, RES_IO_ENTIRE_RANGE, X86_PORT_PCI_CONFIG + 8, PCI_IO_WINDOW_END);
	res_dword_memory(&r, (uint32_t)X86_PCI_MMIO_START, (uint32_t)X86_PCI_MMIO_SIZE);
	res_end(&r);
	aml_name(a, "_CRS");
	aml_buffer(a, r.b, r.len);

	aml_name(a, "_PRT");
	size_t prt = aml_package_begin(a, PCI_PRT_SLOTS * PCI_PRT_PINS);
	for (unsigned slot = PCI_PRT_FIRST_SLOT; slot < PCI_PRT_FIRST_SLOT + PCI_PRT_SLOTS; slot++) {
		for (unsigned pin = 0; pin < PCI_PRT_PINS; pin++) {
			size_t entry = aml_package_begin(a, 4);
			aml_integer(a, (uint64_t)slot << 16 | 0xFFFF);
			aml_integer(a, pin);
			aml_integer(a, 0);
			aml_integer(a, X86_PCI_INTX_GSI_BASE + (slot + pin) % X86_PCI_INTX_NR_GSIS);
			aml_pkg_end(a, entry);
		}
	}
	aml_pkg_end(a, prt);
	aml_pkg_end(a, dev);
}

/* Device (MRES): motherboard resources (PNP0C02) reserving the ECAM, where
 * Linux looks before it trusts the MCFG table's range. */
static void dsdt_motherboard(struct aml *a)
{
	struct res_template r = { .len = 0 };
	size_t dev = aml_device_begin(a, "MRES");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0C02");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	res_memory32_fixed(&r, (uint32_t)X86_PCI_ECAM, (uint32_t)X86_PCI_ECAM_SIZE);
	res_end(&r);
	aml_name(a, "_CRS");
	aml_buffer(a, r.b, r.len);
	aml_pkg_end(a, dev);
}

/* DefinitionBlock body:
 *   Name (_S5, Package (4) { 5, 5, 0, 0 })
 *   Scope (\_SB) {
 *     Device (PEVT) { _HID "QEMU0001", _CRS IO 0x505, _STA 0xF }   (pvpanic)
 *     Device (COM1) { _HID PNP0501, _UID 1, _CRS IO 0x3F8/8 IRQ 4, _STA 0xF }
 *     Device (PCI0) { ... }                                         (dsdt_pci0)
 *     Device (MRES) { _HID PNP0C02, _CRS Memory32Fixed ECAM }
 *   } */
static void dsdt_body(struct aml *a)
{
	struct res_template r;
	size_t pkg, scope, dev;

	aml_name(a, "_S5");    /* at root scope already */
	pkg = aml_package_begin(a, 4);
	aml_integer(a, X86_ACPI_SLP_TYP_S5);   /* PM1a_CNT.SLP_TYP */
	aml_integer(a, X86_ACPI_SLP_TYP_S5);   /* PM1b_CNT.SLP_TYP */
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_pkg_end(a, pkg);

	scope = aml_scope_begin(a, "_SB");     /* = \_SB at root scope */

	dev = aml_device_begin(a, "PEVT");
	aml_name(a, "_HID");
	aml_string(a, "QEMU0001");
	r.len = 0;
	res_io16(&r, X86_PORT_PVPANIC, X86_PORT_PVPANIC, 1, 1);
	res_end(&r);
	aml_name(a, "_CRS");
	aml_buffer(a, r.b, r.len);
	aml_name(a, "_STA");
	aml_integer(a, 0x0F);
	aml_pkg_end(a, dev);

	dev = aml_device_begin(a, "COM1");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 1);
	r.len = 0;
	res_io16(&r, X86_PORT_COM1, X86_PORT_COM1, 1, 8);
	res_irq_noflags(&r, X86_IRQ_COM1);
	res_end(&r);
	aml_name(a, "_CRS");
	aml_buffer(a, r.b, r.len);
	aml_name(a, "_STA");
	aml_integer(a, 0x0F);
	aml_pkg_end(a, dev);

	dsdt_pci0(a);
	dsdt_motherboard(a);

	aml_pkg_end(a, scope);
}

/* ---- Tables: each fills a slot already reserved in the image ---- */

static void fill_facs(uint8_t *t)
{
	/* A non-hardware-reduced OSPM wants one (global lock, waking vector);
	 * it has no checksum and must be 64-byte aligned. */
	memcpy(t, "FACS", 4);
	put32(t + 4, FACS_LEN);
	t[32] = 2;                              /* version */
}

/* The DSDT is the last table, so its AML may use the rest of the area. */
static uint8_t *build_dsdt(struct acpi_image *img)
{
	uint8_t *t = acpi_alloc(img, ACPI_HDR_LEN, 16);
	if (!t)
		return NULL;
	struct aml a = { .p = t + ACPI_HDR_LEN, .cap = img->cap - img->len };
	dsdt_body(&a);
	if (a.overflow) {
		img->overflow = true;
		return NULL;
	}
	img->len += a.len;
	acpi_header(t, "DSDT", DSDT_REVISION);
	acpi_finish(t, (uint32_t)(ACPI_HDR_LEN + a.len));
	return t;
}

static void fill_fadt(uint8_t *t, uint64_t facs, uint64_t dsdt)
{
	acpi_header(t, "FACP", FADT_REVISION);
	put32(t + 36, (uint32_t)facs);          /* FIRMWARE_CTRL (X_ left 0, as QEMU) */
	put32(t + 40, (uint32_t)dsdt);          /* DSDT */
	put16(t + 46, X86_IRQ_ACPI_SCI);        /* SCI_INT */
	put32(t + 48, 0);                       /* SMI_CMD: no SMM, always in ACPI mode */
	put32(t + 56, X86_PORT_ACPI_PM1A_EVT);  /* PM1a_EVT_BLK */
	put32(t + 64, X86_PORT_ACPI_PM1A_CNT);  /* PM1a_CNT_BLK */
	t[88] = 4;                              /* PM1_EVT_LEN: status + enable */
	t[89] = 2;                              /* PM1_CNT_LEN */
	t[91] = 0;                              /* PM_TMR_LEN: no PM timer */
	put16(t + 96, 101);                     /* P_LVL2_LAT > 100: no C2 */
	put16(t + 98, 1001);                    /* P_LVL3_LAT > 1000: no C3 */
	/* 8042 bit clear: Linux then doesn't probe a keyboard controller. */
	put16(t + 109, BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_VGA_NOT_PRESENT |
		       BOOT_ARCH_CMOS_RTC_NOT_PRESENT);
	put32(t + 112, FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_PWR_BUTTON |
		       FADT_F_SLP_BUTTON | FADT_F_FIX_RTC | FADT_F_RESET_REG_SUP);
	put_gas(t + 116, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE, X86_PORT_RESET);
	t[128] = RESET_VALUE;
	t[131] = FADT_MINOR;
	put64(t + 140, dsdt);                   /* X_DSDT */
	put_gas(t + 148, GAS_SYSTEM_IO, 32, GAS_ACCESS_WORD, X86_PORT_ACPI_PM1A_EVT);
	put_gas(t + 172, GAS_SYSTEM_IO, 16, GAS_ACCESS_WORD, X86_PORT_ACPI_PM1A_CNT);
	acpi_finish(t, FADT_LEN);
}

static size_t madt_len(int nr_cpus)
{
	return 44 + 8 * (size_t)nr_cpus + 12 + 10 + 6;
}

static void fill_madt(uint8_t *t, int nr_cpus)
{
	acpi_header(t, "APIC", MADT_REVISION);
	put32(t + 36, (uint32_t)X86_LAPIC_ADDR);
	put32(t + 40, MADT_PCAT_COMPAT);        /* the 8259s exist: KVM irqchip */
	uint8_t *p = t + 44;

	for (int i = 0; i < nr_cpus; i++, p += 8) {
		p[0] = MADT_LAPIC;
		p[1] = 8;
		p[2] = (uint8_t)i;                  /* ACPI processor UID */
		p[3] = (uint8_t)i;                  /* APIC ID */
		put32(p + 4, MADT_LAPIC_ENABLED);
	}

	p[0] = MADT_IOAPIC;
	p[1] = 12;
	p[2] = IOAPIC_ID;
	put32(p + 4, (uint32_t)X86_IOAPIC_ADDR);
	put32(p + 8, 0);                        /* GSI base */
	p += 12;

	/* The SCI is level-triggered while ISA IRQs default to edge.  No
	 * override for IRQ 0: KVM's default routing sends GSI 0 to pin 0. */
	p[0] = MADT_INT_OVERRIDE;
	p[1] = 10;
	p[2] = 0;                               /* bus: ISA */
	p[3] = X86_IRQ_ACPI_SCI;
	put32(p + 4, X86_IRQ_ACPI_SCI);
	put16(p + 8, MPS_ACTIVE_HIGH | MPS_LEVEL);
	p += 10;

	p[0] = MADT_LAPIC_NMI;
	p[1] = 6;
	p[2] = 0xFF;                            /* all processors */
	put16(p + 3, 0);                        /* polarity/trigger: bus default */
	p[5] = 1;                               /* LINT1 */

	acpi_finish(t, (uint32_t)madt_len(nr_cpus));
}

/* MCFG: the ECAM of segment 0, buses 0..0. */
static void fill_mcfg(uint8_t *t)
{
	acpi_header(t, "MCFG", MCFG_REVISION);
	uint8_t *e = t + ACPI_HDR_LEN + 8;      /* 8 reserved bytes */
	put64(e, X86_PCI_ECAM);
	put16(e + 8, 0);                        /* PCI segment group */
	e[10] = 0;                              /* start bus */
	e[11] = 0;                              /* end bus */
	acpi_finish(t, MCFG_LEN);
}

#define SDT_ENTRIES 3   /* FADT, MADT, MCFG */

static void fill_xsdt(uint8_t *t, const uint64_t *tables)
{
	acpi_header(t, "XSDT", 1);
	for (int i = 0; i < SDT_ENTRIES; i++)
		put64(t + ACPI_HDR_LEN + 8 * i, tables[i]);
	acpi_finish(t, ACPI_HDR_LEN + 8 * SDT_ENTRIES);
}

static void fill_rsdt(uint8_t *t, const uint64_t *tables)
{
	acpi_header(t, "RSDT", 1);
	for (int i = 0; i < SDT_ENTRIES; i++)
		put32(t + ACPI_HDR_LEN + 4 * i, (uint32_t)tables[i]);
	acpi_finish(t, ACPI_HDR_LEN + 4 * SDT_ENTRIES);
}

static void fill_rsdp(uint8_t *r, uint64_t rsdt, uint64_t xsdt)
{
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, ACPI_OEM_ID, 6);
	r[15] = 2;                              /* revision: ACPI 2.0+ */
	put32(r + 16, (uint32_t)rsdt);
	put32(r + 20, RSDP_LEN);
	put64(r + 24, xsdt);
	r[8] = acpi_checksum(r, 20);
	r[32] = acpi_checksum(r, RSDP_LEN);
}

int acpi_build(const struct guest_memory *mem, const struct acpi_params *params, uint64_t *rsdp_gpa)
{
	if (!mem || !params || !rsdp_gpa || params->nr_cpus < 1 || params->nr_cpus > 255)
		return -EINVAL;

	struct acpi_image img = { .cap = X86_ACPI_TABLES_MAX };
	img.buf = calloc(1, img.cap);
	if (!img.buf)
		return -ENOMEM;

	/* The RSDP comes first, 16-aligned at the start of the legacy scan
	 * area; the variable-length DSDT comes last. */
	uint8_t *rsdp = acpi_alloc(&img, RSDP_LEN, 16);
	uint8_t *facs = acpi_alloc(&img, FACS_LEN, 64);
	uint8_t *xsdt = acpi_alloc(&img, ACPI_HDR_LEN + 8 * SDT_ENTRIES, 16);
	uint8_t *rsdt = acpi_alloc(&img, ACPI_HDR_LEN + 4 * SDT_ENTRIES, 16);
	uint8_t *fadt = acpi_alloc(&img, FADT_LEN, 16);
	uint8_t *madt = acpi_alloc(&img, madt_len(params->nr_cpus), 16);
	uint8_t *mcfg = acpi_alloc(&img, MCFG_LEN, 16);
	uint8_t *dsdt = build_dsdt(&img);
	if (img.overflow) {
		free(img.buf);
		return -E2BIG;
	}

	uint64_t tables[SDT_ENTRIES] = { acpi_gpa(&img, fadt), acpi_gpa(&img, madt), acpi_gpa(&img, mcfg) };
	fill_facs(facs);
	fill_fadt(fadt, acpi_gpa(&img, facs), acpi_gpa(&img, dsdt));
	fill_madt(madt, params->nr_cpus);
	fill_mcfg(mcfg);
	fill_xsdt(xsdt, tables);
	fill_rsdt(rsdt, tables);
	fill_rsdp(rsdp, acpi_gpa(&img, rsdt), acpi_gpa(&img, xsdt));

	int ret = guest_write(mem, X86_ACPI_TABLES, img.buf, img.len);
	free(img.buf);
	if (ret)
		return ret;
	*rsdp_gpa = X86_ACPI_TABLES;
	return 0;
}
