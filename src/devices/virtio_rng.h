/* virtio-rng (virtio 1.2, 5.4): one request queue whose device-writable
 * buffers are filled from the host's getrandom(). On by default; --no-rng
 * leaves it out. The queue callback takes no VM, so the unit tests drive
 * it on a ring in fake guest RAM. */
#ifndef KVMLITE_VIRTIO_RNG_H
#define KVMLITE_VIRTIO_RNG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio/virtio.h"

#define RNG_QUEUE_SIZE     64
#define RNG_MAX_REQUEST    (64u << 10)   /* bytes given per request at most */

enum rng_stat {
	RNG_STAT_REQUESTS,
	RNG_STAT_BYTES,
	RNG_STAT_EMPTY,        /* answered with 0 bytes: readable buffers, or nothing writable */
	RNG_STAT_ERRORS,       /* getrandom failed */
	RNG_STAT_MAX
};

struct virtio_rng {
	struct virtio_device vdev;
	struct virtq_req req;              /* scratch for virtq_pop (large) */
	uint64_t stats[RNG_STAT_MAX];      /* atomics: read by metrics threads */
};

/* Fills rng->vdev (ops, queue); does not add it to a VM. */
void virtio_rng_setup(struct virtio_rng *rng);

/* Fills up to max bytes of the iovecs with random bytes; returns how many
 * (short only if getrandom failed). */
size_t rng_fill(const struct iovec *iov, int nr, size_t max);

#endif
