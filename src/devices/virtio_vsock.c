/* virtio-vsock (--vsock cid=N,uds=PATH) with the host side on UNIX sockets,
 * as Firecracker does it:
 *
 *  - host-initiated: a host program connects to PATH and writes
 *    "CONNECT <port>\n"; we open a stream to the guest's port and, once the
 *    guest accepted, answer "OK <host_port>\n" (host_port: an ephemeral
 *    port we assigned); if the guest refuses, the socket is closed.
 *  - guest-initiated: the guest connects to CID 2 port P; we connect to
 *    "PATH_P", where a host program listens; if nobody does, the guest
 *    gets an RST.
 *
 * The packets and the connection state machine are vsock_conn.c (no I/O);
 * this file moves bytes between the virtqueues and the host sockets. All
 * host sockets are non-blocking and edge-triggered on one epoll set of our
 * own, which the transport's worker watches as a single fd (it has room
 * for only a few). Everything runs on that worker under dev->lock.
 *
 * Host bytes go straight from the socket into the guest's rx buffer, never
 * more than the guest's credit; without rx buffers we stop reading until
 * the guest posts some. Guest bytes go straight to the socket; what it
 * does not take waits in the connection's bounded buffer, whose free space
 * is the credit we advertise.
 *
 * PATH: refused if it exists and is not a socket, or if a process listens
 * there; a socket file nobody listens on (left by a crashed run) is
 * replaced. We unlink it at exit if it is still ours. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "util.h"
#include "virtio/virtio.h"
#include "vm.h"
#include "vsock_conn.h"

enum { VSOCK_Q_RX, VSOCK_Q_TX, VSOCK_Q_EVENT, VSOCK_NR_QUEUES };

#define VSOCK_QUEUE_SIZE  256
#define VSOCK_HASH_SIZE   256
#define VSOCK_RST_QUEUE   64      /* RSTs for unknown connections; tx waits while it is full */
#define VSOCK_TICK_NS     (250ull * 1000000)
#define VSOCK_EVENTS      (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

enum vsock_stat {
	ST_CONNS_GUEST,     /* connections the guest opened */
	ST_CONNS_HOST,      /* connections a host program opened (valid CONNECT line) */
	ST_CONNS_ACTIVE,
	ST_CONNS_REFUSED,   /* over VSOCK_MAX_CONNS */
	ST_CONNECT_FAILED,  /* guest connected to a port nobody listens on (PATH_P) */
	ST_BAD_LINES,       /* host programs that did not send a valid CONNECT line in time */
	ST_TX_PACKETS,      /* guest -> host */
	ST_TX_BYTES,
	ST_RX_PACKETS,      /* host -> guest */
	ST_RX_BYTES,
	ST_BAD_PACKETS,     /* dropped: malformed or not from the guest's CID */
	ST_RST_SENT,
	ST_PROTOCOL_ERRORS, /* connections reset because the guest broke the protocol or our credit */
	ST_MAX
};

static const char *const vsock_stat_names[ST_MAX] = {
	"conns_guest", "conns_host", "conns_active", "conns_refused", "connect_failed", "bad_connect_lines",
	"tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "bad_packets", "rst_sent", "protocol_errors",
};

struct vsock_dev {
	struct virtio_device vdev;
	uint8_t config[8];          /* le64 guest_cid */
	uint64_t guest_cid;
	char *uds_path;
	ino_t uds_ino;              /* of the socket we bound, to unlink only ours */

	int listen_fd, epoll_fd, timer_fd;
	bool timer_armed;
	bool listen_paused;         /* out of fds: the listener waits for the next tick */
	/* epoll tags for the fds that are not connections */
	char listen_tag, timer_tag;

	struct vsock_conn *hash[VSOCK_HASH_SIZE];
	struct vsock_conn *conns;                  /* every connection */
	struct vsock_conn *ready_head, *ready_tail;
	struct vsock_conn *graveyard;              /* released, freed at the end of the callback */
	int nr_conns;
	uint32_t last_local_port;

