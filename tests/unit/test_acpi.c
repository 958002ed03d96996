/* ACPI tables: built into a 1 MiB guest, then read back the way an OS does,
 * with a parser written from the spec, not from acpi.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "acpi.h"
#include "arch.h"
#include "layout.h"
#include "memory.h"

#define GUEST_SIZE 0x100000

struct guest {
	struct guest_memory mem;
	uint8_t *ram;
};

static void guest_init(struct guest *g, uint64_t size)
{
	g->ram = malloc(size);
	assert_non_null(g->ram);
	/* Junk, so a field the builder forgot to set shows up. */
	memset(g->ram, 0xA5, size);
	g->mem.nr_regions = 1;
	g->mem.regions[0] = (struct guest_region){ .gpa = 0, .size = size, .hva = g->ram };
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s;
}

/* A table at gpa, checked like an OS checks it: inside RAM, sane length,
 * bytes summing to zero. */
static const uint8_t *table_at(const struct guest *g, uint64_t gpa)
{
	assert_true(gpa + 36 <= GUEST_SIZE);
	const uint8_t *t = g->ram + gpa;
	uint32_t len = rd32(t + 4);
	assert_true(len >= 36);
	assert_true(gpa + len <= GUEST_SIZE);
	assert_int_equal(sum8(t, len), 0);
	assert_memory_equal(t + 10, "KVMLTE", 6);
	assert_memory_equal(t + 16, "KVMLITE ", 8);
	assert_memory_equal(t + 28, "KVML", 4);
	return t;
}

struct parsed {
	const uint8_t *rsdp, *xsdt, *rsdt, *fadt, *madt, *mcfg, *dsdt, *facs;
};

/* RSDP by the legacy scan of 0xE0000-0xFFFFF, then XSDT, then each table
 * it lists, found by signature. */
static void parse(const struct guest *g, uint64_t rsdp_gpa, struct parsed *out)
{
	memset(out, 0, sizeof(*out));
	for (uint64_t a = 0xE0000; a < 0x100000; a += 16) {
		if (!memcmp(g->ram + a, "RSD PTR ", 8)) {
			out->rsdp = g->ram + a;
			break;
		}
	}
	assert_non_null(out->rsdp);
	assert_ptr_equal(out->rsdp, g->ram + rsdp_gpa);
	const uint8_t *r = out->rsdp;
	assert_int_equal(sum8(r, 20), 0);
	assert_int_equal(r[15], 2);
	assert_int_equal(rd32(r + 20), 36);
	assert_int_equal(sum8(r, 36), 0);
	assert_memory_equal(r + 9, "KVMLTE", 6);

	out->xsdt = table_at(g, rd64(r + 24));
	assert_memory_equal(out->xsdt, "XSDT", 4);
	uint32_t xlen = rd32(out->xsdt + 4);
	assert_int_equal((xlen - 36) % 8, 0);
	int n = (int)(xlen - 36) / 8;

	if (rd32(r + 16)) {
		out->rsdt = table_at(g, rd32(r + 16));
		assert_memory_equal(out->rsdt, "RSDT", 4);
		assert_int_equal((rd32(out->rsdt + 4) - 36) / 4, n);
	}
	for (int i = 0; i < n; i++) {
		uint64_t gpa = rd64(out->xsdt + 36 + 8 * i);
		if (out->rsdt)
			assert_int_equal(rd32(out->rsdt + 36 + 4 * i), gpa);
		const uint8_t *t = table_at(g, gpa);
		if (!memcmp(t, "FACP", 4))
			out->fadt = t;
		else if (!memcmp(t, "APIC", 4))
			out->madt = t;
		else if (!memcmp(t, "MCFG", 4))
			out->mcfg = t;
	}
	assert_non_null(out->fadt);
	assert_non_null(out->madt);
	assert_non_null(out->mcfg);

	uint64_t x_dsdt = rd64(out->fadt + 140);
	assert_int_equal(rd32(out->fadt + 40), x_dsdt);
	out->dsdt = table_at(g, x_dsdt);
	assert_memory_equal(out->dsdt, "DSDT", 4);

	uint64_t facs = rd32(out->fadt + 36);
	if (!facs)
		facs = rd64(out->fadt + 132);
	if (facs) {
		assert_int_equal(facs % 64, 0);
		out->facs = g->ram + facs;
		assert_memory_equal(out->facs, "FACS", 4);
		assert_true(rd32(out->facs + 4) >= 64);
	}
}

