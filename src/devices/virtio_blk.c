/* virtio-blk: --disk PATH[,readonly][,id=NAME], one PCI function each.
 *
 * The worker (virtio/pci.c) pops requests when the driver kicks, parses
 * them (blk_parse_request, pure) and hands their I/O to an io_uring of
 * queue-size entries; it never waits for the disk. The ring signals
 * completions on an eventfd that the worker also watches: the completion
 * handler writes the status byte, pushes the chain and interrupts.
 *
 * Choices:
 *  - Short reads and writes are continued from where they stopped; a read
 *    that reaches end of file (the image shrank under us) or a transfer
 *    that makes no progress completes with IOERR.
 *  - FLUSH is an fdatasync with IOSQE_IO_DRAIN: it starts only when every
 *    request submitted before it has completed. Without FLUSH negotiated,
 *    writes are RWF_DSYNC (write-through).
 *  - DISCARD punches a hole; a file system that cannot is answered OK
 *    (discarded data is undefined). WRITE_ZEROES uses ZERO_RANGE (or
 *    PUNCH_HOLE with the unmap flag); if refused it writes zeroes.
 *  - GET_ID answers the id= string, or "kvmlite-diskN" (N: the --disk
 *    index) so that the host path never leaks into the guest.
 *  - Reset and destroy wait for every request in flight, so no completion
 *    reaches guest memory afterwards. */
#include "virtio_blk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "util.h"
#include "vm.h"

#define BLK_QUEUE_SIZE       256
#define BLK_SEG_MAX          (BLK_QUEUE_SIZE - 2)   /* header and status take a descriptor each */
#define BLK_SIZE_MAX         (1u << 20)             /* advisory: any segment size works */
#define BLK_MAX_SEGMENTS     1                       /* discard / write-zeroes ranges per request */
#define BLK_MAX_RANGE        4194303u                /* sectors per discard / write-zeroes (2 GiB - 512) */
#define BLK_ZERO_CHUNK       (1u << 20)             /* bytes of zeroes written per writev */
#define BLK_MAX_LOGGED       8                       /* I/O errors logged per device */

_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio_blk_config layout (5.2.4)");
_Static_assert(__builtin_offsetof(struct virtio_blk_config, max_discard_sectors) == 36, "config layout");
_Static_assert(__builtin_offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56, "config layout");

static const char *const blk_stat_names[BLK_STAT_MAX] = {
	[BLK_STAT_READS] = "reads",
	[BLK_STAT_WRITES] = "writes",
	[BLK_STAT_FLUSHES] = "flushes",
	[BLK_STAT_DISCARDS] = "discards",
	[BLK_STAT_WRITE_ZEROES] = "write_zeroes",
	[BLK_STAT_GET_IDS] = "get_ids",
	[BLK_STAT_READ_BYTES] = "read_bytes",
	[BLK_STAT_WRITE_BYTES] = "write_bytes",
	[BLK_STAT_IO_ERRORS] = "io_errors",
	[BLK_STAT_UNSUPPORTED] = "unsupported",
};

/* --- Request parsing (pure) ------------------------------------------------ */

/* The last device-writable byte of the chain: where the status goes. */
static uint8_t *last_in_byte(const struct virtq_req *req)
{
	for (int i = req->nr_in - 1; i >= 0; i--)
		if (req->in[i].iov_len)
			return (uint8_t *)req->in[i].iov_base + req->in[i].iov_len - 1;
	return NULL;
}

static int parse_status(struct blk_request *out, uint8_t status)
{
	out->status = status;
	return 0;
}

/* Overflow-safe: [sector, sector + count) inside the disk. */
static bool range_ok(uint64_t sector, uint64_t count, uint64_t capacity)
{
	return sector <= capacity && count <= capacity - sector;
}

static int parse_rw(struct blk_request *out, const struct blk_limits *lim, uint64_t len, uint64_t offset)
{
	if (len % VIRTIO_BLK_SECTOR_SIZE || !range_ok(out->sector, len / VIRTIO_BLK_SECTOR_SIZE, lim->capacity))
		return parse_status(out, VIRTIO_BLK_S_IOERR);
	out->data_offset = offset;
	out->data_len = len;
	return parse_status(out, VIRTIO_BLK_S_OK);
}

