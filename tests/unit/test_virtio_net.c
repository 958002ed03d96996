/* virtio-net: the pure parts (default MAC, transmit header checks, tap
 * offloads from features), then the device's queue callbacks on split rings
 * in fake guest RAM with a datagram socketpair as the backend (it keeps
 * frame boundaries like a tap): transmit, merged receive buffers, frames
 * too large, no buffers, no MRG_RXBUF, a broken driver, reset. */
#include <errno.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/virtio_net.h"

#define F(bit) (1ull << (bit))

/* ---- Pure parts ---- */

static void test_default_mac(void **state)
{
	uint8_t mac[6];
	net_default_mac(0, mac);
	const uint8_t want0[6] = { 0x06, 0x6b, 0x76, 0x6c, 0x00, 0x00 };
	assert_memory_equal(mac, want0, 6);
	net_default_mac(3, mac);
	assert_int_equal(mac[5], 3);
	/* Locally administered, unicast. */
	assert_true(mac[0] & 0x02);
	assert_false(mac[0] & 0x01);
}

static struct virtio_net_hdr_v1 hdr_of(uint8_t flags, uint8_t gso, uint16_t gso_size, uint16_t start, uint16_t off)
{
	return (struct virtio_net_hdr_v1){ .flags = flags, .gso_type = gso, .gso_size = gso_size,
					   .csum_start = start, .csum_offset = off };
}

static void test_tx_check(void **state)
{
	uint64_t all = F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) |
		       F(VIRTIO_NET_F_HOST_ECN);
	struct virtio_net_hdr_v1 h;

	h = hdr_of(0, VIRTIO_NET_HDR_GSO_NONE, 0, 0, 0);
	assert_int_equal(net_tx_check(&h, 60, 0), 0);

	/* Partial checksum: only with CSUM, and inside the frame. */
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 34, 16);
	assert_int_equal(net_tx_check(&h, 60, all), 0);
	assert_int_equal(net_tx_check(&h, 60, 0), -EINVAL);
	assert_int_equal(net_tx_check(&h, 52, all), 0);     /* 34 + 16 + 2 = 52 */
	assert_int_equal(net_tx_check(&h, 51, all), -EINVAL);
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0xffff, 0xffff);
	assert_int_equal(net_tx_check(&h, 65550, all), -EINVAL);

	/* TSO: the matching HOST_TSO feature, an MSS and NEEDS_CSUM. */
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16);
	assert_int_equal(net_tx_check(&h, 9000, all), 0);
	assert_int_equal(net_tx_check(&h, 9000, F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO6)), -EINVAL);
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV6, 1428, 54, 16);
	assert_int_equal(net_tx_check(&h, 9000, all), 0);
	assert_int_equal(net_tx_check(&h, 9000, F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4)), -EINVAL);
	h = hdr_of(0, VIRTIO_NET_HDR_GSO_TCPV4, 1448, 34, 16);
	assert_int_equal(net_tx_check(&h, 9000, all), -EINVAL);
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 0, 34, 16);
	assert_int_equal(net_tx_check(&h, 9000, all), -EINVAL);

	/* ECN only with HOST_ECN and with a GSO type; UFO and unknown types never. */
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, 1448, 34, 16);
	assert_int_equal(net_tx_check(&h, 9000, all), 0);
	assert_int_equal(net_tx_check(&h, 9000, all & ~F(VIRTIO_NET_F_HOST_ECN)), -EINVAL);
	h = hdr_of(0, VIRTIO_NET_HDR_GSO_ECN, 0, 0, 0);
	assert_int_equal(net_tx_check(&h, 60, all), -EINVAL);
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP, 1400, 34, 6);
	assert_int_equal(net_tx_check(&h, 9000, all | F(VIRTIO_NET_F_HOST_UFO)), -EINVAL);
	h = hdr_of(VIRTIO_NET_HDR_F_NEEDS_CSUM, 5, 1400, 34, 6);
	assert_int_equal(net_tx_check(&h, 9000, all), -EINVAL);
}

