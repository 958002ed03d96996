#include "serial.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "layout.h"
#include "log.h"
#include "vm.h"

enum {
	UART_RBR_THR = 0, UART_IER = 1, UART_IIR_FCR = 2, UART_LCR = 3,
	UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};
#define IER_RDI   0x01 /* received data available */
#define IER_THRI  0x02 /* transmitter holding register empty */
#define IER_RLSI  0x04 /* receiver line status */
#define IER_MSI   0x08 /* modem status */
#define IIR_NONE  0x01
#define IIR_MSI   0x00
#define IIR_THRI  0x02
#define IIR_RDI   0x04
#define IIR_RLSI  0x06
#define IIR_FIFO  0xC0 /* FIFOs enabled: a 16550A */
#define LCR_DLAB  0x80
#define MCR_DTR   0x01
#define MCR_RTS   0x02
#define MCR_OUT1  0x04
#define MCR_OUT2  0x08
#define MCR_LOOP  0x10
#define LSR_DR    0x01
#define LSR_OE    0x02
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define MSR_CTS   0x10
#define MSR_DSR   0x20
#define MSR_RI    0x40
#define MSR_DCD   0x80
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

void uart_init(struct uart *u)
{
	u->ier = u->lcr = u->scr = u->fcr = 0;
	u->mcr = MCR_OUT2;
	u->lsr = LSR_THRE | LSR_TEMT;
	u->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	u->dll = 0x0C; /* 9600 baud, as after a PC BIOS */
	u->dlm = 0;
	u->thr_interrupt = false;
	u->rx_head = u->rx_len = 0;
	u->irq_level = 0;
}

uint8_t uart_iir(const struct uart *u)
{
	uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
	if ((u->ier & IER_RLSI) && (u->lsr & LSR_OE))
		return fifo | IIR_RLSI;
	if ((u->ier & IER_RDI) && u->rx_len)
		return fifo | IIR_RDI;
	if ((u->ier & IER_THRI) && u->thr_interrupt)
		return fifo | IIR_THRI;
	return fifo | IIR_NONE;
}

static void uart_update_irq(struct uart *u)
{
	int level = !(uart_iir(u) & IIR_NONE);
	if (level != u->irq_level) {
		u->irq_level = level;
		if (u->irq)
			u->irq(u->opaque, level);
	}
}

static void uart_rx_push(struct uart *u, uint8_t byte)
{
	if (u->rx_len == UART_RX_FIFO_SIZE) {
		u->lsr |= LSR_OE;
		return;
	}
	u->rx[(u->rx_head + u->rx_len) % UART_RX_FIFO_SIZE] = byte;
	u->rx_len++;
}

static uint8_t uart_modem_status(const struct uart *u)
{
	if (!(u->mcr & MCR_LOOP))
		return u->msr;
	/* Loopback: the modem outputs come back as inputs. */
	uint8_t msr = 0;
	if (u->mcr & MCR_RTS) msr |= MSR_CTS;
	if (u->mcr & MCR_DTR) msr |= MSR_DSR;
	if (u->mcr & MCR_OUT1) msr |= MSR_RI;
	if (u->mcr & MCR_OUT2) msr |= MSR_DCD;
	return msr;
}

