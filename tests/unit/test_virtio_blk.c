/* virtio-blk: the request parser on hand-built chains (every type and every
 * malformed case), the io_uring path on a temporary image file (no KVM
 * needed), and the device's queue callbacks on a split ring in a fake
 * guest RAM, as the transport's worker would call them. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/virtio_blk.h"

#define SECTOR     512
#define DISK_BYTES (1 << 20)
#define CAPACITY   (DISK_BYTES / SECTOR)

/* ---- Building chains by hand ---- */

static struct virtq_req req;

static void req_reset(uint16_t head)
{
	req.head = head;
	req.nr_out = req.nr_in = 0;
	req.out_len = req.in_len = 0;
}

static void add_out(void *p, size_t n)
{
	req.out[req.nr_out++] = (struct iovec){ p, n };
	req.out_len += n;
}

static void add_in(void *p, size_t n)
{
	req.in[req.nr_in++] = (struct iovec){ p, n };
	req.in_len += n;
}

static void make_hdr(uint8_t hdr[16], uint32_t type, uint64_t sector)
{
	memset(hdr, 0, 16);
	memcpy(hdr, &type, 4);
	memcpy(hdr + 8, &sector, 8);
}

static void make_seg(uint8_t seg[16], uint64_t sector, uint32_t count, uint32_t flags)
{
	memcpy(seg, &sector, 8);
	memcpy(seg + 8, &count, 4);
	memcpy(seg + 12, &flags, 4);
}

static const struct blk_limits limits = {
	.capacity = CAPACITY,
	.discard = true,
	.write_zeroes = true,
	.max_discard_sectors = 1024,
	.max_write_zeroes_sectors = 1024,
};

/* Parses req; returns the status (or -1 for "no status byte"). */
static int parse(const struct blk_limits *lim, struct blk_request *rq)
{
	int err = blk_parse_request(&req, lim, rq);
	return err < 0 ? -1 : rq->status;
}

/* ---- Parser: valid requests ---- */

static void test_parse_read(void **state)
{
	uint8_t hdr[16], data[1024], status;
	make_hdr(hdr, VIRTIO_BLK_T_IN, 7);
	req_reset(3);
	add_out(hdr, 16);
	add_in(data, sizeof(data));
	add_in(&status, 1);
	struct blk_request rq;
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_OK);
	assert_int_equal(rq.type, VIRTIO_BLK_T_IN);
	assert_int_equal(rq.sector, 7);
	assert_int_equal(rq.data_offset, 0);
	assert_int_equal(rq.data_len, 1024);
	assert_ptr_equal(rq.status_byte, &status);
}

static void test_parse_write_split_header(void **state)
{
	/* The header may span buffers (no framing is implied). */
	uint8_t hdr[16], data[512 + 16], status;
	make_hdr(hdr, VIRTIO_BLK_T_OUT, CAPACITY - 2);
	req_reset(0);
	add_out(hdr, 10);
	memcpy(data, hdr + 10, 6);
	add_out(data, 6 + 512); /* header tail and the first sector together */
	add_out(data, 512);
	add_in(&status, 1);
	struct blk_request rq;
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_OK);
	assert_int_equal(rq.type, VIRTIO_BLK_T_OUT);
	assert_int_equal(rq.sector, CAPACITY - 2);
	assert_int_equal(rq.data_offset, 16);
	assert_int_equal(rq.data_len, 1024);
}

static void test_parse_status_is_last_in_byte(void **state)
{
	uint8_t hdr[16], data[512], tail[4];
	make_hdr(hdr, VIRTIO_BLK_T_IN, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_in(data, 509);
	add_in(tail, 4); /* 3 data bytes and the status */
	struct blk_request rq;
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_OK);
	assert_ptr_equal(rq.status_byte, &tail[3]);
	assert_int_equal(rq.data_len, 512);
}

static void test_parse_flush_and_get_id(void **state)
{
	uint8_t hdr[16], id[20], status;
	struct blk_request rq;
	make_hdr(hdr, VIRTIO_BLK_T_FLUSH, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_OK);
	assert_int_equal(rq.type, VIRTIO_BLK_T_FLUSH);

	make_hdr(hdr, VIRTIO_BLK_T_GET_ID, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_in(id, sizeof(id));
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_OK);
	assert_int_equal(rq.type, VIRTIO_BLK_T_GET_ID);
	assert_int_equal(rq.data_len, 20);

	/* Flush is allowed on a read-only disk (nothing to do). */
	struct blk_limits ro = limits;
	ro.read_only = true;
	make_hdr(hdr, VIRTIO_BLK_T_FLUSH, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_in(&status, 1);
	assert_int_equal(parse(&ro, &rq), VIRTIO_BLK_S_OK);
}

static void test_parse_discard_and_write_zeroes(void **state)
{
	uint8_t hdr[16], seg[16], status;
	struct blk_request rq;
	make_hdr(hdr, VIRTIO_BLK_T_DISCARD, 0);
	make_seg(seg, 100, 50, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_out(seg, 16);
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_OK);
	assert_int_equal(rq.seg_sector, 100);
	assert_int_equal(rq.seg_sectors, 50);

	make_hdr(hdr, VIRTIO_BLK_T_WRITE_ZEROES, 0);
	make_seg(seg, CAPACITY - 8, 8, VIRTIO_BLK_WZ_F_UNMAP);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_OK);
	assert_int_equal(rq.type, VIRTIO_BLK_T_WRITE_ZEROES);
	assert_int_equal(rq.seg_flags, VIRTIO_BLK_WZ_F_UNMAP);
}