static void test_tap_offloads(void **state)
{
	assert_int_equal(net_tap_offloads(0), 0);
	/* TSO without GUEST_CSUM means nothing to the tap. */
	assert_int_equal(net_tap_offloads(F(VIRTIO_NET_F_GUEST_TSO4)), 0);
	assert_int_equal(net_tap_offloads(F(VIRTIO_NET_F_GUEST_CSUM)), TUN_F_CSUM);
	assert_int_equal(net_tap_offloads(F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_TSO4) |
					  F(VIRTIO_NET_F_GUEST_TSO6) | F(VIRTIO_NET_F_GUEST_ECN)),
			 TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN);
	assert_int_equal(net_tap_offloads(F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_GUEST_ECN)), TUN_F_CSUM);
	/* Host-side offloads (the guest's transmit) need nothing from the tap. */
	assert_int_equal(net_tap_offloads(F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_HOST_TSO4)), 0);
}

static void test_tap_open_missing(void **state)
{
	assert_int_equal(net_tap_open("kvl-no-such-if"), -ENODEV);
	assert_int_equal(net_tap_open("a-name-much-too-long-for-linux"), -EINVAL);
	assert_int_equal(net_tap_open(""), -EINVAL);
}

/* ---- The device on rings in fake guest RAM ---- */

#define RAM_GPA   0x100000ULL
#define RAM_SIZE  0x400000ULL
#define QSZ       256
#define RING_GPA(q)  (RAM_GPA + 0x4000ULL * (uint64_t)(q))   /* desc +0, avail +0x1000, used +0x2000 */
#define BUF_GPA   (RAM_GPA + 0x10000)

struct guest {
	struct virtio_net *net;
	int peer;                    /* the other end of the backend */
	uint8_t *ram;
	struct guest_memory mem;
	uint16_t avail_idx[2];
	uint16_t next_desc[2];
	uint64_t next_buf;
};

static uint8_t *hva(struct guest *g, uint64_t gpa)
{
	return g->ram + (gpa - RAM_GPA);
}