/* DISCARD and WRITE_ZEROES: an array of 16-byte segments after the header. */
static int parse_segments(struct blk_request *out, const struct virtq_req *req, const struct blk_limits *lim,
			  uint64_t len)
{
	bool discard = out->type == VIRTIO_BLK_T_DISCARD;
	if (!(discard ? lim->discard : lim->write_zeroes))
		return parse_status(out, VIRTIO_BLK_S_UNSUPP);
	if (lim->read_only)
		return parse_status(out, VIRTIO_BLK_S_IOERR);
	if (len == 0 || len % VIRTIO_BLK_SEGMENT_SIZE || len / VIRTIO_BLK_SEGMENT_SIZE > BLK_MAX_SEGMENTS)
		return parse_status(out, VIRTIO_BLK_S_IOERR);

	uint8_t seg[VIRTIO_BLK_SEGMENT_SIZE];
	if (iov_to_buf(req->out, req->nr_out, VIRTIO_BLK_HDR_SIZE, seg, sizeof(seg)) != sizeof(seg))
		return parse_status(out, VIRTIO_BLK_S_IOERR);
	uint64_t sector;
	uint32_t count, flags;
	memcpy(&sector, seg, 8);
	memcpy(&count, seg + 8, 4);
	memcpy(&flags, seg + 12, 4);
	out->seg_sector = le64toh(sector);
	out->seg_sectors = le32toh(count);
	out->seg_flags = le32toh(flags);

	/* Discard has no flags; write zeroes only "unmap" (5.2.6.2). */
	if (out->seg_flags & ~(discard ? 0u : VIRTIO_BLK_WZ_F_UNMAP))
		return parse_status(out, VIRTIO_BLK_S_UNSUPP);
	uint32_t max = discard ? lim->max_discard_sectors : lim->max_write_zeroes_sectors;
	if (out->seg_sectors > max || !range_ok(out->seg_sector, out->seg_sectors, lim->capacity))
		return parse_status(out, VIRTIO_BLK_S_IOERR);
	return parse_status(out, VIRTIO_BLK_S_OK);
}

