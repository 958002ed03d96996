/* Test modes (test=pio|mmio|serial on the command line): exercise one
 * device path and report through the kvmlite test device (--testdev):
 * a 32-bit write to port 0x510 ends the VM with that exit status.
 * Each check site has its own exit code (1.., below 256 since it becomes
 * a process exit status) and a FAIL line naming it. */
#include "guest.h"

#define TD_EXIT    (X86_PORT_TESTDEV + 0x0)
#define TD_SCRATCH (X86_PORT_TESTDEV + 0x4) /* 4 bytes */
#define TD_COUNT   (X86_PORT_TESTDEV + 0x8) /* PIO accesses served before this one */

#define MMIO_SCRATCH (X86_TESTDEV_MMIO + 0x000) /* 8 bytes */
#define MMIO_COUNT   (X86_TESTDEV_MMIO + 0x008)
#define MMIO_PATTERN 0x010                      /* offsets >= 0x10: (o & 0xFF) ^ 0xA5 */
#define MMIO_SIZE    0x1000

void test_exit(uint32_t code)
{
	outl(TD_EXIT, code);
	/* Still here: no test device. Report as a panic instead. */
	guest_fail(code ? "test failed, and no test device to report it" : "no test device to report success");
}

void test_check(bool ok, int code, const char *what, int off, int width, uint64_t got, uint64_t want)
{
	if (ok)
		return;
	serial_puts("kvmlite guest: FAIL: ");
	serial_puts(what);
	if (off >= 0) {
		serial_puts(" (offset ");
		serial_put_hex((uint64_t)off);
		serial_puts(", width ");
		serial_put_dec((uint64_t)width);
		serial_putc(')');
	}
	serial_puts(": got ");
	serial_put_hex(got);
	serial_puts(", want ");
	serial_put_hex(want);
	serial_puts(" (exit code ");
	serial_put_dec((uint64_t)code);
	serial_puts(")\n");
	test_exit((uint32_t)(code > 255 ? 255 : code));
}

#define CHECK_AT(what, off, width, got, want)                                        \
	do {                                                                             \
		uint64_t got_ = (got), want_ = (want);                                       \
		test_check(got_ == want_, __COUNTER__ + 1, what, (int)(off), (int)(width), got_, want_); \
	} while (0)
#define CHECK_EQ(what, got, want) CHECK_AT(what, -1, -1, got, want)

static uint64_t model_read(const uint8_t *m, int off, int width)
{
	uint64_t v = 0;

	for (int i = width - 1; i >= 0; i--)
		v = v << 8 | m[off + i];
	return v;
}

static void model_write(uint8_t *m, int off, int width, uint64_t v)
{
	for (int i = 0; i < width; i++, v >>= 8)
		m[off + i] = (uint8_t)v;
}

/* ---- test=pio ---------------------------------------------------------- */

static uint32_t pio_accesses; /* test device accesses made, counters excluded */

static uint64_t pio_read(int off, int width)
{
	uint16_t port = (uint16_t)(TD_SCRATCH + off);

	pio_accesses++;
	switch (width) {
	case 1: return inb(port);
	case 2: return inw(port);
	default: return inl(port);
	}
}

static void pio_write(int off, int width, uint64_t v)
{
	uint16_t port = (uint16_t)(TD_SCRATCH + off);

	pio_accesses++;
	switch (width) {
	case 1: outb(port, (uint8_t)v); break;
	case 2: outw(port, (uint16_t)v); break;
	default: outl(port, (uint32_t)v); break;
	}
}

/* Every read of every width at every offset inside the register agrees
 * with the model. */
static void pio_check_all(const uint8_t *m)
{
	for (int w = 1; w <= 4; w *= 2)
		for (int off = 0; off + w <= 4; off++)
			CHECK_AT("pio scratch read", off, w, pio_read(off, w), model_read(m, off, w));
}