static void set_desc(struct guest *g, int q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = hva(g, RING_GPA(q) + 16ULL * i);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static uint64_t alloc_buf(struct guest *g, uint64_t len)
{
	uint64_t gpa = g->next_buf;
	g->next_buf += (len + 15) & ~15ULL;
	assert_true(g->next_buf <= RAM_GPA + RAM_SIZE);
	return gpa;
}

/* Posts a chain of n buffers (lens[i] bytes each, device-writable or not)
 * on queue q; returns the guest address of each in gpas. */
static uint16_t post(struct guest *g, int q, int n, const uint32_t *lens, bool writable, uint64_t *gpas)
{
	uint16_t head = g->next_desc[q];
	for (int i = 0; i < n; i++) {
		uint16_t d = (uint16_t)(head + i);
		gpas[i] = alloc_buf(g, lens[i]);
		uint16_t flags = (uint16_t)((writable ? 2 : 0) | (i + 1 < n ? 1 : 0));
		set_desc(g, q, d, gpas[i], lens[i], flags, (uint16_t)(d + 1));
	}
	g->next_desc[q] = (uint16_t)(head + n);
	uint16_t slot = g->avail_idx[q] % QSZ;
	memcpy(hva(g, RING_GPA(q) + 0x1000 + 4 + 2ULL * slot), &head, 2);
	g->avail_idx[q]++;
	memcpy(hva(g, RING_GPA(q) + 0x1000 + 2), &g->avail_idx[q], 2);
	return head;
}

static uint16_t used_idx(struct guest *g, int q)
{
	uint16_t v;
	memcpy(&v, hva(g, RING_GPA(q) + 0x2000 + 2), 2);
	return v;
}

static void used_elem(struct guest *g, int q, uint16_t slot, uint32_t *id, uint32_t *len)
{
	memcpy(id, hva(g, RING_GPA(q) + 0x2000 + 4 + 8ULL * (slot % QSZ)), 4);
	memcpy(len, hva(g, RING_GPA(q) + 0x2000 + 8 + 8ULL * (slot % QSZ)), 4);
}

static void start_device(struct guest *g, uint64_t features)
{
	struct virtio_device *dev = &g->net->vdev;
	dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		      VIRTIO_STATUS_DRIVER_OK;
	dev->driver_features = features | F(VIRTIO_F_VERSION_1);
	assert_int_equal(dev->ops->activate(dev), 0);
}

static int setup_guest(void **state)
{
	struct guest *g = calloc(1, sizeof(*g));
	int sv[2];
	if (!g || socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	/* Room for a 64 KiB frame in flight each way. */
	int size = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	g->peer = sv[1];
	g->ram = calloc(1, RAM_SIZE);
	g->net = calloc(1, sizeof(*g->net));
	if (!g->ram || !g->net)
		return -1;
	g->mem = (struct guest_memory){ .regions = { { RAM_GPA, RAM_SIZE, g->ram } }, .nr_regions = 1 };
	g->next_buf = BUF_GPA;
	struct net_config cfg = { .tap = "test" };
	virtio_net_setup(g->net, sv[0], false, &cfg, 0);

	/* What the transport would have done by DRIVER_OK. */
	struct virtio_device *dev = &g->net->vdev;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&dev->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	dev->config_vector = VIRTIO_NO_VECTOR;
	for (int q = 0; q < 2; q++) {
		struct virtio_queue_state *s = &dev->queues[q];
		s->enabled = true;
		s->vector = VIRTIO_NO_VECTOR;
		s->vq.size = QSZ;
		s->vq.desc_gpa = RING_GPA(q);
		s->vq.avail_gpa = RING_GPA(q) + 0x1000;
		s->vq.used_gpa = RING_GPA(q) + 0x2000;
		if (virtq_activate(&s->vq, &g->mem))
			return -1;
	}
	start_device(g, dev->features);
	*state = g;
	return 0;
}

static int teardown_guest(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->net->vdev;
	dev->ops->reset(dev);
	pthread_mutex_destroy(&dev->lock);
	close(g->peer);
	dev->ops->destroy(dev);   /* closes the device's end, frees net */
	free(g->ram);
	free(g);
	return 0;
}

/* The worker's wait: the backend fd is watched; run its callback. */
static void tap_event(struct guest *g)
{
	struct virtio_device *dev = &g->net->vdev;
	assert_int_equal(dev->nr_watches, 1);
	assert_int_equal(dev->watches[0].fd, g->net->fd);
	dev->watches[0].fn(dev, dev->watches[0].fd, POLLIN);
}

static void kick(struct guest *g, int q)
{
	struct virtio_device *dev = &g->net->vdev;
	virtq_refill_budget(&dev->queues[q].vq);
	dev->ops->queue_notify(dev, q);
}

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

/* Sends one frame (a header with flags, then len bytes of pattern) from the peer. */
static void peer_send(struct guest *g, uint8_t flags, size_t len, uint8_t seed)
{
	static uint8_t frame[NET_HDR_SIZE + 70000];
	assert_true(len <= sizeof(frame) - NET_HDR_SIZE);
	memset(frame, 0, NET_HDR_SIZE);
	frame[0] = flags;
	fill_pattern(frame + NET_HDR_SIZE, len, seed);
	assert_int_equal(send(g->peer, frame, NET_HDR_SIZE + len, 0), (ssize_t)(NET_HDR_SIZE + len));
}

static void test_tx_frame(void **state)
{
	struct guest *g = *state;
	uint32_t lens[3] = { NET_HDR_SIZE, 20, 80 };
	uint64_t gpas[3];
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 16 };
	post(g, NET_TX_QUEUE, 3, lens, false, gpas);
	memcpy(hva(g, gpas[0]), &h, sizeof(h));
	fill_pattern(hva(g, gpas[1]), 20, 1);
	fill_pattern(hva(g, gpas[2]), 80, 21);
	kick(g, NET_TX_QUEUE);

	assert_int_equal(used_idx(g, NET_TX_QUEUE), 1);
	uint32_t id, len;
	used_elem(g, NET_TX_QUEUE, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 0);
	uint8_t got[256];
	assert_int_equal(recv(g->peer, got, sizeof(got), MSG_DONTWAIT), NET_HDR_SIZE + 100);
	assert_memory_equal(got, &h, NET_HDR_SIZE);
	assert_memory_equal(got + NET_HDR_SIZE, hva(g, gpas[1]), 20);
	assert_memory_equal(got + NET_HDR_SIZE + 20, hva(g, gpas[2]), 80);
	assert_int_equal(g->net->stats[NET_STAT_TX_FRAMES], 1);
	assert_int_equal(g->net->stats[NET_STAT_TX_BYTES], 100);
}

static void test_tx_drops(void **state)
{
	struct guest *g = *state;
	uint64_t gpas[2];
	/* A header cut short. */
	uint32_t short_hdr[1] = { 8 };
	post(g, NET_TX_QUEUE, 1, short_hdr, false, gpas);
	/* Longer than 64 KiB of frame. */
	uint32_t too_long[2] = { NET_HDR_SIZE, NET_MAX_FRAME + 1 };
	post(g, NET_TX_QUEUE, 2, too_long, false, gpas);
	/* TSO without HOST_TSO4 negotiated. */
	uint32_t tso[2] = { NET_HDR_SIZE, 3000 };
	post(g, NET_TX_QUEUE, 2, tso, false, gpas);
	struct virtio_net_hdr_v1 h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
				       .gso_size = 1448, .csum_start = 34, .csum_offset = 16 };
	memcpy(hva(g, gpas[0]), &h, sizeof(h));
	start_device(g, g->net->vdev.features & ~F(VIRTIO_NET_F_HOST_TSO4));
	/* And a good one after them: the queue goes on. */
	uint32_t good[2] = { NET_HDR_SIZE, 60 };
	post(g, NET_TX_QUEUE, 2, good, false, gpas);
	kick(g, NET_TX_QUEUE);

	assert_int_equal(used_idx(g, NET_TX_QUEUE), 4);
	assert_int_equal(g->net->stats[NET_STAT_TX_DROPPED], 3);
	assert_int_equal(g->net->stats[NET_STAT_TX_FRAMES], 1);
	uint8_t got[256];
	assert_int_equal(recv(g->peer, got, sizeof(got), MSG_DONTWAIT), NET_HDR_SIZE + 60);
	assert_int_equal(recv(g->peer, got, sizeof(got), MSG_DONTWAIT), -1);
	assert_false(g->net->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Posts n single-buffer receive chains of size bytes; gpas[i] per chain. */
static void post_rx(struct guest *g, int n, uint32_t size, uint64_t *gpas)
{
	for (int i = 0; i < n; i++)
		post(g, NET_RX_QUEUE, 1, &size, true, &gpas[i]);
}

static uint16_t num_buffers_at(struct guest *g, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, hva(g, gpa + offsetof(struct virtio_net_hdr_v1, num_buffers)), 2);
	return v;
}

static void test_rx_merged(void **state)
{
	struct guest *g = *state;
	uint64_t gpas[40];
	post_rx(g, 40, 2048, gpas);
	kick(g, NET_RX_QUEUE);
	/* Buffers for the largest frame are held; the tap is watched. */
	assert_true(g->net->rx_capacity >= NET_HDR_SIZE + NET_MAX_FRAME);
	assert_int_equal(g->net->nr_rx_chains, 33);

	peer_send(g, VIRTIO_NET_HDR_F_DATA_VALID, 5000, 3);
	tap_event(g);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 3);
	uint32_t id, len, want[3] = { 2048, 2048, NET_HDR_SIZE + 5000 - 4096 };
	for (uint16_t i = 0; i < 3; i++) {
		used_elem(g, NET_RX_QUEUE, i, &id, &len);
		assert_int_equal(id, i);
		assert_int_equal(len, want[i]);
	}
	assert_int_equal(num_buffers_at(g, gpas[0]), 3);
	/* GUEST_CSUM negotiated: the tap's DATA_VALID goes through. */
	assert_int_equal(*hva(g, gpas[0]), VIRTIO_NET_HDR_F_DATA_VALID);
	uint8_t frame[5000];
	fill_pattern(frame, sizeof(frame), 3);
	assert_memory_equal(hva(g, gpas[0] + NET_HDR_SIZE), frame, 2048 - NET_HDR_SIZE);
	assert_memory_equal(hva(g, gpas[1]), frame + 2048 - NET_HDR_SIZE, 2048);
	assert_memory_equal(hva(g, gpas[2]), frame + 4096 - NET_HDR_SIZE, want[2]);

	/* The next frame starts in the next buffer. */
	peer_send(g, 0, 100, 9);
	tap_event(g);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 4);
	used_elem(g, NET_RX_QUEUE, 3, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, NET_HDR_SIZE + 100);
	assert_int_equal(num_buffers_at(g, gpas[3]), 1);
	assert_int_equal(g->net->stats[NET_STAT_RX_FRAMES], 2);
	assert_int_equal(g->net->stats[NET_STAT_RX_BYTES], 5100);

	/* The largest frame fits the posted buffers. */
	peer_send(g, 0, NET_MAX_FRAME, 5);
	tap_event(g);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 4 + 33);
	assert_int_equal(num_buffers_at(g, gpas[4]), 33);
	assert_int_equal(g->net->stats[NET_STAT_RX_DROPPED], 0);
}

