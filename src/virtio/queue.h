/* Split virtqueues (virtio 1.2, 2.7): the device side.
 *
 * Everything here reads the guest's rings through guest_ptr(), so no
 * guest-written index, address or length can make kvmlite touch memory
 * outside guest RAM. A chain that leaves RAM, loops, is longer than the
 * queue, nests indirect tables, or has a readable buffer after a writable
 * one is malformed: virtq_pop() returns -EINVAL and the device is expected
 * to report DEVICE_NEEDS_RESET (the transport does it for the caller).
 *
 * A queue is used by one thread at a time (the device's worker, under the
 * device lock). */
#ifndef KVMLITE_VIRTQ_H
#define KVMLITE_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "memory.h"

#define VIRTQ_MAX_SIZE     1024    /* largest queue_size kvmlite offers */
#define VIRTQ_MAX_SEGS     VIRTQ_MAX_SIZE   /* buffers in one chain, indirect included */

/* Descriptor flags */
#define VIRTQ_DESC_F_NEXT      1
#define VIRTQ_DESC_F_WRITE     2
#define VIRTQ_DESC_F_INDIRECT  4
/* Ring flags */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq {
	/* Set by the transport from what the driver wrote */
	uint16_t size;          /* power of two, <= VIRTQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx;         /* VIRTIO_F_RING_EVENT_IDX negotiated */
	bool indirect;          /* VIRTIO_F_INDIRECT_DESC negotiated */

	/* Device state (saved by snapshots) */
	uint16_t last_avail;    /* next avail ring entry to take */
	uint16_t used_idx;      /* next used ring entry to fill */
	uint16_t signalled_used;/* used_idx when the driver was last notified */
	bool signalled_valid;

	const struct guest_memory *mem;
	bool ready;             /* virtq_activate() succeeded */

	/* Set by virtq_activate(): host views of the rings (guest RAM never
	 * moves while the VM exists). */
	void *desc_hva, *avail_hva, *used_hva;
	bool notify_enabled;    /* virtq_set_notify(): the driver may kick */
	/* The driver broke the rules: every later pop fails until reset.
	 * error says how (a static string), for the transport's log. */
	bool broken;
	const char *error;
	/* Pops left in this round. A driver can make its rings refill
	 * themselves (a used ring or a device-written buffer over the avail
	 * index), so a device's "pop until empty" loop is bounded: when the
	 * budget is spent, pop returns -EAGAIN (has_work false) and sets
	 * budget_spent. The transport refills it before each device callback
	 * and re-kicks a queue that ran out, so the worker lets the vCPUs,
	 * reset and shutdown in between. */
	uint32_t budget;
	bool budget_spent;
};

/* One request: the driver-readable buffers first ("out"), then the
 * device-writable ones ("in"), as host iovecs into guest RAM. */
struct virtq_req {
	uint16_t head;
	int nr_out, nr_in;
	uint64_t out_len, in_len;     /* total bytes */
	struct iovec out[VIRTQ_MAX_SEGS];
	struct iovec in[VIRTQ_MAX_SEGS];
};

/* Checks that the rings for q->size entries lie in guest RAM (and are
 * aligned as the spec asks); sets ready. 0 or -EINVAL. */
int virtq_activate(struct virtq *q, const struct guest_memory *mem);
/* Back to the state after device reset (addresses kept by the caller). */
void virtq_reset(struct virtq *q);

/* Takes the next available chain: 0 and req filled; -EAGAIN when the ring
 * is empty; -EINVAL when the driver broke the rules (the queue must not be
 * used again until reset). */
int virtq_pop(struct virtq *q, struct virtq_req *req);
/* Puts head back in the used ring with len bytes written. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);
/* Puts n chains in the used ring at once: the driver sees the used index
 * move once, after all of them (virtio-net's merged receive buffers must
 * arrive together). */
struct virtq_used {
	uint16_t head;
	uint32_t len;
};
void virtq_push_batch(struct virtq *q, const struct virtq_used *used, int n);
/* After one or more pushes: whether the driver wants an interrupt
 * (EVENT_IDX used_event, or NO_INTERRUPT); false when nothing was pushed
 * since the last call. Updates signalled_used. */
bool virtq_should_notify(struct virtq *q);
/* Notification suppression while the device is busy draining the ring:
 * enable=false asks the driver not to kick. After enabling, the caller
 * must check for more work (virtq_has_work) to close the race. */
void virtq_set_notify(struct virtq *q, bool enable);
bool virtq_has_work(const struct virtq *q);
/* A new round of q->size pops (virtq_activate() starts one). */
void virtq_refill_budget(struct virtq *q);

/* The iovecs covering bytes [offset, offset + len) of src into dst (at
 * most max): their number, or -EINVAL when src is shorter or dst too
 * small. */
int iov_slice(const struct iovec *src, int nr, uint64_t offset, uint64_t len, struct iovec *dst, int max);
/* Copy helpers over an iovec array (bounded by the iovecs' lengths);
 * return the bytes copied. */
uint64_t iov_to_buf(const struct iovec *iov, int nr, uint64_t offset, void *buf, uint64_t len);
uint64_t buf_to_iov(const struct iovec *iov, int nr, uint64_t offset, const void *buf, uint64_t len);

#endif