/* ---- MADT ---- */

static void check_madt(int nr_cpus)
{
	struct guest g;
	struct parsed p;
	uint64_t rsdp = 0;
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = nr_cpus }, &rsdp), 0);
	assert_true(rsdp >= X86_ACPI_TABLES && rsdp < X86_ACPI_TABLES + X86_ACPI_TABLES_MAX);
	assert_int_equal(rsdp % 16, 0);
	parse(&g, rsdp, &p);

	const uint8_t *m = p.madt;
	uint32_t len = rd32(m + 4);
	assert_int_equal(rd32(m + 36), X86_LAPIC_ADDR);
	assert_int_equal(rd32(m + 40) & 1, 1);          /* PCAT_COMPAT */

	int nr_lapic = 0, nr_ioapic = 0, nr_nmi = 0, irq9 = 0;
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = m + off;
		assert_true(off + 2 <= len);
		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[3], nr_lapic);       /* APIC IDs 0..n-1 */
			assert_int_equal(e[2], e[3]);           /* UID == APIC ID */
			assert_int_equal(rd32(e + 4) & 1, 1);   /* enabled */
			nr_lapic++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(rd32(e + 4), X86_IOAPIC_ADDR);
			assert_int_equal(rd32(e + 8), 0);
			nr_ioapic++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);
			assert_int_not_equal(e[3], 0);          /* no IRQ0 override */
			if (e[3] == X86_IRQ_ACPI_SCI) {
				assert_int_equal(rd32(e + 4), X86_IRQ_ACPI_SCI);
				assert_int_equal(rd16(e + 8) & 3, 1);        /* active high */
				assert_int_equal((rd16(e + 8) >> 2) & 3, 3); /* level */
				irq9++;
			}
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xFF);
			assert_int_equal(e[5], 1);
			nr_nmi++;
			break;
		}
		off += e[1];
	}
	assert_int_equal(nr_lapic, nr_cpus);
	assert_int_equal(nr_ioapic, 1);
	assert_int_equal(irq9, 1);
	assert_int_equal(nr_nmi, 1);
	free(g.ram);
}

static void test_madt_1(void **state) { check_madt(1); }
static void test_madt_2(void **state) { check_madt(2); }
static void test_madt_4(void **state) { check_madt(4); }
static void test_madt_8(void **state) { check_madt(8); }
static void test_madt_255(void **state) { check_madt(255); }

/* ---- FADT ---- */

static void check_gas(const uint8_t *gas, int space, int bit_width, uint64_t addr)
{
	assert_int_equal(gas[0], space);
	assert_int_equal(gas[1], bit_width);
	assert_int_equal(gas[2], 0);
	assert_int_equal(rd64(gas + 4), addr);
}

static void test_fadt(void **state)
{
	struct guest g;
	struct parsed p;
	uint64_t rsdp;
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = 2 }, &rsdp), 0);
	parse(&g, rsdp, &p);

	const uint8_t *f = p.fadt;
	assert_int_equal(rd32(f + 4), 276);
	assert_int_equal(f[8], 6);
	assert_int_equal(rd16(f + 46), X86_IRQ_ACPI_SCI);
	assert_int_equal(rd32(f + 48), 0);                       /* SMI_CMD */
	assert_int_equal(rd32(f + 56), X86_PORT_ACPI_PM1A_EVT);
	assert_int_equal(rd32(f + 64), X86_PORT_ACPI_PM1A_CNT);
	assert_int_equal(rd32(f + 76), 0);                       /* no PM timer */
	assert_int_equal(f[88], 4);
	assert_int_equal(f[89], 2);
	assert_int_equal(f[91], 0);

	uint16_t boot = rd16(f + 109);
	assert_int_equal(boot & (1 << 1), 0);                    /* no 8042 */
	assert_int_not_equal(boot & (1 << 2), 0);                /* no VGA */
	assert_int_equal(boot & (1 << 3), 0);                    /* MSI allowed */
	assert_int_not_equal(boot & (1 << 5), 0);                /* no CMOS RTC */

	uint32_t flags = rd32(f + 112);
	assert_int_not_equal(flags & (1u << 0), 0);              /* WBINVD */
	assert_int_not_equal(flags & (1u << 2), 0);              /* PROC_C1 */
	assert_int_not_equal(flags & (1u << 4), 0);              /* no fixed power button */
	assert_int_not_equal(flags & (1u << 5), 0);              /* no fixed sleep button */
	assert_int_not_equal(flags & (1u << 10), 0);             /* RESET_REG_SUP */
	assert_int_equal(flags & (1u << 20), 0);                 /* not HW_REDUCED */

	check_gas(f + 116, 1, 8, X86_PORT_RESET);
	assert_int_equal(f[128], 0x06);
	assert_int_equal(f[131] & 0xF, 3);                       /* minor version */
	check_gas(f + 148, 1, 32, X86_PORT_ACPI_PM1A_EVT);
	check_gas(f + 172, 1, 16, X86_PORT_ACPI_PM1A_CNT);
	check_gas(f + 208, 0, 0, 0);                             /* X_PM_TMR_BLK */

	assert_non_null(p.facs);
	free(g.ram);
}

