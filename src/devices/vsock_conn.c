/* virtio-vsock packets and connections, without I/O (see vsock_conn.h). */
#include "vsock_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t get_le(const uint8_t *p, int bytes)
{
	uint64_t v = 0;
	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
	h->src_cid = get_le(raw + 0, 8);
	h->dst_cid = get_le(raw + 8, 8);
	h->src_port = (uint32_t)get_le(raw + 16, 4);
	h->dst_port = (uint32_t)get_le(raw + 20, 4);
	h->len = (uint32_t)get_le(raw + 24, 4);
	h->type = (uint16_t)get_le(raw + 28, 2);
	h->op = (uint16_t)get_le(raw + 30, 2);
	h->flags = (uint32_t)get_le(raw + 32, 4);
	h->buf_alloc = (uint32_t)get_le(raw + 36, 4);
	h->fwd_cnt = (uint32_t)get_le(raw + 40, 4);
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE])
{
	put_le(raw + 0, h->src_cid, 8);
	put_le(raw + 8, h->dst_cid, 8);
	put_le(raw + 16, h->src_port, 4);
	put_le(raw + 20, h->dst_port, 4);
	put_le(raw + 24, h->len, 4);
	put_le(raw + 28, h->type, 2);
	put_le(raw + 30, h->op, 2);
	put_le(raw + 32, h->flags, 4);
	put_le(raw + 36, h->buf_alloc, 4);
	put_le(raw + 40, h->fwd_cnt, 4);
}

enum vsock_verdict vsock_check_tx(const uint8_t *raw, uint64_t chain_len, uint64_t guest_cid, struct vsock_hdr *h)
{
	if (chain_len < VSOCK_HDR_SIZE)
		return VSOCK_PKT_DROP;
	vsock_hdr_decode(raw, h);
	if (h->len > VSOCK_MAX_PAYLOAD || h->len > chain_len - VSOCK_HDR_SIZE)
		return VSOCK_PKT_DROP;
	/* A guest speaks only for its own CID; anything else is spoofed. */
	if (h->src_cid != guest_cid)
		return VSOCK_PKT_DROP;
	bool refused = h->dst_cid != VSOCK_HOST_CID || h->type != VSOCK_TYPE_STREAM ||
		       h->op < VSOCK_OP_REQUEST || h->op > VSOCK_OP_CREDIT_REQUEST;
	if (!refused)
		return VSOCK_PKT_OK;
	/* Never answer an RST with an RST: two peers could bounce them forever. */
	return h->op == VSOCK_OP_RST ? VSOCK_PKT_DROP : VSOCK_PKT_RST;
}

void vsock_rst_reply(const struct vsock_hdr *pkt, struct vsock_hdr *rst)
{
	/* From the address the guest wrote to, so its socket recognizes it. */
	*rst = (struct vsock_hdr){
		.src_cid = pkt->dst_cid, .dst_cid = pkt->src_cid,
		.src_port = pkt->dst_port, .dst_port = pkt->src_port,
		.type = VSOCK_TYPE_STREAM, .op = VSOCK_OP_RST,
	};
}

int vsock_parse_connect(const char *buf, size_t len, uint32_t *port)
{
	static const char prefix[] = "CONNECT ";
	const size_t plen = sizeof(prefix) - 1;
	size_t i = 0;
	uint64_t value = 0;
	for (; i < len && i < VSOCK_CONNECT_LINE_MAX; i++) {
		char ch = buf[i];
		if (i < plen) {
			if (ch != prefix[i])
				return -EINVAL;
		} else if (ch >= '0' && ch <= '9') {
			value = value * 10 + (uint64_t)(ch - '0');
			if (value > UINT32_MAX)
				return -EINVAL;
		} else if (ch == '\n' && i > plen) {
			*port = (uint32_t)value;
			return (int)(i + 1);
		} else {
			return -EINVAL;
		}
	}
	return i >= VSOCK_CONNECT_LINE_MAX ? -EINVAL : -EAGAIN;
}

