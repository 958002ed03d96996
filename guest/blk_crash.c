/* test=blk-crash: the guest side of tests/guest/blk-crash. Writes 4 KiB
 * block seq = 1, 2, 3, ... of the first virtio-blk disk, each filled with
 * a pattern only that seq produces, with up to BC_WINDOW writes in flight,
 * and flushes every BC_FLUSH_EVERY writes. When a flush completes with OK
 * it prints "blk-crash: flushed N": every block 1..N had completed before
 * the flush was submitted, so the host must find all of them after it
 * kills kvmlite, however the kill lands. Runs until killed; a full disk
 * or any device error is a failure. */
#define VTEST_CODE_BASE      100  /* exit codes of this mode: 100 + n */
#include "virtio.h"

#define VIRTIO_BLK_F_FLUSH   9
#define BLK_T_OUT            1
#define BLK_T_FLUSH          4
#define BLK_S_OK             0
#define SECTOR               512
#define BC_BLOCK             4096
#define BC_SECTORS_PER_BLOCK (BC_BLOCK / SECTOR)
#define BC_WINDOW            16   /* writes in flight at most */
#define BC_FLUSH_EVERY       8

/* tests/guest/blk-crash computes the same. */
static inline uint64_t bc_word(uint64_t seq, uint64_t i)
{
	return seq ^ (i * 0x9e3779b97f4a7c15ull);
}

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* One write in flight per slot; slot = seq % BC_WINDOW, free again once
 * seq - BC_WINDOW has completed (the window below guarantees it). */
struct bc_slot {
	struct blk_hdr hdr;
	uint64_t seq;
	uint16_t head;
	bool busy;
	uint8_t status;
};

static uint8_t bc_data[BC_WINDOW][BC_BLOCK] __attribute__((aligned(4096)));
static struct bc_slot bc_slots[BC_WINDOW] __attribute__((aligned(16)));
static struct blk_hdr bc_flush_hdr __attribute__((aligned(16)));
static uint8_t bc_flush_status;

static __attribute__((noreturn)) void bc_fail(int n, const char *what, const char *why)
{
	vtest_fail(VTEST_CODE_BASE + n, what, why);
}

static void bc_add_write(struct vdev *d, uint64_t seq)
{
	struct bc_slot *s = &bc_slots[seq % BC_WINDOW];
	uint64_t *w = (uint64_t *)bc_data[seq % BC_WINDOW];
	struct vbuf b[3];

	for (uint64_t i = 0; i < BC_BLOCK / 8; i++)
		w[i] = bc_word(seq, i);
	s->hdr = (struct blk_hdr){ .type = BLK_T_OUT, .sector = seq * BC_SECTORS_PER_BLOCK };
	s->status = 0xee;
	s->seq = seq;
	s->busy = true;
	b[0] = (struct vbuf){ gpa(&s->hdr), sizeof(s->hdr), false };
	b[1] = (struct vbuf){ gpa(w), BC_BLOCK, false };
	b[2] = (struct vbuf){ gpa(&s->status), 1, true };
	s->head = vq_add(d, b, 3, false);
}

static uint16_t bc_add_flush(struct vdev *d)
{
	struct vbuf b[2];

	bc_flush_hdr = (struct blk_hdr){ .type = BLK_T_FLUSH };
	bc_flush_status = 0xee;
	b[0] = (struct vbuf){ gpa(&bc_flush_hdr), sizeof(bc_flush_hdr), false };
	b[1] = (struct vbuf){ gpa(&bc_flush_status), 1, true };
	return vq_add(d, b, 2, false);
}

void test_blk_crash(void)
{
	struct vdev d;
	uint64_t capacity, last_block;
	uint64_t next_seq = 1;     /* the next write to submit */
	uint64_t done_upto = 0;    /* writes 1..done_upto have all completed */
	uint64_t flushed = 0;      /* the N of the last "flushed N" line */
	uint64_t flush_covers = 0; /* what the flush in flight covers */
	bool flush_busy = false;
	uint16_t flush_head = 0;

	serial_puts("kvmlite guest: test=blk-crash\n");
	vtest_find_device(VIRTIO_ID_BLOCK, &d);
	if (!(d.offered & FEATURE(VIRTIO_BLK_F_FLUSH)))
		bc_fail(1, "blk-crash", "the disk does not offer FLUSH");
	MUST("blk-crash: virtio-blk init",
	     vdev_init(&d, FEATURE(VIRTIO_F_VERSION_1) | FEATURE(VIRTIO_BLK_F_FLUSH), 0));
	/* Descriptors are handed out in ring order, never tracked: everything
	 * from the oldest request in flight on (at most 2 windows of writes,
	 * 3 descriptors each, and a flush of 2 per BC_FLUSH_EVERY writes)
	 * must fit in the ring so that none is reused while in flight. */
	if (d.q.size < 2 * (3 * BC_WINDOW + 2 * (BC_WINDOW / BC_FLUSH_EVERY + 1)))
		bc_fail(2, "blk-crash", "queue too small for the write window");
	capacity = vdev_cfg_read64(&d, 0);
	last_block = capacity / BC_SECTORS_PER_BLOCK - 1;
	if (last_block < 2 * BC_WINDOW)
		bc_fail(3, "blk-crash", "disk too small");
	serial_puts("blk-crash: capacity ");
	serial_put_dec(capacity);
	serial_puts(" sectors, writing 4 KiB blocks 1..");
	serial_put_dec(last_block);
	serial_puts("\n");

	for (;;) {
		uint32_t id = 0, len = 0;
		bool added = false;
		int rc;

		/* The window; and a flush in flight (which may complete after
		 * later writes) holds writes to 2 windows past what it covers. */
		while (next_seq <= last_block && next_seq - done_upto <= BC_WINDOW &&
		       (!flush_busy || next_seq - flush_covers <= 2 * BC_WINDOW)) {
			bc_add_write(&d, next_seq++);
			added = true;
		}
		/* A flush covers only writes completed before it is submitted. */
		if (!flush_busy && done_upto >= flushed + BC_FLUSH_EVERY) {
			flush_head = bc_add_flush(&d);
			flush_covers = done_upto;
			flush_busy = true;
			added = true;
		}
		if (added)
			vq_kick(&d, false);
		if (!flush_busy && done_upto == last_block)
			bc_fail(4, "blk-crash", "disk full: reached the last block without being killed");

		rc = vq_wait(&d, &id, &len);
		if (rc != VQ_OK)
			bc_fail(5, "blk-crash: waiting for a completion", vq_strerror(rc));
		if (flush_busy && id == flush_head) {
			if (bc_flush_status != BLK_S_OK)
				bc_fail(6, "blk-crash", "flush status not OK");
			flush_busy = false;
			flushed = flush_covers;
			serial_puts("blk-crash: flushed ");
			serial_put_dec(flushed);
			serial_putc('\n');
			continue;
		}
		for (int i = 0;; i++) {
			struct bc_slot *s = &bc_slots[i];

			if (i == BC_WINDOW)
				bc_fail(7, "blk-crash", "used id is none of the requests in flight");
			if (!s->busy || s->head != id)
				continue;
			if (s->status != BLK_S_OK)
				bc_fail(8, "blk-crash", "write status not OK");
			if (len != 1)
				bc_fail(9, "blk-crash", "write used len is not 1 (the status byte)");
			s->busy = false;
			break;
		}
		while (done_upto + 1 < next_seq && !bc_slots[(done_upto + 1) % BC_WINDOW].busy)
			done_upto++;
	}
}