/* ---- DSDT: a small AML walker for the opcodes a DSDT like ours uses ---- */

struct aml_obj {
	char path[64];
	const uint8_t *data;     /* the DataRefObject after the NameString */
	const uint8_t *end;
};

struct aml_walk {
	struct aml_obj objs[64];
	int n;
};

static const uint8_t *pkglen(const uint8_t *p, const uint8_t *end, const uint8_t **pkg_end)
{
	assert_true(p < end);
	int extra = p[0] >> 6;
	uint32_t len = extra ? p[0] & 0xF : p[0] & 0x3F;
	assert_true(p + 1 + extra <= end);
	for (int i = 0; i < extra; i++)
		len |= (uint32_t)p[1 + i] << (4 + 8 * i);
	*pkg_end = p + len;
	assert_true(*pkg_end <= end);
	return p + 1 + extra;
}

static const uint8_t *namestring(const uint8_t *p, const uint8_t *end, const char *scope,
				 char *out, size_t outlen)
{
	char buf[64] = "";
	int segs = 1;
	bool root = false;
	if (p < end && *p == '\\') {
		root = true;
		p++;
	}
	assert_true(p < end);
	if (*p == 0x2E) {
		segs = 2;
		p++;
	} else if (*p == 0x2F) {
		segs = p[1];
		p += 2;
	} else if (*p == 0x00) {
		segs = 0;
		p++;
	}
	assert_true(p + 4 * segs <= end);
	for (int i = 0; i < segs; i++, p += 4) {
		for (int j = 0; j < 4; j++)
			assert_true((p[j] >= 'A' && p[j] <= 'Z') || (p[j] >= '0' && p[j] <= '9') || p[j] == '_');
		if (i)
			strcat(buf, ".");
		strncat(buf, (const char *)p, 4);
	}
	if (root)
		snprintf(out, outlen, "\\%s", buf);
	else if (!strcmp(scope, "\\"))
		snprintf(out, outlen, "\\%s", buf);
	else
		snprintf(out, outlen, "%s.%s", scope, buf);
	return p;
}

/* Length of the data object at p: integer, string, buffer or package. */
static const uint8_t *data_object(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *e;
	assert_true(p < end);
	switch (*p) {
	case 0x00: case 0x01: case 0xFF: return p + 1;
	case 0x0A: return p + 2;
	case 0x0B: return p + 3;
	case 0x0C: return p + 5;
	case 0x0E: return p + 9;
	case 0x0D:
		e = memchr(p, 0, (size_t)(end - p));
		assert_non_null(e);
		return e + 1;
	case 0x11: case 0x12:
		pkglen(p + 1, end, &e);
		return e;
	}
	fail_msg("unexpected AML data opcode 0x%02x", *p);
	return end;
}

static void term_list(struct aml_walk *w, const uint8_t *p, const uint8_t *end, const char *scope)
{
	char path[64];
	const uint8_t *body, *pend;
	while (p < end) {
		switch (*p) {
		case 0x08:   /* NameOp */
			p = namestring(p + 1, end, scope, path, sizeof(path));
			assert_true(w->n < (int)(sizeof(w->objs) / sizeof(w->objs[0])));
			snprintf(w->objs[w->n].path, sizeof(w->objs[w->n].path), "%s", path);
			w->objs[w->n].data = p;
			p = data_object(p, end);
			w->objs[w->n++].end = p;
			break;
		case 0x10:   /* ScopeOp */
			body = pkglen(p + 1, end, &pend);
			body = namestring(body, pend, scope, path, sizeof(path));
			term_list(w, body, pend, path);
			p = pend;
			break;
		case 0x5B:   /* ExtOpPrefix: only DeviceOp expected */
			assert_true(p + 1 < end);
			assert_int_equal(p[1], 0x82);
			body = pkglen(p + 2, end, &pend);
			body = namestring(body, pend, scope, path, sizeof(path));
			term_list(w, body, pend, path);
			p = pend;
			break;
		default:
			fail_msg("unexpected AML opcode 0x%02x", *p);
		}
	}
	assert_ptr_equal(p, end);
}

