/* virtio-net over a tap.
 *
 * Transmit: each chain is a 12-byte virtio_net_hdr_v1 and the frame; the
 * tap takes the same header (TUNSETVNETHDRSZ 12), so the chain goes to it
 * as is with one writev. The header is checked first: an offload the
 * driver did not negotiate, a checksum range outside the frame, or a
 * length outside [12, 12 + 64 KiB + headers] drops the frame (counted).
 *
 * Receive (VIRTIO_NET_F_MRG_RXBUF offered): the worker pops receive
 * buffers until they can hold the largest frame, then readv()s the tap
 * straight into them, with one byte more at the end: a frame that reaches
 * that byte did not fit and is dropped. The buffers a frame used are
 * published together with num_buffers set. Without MRG_RXBUF each frame
 * takes one chain, so a driver offering GSO must post 65562-byte chains
 * (as the spec asks; Linux does, "big packets"). When the driver has
 * posted no buffers the tap leaves the worker's wait set until the driver
 * kicks the receive queue, so nothing spins; frames meanwhile wait in the
 * tap's queue (and the kernel drops beyond its length).
 *
 * Offloads: the host may hand the guest partly checksummed or GSO frames
 * only if the guest negotiated GUEST_CSUM / GUEST_TSO4/6 / GUEST_ECN, so
 * TUNSETOFFLOAD is set when the driver starts the device. The guest's
 * own offloads (CSUM, HOST_TSO4/6, HOST_ECN) need nothing from the tap. */
#include "virtio_net.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "util.h"
#include "vm.h"

_Static_assert(sizeof(struct virtio_net_hdr_v1) == NET_HDR_SIZE, "virtio_net_hdr_v1 layout (5.1.6)");
_Static_assert(sizeof(struct virtio_net_config) == 10, "virtio_net_config layout (5.1.4)");
_Static_assert(NET_READ_MAX_IOV <= NET_RX_POOL, "the overflow iovec slot lies inside rx_iov");

#define NET_FEATURES                                                                                        \
	(1ull << VIRTIO_NET_F_CSUM | 1ull << VIRTIO_NET_F_GUEST_CSUM | 1ull << VIRTIO_NET_F_MAC |            \
	 1ull << VIRTIO_NET_F_GUEST_TSO4 | 1ull << VIRTIO_NET_F_GUEST_TSO6 | 1ull << VIRTIO_NET_F_GUEST_ECN | \
	 1ull << VIRTIO_NET_F_HOST_TSO4 | 1ull << VIRTIO_NET_F_HOST_TSO6 | 1ull << VIRTIO_NET_F_HOST_ECN |    \
	 1ull << VIRTIO_NET_F_MRG_RXBUF | 1ull << VIRTIO_NET_F_STATUS)

static const char *const net_stat_names[NET_STAT_MAX] = {
	[NET_STAT_TX_FRAMES] = "tx_frames",
	[NET_STAT_TX_BYTES] = "tx_bytes",
	[NET_STAT_TX_DROPPED] = "tx_dropped",
	[NET_STAT_TX_ERRORS] = "tx_errors",
	[NET_STAT_RX_FRAMES] = "rx_frames",
	[NET_STAT_RX_BYTES] = "rx_bytes",
	[NET_STAT_RX_DROPPED] = "rx_dropped",
	[NET_STAT_RX_NO_BUFFERS] = "rx_no_buffers",
	[NET_STAT_RX_ERRORS] = "rx_errors",
};

static void stat_add(struct virtio_net *net, enum net_stat stat, uint64_t n)
{
	__atomic_fetch_add(&net->stats[stat], n, __ATOMIC_RELAXED);
}

static bool has(uint64_t features, unsigned bit)
{
	return features >> bit & 1;
}

/* --- Pure parts ------------------------------------------------------------------ */

void net_default_mac(int index, uint8_t mac[6])
{
	static const uint8_t prefix[5] = { 0x06, 0x6b, 0x76, 0x6c, 0x00 };
	memcpy(mac, prefix, sizeof(prefix));
	mac[5] = (uint8_t)index;
}

