/* ACPI, read-only: RSDP -> XSDT/RSDT -> MADT (CPUs) and FADT -> DSDT
 * (PM1a_CNT port and the \_S5 sleep type for power-off). Every table is
 * checksummed and every read stays inside the table's length. */
#include "guest.h"

#define ACPI_HDR_LEN   36
#define ACPI_TABLE_MAX (1u << 20) /* sanity bound on one table's length */
#define PHYS_LIMIT     0x100000000ULL /* what the identity map covers */

static uint8_t rd8(const uint8_t *p, size_t o) { return p[o]; }
static uint16_t rd16(const uint8_t *p, size_t o) { return (uint16_t)(p[o] | p[o + 1] << 8); }
static uint32_t rd32(const uint8_t *p, size_t o) { return rd16(p, o) | (uint32_t)rd16(p, o + 2) << 16; }
static uint64_t rd64(const uint8_t *p, size_t o) { return rd32(p, o) | (uint64_t)rd32(p, o + 4) << 32; }

static bool checksum_ok(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return sum == 0;
}

static bool rsdp_valid(const uint8_t *p)
{
	if (memcmp(p, "RSD PTR ", 8) || !checksum_ok(p, 20))
		return false;
	if (rd8(p, 15) >= 2) {
		uint32_t len = rd32(p, 20);
		if (len < 36 || len > 4096 || !checksum_ok(p, len))
			return false;
	}
	return true;
}

static const uint8_t *find_rsdp(uint64_t hint)
{
	if (hint && hint < PHYS_LIMIT - 4096 && rsdp_valid(phys_ptr(hint)))
		return phys_ptr(hint);
	/* The BIOS area, on 16-byte boundaries, as ACPI specifies. */
	for (uint64_t a = 0xE0000; a < 0x100000; a += 16)
		if (rsdp_valid(phys_ptr(a)))
			return phys_ptr(a);
	return NULL;
}

/* A table at pa with a valid header and checksum, or NULL. */
static const uint8_t *table_at(uint64_t pa, uint32_t *len)
{
	const uint8_t *t;

	if (!pa || pa >= PHYS_LIMIT - ACPI_TABLE_MAX)
		return NULL;
	t = phys_ptr(pa);
	*len = rd32(t, 4);
	if (*len < ACPI_HDR_LEN || *len > ACPI_TABLE_MAX || !checksum_ok(t, *len))
		return NULL;
	return t;
}

/* \_S5 in the AML: Name(_S5, Package(n) {SLP_TYPa, ...}), found by
 * pattern rather than by interpreting AML. -1 if absent or unparseable. */
static int find_s5(const uint8_t *aml, uint32_t len)
{
	for (uint32_t i = ACPI_HDR_LEN; i + 4 < len; i++) {
		uint32_t p;

		if (memcmp(aml + i, "_S5_", 4))
			continue;
		/* NameOp "_S5_" or NameOp "\_S5_" */
		if (!(aml[i - 1] == 0x08 || (aml[i - 1] == '\\' && aml[i - 2] == 0x08)))
			continue;
		p = i + 4;
		if (aml[p++] != 0x12) /* PackageOp */
			continue;
		if (p >= len)
			break;
		p += (aml[p] >> 6) + 1; /* PkgLength: lead byte + 0..3 more */
		p++;                    /* NumElements */
		if (p + 1 >= len)
			break;
		switch (aml[p]) {
		case 0x0A: return aml[p + 1]; /* BytePrefix */
		case 0x00: return 0;          /* ZeroOp */
		case 0x01: return 1;          /* OneOp */
		default: return -1;
		}
	}
	return -1;
}

static int parse_madt(const uint8_t *t, uint32_t len, struct acpi_info *ai, const char **why)
{
	uint32_t o;

	if (len < 44) {
		*why = "MADT too short";
		return -1;
	}
	ai->lapic_addr = rd32(t, 36);
	for (o = 44; o + 2 <= len; o += rd8(t, o + 1)) {
		uint8_t type = rd8(t, o), elen = rd8(t, o + 1);
		uint32_t id, flags;

		if (elen < 2 || o + elen > len) {
			*why = "MADT entry overruns the table";
			return -1;
		}
		if (type == 0 && elen >= 8) { /* Processor Local APIC */
			id = rd8(t, o + 3);
			flags = rd32(t, o + 4);
		} else if (type == 9 && elen >= 16) { /* Processor Local x2APIC */
			id = rd32(t, o + 4);
			flags = rd32(t, o + 8);
		} else {
			if (type == 5 && elen >= 12) /* Local APIC Address Override */
				ai->lapic_addr = rd64(t, o + 4);
			continue;
		}
		if (!(flags & 1))
			continue;
		if (ai->nr_cpus == GUEST_MAX_CPUS) {
			*why = "too many CPUs in the MADT";
			return -1;
		}
		ai->apic_ids[ai->nr_cpus++] = id;
	}
	if (ai->nr_cpus == 0) {
		*why = "no enabled CPU in the MADT";
		return -1;
	}
	return 0;
}