int blk_parse_request(const struct virtq_req *req, const struct blk_limits *lim, struct blk_request *out)
{
	*out = (struct blk_request){ .status = VIRTIO_BLK_S_IOERR };
	out->status_byte = last_in_byte(req);
	if (!out->status_byte)
		return -EINVAL;
	uint64_t in_data = req->in_len - 1;

	uint8_t hdr[VIRTIO_BLK_HDR_SIZE];
	if (req->out_len < sizeof(hdr) || iov_to_buf(req->out, req->nr_out, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return parse_status(out, VIRTIO_BLK_S_IOERR);
	uint32_t type;
	uint64_t sector;
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	out->type = le32toh(type);
	out->sector = le64toh(sector);
	uint64_t out_data = req->out_len - sizeof(hdr);

	/* Each type has data in one direction only: anything else is a
	 * malformed request. */
	switch (out->type) {
	case VIRTIO_BLK_T_IN:
		if (out_data)
			return parse_status(out, VIRTIO_BLK_S_IOERR);
		return parse_rw(out, lim, in_data, 0);
	case VIRTIO_BLK_T_OUT:
		if (in_data || lim->read_only)
			return parse_status(out, VIRTIO_BLK_S_IOERR);
		return parse_rw(out, lim, out_data, sizeof(hdr));
	case VIRTIO_BLK_T_FLUSH:
		if (out_data || in_data)
			return parse_status(out, VIRTIO_BLK_S_IOERR);
		return parse_status(out, VIRTIO_BLK_S_OK);
	case VIRTIO_BLK_T_GET_ID:
		if (out_data || in_data < VIRTIO_BLK_ID_BYTES)
			return parse_status(out, VIRTIO_BLK_S_IOERR);
		out->data_len = VIRTIO_BLK_ID_BYTES;
		return parse_status(out, VIRTIO_BLK_S_OK);
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (in_data)
			return parse_status(out, VIRTIO_BLK_S_IOERR);
		return parse_segments(out, req, lim, out_data);
	default:
		return parse_status(out, VIRTIO_BLK_S_UNSUPP);
	}
}

/* --- I/O --------------------------------------------------------------------- */

/* A request in flight: the ring's user_data. */
struct blk_io {
	uint16_t head;
	uint32_t type;
	uint8_t *status_byte;
	uint32_t used_len;     /* reported in the used ring: the whole in length */
	uint64_t offset;       /* file offset of the next submission */
	uint64_t remaining;    /* bytes left to transfer (or to zero, or to discard) */
	uint64_t total;
	bool unmap;            /* write zeroes with the unmap flag */
	bool zero_fill;        /* write zeroes done as writes of blk->zeroes */
	int nr_iov, first_iov; /* data iovecs not yet transferred: iov[first_iov..] */
	struct iovec iov[];
};

static void stat_add(struct virtio_blk *blk, enum blk_stat stat, uint64_t n)
{
	__atomic_fetch_add(&blk->stats[stat], n, __ATOMIC_RELAXED);
}

static void log_io_error(struct virtio_blk *blk, const struct blk_io *io, int err)
{
	if (blk->nr_logged_errors >= BLK_MAX_LOGGED)
		return;
	if (++blk->nr_logged_errors == BLK_MAX_LOGGED)
		log_warn("%s: further I/O errors are counted, not logged", blk->name);
	log_warn("%s: request type %u at byte %llu of %s: %s", blk->name, io->type, (unsigned long long)io->offset,
		 blk->path, err ? strerror(-err) : "no progress");
}

/* Counts the request, then (unless dropped) writes its status and hands
 * the chain back. */
static void blk_finish(struct virtio_blk *blk, struct virtq *vq, uint16_t head, uint8_t *status_byte,
		       uint32_t used_len, uint32_t type, uint64_t bytes, uint8_t status)
{
	if (status == VIRTIO_BLK_S_OK) {
		switch (type) {
		case VIRTIO_BLK_T_IN:
			stat_add(blk, BLK_STAT_READS, 1);
			stat_add(blk, BLK_STAT_READ_BYTES, bytes);
			break;
		case VIRTIO_BLK_T_OUT:
			stat_add(blk, BLK_STAT_WRITES, 1);
			stat_add(blk, BLK_STAT_WRITE_BYTES, bytes);
			break;
		case VIRTIO_BLK_T_FLUSH: stat_add(blk, BLK_STAT_FLUSHES, 1); break;
		case VIRTIO_BLK_T_DISCARD: stat_add(blk, BLK_STAT_DISCARDS, 1); break;
		case VIRTIO_BLK_T_WRITE_ZEROES: stat_add(blk, BLK_STAT_WRITE_ZEROES, 1); break;
		case VIRTIO_BLK_T_GET_ID: stat_add(blk, BLK_STAT_GET_IDS, 1); break;
		}
	} else {
		stat_add(blk, status == VIRTIO_BLK_S_UNSUPP ? BLK_STAT_UNSUPPORTED : BLK_STAT_IO_ERRORS, 1);
	}
	*status_byte = status;
	if (vq)
		virtq_push(vq, head, used_len);
}

static struct io_uring_sqe *blk_get_sqe(struct virtio_blk *blk)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&blk->ring);
	if (!sqe && io_uring_submit(&blk->ring) >= 0) {
		blk->unsubmitted = 0;
		sqe = io_uring_get_sqe(&blk->ring);
	}
	return sqe;
}

