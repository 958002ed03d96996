/* Where things live in an x86 guest's physical address space and I/O ports.
 * One place, so the loaders, ACPI tables, devices and the tiny guest agree. */
#ifndef KVMLITE_X86_LAYOUT_H
#define KVMLITE_X86_LAYOUT_H

/* Guest physical memory */
#define X86_BOOT_GDT          0x0500ULL   /* boot GDT (64-bit and PVH 32-bit entry) */
#define X86_PVH_START_INFO    0x6000ULL   /* struct hvm_start_info */
#define X86_PVH_MEMMAP        0x6100ULL   /* struct hvm_memmap_table_entry[] */
#define X86_BOOT_PARAMS       0x7000ULL   /* Linux zero page (struct boot_params) */
#define X86_BOOT_PML4         0x9000ULL   /* identity page tables for 64-bit entry */
#define X86_BOOT_PDPT         0xA000ULL
#define X86_BOOT_PD           0xB000ULL   /* 4 pages: 0xB000-0xEFFF map 4 GiB with 2 MiB pages */
#define X86_CMDLINE           0x20000ULL
#define X86_CMDLINE_MAX       0x10000ULL  /* 64 KiB, including the NUL */
#define X86_EBDA_START        0x9FC00ULL  /* reserved from here to 1 MiB */
#define X86_ACPI_TABLES       0xE0000ULL  /* RSDP and tables, in the BIOS area */
#define X86_ACPI_TABLES_MAX   0x20000ULL
#define X86_HIGH_MEMORY       0x100000ULL /* 1 MiB */
#define X86_KERNEL_DEFAULT    0x1000000ULL /* 16 MiB: bzImage 64-bit load address */
#define X86_MMIO_HOLE_START   0xC0000000ULL /* RAM below 4 GiB ends here at most */
#define X86_MMIO_HOLE_END     0x100000000ULL
#define X86_PCI_MMIO_START    0xC0000000ULL /* 32-bit BAR window */
#define X86_PCI_MMIO_SIZE     0x20000000ULL /* 512 MiB */
#define X86_PCI_ECAM          0xE0000000ULL /* ECAM for bus 0 (ACPI MCFG), e820-reserved */
#define X86_PCI_ECAM_SIZE     0x100000ULL   /* 1 MiB: 32 slots x 8 functions x 4 KiB */
#define X86_TESTDEV_MMIO      0xFEB00000ULL /* test device, 4 KiB (--testdev only) */
#define X86_IOAPIC_ADDR       0xFEC00000ULL
#define X86_LAPIC_ADDR        0xFEE00000ULL
#define X86_IDENTITY_MAP_ADDR 0xFFFBC000ULL /* KVM_SET_IDENTITY_MAP_ADDR, 1 page */
#define X86_TSS_ADDR          0xFFFBD000ULL /* KVM_SET_TSS_ADDR, 3 pages */

/* I/O ports */
#define X86_PORT_I8042_DATA   0x60
#define X86_PORT_I8042_CMD    0x64
#define X86_PORT_COM1         0x3F8
#define X86_IRQ_COM1          4
#define X86_PORT_PVPANIC      0x505       /* pvpanic (ACPI QEMU0001), 1 port */
#define X86_PORT_TESTDEV      0x510       /* 16 ports (--testdev only) */
#define X86_PORT_ACPI_PM1A_EVT 0x600      /* 4 bytes: status, enable */
#define X86_PORT_ACPI_PM1A_CNT 0x604      /* 2 bytes */
#define X86_IRQ_ACPI_SCI      9
#define X86_PORT_PCI_CONFIG   0xCF8       /* CONFIG_ADDRESS; CONFIG_DATA at 0xCFC */
#define X86_PORT_RESET        0xCF9       /* FADT reset register, value 0x06 */

/* PCI INTx: slot s pin INTA goes to IOAPIC pin 16 + (s % 8), level, active low (DSDT _PRT) */
#define X86_PCI_INTX_GSI_BASE 16
#define X86_PCI_INTX_NR_GSIS  8

/* ACPI S5 (soft off) sleep type, as in the DSDT's _S5 package */
#define X86_ACPI_SLP_TYP_S5   5

#endif