int net_tx_check(const struct virtio_net_hdr_v1 *hdr, uint64_t frame_len, uint64_t features)
{
	bool needs_csum = hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
	if (needs_csum) {
		/* The 16-bit checksum goes at csum_start + csum_offset (5.1.6.2). */
		if (!has(features, VIRTIO_NET_F_CSUM))
			return -EINVAL;
		uint64_t at = (uint64_t)le16toh(hdr->csum_start) + le16toh(hdr->csum_offset);
		if (at + 2 > frame_len)
			return -EINVAL;
	}
	uint8_t gso = hdr->gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
	bool ecn = hdr->gso_type & VIRTIO_NET_HDR_GSO_ECN;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return ecn ? -EINVAL : 0;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if (!has(features, VIRTIO_NET_F_HOST_TSO4))
			return -EINVAL;
		break;
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if (!has(features, VIRTIO_NET_F_HOST_TSO6))
			return -EINVAL;
		break;
	default: /* UDP (UFO) is not offered */
		return -EINVAL;
	}
	/* Segmentation needs an MSS and a partial checksum to finish. */
	if ((ecn && !has(features, VIRTIO_NET_F_HOST_ECN)) || !needs_csum || !hdr->gso_size)
		return -EINVAL;
	return 0;
}

unsigned net_tap_offloads(uint64_t features)
{
	if (!has(features, VIRTIO_NET_F_GUEST_CSUM))
		return 0;   /* the tap takes TSO only with checksum offload */
	unsigned off = TUN_F_CSUM;
	if (has(features, VIRTIO_NET_F_GUEST_TSO4))
		off |= TUN_F_TSO4;
	if (has(features, VIRTIO_NET_F_GUEST_TSO6))
		off |= TUN_F_TSO6;
	if ((off & (TUN_F_TSO4 | TUN_F_TSO6)) && has(features, VIRTIO_NET_F_GUEST_ECN))
		off |= TUN_F_TSO_ECN;
	return off;
}

/* --- Transmit ---------------------------------------------------------------------- */

static void net_tx_one(struct virtio_net *net, const struct virtq_req *req)
{
	struct virtio_net_hdr_v1 hdr;
	uint64_t frame_len = req->out_len - MIN(req->out_len, (uint64_t)NET_HDR_SIZE);
	if (req->out_len < NET_HDR_SIZE || frame_len > NET_MAX_FRAME ||
	    iov_to_buf(req->out, req->nr_out, 0, &hdr, sizeof(hdr)) != sizeof(hdr) ||
	    net_tx_check(&hdr, frame_len, net->vdev.driver_features)) {
		stat_add(net, NET_STAT_TX_DROPPED, 1);
		return;
	}
	/* At most VIRTQ_MAX_SEGS (IOV_MAX) iovecs: one writev. */
	ssize_t n;
	while ((n = writev(net->fd, req->out, req->nr_out)) < 0 && errno == EINTR)
		;
	if (n < 0) {
		/* EINVAL: the tap found the header wrong; EIO: the tap is down. */
		log_debug("%s: tap write: %s", net->name, strerror(errno));
		stat_add(net, NET_STAT_TX_ERRORS, 1);
		return;
	}
	stat_add(net, NET_STAT_TX_FRAMES, 1);
	stat_add(net, NET_STAT_TX_BYTES, frame_len);
}

static void net_tx(struct virtio_net *net, struct virtq *vq)
{
	bool pushed = false;
	for (;;) {
		/* No kicks while the ring is being drained. */
		virtq_set_notify(vq, false);
		int err;
		while ((err = virtq_pop(vq, &net->req)) == 0) {
			net_tx_one(net, &net->req);
			virtq_push(vq, net->req.head, 0);
			pushed = true;
		}
		if (err == -EINVAL)
			break;   /* the transport reports the broken queue */
		virtq_set_notify(vq, true);
		if (!virtq_has_work(vq))
			break;
	}
	if (pushed)
		virtio_queue_notify(&net->vdev, NET_TX_QUEUE);
}

/* --- Receive ----------------------------------------------------------------------- */

static void tap_readable(struct virtio_device *dev, int fd, uint32_t events);

static void rx_watch(struct virtio_net *net, bool on)
{
	if (on == net->rx_watched || (on && net->rx_failed))
		return;
	int err = on ? virtio_watch_fd(&net->vdev, net->fd, EPOLLIN, tap_readable) : virtio_unwatch_fd(&net->vdev, net->fd);
	if (err)
		log_warn("%s: cannot %s the tap: %s", net->name, on ? "watch" : "unwatch", strerror(-err));
	else
		net->rx_watched = on;
}

static void rx_drop_chains(struct virtio_net *net)
{
	net->nr_rx_chains = net->nr_rx_iov = 0;
	net->rx_capacity = 0;
}

