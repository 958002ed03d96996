/* virtio-console: --console virtio makes the guest's hvc0 the console.
 *
 * Output: each transmit chain is written to the console fd (stdout). A
 * pipe or terminal whose reader stalls must not block the worker, so
 * before each write of at most PIPE_BUF bytes the worker polls the fd;
 * when it is full the chain stays popped (the driver waits for it) and the
 * worker waits for EPOLLOUT on the fd instead. A regular file is written
 * straight away. If the fd fails (the reader went away), the guest's
 * output is dropped and counted, and the guest goes on.
 *
 * Input: the main thread hands terminal input to virtio_console_input(),
 * which queues it (up to CONSOLE_INPUT_MAX bytes, the rest is dropped) and
 * kicks the receive queue, so the worker moves it into the guest's
 * buffers. Input typed before the driver posted buffers waits there. */
#include "virtio_console.h"

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "util.h"
#include "vm.h"

_Static_assert(sizeof(struct virtio_console_config) == 12, "virtio_console_config layout (5.3.4)");

static const char *const console_stat_names[CONSOLE_STAT_MAX] = {
	[CONSOLE_STAT_TX_BYTES] = "tx_bytes",
	[CONSOLE_STAT_RX_BYTES] = "rx_bytes",
	[CONSOLE_STAT_INPUT_DROPPED] = "input_dropped",
	[CONSOLE_STAT_OUTPUT_DROPPED] = "output_dropped",
	[CONSOLE_STAT_OUTPUT_STALLS] = "output_stalls",
};

static void stat_add(struct virtio_console *con, enum console_stat stat, uint64_t n)
{
	__atomic_fetch_add(&con->stats[stat], n, __ATOMIC_RELAXED);
}

/* --- Output ------------------------------------------------------------------ */

/* The part of the iovecs at offset, at most max bytes, inside one iovec. */
static struct iovec iov_chunk(const struct iovec *iov, int nr, uint64_t offset, size_t max)
{
	for (int i = 0; i < nr; i++) {
		if (offset < iov[i].iov_len)
			return (struct iovec){ (uint8_t *)iov[i].iov_base + offset, MIN(iov[i].iov_len - offset, max) };
		offset -= iov[i].iov_len;
	}
	return (struct iovec){ NULL, 0 };
}

static void drop_output(struct virtio_console *con, const char *why)
{
	uint64_t left = con->tx_req.out_len - con->tx_done;
	stat_add(con, CONSOLE_STAT_OUTPUT_DROPPED, left);
	if (!con->output_warned)
		log_warn("%s: guest console output dropped: %s", con->vdev.name, why);
	con->output_warned = true;
	con->tx_done = con->tx_req.out_len;
}

/* Writes what is left of the pending transmit chain: 0 when it is all out
 * (or dropped), -EAGAIN when the fd is full. */