/* ---- Parser: malformed requests ---- */

static void test_parse_no_status_byte(void **state)
{
	uint8_t hdr[16], empty[1];
	struct blk_request rq;
	make_hdr(hdr, VIRTIO_BLK_T_IN, 0);
	req_reset(0);
	add_out(hdr, 16);
	assert_int_equal(parse(&limits, &rq), -1);
	add_in(empty, 0); /* zero-length writable buffers are no status byte either */
	assert_int_equal(parse(&limits, &rq), -1);
}

static void test_parse_short_header(void **state)
{
	uint8_t hdr[16], status;
	struct blk_request rq;
	make_hdr(hdr, VIRTIO_BLK_T_IN, 0);
	req_reset(0);
	add_out(hdr, 15);
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_IOERR);
	assert_ptr_equal(rq.status_byte, &status);
	req_reset(0); /* no readable part at all */
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_IOERR);
}

static void rw_status(uint32_t type, uint64_t sector, size_t len, const struct blk_limits *lim, int want)
{
	static uint8_t data[4096];
	uint8_t hdr[16], status;
	struct blk_request rq;
	assert_true(len <= sizeof(data));
	make_hdr(hdr, type, sector);
	req_reset(0);
	add_out(hdr, 16);
	if (type == VIRTIO_BLK_T_OUT)
		add_out(data, len);
	else
		add_in(data, len);
	add_in(&status, 1);
	assert_int_equal(parse(lim, &rq), want);
}

static void test_parse_ranges(void **state)
{
	for (uint32_t type = VIRTIO_BLK_T_IN; type <= VIRTIO_BLK_T_OUT; type++) {
		rw_status(type, 0, 512, &limits, VIRTIO_BLK_S_OK);
		rw_status(type, CAPACITY - 1, 512, &limits, VIRTIO_BLK_S_OK);     /* the last sector */
		rw_status(type, CAPACITY - 1, 1024, &limits, VIRTIO_BLK_S_IOERR); /* one past the end */
		rw_status(type, CAPACITY, 512, &limits, VIRTIO_BLK_S_IOERR);
		rw_status(type, CAPACITY, 0, &limits, VIRTIO_BLK_S_OK);            /* empty, at the end */
		rw_status(type, CAPACITY + 1, 0, &limits, VIRTIO_BLK_S_IOERR);
		rw_status(type, UINT64_MAX, 512, &limits, VIRTIO_BLK_S_IOERR);   /* sector + count wraps */
		rw_status(type, UINT64_MAX / 512, 512, &limits, VIRTIO_BLK_S_IOERR); /* sector * 512 wraps */
		rw_status(type, 0, 511, &limits, VIRTIO_BLK_S_IOERR);             /* not whole sectors */
		rw_status(type, 0, 513, &limits, VIRTIO_BLK_S_IOERR);
	}
}

static void test_parse_read_only(void **state)
{
	struct blk_limits ro = limits;
	ro.read_only = true;
	rw_status(VIRTIO_BLK_T_OUT, 0, 512, &ro, VIRTIO_BLK_S_IOERR);
	rw_status(VIRTIO_BLK_T_IN, 0, 512, &ro, VIRTIO_BLK_S_OK);

	uint8_t hdr[16], seg[16], status;
	struct blk_request rq;
	make_hdr(hdr, VIRTIO_BLK_T_WRITE_ZEROES, 0);
	make_seg(seg, 0, 8, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_out(seg, 16);
	add_in(&status, 1);
	assert_int_equal(parse(&ro, &rq), VIRTIO_BLK_S_IOERR);
	make_hdr(hdr, VIRTIO_BLK_T_DISCARD, 0);
	assert_int_equal(parse(&ro, &rq), VIRTIO_BLK_S_IOERR);
}

static void test_parse_wrong_direction(void **state)
{
	uint8_t hdr[16], data[512], status;
	struct blk_request rq;
	/* A read with device-readable data after the header. */
	make_hdr(hdr, VIRTIO_BLK_T_IN, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_out(data, 512);
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_IOERR);
	/* A write with device-writable data before the status. */
	make_hdr(hdr, VIRTIO_BLK_T_OUT, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_in(data, 512);
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_IOERR);
	/* A flush with data either way. */
	make_hdr(hdr, VIRTIO_BLK_T_FLUSH, 0);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_IOERR);
	req_reset(0);
	add_out(hdr, 16);
	add_out(data, 512);
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_IOERR);
}

static void test_parse_unknown_type(void **state)
{
	const uint32_t types[] = { 2, 3, 5, 9, 12, 14, 0xffffffff };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		rw_status(types[i], 0, 0, &limits, VIRTIO_BLK_S_UNSUPP);
}