/* Prepares the next (or only) submission of io. */
static int blk_io_prep(struct virtio_blk *blk, struct blk_io *io)
{
	struct io_uring_sqe *sqe = blk_get_sqe(blk);
	if (!sqe)
		return -EBUSY;
	const struct iovec *iov = io->iov + io->first_iov;
	unsigned nr = (unsigned)(io->nr_iov - io->first_iov);
	switch (io->type) {
	case VIRTIO_BLK_T_IN:
		io_uring_prep_readv(sqe, blk->fd, iov, nr, io->offset);
		break;
	case VIRTIO_BLK_T_OUT:
		io_uring_prep_writev2(sqe, blk->fd, iov, nr, io->offset, blk->writethrough ? RWF_DSYNC : 0);
		break;
	case VIRTIO_BLK_T_FLUSH:
		io_uring_prep_fsync(sqe, blk->fd, IORING_FSYNC_DATASYNC);
		sqe->flags |= IOSQE_IO_DRAIN;
		break;
	case VIRTIO_BLK_T_DISCARD:
		io_uring_prep_fallocate(sqe, blk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)io->offset,
					(off_t)io->remaining);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (io->zero_fill) {
			io->iov[0] = (struct iovec){ blk->zeroes, MIN(io->remaining, BLK_ZERO_CHUNK) };
			io_uring_prep_writev2(sqe, blk->fd, io->iov, 1, io->offset, blk->writethrough ? RWF_DSYNC : 0);
		} else {
			int mode = io->unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE;
			io_uring_prep_fallocate(sqe, blk->fd, mode | FALLOC_FL_KEEP_SIZE, (off_t)io->offset,
						(off_t)io->remaining);
		}
		break;
	}
	io_uring_sqe_set_data(sqe, io);
	blk->unsubmitted++;
	return 0;
}

/* Write zeroes by hand: the file system has no fallocate mode for it. */
static int blk_start_zero_fill(struct virtio_blk *blk, struct blk_io *io)
{
	if (!blk->zeroes) {
		void *z = mmap(NULL, BLK_ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (z == MAP_FAILED)
			return -ENOMEM;
		blk->zeroes = z;
	}
	io->zero_fill = true;
	return blk_io_prep(blk, io);
}

/* Consumes n transferred bytes from io's iovecs. */
static void blk_io_advance(struct blk_io *io, uint64_t n)
{
	io->offset += n;
	io->remaining -= n;
	if (io->zero_fill)
		return;
	while (n && io->first_iov < io->nr_iov) {
		struct iovec *v = &io->iov[io->first_iov];
		uint64_t take = MIN(n, v->iov_len);
		v->iov_base = (uint8_t *)v->iov_base + take;
		v->iov_len -= take;
		n -= take;
		if (!v->iov_len)
			io->first_iov++;
	}
}

/* One completion of io with result res. Returns 1 when io went back to the
 * ring for more, else 0 with *status set. */
static int blk_io_step(struct virtio_blk *blk, struct blk_io *io, int res, uint8_t *status)
{
	*status = VIRTIO_BLK_S_OK;
	switch (io->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (io->zero_fill)
			break;
		if (res == -EOPNOTSUPP || res == -EINVAL) {
			if (io->unmap)
				blk->no_punch_hole = true;
			else
				blk->no_zero_range = true;
			if (blk_start_zero_fill(blk, io) == 0)
				return 1;
			*status = VIRTIO_BLK_S_IOERR;
			return 0;
		}
		goto whole;
	case VIRTIO_BLK_T_DISCARD:
		if (res == -EOPNOTSUPP) {
			blk->no_punch_hole = true;
			return 0;
		}
		goto whole;
	default:
	whole:
		if (res < 0) {
			log_io_error(blk, io, res);
			*status = VIRTIO_BLK_S_IOERR;
		}
		return 0;
	}

	/* Reads and writes: continue a short transfer. */
	if (res <= 0) {
		log_io_error(blk, io, res);
		*status = VIRTIO_BLK_S_IOERR;
		return 0;
	}
	blk_io_advance(io, MIN((uint64_t)res, io->remaining));
	if (!io->remaining)
		return 0;
	if (blk_io_prep(blk, io) == 0)
		return 1;
	*status = VIRTIO_BLK_S_IOERR;
	return 0;
}

static void blk_submit_pending(struct virtio_blk *blk)
{
	while (blk->unsubmitted) {
		int n = io_uring_submit(&blk->ring);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			/* The SQEs stay in the ring: the next call retries. */
			log_warn("%s: io_uring_submit: %s", blk->name, strerror(-n));
			return;
		}
		blk->unsubmitted = 0;
	}
}

