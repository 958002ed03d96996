#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/vsock_conn.h"

#define GUEST_CID 3
#define SEC 1000000000ull

static struct vsock_hdr guest_pkt(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len)
{
	return (struct vsock_hdr){
		.src_cid = GUEST_CID, .dst_cid = VSOCK_HOST_CID, .src_port = src_port, .dst_port = dst_port,
		.len = len, .type = VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 256 * 1024, .fwd_cnt = 0,
	};
}

static enum vsock_verdict check(const struct vsock_hdr *h, uint64_t chain_len)
{
	uint8_t raw[VSOCK_HDR_SIZE];
	struct vsock_hdr out;
	vsock_hdr_encode(h, raw);
	return vsock_check_tx(raw, chain_len, GUEST_CID, &out);
}

/* --- Headers ----------------------------------------------------------- */

static void test_hdr_layout(void **state)
{
	struct vsock_hdr h = {
		.src_cid = 0x0102030405060708, .dst_cid = 2, .src_port = 0x11223344, .dst_port = 0x55667788,
		.len = 0x99aabbcc, .type = 1, .op = 5, .flags = 3, .buf_alloc = 0x10000, .fwd_cnt = 0xdeadbeef,
	};
	uint8_t raw[VSOCK_HDR_SIZE];
	vsock_hdr_encode(&h, raw);
	/* le64 src_cid at 0, le32 dst_port at 20, le16 op at 30, le32 fwd_cnt at 40 */
	assert_int_equal(raw[0], 0x08);
	assert_int_equal(raw[7], 0x01);
	assert_int_equal(raw[8], 2);
	assert_int_equal(raw[20], 0x88);
	assert_int_equal(raw[23], 0x55);
	assert_int_equal(raw[28], 1);
	assert_int_equal(raw[30], 5);
	assert_int_equal(raw[31], 0);
	assert_int_equal(raw[40], 0xef);
	assert_int_equal(raw[43], 0xde);
	struct vsock_hdr back;
	vsock_hdr_decode(raw, &back);
	assert_int_equal(back.src_cid, h.src_cid);
	assert_int_equal(back.dst_cid, h.dst_cid);
	assert_int_equal(back.src_port, h.src_port);
	assert_int_equal(back.dst_port, h.dst_port);
	assert_int_equal(back.len, h.len);
	assert_int_equal(back.type, h.type);
	assert_int_equal(back.op, h.op);
	assert_int_equal(back.flags, h.flags);
	assert_int_equal(back.buf_alloc, h.buf_alloc);
	assert_int_equal(back.fwd_cnt, h.fwd_cnt);
}

static void test_check_valid(void **state)
{
	struct vsock_hdr h = guest_pkt(VSOCK_OP_RW, 1000, 5000, 10);
	assert_int_equal(check(&h, VSOCK_HDR_SIZE + 10), VSOCK_PKT_OK);
	assert_int_equal(check(&h, VSOCK_HDR_SIZE + 4096), VSOCK_PKT_OK); /* a longer buffer is fine */
	for (uint16_t op = VSOCK_OP_REQUEST; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
		h = guest_pkt(op, 1000, 5000, 0);
		assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_OK);
	}
}

static void test_check_malformed_dropped(void **state)
{
	struct vsock_hdr h = guest_pkt(VSOCK_OP_RW, 1000, 5000, 10);
	uint8_t raw[VSOCK_HDR_SIZE] = { 0 };
	struct vsock_hdr out;
	/* shorter than a header: nothing to decode, nothing to answer */
	assert_int_equal(vsock_check_tx(raw, 0, GUEST_CID, &out), VSOCK_PKT_DROP);
	assert_int_equal(vsock_check_tx(raw, VSOCK_HDR_SIZE - 1, GUEST_CID, &out), VSOCK_PKT_DROP);
	/* len beyond the buffer */
	assert_int_equal(check(&h, VSOCK_HDR_SIZE + 9), VSOCK_PKT_DROP);
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	/* len beyond the largest packet, even with the bytes there */
	h.len = VSOCK_MAX_PAYLOAD + 1;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD + 1), VSOCK_PKT_DROP);
	h.len = 0xffffffff;
	assert_int_equal(check(&h, UINT64_MAX), VSOCK_PKT_DROP);
	h.len = VSOCK_MAX_PAYLOAD;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD), VSOCK_PKT_OK);
	/* spoofed source CID: another guest's, the host's, high bits set */
	h = guest_pkt(VSOCK_OP_REQUEST, 1000, 5000, 0);
	h.src_cid = 4;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	h.src_cid = VSOCK_HOST_CID;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	h.src_cid = (1ull << 32) | GUEST_CID;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
}