static void test_parse_get_id_short(void **state)
{
	uint8_t hdr[16], id[20], status;
	struct blk_request rq;
	make_hdr(hdr, VIRTIO_BLK_T_GET_ID, 0);
	req_reset(0);
	add_out(hdr, 16);
	add_in(id, 19);
	add_in(&status, 1);
	assert_int_equal(parse(&limits, &rq), VIRTIO_BLK_S_IOERR);
}

static int seg_status(uint32_t type, const uint8_t *segs, size_t len, const struct blk_limits *lim)
{
	static uint8_t hdr[16], status;
	struct blk_request rq;
	make_hdr(hdr, type, 0);
	req_reset(0);
	add_out(hdr, 16);
	if (len)
		add_out((void *)segs, len);
	add_in(&status, 1);
	return parse(lim, &rq);
}

static void test_parse_segments(void **state)
{
	uint8_t segs[32];
	for (uint32_t type = VIRTIO_BLK_T_DISCARD; type <= VIRTIO_BLK_T_WRITE_ZEROES; type += 2) {
		make_seg(segs, 0, 8, 0);
		make_seg(segs + 16, 8, 8, 0);
		assert_int_equal(seg_status(type, segs, 16, &limits), VIRTIO_BLK_S_OK);
		assert_int_equal(seg_status(type, segs, 0, &limits), VIRTIO_BLK_S_IOERR);   /* no segment */
		assert_int_equal(seg_status(type, segs, 15, &limits), VIRTIO_BLK_S_IOERR);  /* partial */
		assert_int_equal(seg_status(type, segs, 17, &limits), VIRTIO_BLK_S_IOERR);
		assert_int_equal(seg_status(type, segs, 32, &limits), VIRTIO_BLK_S_IOERR);  /* max_*_seg is 1 */

		make_seg(segs, CAPACITY - 8, 9, 0);
		assert_int_equal(seg_status(type, segs, 16, &limits), VIRTIO_BLK_S_IOERR);  /* past the end */
		make_seg(segs, UINT64_MAX - 2, 8, 0);
		assert_int_equal(seg_status(type, segs, 16, &limits), VIRTIO_BLK_S_IOERR);  /* wraps */
		make_seg(segs, 0, 1025, 0);
		assert_int_equal(seg_status(type, segs, 16, &limits), VIRTIO_BLK_S_IOERR);  /* over the maximum */
		make_seg(segs, 0, 8, 1u << 1);
		assert_int_equal(seg_status(type, segs, 16, &limits), VIRTIO_BLK_S_UNSUPP); /* unknown flag */

		struct blk_limits off = limits;
		off.discard = off.write_zeroes = false;
		make_seg(segs, 0, 8, 0);
		assert_int_equal(seg_status(type, segs, 16, &off), VIRTIO_BLK_S_UNSUPP);    /* not negotiated */
	}
	/* unmap: a write-zeroes flag, not a discard one */
	make_seg(segs, 0, 8, VIRTIO_BLK_WZ_F_UNMAP);
	assert_int_equal(seg_status(VIRTIO_BLK_T_DISCARD, segs, 16, &limits), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(seg_status(VIRTIO_BLK_T_WRITE_ZEROES, segs, 16, &limits), VIRTIO_BLK_S_OK);
}

static void test_iov_slice(void **state)
{
	uint8_t a[10], b[20], c[30];
	const struct iovec src[] = { { a, 10 }, { b, 20 }, { c, 30 } };
	struct iovec dst[3];
	assert_int_equal(iov_slice(src, 3, 5, 30, dst, 3), 3);
	assert_ptr_equal(dst[0].iov_base, a + 5);
	assert_int_equal(dst[0].iov_len, 5);
	assert_ptr_equal(dst[1].iov_base, b);
	assert_int_equal(dst[1].iov_len, 20);
	assert_int_equal(dst[2].iov_len, 5);
	assert_int_equal(iov_slice(src, 3, 10, 20, dst, 3), 1);
	assert_ptr_equal(dst[0].iov_base, b);
	assert_int_equal(iov_slice(src, 3, 0, 61, dst, 3), -EINVAL); /* longer than src */
	assert_int_equal(iov_slice(src, 3, 0, 60, dst, 2), -EINVAL); /* dst too small */
	assert_int_equal(iov_slice(src, 3, 59, 0, dst, 3), 0);
}

/* ---- The io_uring path on a temporary file ---- */

struct disk {
	char path[64];
	struct virtio_blk *blk;
};

static int open_disk(struct disk *d, const char *dir, bool ro, const char *id)
{
	snprintf(d->path, sizeof(d->path), "%s/kvmlite-blk-XXXXXX", dir);
	int fd = mkstemp(d->path);
	if (fd < 0)
		return -errno;
	uint8_t fill[4096];
	memset(fill, 0xAA, sizeof(fill));
	for (int off = 0; off < DISK_BYTES; off += (int)sizeof(fill))
		assert_int_equal(pwrite(fd, fill, sizeof(fill), off), sizeof(fill));
	close(fd);
	struct disk_config cfg = { .path = d->path, .read_only = ro, .id = id };
	d->blk = calloc(1, sizeof(*d->blk));
	assert_non_null(d->blk);
	return virtio_blk_open(d->blk, &cfg, 3);
}

static int setup_disk(void **state)
{
	struct disk *d = calloc(1, sizeof(*d));
	if (!d || open_disk(d, "/tmp", false, NULL))
		return -1;
	*state = d;
	return 0;
}

static int setup_disk_ro(void **state)
{
	struct disk *d = calloc(1, sizeof(*d));
	if (!d || open_disk(d, "/tmp", true, "serial-1234"))
		return -1;
	*state = d;
	return 0;
}

static int teardown_disk(void **state)
{
	struct disk *d = *state;
	virtio_blk_close(d->blk);
	free(d->blk);
	unlink(d->path);
	free(d);
	return 0;
}

/* One read or write through the device; returns the status byte. */
static int do_rw(struct virtio_blk *blk, uint32_t type, uint64_t sector, uint8_t *buf, size_t len, int pieces)
{
	uint8_t hdr[16], status = 0xff;
	make_hdr(hdr, type, sector);
	req_reset(1);
	add_out(hdr, 16);
	size_t piece = len / (size_t)pieces;
	for (int i = 0; i < pieces; i++) {
		size_t n = i == pieces - 1 ? len - piece * (size_t)i : piece;
		if (type == VIRTIO_BLK_T_OUT)
			add_out(buf + piece * (size_t)i, n);
		else
			add_in(buf + piece * (size_t)i, n);
	}
	add_in(&status, 1);
	if (virtio_blk_submit(blk, NULL, &req) == 1)
		virtio_blk_reap(blk, NULL, true);
	assert_int_equal(blk->in_flight, 0);
	return status;
}

static int do_segment(struct virtio_blk *blk, uint32_t type, uint64_t sector, uint32_t count, uint32_t flags)
{
	uint8_t hdr[16], seg[16], status = 0xff;
	make_hdr(hdr, type, 0);
	make_seg(seg, sector, count, flags);
	req_reset(2);
	add_out(hdr, 16);
	add_out(seg, 16);
	add_in(&status, 1);
	if (virtio_blk_submit(blk, NULL, &req) == 1)
		virtio_blk_reap(blk, NULL, true);
	return status;
}

static int do_simple(struct virtio_blk *blk, uint32_t type, uint8_t *in, size_t in_len)
{
	uint8_t hdr[16], status = 0xff;
	make_hdr(hdr, type, 0);
	req_reset(4);
	add_out(hdr, 16);
	if (in_len)
		add_in(in, in_len);
	add_in(&status, 1);
	if (virtio_blk_submit(blk, NULL, &req) == 1)
		virtio_blk_reap(blk, NULL, true);
	return status;
}

static void read_file_at(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), len);
	close(fd);
}