	struct vsock_hdr rsts[VSOCK_RST_QUEUE];
	int rst_head, nr_rsts;
	bool tx_stalled;            /* tx stopped for a full RST queue */

	bool rx_held;               /* rx_req is a guest buffer we popped and not used yet */
	struct virtq_req rx_req, tx_req;
	struct iovec iov[VIRTQ_MAX_SEGS];

	uint64_t stats[ST_MAX];
};

static void count(struct vsock_dev *d, enum vsock_stat s, uint64_t n)
{
	__atomic_fetch_add(&d->stats[s], n, __ATOMIC_RELAXED);
}

static struct vsock_dev *to_vsock(struct virtio_device *vdev)
{
	return vdev->priv;
}

/* --- Connection bookkeeping ---------------------------------------------- */

static unsigned hash_ports(uint32_t local, uint32_t peer)
{
	return (local * 2654435761u ^ peer * 40503u) % VSOCK_HASH_SIZE;
}

static struct vsock_conn *conn_lookup(struct vsock_dev *d, uint32_t local, uint32_t peer)
{
	for (struct vsock_conn *c = d->hash[hash_ports(local, peer)]; c; c = c->hash_next)
		if (c->local_port == local && c->peer_port == peer)
			return c;
	return NULL;
}

static bool port_in_use(void *opaque, uint32_t local, uint32_t peer)
{
	return conn_lookup(opaque, local, peer) != NULL;
}

static void hash_insert(struct vsock_dev *d, struct vsock_conn *c)
{
	struct vsock_conn **head = &d->hash[hash_ports(c->local_port, c->peer_port)];
	c->hash_next = *head;
	*head = c;
}

static void hash_remove(struct vsock_dev *d, struct vsock_conn *c)
{
	for (struct vsock_conn **p = &d->hash[hash_ports(c->local_port, c->peer_port)]; *p; p = &(*p)->hash_next) {
		if (*p == c) {
			*p = c->hash_next;
			return;
		}
	}
}

static void ready_add(struct vsock_dev *d, struct vsock_conn *c)
{
	if (c->in_ready)
		return;
	c->in_ready = true;
	c->ready_next = NULL;
	c->ready_prev = d->ready_tail;
	if (d->ready_tail)
		d->ready_tail->ready_next = c;
	else
		d->ready_head = c;
	d->ready_tail = c;
}

static void ready_remove(struct vsock_dev *d, struct vsock_conn *c)
{
	if (!c->in_ready)
		return;
	if (c->ready_prev)
		c->ready_prev->ready_next = c->ready_next;
	else
		d->ready_head = c->ready_next;
	if (c->ready_next)
		c->ready_next->ready_prev = c->ready_prev;
	else
		d->ready_tail = c->ready_prev;
	c->in_ready = false;
}

static struct vsock_conn *conn_new(struct vsock_dev *d, int fd)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	struct epoll_event ev = { .events = VSOCK_EVENTS, .data.ptr = c };
	if (epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c);
		return NULL;
	}
	c->next = d->conns;
	if (d->conns)
		d->conns->prev = c;
	d->conns = c;
	d->nr_conns++;
	__atomic_store_n(&d->stats[ST_CONNS_ACTIVE], (uint64_t)d->nr_conns, __ATOMIC_RELAXED);
	return c;
}

static void conn_close_fd(struct vsock_conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);   /* also leaves the epoll set */
		c->fd = -1;
	}
}

/* Forgets c; freed once the current callback is done with its events. */
static void conn_release(struct vsock_dev *d, struct vsock_conn *c)
{
	conn_close_fd(c);
	ready_remove(d, c);
	if (c->state != VSOCK_AWAIT_LINE)
		hash_remove(d, c);
	if (c->prev)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	vsock_ring_clear(&c->txq);
	d->nr_conns--;
	__atomic_store_n(&d->stats[ST_CONNS_ACTIVE], (uint64_t)d->nr_conns, __ATOMIC_RELAXED);
	c->fd = -2;             /* marks it released for events still in the batch */
	c->next = d->graveyard;
	d->graveyard = c;
}

