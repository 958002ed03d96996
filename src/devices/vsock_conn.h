/* virtio-vsock (virtio 1.2, 5.10) without the I/O: packet headers, the
 * checks every guest packet passes, the per-connection state machine with
 * its credit accounting, a bounded byte ring, and the host's "CONNECT
 * <port>\n" line. virtio_vsock.c owns the sockets and the virtqueues and
 * does what these functions decide; nothing here makes a system call, so
 * all of it is unit-tested without KVM.
 *
 * A connection joins a guest port (peer_port) to a host UNIX socket and a
 * host-side vsock port (local_port): the guest's destination port when the
 * guest connected, an ephemeral port from VSOCK_LOCAL_PORT_FIRST up when
 * the host did (as Firecracker assigns them). */
#ifndef KVMLITE_VSOCK_CONN_H
#define KVMLITE_VSOCK_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define VSOCK_HOST_CID      2
#define VSOCK_HDR_SIZE      44
#define VSOCK_TYPE_STREAM   1

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive / send no more. */
#define VSOCK_SHUTDOWN_RCV  1
#define VSOCK_SHUTDOWN_SEND 2
#define VSOCK_SHUTDOWN_BOTH (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)

#define VSOCK_MAX_PAYLOAD      (64 * 1024)  /* Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE */
#define VSOCK_CONN_BUF_SIZE    (64 * 1024)  /* our buf_alloc: guest bytes buffered per connection, at most */
#define VSOCK_CREDIT_THRESHOLD (VSOCK_CONN_BUF_SIZE / 4) /* forwarded unannounced bytes that earn a CREDIT_UPDATE */
#define VSOCK_MAX_CONNS        1024         /* worst case 1024 x 64 KiB buffered */
#define VSOCK_CONNECT_LINE_MAX 32           /* "CONNECT 4294967295\n" is 19 */
#define VSOCK_LOCAL_PORT_FIRST (1u << 30)
#define VSOCK_LOCAL_PORT_END   (1u << 31)

/* Timeouts (ns): the host client's CONNECT line, the guest's answer to a
 * REQUEST, the guest's RST after our SHUTDOWN, buffered bytes still to
 * reach a host socket after the guest closed. */
#define VSOCK_LINE_TIMEOUT_NS    (5ull * 1000000000)
#define VSOCK_CONNECT_TIMEOUT_NS (2ull * 1000000000)
#define VSOCK_CLOSE_TIMEOUT_NS   (2ull * 1000000000)
#define VSOCK_LINGER_TIMEOUT_NS  (5ull * 1000000000)

/* struct virtio_vsock_hdr, decoded (little-endian and packed in the ring). */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

void vsock_hdr_decode(const uint8_t raw[VSOCK_HDR_SIZE], struct vsock_hdr *h);
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t raw[VSOCK_HDR_SIZE]);

/* What to do with a packet the guest put on the tx queue. */
enum vsock_verdict {
	VSOCK_PKT_OK,    /* valid: hand it to its connection */
	VSOCK_PKT_DROP,  /* malformed or not from this guest: nothing can be answered */
	VSOCK_PKT_RST,   /* well-formed but refused: answer with vsock_rst_reply() */
};

/* Checks a tx packet: chain_len readable bytes in all, the first
 * VSOCK_HDR_SIZE of them in raw (only read when chain_len covers them).
 * Decodes into h whenever the header is complete. */
enum vsock_verdict vsock_check_tx(const uint8_t *raw, uint64_t chain_len, uint64_t guest_cid, struct vsock_hdr *h);

/* The RST answering pkt (addresses swapped). */
void vsock_rst_reply(const struct vsock_hdr *pkt, struct vsock_hdr *rst);

/* The host client's first line, "CONNECT <port>\n" (decimal, 0 to
 * 4294967295, no sign or spaces beyond the one). Returns the line's length
 * including the newline, -EAGAIN while no newline is in buf (and it may
 * still come), or -EINVAL. */
int vsock_parse_connect(const char *buf, size_t len, uint32_t *port);

/* A byte ring of VSOCK_CONN_BUF_SIZE, allocated on first use and freed
 * once empty: an idle connection costs no buffer. */
struct vsock_ring {
	uint8_t *data;
	uint32_t head;  /* next byte to read */
	uint32_t used;
};

/* Appends len bytes; -ENOBUFS (nothing appended) if they do not fit,
 * -ENOMEM. */
int vsock_ring_push(struct vsock_ring *r, const void *buf, uint32_t len);
/* The contiguous readable bytes at the head; 0 when empty. */
uint32_t vsock_ring_peek(const struct vsock_ring *r, const uint8_t **p);
void vsock_ring_consume(struct vsock_ring *r, uint32_t n);
uint32_t vsock_ring_free_space(const struct vsock_ring *r);
void vsock_ring_clear(struct vsock_ring *r);

enum vsock_state {
	VSOCK_AWAIT_LINE,   /* host client accepted; its CONNECT line not read yet */
	VSOCK_CONNECTING,   /* REQUEST to the guest queued or sent; waiting for RESPONSE */
	VSOCK_ESTABLISHED,
	VSOCK_CLOSING,      /* the host socket is gone; SHUTDOWN sent, waiting for the guest's RST */
	VSOCK_DEAD,         /* an RST to send (or sent); the host socket closes when its buffer drained */
};

/* Control packets a connection owes the guest (bits of pending). */
enum {
	VSOCK_PEND_REQUEST = 1 << 0,
	VSOCK_PEND_RESPONSE = 1 << 1,
	VSOCK_PEND_SHUTDOWN = 1 << 2,
	VSOCK_PEND_CREDIT_UPDATE = 1 << 3,
	VSOCK_PEND_CREDIT_REQUEST = 1 << 4,
	VSOCK_PEND_RST = 1 << 5,
};