static const struct aml_obj *find_obj(const struct aml_walk *w, const char *path)
{
	for (int i = 0; i < w->n; i++)
		if (!strcmp(w->objs[i].path, path))
			return &w->objs[i];
	fail_msg("no AML object %s", path);
	return NULL;
}

static uint64_t int_value(const uint8_t *p, const uint8_t **next)
{
	uint64_t v;
	switch (*p) {
	case 0x00: v = 0; *next = p + 1; break;
	case 0x01: v = 1; *next = p + 1; break;
	case 0x0A: v = p[1]; *next = p + 2; break;
	case 0x0B: v = rd16(p + 1); *next = p + 3; break;
	case 0x0C: v = rd32(p + 1); *next = p + 5; break;
	default: fail_msg("not an integer: 0x%02x", *p); return 0;
	}
	return v;
}

/* Buffer contents of a Name(x, Buffer/ResourceTemplate). */
static const uint8_t *buffer_value(const struct aml_obj *o, size_t *len)
{
	const uint8_t *pend, *p;
	assert_int_equal(o->data[0], 0x11);
	p = pkglen(o->data + 1, o->end, &pend);
	const uint8_t *bytes;
	*len = int_value(p, &bytes);
	assert_ptr_equal(bytes + *len, pend);
	return bytes;
}

static void walk_dsdt(const struct parsed *p, struct aml_walk *w)
{
	memset(w, 0, sizeof(*w));
	term_list(w, p->dsdt + 36, p->dsdt + rd32(p->dsdt + 4), "\\");
}

static void test_dsdt(void **state)
{
	struct guest g;
	struct parsed p;
	struct aml_walk w;
	uint64_t rsdp;
	const uint8_t *q, *pend;
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = 4 }, &rsdp), 0);
	parse(&g, rsdp, &p);
	walk_dsdt(&p, &w);

	/* \_S5 = Package (4) { 5, 5, 0, 0 } */
	const struct aml_obj *s5 = find_obj(&w, "\\_S5_");
	assert_int_equal(s5->data[0], 0x12);
	q = pkglen(s5->data + 1, s5->end, &pend);
	assert_int_equal(*q++, 4);
	assert_int_equal(int_value(q, &q), X86_ACPI_SLP_TYP_S5);
	assert_int_equal(int_value(q, &q), X86_ACPI_SLP_TYP_S5);
	assert_int_equal(int_value(q, &q), 0);
	assert_int_equal(int_value(q, &q), 0);
	assert_ptr_equal(q, pend);
	/* and the raw bytes an OS-less grep would look for */
	static const uint8_t s5_bytes[] = { 0x08, '_', 'S', '5', '_', 0x12 };
	assert_non_null(memmem(p.dsdt, rd32(p.dsdt + 4), s5_bytes, sizeof(s5_bytes)));

	/* pvpanic */
	const struct aml_obj *o = find_obj(&w, "\\_SB_.PEVT._HID");
	assert_int_equal(o->data[0], 0x0D);
	assert_string_equal((const char *)o->data + 1, "QEMU0001");
	o = find_obj(&w, "\\_SB_.PEVT._STA");
	assert_int_equal(int_value(o->data, &q), 0xF);
	size_t len;
	const uint8_t *res = buffer_value(find_obj(&w, "\\_SB_.PEVT._CRS"), &len);
	assert_int_equal(len, 8 + 2);
	assert_int_equal(res[0], 0x47);
	assert_int_equal(res[1] & 1, 1);
	assert_int_equal(rd16(res + 2), X86_PORT_PVPANIC);
	assert_int_equal(rd16(res + 4), X86_PORT_PVPANIC);
	assert_int_equal(res[7], 1);
	assert_int_equal(res[8], 0x79);

	/* COM1: EisaId("PNP0501") computed here from the spec's packing */
	o = find_obj(&w, "\\_SB_.COM1._HID");
	uint32_t eisa = (uint32_t)('P' - 0x40) << 10 | (uint32_t)('N' - 0x40) << 5 | ('P' - 0x40);
	uint8_t want[4] = { (uint8_t)(eisa >> 8), (uint8_t)eisa, 0x05, 0x01 };
	assert_int_equal(o->data[0], 0x0C);
	assert_memory_equal(o->data + 1, want, 4);
	res = buffer_value(find_obj(&w, "\\_SB_.COM1._CRS"), &len);
	assert_int_equal(len, 8 + 3 + 2);
	assert_int_equal(res[0], 0x47);
	assert_int_equal(rd16(res + 2), X86_PORT_COM1);
	assert_int_equal(rd16(res + 4), X86_PORT_COM1);
	assert_int_equal(res[7], 8);
	assert_int_equal(res[8], 0x22);
	assert_int_equal(rd16(res + 9), 1u << X86_IRQ_COM1);
	assert_int_equal(res[11], 0x79);
	o = find_obj(&w, "\\_SB_.COM1._STA");
	assert_int_equal(int_value(o->data, &q), 0xF);
	free(g.ram);
}

