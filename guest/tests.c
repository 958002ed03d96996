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

static __attribute__((noreturn)) void test_exit(uint32_t code)
{
	outl(TD_EXIT, code);
	/* Still here: no test device. Report as a panic instead. */
	guest_fail(code ? "test failed, and no test device to report it" : "no test device to report success");
}

/* off/width < 0: not an access to a register offset. */
static void check(bool ok, int code, const char *what, int off, int width, uint64_t got, uint64_t want)
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
		check(got_ == want_, __COUNTER__ + 1, what, (int)(off), (int)(width), got_, want_); \
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