static void test_check_refused_with_rst(void **state)
{
	struct vsock_hdr h = guest_pkt(VSOCK_OP_REQUEST, 1000, 5000, 0);
	h.dst_cid = 7; /* not the host */
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_RST);
	h.dst_cid = (1ull << 32) | VSOCK_HOST_CID;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_RST);
	h = guest_pkt(VSOCK_OP_REQUEST, 1000, 5000, 0);
	h.type = 2; /* SEQPACKET: not offered */
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_RST);
	h.type = 0;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_RST);
	uint16_t bad_ops[] = { 0, 8, 0xffff };
	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		h = guest_pkt(bad_ops[i], 1000, 5000, 0);
		assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_RST);
	}
	/* an RST is never answered with an RST */
	h = guest_pkt(VSOCK_OP_RST, 1000, 5000, 0);
	h.type = 2;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	h = guest_pkt(VSOCK_OP_RST, 1000, 5000, 0);
	h.dst_cid = 9;
	assert_int_equal(check(&h, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
}

static void test_rst_reply(void **state)
{
	struct vsock_hdr pkt = guest_pkt(VSOCK_OP_RW, 1000, 5000, 10), rst;
	pkt.dst_cid = 9;
	vsock_rst_reply(&pkt, &rst);
	assert_int_equal(rst.src_cid, 9);
	assert_int_equal(rst.dst_cid, GUEST_CID);
	assert_int_equal(rst.src_port, 5000);
	assert_int_equal(rst.dst_port, 1000);
	assert_int_equal(rst.op, VSOCK_OP_RST);
	assert_int_equal(rst.type, VSOCK_TYPE_STREAM);
	assert_int_equal(rst.len, 0);
}

/* --- CONNECT line ------------------------------------------------------ */

static int parse(const char *s, uint32_t *port)
{
	return vsock_parse_connect(s, strlen(s), port);
}

static void test_connect_line(void **state)
{
	uint32_t port = 0;
	assert_int_equal(parse("CONNECT 1234\n", &port), 13);
	assert_int_equal(port, 1234);
	assert_int_equal(parse("CONNECT 0\n", &port), 10);
	assert_int_equal(port, 0);
	assert_int_equal(parse("CONNECT 4294967295\n", &port), 19);
	assert_int_equal(port, 4294967295u);
	/* only the line: what follows is the stream's */
	assert_int_equal(parse("CONNECT 52\nhello", &port), 11);
	assert_int_equal(port, 52);
	/* incomplete, and could still become valid */
	assert_int_equal(parse("", &port), -EAGAIN);
	assert_int_equal(parse("CONN", &port), -EAGAIN);
	assert_int_equal(parse("CONNECT ", &port), -EAGAIN);
	assert_int_equal(parse("CONNECT 1234", &port), -EAGAIN);
}

static void test_connect_line_bad(void **state)
{
	uint32_t port = 77;
	const char *bad[] = {
		"GET / HTTP/1.1\r\n", "connect 1\n", "CONNECT\n", "CONNECT \n", "CONNECT  5\n", "CONNECT -1\n",
		"CONNECT +1\n", "CONNECT 12a\n", "CONNECT 1234\r\n", "CONNECT 1234 \n", "CONNECT 0x10\n",
		"CONNECT 4294967296\n", "CONNECT 99999999999\n", "CONNECTX 1\n", "X", "CONNECT 1\0\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = strlen(bad[i]);
		if (i == sizeof(bad) / sizeof(bad[0]) - 1)
			len = 11; /* with the NUL */
		assert_int_equal(vsock_parse_connect(bad[i], len, &port), -EINVAL);
	}
	/* too long, even with a newline later */
	char lng[64];
	memset(lng, '0', sizeof(lng));
	memcpy(lng, "CONNECT ", 8);
	assert_int_equal(vsock_parse_connect(lng, VSOCK_CONNECT_LINE_MAX, &port), -EINVAL);
	lng[40] = '\n';
	assert_int_equal(vsock_parse_connect(lng, 41, &port), -EINVAL);
	/* leading zeros within the length limit are a number */
	assert_int_equal(parse("CONNECT 0000000000000000000007\n", &port), 31);
	assert_int_equal(port, 7);
}

/* --- Ring -------------------------------------------------------------- */

static void test_ring(void **state)
{
	struct vsock_ring r = { 0 };
	const uint8_t *p;
	assert_int_equal(vsock_ring_peek(&r, &p), 0);
	assert_null(r.data); /* no buffer until needed */
	static uint8_t big[VSOCK_CONN_BUF_SIZE + 1];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	assert_int_equal(vsock_ring_push(&r, big, sizeof(big)), -ENOBUFS);
	assert_int_equal(r.used, 0);
	assert_int_equal(vsock_ring_push(&r, big, VSOCK_CONN_BUF_SIZE - 100), 0);
	assert_int_equal(vsock_ring_free_space(&r), 100);
	assert_int_equal(vsock_ring_push(&r, big, 101), -ENOBUFS);
	vsock_ring_consume(&r, VSOCK_CONN_BUF_SIZE - 200);
	/* wraps: 300 bytes, 100 at the end and 200 at the start */
	assert_int_equal(vsock_ring_push(&r, big + 1000, 200), 0);
	assert_int_equal(r.used, 300);
	assert_int_equal(vsock_ring_peek(&r, &p), 200);
	assert_memory_equal(p, big + VSOCK_CONN_BUF_SIZE - 200, 100);
	assert_memory_equal(p + 100, big + 1000, 100);
	vsock_ring_consume(&r, 200);
	assert_int_equal(vsock_ring_peek(&r, &p), 100);
	assert_memory_equal(p, big + 1100, 100);
	vsock_ring_consume(&r, 1000); /* more than there is: just empties */
	assert_int_equal(r.used, 0);
	assert_null(r.data); /* freed once empty */
	assert_int_equal(vsock_ring_push(&r, big, 0), 0);
	assert_null(r.data);
}

/* --- State machine ----------------------------------------------------- */

static struct vsock_conn conn;

static int conn_setup(void **state)
{
	memset(&conn, 0, sizeof(conn));
	conn.fd = -1;
	return 0;
}

static int conn_teardown(void **state)
{
	vsock_ring_clear(&conn.txq);
	return 0;
}

static void establish_from_guest(struct vsock_conn *c, uint32_t peer_buf_alloc)
{
	struct vsock_hdr req = guest_pkt(VSOCK_OP_REQUEST, 1000, 5000, 0), h;
	req.buf_alloc = peer_buf_alloc;
	vsock_conn_init_guest(c, GUEST_CID, &req);
	assert_int_equal(vsock_conn_next_ctrl(c, &h), VSOCK_OP_RESPONSE);
}

static struct vsock_action feed(struct vsock_conn *c, uint16_t op, uint32_t len, uint32_t flags)
{
	struct vsock_hdr h = guest_pkt(op, c->peer_port, c->local_port, len);
	h.flags = flags;
	h.buf_alloc = c->peer_buf_alloc;
	h.fwd_cnt = c->peer_fwd_cnt;
	struct vsock_action act;
	vsock_conn_guest_pkt(c, &h, 0, &act);
	return act;
}

static void test_guest_request_response(void **state)
{
	struct vsock_hdr req = guest_pkt(VSOCK_OP_REQUEST, 1000, 5000, 0), h;
	vsock_conn_init_guest(&conn, GUEST_CID, &req);
	assert_int_equal(conn.state, VSOCK_ESTABLISHED);
	assert_true(vsock_conn_wants_rx(&conn));
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_RESPONSE);
	assert_int_equal(h.src_cid, VSOCK_HOST_CID);
	assert_int_equal(h.dst_cid, GUEST_CID);
	assert_int_equal(h.src_port, 5000);
	assert_int_equal(h.dst_port, 1000);
	assert_int_equal(h.type, VSOCK_TYPE_STREAM);
	assert_int_equal(h.buf_alloc, VSOCK_CONN_BUF_SIZE);
	assert_int_equal(h.fwd_cnt, 0);
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_INVALID);
	assert_false(vsock_conn_wants_rx(&conn));
	assert_int_equal(vsock_conn_peer_credit(&conn), 256 * 1024);
}