/* ---- MCFG ---- */

static void test_mcfg(void **state)
{
	struct guest g;
	struct parsed p;
	uint64_t rsdp;
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = 1 }, &rsdp), 0);
	parse(&g, rsdp, &p);
	const uint8_t *m = p.mcfg;
	assert_int_equal(rd32(m + 4), 36 + 8 + 16);    /* one allocation */
	assert_int_equal(m[8], 1);
	assert_int_equal(rd64(m + 36), 0);              /* reserved */
	assert_int_equal(rd64(m + 44), X86_PCI_ECAM);
	assert_int_equal(rd16(m + 52), 0);              /* segment */
	assert_int_equal(m[54], 0);                     /* buses 0..0 */
	assert_int_equal(m[55], 0);
	assert_int_equal(rd32(m + 56), 0);
	/* 1 MiB per bus: the layout's ECAM size is exactly bus 0. */
	assert_int_equal(X86_PCI_ECAM_SIZE, (uint64_t)(m[55] - m[54] + 1) << 20);
	free(g.ram);
}

/* ---- DSDT: the PCI root bridge and the ECAM reservation ---- */

static void expect_eisaid(const struct aml_obj *o, const char *id)
{
	uint32_t letters = (uint32_t)(id[0] - 0x40) << 10 | (uint32_t)(id[1] - 0x40) << 5 | (uint32_t)(id[2] - 0x40);
	unsigned hex[4];
	for (int i = 0; i < 4; i++)
		hex[i] = id[3 + i] <= '9' ? (unsigned)(id[3 + i] - '0') : (unsigned)(id[3 + i] - 'A' + 10);
	uint8_t want[4] = { (uint8_t)(letters >> 8), (uint8_t)letters, (uint8_t)(hex[0] << 4 | hex[1]),
			    (uint8_t)(hex[2] << 4 | hex[3]) };
	assert_int_equal(o->data[0], 0x0C);
	assert_memory_equal(o->data + 1, want, 4);
}

/* Large resource descriptor at r: checks its tag and length, returns the
 * next descriptor. */
static const uint8_t *large_item(const uint8_t *r, uint8_t tag, uint16_t len)
{
	assert_int_equal(r[0], tag);
	assert_int_equal(rd16(r + 1), len);
	return r + 3 + len;
}

static const uint8_t *word_range(const uint8_t *r, uint8_t type, uint16_t min, uint16_t max)
{
	const uint8_t *next = large_item(r, 0x88, 13);
	assert_int_equal(r[3], type);
	assert_int_equal(r[4] & 1, 0);                 /* producer */
	assert_int_equal(r[4] & 0x0C, 0x0C);           /* min and max fixed */
	assert_int_equal(rd16(r + 8), min);
	assert_int_equal(rd16(r + 10), max);
	assert_int_equal(rd16(r + 12), 0);             /* no translation */
	assert_int_equal(rd16(r + 14), (uint16_t)(max - min + 1));
	return next;
}

