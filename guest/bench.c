/* Benchmark modes, selected by bench=... on the command line (see
 * bench/README.md):
 *
 *   bench=pio n=N    N one-byte `out` to BENCH_PORT, at CPL3
 *   bench=mmio n=N   N 32-bit writes to BENCH_MMIO, at CPL3
 *   bench=idle       start every vCPU, then halt forever (memory figures)
 *
 * pio and mmio print "kvmlite guest: bench begin" right before the loop and
 * "kvmlite guest: bench end" right after it; the host times the loop by the
 * arrival of those two lines on the serial console, so no guest clock is
 * trusted (a nested guest's TSC rate is not known to it). Then the guest
 * boots on as usual and powers off.
 *
 * The loops run at CPL3 because some hosts emulate guest CPL0 code: the
 * guest gets a user code and data segment, a TSS with RSP0, IOPL 3 for the
 * port writes, and page tables with the user bit set. An `int $0x80` (a
 * DPL3 gate) brings it back to CPL0. */
#include "guest.h"

/* Neither kvmlite nor QEMU (-M pc, -M microvm) has anything at these, so
 * each write is one exit to the VMM and a lookup that finds no device
 * (checked with QEMU's `info mtree -f`). Port 0x80 would not do: QEMU -M pc
 * has a device there. */
#define BENCH_PORT 0x3E0
#define BENCH_MMIO 0xD0000000ULL /* in the PCI hole, below the LAPIC/IOAPIC */
#define BENCH_MAX_N 10000000000ULL

/* GDT: the boot selectors 0x08-0x18 keep their meaning. */
#define SEL_KCODE 0x18
#define SEL_KDATA 0x10
#define SEL_UDATA 0x20
#define SEL_UCODE 0x28
#define SEL_TSS   0x30
#define GATE_USER_DONE 0x80 /* int $0x80: back from CPL3 */

#define PTE_P   0x001ULL
#define PTE_RW  0x002ULL
#define PTE_US  0x004ULL
#define PTE_PWT 0x008ULL
#define PTE_PCD 0x010ULL
#define PTE_PS  0x080ULL
#define MMIO_PD_INDEX 1536 /* from 3 GiB up: uncached, as in entry.S */

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern const char exception_stubs[]; /* entry.S: 32 stubs, 16 bytes apart */
void bench_to_user(void (*fn)(void), uint64_t user_rsp);
extern const char bench_from_user[];

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4 * 512] __attribute__((aligned(4096)));
static uint64_t gdt[8] __attribute__((aligned(16)));
static struct idt_gate idt[GATE_USER_DONE + 1] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static uint8_t kernel_stack[4096] __attribute__((aligned(16)));
static uint8_t user_stack[4096] __attribute__((aligned(16)));
uint64_t bench_kernel_rsp; /* bench_to_user's stack, for bench_from_user */
static volatile uint64_t bench_n;
static volatile uint16_t user_cs; /* CS the loop ran with: proves CPL3 */

/* bench_to_user(fn, rsp): runs fn at CPL3 on stack rsp with IOPL 3 and
 * interrupts off; returns when fn executes int $0x80, whose gate lands on
 * bench_from_user on the TSS's RSP0 stack. That frame is dropped: we go
 * back to the stack bench_to_user saved. */
__asm__(".text\n"
	".globl bench_to_user, bench_from_user\n"
	"bench_to_user:\n"
	"	push %rbx\n"
	"	push %rbp\n"
	"	push %r12\n"
	"	push %r13\n"
	"	push %r14\n"
	"	push %r15\n"
	"	mov %rsp, bench_kernel_rsp(%rip)\n"
	"	pushq $0x23\n"   /* SS: SEL_UDATA | 3 */
	"	pushq %rsi\n"    /* RSP */
	"	pushq $0x3002\n" /* RFLAGS: IOPL 3, IF 0 */
	"	pushq $0x2b\n"   /* CS: SEL_UCODE | 3 */
	"	pushq %rdi\n"    /* RIP */
	"	iretq\n"
	"bench_from_user:\n"
	"	mov bench_kernel_rsp(%rip), %rsp\n"
	"	mov $0x10, %eax\n" /* SEL_KDATA: the gate left SS null */
	"	mov %eax, %ss\n"
	"	mov %eax, %ds\n"
	"	mov %eax, %es\n"
	"	pop %r15\n"
	"	pop %r14\n"
	"	pop %r13\n"
	"	pop %r12\n"
	"	pop %rbp\n"
	"	pop %rbx\n"
	"	ret\n");