static void test_host_connect(void **state)
{
	struct vsock_hdr h;
	vsock_conn_init_host(&conn, GUEST_CID, 100);
	assert_int_equal(conn.state, VSOCK_AWAIT_LINE);
	assert_false(vsock_conn_wants_rx(&conn));
	vsock_conn_connect(&conn, VSOCK_LOCAL_PORT_FIRST, 1234, 200);
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_REQUEST);
	assert_int_equal(h.src_port, VSOCK_LOCAL_PORT_FIRST);
	assert_int_equal(h.dst_port, 1234);
	assert_false(vsock_conn_can_send_data(&conn)); /* not before RESPONSE */
	struct vsock_action act = feed(&conn, VSOCK_OP_RESPONSE, 0, 0);
	assert_true(act.host_ok);
	assert_false(act.close_host);
	assert_int_equal(conn.state, VSOCK_ESTABLISHED);
	assert_int_equal(conn.deadline_ns, 0);
	assert_true(vsock_conn_can_send_data(&conn));
}

static void test_host_connect_refused(void **state)
{
	struct vsock_hdr h;
	vsock_conn_init_host(&conn, GUEST_CID, 0);
	vsock_conn_connect(&conn, VSOCK_LOCAL_PORT_FIRST, 1234, 0);
	vsock_conn_next_ctrl(&conn, &h);
	struct vsock_action act = feed(&conn, VSOCK_OP_RST, 0, 0);
	assert_true(act.free);
	assert_true(act.close_host);
	assert_false(act.host_ok);
}