static int write_pending(struct virtio_console *con)
{
	const struct virtq_req *req = &con->tx_req;
	while (con->tx_done < req->out_len) {
		if (con->out_pollable) {
			struct pollfd p = { .fd = con->out_fd, .events = POLLOUT };
			int r = poll(&p, 1, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				return -EAGAIN;
			if (r < 0 || (p.revents & (POLLERR | POLLNVAL))) {
				drop_output(con, "the console fd failed");
				break;
			}
		}
		struct iovec chunk = iov_chunk(req->out, req->nr_out, con->tx_done, CONSOLE_WRITE_CHUNK);
		ssize_t n = write(con->out_fd, chunk.iov_base, chunk.iov_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && con->out_pollable)
			return -EAGAIN;
		if (n <= 0) {
			drop_output(con, n < 0 ? strerror(errno) : "nothing written");
			break;
		}
		con->tx_done += (uint64_t)n;
		stat_add(con, CONSOLE_STAT_TX_BYTES, (uint64_t)n);
	}
	return 0;
}

static void console_tx(struct virtio_console *con, struct virtq *vq);

static void out_fd_ready(struct virtio_device *dev, int fd, uint32_t events)
{
	struct virtio_console *con = dev->priv;
	virtio_unwatch_fd(dev, fd);
	con->out_watched = false;
	struct virtq *vq = virtio_queue(dev, CONSOLE_TX_QUEUE);
	if (vq)
		console_tx(con, vq);
}

/* The console fd is full: 0 when the worker will be called once it has
 * room, else an error (the fd cannot be waited for). */
static int wait_writable(struct virtio_console *con)
{
	if (con->out_watched)
		return 0;
	int err = virtio_watch_fd(&con->vdev, con->out_fd, EPOLLOUT, out_fd_ready);
	if (err)
		return err;
	con->out_watched = true;
	stat_add(con, CONSOLE_STAT_OUTPUT_STALLS, 1);
	return 0;
}

static void console_tx(struct virtio_console *con, struct virtq *vq)
{
	bool pushed = false;
	for (;;) {
		if (!con->tx_pending) {
			if (virtq_pop(vq, &con->tx_req))
				break;
			con->tx_pending = true;
			con->tx_done = 0;
		}
		if (write_pending(con) == -EAGAIN) {
			if (wait_writable(con) == 0)
				break;
			/* Cannot wait for it: write the rest blocking. */
			con->out_pollable = false;
			write_pending(con);
		}
		/* Transmit buffers are only read: 0 bytes written. */
		virtq_push(vq, con->tx_req.head, 0);
		con->tx_pending = false;
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify(&con->vdev, CONSOLE_TX_QUEUE);
}

/* --- Input ------------------------------------------------------------------- */

static void console_rx(struct virtio_console *con, struct virtq *vq)
{
	bool pushed = false;
	while (con->input_len) {
		struct virtq_req *req = &con->rx_req;
		if (virtq_pop(vq, req))
			break;
		size_t n = (size_t)MIN((uint64_t)con->input_len, req->in_len);
		size_t first = MIN(n, CONSOLE_INPUT_MAX - con->input_head);
		buf_to_iov(req->in, req->nr_in, 0, con->input + con->input_head, first);
		buf_to_iov(req->in, req->nr_in, first, con->input, n - first);
		con->input_head = (con->input_head + n) % CONSOLE_INPUT_MAX;
		con->input_len -= n;
		if (!con->input_len)
			con->input_head = 0;
		stat_add(con, CONSOLE_STAT_RX_BYTES, n);
		virtq_push(vq, req->head, (uint32_t)n);
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify(&con->vdev, CONSOLE_RX_QUEUE);
}

size_t virtio_console_input(struct virtio_console *con, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&con->vdev.lock);
	size_t n = MIN(len, CONSOLE_INPUT_MAX - con->input_len);
	for (size_t i = 0; i < n; i++)
		con->input[(con->input_head + con->input_len + i) % CONSOLE_INPUT_MAX] = buf[i];
	con->input_len += n;
	if (n < len)
		stat_add(con, CONSOLE_STAT_INPUT_DROPPED, len - n);
	pthread_mutex_unlock(&con->vdev.lock);
	if (n)
		virtio_queue_kick(&con->vdev, CONSOLE_RX_QUEUE);
	return n;
}

/* --- Device ------------------------------------------------------------------ */

static void console_queue_notify(struct virtio_device *dev, int q)
{
	struct virtio_console *con = dev->priv;
	struct virtq *vq = virtio_queue(dev, q);
	if (!vq)
		return;
	if (q == CONSOLE_RX_QUEUE)
		console_rx(con, vq);
	else if (q == CONSOLE_TX_QUEUE)
		console_tx(con, vq);
}

static void console_reset(struct virtio_device *dev)
{
	struct virtio_console *con = dev->priv;
	/* The chain being written belongs to the old rings: forget it. Host
	 * input not given yet is kept for the next driver. */
	con->tx_pending = false;
	if (con->out_watched)
		virtio_unwatch_fd(dev, con->out_fd);
	con->out_watched = false;
}

static void console_destroy(struct virtio_device *dev)
{
	free(dev->priv);
}

static const struct virtio_device_ops console_ops = {
	.queue_notify = console_queue_notify,
	.reset = console_reset,
	.destroy = console_destroy,
};

void virtio_console_setup(struct virtio_console *con, int out_fd, uint16_t cols, uint16_t rows)
{
	struct stat st;
	con->out_fd = out_fd;
	con->out_pollable = !(fstat(out_fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)));
	con->config = (struct virtio_console_config){
		.cols = htole16(cols),
		.rows = htole16(rows),
		.max_nr_ports = htole32(1),
	};
	con->vdev = (struct virtio_device){
		.name = "virtio-console",
		.device_id = VIRTIO_ID_CONSOLE,
		.features = cols && rows ? 1ull << VIRTIO_CONSOLE_F_SIZE : 0,
		.nr_queues = 2,
		.queue_max_size = CONSOLE_QUEUE_SIZE,
		.config = (uint8_t *)&con->config,
		.config_size = sizeof(con->config),
		.ops = &console_ops,
		.priv = con,
	};
}

/* The main thread's terminal input (vm->console_input). */
static void console_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct virtio_console *con = opaque;
	size_t taken = virtio_console_input(con, buf, len);
	if (taken < len && !con->input_warned) {
		con->input_warned = true;
		log_warn("%s: the guest is not reading hvc0; input beyond %d bytes is dropped", con->vdev.name,
			 CONSOLE_INPUT_MAX);
	}
}

static int virtio_console_init(struct vm *vm)
{
	if (vm->cfg->console != CONSOLE_VIRTIO)
		return 0;
	struct virtio_console *con = calloc(1, sizeof(*con));
	if (!con)
		return -ENOMEM;
	int out_fd = vm->console_out_fd >= 0 ? vm->console_out_fd : STDOUT_FILENO;
	struct winsize ws = { 0 };
	if (!isatty(out_fd) || ioctl(out_fd, TIOCGWINSZ, &ws) < 0)
		ws.ws_col = ws.ws_row = 0;
	virtio_console_setup(con, out_fd, ws.ws_col, ws.ws_row);
	int err = virtio_device_add(vm, &con->vdev);
	if (err) {
		if (!con->vdev.added)
			free(con);
		return err;
	}
	vm->console_input = console_input;
	vm->console_opaque = con;
	return stats_add(&vm->stats, con->vdev.name, CONSOLE_STAT_MAX, console_stat_names, stats_read_array,
			 con->stats);
}

DEVICE_REGISTER(virtio_console, virtio_console_init);