static void test_rx_too_big(void **state)
{
	struct guest *g = *state;
	uint64_t gpas[2];
	post_rx(g, 2, 2048, gpas);
	kick(g, NET_RX_QUEUE);
	assert_int_equal(g->net->nr_rx_chains, 2);
	/* 4096 bytes posted: a 5000-byte frame is dropped, the buffers stay. */
	peer_send(g, 0, 5000, 1);
	peer_send(g, 0, 4096 - NET_HDR_SIZE, 2);   /* exactly fills them */
	tap_event(g);
	assert_int_equal(g->net->stats[NET_STAT_RX_DROPPED], 1);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 2);
	assert_int_equal(num_buffers_at(g, gpas[0]), 2);
	uint8_t frame[4096];
	fill_pattern(frame, sizeof(frame), 2);
	assert_memory_equal(hva(g, gpas[1]), frame + 2048 - NET_HDR_SIZE, 2048);
}

static void test_rx_no_buffers(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->net->vdev;
	/* Nothing posted: the tap is not watched (no spinning on it). */
	kick(g, NET_RX_QUEUE);
	assert_int_equal(dev->nr_watches, 0);
	peer_send(g, 0, 100, 1);
	uint64_t gpas[1];
	post_rx(g, 1, 2048, gpas);
	/* The driver's kick brings the tap back, and the waiting frame in. */
	kick(g, NET_RX_QUEUE);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 1);
	/* Used up again: unwatched until the next kick. */
	assert_int_equal(dev->nr_watches, 0);
	assert_int_equal(g->net->nr_rx_chains, 0);
}