static void test_timeouts(void **state)
{
	bool free_now;
	vsock_conn_init_host(&conn, GUEST_CID, 0);
	assert_false(vsock_conn_expired(&conn, VSOCK_LINE_TIMEOUT_NS - 1, &free_now));
	assert_true(vsock_conn_expired(&conn, VSOCK_LINE_TIMEOUT_NS, &free_now));
	assert_true(free_now);

	conn_setup(NULL);
	vsock_conn_init_host(&conn, GUEST_CID, 0);
	vsock_conn_connect(&conn, VSOCK_LOCAL_PORT_FIRST, 1234, 10 * SEC);
	assert_false(vsock_conn_expired(&conn, 11 * SEC, &free_now));
	assert_true(vsock_conn_expired(&conn, 10 * SEC + VSOCK_CONNECT_TIMEOUT_NS, &free_now));
	assert_false(free_now);
	assert_int_equal(conn.state, VSOCK_DEAD);
	assert_int_equal(conn.pending, VSOCK_PEND_RST); /* the guest learns it is over */
	assert_false(vsock_conn_expired(&conn, 100 * SEC, &free_now)); /* once */
}

static void test_rw_within_credit(void **state)
{
	establish_from_guest(&conn, 4096);
	struct vsock_action act = feed(&conn, VSOCK_OP_RW, 1000, 0);
	assert_true(act.forward);
	assert_false(act.protocol_error);
	assert_int_equal(conn.rx_cnt, 1000);
	/* what the host socket did not take waits in txq */
	assert_int_equal(vsock_ring_push(&conn.txq, "x", 1), 0);
	/* an empty RW forwards nothing but is fine */
	act = feed(&conn, VSOCK_OP_RW, 0, 0);
	assert_false(act.forward);
	assert_false(act.protocol_error);
}