uint8_t uart_read(struct uart *u, unsigned offset)
{
	uint8_t v = 0;
	switch (offset) {
	case UART_RBR_THR:
		if (u->lcr & LCR_DLAB)
			return u->dll;
		if (u->rx_len) {
			v = u->rx[u->rx_head];
			u->rx_head = (u->rx_head + 1) % UART_RX_FIFO_SIZE;
			u->rx_len--;
		}
		break;
	case UART_IER:
		return (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
	case UART_IIR_FCR:
		v = uart_iir(u);
		if ((v & 0x0F) == IIR_THRI)
			u->thr_interrupt = false; /* reading IIR acknowledges THRE */
		break;
	case UART_LCR:
		return u->lcr;
	case UART_MCR:
		return u->mcr;
	case UART_LSR:
		v = u->lsr | (u->rx_len ? LSR_DR : 0);
		u->lsr &= (uint8_t)~LSR_OE;
		break;
	case UART_MSR:
		return uart_modem_status(u);
	case UART_SCR:
		return u->scr;
	default:
		return 0xFF;
	}
	uart_update_irq(u);
	return v;
}

void uart_write(struct uart *u, unsigned offset, uint8_t value)
{
	switch (offset) {
	case UART_RBR_THR:
		if (u->lcr & LCR_DLAB) {
			u->dll = value;
			return;
		}
		if (u->mcr & MCR_LOOP)
			uart_rx_push(u, value);
		else if (u->tx)
			u->tx(u->opaque, value);
		/* Sent at once: the holding register is empty again. */
		u->thr_interrupt = true;
		break;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = value;
			return;
		}
		/* Enabling THRI while the THR is empty raises it at once. */
		if (!(u->ier & IER_THRI) && (value & IER_THRI))
			u->thr_interrupt = true;
		u->ier = value & 0x0F;
		break;
	case UART_IIR_FCR:
		u->fcr = value & (FCR_ENABLE | 0xC0);
		if (value & FCR_CLEAR_RX)
			u->rx_head = u->rx_len = 0;
		break;
	case UART_LCR:
		u->lcr = value;
		return;
	case UART_MCR:
		u->mcr = value & 0x1F;
		break;
	case UART_SCR:
		u->scr = value;
		return;
	default: /* LSR and MSR are read-only */
		return;
	}
	uart_update_irq(u);
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t room = UART_RX_FIFO_SIZE - u->rx_len;
	size_t n = len < room ? len : room;
	for (size_t i = 0; i < n; i++)
		uart_rx_push(u, buf[i]);
	uart_update_irq(u);
	return n;
}

/* The device: COM1 on the port bus, output to the VM's console fd. */

struct serial_device {
	struct uart uart;
	pthread_mutex_t lock; /* vCPU threads and the input thread */
	struct vm *vm;
	int irq;
};

static void serial_tx(void *opaque, uint8_t byte)
{
	struct serial_device *s = opaque;
	/* With --console virtio the console is hvc0: ttyS0 stays, silent. */
	if (s->vm->cfg->console != CONSOLE_SERIAL || s->vm->console_out_fd < 0)
		return;
	while (write(s->vm->console_out_fd, &byte, 1) < 0 && errno == EINTR)
		;
}

static void serial_irq(void *opaque, int level)
{
	struct serial_device *s = opaque;
	vm_irq_line(s->vm, (uint32_t)s->irq, level);
}

static void serial_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial_device *s = opaque;
	pthread_mutex_lock(&s->lock);
	/* Byte registers; a wider access touches consecutive registers. */
	for (uint32_t i = 0; i < len && offset + i < 8; i++) {
		if (is_write)
			uart_write(&s->uart, (unsigned)(offset + i), data[i]);
		else
			data[i] = uart_read(&s->uart, (unsigned)(offset + i));
	}
	pthread_mutex_unlock(&s->lock);
}

static void serial_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct serial_device *s = opaque;
	pthread_mutex_lock(&s->lock);
	size_t taken = uart_receive(&s->uart, buf, len);
	pthread_mutex_unlock(&s->lock);
	if (taken < len)
		log_warn("serial: guest is not reading its console, %zu input bytes dropped", len - taken);
}

static void serial_free(void *opaque)
{
	struct serial_device *s = opaque;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int serial_init(struct vm *vm)
{
	struct serial_device *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->vm = vm;
	s->irq = X86_IRQ_COM1;
	pthread_mutex_init(&s->lock, NULL);
	uart_init(&s->uart);
	s->uart.tx = serial_tx;
	s->uart.irq = serial_irq;
	s->uart.opaque = s;
	int err = vm_on_destroy(vm, serial_free, s);
	if (err) {
		serial_free(s);
		return err;
	}
	if (vm->cfg->console == CONSOLE_SERIAL) {
		vm->console_input = serial_input;
		vm->console_opaque = s;
	}
	return bus_register(&vm->pio, X86_PORT_COM1, 8, serial_io, s, "serial");
}

DEVICE_REGISTER(serial, serial_init);