/* Pops receive chains until the held ones can take the largest frame (or
 * one chain without MRG_RXBUF). -EINVAL when the driver broke the rules. */
static int rx_refill(struct virtio_net *net, struct virtq *vq)
{
	while (net->rx_capacity < NET_HDR_SIZE + NET_MAX_FRAME && net->nr_rx_chains < NET_QUEUE_SIZE &&
	       net->nr_rx_iov <= NET_RX_POOL - VIRTQ_MAX_SEGS && (net->mrg_rxbuf || !net->nr_rx_chains)) {
		struct virtq_req *req = &net->req;
		int err = virtq_pop(vq, req);
		if (err)
			return err == -EINVAL ? err : 0;
		/* Receive buffers are device-writable and each holds at least
		 * the header (5.1.6.3.1). */
		if (req->nr_out || req->in_len < NET_HDR_SIZE) {
			virtio_needs_reset(&net->vdev, req->nr_out ? "virtio-net: receive buffer readable by the device"
								   : "virtio-net: receive buffer smaller than the header");
			return -EINVAL;
		}
		struct net_rx_chain *c = &net->rx_chains[net->nr_rx_chains++];
		*c = (struct net_rx_chain){ .head = req->head, .first_iov = net->nr_rx_iov, .nr_iov = req->nr_in,
					    .len = req->in_len };
		memcpy(&net->rx_iov[net->nr_rx_iov], req->in, sizeof(req->in[0]) * (size_t)req->nr_in);
		net->nr_rx_iov += req->nr_in;
		net->rx_capacity += req->in_len;
	}
	return 0;
}


/* Forgets the first n held chains (their buffers went to the driver). */
static void rx_consume(struct virtio_net *net, int n)
{
	const struct net_rx_chain *last = &net->rx_chains[n - 1];
	int iovs = last->first_iov + last->nr_iov;
	for (int i = 0; i < n; i++)
		net->rx_capacity -= net->rx_chains[i].len;
	memmove(net->rx_iov, net->rx_iov + iovs, sizeof(net->rx_iov[0]) * (size_t)(net->nr_rx_iov - iovs));
	net->nr_rx_iov -= iovs;
	memmove(net->rx_chains, net->rx_chains + n, sizeof(net->rx_chains[0]) * (size_t)(net->nr_rx_chains - n));
	net->nr_rx_chains -= n;
	for (int i = 0; i < net->nr_rx_chains; i++)
		net->rx_chains[i].first_iov -= iovs;
}

/* Reads one frame into the held chains. 1: delivered; 0: nothing to read
 * (or reading failed); -1: a frame was dropped. */
static int rx_frame(struct virtio_net *net, struct virtq *vq)
{
	int nr = MIN(net->nr_rx_iov, NET_READ_MAX_IOV - 1);
	uint64_t capacity = 0;
	for (int i = 0; i < nr; i++)
		capacity += net->rx_iov[i].iov_len;
	struct iovec saved = net->rx_iov[nr];
	net->rx_iov[nr] = (struct iovec){ &net->rx_overflow, 1 };
	ssize_t n;
	while ((n = readv(net->fd, net->rx_iov, nr + 1)) < 0 && errno == EINTR)
		;
	net->rx_iov[nr] = saved;
	if (n < 0) {
		if (errno == EAGAIN)
			return 0;
		/* The tap went away (deleted): stop, or epoll would spin on it. */
		log_warn("%s: reading tap %s: %s; receive stopped", net->name, net->tap_name ? net->tap_name : "",
			 strerror(errno));
		stat_add(net, NET_STAT_RX_ERRORS, 1);
		net->rx_failed = true;
		rx_watch(net, false);
		return 0;
	}
	/* Larger than the buffers (the tap reports the whole length, a
	 * socket fills the overflow byte), or not even a header. */
	if ((uint64_t)n > capacity || n < NET_HDR_SIZE) {
		stat_add(net, NET_STAT_RX_DROPPED, 1);
		return -1;
	}

	struct virtq_used done[NET_QUEUE_SIZE];
	int used = 0;
	for (uint64_t left = (uint64_t)n; left; used++) {
		done[used] = (struct virtq_used){ net->rx_chains[used].head,
						  (uint32_t)MIN(left, net->rx_chains[used].len) };
		left -= done[used].len;
	}
	const struct net_rx_chain *first = &net->rx_chains[0];
	const struct iovec *iov = &net->rx_iov[first->first_iov];
	uint16_t num_buffers = htole16((uint16_t)used);
	buf_to_iov(iov, first->nr_iov, offsetof(struct virtio_net_hdr_v1, num_buffers), &num_buffers, 2);
	if (!net->guest_csum) {
		/* Without GUEST_CSUM flags must be 0 (5.1.6.3.2); the tap may
		 * have said DATA_VALID. */
		uint8_t flags = 0;
		buf_to_iov(iov, first->nr_iov, offsetof(struct virtio_net_hdr_v1, flags), &flags, 1);
	}
	/* The frame's buffers reach the driver together: it reads
	 * num_buffers from the first and then takes that many. */
	virtq_push_batch(vq, done, used);
	rx_consume(net, used);
	stat_add(net, NET_STAT_RX_FRAMES, 1);
	stat_add(net, NET_STAT_RX_BYTES, (uint64_t)n - NET_HDR_SIZE);
	return 1;
}

