/* virtio-blk (virtio 1.2, 5.2): one device per --disk, one request queue,
 * I/O through io_uring so that no request ever blocks a vCPU or the worker.
 *
 * The request parser is pure (a popped chain in, a parsed request or a
 * status out) and the I/O path takes its queue as an argument, so both are
 * unit-tested without KVM or a transport. */
#ifndef KVMLITE_VIRTIO_BLK_H
#define KVMLITE_VIRTIO_BLK_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "virtio/virtio.h"

/* Feature bits (5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX      1
#define VIRTIO_BLK_F_SEG_MAX       2
#define VIRTIO_BLK_F_RO            5
#define VIRTIO_BLK_F_BLK_SIZE      6
#define VIRTIO_BLK_F_FLUSH         9
#define VIRTIO_BLK_F_DISCARD       13
#define VIRTIO_BLK_F_WRITE_ZEROES  14

/* Request types (5.2.6) */
#define VIRTIO_BLK_T_IN            0
#define VIRTIO_BLK_T_OUT           1
#define VIRTIO_BLK_T_FLUSH         4
#define VIRTIO_BLK_T_GET_ID        8
#define VIRTIO_BLK_T_DISCARD       11
#define VIRTIO_BLK_T_WRITE_ZEROES  13

/* Status byte */
#define VIRTIO_BLK_S_OK            0
#define VIRTIO_BLK_S_IOERR         1
#define VIRTIO_BLK_S_UNSUPP        2

#define VIRTIO_BLK_WZ_F_UNMAP      1   /* write zeroes: the device may unmap */

#define VIRTIO_BLK_SECTOR_SIZE     512
#define VIRTIO_BLK_HDR_SIZE        16  /* le32 type, le32 reserved, le64 sector */
#define VIRTIO_BLK_SEGMENT_SIZE    16  /* le64 sector, le32 num_sectors, le32 flags */
#define VIRTIO_BLK_ID_BYTES        20

/* struct virtio_blk_config, as far as the fields kvmlite fills (5.2.4). */
struct virtio_blk_config {
	uint64_t capacity;                 /* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads, sectors;
	} geometry;
	uint32_t blk_size;
	struct {
		uint8_t physical_block_exp, alignment_offset;
		uint16_t min_io_size;
		uint32_t opt_io_size;
	} topology;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

/* What a request may ask of this disk. */
struct blk_limits {
	uint64_t capacity;                 /* sectors */
	bool read_only;
	bool discard, write_zeroes;        /* offered and negotiated */
	uint32_t max_discard_sectors, max_discard_seg;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
};

/* A parsed request. status is VIRTIO_BLK_S_OK when the request is valid
 * and must be carried out; otherwise the status to report at once. */
struct blk_request {
	uint32_t type;
	uint8_t status;
	uint8_t *status_byte;              /* host pointer into guest RAM */
	uint64_t sector;
	/* IN, OUT, GET_ID: the data bytes, which start at data_offset in the
	 * in (IN, GET_ID) or out (OUT) buffers. */
	uint64_t data_offset, data_len;
	/* DISCARD, WRITE_ZEROES: the segment (kvmlite offers one per request) */
	uint64_t seg_sector;
	uint32_t seg_sectors, seg_flags;
};

/* Parses a popped chain. -EINVAL when it has no status byte (the driver
 * broke the rules: the device must be reset); 0 otherwise, with
 * out->status saying whether to go on. */
int blk_parse_request(const struct virtq_req *req, const struct blk_limits *lim, struct blk_request *out);


enum blk_stat {
	BLK_STAT_READS,
	BLK_STAT_WRITES,
	BLK_STAT_FLUSHES,
	BLK_STAT_DISCARDS,
	BLK_STAT_WRITE_ZEROES,
	BLK_STAT_GET_IDS,
	BLK_STAT_READ_BYTES,
	BLK_STAT_WRITE_BYTES,
	BLK_STAT_IO_ERRORS,                /* requests completed with IOERR */
	BLK_STAT_UNSUPPORTED,              /* requests completed with UNSUPP */
	BLK_STAT_MAX
};

struct virtio_blk {
	struct virtio_device vdev;
	char name[24];                     /* "virtio-blk0" */
	struct virtio_blk_config config;
	struct blk_limits limits;
	char id[VIRTIO_BLK_ID_BYTES];      /* GET_ID answer, NUL-padded */
	int fd;
	const char *path;

	struct io_uring ring;
	bool ring_ready;
	int completion_fd;                 /* eventfd registered with the ring */
	unsigned depth;                    /* ring entries = queue_max_size */
	unsigned in_flight;                /* requests submitted, not completed */
	unsigned unsubmitted;              /* SQEs prepared, not yet submitted */
	bool queue_full;                   /* stopped popping at depth */
	bool writethrough;                 /* FLUSH not negotiated: RWF_DSYNC writes */
	bool no_zero_range;                /* the file system refused ZERO_RANGE */
	bool no_punch_hole;                /* ... or PUNCH_HOLE */
	uint8_t *zeroes;                   /* for write zeroes the slow way */
	unsigned nr_logged_errors;

	struct virtq_req req;              /* scratch for virtq_pop (large) */
	uint64_t stats[BLK_STAT_MAX];      /* atomics: read by metrics threads */
};

/* Opens the disk and io_uring, fills blk->vdev (ops, features, config,
 * the completion eventfd's watch); does not add it to a VM. Logs what
 * failed. */
int virtio_blk_open(struct virtio_blk *blk, const struct disk_config *cfg, int index);
/* Waits for in-flight requests (dropping them), closes the ring and file. */
void virtio_blk_close(struct virtio_blk *blk);

/* Serves one popped request: completes it at once (status byte written,
 * pushed into vq unless NULL) and returns 0, or prepares its I/O and
 * returns 1; -EINVAL when the chain has no status byte (needs reset). */
int virtio_blk_submit(struct virtio_blk *blk, struct virtq *vq, const struct virtq_req *req);
/* Submits prepared I/O, then handles completions, pushing finished
 * requests into vq (NULL: the queue is gone, drop them). wait: until
 * nothing is in flight. Returns the number of requests completed. */
int virtio_blk_reap(struct virtio_blk *blk, struct virtq *vq, bool wait);

#endif