static void test_rx_without_mrg(void **state)
{
	struct guest *g = *state;
	start_device(g, g->net->vdev.features & ~(F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_GUEST_CSUM)));
	uint64_t gpas[3];
	post_rx(g, 3, 1526, gpas);
	kick(g, NET_RX_QUEUE);
	/* One chain at a time. */
	assert_int_equal(g->net->nr_rx_chains, 1);
	peer_send(g, VIRTIO_NET_HDR_F_DATA_VALID, 1514, 1);
	peer_send(g, 0, 2000, 2);   /* does not fit one chain: dropped */
	peer_send(g, 0, 60, 3);
	tap_event(g);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 2);
	assert_int_equal(g->net->stats[NET_STAT_RX_DROPPED], 1);
	assert_int_equal(num_buffers_at(g, gpas[0]), 1);
	assert_int_equal(num_buffers_at(g, gpas[1]), 1);
	/* Without GUEST_CSUM the flags are cleared. */
	assert_int_equal(*hva(g, gpas[0]), 0);
	uint32_t id, len;
	used_elem(g, NET_RX_QUEUE, 1, &id, &len);
	assert_int_equal(id, 1);
	assert_int_equal(len, NET_HDR_SIZE + 60);
}

static void test_rx_bad_buffer_needs_reset(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->net->vdev;
	uint64_t gpas[1];
	uint32_t tiny = 8;
	post(g, NET_RX_QUEUE, 1, &tiny, true, gpas);
	kick(g, NET_RX_QUEUE);
	assert_true(dev->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_null(virtio_queue(dev, NET_RX_QUEUE));
	assert_int_equal(dev->nr_watches, 0);
}

static void test_rx_readable_buffer_needs_reset(void **state)
{
	struct guest *g = *state;
	uint64_t gpas[1];
	uint32_t size = 2048;
	post(g, NET_RX_QUEUE, 1, &size, false, gpas);
	kick(g, NET_RX_QUEUE);
	assert_true(g->net->vdev.status & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_reset_drops_held(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->net->vdev;
	uint64_t gpas[4];
	post_rx(g, 4, 2048, gpas);
	kick(g, NET_RX_QUEUE);
	assert_int_equal(g->net->nr_rx_chains, 4);
	assert_int_equal(dev->nr_watches, 1);
	dev->ops->reset(dev);
	assert_int_equal(g->net->nr_rx_chains, 0);
	assert_int_equal(g->net->rx_capacity, 0);
	assert_int_equal(dev->nr_watches, 0);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 0);
}

/* The tap failing (deleted under us): receive stops instead of waking the
 * worker for it forever; kicks do not bring it back. */
static void test_rx_tap_failed(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->net->vdev;
	uint64_t gpas[2];
	post_rx(g, 2, 2048, gpas);
	kick(g, NET_RX_QUEUE);
	assert_int_equal(dev->nr_watches, 1);
	dev->watches[0].fn(dev, g->net->fd, EPOLLHUP);
	assert_int_equal(dev->nr_watches, 0);
	assert_int_equal(g->net->stats[NET_STAT_RX_ERRORS], 1);
	peer_send(g, 0, 60, 1);
	kick(g, NET_RX_QUEUE);
	assert_int_equal(dev->nr_watches, 0);
	assert_int_equal(used_idx(g, NET_RX_QUEUE), 0);
	/* Transmit goes on. */
	uint32_t lens[2] = { NET_HDR_SIZE, 60 };
	post(g, NET_TX_QUEUE, 2, lens, false, gpas);
	kick(g, NET_TX_QUEUE);
	assert_int_equal(g->net->stats[NET_STAT_TX_FRAMES], 1);
}

static void test_config(void **state)
{
	struct guest *g = *state;
	const struct virtio_device *dev = &g->net->vdev;
	assert_int_equal(dev->device_id, VIRTIO_ID_NET);
	assert_int_equal(dev->nr_queues, 2);
	assert_int_equal(dev->config_size, 10);
	assert_true(dev->features & F(VIRTIO_NET_F_MRG_RXBUF));
	assert_true(dev->features & F(VIRTIO_NET_F_MAC));
	assert_true(dev->features & F(VIRTIO_NET_F_STATUS));
	assert_true(dev->features & F(VIRTIO_NET_F_GUEST_TSO4));
	assert_true(dev->features & F(VIRTIO_NET_F_HOST_TSO6));
	assert_false(dev->features & F(VIRTIO_NET_F_GUEST_UFO));
	uint8_t mac[6];
	net_default_mac(0, mac);
	assert_memory_equal(g->net->config.mac, mac, 6);
	assert_int_equal(g->net->config.status, VIRTIO_NET_S_LINK_UP);
	assert_string_equal(dev->name, "virtio-net0");

	struct virtio_net other = { 0 };
	struct net_config cfg = { .tap = "t", .mac = { 0x02, 1, 2, 3, 4, 5 }, .has_mac = true };
	virtio_net_setup(&other, -1, false, &cfg, 2);
	assert_memory_equal(other.config.mac, cfg.mac, 6);
	assert_string_equal(other.vdev.name, "virtio-net2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_mac),
		cmocka_unit_test(test_tx_check),
		cmocka_unit_test(test_tap_offloads),
		cmocka_unit_test(test_tap_open_missing),
		cmocka_unit_test_setup_teardown(test_config, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_tx_frame, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_tx_drops, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_rx_merged, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_rx_too_big, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_rx_no_buffers, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_rx_without_mrg, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_rx_bad_buffer_needs_reset, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_rx_readable_buffer_needs_reset, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_reset_drops_held, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_rx_tap_failed, setup_guest, teardown_guest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