/* The CPL3 loops. Each access is a separate instruction the compiler may
 * not merge (volatile asm). */
static inline void user_record_cs(void)
{
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	user_cs = cs;
}

static __attribute__((noreturn, noinline)) void user_pio(void)
{
	user_record_cs();
	for (uint64_t i = bench_n; i; i--)
		outb(BENCH_PORT, 0);
	__asm__ volatile("int $0x80");
	__builtin_unreachable();
}

static __attribute__((noreturn, noinline)) void user_mmio(void)
{
	user_record_cs();
	for (uint64_t i = bench_n; i; i--)
		mmio_write32(BENCH_MMIO, 0);
	__asm__ volatile("int $0x80");
	__builtin_unreachable();
}

static void idt_set(int vec, uint64_t addr, uint8_t type)
{
	idt[vec] = (struct idt_gate){ .off_lo = (uint16_t)addr, .sel = SEL_KCODE, .type = type,
		.off_mid = (uint16_t)(addr >> 16), .off_hi = (uint32_t)(addr >> 32) };
}

/* Runs fn at CPL3 with user-accessible page tables, a GDT with user
 * segments and a TSS, and an IDT with the return gate; puts the boot
 * CR3, GDT and IDT back afterwards. */
static void run_at_cpl3(void (*fn)(void))
{
	struct desc_ptr old_gdt, old_idt, d;
	uint64_t old_cr3, tss_base = (uint64_t)(uintptr_t)&tss;

	/* Identity map 0-4 GiB like entry.S does, plus the user bit. */
	pml4[0] = (uint64_t)(uintptr_t)pdpt | PTE_P | PTE_RW | PTE_US;
	for (int i = 0; i < 4; i++)
		pdpt[i] = (uint64_t)(uintptr_t)&pd[i * 512] | PTE_P | PTE_RW | PTE_US;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS | (i >= MMIO_PD_INDEX ? PTE_PCD | PTE_PWT : 0);

	gdt[0] = 0;
	gdt[1] = 0x00cf9a000000ffffULL; /* 0x08: 32-bit code */
	gdt[2] = 0x00cf92000000ffffULL; /* 0x10: data */
	gdt[3] = 0x00af9a000000ffffULL; /* 0x18: 64-bit code */
	gdt[4] = 0x00cff2000000ffffULL; /* 0x20: data, DPL3 */
	gdt[5] = 0x00affa000000ffffULL; /* 0x28: 64-bit code, DPL3 */
	/* 0x30: 64-bit TSS (available, type 9), two slots */
	gdt[6] = (sizeof(tss) - 1) | (tss_base & 0xFFFFFF) << 16 | 0x89ULL << 40 | (tss_base >> 24 & 0xFF) << 56;
	gdt[7] = tss_base >> 32;

	tss = (struct tss64){ .iomap_base = sizeof(tss) }; /* no I/O bitmap: IOPL decides */
	tss.rsp[0] = (uint64_t)(uintptr_t)(kernel_stack + sizeof(kernel_stack));

	for (int i = 0; i < 32; i++)
		idt_set(i, (uint64_t)(uintptr_t)exception_stubs + 16 * (uint64_t)i, 0x8E);
	idt_set(GATE_USER_DONE, (uint64_t)(uintptr_t)bench_from_user, 0xEE); /* DPL3 interrupt gate */

	__asm__ volatile("sgdt %0; sidt %1; mov %%cr3, %2" : "=m"(old_gdt), "=m"(old_idt), "=r"(old_cr3));
	d = (struct desc_ptr){ sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt };
	__asm__ volatile("lgdt %0" : : "m"(d) : "memory");
	d = (struct desc_ptr){ sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
	__asm__ volatile("lidt %0" : : "m"(d) : "memory");
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS));
	__asm__ volatile("mov %0, %%cr3" : : "r"((uint64_t)(uintptr_t)pml4) : "memory");

	/* The stack as after a call: 8 below a 16-byte boundary. */
	bench_to_user(fn, (uint64_t)(uintptr_t)(user_stack + sizeof(user_stack) - 8));

	__asm__ volatile("mov %0, %%cr3" : : "r"(old_cr3) : "memory");
	__asm__ volatile("lgdt %0; lidt %1" : : "m"(old_gdt), "m"(old_idt) : "memory");
}