static void assert_bytes(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, p[i], v);
}

static void test_io_config(void **state)
{
	struct disk *d = *state;
	struct virtio_blk *blk = d->blk;
	assert_int_equal(blk->config.capacity, CAPACITY);
	assert_int_equal(blk->config.blk_size, 512);
	assert_true(blk->config.seg_max > 0);
	assert_int_equal(blk->config.num_queues, 1);
	assert_int_equal(blk->config.max_discard_seg, 1);
	assert_int_equal(blk->config.max_write_zeroes_seg, 1);
	assert_int_equal(blk->config.write_zeroes_may_unmap, 1);
	assert_int_equal(blk->vdev.device_id, VIRTIO_ID_BLOCK);
	assert_ptr_equal(blk->vdev.config, &blk->config);
	uint64_t f = blk->vdev.features;
	assert_true(f & 1ull << VIRTIO_BLK_F_FLUSH);
	assert_true(f & 1ull << VIRTIO_BLK_F_DISCARD);
	assert_true(f & 1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	assert_true(f & 1ull << VIRTIO_BLK_F_SEG_MAX);
	assert_true(f & 1ull << VIRTIO_BLK_F_BLK_SIZE);
	assert_false(f & 1ull << VIRTIO_BLK_F_RO);
	assert_string_equal(blk->vdev.name, "virtio-blk3");
}

static void test_io_write_read_back(void **state)
{
	struct disk *d = *state;
	struct virtio_blk *blk = d->blk;
	uint8_t out[8192], in[8192], file[8192];
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(do_rw(blk, VIRTIO_BLK_T_OUT, 10, out, sizeof(out), 3), VIRTIO_BLK_S_OK);
	read_file_at(d->path, 10 * SECTOR, file, sizeof(file));
	assert_memory_equal(file, out, sizeof(out));
	memset(in, 0, sizeof(in));
	assert_int_equal(do_rw(blk, VIRTIO_BLK_T_IN, 10, in, sizeof(in), 5), VIRTIO_BLK_S_OK);
	assert_memory_equal(in, out, sizeof(out));
	/* Around the write the image is as it was. */
	read_file_at(d->path, 9 * SECTOR, file, SECTOR);
	assert_bytes(file, SECTOR, 0xAA);
	read_file_at(d->path, 10 * SECTOR + sizeof(out), file, SECTOR);
	assert_bytes(file, SECTOR, 0xAA);

	assert_int_equal(do_simple(blk, VIRTIO_BLK_T_FLUSH, NULL, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(blk->stats[BLK_STAT_WRITES], 1);
	assert_int_equal(blk->stats[BLK_STAT_READS], 1);
	assert_int_equal(blk->stats[BLK_STAT_FLUSHES], 1);
	assert_int_equal(blk->stats[BLK_STAT_WRITE_BYTES], sizeof(out));
	assert_int_equal(blk->stats[BLK_STAT_READ_BYTES], sizeof(in));
	assert_int_equal(blk->stats[BLK_STAT_IO_ERRORS], 0);
}

static void test_io_many_in_flight(void **state)
{
	struct disk *d = *state;
	struct virtio_blk *blk = d->blk;
	enum { N = 64, LEN = 4096 };
	static uint8_t bufs[N][LEN], hdrs[N][16], status[N];
	for (int i = 0; i < N; i++) {
		memset(bufs[i], i + 1, LEN);
		make_hdr(hdrs[i], VIRTIO_BLK_T_OUT, (uint64_t)i * (LEN / SECTOR));
		status[i] = 0xff;
		req_reset((uint16_t)i);
		add_out(hdrs[i], 16);
		add_out(bufs[i], LEN);
		add_in(&status[i], 1);
		assert_int_equal(virtio_blk_submit(blk, NULL, &req), 1);
	}
	assert_int_equal(blk->in_flight, N);
	assert_int_equal(virtio_blk_reap(blk, NULL, true), N);
	for (int i = 0; i < N; i++)
		assert_int_equal(status[i], VIRTIO_BLK_S_OK);
	/* Read them back, all at once too. */
	for (int i = 0; i < N; i++) {
		memset(bufs[i], 0, LEN);
		make_hdr(hdrs[i], VIRTIO_BLK_T_IN, (uint64_t)i * (LEN / SECTOR));
		status[i] = 0xff;
		req_reset((uint16_t)i);
		add_out(hdrs[i], 16);
		add_in(bufs[i], LEN);
		add_in(&status[i], 1);
		assert_int_equal(virtio_blk_submit(blk, NULL, &req), 1);
	}
	assert_int_equal(virtio_blk_reap(blk, NULL, true), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(status[i], VIRTIO_BLK_S_OK);
		assert_bytes(bufs[i], LEN, (uint8_t)(i + 1));
	}
}

static void test_io_refusals(void **state)
{
	struct disk *d = *state;
	struct virtio_blk *blk = d->blk;
	uint8_t buf[1024], file[1024];
	memset(buf, 0x55, sizeof(buf));
	assert_int_equal(do_rw(blk, VIRTIO_BLK_T_OUT, CAPACITY - 1, buf, sizeof(buf), 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(blk, VIRTIO_BLK_T_IN, CAPACITY, buf, 512, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_rw(blk, VIRTIO_BLK_T_OUT, 0, buf, 100, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_simple(blk, 0x1234, NULL, 0), VIRTIO_BLK_S_UNSUPP);
	/* The partial write at the end did not happen. */
	read_file_at(d->path, DISK_BYTES - 512, file, 512);
	assert_bytes(file, 512, 0xAA);
	read_file_at(d->path, 0, file, sizeof(file));
	assert_bytes(file, sizeof(file), 0xAA);
	assert_int_equal(blk->stats[BLK_STAT_IO_ERRORS], 3);
	assert_int_equal(blk->stats[BLK_STAT_UNSUPPORTED], 1);
	assert_int_equal(blk->stats[BLK_STAT_WRITES], 0);
}

static void test_io_discard_write_zeroes(void **state)
{
	struct disk *d = *state;
	struct virtio_blk *blk = d->blk;
	uint8_t buf[64 * SECTOR];
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_WRITE_ZEROES, 8, 16, 0), VIRTIO_BLK_S_OK);
	read_file_at(d->path, 7 * SECTOR, buf, 18 * SECTOR);
	assert_bytes(buf, SECTOR, 0xAA);
	assert_bytes(buf + SECTOR, 16 * SECTOR, 0);
	assert_bytes(buf + 17 * SECTOR, SECTOR, 0xAA);

	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_WRITE_ZEROES, 64, 8, VIRTIO_BLK_WZ_F_UNMAP), VIRTIO_BLK_S_OK);
	read_file_at(d->path, 64 * SECTOR, buf, 8 * SECTOR);
	assert_bytes(buf, 8 * SECTOR, 0);

	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_DISCARD, 128, 64, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_DISCARD, CAPACITY - 1, 2, 0), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_WRITE_ZEROES, CAPACITY, 1, 0), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_DISCARD, 0, 8, VIRTIO_BLK_WZ_F_UNMAP), VIRTIO_BLK_S_UNSUPP);

	struct stat st;
	assert_int_equal(stat(d->path, &st), 0);
	assert_int_equal(st.st_size, DISK_BYTES); /* KEEP_SIZE */
	assert_int_equal(blk->stats[BLK_STAT_WRITE_ZEROES], 2);
	assert_int_equal(blk->stats[BLK_STAT_DISCARDS], 1);
	assert_int_equal(blk->stats[BLK_STAT_IO_ERRORS], 2);
	assert_int_equal(blk->stats[BLK_STAT_UNSUPPORTED], 1);
}