void test_pio(void)
{
	static const struct { int off, width; uint32_t v; } writes[] = {
		{ 0, 4, 0x11223344 }, { 1, 2, 0xBEEF }, { 3, 1, 0x99 }, { 2, 2, 0x5566 },
		{ 0, 1, 0x01 }, { 0, 2, 0xA0B0 }, { 1, 1, 0x7E }, { 0, 4, 0xDEADBEEF },
	};
	uint8_t m[4] = { 0 };
	uint32_t c0, c1, c2;

	serial_puts("kvmlite guest: test=pio\n");
	c0 = inl(TD_COUNT);
	c1 = inl(TD_COUNT);
	CHECK_EQ("pio counter counts its own reads", c1, c0 + 1);

	pio_accesses = 0;
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		pio_write(writes[i].off, writes[i].width, writes[i].v);
		model_write(m, writes[i].off, writes[i].width, writes[i].v);
		pio_check_all(m);
		if (i == 0)
			CHECK_EQ("pio byte read at 0x516", inb(TD_SCRATCH + 2), 0x22);
		if (i == 1)
			CHECK_EQ("pio dword after word write at 0x515", inl(TD_SCRATCH), 0x11BEEF44);
		pio_accesses += (i <= 1); /* the extra reads above */
	}

	/* String I/O: each element is one access to the same port. */
	{
		static const uint8_t out[4] = { 0xA1, 0xB2, 0xC3, 0xD4 };
		uint8_t in[4] = { 0 };
		const void *src = out;
		void *dst = in;
		size_t n = 4;

		__asm__ volatile("rep outsb" : "+S"(src), "+c"(n) : "d"((uint16_t)(TD_SCRATCH + 1)) : "memory");
		pio_accesses += 4;
		model_write(m, 1, 1, out[3]);
		pio_check_all(m);
		n = 4;
		__asm__ volatile("rep insb" : "+D"(dst), "+c"(n) : "d"((uint16_t)(TD_SCRATCH + 2)) : "memory");
		pio_accesses += 4;
		for (int i = 0; i < 4; i++)
			CHECK_EQ("pio rep insb", in[i], m[2]);
	}

	c2 = inl(TD_COUNT);
	CHECK_EQ("pio access counter", c2 - c1, pio_accesses + 1);
	serial_puts("kvmlite guest: test=pio passed\n");
	test_exit(0);
}

/* ---- test=mmio --------------------------------------------------------- */

static uint64_t mmio_accesses;

static uint64_t mm_read(uint32_t off, int width)
{
	uint64_t a = X86_TESTDEV_MMIO + off;

	mmio_accesses++;
	switch (width) {
	case 1: return mmio_read8(a);
	case 2: return mmio_read16(a);
	case 4: return mmio_read32(a);
	default: return mmio_read64(a);
	}
}

static void mm_write(uint32_t off, int width, uint64_t v)
{
	uint64_t a = X86_TESTDEV_MMIO + off;

	mmio_accesses++;
	switch (width) {
	case 1: mmio_write8(a, (uint8_t)v); break;
	case 2: mmio_write16(a, (uint16_t)v); break;
	case 4: mmio_write32(a, (uint32_t)v); break;
	default: mmio_write64(a, v); break;
	}
}

static void mmio_check_all(const uint8_t *m)
{
	for (int w = 1; w <= 8; w *= 2)
		for (int off = 0; off + w <= 8; off++)
			CHECK_AT("mmio scratch read", off, w, mm_read((uint32_t)off, w), model_read(m, off, w));
}

static uint64_t pattern(uint32_t off, int width)
{
	uint64_t v = 0;

	for (int i = width - 1; i >= 0; i--)
		v = v << 8 | (((off + (uint32_t)i) & 0xFF) ^ 0xA5);
	return v;
}