/* Handles completions; drop: forget the requests (reset), touching no
 * guest memory. Returns the number of requests finished. */
static int blk_reap(struct virtio_blk *blk, struct virtq *vq, bool wait, bool drop)
{
	int done = 0;
	while (blk->in_flight) {
		blk_submit_pending(blk);
		struct io_uring_cqe *cqe;
		int err = wait ? io_uring_wait_cqe(&blk->ring, &cqe) : io_uring_peek_cqe(&blk->ring, &cqe);
		if (err == -EINTR)
			continue;
		if (err)
			break;
		struct blk_io *io = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&blk->ring, cqe);

		uint8_t status = VIRTIO_BLK_S_IOERR;
		if (!drop && blk_io_step(blk, io, res, &status))
			continue;
		blk->in_flight--;
		done++;
		if (!drop)
			blk_finish(blk, vq, io->head, io->status_byte, io->used_len, io->type, io->total, status);
		free(io);
	}
	return done;
}

int virtio_blk_reap(struct virtio_blk *blk, struct virtq *vq, bool wait)
{
	blk_submit_pending(blk);
	return blk_reap(blk, vq, wait, false);
}

int virtio_blk_submit(struct virtio_blk *blk, struct virtq *vq, const struct virtq_req *req)
{
	struct blk_request rq;
	int err = blk_parse_request(req, &blk->limits, &rq);
	if (err)
		return err;
	uint32_t used_len = (uint32_t)MIN(req->in_len, UINT32_MAX);
	bool immediate = rq.status != VIRTIO_BLK_S_OK;
	switch (rq.type) {
	case VIRTIO_BLK_T_GET_ID:
		if (!immediate)
			buf_to_iov(req->in, req->nr_in, 0, blk->id, VIRTIO_BLK_ID_BYTES);
		immediate = true;
		break;
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		immediate = immediate || rq.data_len == 0;
		break;
	case VIRTIO_BLK_T_FLUSH:
		immediate = immediate || blk->limits.read_only; /* nothing to flush */
		break;
	case VIRTIO_BLK_T_DISCARD:
		immediate = immediate || rq.seg_sectors == 0 || blk->no_punch_hole;
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		immediate = immediate || rq.seg_sectors == 0;
		break;
	}
	if (immediate) {
		blk_finish(blk, vq, req->head, rq.status_byte, used_len, rq.type, 0, rq.status);
		return 0;
	}

	int nr_src = rq.type == VIRTIO_BLK_T_IN ? req->nr_in : rq.type == VIRTIO_BLK_T_OUT ? req->nr_out : 0;
	struct blk_io *io = malloc(sizeof(*io) + (size_t)MAX(nr_src, 1) * sizeof(struct iovec));
	if (!io) {
		blk_finish(blk, vq, req->head, rq.status_byte, used_len, rq.type, 0, VIRTIO_BLK_S_IOERR);
		return 0;
	}
	*io = (struct blk_io){
		.head = req->head,
		.type = rq.type,
		.status_byte = rq.status_byte,
		.used_len = used_len,
		.offset = rq.sector * VIRTIO_BLK_SECTOR_SIZE,
		.remaining = rq.data_len,
		.total = rq.data_len,
	};
	if (rq.type == VIRTIO_BLK_T_IN || rq.type == VIRTIO_BLK_T_OUT) {
		io->nr_iov = iov_slice(rq.type == VIRTIO_BLK_T_IN ? req->in : req->out, nr_src, rq.data_offset,
				       rq.data_len, io->iov, nr_src);
	} else if (rq.type == VIRTIO_BLK_T_DISCARD || rq.type == VIRTIO_BLK_T_WRITE_ZEROES) {
		io->offset = rq.seg_sector * VIRTIO_BLK_SECTOR_SIZE;
		io->remaining = io->total = (uint64_t)rq.seg_sectors * VIRTIO_BLK_SECTOR_SIZE;
		io->unmap = rq.seg_flags & VIRTIO_BLK_WZ_F_UNMAP;
	}

	err = io->nr_iov < 0 ? -EINVAL : 0;
	if (!err && rq.type == VIRTIO_BLK_T_WRITE_ZEROES && (io->unmap ? blk->no_punch_hole : blk->no_zero_range))
		err = blk_start_zero_fill(blk, io);
	else if (!err)
		err = blk_io_prep(blk, io);
	if (err) {
		blk_finish(blk, vq, req->head, rq.status_byte, used_len, rq.type, 0, VIRTIO_BLK_S_IOERR);
		free(io);
		return 0;
	}
	blk->in_flight++;
	return 1;
}