/* tmpfs has no FALLOC_FL_ZERO_RANGE: write zeroes falls back to writes. */
static void test_io_write_zeroes_fallback(void **state)
{
	struct disk d;
	if (access("/dev/shm", W_OK) < 0)
		skip();
	assert_int_equal(open_disk(&d, "/dev/shm", false, NULL), 0);
	struct virtio_blk *blk = d.blk;
	uint32_t count = (3u << 20) / SECTOR / 2; /* 1.5 MiB: past the disk, refused */
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_WRITE_ZEROES, 0, count, 0), VIRTIO_BLK_S_IOERR);
	count = CAPACITY - 3; /* most of the disk: more than one chunk of zeroes */
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_WRITE_ZEROES, 1, count, 0), VIRTIO_BLK_S_OK);
	assert_true(blk->no_zero_range);
	static uint8_t buf[DISK_BYTES];
	read_file_at(d.path, 0, buf, DISK_BYTES);
	assert_bytes(buf, SECTOR, 0xAA);
	assert_bytes(buf + SECTOR, (size_t)count * SECTOR, 0);
	assert_bytes(buf + (1 + count) * SECTOR, 2 * SECTOR, 0xAA);
	/* And again, now straight to the fallback. */
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_WRITE_ZEROES, CAPACITY - 1, 1, 0), VIRTIO_BLK_S_OK);
	read_file_at(d.path, DISK_BYTES - SECTOR, buf, SECTOR);
	assert_bytes(buf, SECTOR, 0);
	assert_int_equal(blk->stats[BLK_STAT_WRITE_ZEROES], 2);
	virtio_blk_close(blk);
	free(blk);
	unlink(d.path);
}