static void net_rx(struct virtio_net *net)
{
	struct virtq *vq = virtio_queue(&net->vdev, NET_RX_QUEUE);
	if (!vq) {
		/* Not started, or needs reset: DRIVER_OK kicks the queue. */
		rx_watch(net, false);
		return;
	}
	bool pushed = false;
	for (int i = 0; i < NET_RX_BATCH && !net->rx_failed; i++) {
		if (rx_refill(net, vq) < 0) {
			rx_watch(net, false);
			break;
		}
		if (!net->nr_rx_chains) {
			/* Wait for the driver's kick, not for the tap. */
			if (net->rx_watched)
				stat_add(net, NET_STAT_RX_NO_BUFFERS, 1);
			rx_watch(net, false);
			break;
		}
		rx_watch(net, true);
		int r = rx_frame(net, vq);
		if (r == 0)
			break;
		pushed |= r > 0;
	}
	/* A full batch leaves the tap readable: level-triggered epoll comes
	 * back to it after the other events. */
	if (pushed)
		virtio_queue_notify(&net->vdev, NET_RX_QUEUE);
}

static void tap_readable(struct virtio_device *dev, int fd, uint32_t events)
{
	struct virtio_net *net = dev->priv;
	if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN)) {
		/* Nothing to read ever again (the tap went away): stop
		 * rather than wake up for it forever. */
		log_warn("%s: tap %s failed; receive stopped", net->name, net->tap_name ? net->tap_name : "");
		stat_add(net, NET_STAT_RX_ERRORS, 1);
		net->rx_failed = true;
		rx_watch(net, false);
		return;
	}
	net_rx(net);
}

/* --- Device ------------------------------------------------------------------------ */

static void net_queue_notify(struct virtio_device *dev, int q)
{
	struct virtio_net *net = dev->priv;
	if (q == NET_RX_QUEUE) {
		net_rx(net);
	} else if (q == NET_TX_QUEUE) {
		struct virtq *vq = virtio_queue(dev, q);
		if (vq)
			net_tx(net, vq);
	}
}

static int net_activate(struct virtio_device *dev)
{
	struct virtio_net *net = dev->priv;
	net->mrg_rxbuf = virtio_has_feature(dev, VIRTIO_NET_F_MRG_RXBUF);
	net->guest_csum = virtio_has_feature(dev, VIRTIO_NET_F_GUEST_CSUM);
	rx_drop_chains(net);
	if (!net->is_tap)
		return 0;
	unsigned offloads = net_tap_offloads(dev->driver_features);
	if (ioctl(net->fd, TUNSETOFFLOAD, offloads) < 0) {
		/* The guest then only gets whole, checksummed frames: allowed. */
		log_warn("%s: tap %s: TUNSETOFFLOAD %#x: %s; offloads off", net->name, net->tap_name, offloads,
			 strerror(errno));
		if (ioctl(net->fd, TUNSETOFFLOAD, 0) < 0)
			return -errno;
	}
	log_debug("%s: features %#llx, tap offloads %#x", net->name, (unsigned long long)dev->driver_features,
		  offloads);
	return 0;
}

static void net_reset(struct virtio_device *dev)
{
	struct virtio_net *net = dev->priv;
	rx_watch(net, false);
	rx_drop_chains(net);
}

static void net_destroy(struct virtio_device *dev)
{
	struct virtio_net *net = dev->priv;
	if (net->fd >= 0)
		close(net->fd);
	free(net);
}

