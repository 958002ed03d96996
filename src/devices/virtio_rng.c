/* virtio-rng: every chain the driver posts gets random bytes in its
 * device-writable buffers, at most RNG_MAX_REQUEST per request so that one
 * huge buffer cannot keep the worker busy. getrandom() never blocks here
 * (GRND_NONBLOCK): a host whose pool is not ready yet answers with 0 bytes
 * and the driver asks again. */
#include "virtio_rng.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "device.h"
#include "util.h"
#include "vm.h"

static const char *const rng_stat_names[RNG_STAT_MAX] = {
	[RNG_STAT_REQUESTS] = "requests",
	[RNG_STAT_BYTES] = "bytes",
	[RNG_STAT_EMPTY] = "empty",
	[RNG_STAT_ERRORS] = "errors",
};

static void stat_add(struct virtio_rng *rng, enum rng_stat stat, uint64_t n)
{
	__atomic_fetch_add(&rng->stats[stat], n, __ATOMIC_RELAXED);
}

size_t rng_fill(const struct iovec *iov, int nr, size_t max)
{
	size_t done = 0;
	for (int i = 0; i < nr && done < max; i++) {
		uint8_t *p = iov[i].iov_base;
		size_t want = MIN(iov[i].iov_len, max - done);
		while (want) {
			ssize_t n = getrandom(p, want, GRND_NONBLOCK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return done;
			p += n;
			want -= (size_t)n;
			done += (size_t)n;
		}
	}
	return done;
}

static void rng_queue_notify(struct virtio_device *dev, int q)
{
	struct virtio_rng *rng = dev->priv;
	struct virtq *vq = virtio_queue(dev, 0);
	if (q != 0 || !vq)
		return;
	bool pushed = false;
	/* -EINVAL (malformed chain) is reported by the transport. */
	while (virtq_pop(vq, &rng->req) == 0) {
		size_t len = 0;
		/* Requests are device-writable only (5.4.6). */
		if (rng->req.nr_out == 0 && rng->req.in_len) {
			size_t want = MIN(rng->req.in_len, (uint64_t)RNG_MAX_REQUEST);
			len = rng_fill(rng->req.in, rng->req.nr_in, want);
			if (len < want)
				stat_add(rng, RNG_STAT_ERRORS, 1);
			stat_add(rng, RNG_STAT_BYTES, len);
		}
		if (!len)
			stat_add(rng, RNG_STAT_EMPTY, 1);
		stat_add(rng, RNG_STAT_REQUESTS, 1);
		virtq_push(vq, rng->req.head, (uint32_t)len);
		pushed = true;
	}
	if (pushed)
		virtio_queue_notify(dev, 0);
}

static void rng_destroy(struct virtio_device *dev)
{
	free(dev->priv);
}

static const struct virtio_device_ops rng_ops = {
	.queue_notify = rng_queue_notify,
	.destroy = rng_destroy,
};

void virtio_rng_setup(struct virtio_rng *rng)
{
	rng->vdev = (struct virtio_device){
		.name = "virtio-rng",
		.device_id = VIRTIO_ID_RNG,
		.nr_queues = 1,
		.queue_max_size = RNG_QUEUE_SIZE,
		.ops = &rng_ops,
		.priv = rng,
	};
}

static int virtio_rng_init(struct vm *vm)
{
	if (vm->cfg->no_rng)
		return 0;
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	if (!rng)
		return -ENOMEM;
	virtio_rng_setup(rng);
	int err = virtio_device_add(vm, &rng->vdev);
	if (err) {
		/* Once added, vm_destroy() frees it through ops->destroy. */
		if (!rng->vdev.added)
			free(rng);
		return err;
	}
	return stats_add(&vm->stats, rng->vdev.name, RNG_STAT_MAX, rng_stat_names, stats_read_array, rng->stats);
}

DEVICE_REGISTER(virtio_rng, virtio_rng_init);