static void test_io_get_id(void **state)
{
	struct disk *d = *state;
	uint8_t id[21];
	memset(id, 0xff, sizeof(id));
	assert_int_equal(do_simple(d->blk, VIRTIO_BLK_T_GET_ID, id, 20), VIRTIO_BLK_S_OK);
	/* No id=: a name from the disk's index, never the host path. */
	assert_memory_equal(id, "kvmlite-disk3\0\0\0\0\0\0\0", 20);
	assert_int_equal(id[20], 0xff);
	assert_int_equal(do_simple(d->blk, VIRTIO_BLK_T_GET_ID, id, 19), VIRTIO_BLK_S_IOERR);
}

static void test_io_read_only(void **state)
{
	struct disk *d = *state;
	struct virtio_blk *blk = d->blk;
	assert_true(blk->vdev.features & 1ull << VIRTIO_BLK_F_RO);
	assert_false(blk->vdev.features & 1ull << VIRTIO_BLK_F_DISCARD);
	assert_false(blk->vdev.features & 1ull << VIRTIO_BLK_F_WRITE_ZEROES);

	uint8_t buf[4096], file[4096];
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(do_rw(blk, VIRTIO_BLK_T_OUT, 0, buf, sizeof(buf), 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(do_segment(blk, VIRTIO_BLK_T_DISCARD, 0, 8, 0), VIRTIO_BLK_S_UNSUPP);
	read_file_at(d->path, 0, file, sizeof(file));
	assert_bytes(file, sizeof(file), 0xAA);
	assert_int_equal(do_rw(blk, VIRTIO_BLK_T_IN, 0, buf, sizeof(buf), 2), VIRTIO_BLK_S_OK);
	assert_bytes(buf, sizeof(buf), 0xAA);
	assert_int_equal(do_simple(blk, VIRTIO_BLK_T_FLUSH, NULL, 0), VIRTIO_BLK_S_OK);

	uint8_t id[21];
	assert_int_equal(do_simple(blk, VIRTIO_BLK_T_GET_ID, id, 20), VIRTIO_BLK_S_OK);
	assert_memory_equal(id, "serial-1234\0\0\0\0\0\0\0\0\0", 20);
}

static void test_open_errors(void **state)
{
	struct virtio_blk *blk = calloc(1, sizeof(*blk));
	assert_non_null(blk);
	struct disk_config cfg = { .path = "/nonexistent/kvmlite-disk.img" };
	assert_int_equal(virtio_blk_open(blk, &cfg, 0), -ENOENT);
	virtio_blk_close(blk);
	memset(blk, 0, sizeof(*blk));
	cfg.path = "/dev/null"; /* a character device: neither a file nor a disk */
	assert_int_equal(virtio_blk_open(blk, &cfg, 0), -EINVAL);
	virtio_blk_close(blk);
	free(blk);
}

/* Two writers on one image would corrupt it: the second open is refused. */
static void test_open_locked(void **state)
{
	struct disk *d = *state;
	struct virtio_blk *other = calloc(1, sizeof(*other));
	assert_non_null(other);
	struct disk_config cfg = { .path = d->path };
	assert_int_equal(virtio_blk_open(other, &cfg, 1), -EBUSY);
	virtio_blk_close(other);
	memset(other, 0, sizeof(*other));
	cfg.read_only = true;
	assert_int_equal(virtio_blk_open(other, &cfg, 1), -EBUSY);
	virtio_blk_close(other);
	free(other);
}

/* ---- The device's callbacks on a split ring in fake guest RAM ---- */

#define RAM_GPA   0x100000ULL
#define RAM_SIZE  0x100000ULL
#define QSZ       16
#define DESC_GPA  (RAM_GPA + 0x0000)
#define AVAIL_GPA (RAM_GPA + 0x1000)
#define USED_GPA  (RAM_GPA + 0x2000)
#define BUF_GPA   (RAM_GPA + 0x10000)  /* per request i: 0x1000 * i */

struct guest {
	struct disk disk;
	uint8_t *ram;
	struct guest_memory mem;
	uint16_t avail_idx;
};

static uint8_t *hva(struct guest *g, uint64_t gpa)
{
	return g->ram + (gpa - RAM_GPA);
}

static void set_desc(struct guest *g, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = hva(g, DESC_GPA + 16ULL * i);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static uint16_t used_idx(struct guest *g)
{
	uint16_t v;
	memcpy(&v, hva(g, USED_GPA + 2), 2);
	return v;
}

static void used_elem(struct guest *g, uint16_t slot, uint32_t *id, uint32_t *len)
{
	memcpy(id, hva(g, USED_GPA + 4 + 8ULL * (slot % QSZ)), 4);
	memcpy(len, hva(g, USED_GPA + 8 + 8ULL * (slot % QSZ)), 4);
}

/* Request n uses descriptors 3n..3n+2 and the page BUF_GPA + 0x1000 n:
 * header at +0, status at +0x10, 512 data bytes at +0x200. */
static void post(struct guest *g, int n, uint32_t type, uint64_t sector, bool with_status)
{
	uint64_t page = BUF_GPA + 0x1000ULL * (uint64_t)n;
	uint16_t d = (uint16_t)(3 * n);
	make_hdr(hva(g, page), type, sector);
	*hva(g, page + 0x10) = 0xff;
	bool data = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT;
	set_desc(g, d, page, 16, data || with_status ? 1 : 0, (uint16_t)(d + 1));
	if (data)
		set_desc(g, d + 1, page + 0x200, 512, (type == VIRTIO_BLK_T_IN ? 2 : 0) | (with_status ? 1 : 0),
			 (uint16_t)(d + 2));
	if (with_status)
		set_desc(g, data ? d + 2 : d + 1, page + 0x10, 1, 2, 0);
	uint16_t slot = g->avail_idx % QSZ;
	memcpy(hva(g, AVAIL_GPA + 4 + 2ULL * slot), &d, 2);
	g->avail_idx++;
	memcpy(hva(g, AVAIL_GPA + 2), &g->avail_idx, 2);
}

static uint8_t status_of(struct guest *g, int n)
{
	return *hva(g, BUF_GPA + 0x1000ULL * (uint64_t)n + 0x10);
}

static int setup_guest(void **state)
{
	struct guest *g = calloc(1, sizeof(*g));
	if (!g || open_disk(&g->disk, "/tmp", false, NULL))
		return -1;
	g->ram = calloc(1, RAM_SIZE);
	if (!g->ram)
		return -1;
	g->mem = (struct guest_memory){ .regions = { { RAM_GPA, RAM_SIZE, g->ram } }, .nr_regions = 1 };

	/* What the transport would have done by DRIVER_OK. */
	struct virtio_device *dev = &g->disk.blk->vdev;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&dev->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		      VIRTIO_STATUS_DRIVER_OK;
	dev->driver_features = dev->features | 1ull << VIRTIO_F_VERSION_1;
	dev->config_vector = VIRTIO_NO_VECTOR;
	struct virtio_queue_state *s = &dev->queues[0];
	s->enabled = true;
	s->vector = VIRTIO_NO_VECTOR;
	s->vq.size = QSZ;
	s->vq.desc_gpa = DESC_GPA;
	s->vq.avail_gpa = AVAIL_GPA;
	s->vq.used_gpa = USED_GPA;
	if (virtq_activate(&s->vq, &g->mem) || dev->ops->activate(dev))
		return -1;
	*state = g;
	return 0;
}

static int teardown_guest(void **state)
{
	struct guest *g = *state;
	pthread_mutex_destroy(&g->disk.blk->vdev.lock);
	virtio_blk_close(g->disk.blk);
	free(g->disk.blk);
	unlink(g->disk.path);
	free(g->ram);
	free(g);
	return 0;
}

/* What the worker does when the ring's eventfd fires, until the used index
 * reaches want (or 5 s pass). */
static void run_completions(struct guest *g, uint16_t want)
{
	struct virtio_blk *blk = g->disk.blk;
	assert_int_equal(blk->vdev.nr_watches, 1);
	assert_int_equal(blk->vdev.watches[0].fd, blk->completion_fd);
	for (int i = 0; i < 500 && used_idx(g) != want; i++) {
		struct pollfd p = { .fd = blk->completion_fd, .events = POLLIN };
		if (poll(&p, 1, 10) == 1)
			blk->vdev.watches[0].fn(&blk->vdev, p.fd, POLLIN);
	}
	assert_int_equal(used_idx(g), want);
}

static void test_ring_requests(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->disk.blk->vdev;
	memset(hva(g, BUF_GPA + 0x200), 0x42, 512);
	post(g, 0, VIRTIO_BLK_T_OUT, 5, true);
	post(g, 1, VIRTIO_BLK_T_FLUSH, 0, true);
	post(g, 2, 99, 0, true);
	dev->ops->queue_notify(dev, 0);
	run_completions(g, 3);
	post(g, 3, VIRTIO_BLK_T_IN, 5, true);
	dev->ops->queue_notify(dev, 0);
	run_completions(g, 4);

	assert_int_equal(status_of(g, 0), VIRTIO_BLK_S_OK);
	assert_int_equal(status_of(g, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(status_of(g, 2), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(status_of(g, 3), VIRTIO_BLK_S_OK);
	assert_bytes(hva(g, BUF_GPA + 0x3000 + 0x200), 512, 0x42);
	/* Every head came back once, with the bytes written for the driver. */
	bool seen[4] = { false };
	for (uint16_t slot = 0; slot < 4; slot++) {
		uint32_t id, len;
		used_elem(g, slot, &id, &len);
		assert_true(id % 3 == 0 && id / 3 < 4);
		assert_false(seen[id / 3]);
		seen[id / 3] = true;
		assert_int_equal(len, id == 9 ? 513 : 1);
	}
	assert_true(dev->nr_interrupts > 0);
	assert_false(dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* With room for only two requests in flight, the rest wait in the ring
 * until completions make room. */
static void test_ring_backpressure(void **state)
{
	struct guest *g = *state;
	struct virtio_blk *blk = g->disk.blk;
	blk->depth = 2;
	for (int i = 0; i < 5; i++)
		post(g, i, VIRTIO_BLK_T_IN, (uint64_t)i, true);
	blk->vdev.ops->queue_notify(&blk->vdev, 0);
	assert_true(blk->in_flight <= 2);
	run_completions(g, 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(status_of(g, i), VIRTIO_BLK_S_OK);
		assert_bytes(hva(g, BUF_GPA + 0x1000ULL * (uint64_t)i + 0x200), 512, 0xAA);
	}
	assert_int_equal(blk->in_flight, 0);
}

/* Reset waits for the requests in flight and reports none of them. */
static void test_ring_reset(void **state)
{
	struct guest *g = *state;
	struct virtio_blk *blk = g->disk.blk;
	for (int i = 0; i < 4; i++)
		post(g, i, VIRTIO_BLK_T_OUT, (uint64_t)i, true);
	/* Prepare, but do not reap: what the worker would leave in flight. */
	struct virtq *vq = &blk->vdev.queues[0].vq;
	while (virtq_pop(vq, &blk->req) == 0)
		assert_int_equal(virtio_blk_submit(blk, vq, &blk->req), 1);
	assert_int_equal(blk->in_flight, 4);
	blk->vdev.ops->reset(&blk->vdev);
	assert_int_equal(blk->in_flight, 0);
	assert_int_equal(used_idx(g), 0);
	assert_int_equal(status_of(g, 0), 0xff);
	/* Dropped requests are not counted as done. */
	assert_int_equal(blk->stats[BLK_STAT_WRITES], 0);
}

/* A chain without a device-writable byte cannot be answered: the device
 * asks for a reset and takes nothing more. */
static void test_ring_no_status_needs_reset(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->disk.blk->vdev;
	post(g, 0, VIRTIO_BLK_T_FLUSH, 0, false);
	post(g, 1, VIRTIO_BLK_T_FLUSH, 0, true);
	dev->ops->queue_notify(dev, 0);
	assert_true(dev->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_null(virtio_queue(dev, 0));
	assert_int_equal(used_idx(g), 0);
	assert_int_equal(status_of(g, 1), 0xff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_read),
		cmocka_unit_test(test_parse_write_split_header),
		cmocka_unit_test(test_parse_status_is_last_in_byte),
		cmocka_unit_test(test_parse_flush_and_get_id),
		cmocka_unit_test(test_parse_discard_and_write_zeroes),
		cmocka_unit_test(test_parse_no_status_byte),
		cmocka_unit_test(test_parse_short_header),
		cmocka_unit_test(test_parse_ranges),
		cmocka_unit_test(test_parse_read_only),
		cmocka_unit_test(test_parse_wrong_direction),
		cmocka_unit_test(test_parse_unknown_type),
		cmocka_unit_test(test_parse_get_id_short),
		cmocka_unit_test(test_parse_segments),
		cmocka_unit_test(test_iov_slice),
		cmocka_unit_test_setup_teardown(test_io_config, setup_disk, teardown_disk),
		cmocka_unit_test_setup_teardown(test_io_write_read_back, setup_disk, teardown_disk),
		cmocka_unit_test_setup_teardown(test_io_many_in_flight, setup_disk, teardown_disk),
		cmocka_unit_test_setup_teardown(test_io_refusals, setup_disk, teardown_disk),
		cmocka_unit_test_setup_teardown(test_io_discard_write_zeroes, setup_disk, teardown_disk),
		cmocka_unit_test(test_io_write_zeroes_fallback),
		cmocka_unit_test_setup_teardown(test_io_get_id, setup_disk, teardown_disk),
		cmocka_unit_test_setup_teardown(test_io_read_only, setup_disk_ro, teardown_disk),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test_setup_teardown(test_open_locked, setup_disk, teardown_disk),
		cmocka_unit_test_setup_teardown(test_ring_requests, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_ring_backpressure, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_ring_reset, setup_guest, teardown_guest),
		cmocka_unit_test_setup_teardown(test_ring_no_status_needs_reset, setup_guest, teardown_guest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
