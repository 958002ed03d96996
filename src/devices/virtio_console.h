/* virtio-console (virtio 1.2, 5.3) without MULTIPORT: one port, the
 * guest's hvc0, made the console with --console virtio. receiveq 0 carries
 * host terminal input to the guest, transmitq 1 the guest's output to the
 * console fd. The 16550 stays, silent. */
#ifndef KVMLITE_VIRTIO_CONSOLE_H
#define KVMLITE_VIRTIO_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"

#define VIRTIO_CONSOLE_F_SIZE    0

#define CONSOLE_QUEUE_SIZE       64
#define CONSOLE_RX_QUEUE         0
#define CONSOLE_TX_QUEUE         1
#define CONSOLE_INPUT_MAX        4096  /* host input held until the guest posts buffers */
#define CONSOLE_WRITE_CHUNK      4096  /* PIPE_BUF: a write after POLLOUT does not block */

struct virtio_console_config {
	uint16_t cols;
	uint16_t rows;
	uint32_t max_nr_ports;
	uint32_t emerg_wr;
} __attribute__((packed));

enum console_stat {
	CONSOLE_STAT_TX_BYTES,
	CONSOLE_STAT_RX_BYTES,
	CONSOLE_STAT_INPUT_DROPPED,   /* host input bytes beyond CONSOLE_INPUT_MAX */
	CONSOLE_STAT_OUTPUT_DROPPED,  /* guest output bytes the console fd refused (error) */
	CONSOLE_STAT_OUTPUT_STALLS,   /* times the console fd was full: waited for POLLOUT */
	CONSOLE_STAT_MAX
};

struct virtio_console {
	struct virtio_device vdev;
	struct virtio_console_config config;
	int out_fd;
	bool out_pollable;     /* a pipe, tty or socket: writes may block, so poll first */
	bool out_watched;      /* waiting for EPOLLOUT on out_fd */
	bool output_warned;

	/* Host input not yet given to the guest (a ring), under vdev.lock. */
	uint8_t input[CONSOLE_INPUT_MAX];
	size_t input_head, input_len;
	bool input_warned;

	/* The transmit chain being written when out_fd filled up. */
	bool tx_pending;
	uint64_t tx_done;      /* bytes of it written */
	struct virtq_req tx_req;
	struct virtq_req rx_req;

	uint64_t stats[CONSOLE_STAT_MAX];  /* atomics */
};

/* Fills con->vdev for output to out_fd; cols/rows 0: no VIRTIO_CONSOLE_F_SIZE.
 * Does not add it to a VM. */
void virtio_console_setup(struct virtio_console *con, int out_fd, uint16_t cols, uint16_t rows);
/* Host input (any thread): queued for the receive queue, the excess over
 * CONSOLE_INPUT_MAX dropped. Returns the bytes taken. */
size_t virtio_console_input(struct virtio_console *con, const uint8_t *buf, size_t len);

#endif