void test_mmio(void)
{
	static const struct { int off, width; uint64_t v; } writes[] = {
		{ 0, 8, 0x1122334455667788ULL }, { 3, 2, 0xBEEF }, { 5, 1, 0x99 }, { 1, 4, 0xCAFEF00D },
		{ 6, 2, 0x1234 }, { 4, 4, 0x0A0B0C0D }, { 7, 1, 0xEE }, { 0, 8, 0 },
	};
	static const struct { uint32_t off; int width; } reads[] = {
		{ 0x10, 8 }, { 0x123, 4 }, { 0x7FE, 2 }, { 0xFFF, 1 }, { 0xFF8, 8 }, { 0x155, 8 },
	};
	uint8_t m[8] = { 0 };
	uint64_t c0, c1, c2;

	serial_puts("kvmlite guest: test=mmio\n");
	c0 = mmio_read64(MMIO_COUNT);
	c1 = mmio_read64(MMIO_COUNT);
	CHECK_EQ("mmio counter counts its own reads", c1, c0 + 1);

	mmio_accesses = 0;
	for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		mm_write((uint32_t)writes[i].off, writes[i].width, writes[i].v);
		model_write(m, writes[i].off, writes[i].width, writes[i].v);
		mmio_check_all(m);
	}
	mm_write(0, 4, 0x11223344);
	CHECK_EQ("mmio byte read at 0x002", mm_read(2, 1), 0x22);
	mm_write(1, 2, 0xBEEF);
	CHECK_EQ("mmio dword after word write at 0x001", mm_read(0, 4), 0x11BEEF44);

	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
		CHECK_AT("mmio pattern read", reads[i].off, reads[i].width, mm_read(reads[i].off, reads[i].width),
			 pattern(reads[i].off, reads[i].width));
	mm_write(MMIO_PATTERN, 8, 0);
	mm_write(0x124, 4, 0xFFFFFFFF);
	CHECK_EQ("mmio pattern is read-only", mm_read(MMIO_PATTERN, 8), pattern(MMIO_PATTERN, 8));
	CHECK_EQ("mmio pattern is read-only", mm_read(0x123, 4), pattern(0x123, 4));

	c2 = mmio_read64(MMIO_COUNT);
	CHECK_EQ("mmio access counter", c2 - c1, mmio_accesses + 1);
	serial_puts("kvmlite guest: test=mmio passed\n");
	test_exit(0);
}

/* ---- test=serial ------------------------------------------------------- */

#define COM1       X86_PORT_COM1
#define UART_LCR   (COM1 + 3)
#define UART_LSR   (COM1 + 5)
#define UART_SCR   (COM1 + 7)
#define LSR_DR     0x01
#define LSR_THRE   0x20
#define LSR_TEMT   0x40

static void serial_wait_idle(void)
{
	for (unsigned i = 0; i < 10000000 && (inb(UART_LSR) & (LSR_THRE | LSR_TEMT)) != (LSR_THRE | LSR_TEMT); i++)
		cpu_relax();
}