static void test_rw_over_credit_resets(void **state)
{
	static uint8_t fill[VSOCK_CONN_BUF_SIZE];
	establish_from_guest(&conn, 4096);
	/* the host socket took nothing: the whole buffer is the guest's */
	assert_int_equal(vsock_ring_push(&conn.txq, fill, VSOCK_CONN_BUF_SIZE - 10), 0);
	struct vsock_action act = feed(&conn, VSOCK_OP_RW, 10, 0);
	assert_true(act.forward);
	assert_int_equal(vsock_ring_push(&conn.txq, fill, 10), 0);
	act = feed(&conn, VSOCK_OP_RW, 1, 0);
	assert_false(act.forward);
	assert_true(act.protocol_error);
	assert_true(act.close_host);
	assert_int_equal(conn.state, VSOCK_DEAD);
	assert_int_equal(conn.txq.used, 0); /* buffer dropped */
	struct vsock_hdr h;
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 1000);
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_INVALID);
}

static void test_credit_to_guest(void **state)
{
	struct vsock_hdr h;
	establish_from_guest(&conn, 1000);
	conn.readable = true;
	assert_int_equal(vsock_conn_peer_credit(&conn), 1000);
	assert_true(vsock_conn_wants_rx(&conn));
	vsock_conn_data_hdr(&conn, 600, &h);
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 600);
	assert_int_equal(vsock_conn_peer_credit(&conn), 400);
	vsock_conn_data_hdr(&conn, 400, &h);
	assert_int_equal(vsock_conn_peer_credit(&conn), 0);
	assert_false(vsock_conn_wants_rx(&conn)); /* readable, but no credit */
	/* asks once */
	vsock_conn_credit_stalled(&conn);
	vsock_conn_credit_stalled(&conn);
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_CREDIT_REQUEST);
	vsock_conn_credit_stalled(&conn);
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_INVALID);
	/* the guest read 700 */
	struct vsock_hdr upd = guest_pkt(VSOCK_OP_CREDIT_UPDATE, 1000, 5000, 0);
	upd.buf_alloc = 1000;
	upd.fwd_cnt = 700;
	struct vsock_action act;
	vsock_conn_guest_pkt(&conn, &upd, 0, &act);
	assert_false(act.close_host);
	assert_int_equal(vsock_conn_peer_credit(&conn), 700);
	assert_false(conn.credit_requested);
	assert_true(vsock_conn_wants_rx(&conn));
	/* a guest shrinking its buffer below what is in flight: no credit, no underflow */
	conn.peer_buf_alloc = 100;
	feed(&conn, VSOCK_OP_CREDIT_UPDATE, 0, 0);
	assert_int_equal(vsock_conn_peer_credit(&conn), 0);
}

static void test_credit_counters_wrap(void **state)
{
	establish_from_guest(&conn, 1000);
	conn.tx_cnt = 0xfffffff0;
	conn.peer_fwd_cnt = 0xffffff00;
	assert_int_equal(vsock_conn_peer_credit(&conn), 1000 - 0xf0);
	struct vsock_hdr h;
	vsock_conn_data_hdr(&conn, 0x20, &h); /* tx_cnt wraps to 0x10 */
	assert_int_equal(conn.tx_cnt, 0x10);
	assert_int_equal(vsock_conn_peer_credit(&conn), 1000 - 0x110);
}

static void test_credit_update_to_guest(void **state)
{
	struct vsock_hdr h;
	establish_from_guest(&conn, 4096);
	feed(&conn, VSOCK_OP_CREDIT_REQUEST, 0, 0);
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(h.buf_alloc, VSOCK_CONN_BUF_SIZE);
	/* forwarding a little says nothing; enough earns an update */
	vsock_conn_forwarded(&conn, VSOCK_CREDIT_THRESHOLD - 1);
	assert_int_equal(conn.pending, 0);
	vsock_conn_forwarded(&conn, 1);
	assert_int_equal(conn.pending, VSOCK_PEND_CREDIT_UPDATE);
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(h.fwd_cnt, VSOCK_CREDIT_THRESHOLD);
	/* any packet carries the credit, so an RW clears an owed update */
	vsock_conn_forwarded(&conn, VSOCK_CREDIT_THRESHOLD);
	vsock_conn_data_hdr(&conn, 10, &h);
	assert_int_equal(h.fwd_cnt, 2 * VSOCK_CREDIT_THRESHOLD);
	assert_int_equal(conn.pending, 0);
}

