/* ACPI tables: RSDP, XSDT, MADT, FADT, MCFG, DSDT, written into guest memory so
 * that Linux (and the tiny guest) find every CPU, the IOAPIC and power-off. */
#ifndef KVMLITE_X86_ACPI_H
#define KVMLITE_X86_ACPI_H

#include <stdint.h>

#include "memory.h"

struct acpi_params {
	int nr_cpus;           /* local APIC IDs 0 .. nr_cpus - 1 */
};

/* Builds the tables at [X86_ACPI_TABLES, + X86_ACPI_TABLES_MAX) and returns
 * the RSDP address through rsdp_gpa. 0 or negative errno (-E2BIG, -EFAULT). */
int acpi_build(const struct guest_memory *mem, const struct acpi_params *params, uint64_t *rsdp_gpa);

#endif