static bool conn_released(const struct vsock_conn *c)
{
	return c->fd == -2;
}

static void free_graveyard(struct vsock_dev *d)
{
	while (d->graveyard) {
		struct vsock_conn *c = d->graveyard;
		d->graveyard = c->next;
		free(c);
	}
}

static void arm_timer(struct vsock_dev *d, bool on)
{
	if (d->timer_armed == on)
		return;
	struct itimerspec its = { 0 };
	if (on)
		its.it_value = its.it_interval = (struct timespec){ 0, (long)VSOCK_TICK_NS };
	if (timerfd_settime(d->timer_fd, 0, &its, NULL) == 0)
		d->timer_armed = on;
}

/* After anything happened to c: free it when it is finished, queue it for
 * the rx pump when it has something for the guest. */
static void conn_update(struct vsock_dev *d, struct vsock_conn *c)
{
	if (conn_released(c))
		return;
	if (c->state == VSOCK_DEAD && !(c->pending & VSOCK_PEND_RST) && c->fd < 0) {
		conn_release(d, c);
		return;
	}
	if (c->readable && vsock_conn_can_send_data(c) && vsock_conn_peer_credit(c) == 0)
		vsock_conn_credit_stalled(c);
	if (vsock_conn_wants_rx(c))
		ready_add(d, c);
	if (c->deadline_ns)
		arm_timer(d, true);
}

/* The state machine said: close the host socket. A connection the guest
 * closed still delivers what it sent first (with a deadline). */
static void conn_close_host(struct vsock_conn *c, uint64_t now)
{
	if (c->fd < 0)
		return;
	if (c->state == VSOCK_DEAD && c->txq.used && !c->hangup) {
		if (!c->deadline_ns)
			c->deadline_ns = now + VSOCK_LINGER_TIMEOUT_NS;
		return;
	}
	conn_close_fd(c);
}

static void conn_reset(struct vsock_dev *d, struct vsock_conn *c)
{
	vsock_conn_reset(c);
	conn_close_fd(c);
}

/* The host socket will send no more (hangup: nor take anything). */
static void conn_host_eof(struct vsock_dev *d, struct vsock_conn *c, bool hangup)
{
	c->readable = false;
	if (hangup)
		c->hangup = true;
	if (vsock_conn_host_eof(c, hangup, monotonic_ns()))
		conn_close_fd(c);
}

/* --- Guest bytes to the host socket ------------------------------------ */

static void maybe_shut_host_write(struct vsock_conn *c)
{
	if (c->shut_host_write && !c->txq.used && c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->shut_host_write = false;
	}
}

/* Sends what fits; returns the bytes sent, or -1 when the host socket failed. */
static ssize_t host_send(struct vsock_conn *c, struct iovec *iov, int nr)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)nr };
	ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		c->writable = false;
		return 0;
	}
	return -1;
}

static void drain_txq(struct vsock_dev *d, struct vsock_conn *c)
{
	while (c->txq.used && c->fd >= 0 && c->writable) {
		const uint8_t *p;
		struct iovec iov = { NULL, vsock_ring_peek(&c->txq, &p) };
		iov.iov_base = (void *)p;
		ssize_t n = host_send(c, &iov, 1);
		if (n < 0) {
			conn_host_eof(d, c, true);
			return;
		}
		if (n == 0)
			break;
		vsock_ring_consume(&c->txq, (uint32_t)n);
		vsock_conn_forwarded(c, (uint32_t)n);
	}
	maybe_shut_host_write(c);
	if (c->state == VSOCK_DEAD && !c->txq.used)
		conn_close_fd(c);   /* lingered until drained */
}