static void test_guest_shutdown_send(void **state)
{
	establish_from_guest(&conn, 4096);
	struct vsock_action act = feed(&conn, VSOCK_OP_SHUTDOWN, 0, VSOCK_SHUTDOWN_SEND);
	assert_false(act.close_host);
	assert_true(conn.shut_host_write);
	assert_int_equal(conn.state, VSOCK_ESTABLISHED);
	assert_true(vsock_conn_can_send_data(&conn)); /* the guest still reads */
	act = feed(&conn, VSOCK_OP_RW, 5, 0);          /* but must not write */
	assert_true(act.protocol_error);
	assert_int_equal(conn.state, VSOCK_DEAD);
}

static void test_guest_shutdown_rcv(void **state)
{
	establish_from_guest(&conn, 4096);
	conn.readable = true;
	feed(&conn, VSOCK_OP_SHUTDOWN, 0, VSOCK_SHUTDOWN_RCV);
	assert_false(vsock_conn_can_send_data(&conn));
	assert_false(vsock_conn_wants_rx(&conn));
}

static void test_guest_shutdown_both(void **state)
{
	establish_from_guest(&conn, 4096);
	assert_int_equal(vsock_ring_push(&conn.txq, "abc", 3), 0);
	struct vsock_action act = feed(&conn, VSOCK_OP_SHUTDOWN, 0, VSOCK_SHUTDOWN_BOTH);
	assert_true(act.close_host);
	assert_false(act.free);
	assert_false(act.protocol_error);
	assert_int_equal(conn.state, VSOCK_DEAD);
	assert_int_equal(conn.txq.used, 3); /* still reaches the host */
	struct vsock_hdr h;
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_RST);
	/* a later guest RST changes nothing */
	act = feed(&conn, VSOCK_OP_RST, 0, 0);
	assert_false(act.free);
	assert_int_equal(conn.pending, 0);
}

static void test_host_half_close_then_hangup(void **state)
{
	struct vsock_hdr h;
	establish_from_guest(&conn, 4096);
	conn.readable = true;
	assert_false(vsock_conn_host_eof(&conn, false, 0)); /* keep the socket: the host still reads */
	assert_false(vsock_conn_can_send_data(&conn));
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_SHUTDOWN);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	/* the guest may still write */
	struct vsock_action act = feed(&conn, VSOCK_OP_RW, 5, 0);
	assert_true(act.forward);
	assert_int_equal(vsock_ring_push(&conn.txq, "hello", 5), 0);
	/* then the host goes entirely */
	assert_true(vsock_conn_host_eof(&conn, true, 50 * SEC));
	assert_int_equal(conn.state, VSOCK_CLOSING);
	assert_int_equal(conn.txq.used, 0);
	assert_int_equal(conn.fwd_cnt, 5); /* dropped bytes still free the guest's credit */
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_SHUTDOWN);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_BOTH);
	assert_int_equal(h.fwd_cnt, 5);
	/* bytes in flight are discarded, not an error */
	act = feed(&conn, VSOCK_OP_RW, 100, 0);
	assert_false(act.forward);
	assert_false(act.protocol_error);
	assert_int_equal(conn.fwd_cnt, 105);
	/* the guest's RST ends it */
	act = feed(&conn, VSOCK_OP_RST, 0, 0);
	assert_true(act.free);
}

static void test_closing_timeout(void **state)
{
	bool free_now;
	establish_from_guest(&conn, 4096);
	vsock_conn_host_eof(&conn, true, 0);
	assert_int_equal(conn.state, VSOCK_CLOSING);
	assert_true(vsock_conn_expired(&conn, VSOCK_CLOSE_TIMEOUT_NS, &free_now));
	assert_false(free_now);
	assert_int_equal(conn.state, VSOCK_DEAD);
	struct vsock_hdr h;
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_RST); /* RST beats the SHUTDOWN */
	assert_int_equal(vsock_conn_next_ctrl(&conn, &h), VSOCK_OP_INVALID);
}

