/* virtio-net (virtio 1.2, 5.1): --net tap=NAME[,mac=MAC], one PCI function
 * each, backed by an existing tap interface with checksum and TSO offloads.
 * Queues: receiveq 0, transmitq 1 (no multiqueue, no control queue).
 *
 * The backend is a file descriptor that keeps frame boundaries (a tap; in
 * the unit tests a datagram socket), so the header checks, the receive
 * path with merged buffers and the transmit path are tested without a
 * tap or KVM. */
#ifndef KVMLITE_VIRTIO_NET_H
#define KVMLITE_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config.h"
#include "virtio/virtio.h"

/* Feature bits (5.1.3) */
#define VIRTIO_NET_F_CSUM        0
#define VIRTIO_NET_F_GUEST_CSUM  1
#define VIRTIO_NET_F_MAC         5
#define VIRTIO_NET_F_GUEST_TSO4  7
#define VIRTIO_NET_F_GUEST_TSO6  8
#define VIRTIO_NET_F_GUEST_ECN   9
#define VIRTIO_NET_F_GUEST_UFO   10
#define VIRTIO_NET_F_HOST_TSO4   11
#define VIRTIO_NET_F_HOST_TSO6   12
#define VIRTIO_NET_F_HOST_ECN    13
#define VIRTIO_NET_F_HOST_UFO    14
#define VIRTIO_NET_F_MRG_RXBUF   15
#define VIRTIO_NET_F_STATUS      16

#define VIRTIO_NET_S_LINK_UP     1

/* struct virtio_net_hdr_v1 (5.1.6) */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM  1
#define VIRTIO_NET_HDR_F_DATA_VALID  2
#define VIRTIO_NET_HDR_GSO_NONE      0
#define VIRTIO_NET_HDR_GSO_TCPV4     1
#define VIRTIO_NET_HDR_GSO_UDP       3
#define VIRTIO_NET_HDR_GSO_TCPV6     4
#define VIRTIO_NET_HDR_GSO_ECN       0x80

struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));

struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
} __attribute__((packed));

#define NET_HDR_SIZE        12      /* sizeof(struct virtio_net_hdr_v1), also the tap's vnet header */
#define NET_MAX_FRAME       65550   /* a 64 KiB GSO frame with its headers: buffers of 65562 with ours (5.1.6.3.1) */
#define NET_QUEUE_SIZE      256
#define NET_RX_QUEUE        0
#define NET_TX_QUEUE        1
#define NET_RX_BATCH        64      /* frames received per worker callback */
/* Receive buffers popped but not yet filled: their iovecs. Room for two
 * chains of the longest kind, so a popped chain always fits whole. */
#define NET_RX_POOL         (2 * VIRTQ_MAX_SEGS)
#define NET_READ_MAX_IOV    1024    /* IOV_MAX: iovecs in one readv, the overflow byte included */

enum net_stat {
	NET_STAT_TX_FRAMES,
	NET_STAT_TX_BYTES,
	NET_STAT_TX_DROPPED,     /* malformed: header short, length out of bounds, offload not negotiated */
	NET_STAT_TX_ERRORS,      /* the tap refused the frame */
	NET_STAT_RX_FRAMES,
	NET_STAT_RX_BYTES,
	NET_STAT_RX_DROPPED,     /* larger than the buffers the guest posted, or runts */
	NET_STAT_RX_NO_BUFFERS,  /* times receive paused: the guest posted no buffers */
	NET_STAT_RX_ERRORS,      /* reading the tap failed */
	NET_STAT_MAX
};

/* A popped receive chain: its device-writable iovecs are rx_iov[first_iov..+nr_iov]. */
struct net_rx_chain {
	uint16_t head;
	int first_iov, nr_iov;
	uint64_t len;
};

struct virtio_net {
	struct virtio_device vdev;
	char name[24];                     /* "virtio-net0" */
	struct virtio_net_config config;
	int fd;                            /* the tap (or a datagram socket in tests) */
	bool is_tap;                       /* offloads can be set on fd */
	const char *tap_name;
	bool mrg_rxbuf, guest_csum;        /* negotiated */
	bool rx_watched;                   /* fd is in the worker's wait set */
	bool rx_failed;                    /* reading fd failed: receive stopped */

	struct net_rx_chain rx_chains[NET_QUEUE_SIZE];
	int nr_rx_chains;
	struct iovec rx_iov[NET_RX_POOL + 1];  /* + the overflow byte during a read */
	int nr_rx_iov;
	uint64_t rx_capacity;              /* bytes in the held chains */
	uint8_t rx_overflow;               /* a read reaching it was larger than the buffers */

	struct virtq_req req;              /* scratch for virtq_pop (large) */
	uint64_t stats[NET_STAT_MAX];      /* atomics */
};

/* kvmlite's MAC for --net number index without mac=: locally
 * administered, unicast, 06:6b:76:6c:00:NN ("kvl"). */
void net_default_mac(int index, uint8_t mac[6]);

/* Whether a transmit header may go to the tap: offloads it asks for are
 * negotiated (driver_features), its checksum range lies in the frame of
 * frame_len bytes. 0 or -EINVAL. */
int net_tx_check(const struct virtio_net_hdr_v1 *hdr, uint64_t frame_len, uint64_t driver_features);

/* The tap offloads (TUN_F_*) the negotiated guest features allow: what
 * the host may hand the guest. */
unsigned net_tap_offloads(uint64_t driver_features);

/* Opens the existing tap NAME (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, a
 * 12-byte vnet header, no offloads yet). Logs what is wrong: no such
 * interface, not a tap, no permission. The fd or a negative errno. */
int net_tap_open(const char *name);

/* Fills net->vdev for backend fd (owned from now on) and the MAC from cfg
 * or the index; does not add it to a VM. */
void virtio_net_setup(struct virtio_net *net, int fd, bool is_tap, const struct net_config *cfg, int index);

#endif