static void forward_payload(struct vsock_dev *d, struct vsock_conn *c, const struct virtq_req *req, uint32_t len)
{
	uint32_t sent = 0;
	if (!c->txq.used && c->fd >= 0 && c->writable) {
		/* vsock_conn_guest_pkt checked that the chain holds len bytes. */
		int nr = iov_slice(req->out, req->nr_out, VSOCK_HDR_SIZE, len, d->iov, VIRTQ_MAX_SEGS);
		ssize_t n = nr < 0 ? -1 : host_send(c, d->iov, nr);
		if (n < 0) {
			conn_host_eof(d, c, true);
			return;
		}
		sent = (uint32_t)n;
		vsock_conn_forwarded(c, sent);
	}
	/* The rest waits in txq; vsock_conn_guest_pkt checked that it fits. */
	int nr = iov_slice(req->out, req->nr_out, VSOCK_HDR_SIZE + sent, len - sent, d->iov, VIRTQ_MAX_SEGS);
	if (nr < 0) {
		count(d, ST_PROTOCOL_ERRORS, 1);
		conn_reset(d, c);
		return;
	}
	for (int i = 0; i < nr; i++) {
		if (vsock_ring_push(&c->txq, d->iov[i].iov_base, (uint32_t)d->iov[i].iov_len) < 0) {
			count(d, ST_PROTOCOL_ERRORS, 1);
			conn_reset(d, c);
			return;
		}
	}
	/* A partial send leaves writable set: try once more, so the socket
	 * surely reports EAGAIN and an EPOLLOUT edge will follow. */
	if (c->txq.used && c->writable)
		drain_txq(d, c);
}

/* --- Guest packets (tx queue) ------------------------------------------ */

static void queue_rst(struct vsock_dev *d, const struct vsock_hdr *pkt)
{
	/* process_tx keeps a free slot before taking each packet */
	if (d->nr_rsts == VSOCK_RST_QUEUE)
		return;
	vsock_rst_reply(pkt, &d->rsts[(d->rst_head + d->nr_rsts) % VSOCK_RST_QUEUE]);
	d->nr_rsts++;
}

