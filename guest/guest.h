/* The tiny guest: shared constants (also used by entry.S), port and MMIO
 * accessors, and the interfaces between its files. */
#ifndef KVMLITE_GUEST_H
#define KVMLITE_GUEST_H

#define TRAMPOLINE_ADDR 0x8000 /* AP real-mode start; startup IPI vector 0x08 */
#define AP_MAX          256    /* AP stack slots: xAPIC IDs are 0..254 */
#define AP_STACK_SHIFT  11     /* 2 KiB per AP: ap_main is a leaf-ish function */

#ifndef __ASSEMBLER__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

#define GUEST_MAX_CPUS 256 /* CPUs we collect from the MADT */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* MMIO with explicit instruction widths: the compiler must neither merge
 * nor split these. */
static inline void mmio_write8(uint64_t a, uint8_t v) { __asm__ volatile("movb %1, (%0)" : : "r"(a), "q"(v) : "memory"); }
static inline void mmio_write16(uint64_t a, uint16_t v) { __asm__ volatile("movw %1, (%0)" : : "r"(a), "r"(v) : "memory"); }
static inline void mmio_write32(uint64_t a, uint32_t v) { __asm__ volatile("movl %1, (%0)" : : "r"(a), "r"(v) : "memory"); }
static inline void mmio_write64(uint64_t a, uint64_t v) { __asm__ volatile("movq %1, (%0)" : : "r"(a), "r"(v) : "memory"); }
static inline uint8_t mmio_read8(uint64_t a)
{
	uint8_t v;
	__asm__ volatile("movb (%1), %0" : "=q"(v) : "r"(a) : "memory");
	return v;
}
static inline uint16_t mmio_read16(uint64_t a)
{
	uint16_t v;
	__asm__ volatile("movw (%1), %0" : "=r"(v) : "r"(a) : "memory");
	return v;
}
static inline uint32_t mmio_read32(uint64_t a)
{
	uint32_t v;
	__asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(a) : "memory");
	return v;
}
static inline uint64_t mmio_read64(uint64_t a)
{
	uint64_t v;
	__asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(a) : "memory");
	return v;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" : : : "memory"); }

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void *phys_ptr(uint64_t pa) { return (void *)(uintptr_t)pa; }

/* lib.c: serial console, strings, failure reporting */
void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);
void serial_put_dec(uint64_t v);
void serial_put_hex(uint64_t v);
void guest_idt_load(void);
__attribute__((noreturn)) void guest_halt(void);
__attribute__((noreturn)) void guest_fail(const char *reason);
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* acpi.c: what the guest needs from the ACPI tables */
struct acpi_info {
	uint32_t apic_ids[GUEST_MAX_CPUS]; /* enabled local (x2)APIC IDs, MADT order */
	int nr_cpus;
	uint64_t lapic_addr;
	uint32_t pm1a_cnt;  /* I/O port of PM1a_CNT, 0: none, see sleep_ctl */
	uint64_t sleep_ctl; /* hardware-reduced ACPI: SLEEP_CONTROL_REG */
	bool sleep_ctl_io;  /* ... in I/O space, else memory */
	uint8_t slp_typ_s5; /* SLP_TYPa of \_S5 */
};
/* 0 or -1 with *why naming what is missing or broken. rsdp_hint may be 0. */
int acpi_probe(uint64_t rsdp_hint, struct acpi_info *ai, const char **why);

/* smp.c */
/* Starts every AP of ai; returns the number of CPUs (BSP included) of ai
 * that checked in, or -1 with *why set. */
int smp_boot(const struct acpi_info *ai, const char **why);

/* main.c: the PVH start_info the guest was entered with (its memory map
 * stays where the loader put it). */
extern uint64_t guest_start_info;

/* tests.c: test modes, reporting through the kvmlite test device */
/* Ends the VM through the test device with exit status code (0: pass). */
__attribute__((noreturn)) void test_exit(uint32_t code);
/* Unless ok: prints "FAIL: what ... got ..., want ..." and exits with
 * code (capped at 255). off/width < 0: not an access to a register. */
void test_check(bool ok, int code, const char *what, int off, int width, uint64_t got, uint64_t want);
__attribute__((noreturn)) void test_pio(void);
__attribute__((noreturn)) void test_mmio(void);
__attribute__((noreturn)) void test_serial(void);
/* Ends the VM through the test device with status 42, a value no other
 * path produces, so the host sees the code travel end to end. */
__attribute__((noreturn)) void test_exit_code(void);
/* Runs forever (for host-side tests that stop a running VM). */
__attribute__((noreturn)) void test_spin(void);
/* Runs, with their memory operand on the test device's MMIO, the
 * instructions KVM's emulator leaves to kvmlite's fallback. */
__attribute__((noreturn)) void test_fallback(void);
/* counter.c: prints count=1, 2, ... forever (for pause/resume tests). */
__attribute__((noreturn)) void test_counter(void);

/* virtio_tests.c, virtio_hostile.c: modes on the guest's virtio-pci
 * driver (virtio.c): test=virtio-rng, test=virtio-blk (the 1 MiB pattern
 * disk tests/guest/run attaches), test=virtio-blk-ro, test=virtio-hostile. */
__attribute__((noreturn)) void test_virtio_rng(void);
__attribute__((noreturn)) void test_virtio_blk(bool read_only);
__attribute__((noreturn)) void test_virtio_hostile(void);
/* blk_crash.c: test=blk-crash writes and flushes the first virtio-blk disk
 * until killed, printing "blk-crash: flushed N" (tests/guest/blk-crash). */
__attribute__((noreturn)) void test_blk_crash(void);

/* bench.c: benchmark modes, bench=pio|mmio n=COUNT or bench=idle
 * (bench/README.md). Returns at once without a bench= token. */
void bench_run(const char *cmdline, uint64_t rsdp_pa);

#endif /* !__ASSEMBLER__ */
#endif