struct vsock_conn {
	enum vsock_state state;
	uint64_t guest_cid;
	uint32_t local_port, peer_port;
	bool host_initiated;

	unsigned pending;          /* VSOCK_PEND_* */
	uint32_t shutdown_flags;   /* flags of the pending SHUTDOWN */
	uint32_t peer_shutdown;    /* what the guest said it shut (VSOCK_SHUTDOWN_*) */
	bool host_eof;             /* the host socket will send no more: stop reading it */
	bool shut_host_write;      /* shutdown(SHUT_WR) the host socket once txq drained */

	/* Flow control. Ours: the guest may have buf_alloc bytes in flight
	 * to us; fwd_cnt counts those that left (to the host socket), and
	 * every packet we send tells the guest. Theirs: we may have
	 * peer_buf_alloc - (tx_cnt - peer_fwd_cnt) bytes in flight. */
	uint32_t buf_alloc, fwd_cnt, last_fwd_cnt_sent, rx_cnt;
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	bool credit_requested;     /* sent CREDIT_REQUEST, no update since */

	struct vsock_ring txq;     /* guest bytes the host socket did not take yet */
	uint64_t deadline_ns;      /* 0: none */

	/* The glue's (virtio_vsock.c) */
	int fd;
	bool readable;             /* the host socket may have bytes (edge-triggered) */
	bool writable;
	bool hangup;               /* the host socket's peer is gone */
	bool in_ready;
	struct vsock_conn *hash_next;
	struct vsock_conn *prev, *next;             /* all connections */
	struct vsock_conn *ready_prev, *ready_next; /* connections with something for the guest */
};

/* What the glue must do after vsock_conn_guest_pkt(). */
struct vsock_action {
	bool forward;        /* RW within our credit: write the payload to the host socket or txq */
	bool host_ok;        /* the guest accepted a host-initiated connection: write "OK <local_port>\n" */
	bool close_host;     /* close the host socket (after draining txq if state is DEAD) */
	bool free;           /* forget the connection now (no RST owed) */
	bool protocol_error; /* for the counters: the guest broke the protocol (or our credit), the connection was reset */
};

/* A guest-initiated connection (REQUEST from the guest, host socket
 * connected): owes the guest a RESPONSE. */
void vsock_conn_init_guest(struct vsock_conn *c, uint64_t guest_cid, const struct vsock_hdr *req);
/* A host client accepted on the listening socket; ports come with its line. */
void vsock_conn_init_host(struct vsock_conn *c, uint64_t guest_cid, uint64_t now_ns);
/* The line asked for peer_port; local_port is the port assigned. Owes a REQUEST. */
void vsock_conn_connect(struct vsock_conn *c, uint32_t local_port, uint32_t peer_port, uint64_t now_ns);

/* A guest packet for this connection (already vsock_check_tx'd). */
void vsock_conn_guest_pkt(struct vsock_conn *c, const struct vsock_hdr *h, uint64_t now_ns,
			  struct vsock_action *act);
/* n guest bytes reached the host socket (or were discarded). */
void vsock_conn_forwarded(struct vsock_conn *c, uint32_t n);

/* Bytes we may send the guest now (its credit, 0 when it has none). */
uint32_t vsock_conn_peer_credit(const struct vsock_conn *c);
/* May host bytes go to the guest (state, shutdowns; credit aside)? */
bool vsock_conn_can_send_data(const struct vsock_conn *c);
/* Does the connection have a packet for the guest right now? */
bool vsock_conn_wants_rx(const struct vsock_conn *c);
/* The next control packet owed to the guest: its op (and h filled, the
 * pending bit cleared), or VSOCK_OP_INVALID when none is owed. */
enum vsock_op vsock_conn_next_ctrl(struct vsock_conn *c, struct vsock_hdr *h);
/* The header of an RW carrying len host bytes (tx_cnt advanced). */
void vsock_conn_data_hdr(struct vsock_conn *c, uint32_t len, struct vsock_hdr *h);
/* Readable data but no credit: ask the guest for an update, once. */
void vsock_conn_credit_stalled(struct vsock_conn *c);

/* The host socket reached EOF (hangup: its peer closed entirely, or it
 * failed). Returns whether the glue must close the host socket now. */
bool vsock_conn_host_eof(struct vsock_conn *c, bool hangup, uint64_t now_ns);
/* Resets the connection: RST owed, buffer dropped. The glue closes the socket. */
void vsock_conn_reset(struct vsock_conn *c);
/* Deadline passed? Returns whether the glue must close the host socket
 * (and, in AWAIT_LINE, free the connection: see free_now). */
bool vsock_conn_expired(struct vsock_conn *c, uint64_t now_ns, bool *free_now);

/* Next ephemeral host port after *last that no connection with
 * peer_port uses (in_use decides); 0 if all are taken. */
uint32_t vsock_next_local_port(uint32_t *last, uint32_t peer_port,
			       bool (*in_use)(void *opaque, uint32_t local, uint32_t peer), void *opaque);


/* In virtio_vsock.c (it binds a socket), here to be unit-tested: listens
 * on path for host clients. -EEXIST if path exists and is not a socket,
 * -EADDRINUSE if a process listens there; a socket file nobody listens on
 * is replaced. Logs why it failed. */
int vsock_listen_uds(const char *path, int *fd, ino_t *ino);

#endif