static const struct virtio_device_ops net_ops = {
	.queue_notify = net_queue_notify,
	.activate = net_activate,
	.reset = net_reset,
	.destroy = net_destroy,
};

int net_tap_open(const char *name)
{
	if (!*name || strlen(name) >= IFNAMSIZ) {
		log_error("--net tap=%s: an interface name is 1 to %d characters", name, IFNAMSIZ - 1);
		return -EINVAL;
	}
	/* TUNSETIFF would create a missing tap (as root): refuse instead,
	 * the tap is the host's to set up. */
	if (!if_nametoindex(name)) {
		log_error("--net tap=%s: no such interface (create it first: ip tuntap add dev %s mode tap [user NAME])",
			  name, name);
		return -ENODEV;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int err = -errno;
		log_error("--net tap=%s: cannot open /dev/net/tun: %s", name, strerror(-err));
		return err;
	}
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	memcpy(ifr.ifr_name, name, strlen(name));
	int hdr_size = NET_HDR_SIZE, little_endian = 1;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int err = -errno;
		const char *hint = err == -EPERM || err == -EACCES ? " (the tap belongs to another user: ip tuntap add ... user NAME)"
				   : err == -EINVAL ? " (not a single-queue tap: a tun, a multi-queue tap or another kind of interface)"
				   : err == -EBUSY ? " (another process has it open)"
						   : "";
		log_error("--net tap=%s: cannot attach: %s%s", name, strerror(-err), hint);
		close(fd);
		return err;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_size) < 0 || ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		int err = -errno;
		log_error("--net tap=%s: cannot set up the virtio-net header: %s", name, strerror(-err));
		close(fd);
		return err;
	}
	/* Virtio 1.x headers are little-endian whatever the host (x86: no-op). */
	if (ioctl(fd, TUNSETVNETLE, &little_endian) < 0)
		log_debug("--net tap=%s: TUNSETVNETLE: %s", name, strerror(errno));
	return fd;
}

void virtio_net_setup(struct virtio_net *net, int fd, bool is_tap, const struct net_config *cfg, int index)
{
	net->fd = fd;
	net->is_tap = is_tap;
	net->tap_name = cfg->tap;
	snprintf(net->name, sizeof(net->name), "virtio-net%d", index);
	net->config = (struct virtio_net_config){
		.status = htole16(VIRTIO_NET_S_LINK_UP),
		.max_virtqueue_pairs = htole16(1),
	};
	if (cfg->has_mac)
		memcpy(net->config.mac, cfg->mac, 6);
	else
		net_default_mac(index, net->config.mac);
	net->vdev = (struct virtio_device){
		.name = net->name,
		.device_id = VIRTIO_ID_NET,
		.features = NET_FEATURES,
		.nr_queues = 2,
		.queue_max_size = NET_QUEUE_SIZE,
		.config = (uint8_t *)&net->config,
		.config_size = sizeof(net->config),
		.ops = &net_ops,
		.priv = net,
	};
	/* Until activate: as if every offered feature were negotiated (the
	 * unit tests drive the device without a driver). */
	net->mrg_rxbuf = net->guest_csum = true;
}

static int virtio_net_init(struct vm *vm)
{
	for (int i = 0; i < vm->cfg->nr_nets; i++) {
		const struct net_config *cfg = &vm->cfg->nets[i];
		if (cfg->has_mac && (cfg->mac[0] & 1))
			log_warn("--net tap=%s: mac=%02x:%02x:%02x:%02x:%02x:%02x is a multicast address; the guest may refuse it",
				 cfg->tap, cfg->mac[0], cfg->mac[1], cfg->mac[2], cfg->mac[3], cfg->mac[4], cfg->mac[5]);
		int fd = net_tap_open(cfg->tap);
		if (fd < 0)
			return fd;
		struct virtio_net *net = calloc(1, sizeof(*net));
		if (!net) {
			close(fd);
			return -ENOMEM;
		}
		virtio_net_setup(net, fd, true, cfg, i);
		int err = virtio_device_add(vm, &net->vdev);
		if (err) {
			/* Once added, vm_destroy() ends it through ops->destroy. */
			if (!net->vdev.added)
				net_destroy(&net->vdev);
			return err;
		}
		err = stats_add(&vm->stats, net->name, NET_STAT_MAX, net_stat_names, stats_read_array, net->stats);
		if (err)
			return err;
	}
	return 0;
}

DEVICE_REGISTER(virtio_net, virtio_net_init);
