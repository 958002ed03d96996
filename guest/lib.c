/* Serial console on COM1, the few string functions the compiler may call,
 * the exception IDT, and failure reporting (pvpanic). */
#include "guest.h"

#define UART_RBR 0 /* DLAB=0 */
#define UART_THR 0
#define UART_IER 1
#define UART_DLL 0 /* DLAB=1 */
#define UART_DLM 1
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void serial_init(void)
{
	/* No FCR write: changing the FIFO mode resets it and would drop input
	 * the host may already have queued (test=serial). */
	outb(X86_PORT_COM1 + UART_IER, 0x00);
	outb(X86_PORT_COM1 + UART_LCR, 0x80); /* DLAB */
	outb(X86_PORT_COM1 + UART_DLL, 0x01); /* 115200 baud */
	outb(X86_PORT_COM1 + UART_DLM, 0x00);
	outb(X86_PORT_COM1 + UART_LCR, 0x03); /* 8N1 */
	outb(X86_PORT_COM1 + UART_MCR, 0x03); /* DTR | RTS */
}

void serial_putc(char c)
{
	/* Bounded: a missing UART reads 0xFF (THRE set) anyway. */
	for (unsigned i = 0; i < 1000000 && !(inb(X86_PORT_COM1 + UART_LSR) & UART_LSR_THRE); i++)
		cpu_relax();
	outb(X86_PORT_COM1 + UART_THR, (uint8_t)c);
}

void serial_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

void serial_put_dec(uint64_t v)
{
	char buf[21];
	int i = sizeof(buf);

	buf[--i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	serial_puts(&buf[i]);
}

void serial_put_hex(uint64_t v)
{
	char buf[19];
	int i = sizeof(buf);

	buf[--i] = 0;
	do {
		buf[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[--i] = 'x';
	buf[--i] = '0';
	serial_puts(&buf[i]);
}

void guest_halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void guest_fail(const char *reason)
{
	serial_puts("kvmlite guest: FAIL: ");
	serial_puts(reason);
	serial_putc('\n');
	outb(X86_PORT_PVPANIC, 1); /* "guest panicked" */
	guest_halt();
}

/* Exceptions: none is expected, so any of them is a failure worth a line
 * on the console rather than a silent triple fault. */
struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[32] __attribute__((aligned(16)));
extern const char exception_stubs[];

void guest_idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

	if (!idt[0].type) {
		/* Built once by the BSP, before any AP runs. */
		for (int i = 0; i < 32; i++) {
			uint64_t a = (uint64_t)(uintptr_t)exception_stubs + 16 * i;
			idt[i] = (struct idt_entry){ .off_lo = (uint16_t)a, .sel = 0x18, .type = 0x8E,
				.off_mid = (uint16_t)(a >> 16), .off_hi = (uint32_t)(a >> 32) };
		}
	}
	__asm__ volatile("lidt %0" : : "m"(desc));
}

void exception_handler(uint64_t vector, const uint64_t *frame);
void exception_handler(uint64_t vector, const uint64_t *frame)
{
	/* Vectors that push an error code: #DF #TS #NP #SS #GP #PF #AC #CP #VC #SX */
	const uint32_t has_error = (1u << 8) | (1u << 10) | (1u << 11) | (1u << 12) | (1u << 13) |
		(1u << 14) | (1u << 17) | (1u << 21) | (1u << 29) | (1u << 30);
	int err = (has_error >> vector) & 1;
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	serial_puts("kvmlite guest: exception ");
	serial_put_dec(vector);
	serial_puts(" rip=");
	serial_put_hex(frame[err]);
	if (err) {
		serial_puts(" error=");
		serial_put_hex(frame[0]);
	}
	if (vector == 14) {
		serial_puts(" cr2=");
		serial_put_hex(cr2);
	}
	serial_putc('\n');
	guest_fail("unexpected exception");
}

/* The compiler may emit calls to these even when freestanding. */
void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + n || n == 0)
		return memcpy(dst, src, n);
	/* Overlapping with dst above src: copy backwards. */
	d += n - 1;
	s += n - 1;
	__asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}