int vsock_ring_push(struct vsock_ring *r, const void *buf, uint32_t len)
{
	if (len > vsock_ring_free_space(r))
		return -ENOBUFS;
	if (!len)
		return 0;
	if (!r->data && !(r->data = malloc(VSOCK_CONN_BUF_SIZE)))
		return -ENOMEM;
	uint32_t tail = (r->head + r->used) % VSOCK_CONN_BUF_SIZE;
	uint32_t first = MIN(len, VSOCK_CONN_BUF_SIZE - tail);
	memcpy(r->data + tail, buf, first);
	memcpy(r->data, (const uint8_t *)buf + first, len - first);
	r->used += len;
	return 0;
}

uint32_t vsock_ring_peek(const struct vsock_ring *r, const uint8_t **p)
{
	*p = r->data ? r->data + r->head : NULL;
	return MIN(r->used, VSOCK_CONN_BUF_SIZE - r->head);
}

void vsock_ring_consume(struct vsock_ring *r, uint32_t n)
{
	n = MIN(n, r->used);
	r->head = (r->head + n) % VSOCK_CONN_BUF_SIZE;
	r->used -= n;
	if (!r->used)
		vsock_ring_clear(r);
}

uint32_t vsock_ring_free_space(const struct vsock_ring *r)
{
	return VSOCK_CONN_BUF_SIZE - r->used;
}

void vsock_ring_clear(struct vsock_ring *r)
{
	free(r->data);
	*r = (struct vsock_ring){ 0 };
}

static void conn_init_common(struct vsock_conn *c, uint64_t guest_cid)
{
	c->guest_cid = guest_cid;
	c->buf_alloc = VSOCK_CONN_BUF_SIZE;
}

void vsock_conn_init_guest(struct vsock_conn *c, uint64_t guest_cid, const struct vsock_hdr *req)
{
	conn_init_common(c, guest_cid);
	c->state = VSOCK_ESTABLISHED;
	c->local_port = req->dst_port;
	c->peer_port = req->src_port;
	c->peer_buf_alloc = req->buf_alloc;
	c->peer_fwd_cnt = req->fwd_cnt;
	c->pending = VSOCK_PEND_RESPONSE;
}

void vsock_conn_init_host(struct vsock_conn *c, uint64_t guest_cid, uint64_t now_ns)
{
	conn_init_common(c, guest_cid);
	c->state = VSOCK_AWAIT_LINE;
	c->host_initiated = true;
	c->deadline_ns = now_ns + VSOCK_LINE_TIMEOUT_NS;
}

void vsock_conn_connect(struct vsock_conn *c, uint32_t local_port, uint32_t peer_port, uint64_t now_ns)
{
	c->state = VSOCK_CONNECTING;
	c->local_port = local_port;
	c->peer_port = peer_port;
	c->pending = VSOCK_PEND_REQUEST;
	c->deadline_ns = now_ns + VSOCK_CONNECT_TIMEOUT_NS;
}

void vsock_conn_reset(struct vsock_conn *c)
{
	c->state = VSOCK_DEAD;
	c->pending = VSOCK_PEND_RST;
	c->shut_host_write = false;
	c->deadline_ns = 0;
	vsock_ring_clear(&c->txq);
}

static void protocol_error(struct vsock_conn *c, struct vsock_action *act)
{
	vsock_conn_reset(c);
	act->close_host = true;
	act->protocol_error = true;
}

void vsock_conn_forwarded(struct vsock_conn *c, uint32_t n)
{
	c->fwd_cnt += n;
	if (c->state != VSOCK_DEAD && c->fwd_cnt - c->last_fwd_cnt_sent >= VSOCK_CREDIT_THRESHOLD)
		c->pending |= VSOCK_PEND_CREDIT_UPDATE;
}

static void guest_rw(struct vsock_conn *c, const struct vsock_hdr *h, struct vsock_action *act)
{
	if (c->state == VSOCK_CLOSING) {
		/* The host socket is gone: the bytes go nowhere, but they
		 * count as forwarded so the guest's credit does not stall. */
		c->rx_cnt += h->len;
		vsock_conn_forwarded(c, h->len);
		return;
	}
	if (c->state != VSOCK_ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND)) {
		protocol_error(c, act);
		return;
	}
	/* Unforwarded guest bytes are exactly those in txq, so our credit
	 * is txq's free space: a guest that overruns it is cut off rather
	 * than buffered without bound. */
	if (h->len > vsock_ring_free_space(&c->txq)) {
		protocol_error(c, act);
		return;
	}
	c->rx_cnt += h->len;
	act->forward = h->len > 0;
}