void test_serial(void)
{
	serial_puts("kvmlite guest: test=serial\n");

	for (int v = 0; v < 256; v += 0x55) {
		outb(UART_SCR, (uint8_t)(v ^ 0x3C));
		CHECK_EQ("serial scratch register", inb(UART_SCR), v ^ 0x3C);
	}

	serial_wait_idle();
	outb(UART_LCR, 0x83); /* DLAB */
	CHECK_EQ("serial LCR with DLAB", inb(UART_LCR), 0x83);
	outb(COM1 + 0, 0x34);
	outb(COM1 + 1, 0x12);
	CHECK_EQ("serial divisor latch low", inb(COM1 + 0), 0x34);
	CHECK_EQ("serial divisor latch high", inb(COM1 + 1), 0x12);
	outb(COM1 + 0, 0x01); /* back to 115200 */
	outb(COM1 + 1, 0x00);
	outb(UART_LCR, 0x03);
	CHECK_EQ("serial LCR without DLAB", inb(UART_LCR), 0x03);
	CHECK_EQ("serial IER after DLAB cleared", inb(COM1 + 1), 0x00);

	serial_wait_idle();
	CHECK_EQ("serial LSR idle (THRE|TEMT)", inb(UART_LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);

	serial_puts("kvmlite guest: echo\n");
	for (;;) {
		char c;

		while (!(inb(UART_LSR) & LSR_DR))
			cpu_relax();
		c = (char)inb(COM1);
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		serial_putc(c);
		if (c == '\n')
			break;
	}
	serial_puts("kvmlite guest: test=serial passed\n");
	serial_wait_idle();
	test_exit(0);
}

void test_exit_code(void)
{
	test_exit(42);
}

void test_spin(void)
{
	serial_puts("kvmlite guest: spinning\n");
	for (;;)
		cpu_relax();
}

/* ---- test=fallback ------------------------------------------------------
 * Instructions KVM's own emulator gives up on (Linux 6.1,
 * arch/x86/kvm/emulate.c: popcnt, ldmxcsr, stmxcsr, xsave, xsaveopt,
 * xrstor and xsavec are not in its tables; fxsave/fxrstor refuse 64-bit
 * mode; cmpxchg16b is refused at execution) with their memory operand on
 * the test device's MMIO, so each one reaches kvmlite's fallback. The
 * host checks the fallback counts for the names printed at the end. */

#define CR0_MP      (1ull << 1)
#define CR0_EM      (1ull << 2)
#define CR0_TS      (1ull << 3)
#define CR0_NE      (1ull << 5)
#define CR4_OSFXSR  (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define CR4_OSXSAVE (1ull << 18)
#define PTE_P_RW    0x003ull
#define PTE_UC      0x018ull /* PCD | PWT */

/* A 4 KiB-page window over the unused identity mapping of the MMIO hole's
 * first 2 MiB: RAM page, test device page, RAM page, so an operand can
 * straddle RAM and MMIO. */
#define WIN         X86_MMIO_HOLE_START
#define WIN_RAM0    (WIN + 0x0000)
#define WIN_MMIO    (WIN + 0x1000)
#define WIN_RAM1    (WIN + 0x2000)

static uint64_t fb_pt[512] __attribute__((aligned(4096)));
static uint8_t fb_ram[2][4096] __attribute__((aligned(4096)));
static uint8_t fb_area[512] __attribute__((aligned(64))); /* native fxsave output */
static char fb_done[160];

static void fb_exercised(const char *name)
{
	size_t n = strlen(fb_done), m = strlen(name);

	if (n + m + 2 < sizeof(fb_done)) {
		fb_done[n] = ' ';
		memcpy(fb_done + n + 1, name, m + 1);
	}
}

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static uint8_t pat8(uint64_t off)
{
	return (uint8_t)((off & 0xFF) ^ 0xA5);
}

static uint64_t soft_popcount(uint64_t v)
{
	uint64_t n = 0;

	for (; v; v >>= 1)
		n += v & 1;
	return n;
}

static uint64_t load_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void store_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static void fb_map_window(void)
{
	uint64_t cr3, *pml4, *pdpt, *pd;
	const uint64_t addr = 0x000FFFFFFFFFF000ull;

	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	pml4 = phys_ptr(cr3 & addr);
	pdpt = phys_ptr(pml4[0] & addr);
	pd = phys_ptr(pdpt[WIN >> 30] & addr);
	fb_pt[0] = (uint64_t)(uintptr_t)fb_ram[0] | PTE_P_RW;
	fb_pt[1] = X86_TESTDEV_MMIO | PTE_P_RW | PTE_UC;
	fb_pt[2] = (uint64_t)(uintptr_t)fb_ram[1] | PTE_P_RW;
	pd[(WIN >> 21) & 511] = (uint64_t)(uintptr_t)fb_pt | PTE_P_RW;
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory"); /* flush the 2 MiB entry */
}

static void fb_fpu_enable(bool xsave)
{
	uint64_t cr0, cr4;

	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 = (cr0 & ~(CR0_EM | CR0_TS)) | CR0_MP | CR0_NE;
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT | (xsave ? CR4_OSXSAVE : 0);
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));
	if (xsave) /* XCR0 = x87 | SSE */
		__asm__ volatile("xsetbv" : : "c"(0), "a"(3), "d"(0));
	__asm__ volatile("fninit");
}