/* The value of the last key=... token (key includes the '='), or NULL. */
static const char *cmdline_value(const char *cmdline, const char *key, size_t *len)
{
	size_t klen = strlen(key), i = 0;
	const char *found = NULL;

	while (i < X86_CMDLINE_MAX && cmdline[i]) {
		size_t start;

		while (cmdline[i] == ' ')
			i++;
		start = i;
		while (i < X86_CMDLINE_MAX && cmdline[i] && cmdline[i] != ' ')
			i++;
		if (i - start >= klen && !memcmp(cmdline + start, key, klen)) {
			found = cmdline + start + klen;
			*len = i - start - klen;
		}
	}
	return found;
}

static bool value_is(const char *v, size_t len, const char *s)
{
	return len == strlen(s) && !memcmp(v, s, len);
}

static __attribute__((noreturn)) void bench_idle(uint64_t rsdp_pa)
{
	static struct acpi_info ai_store;
	struct acpi_info *ai = &ai_store;
	const char *why = NULL;
	int n;

	if (acpi_probe(rsdp_pa, ai, &why))
		guest_fail(why);
	n = smp_boot(ai, &why);
	if (n < 0)
		guest_fail(why);
	serial_puts("kvmlite guest: ");
	serial_put_dec((uint64_t)n);
	serial_putc('/');
	serial_put_dec((uint64_t)ai->nr_cpus);
	serial_puts(" vCPUs checked in\n");
	serial_puts("kvmlite guest: bench idle\n");
	guest_halt();
}

void bench_run(const char *cmdline, uint64_t rsdp_pa)
{
	const char *mode, *nv;
	size_t mlen = 0, nlen = 0;
	uint64_t n = 0;
	bool pio;

	mode = cmdline_value(cmdline, "bench=", &mlen);
	if (!mode)
		return;
	if (value_is(mode, mlen, "idle"))
		bench_idle(rsdp_pa);
	if (!value_is(mode, mlen, "pio") && !value_is(mode, mlen, "mmio"))
		guest_fail("unknown bench= mode");
	pio = value_is(mode, mlen, "pio");

	nv = cmdline_value(cmdline, "n=", &nlen);
	if (!nv || !nlen)
		guest_fail("bench= needs n=COUNT");
	for (size_t i = 0; i < nlen; i++) {
		if (nv[i] < '0' || nv[i] > '9' || n > BENCH_MAX_N)
			guest_fail("bad n= (a decimal count up to 10^10)");
		n = n * 10 + (uint64_t)(nv[i] - '0');
	}
	bench_n = n;

	serial_puts(pio ? "kvmlite guest: bench pio port=" : "kvmlite guest: bench mmio addr=");
	serial_put_hex(pio ? BENCH_PORT : BENCH_MMIO);
	serial_puts(" n=");
	serial_put_dec(n);
	serial_puts(" cpl=3\n");
	serial_puts("kvmlite guest: bench begin\n");
	run_at_cpl3(pio ? user_pio : user_mmio);
	serial_puts("kvmlite guest: bench end\n");
	if ((user_cs & 3) != 3)
		guest_fail("bench loop did not run at CPL3");
}