static void test_dsdt_pci(void **state)
{
	struct guest g;
	struct parsed p;
	struct aml_walk w;
	uint64_t rsdp;
	const uint8_t *q, *pend;
	size_t len;
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = 2 }, &rsdp), 0);
	parse(&g, rsdp, &p);
	walk_dsdt(&p, &w);

	expect_eisaid(find_obj(&w, "\\_SB_.PCI0._HID"), "PNP0A08");
	expect_eisaid(find_obj(&w, "\\_SB_.PCI0._CID"), "PNP0A03");
	assert_int_equal(int_value(find_obj(&w, "\\_SB_.PCI0._SEG")->data, &q), 0);
	assert_int_equal(int_value(find_obj(&w, "\\_SB_.PCI0._BBN")->data, &q), 0);
	assert_int_equal(int_value(find_obj(&w, "\\_SB_.PCI0._UID")->data, &q), 0);

	/* _CRS: bus 0, the config ports, I/O around them, the BAR window. */
	const uint8_t *r = buffer_value(find_obj(&w, "\\_SB_.PCI0._CRS"), &len);
	const uint8_t *end = r + len;
	r = word_range(r, 2, 0, 0);
	assert_int_equal(r[0], 0x47);
	assert_int_equal(rd16(r + 2), X86_PORT_PCI_CONFIG);
	assert_int_equal(rd16(r + 4), X86_PORT_PCI_CONFIG);
	assert_int_equal(r[7], 8);
	r += 8;
	r = word_range(r, 1, 0, X86_PORT_PCI_CONFIG - 1);
	r = word_range(r, 1, X86_PORT_PCI_CONFIG + 8, 0xFFFF);
	const uint8_t *mem = r;
	r = large_item(r, 0x87, 23);
	assert_int_equal(mem[3], 0);                   /* memory */
	assert_int_equal(mem[5] & 1, 1);               /* read-write */
	assert_int_equal(rd32(mem + 10), X86_PCI_MMIO_START);
	assert_int_equal(rd32(mem + 14), X86_PCI_MMIO_START + X86_PCI_MMIO_SIZE - 1);
	assert_int_equal(rd32(mem + 22), X86_PCI_MMIO_SIZE);
	assert_int_equal(r[0], 0x79);
	assert_ptr_equal(r + 2, end);
	/* The window stays clear of the ECAM, which is not the bridge's. */
	assert_true(X86_PCI_MMIO_START + X86_PCI_MMIO_SIZE <= X86_PCI_ECAM);

	/* _PRT: slots 1..31 x INTA..INTD, GSI form, INTA where PCI puts it. */
	const struct aml_obj *prt = find_obj(&w, "\\_SB_.PCI0._PRT");
	assert_int_equal(prt->data[0], 0x12);
	q = pkglen(prt->data + 1, prt->end, &pend);
	assert_int_equal(*q++, 31 * 4);
	int seen[32][4] = { { 0 } };
	for (int i = 0; i < 31 * 4; i++) {
		const uint8_t *e_end;
		assert_int_equal(*q, 0x12);
		q = pkglen(q + 1, pend, &e_end);
		assert_int_equal(*q++, 4);
		uint64_t addr = int_value(q, &q);
		uint64_t pin = int_value(q, &q);
		uint64_t source = int_value(q, &q);
		uint64_t gsi = int_value(q, &q);
		assert_ptr_equal(q, e_end);
		assert_int_equal(addr & 0xFFFF, 0xFFFF);
		unsigned slot = (unsigned)(addr >> 16);
		assert_true(slot >= 1 && slot <= 31);
		assert_true(pin < 4);
		assert_int_equal(source, 0);
		assert_int_equal(gsi, 16 + (slot + pin) % 8);
		if (pin == 0)
			assert_int_equal(gsi, arch_pci_intx_gsi((int)slot));
		seen[slot][pin]++;
	}
	assert_ptr_equal(q, pend);
	for (int slot = 1; slot < 32; slot++)
		for (int pin = 0; pin < 4; pin++)
			assert_int_equal(seen[slot][pin], 1);

	/* Motherboard resources reserve the ECAM. */
	expect_eisaid(find_obj(&w, "\\_SB_.MRES._HID"), "PNP0C02");
	r = buffer_value(find_obj(&w, "\\_SB_.MRES._CRS"), &len);
	assert_int_equal(len, 12 + 2);
	large_item(r, 0x86, 9);
	assert_int_equal(r[3] & 1, 1);
	assert_int_equal(rd32(r + 4), X86_PCI_ECAM);
	assert_int_equal(rd32(r + 8), X86_PCI_ECAM_SIZE);
	assert_int_equal(r[12], 0x79);
	free(g.ram);
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* Optional: iasl, when installed, must disassemble the DSDT cleanly. */
static void test_dsdt_iasl(void **state)
{
	if (system("command -v iasl >/dev/null 2>&1") != 0)
		skip();
	struct guest g;
	struct parsed p;
	uint64_t rsdp;
	guest_init(&g, GUEST_SIZE);
	assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = 2 }, &rsdp), 0);
	parse(&g, rsdp, &p);

	char dir[] = "/tmp/test_acpi.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128], cmd[1024];
	snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
	write_file(path, p.dsdt, rd32(p.dsdt + 4));
	snprintf(path, sizeof(path), "%s/mcfg.dat", dir);
	write_file(path, p.mcfg, rd32(p.mcfg + 4));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && iasl -d dsdt.dat >log 2>&1 && grep -q 'QEMU0001' dsdt.dsl && "
		 "grep -q 'EisaId (\"PNP0501\")' dsdt.dsl && grep -q 'Name (_S5' dsdt.dsl && "
		 "grep -q 'EisaId (\"PNP0A08\")' dsdt.dsl && grep -q 'Name (_PRT' dsdt.dsl && "
		 "grep -q 'WordBusNumber' dsdt.dsl && grep -q 'DWordMemory' dsdt.dsl && "
		 "grep -q 'Memory32Fixed' dsdt.dsl && "
		 "iasl -d mcfg.dat >>log 2>&1 && grep -qi 'Base Address *: 00000000E0000000' mcfg.dsl && "
		 "! grep -qi 'error' log",
		 dir);
	int rc = system(cmd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(rc, 0);
	free(g.ram);
}