/* --- Virtio device ---------------------------------------------------------- */

/* Takes requests until the ring is empty or depth requests are in flight
 * (completions resume it). */
static void blk_process_queue(struct virtio_blk *blk, struct virtq *vq)
{
	for (;;) {
		virtq_set_notify(vq, false);
		int err = 0;
		while (blk->in_flight < blk->depth && (err = virtq_pop(vq, &blk->req)) == 0) {
			if (virtio_blk_submit(blk, vq, &blk->req) < 0) {
				virtio_needs_reset(&blk->vdev, "virtio-blk: request without a status byte");
				return;
			}
		}
		if (err == -EINVAL)
			return; /* a malformed chain: the transport reports the queue's error */
		blk->queue_full = blk->in_flight >= blk->depth;
		virtq_set_notify(vq, true);
		if (blk->queue_full || !virtq_has_work(vq))
			return;
	}
}

static void blk_queue_notify(struct virtio_device *dev, int q)
{
	struct virtio_blk *blk = dev->priv;
	struct virtq *vq = virtio_queue(dev, 0);
	if (q != 0 || !vq)
		return;
	uint16_t used_before = vq->used_idx;
	blk_process_queue(blk, vq);
	/* Submit the batch; requests served from the page cache may be done
	 * already. */
	virtio_blk_reap(blk, vq, false);
	if (vq->used_idx != used_before)
		virtio_queue_notify(dev, 0);
}

/* The ring's eventfd: completions are waiting. */
static void blk_completions(struct virtio_device *dev, int fd, uint32_t events)
{
	struct virtio_blk *blk = dev->priv;
	eventfd_t count;
	(void)eventfd_read(fd, &count); /* before reaping, so no completion goes unseen */
	struct virtq *vq = virtio_queue(dev, 0);
	if (!vq) {
		/* Needs reset: the driver will not look at these any more. */
		blk_reap(blk, NULL, false, true);
		return;
	}
	uint16_t used_before = vq->used_idx;
	virtio_blk_reap(blk, vq, false);
	if (blk->queue_full && blk->in_flight < blk->depth) {
		blk_process_queue(blk, vq);
		virtio_blk_reap(blk, vq, false);
	}
	if (vq->used_idx != used_before)
		virtio_queue_notify(dev, 0);
}

static int blk_activate(struct virtio_device *dev)
{
	struct virtio_blk *blk = dev->priv;
	blk->writethrough = !virtio_has_feature(dev, VIRTIO_BLK_F_FLUSH);
	blk->limits.discard = virtio_has_feature(dev, VIRTIO_BLK_F_DISCARD);
	blk->limits.write_zeroes = virtio_has_feature(dev, VIRTIO_BLK_F_WRITE_ZEROES);
	blk->queue_full = false;
	return 0;
}

static void blk_reset(struct virtio_device *dev)
{
	struct virtio_blk *blk = dev->priv;
	blk_submit_pending(blk);
	blk_reap(blk, NULL, true, true);
	blk->queue_full = false;
}

static void blk_destroy(struct virtio_device *dev)
{
	struct virtio_blk *blk = dev->priv;
	virtio_blk_close(blk);
	free(blk);
}