static void test_host_hangup_while_connecting(void **state)
{
	vsock_conn_init_host(&conn, GUEST_CID, 0);
	vsock_conn_connect(&conn, VSOCK_LOCAL_PORT_FIRST, 1234, 0);
	assert_true(vsock_conn_host_eof(&conn, true, 0));
	assert_int_equal(conn.state, VSOCK_DEAD);
	assert_int_equal(conn.pending, VSOCK_PEND_RST); /* REQUEST withdrawn */
}

static void test_protocol_errors(void **state)
{
	/* RESPONSE when established, REQUEST for a connection that exists */
	uint16_t ops[] = { VSOCK_OP_RESPONSE, VSOCK_OP_REQUEST, VSOCK_OP_INVALID, 9 };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		conn_setup(NULL);
		establish_from_guest(&conn, 4096);
		struct vsock_action act = feed(&conn, ops[i], 0, 0);
		assert_true(act.protocol_error);
		assert_true(act.close_host);
		assert_int_equal(conn.state, VSOCK_DEAD);
		assert_int_equal(conn.pending, VSOCK_PEND_RST);
	}
	/* RW or SHUTDOWN before the guest accepted */
	uint16_t early[] = { VSOCK_OP_RW, VSOCK_OP_SHUTDOWN };
	for (size_t i = 0; i < 2; i++) {
		conn_setup(NULL);
		vsock_conn_init_host(&conn, GUEST_CID, 0);
		vsock_conn_connect(&conn, VSOCK_LOCAL_PORT_FIRST, 1234, 0);
		struct vsock_action act = feed(&conn, early[i], 1, VSOCK_SHUTDOWN_BOTH);
		assert_true(act.protocol_error);
		assert_false(act.forward);
		assert_int_equal(conn.state, VSOCK_DEAD);
	}
}

static void test_dead_ignores_guest(void **state)
{
	establish_from_guest(&conn, 4096);
	vsock_conn_reset(&conn);
	struct vsock_action act = feed(&conn, VSOCK_OP_RW, 10, 0);
	assert_false(act.forward);
	assert_false(act.protocol_error);
	assert_int_equal(conn.pending, VSOCK_PEND_RST);
}

static bool fake_in_use(void *opaque, uint32_t local, uint32_t peer)
{
	const uint32_t *taken = opaque;
	return peer == 1234 && (local == taken[0] || local == taken[1]);
}

static void test_local_ports(void **state)
{
	uint32_t last = VSOCK_LOCAL_PORT_FIRST - 1;
	uint32_t taken[2] = { VSOCK_LOCAL_PORT_FIRST + 1, VSOCK_LOCAL_PORT_FIRST + 2 };
	assert_int_equal(vsock_next_local_port(&last, 1234, fake_in_use, taken), VSOCK_LOCAL_PORT_FIRST);
	assert_int_equal(vsock_next_local_port(&last, 1234, fake_in_use, taken), VSOCK_LOCAL_PORT_FIRST + 3);
	/* another guest port may reuse a local port */
	last = VSOCK_LOCAL_PORT_FIRST;
	assert_int_equal(vsock_next_local_port(&last, 99, fake_in_use, taken), VSOCK_LOCAL_PORT_FIRST + 1);
	/* wraps back to the first */
	last = VSOCK_LOCAL_PORT_END - 1;
	assert_int_equal(vsock_next_local_port(&last, 1234, fake_in_use, taken), VSOCK_LOCAL_PORT_FIRST);
}

/* --- The listening socket (real sockets in a temporary directory) -------- */

static char tmpdir[64], sock_path[128];