static void ldmxcsr_ram(uint32_t v)
{
	__asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static uint32_t stmxcsr_ram(void)
{
	uint32_t v;
	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}

static void fxsave_ram(void)
{
	memset(fb_area, 0, 512);
	__asm__ volatile("fxsave (%0)" : : "r"(fb_area) : "memory");
}

/* x87 state with a known image: FCW 0x027F, one value pushed (TOP 7:
 * FSW 0x3800, abridged FTW 0x80). */
static void x87_known_state(void)
{
	static const uint16_t fcw = 0x027F;

	__asm__ volatile("fninit; fldcw %0; fld1" : : "m"(fcw));
}
#define X87_KNOWN_IMAGE 0x803800027Full /* FCW, FSW, FTW: bytes 0-4 */

static void fb_popcnt(void)
{
	static const uint64_t vals[] = { 0xF0F0000012348001ull, 0, ~0ull, 0x8000000000010000ull };
	const uint64_t a = X86_TESTDEV_MMIO + 0x000;

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		uint64_t v = vals[i], r;
		bool zf;

		mmio_write64(a, v);
		r = 0x5555;
		__asm__ volatile("popcntq (%2), %0" : "+r"(r), "=@ccz"(zf) : "r"(a) : "memory");
		CHECK_EQ("popcnt 64-bit", r, soft_popcount(v));
		CHECK_EQ("popcnt 64-bit ZF", zf, v == 0);
		r = ~0ull; /* a 32-bit result zero-extends */
		__asm__ volatile("popcntl (%2), %k0" : "+r"(r), "=@ccz"(zf) : "r"(a) : "memory");
		CHECK_EQ("popcnt 32-bit", r, soft_popcount((uint32_t)v));
		CHECK_EQ("popcnt 32-bit ZF", zf, (uint32_t)v == 0);
		r = ~0ull; /* a 16-bit one keeps the upper bits */
		__asm__ volatile("popcntw (%2), %w0" : "+r"(r), "=@ccz"(zf) : "r"(a) : "memory");
		CHECK_EQ("popcnt 16-bit", r, (~0ull << 16) | soft_popcount((uint16_t)v));
		CHECK_EQ("popcnt 16-bit ZF", zf, (uint16_t)v == 0);
	}
	/* Misaligned, across an 8-byte boundary of the read-only pattern. */
	{
		uint64_t r;
		__asm__ volatile("popcntq (%1), %0" : "=r"(r) : "r"(X86_TESTDEV_MMIO + 0x123) : "memory");
		CHECK_EQ("popcnt 64-bit misaligned", r, soft_popcount(pattern(0x123, 8)));
	}
	fb_exercised("popcnt");
}

static void fb_mxcsr(void)
{
	const uint64_t a = X86_TESTDEV_MMIO + 0x000;

	mmio_write64(a, 0xAABBCCDD00007F81ull); /* RC = 11, all masked, IE set */
	__asm__ volatile("ldmxcsr (%0)" : : "r"(a) : "memory");
	CHECK_EQ("ldmxcsr from MMIO", stmxcsr_ram(), 0x7F81);
	fb_exercised("ldmxcsr");

	ldmxcsr_ram(0x3F80);
	mmio_write64(a, 0x1122334455667788ull);
	__asm__ volatile("stmxcsr (%0)" : : "r"(a) : "memory");
	CHECK_EQ("stmxcsr to MMIO (4 bytes)", mmio_read64(a), 0x1122334400003F80ull);
	ldmxcsr_ram(0x1F80);
	fb_exercised("stmxcsr");
}