static int parse_fadt(const uint8_t *t, uint32_t len, struct acpi_info *ai, const char **why)
{
	uint64_t dsdt_pa = 0, pm1a = 0;
	const uint8_t *dsdt;
	uint32_t dlen;
	int s5;

	if (len < 68) {
		*why = "FADT too short";
		return -1;
	}
	pm1a = rd32(t, 64);
	/* X_PM1a_CNT_BLK: a Generic Address Structure; only system I/O space. */
	if (rd8(t, 8) >= 3 && len >= 184 && rd8(t, 172) == 1 && rd64(t, 176))
		pm1a = rd64(t, 176);
	if (len >= 148)
		dsdt_pa = rd64(t, 140);
	if (!dsdt_pa)
		dsdt_pa = rd32(t, 40);
	if (pm1a && pm1a <= 0xFFFF) {
		ai->pm1a_cnt = (uint32_t)pm1a;
	} else if (len >= 256 && rd64(t, 248) && (rd8(t, 244) == 0 || rd8(t, 244) == 1)) {
		/* Hardware-reduced ACPI (QEMU microvm): SLEEP_CONTROL_REG, a
		 * GAS in memory or I/O space. */
		ai->sleep_ctl_io = rd8(t, 244) == 1;
		ai->sleep_ctl = rd64(t, 248);
		if ((ai->sleep_ctl_io && ai->sleep_ctl > 0xFFFF) || ai->sleep_ctl >= PHYS_LIMIT) {
			*why = "bad SLEEP_CONTROL_REG in the FADT";
			return -1;
		}
	} else {
		*why = "no PM1a_CNT port in the FADT";
		return -1;
	}
	dsdt = table_at(dsdt_pa, &dlen);
	if (!dsdt || memcmp(dsdt, "DSDT", 4)) {
		*why = "no valid DSDT";
		return -1;
	}
	s5 = find_s5(dsdt, dlen);
	if (s5 < 0 || s5 > 7) {
		*why = "no _S5 package in the DSDT";
		return -1;
	}
	ai->slp_typ_s5 = (uint8_t)s5;
	return 0;
}

int acpi_probe(uint64_t rsdp_hint, struct acpi_info *ai, const char **why)
{
	const uint8_t *rsdp = find_rsdp(rsdp_hint), *sdt, *madt = NULL, *fadt = NULL;
	uint32_t len, madt_len = 0, fadt_len = 0, esize;
	uint64_t sdt_pa;

	memset(ai, 0, sizeof(*ai));
	if (!rsdp) {
		*why = "no ACPI RSDP";
		return -1;
	}
	if (rd8(rsdp, 15) >= 2 && rd64(rsdp, 24)) {
		sdt_pa = rd64(rsdp, 24);
		esize = 8;
	} else {
		sdt_pa = rd32(rsdp, 16);
		esize = 4;
	}
	sdt = table_at(sdt_pa, &len);
	if (!sdt || memcmp(sdt, esize == 8 ? "XSDT" : "RSDT", 4)) {
		*why = "no valid XSDT/RSDT";
		return -1;
	}
	for (uint32_t o = ACPI_HDR_LEN; o + esize <= len; o += esize) {
		uint64_t pa = esize == 8 ? rd64(sdt, o) : rd32(sdt, o);
		uint32_t tlen;
		const uint8_t *t = table_at(pa, &tlen);

		if (!t)
			continue; /* a broken table we do not need is no failure */
		if (!madt && !memcmp(t, "APIC", 4)) {
			madt = t;
			madt_len = tlen;
		} else if (!fadt && !memcmp(t, "FACP", 4)) {
			fadt = t;
			fadt_len = tlen;
		}
	}
	if (!madt) {
		*why = "no valid MADT";
		return -1;
	}
	if (!fadt) {
		*why = "no valid FADT";
		return -1;
	}
	if (parse_madt(madt, madt_len, ai, why) || parse_fadt(fadt, fadt_len, ai, why))
		return -1;
	return 0;
}