static void guest_shutdown(struct vsock_conn *c, const struct vsock_hdr *h, struct vsock_action *act)
{
	if (c->state != VSOCK_ESTABLISHED && c->state != VSOCK_CLOSING) {
		protocol_error(c, act);
		return;
	}
	c->peer_shutdown |= h->flags & VSOCK_SHUTDOWN_BOTH;
	if (c->peer_shutdown == VSOCK_SHUTDOWN_BOTH || c->state == VSOCK_CLOSING) {
		/* The guest is done: it waits for our RST. What it sent
		 * before still reaches the host socket (txq drains first). */
		bool keep_txq = c->state == VSOCK_ESTABLISHED;
		c->state = VSOCK_DEAD;
		c->pending = VSOCK_PEND_RST;
		c->deadline_ns = 0;
		if (!keep_txq)
			vsock_ring_clear(&c->txq);
		act->close_host = true;
		return;
	}
	if (c->peer_shutdown & VSOCK_SHUTDOWN_SEND)
		c->shut_host_write = true;
}

void vsock_conn_guest_pkt(struct vsock_conn *c, const struct vsock_hdr *h, uint64_t now_ns,
			  struct vsock_action *act)
{
	*act = (struct vsock_action){ 0 };
	if (c->state == VSOCK_DEAD) {
		/* Our RST is on its way; the guest's own RST spares it. */
		if (h->op == VSOCK_OP_RST)
			c->pending &= ~VSOCK_PEND_RST;
		return;
	}
	if (c->peer_buf_alloc != h->buf_alloc || c->peer_fwd_cnt != h->fwd_cnt)
		c->credit_requested = false;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;

	switch (h->op) {
	case VSOCK_OP_RST:
		act->close_host = true;
		act->free = true;
		break;
	case VSOCK_OP_RESPONSE:
		if (c->state != VSOCK_CONNECTING) {
			protocol_error(c, act);
			break;
		}
		c->state = VSOCK_ESTABLISHED;
		c->deadline_ns = 0;
		act->host_ok = true;
		break;
	case VSOCK_OP_RW:
		guest_rw(c, h, act);
		break;
	case VSOCK_OP_SHUTDOWN:
		guest_shutdown(c, h, act);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		c->pending |= VSOCK_PEND_CREDIT_UPDATE;
		break;
	default:
		/* REQUEST for a connection that exists, or an op that
		 * vsock_check_tx would have refused. */
		protocol_error(c, act);
		break;
	}
	(void)now_ns;
}

uint32_t vsock_conn_peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

bool vsock_conn_can_send_data(const struct vsock_conn *c)
{
	return c->state == VSOCK_ESTABLISHED && !c->host_eof && !(c->peer_shutdown & VSOCK_SHUTDOWN_RCV);
}

bool vsock_conn_wants_rx(const struct vsock_conn *c)
{
	if (c->state == VSOCK_AWAIT_LINE)
		return false;
	return c->pending || (c->readable && vsock_conn_can_send_data(c) && vsock_conn_peer_credit(c) > 0);
}

static void fill_hdr(struct vsock_conn *c, enum vsock_op op, struct vsock_hdr *h)
{
	*h = (struct vsock_hdr){
		.src_cid = VSOCK_HOST_CID, .dst_cid = c->guest_cid,
		.src_port = c->local_port, .dst_port = c->peer_port,
		.type = VSOCK_TYPE_STREAM, .op = op,
		.buf_alloc = c->buf_alloc, .fwd_cnt = c->fwd_cnt,
	};
	/* Every packet carries our credit: no separate update owed. */
	c->last_fwd_cnt_sent = c->fwd_cnt;
	c->pending &= ~VSOCK_PEND_CREDIT_UPDATE;
}