static void fb_fxsave_fxrstor(void)
{
	const uint64_t a = X86_TESTDEV_MMIO + 0x000;
	uint64_t c0, c1;

	/* fxsave writes bytes 0-415: 52 device accesses of 8 bytes. */
	x87_known_state();
	mmio_write64(a, ~0ull);
	c0 = mmio_read64(MMIO_COUNT);
	__asm__ volatile("fxsave (%0)" : : "r"(a) : "memory");
	c1 = mmio_read64(MMIO_COUNT);
	CHECK_EQ("fxsave to MMIO: FCW FSW FTW", mmio_read64(a) & 0xFFFFFFFFFFull, X87_KNOWN_IMAGE);
	CHECK_EQ("fxsave to MMIO: 8-byte device accesses", c1 - c0 - 1, 416 / 8);
	fb_exercised("fxsave");

	/* fxrstor from the window: bytes 0-31 (control, MXCSR) from RAM,
	 * 32-415 (ST0-7, XMM0-15) from the device: ST0 is the scratch
	 * register (and the counter), the rest the pattern. */
	{
		uint8_t *img = fb_ram[0] + 4096 - 32;
		const uint64_t st0 = 0xC001D00DFEEDF00Dull;

		memset(img, 0, 32);
		store_le(img + 0, 0x037F, 2); /* FCW */
		img[4] = 0xFF;                /* abridged FTW: all valid */
		store_le(img + 24, 0x5F80, 4); /* MXCSR: RC = 10 */
		mmio_write64(a, st0);
		__asm__ volatile("fxrstor (%0)" : : "r"(WIN_MMIO - 32) : "memory");
		fxsave_ram();
		CHECK_EQ("fxrstor: MXCSR from RAM", load_le(fb_area + 24, 4), 0x5F80);
		CHECK_EQ("fxrstor: FCW from RAM", load_le(fb_area, 2), 0x037F);
		CHECK_EQ("fxrstor: ST0 from the scratch register", load_le(fb_area + 32, 8), st0);
		for (int i = 1; i < 8; i++)
			for (int j = 0; j < 10; j++)
				CHECK_AT("fxrstor: ST(i) from the pattern", 32 + 16 * i + j, 1,
					 fb_area[32 + 16 * i + j], pat8((uint64_t)(16 * i + j)));
		for (int j = 160; j < 416; j++)
			CHECK_AT("fxrstor: XMM from the pattern", j, 1, fb_area[j], pat8((uint64_t)(j - 32)));
		__asm__ volatile("fninit");
		ldmxcsr_ram(0x1F80);
		fb_exercised("fxrstor");
	}
}

/* XCR0 = x87|SSE; every xsave* here saves x87 only (EDX:EAX = 1). */
static void fb_xsave_xrstor(uint32_t xsave_ext)
{
	static const struct { const char *name; uint32_t need; } kinds[] = {
		{ "xsave", 0 }, { "xsaveopt", 1u << 0 }, { "xsavec", 1u << 1 },
	};
	const uint64_t a = X86_TESTDEV_MMIO + 0x000;

	for (int k = 0; k < 3; k++) {
		if (kinds[k].need && !(xsave_ext & kinds[k].need))
			continue;
		x87_known_state();
		mmio_write64(a, ~0ull);
		if (k == 0)
			__asm__ volatile("xsave (%0)" : : "r"(a), "a"(1), "d"(0) : "memory");
		else if (k == 1)
			__asm__ volatile("xsaveopt (%0)" : : "r"(a), "a"(1), "d"(0) : "memory");
		else
			__asm__ volatile("xsavec (%0)" : : "r"(a), "a"(1), "d"(0) : "memory");
		CHECK_AT("xsave* to MMIO: FCW FSW FTW", k, 8, mmio_read64(a) & 0xFFFFFFFFFFull, X87_KNOWN_IMAGE);
		fb_exercised(kinds[k].name);
	}

	/* xrstor from the window's device page at 0xF00: the legacy area's
	 * first 256 bytes (all of x87) come from the pattern, the rest and
	 * the header from the RAM page after it. */
	{
		uint8_t *rest = fb_ram[1];

		memset(rest, 0, 512);
		store_le(rest + 256, 1, 8); /* XSTATE_BV = x87 (at area + 512) */
		ldmxcsr_ram(0x3F80);
		__asm__ volatile("fninit");
		__asm__ volatile("xrstor (%0)" : : "r"(WIN_MMIO + 0xF00), "a"(1), "d"(0) : "memory");
		fxsave_ram(); /* fxsave and fninit do not wait: pending exceptions stay quiet */
		__asm__ volatile("fninit");
		for (int i = 0; i < 8; i++) {
			for (int j = 0; j < 10; j++) {
				int off = 32 + 16 * i + j;
				CHECK_AT("xrstor: ST(i) from the pattern", off, 1, fb_area[off],
					 pat8(0xF00u + (unsigned)off));
			}
		}
		CHECK_EQ("xrstor without SSE keeps MXCSR", stmxcsr_ram(), 0x3F80);
		ldmxcsr_ram(0x1F80);
		fb_exercised("xrstor");
	}
}

