/* libFuzzer target for the split virtqueue (src/virtio/queue.c): the input
 * is a 16-byte header of ring parameters followed by the guest memory
 * image. The queue is activated over it and drained for a few rounds, the
 * "driver" moving its avail index between rounds. Nothing may crash or
 * overflow (ASan/UBSan), every pop must terminate, and every iovec a pop
 * returns must lie inside guest RAM.
 *
 * Header: [0] queue size as log2+1 (0: size 0), [1] flags (bit 0
 * EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 start with notifications off),
 * [2..7] desc/avail/used offsets into RAM (le16 each, may be misaligned or
 * run past the end), [8..9] last_avail, [10..11] used_idx to start from,
 * [12] rounds, [13] avail index step between rounds.
 *
 *   tests/fuzz/run-virtq [SECONDS]   builds with clang and runs it */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/queue.h"

#define RAM_GPA    0x10000ULL
#define RAM_SIZE   0x8000ULL
#define SMALL_GPA  0x40000ULL   /* a second, separate region */
#define SMALL_SIZE 0x1000ULL
#define HEADER     16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t ram[RAM_SIZE] __attribute__((aligned(4096)));
static uint8_t small[SMALL_SIZE] __attribute__((aligned(4096)));
static struct virtq_req req;

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static bool inside(const void *base, uint64_t len, const uint8_t *region, uint64_t region_len)
{
	const uint8_t *p = base;
	return p >= region && len <= region_len && (uint64_t)(p - region) <= region_len - len;
}

static void check_iovecs(const struct iovec *iov, int nr, uint64_t total)
{
	uint64_t sum = 0;
	if (nr < 0 || nr > VIRTQ_MAX_SEGS)
		abort();
	for (int i = 0; i < nr; i++) {
		if (!iov[i].iov_len || (!inside(iov[i].iov_base, iov[i].iov_len, ram, RAM_SIZE) &&
					!inside(iov[i].iov_base, iov[i].iov_len, small, SMALL_SIZE)))
			abort();
		sum += iov[i].iov_len;
	}
	if (sum != total || total > UINT32_MAX)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < HEADER)
		return 0;
	const uint8_t *h = data;
	memset(ram, 0, sizeof(ram));
	memset(small, 0, sizeof(small));
	memcpy(ram, data + HEADER, size - HEADER < RAM_SIZE ? size - HEADER : RAM_SIZE);

	struct guest_memory mem = { .nr_regions = 2 };
	mem.regions[0] = (struct guest_region){ RAM_GPA, RAM_SIZE, ram };
	mem.regions[1] = (struct guest_region){ SMALL_GPA, SMALL_SIZE, small };

	struct virtq q;
	memset(&q, 0, sizeof(q));
	q.size = h[0] % 12 ? (uint16_t)(1u << (h[0] % 12 - 1)) : 0;
	q.event_idx = h[1] & 1;
	q.indirect = h[1] & 2;
	q.desc_gpa = RAM_GPA + le16(h + 2);
	q.avail_gpa = RAM_GPA + le16(h + 4);
	q.used_gpa = RAM_GPA + le16(h + 6);
	virtq_reset(&q);
	q.last_avail = le16(h + 8);
	q.used_idx = q.signalled_used = le16(h + 10);
	if (virtq_activate(&q, &mem) != 0) {
		if (q.ready || virtq_pop(&q, &req) != -EAGAIN || virtq_has_work(&q))
			abort();
		return 0;
	}
	if (h[1] & 4)
		virtq_set_notify(&q, false);

	int rounds = 1 + h[12] % 4;
	for (int r = 0; r < rounds; r++) {
		int popped = 0, err;
		virtq_refill_budget(&q);
		while ((err = virtq_pop(&q, &req)) == 0) {
			/* Rings that refill themselves (overlapping used and avail
			 * rings) stop at the budget: one ring's worth. */
			if (++popped > q.size)
				abort();
			if (req.head >= q.size)
				abort();
			check_iovecs(req.out, req.nr_out, req.out_len);
			check_iovecs(req.in, req.nr_in, req.in_len);
			/* What a device does: read the request, write the reply. */
			uint8_t scratch[64];
			iov_to_buf(req.out, req.nr_out, 0, scratch, sizeof(scratch));
			buf_to_iov(req.in, req.nr_in, req.in_len / 2, scratch, sizeof(scratch));
			virtq_push(&q, req.head, (uint32_t)req.in_len);
		}
		if (err != -EAGAIN && err != -EINVAL)
			abort();
		if (err == -EINVAL && (!q.broken || virtq_pop(&q, &req) != -EINVAL || virtq_has_work(&q)))
			abort();
		virtq_should_notify(&q);
		virtq_set_notify(&q, r % 2);
		virtq_has_work(&q);
		/* The driver makes more entries available (or garbage). */
		uint16_t idx;
		memcpy(&idx, ram + le16(h + 4) % (RAM_SIZE - 4) + 2, 2);
		idx = (uint16_t)(idx + h[13]);
		memcpy(ram + le16(h + 4) % (RAM_SIZE - 4) + 2, &idx, 2);
	}
	return 0;
}