static int connect_host(const char *uds_path, uint32_t port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int len = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", uds_path, port);
	if (len < 0 || (size_t)len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A UNIX stream connect completes at once or fails (EAGAIN: the
	 * listener's backlog is full): no in-progress state. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void guest_connect(struct vsock_dev *d, const struct vsock_hdr *h)
{
	if (d->nr_conns >= VSOCK_MAX_CONNS) {
		count(d, ST_CONNS_REFUSED, 1);
		queue_rst(d, h);
		return;
	}
	int fd = connect_host(d->uds_path, h->dst_port);
	if (fd < 0) {
		count(d, ST_CONNECT_FAILED, 1);
		log_debug("vsock: guest port %u -> %s_%u: %s", h->src_port, d->uds_path, h->dst_port, strerror(-fd));
		queue_rst(d, h);
		return;
	}
	struct vsock_conn *c = conn_new(d, fd);
	if (!c) {
		close(fd);
		queue_rst(d, h);
		return;
	}
	vsock_conn_init_guest(c, d->guest_cid, h);
	c->readable = c->writable = true;
	hash_insert(d, c);
	count(d, ST_CONNS_GUEST, 1);
	conn_update(d, c);
}

static void write_host_ok(struct vsock_dev *d, struct vsock_conn *c)
{
	char line[32];
	int len = snprintf(line, sizeof(line), "OK %u\n", c->local_port);
	/* A fresh socket takes a few bytes; if not, the host end is broken. */
	if (c->fd < 0 || send(c->fd, line, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) != len)
		conn_host_eof(d, c, true);
}

static void handle_tx(struct vsock_dev *d, const struct virtq_req *req)
{
	uint8_t raw[VSOCK_HDR_SIZE] = { 0 };
	struct vsock_hdr h;
	iov_to_buf(req->out, req->nr_out, 0, raw, sizeof(raw));
	switch (vsock_check_tx(raw, req->out_len, d->guest_cid, &h)) {
	case VSOCK_PKT_DROP:
		count(d, ST_BAD_PACKETS, 1);
		return;
	case VSOCK_PKT_RST:
		queue_rst(d, &h);
		return;
	case VSOCK_PKT_OK:
		break;
	}
	count(d, ST_TX_PACKETS, 1);
	struct vsock_conn *c = conn_lookup(d, h.dst_port, h.src_port);
	if (!c) {
		if (h.op == VSOCK_OP_REQUEST)
			guest_connect(d, &h);
		else if (h.op != VSOCK_OP_RST)
			queue_rst(d, &h);
		return;
	}
	uint64_t now = monotonic_ns();
	struct vsock_action act;
	vsock_conn_guest_pkt(c, &h, now, &act);
	if (act.protocol_error)
		count(d, ST_PROTOCOL_ERRORS, 1);
	if (act.host_ok)
		write_host_ok(d, c);
	if (act.forward) {
		count(d, ST_TX_BYTES, h.len);
		forward_payload(d, c, req, h.len);
	}
	if (act.free) {
		conn_release(d, c);
		return;
	}
	if (act.close_host)
		conn_close_host(c, now);
	maybe_shut_host_write(c);
	conn_update(d, c);
}

/* --- Packets for the guest (rx queue) ---------------------------------- */

static void put_hdr(struct vsock_dev *d, const struct vsock_hdr *h, const struct virtq_req *req)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(h, raw);
	buf_to_iov(req->in, req->nr_in, 0, raw, sizeof(raw));
	count(d, ST_RX_PACKETS, 1);
	if (h->op == VSOCK_OP_RST)
		count(d, ST_RST_SENT, 1);
}

/* Fills the rx buffer with c's next packet: the bytes written, 0 if c had
 * nothing after all. */
static uint32_t conn_fill_rx(struct vsock_dev *d, struct vsock_conn *c, const struct virtq_req *req)
{
	for (;;) {
		struct vsock_hdr h;
		if (vsock_conn_next_ctrl(c, &h) != VSOCK_OP_INVALID) {
			put_hdr(d, &h, req);
			return VSOCK_HDR_SIZE;
		}
		if (!c->readable || !vsock_conn_can_send_data(c) || c->fd < 0)
			return 0;
		uint32_t credit = vsock_conn_peer_credit(c);
		if (!credit) {
			vsock_conn_credit_stalled(c);
			if (!c->pending)
				return 0;
			continue;
		}
		uint64_t room = req->in_len - VSOCK_HDR_SIZE;
		uint32_t max = (uint32_t)MIN(MIN(room, (uint64_t)credit), (uint64_t)VSOCK_MAX_PAYLOAD);
		int nr = iov_slice(req->in, req->nr_in, VSOCK_HDR_SIZE, max, d->iov, VIRTQ_MAX_SEGS);
		if (nr < 0)
			return 0;
		struct msghdr msg = { .msg_iov = d->iov, .msg_iovlen = (size_t)nr };
		ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT);
		if (n > 0) {
			vsock_conn_data_hdr(c, (uint32_t)n, &h);
			put_hdr(d, &h, req);
			count(d, ST_RX_BYTES, (uint64_t)n);
			return VSOCK_HDR_SIZE + (uint32_t)n;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			c->readable = false;
			return 0;
		}
		/* EOF (the SHUTDOWN it owes comes next round), or a failure */
		conn_host_eof(d, c, n < 0 || c->hangup);
	}
}

static bool pop_rx(struct vsock_dev *d, struct virtq *vq)
{
	if (d->rx_held)
		return true;
	int err = virtq_pop(vq, &d->rx_req);
	if (err == -EAGAIN)
		return false;
	/* A header and at least one byte of data: Linux posts 4 KiB. */
	if (err < 0 || d->rx_req.in_len <= VSOCK_HDR_SIZE || d->rx_req.nr_out) {
		virtio_needs_reset(&d->vdev, err < 0 ? "vsock: malformed rx chain" : "vsock: rx buffer too small or read-only");
		return false;
	}
	d->rx_held = true;
	return true;
}

/* Sends the guest what is owed: RSTs first, then the ready connections in
 * turn; stops (until the guest posts buffers and kicks) when it has none. */
static void rx_pump(struct vsock_dev *d)
{
	struct virtq *vq = virtio_queue(&d->vdev, VSOCK_Q_RX);
	if (!vq)
		return;
	bool pushed = false;
	while (d->nr_rsts || d->ready_head) {
		if (!pop_rx(d, vq))
			break;
		uint32_t len = 0;
		if (d->nr_rsts) {
			put_hdr(d, &d->rsts[d->rst_head], &d->rx_req);
			d->rst_head = (d->rst_head + 1) % VSOCK_RST_QUEUE;
			d->nr_rsts--;
			len = VSOCK_HDR_SIZE;
		} else {
			struct vsock_conn *c = d->ready_head;
			len = conn_fill_rx(d, c, &d->rx_req);
			ready_remove(d, c);
			conn_update(d, c);   /* back at the tail if it has more */
		}
		if (len) {
			virtq_push(vq, d->rx_req.head, len);
			d->rx_held = false;
			pushed = true;
		}
	}
	if (pushed)
		virtio_queue_notify(&d->vdev, VSOCK_Q_RX);
	if (d->tx_stalled && d->nr_rsts < VSOCK_RST_QUEUE) {
		d->tx_stalled = false;
		virtio_queue_kick(&d->vdev, VSOCK_Q_TX);
	}
}

static void process_tx(struct vsock_dev *d)
{
	struct virtq *vq = virtio_queue(&d->vdev, VSOCK_Q_TX);
	if (!vq)
		return;
	bool pushed = false;
	for (;;) {
		/* Each packet may owe one RST: without room, wait for the guest
		 * to take the ones queued (rx_pump kicks us). */
		if (d->nr_rsts == VSOCK_RST_QUEUE) {
			d->tx_stalled = true;
			break;
		}
		int err = virtq_pop(vq, &d->tx_req);
		if (err == -EAGAIN)
			break;
		if (err < 0) {
			virtio_needs_reset(&d->vdev, "vsock: malformed tx chain");
			return;
		}
		handle_tx(d, &d->tx_req);
		virtq_push(vq, d->tx_req.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify(&d->vdev, VSOCK_Q_TX);
}

/* --- Host sockets -------------------------------------------------------- */

static void accept_host(struct vsock_dev *d)
{
	for (;;) {
		int fd = accept4(d->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
			/* The listener stays readable: stop watching it until the
			 * next tick rather than spin. */
			epoll_ctl(d->epoll_fd, EPOLL_CTL_DEL, d->listen_fd, NULL);
			d->listen_paused = true;
			arm_timer(d, true);
			return;
		}
		if (fd < 0)
			return;   /* EAGAIN, or the client went away already */
		struct vsock_conn *c = NULL;
		if (d->nr_conns >= VSOCK_MAX_CONNS)
			count(d, ST_CONNS_REFUSED, 1);
		else
			c = conn_new(d, fd);
		if (!c) {
			close(fd);
			continue;
		}
		vsock_conn_init_host(c, d->guest_cid, monotonic_ns());
		conn_update(d, c);
	}
}

/* AWAIT_LINE: reads the CONNECT line, and only it (bytes after it are the
 * stream's). */
static void read_connect_line(struct vsock_dev *d, struct vsock_conn *c)
{
	char line[VSOCK_CONNECT_LINE_MAX];
	ssize_t n = recv(c->fd, line, sizeof(line), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	uint32_t port = 0;
	int len = n > 0 ? vsock_parse_connect(line, (size_t)n, &port) : -EINVAL;
	if (len == -EAGAIN)
		return;   /* the rest of the line comes with the next edge, or the deadline passes */
	uint32_t local = 0;
	if (len > 0 && recv(c->fd, line, (size_t)len, MSG_DONTWAIT) == len)
		local = vsock_next_local_port(&d->last_local_port, port, port_in_use, d);
	if (!local) {
		count(d, ST_BAD_LINES, 1);
		conn_release(d, c);
		return;
	}
	vsock_conn_connect(c, local, port, monotonic_ns());
	c->readable = c->writable = true;
	hash_insert(d, c);
	count(d, ST_CONNS_HOST, 1);
	conn_update(d, c);
}

static void conn_event(struct vsock_dev *d, struct vsock_conn *c, uint32_t events)
{
	if (conn_released(c) || c->fd < 0)
		return;
	if (c->state == VSOCK_AWAIT_LINE) {
		read_connect_line(d, c);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP))
		c->readable = true;
	if (events & (EPOLLHUP | EPOLLERR)) {
		/* Bytes it wrote before going may still be there: read them,
		 * then the EOF says the rest. */
		c->hangup = c->readable = true;
		/* Not reading it (yet, or any more): nothing else will notice. */
		if (c->state == VSOCK_CONNECTING || c->host_eof)
			conn_host_eof(d, c, true);
	}
	if (events & EPOLLOUT) {
		c->writable = true;
		drain_txq(d, c);
	}
	conn_update(d, c);
}

static int add_epoll_tag(int epfd, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void timer_tick(struct vsock_dev *d)
{
	uint64_t expirations;
	if (read(d->timer_fd, &expirations, sizeof(expirations)) < 0)
		return;
	if (d->listen_paused && add_epoll_tag(d->epoll_fd, d->listen_fd, &d->listen_tag) == 0)
		d->listen_paused = false;
	uint64_t now = monotonic_ns();
	bool rx_usable = virtio_queue(&d->vdev, VSOCK_Q_RX) != NULL;
	bool any_deadline = false;
	struct vsock_conn *next;
	for (struct vsock_conn *c = d->conns; c; c = next) {
		next = c->next;
		bool free_now;
		if (vsock_conn_expired(c, now, &free_now)) {
			if (free_now) {
				count(d, ST_BAD_LINES, 1);
				conn_release(d, c);
				continue;
			}
			conn_close_fd(c);
		}
		/* No driver to tell: an owed RST is moot. */
		if (!rx_usable && c->state == VSOCK_DEAD)
			c->pending = 0;
		conn_update(d, c);
		if (!conn_released(c) && c->deadline_ns)
			any_deadline = true;
	}
	if (!any_deadline && !d->listen_paused)
		arm_timer(d, false);
}

static void epoll_ready(struct virtio_device *vdev, int fd, uint32_t events)
{
	struct vsock_dev *d = to_vsock(vdev);
	struct epoll_event evs[64];
	int n = epoll_wait(d->epoll_fd, evs, ARRAY_SIZE(evs), 0);
	for (int i = 0; i < n; i++) {
		void *tag = evs[i].data.ptr;
		if (tag == &d->listen_tag)
			accept_host(d);
		else if (tag == &d->timer_tag)
			timer_tick(d);
		else
			conn_event(d, tag, evs[i].events);
	}
	rx_pump(d);
	free_graveyard(d);
}

/* --- Device ops ---------------------------------------------------------- */

static void vsock_queue_notify(struct virtio_device *vdev, int q)
{
	struct vsock_dev *d = to_vsock(vdev);
	if (q == VSOCK_Q_TX)
		process_tx(d);
	/* rx: new buffers; tx: replies owed. The event queue we never use. */
	rx_pump(d);
	free_graveyard(d);
}

static int vsock_activate(struct virtio_device *vdev)
{
	/* Host programs may have connected before the driver was up. */
	virtio_queue_kick(vdev, VSOCK_Q_RX);
	return 0;
}

static void vsock_reset(struct virtio_device *vdev)
{
	struct vsock_dev *d = to_vsock(vdev);
	while (d->conns)
		conn_release(d, d->conns);
	free_graveyard(d);
	d->nr_rsts = d->rst_head = 0;
	d->tx_stalled = false;
	d->rx_held = false;
	arm_timer(d, d->listen_paused);
}

static void vsock_free(struct vsock_dev *d)
{
	while (d->conns)
		conn_release(d, d->conns);
	free_graveyard(d);
	if (d->listen_fd >= 0) {
		close(d->listen_fd);
		struct stat st;
		if (lstat(d->uds_path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == d->uds_ino)
			unlink(d->uds_path);
	}
	if (d->epoll_fd >= 0)
		close(d->epoll_fd);
	if (d->timer_fd >= 0)
		close(d->timer_fd);
	free(d->uds_path);
	free(d);
}

static void vsock_destroy(struct virtio_device *vdev)
{
	vsock_free(to_vsock(vdev));
}

static const struct virtio_device_ops vsock_ops = {
	.queue_notify = vsock_queue_notify,
	.activate = vsock_activate,
	.reset = vsock_reset,
	.destroy = vsock_destroy,
};

/* --- Set-up -------------------------------------------------------------- */

int vsock_listen_uds(const char *path, int *fd_out, ino_t *ino_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	/* PATH_<port> must fit too. */
	if (strlen(path) + sizeof("_4294967295") > sizeof(sa.sun_path)) {
		log_error("vsock: uds path %s is too long (at most %zu bytes)", path,
			  sizeof(sa.sun_path) - sizeof("_4294967295"));
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_error("vsock: uds path %s exists and is not a socket", path);
			return -EEXIST;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (probe < 0)
			return -errno;
		int err = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
		close(probe);
		if (!err || err == EAGAIN) {
			log_error("vsock: uds path %s is in use (another process listens there)", path);
			return -EADDRINUSE;
		}
		/* Nobody listens: left over by a run that ended without cleaning up. */
		if (err == ECONNREFUSED)
			unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 || stat(path, &st) < 0) {
		int err = -errno;
		log_error("vsock: cannot listen on %s: %s", path, strerror(-err));
		close(fd);
		return err;
	}
	*fd_out = fd;
	*ino_out = st.st_ino;
	return 0;
}

static int vsock_setup(struct vm *vm, struct vsock_dev *d)
{
	const struct vsock_config *vc = &vm->cfg->vsock;
	if (vc->guest_cid < 3 || vc->guest_cid == UINT32_MAX) {
		log_error("vsock: guest cid %u is reserved (use 3 to 4294967294)", vc->guest_cid);
		return -EINVAL;
	}
	if (!vc->uds_path || !*vc->uds_path) {
		log_error("vsock: no uds path");
		return -EINVAL;
	}
	d->guest_cid = vc->guest_cid;
	for (int i = 0; i < 8; i++)
		d->config[i] = (uint8_t)(d->guest_cid >> (8 * i));
	if (!(d->uds_path = strdup(vc->uds_path)))
		return -ENOMEM;
	int err = vsock_listen_uds(vc->uds_path, &d->listen_fd, &d->uds_ino);
	if (err)
		return err;
	d->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->epoll_fd < 0 || d->timer_fd < 0)
		return -errno;
	if ((err = add_epoll_tag(d->epoll_fd, d->listen_fd, &d->listen_tag)) ||
	    (err = add_epoll_tag(d->epoll_fd, d->timer_fd, &d->timer_tag)))
		return err;
	d->last_local_port = VSOCK_LOCAL_PORT_FIRST - 1;

	struct virtio_device *vdev = &d->vdev;
	vdev->name = "virtio-vsock";
	vdev->device_id = VIRTIO_ID_VSOCK;
	vdev->features = 1ull << VIRTIO_F_EVENT_IDX | 1ull << VIRTIO_F_INDIRECT_DESC;
	vdev->nr_queues = VSOCK_NR_QUEUES;
	vdev->queue_max_size = VSOCK_QUEUE_SIZE;
	vdev->config = d->config;
	vdev->config_size = sizeof(d->config);
	vdev->ops = &vsock_ops;
	vdev->priv = d;
	return virtio_watch_fd(vdev, d->epoll_fd, EPOLLIN, epoll_ready);
}

static int virtio_vsock_init(struct vm *vm)
{
	if (!vm->cfg->vsock.enabled)
		return 0;
	struct vsock_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->listen_fd = d->epoll_fd = d->timer_fd = -1;
	int err = vsock_setup(vm, d);
	if (!err)
		err = virtio_device_add(vm, &d->vdev);   /* logs why it failed */
	if (err) {
		vsock_free(d);
		return err;
	}
	/* From here the transport owns d: ops->destroy frees it. */
	return stats_add(&vm->stats, "virtio-vsock", ST_MAX, vsock_stat_names, stats_read_array, d->stats);
}

DEVICE_REGISTER(virtio_vsock, virtio_vsock_init);