static void fb_cmpxchg16b(void)
{
	const uint64_t a = X86_TESTDEV_MMIO + 0x000, p = X86_TESTDEV_MMIO + 0x020;
	const uint64_t s = 0x0123456789ABCDEFull;
	uint64_t rax, rdx;
	bool zf;

	/* Mismatch on the scratch register: RAX gets it, memory unchanged. */
	mmio_write64(a, s);
	rax = ~s, rdx = 0;
	__asm__ volatile("lock cmpxchg16b (%4)"
			 : "+a"(rax), "+d"(rdx), "=@ccz"(zf)
			 : "b"(1ull), "r"(a), "c"(2ull)
			 : "memory");
	CHECK_EQ("cmpxchg16b mismatch: ZF", zf, 0);
	CHECK_EQ("cmpxchg16b mismatch: RAX", rax, s);
	CHECK_EQ("cmpxchg16b mismatch: memory unchanged", mmio_read64(a), s);

	/* On the read-only pattern: equal (ZF=1, the write is dropped), then
	 * unequal in the high half (RDX:RAX loaded). */
	rax = pattern(0x20, 8), rdx = pattern(0x28, 8);
	__asm__ volatile("lock cmpxchg16b (%4)"
			 : "+a"(rax), "+d"(rdx), "=@ccz"(zf)
			 : "b"(0ull), "r"(p), "c"(0ull)
			 : "memory");
	CHECK_EQ("cmpxchg16b match: ZF", zf, 1);
	CHECK_EQ("cmpxchg16b match: RAX kept", rax, pattern(0x20, 8));
	CHECK_EQ("cmpxchg16b match: RDX kept", rdx, pattern(0x28, 8));
	rax = pattern(0x20, 8), rdx = 0;
	__asm__ volatile("lock cmpxchg16b (%4)"
			 : "+a"(rax), "+d"(rdx), "=@ccz"(zf)
			 : "b"(0ull), "r"(p), "c"(0ull)
			 : "memory");
	CHECK_EQ("cmpxchg16b high mismatch: ZF", zf, 0);
	CHECK_EQ("cmpxchg16b high mismatch: RDX", rdx, pattern(0x28, 8));
	fb_exercised("cmpxchg16b");

	/* cmpxchg8b: KVM's emulator does this one itself (no fallback
	 * expected, none required): the result must be right either way. */
	mmio_write64(a, s);
	rax = (uint32_t)s, rdx = s >> 32;
	__asm__ volatile("lock cmpxchg8b (%4)"
			 : "+a"(rax), "+d"(rdx), "=@ccz"(zf)
			 : "b"(0x55667788ull), "r"(a), "c"(0x11223344ull)
			 : "memory");
	CHECK_EQ("cmpxchg8b match: ZF", zf, 1);
	CHECK_EQ("cmpxchg8b match: memory", mmio_read64(a), 0x1122334455667788ull);
}

void test_fallback(void)
{
	uint32_t r1[4], rd[4] = { 0 };
	bool xsave;

	serial_puts("kvmlite guest: test=fallback\n");
	cpuid(1, 0, r1);
	xsave = r1[2] & (1u << 26);
	if (xsave)
		cpuid(0xD, 1, rd);
	fb_map_window();
	fb_fpu_enable(xsave);

	if (r1[2] & (1u << 23))
		fb_popcnt();
	fb_mxcsr();
	fb_fxsave_fxrstor();
	if (xsave)
		fb_xsave_xrstor(rd[0]);
	if (r1[2] & (1u << 13))
		fb_cmpxchg16b();

	serial_puts("kvmlite guest: fallback exercised:");
	serial_puts(fb_done);
	serial_puts("\nkvmlite guest: test=fallback passed\n");
	test_exit(0);
}