enum vsock_op vsock_conn_next_ctrl(struct vsock_conn *c, struct vsock_hdr *h)
{
	static const struct {
		unsigned bit;
		enum vsock_op op;
	} order[] = {
		{ VSOCK_PEND_RST, VSOCK_OP_RST },
		{ VSOCK_PEND_REQUEST, VSOCK_OP_REQUEST },
		{ VSOCK_PEND_RESPONSE, VSOCK_OP_RESPONSE },
		{ VSOCK_PEND_SHUTDOWN, VSOCK_OP_SHUTDOWN },
		{ VSOCK_PEND_CREDIT_UPDATE, VSOCK_OP_CREDIT_UPDATE },
		{ VSOCK_PEND_CREDIT_REQUEST, VSOCK_OP_CREDIT_REQUEST },
	};
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		if (!(c->pending & order[i].bit))
			continue;
		c->pending &= ~order[i].bit;
		fill_hdr(c, order[i].op, h);
		if (order[i].op == VSOCK_OP_RST)
			c->pending = 0;
		if (order[i].op == VSOCK_OP_SHUTDOWN)
			h->flags = c->shutdown_flags;
		return order[i].op;
	}
	return VSOCK_OP_INVALID;
}

void vsock_conn_data_hdr(struct vsock_conn *c, uint32_t len, struct vsock_hdr *h)
{
	fill_hdr(c, VSOCK_OP_RW, h);
	h->len = len;
	c->tx_cnt += len;
}

void vsock_conn_credit_stalled(struct vsock_conn *c)
{
	if (!c->credit_requested) {
		c->pending |= VSOCK_PEND_CREDIT_REQUEST;
		c->credit_requested = true;
	}
}

bool vsock_conn_host_eof(struct vsock_conn *c, bool hangup, uint64_t now_ns)
{
	switch (c->state) {
	case VSOCK_CONNECTING:
		vsock_conn_reset(c);
		return true;
	case VSOCK_ESTABLISHED:
		c->host_eof = true;
		c->pending |= VSOCK_PEND_SHUTDOWN;
		c->shutdown_flags |= VSOCK_SHUTDOWN_SEND;
		if (!hangup)
			return false;
		/* Nobody will read what the guest sends: tell it so, and
		 * give it a while to answer with RST. */
		c->shutdown_flags = VSOCK_SHUTDOWN_BOTH;
		c->state = VSOCK_CLOSING;
		c->shut_host_write = false;
		c->deadline_ns = now_ns + VSOCK_CLOSE_TIMEOUT_NS;
		/* Count dropped bytes as forwarded: credit stays consistent. */
		vsock_conn_forwarded(c, c->txq.used);
		vsock_ring_clear(&c->txq);
		return true;
	default:
		return true;
	}
}

bool vsock_conn_expired(struct vsock_conn *c, uint64_t now_ns, bool *free_now)
{
	*free_now = false;
	if (!c->deadline_ns || now_ns < c->deadline_ns)
		return false;
	c->deadline_ns = 0;
	switch (c->state) {
	case VSOCK_AWAIT_LINE:
		*free_now = true;
		break;
	case VSOCK_CONNECTING:
	case VSOCK_CLOSING:
		vsock_conn_reset(c);
		break;
	default: /* DEAD, lingering on a host socket that does not drain */
		vsock_ring_clear(&c->txq);
		break;
	}
	return true;
}

uint32_t vsock_next_local_port(uint32_t *last, uint32_t peer_port,
			       bool (*in_use)(void *opaque, uint32_t local, uint32_t peer), void *opaque)
{
	/* At most VSOCK_MAX_CONNS ports are taken, so that many tries + 1 find one. */
	for (int tries = 0; tries <= VSOCK_MAX_CONNS; tries++) {
		uint32_t port = *last + 1;
		if (port < VSOCK_LOCAL_PORT_FIRST || port >= VSOCK_LOCAL_PORT_END)
			port = VSOCK_LOCAL_PORT_FIRST;
		*last = port;
		if (!in_use(opaque, port, peer_port))
			return port;
	}
	return 0;
}