static const struct virtio_device_ops blk_ops = {
	.queue_notify = blk_queue_notify,
	.activate = blk_activate,
	.reset = blk_reset,
	.destroy = blk_destroy,
};

/* Size in bytes of a regular file or block device. */
static int disk_size(int fd, const char *path, uint64_t *size, uint32_t *io_block)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	*io_block = (uint32_t)st.st_blksize;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	log_error("--disk %s: not a regular file or block device", path);
	return -EINVAL;
}

static int blk_open_file(struct virtio_blk *blk, const struct disk_config *cfg)
{
	bool ro = cfg->read_only;
	blk->fd = open(cfg->path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (blk->fd < 0) {
		int err = -errno;
		bool perm = err == -EACCES || err == -EROFS || err == -EPERM;
		log_error("--disk %s: cannot open it %s: %s%s", cfg->path, ro ? "for reading" : "read-write",
			  strerror(-err), perm && !ro ? " (add ,readonly to attach it read-only)" : "");
		return err;
	}
	/* Two VMs writing one image corrupt it: a shared lock for readers, an
	 * exclusive one for a writer (file systems without locks are let be). */
	if (flock(blk->fd, (ro ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		log_error("--disk %s: in use by another process (locked)", cfg->path);
		return -EBUSY;
	}
	uint64_t size = 0;
	uint32_t io_block = 0;
	int err = disk_size(blk->fd, cfg->path, &size, &io_block);
	if (err) {
		if (err != -EINVAL)
			log_error("--disk %s: cannot get its size: %s", cfg->path, strerror(-err));
		return err;
	}
	if (size % VIRTIO_BLK_SECTOR_SIZE)
		log_warn("--disk %s: size %llu is not a multiple of 512; the last %llu bytes are not visible",
			 cfg->path, (unsigned long long)size, (unsigned long long)(size % VIRTIO_BLK_SECTOR_SIZE));
	blk->limits.capacity = size / VIRTIO_BLK_SECTOR_SIZE;
	blk->limits.read_only = ro;
	blk->limits.max_discard_sectors = blk->limits.max_write_zeroes_sectors = BLK_MAX_RANGE;

	uint32_t align = io_block >= VIRTIO_BLK_SECTOR_SIZE ? io_block / VIRTIO_BLK_SECTOR_SIZE : 1;
	blk->config = (struct virtio_blk_config){
		.capacity = htole64(blk->limits.capacity),
		.size_max = htole32(BLK_SIZE_MAX),
		.seg_max = htole32(BLK_SEG_MAX),
		.blk_size = htole32(VIRTIO_BLK_SECTOR_SIZE),
		.num_queues = htole16(1),
		.max_discard_sectors = htole32(BLK_MAX_RANGE),
		.max_discard_seg = htole32(BLK_MAX_SEGMENTS),
		.discard_sector_alignment = htole32(MIN(align, 2048u)),
		.max_write_zeroes_sectors = htole32(BLK_MAX_RANGE),
		.max_write_zeroes_seg = htole32(BLK_MAX_SEGMENTS),
		.write_zeroes_may_unmap = 1,
	};
	return 0;
}

static int blk_open_ring(struct virtio_blk *blk)
{
	blk->depth = BLK_QUEUE_SIZE;
	int err = io_uring_queue_init(blk->depth, &blk->ring, 0);
	if (err) {
		log_error("%s: io_uring_queue_init: %s", blk->name, strerror(-err));
		return err;
	}
	blk->ring_ready = true;
	blk->completion_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (blk->completion_fd < 0)
		return -errno;
	err = io_uring_register_eventfd(&blk->ring, blk->completion_fd);
	if (err)
		log_error("%s: io_uring_register_eventfd: %s", blk->name, strerror(-err));
	return err;
}

int virtio_blk_open(struct virtio_blk *blk, const struct disk_config *cfg, int index)
{
	blk->fd = blk->completion_fd = -1;
	blk->path = cfg->path;
	snprintf(blk->name, sizeof(blk->name), "virtio-blk%d", index);
	if (cfg->id && strlen(cfg->id) > VIRTIO_BLK_ID_BYTES)
		log_warn("--disk %s: id=%s is longer than %d bytes; the guest sees its first %d", cfg->path, cfg->id,
			 VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_ID_BYTES);
	/* NUL-padded; a 20-byte id has no terminator (5.2.6). */
	char fallback[VIRTIO_BLK_ID_BYTES + 1];
	snprintf(fallback, sizeof(fallback), "kvmlite-disk%d", index);
	const char *id = cfg->id ? cfg->id : fallback;
	memset(blk->id, 0, sizeof(blk->id));
	memcpy(blk->id, id, strnlen(id, sizeof(blk->id)));

	int err = blk_open_file(blk, cfg);
	if (!err)
		err = blk_open_ring(blk);
	if (err)
		return err;

	uint64_t features = 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
			    1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;
	if (cfg->read_only)
		features |= 1ull << VIRTIO_BLK_F_RO;
	else
		features |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	blk->vdev = (struct virtio_device){
		.name = blk->name,
		.device_id = VIRTIO_ID_BLOCK,
		.features = features,
		.nr_queues = 1,
		.queue_max_size = BLK_QUEUE_SIZE,
		.config = (uint8_t *)&blk->config,
		.config_size = sizeof(blk->config),
		.ops = &blk_ops,
		.priv = blk,
	};
	/* Until activate says otherwise, as if every offered feature were
	 * negotiated (the unit tests drive the device without a driver). */
	blk->limits.discard = blk->limits.write_zeroes = !cfg->read_only;
	return virtio_watch_fd(&blk->vdev, blk->completion_fd, EPOLLIN, blk_completions);
}

void virtio_blk_close(struct virtio_blk *blk)
{
	if (blk->ring_ready) {
		blk_submit_pending(blk);
		blk_reap(blk, NULL, true, true);
		io_uring_queue_exit(&blk->ring);
		blk->ring_ready = false;
	}
	if (blk->completion_fd >= 0)
		close(blk->completion_fd);
	if (blk->fd >= 0)
		close(blk->fd);
	blk->completion_fd = blk->fd = -1;
	if (blk->zeroes)
		munmap(blk->zeroes, BLK_ZERO_CHUNK);
	blk->zeroes = NULL;
}

/* vm_pause() promises devices that stopped touching guest memory: the
 * transport's hook (registered after this one, so run before it) has
 * stopped the worker's callbacks; here the requests in flight finish. */
static void blk_pause(void *opaque)
{
	struct virtio_blk *blk = opaque;
	pthread_mutex_lock(&blk->vdev.lock);
	struct virtq *vq = virtio_queue(&blk->vdev, 0);
	blk_submit_pending(blk);
	if (blk_reap(blk, vq, true, !vq) && vq)
		virtio_queue_notify(&blk->vdev, 0);
	pthread_mutex_unlock(&blk->vdev.lock);
}

static void blk_resume(void *opaque)
{
}

static int virtio_blk_init(struct vm *vm)
{
	for (int i = 0; i < vm->cfg->nr_disks; i++) {
		struct virtio_blk *blk = calloc(1, sizeof(*blk));
		if (!blk)
			return -ENOMEM;
		int err = virtio_blk_open(blk, &vm->cfg->disks[i], i);
		if (!err)
			err = vm_on_pause(vm, blk_pause, blk_resume, blk);
		if (!err)
			err = virtio_device_add(vm, &blk->vdev);
		if (err) {
			/* Once the transport is set up (added), vm_destroy()
			 * ends the device through ops->destroy. */
			if (!blk->vdev.added) {
				virtio_blk_close(blk);
				free(blk);
			}
			return err;
		}
		err = stats_add(&vm->stats, blk->name, BLK_STAT_MAX, blk_stat_names, stats_read_array, blk->stats);
		if (err)
			return err;
	}
	return 0;
}

DEVICE_REGISTER(virtio_blk, virtio_blk_init);
