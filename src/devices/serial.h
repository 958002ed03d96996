/* A 16550A UART, the guest's serial console. The register model is pure
 * (no KVM, no fds) so it is unit-tested directly; serial.c also holds the
 * glue that puts COM1 on the port bus. */
#ifndef KVMLITE_SERIAL_H
#define KVMLITE_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UART_RX_FIFO_SIZE 4096 /* larger than a 16550's 16 bytes: input is never dropped while there is room */

struct uart {
	uint8_t ier, lcr, mcr, lsr, msr, scr, fcr;
	uint8_t dll, dlm;
	bool thr_interrupt;      /* THR-empty interrupt pending (cleared by reading IIR or writing THR) */
	uint8_t rx[UART_RX_FIFO_SIZE];
	size_t rx_head, rx_len;
	/* Effects: a byte the guest transmitted, and the interrupt line level. */
	void (*tx)(void *opaque, uint8_t byte);
	void (*irq)(void *opaque, int level);
	void *opaque;
	int irq_level;
};

void uart_init(struct uart *u);
/* One register access at offset 0..7. */
uint8_t uart_read(struct uart *u, unsigned offset);
void uart_write(struct uart *u, unsigned offset, uint8_t value);
/* Host input; returns how many bytes were taken (the rest did not fit). */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);
/* Interrupt identification (IIR) value, without side effects. */
uint8_t uart_iir(const struct uart *u);

#endif