static int uds_setup(void **state)
{
	strcpy(tmpdir, "/tmp/test_vsock.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(sock_path, sizeof(sock_path), "%s/v.sock", tmpdir);
	return 0;
}

static int uds_teardown(void **state)
{
	unlink(sock_path);
	rmdir(tmpdir);
	return 0;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return rc;
}

static void test_listen_new_and_in_use(void **state)
{
	int fd = -1, fd2 = -1;
	ino_t ino = 0, ino2 = 0;
	assert_int_equal(vsock_listen_uds(sock_path, &fd, &ino), 0);
	assert_true(fd >= 0);
	assert_int_equal(connect_to(sock_path), 0);
	struct stat st;
	assert_int_equal(stat(sock_path, &st), 0);
	assert_int_equal(st.st_ino, ino);
	/* a second VMM on the same path is refused, the first keeps it */
	assert_int_equal(vsock_listen_uds(sock_path, &fd2, &ino2), -EADDRINUSE);
	assert_int_equal(fd2, -1);
	assert_int_equal(connect_to(sock_path), 0);
	close(fd);
}

static void test_listen_replaces_stale_socket(void **state)
{
	int fd = -1;
	ino_t ino = 0;
	assert_int_equal(vsock_listen_uds(sock_path, &fd, &ino), 0);
	close(fd); /* as if the VMM crashed: the file stays, nobody listens */
	assert_int_not_equal(connect_to(sock_path), 0);
	assert_int_equal(vsock_listen_uds(sock_path, &fd, &ino), 0);
	assert_int_equal(connect_to(sock_path), 0);
	close(fd);
}

static void test_listen_refuses_other_files(void **state)
{
	int fd = -1;
	ino_t ino;
	int file = open(sock_path, O_CREAT | O_WRONLY, 0600);
	assert_true(file >= 0);
	assert_int_equal(write(file, "keep", 4), 4);
	close(file);
	assert_int_equal(vsock_listen_uds(sock_path, &fd, &ino), -EEXIST);
	struct stat st;
	assert_int_equal(stat(sock_path, &st), 0);
	assert_int_equal(st.st_size, 4); /* untouched */
	unlink(sock_path);
	assert_int_equal(mkdir(sock_path, 0700), 0);
	assert_int_equal(vsock_listen_uds(sock_path, &fd, &ino), -EEXIST);
	rmdir(sock_path);
	/* no room for PATH_4294967295 in sun_path */
	char lng[200];
	memset(lng, 'a', sizeof(lng));
	lng[0] = '/';
	lng[100] = 0;
	assert_int_equal(vsock_listen_uds(lng, &fd, &ino), -ENAMETOOLONG);
	assert_int_equal(fd, -1);
	/* a directory that does not exist */
	snprintf(lng, sizeof(lng), "%s/missing/v.sock", tmpdir);
	assert_true(vsock_listen_uds(lng, &fd, &ino) < 0);
	assert_int_equal(fd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_check_valid),
		cmocka_unit_test(test_check_malformed_dropped),
		cmocka_unit_test(test_check_refused_with_rst),
		cmocka_unit_test(test_rst_reply),
		cmocka_unit_test(test_connect_line),
		cmocka_unit_test(test_connect_line_bad),
		cmocka_unit_test(test_ring),
		cmocka_unit_test_setup_teardown(test_guest_request_response, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_host_connect, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_host_connect_refused, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_timeouts, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_rw_within_credit, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_rw_over_credit_resets, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_credit_to_guest, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_credit_counters_wrap, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_credit_update_to_guest, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_guest_shutdown_send, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_guest_shutdown_rcv, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_guest_shutdown_both, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_host_half_close_then_hangup, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_closing_timeout, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_host_hangup_while_connecting, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_protocol_errors, conn_setup, conn_teardown),
		cmocka_unit_test_setup_teardown(test_dead_ignores_guest, conn_setup, conn_teardown),
		cmocka_unit_test(test_local_ports),
		cmocka_unit_test_setup_teardown(test_listen_new_and_in_use, uds_setup, uds_teardown),
		cmocka_unit_test_setup_teardown(test_listen_replaces_stale_socket, uds_setup, uds_teardown),
		cmocka_unit_test_setup_teardown(test_listen_refuses_other_files, uds_setup, uds_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
