#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "devices/serial.h"

/* Register offsets and bits from the 16550 data sheet. */
enum { THR = 0, RBR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

struct sink {
	char out[64];
	size_t n;
	int level;
	int irq_changes;
};

static void sink_tx(void *opaque, uint8_t b)
{
	struct sink *s = opaque;
	if (s->n < sizeof(s->out))
		s->out[s->n++] = (char)b;
}

static void sink_irq(void *opaque, int level)
{
	struct sink *s = opaque;
	s->level = level;
	s->irq_changes++;
}

static struct uart u;
static struct sink sink;

static int setup(void **state)
{
	(void)state;
	memset(&sink, 0, sizeof(sink));
	uart_init(&u);
	u.tx = sink_tx;
	u.irq = sink_irq;
	u.opaque = &sink;
	return 0;
}

static void test_transmit_and_lsr(void **state)
{
	(void)state;
	assert_int_equal(uart_read(&u, LSR) & 0x60, 0x60); /* THRE | TEMT */
	const char *msg = "hi\n";
	for (const char *p = msg; *p; p++)
		uart_write(&u, THR, (uint8_t)*p);
	assert_int_equal(sink.n, 3);
	assert_memory_equal(sink.out, msg, 3);
	assert_int_equal(sink.irq_changes, 0); /* no interrupts enabled */
}

static void test_divisor_latch_and_scratch(void **state)
{
	(void)state;
	uart_write(&u, LCR, 0x83); /* DLAB, 8N1 */
	uart_write(&u, DLL, 0x01);
	uart_write(&u, DLM, 0x02);
	assert_int_equal(uart_read(&u, DLL), 0x01);
	assert_int_equal(uart_read(&u, DLM), 0x02);
	uart_write(&u, LCR, 0x03);
	assert_int_equal(uart_read(&u, IER), 0); /* IER untouched by DLM writes */
	uart_write(&u, THR, 'x');                /* with DLAB clear it transmits */
	assert_int_equal(sink.n, 1);
	uart_write(&u, SCR, 0xA5);
	assert_int_equal(uart_read(&u, SCR), 0xA5);
}

static void test_receive_raises_and_clears_irq(void **state)
{
	(void)state;
	uart_write(&u, IER, 0x01); /* received data interrupt */
	assert_int_equal(sink.level, 0);
	const uint8_t in[] = "ab";
	assert_int_equal(uart_receive(&u, in, 2), 2);
	assert_int_equal(sink.level, 1);
	assert_int_equal(uart_read(&u, IIR) & 0x0F, 0x04);
	assert_int_equal(uart_read(&u, LSR) & 0x01, 1);
	assert_int_equal(uart_read(&u, RBR), 'a');
	assert_int_equal(sink.level, 1);
	assert_int_equal(uart_read(&u, RBR), 'b');
	assert_int_equal(sink.level, 0);
	assert_int_equal(uart_read(&u, LSR) & 0x01, 0);
	assert_int_equal(uart_read(&u, IIR) & 0x0F, 0x01);
}

static void test_thr_empty_interrupt(void **state)
{
	(void)state;
	uart_write(&u, IER, 0x02); /* enabling THRI with an empty THR raises it */
	assert_int_equal(sink.level, 1);
	assert_int_equal(uart_read(&u, IIR) & 0x0F, 0x02);
	assert_int_equal(sink.level, 0); /* reading IIR acknowledged it */
	uart_write(&u, THR, 'z');
	assert_int_equal(sink.level, 1); /* sent at once: empty again */
}

static void test_fifo_and_loopback(void **state)
{
	(void)state;
	uart_write(&u, FCR, 0x01);
	assert_int_equal(uart_read(&u, IIR) & 0xC0, 0xC0); /* a 16550A */
	uart_write(&u, MCR, 0x1A); /* loop, OUT2, RTS */
	assert_int_equal(uart_read(&u, MSR) & 0xF0, 0x90); /* CTS, DCD */
	uart_write(&u, THR, 'L');
	assert_int_equal(sink.n, 0); /* looped back, not sent */
	assert_int_equal(uart_read(&u, RBR), 'L');
	uart_write(&u, MCR, 0x0B);
	assert_int_equal(uart_read(&u, MSR) & 0xF0, 0xB0);
}

static void test_receive_overflow_is_bounded(void **state)
{
	(void)state;
	static uint8_t big[UART_RX_FIFO_SIZE + 100];
	memset(big, 'q', sizeof(big));
	assert_int_equal(uart_receive(&u, big, sizeof(big)), UART_RX_FIFO_SIZE);
	assert_int_equal(uart_receive(&u, big, 1), 0);
	for (size_t i = 0; i < UART_RX_FIFO_SIZE; i++)
		assert_int_equal(uart_read(&u, RBR), 'q');
	assert_int_equal(uart_read(&u, RBR), 0); /* empty reads 0 */
	assert_int_equal(uart_read(&u, 9), 0xFF); /* out of range offset */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_transmit_and_lsr, setup),
		cmocka_unit_test_setup(test_divisor_latch_and_scratch, setup),
		cmocka_unit_test_setup(test_receive_raises_and_clears_irq, setup),
		cmocka_unit_test_setup(test_thr_empty_interrupt, setup),
		cmocka_unit_test_setup(test_fifo_and_loopback, setup),
		cmocka_unit_test_setup(test_receive_overflow_is_bounded, setup),
	};
	return cmocka_run_group_tests_name("serial", tests, NULL, NULL);
}
