/* virtio-rng: rng_fill over iovecs, and the queue callback on a split ring
 * in fake guest RAM: writable buffers get random bytes (at most
 * RNG_MAX_REQUEST per request), readable ones get nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "devices/virtio_rng.h"

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_fill(void **state)
{
	uint8_t a[64] = { 0 }, b[64] = { 0 }, c[64] = { 0 };
	struct iovec iov[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	assert_int_equal(rng_fill(iov, 3, 100), 100);
	assert_false(all_zero(a, 64));
	assert_false(all_zero(b, 36));
	assert_true(all_zero(b + 36, 28));   /* max respected */
	assert_true(all_zero(c, 64));
	uint8_t d[64] = { 0 };
	struct iovec one = { d, sizeof(d) };
	assert_int_equal(rng_fill(&one, 1, 1000), 64);
	assert_memory_not_equal(a, d, 64);
}

#define RAM_GPA   0x100000ULL
#define RAM_SIZE  0x100000ULL
#define QSZ       16
#define DESC_GPA  (RAM_GPA + 0x0000)
#define AVAIL_GPA (RAM_GPA + 0x1000)
#define USED_GPA  (RAM_GPA + 0x2000)
#define BUF_GPA   (RAM_GPA + 0x10000)

struct guest {
	struct virtio_rng rng;
	uint8_t ram[RAM_SIZE];
	struct guest_memory mem;
	uint16_t avail_idx;
};

static uint8_t *hva(struct guest *g, uint64_t gpa)
{
	return g->ram + (gpa - RAM_GPA);
}

static void post(struct guest *g, uint16_t d, uint64_t gpa, uint32_t len, bool writable)
{
	uint8_t *p = hva(g, DESC_GPA + 16ULL * d);
	uint16_t flags = writable ? 2 : 0, next = 0;
	memcpy(p, &gpa, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
	memcpy(hva(g, AVAIL_GPA + 4 + 2ULL * (g->avail_idx % QSZ)), &d, 2);
	g->avail_idx++;
	memcpy(hva(g, AVAIL_GPA + 2), &g->avail_idx, 2);
}

static uint32_t used_len(struct guest *g, uint16_t slot)
{
	uint32_t len;
	memcpy(&len, hva(g, USED_GPA + 8 + 8ULL * slot), 4);
	return len;
}

static int setup_guest(void **state)
{
	struct guest *g = calloc(1, sizeof(*g));
	if (!g)
		return -1;
	g->mem = (struct guest_memory){ .regions = { { RAM_GPA, RAM_SIZE, g->ram } }, .nr_regions = 1 };
	virtio_rng_setup(&g->rng);
	struct virtio_device *dev = &g->rng.vdev;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&dev->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		      VIRTIO_STATUS_DRIVER_OK;
	dev->driver_features = 1ull << VIRTIO_F_VERSION_1;
	dev->config_vector = VIRTIO_NO_VECTOR;
	struct virtio_queue_state *s = &dev->queues[0];
	s->enabled = true;
	s->vector = VIRTIO_NO_VECTOR;
	s->vq = (struct virtq){ .size = QSZ, .desc_gpa = DESC_GPA, .avail_gpa = AVAIL_GPA, .used_gpa = USED_GPA };
	if (virtq_activate(&s->vq, &g->mem))
		return -1;
	*state = g;
	return 0;
}

static int teardown_guest(void **state)
{
	struct guest *g = *state;
	pthread_mutex_destroy(&g->rng.vdev.lock);
	free(g);
	return 0;
}

static void test_requests(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->rng.vdev;
	assert_int_equal(dev->device_id, VIRTIO_ID_RNG);
	assert_int_equal(dev->nr_queues, 1);

	post(g, 0, BUF_GPA, 256, true);
	post(g, 1, BUF_GPA + 0x1000, 0x20000, true);        /* 128 KiB: half of it is filled */
	post(g, 2, BUF_GPA + 0x30000, 64, false);           /* readable: nothing */
	dev->ops->queue_notify(dev, 0);

	uint16_t idx;
	memcpy(&idx, hva(g, USED_GPA + 2), 2);
	assert_int_equal(idx, 3);
	assert_int_equal(used_len(g, 0), 256);
	assert_int_equal(used_len(g, 1), RNG_MAX_REQUEST);
	assert_int_equal(used_len(g, 2), 0);
	assert_false(all_zero(hva(g, BUF_GPA), 256));
	assert_false(all_zero(hva(g, BUF_GPA + 0x1000 + RNG_MAX_REQUEST - 64), 64));
	assert_true(all_zero(hva(g, BUF_GPA + 0x1000 + RNG_MAX_REQUEST), 0x20000 - RNG_MAX_REQUEST));
	assert_true(all_zero(hva(g, BUF_GPA + 0x30000), 64));
	assert_int_equal(g->rng.stats[RNG_STAT_REQUESTS], 3);
	assert_int_equal(g->rng.stats[RNG_STAT_BYTES], 256 + RNG_MAX_REQUEST);
	assert_int_equal(g->rng.stats[RNG_STAT_EMPTY], 1);
	/* Two reads differ. */
	post(g, 3, BUF_GPA + 0x40000, 256, true);
	dev->ops->queue_notify(dev, 0);
	assert_memory_not_equal(hva(g, BUF_GPA), hva(g, BUF_GPA + 0x40000), 256);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill),
		cmocka_unit_test_setup_teardown(test_requests, setup_guest, teardown_guest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