/* ---- Errors ---- */

static void test_bad_cpus(void **state)
{
	struct guest g;
	uint64_t rsdp = 0;
	guest_init(&g, GUEST_SIZE);
	memset(g.ram, 0, GUEST_SIZE);
	static const int bad[] = { 0, 256, -1, 100000 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = bad[i] }, &rsdp),
				 -EINVAL);
	assert_int_equal(acpi_build(&g.mem, NULL, &rsdp), -EINVAL);
	/* nothing written */
	for (size_t i = 0; i < GUEST_SIZE; i++)
		assert_int_equal(g.ram[i], 0);
	free(g.ram);
}

static void check_small(uint64_t size)
{
	struct guest g;
	uint64_t rsdp = 0;
	guest_init(&g, size);
	int ret = acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = 8 }, &rsdp);
	assert_true(ret == -EFAULT || ret == -E2BIG);
	assert_int_equal(rsdp, 0);
	free(g.ram);
}

static void test_small_memory(void **state)
{
	check_small(0x80000);                   /* ends below the table area */
	check_small(X86_ACPI_TABLES + 0x100);   /* ends inside it */

	struct guest_memory none = { .nr_regions = 0 };
	uint64_t rsdp = 0;
	assert_int_equal(acpi_build(&none, &(struct acpi_params){ .nr_cpus = 1 }, &rsdp), -EFAULT);
}

/* A table area straddling two host mappings is refused, not split. */
static void test_two_regions(void **state)
{
	struct guest g;
	uint64_t rsdp = 0;
	guest_init(&g, GUEST_SIZE);
	g.mem.nr_regions = 2;
	g.mem.regions[0].size = X86_ACPI_TABLES + 0x40;
	g.mem.regions[1] = (struct guest_region){ .gpa = X86_ACPI_TABLES + 0x40,
		.size = GUEST_SIZE - X86_ACPI_TABLES - 0x40, .hva = g.ram + X86_ACPI_TABLES + 0x40 };
	assert_int_equal(acpi_build(&g.mem, &(struct acpi_params){ .nr_cpus = 1 }, &rsdp), -EFAULT);
	free(g.ram);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_madt_1),
		cmocka_unit_test(test_madt_2),
		cmocka_unit_test(test_madt_4),
		cmocka_unit_test(test_madt_8),
		cmocka_unit_test(test_madt_255),
		cmocka_unit_test(test_fadt),
		cmocka_unit_test(test_dsdt),
		cmocka_unit_test(test_mcfg),
		cmocka_unit_test(test_dsdt_pci),
		cmocka_unit_test(test_dsdt_iasl),
		cmocka_unit_test(test_bad_cpus),
		cmocka_unit_test(test_small_memory),
		cmocka_unit_test(test_two_regions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
