/* Split virtqueues against rings built by hand in a fake guest RAM: a
 * malloc'd buffer as the one region of a struct guest_memory. The driver's
 * side (descriptors, avail ring, used_event) is written here byte by byte,
 * the way a guest would. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "virtio/queue.h"

#define RAM_GPA   0x100000ULL
#define RAM_SIZE  0x100000ULL
#define QSZ       8
#define DESC_GPA  (RAM_GPA + 0x0000)
#define AVAIL_GPA (RAM_GPA + 0x1000)
#define USED_GPA  (RAM_GPA + 0x2000)
#define TABLE_GPA (RAM_GPA + 0x4000)   /* indirect tables */
#define BUF_GPA   (RAM_GPA + 0x10000)  /* data buffers */

struct ring {
	uint8_t *ram;
	struct guest_memory mem;
	struct virtq q;
	uint16_t avail_idx;        /* the driver's shadow */
	struct virtq_req req;
};

static uint8_t *hva(struct ring *r, uint64_t gpa)
{
	assert_true(gpa >= RAM_GPA && gpa < RAM_GPA + RAM_SIZE);
	return r->ram + (gpa - RAM_GPA);
}

static void put16(struct ring *r, uint64_t gpa, uint16_t v)
{
	memcpy(hva(r, gpa), &v, 2);
}

static uint16_t get16(struct ring *r, uint64_t gpa)
{
	uint16_t v;
	memcpy(&v, hva(r, gpa), 2);
	return v;
}

static uint32_t get32(struct ring *r, uint64_t gpa)
{
	uint32_t v;
	memcpy(&v, hva(r, gpa), 4);
	return v;
}

static void set_desc_at(struct ring *r, uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
			uint16_t next)
{
	uint8_t *d = hva(r, table + 16ULL * i);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void set_desc(struct ring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	set_desc_at(r, DESC_GPA, i, addr, len, flags, next);
}

/* Makes head available and publishes the new avail index. */
static void make_avail(struct ring *r, uint16_t head)
{
	put16(r, AVAIL_GPA + 4 + 2ULL * (r->avail_idx % r->q.size), head);
	r->avail_idx++;
	put16(r, AVAIL_GPA + 2, r->avail_idx);
}

static uint16_t used_idx(struct ring *r)
{
	return get16(r, USED_GPA + 2);
}

static void set_used_event(struct ring *r, uint16_t v)
{
	put16(r, AVAIL_GPA + 4 + 2ULL * r->q.size, v);
}

static uint16_t avail_event(struct ring *r)
{
	return get16(r, USED_GPA + 4 + 8ULL * r->q.size);
}

static int setup(void **state)
{
	struct ring *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	r->ram = aligned_alloc(4096, RAM_SIZE);
	assert_non_null(r->ram);
	memset(r->ram, 0, RAM_SIZE);
	r->mem.regions[0] = (struct guest_region){ RAM_GPA, RAM_SIZE, r->ram };
	r->mem.nr_regions = 1;
	r->q.size = QSZ;
	r->q.desc_gpa = DESC_GPA;
	r->q.avail_gpa = AVAIL_GPA;
	r->q.used_gpa = USED_GPA;
	virtq_reset(&r->q);
	assert_int_equal(virtq_activate(&r->q, &r->mem), 0);
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct ring *r = *state;
	free(r->ram);
	free(r);
	return 0;
}

/* Pops and expects the queue to be broken by it. */
static void expect_broken(struct ring *r)
{
	assert_int_equal(virtq_pop(&r->q, &r->req), -EINVAL);
	assert_true(r->q.broken);
	assert_non_null(r->q.error);
	/* Stays broken: no more work is taken until reset. */
	assert_int_equal(virtq_pop(&r->q, &r->req), -EINVAL);
	assert_false(virtq_has_work(&r->q));
}

/* ---- Good chains ---- */

static void test_simple_chain(void **state)
{
	struct ring *r = *state;
	assert_int_equal(virtq_pop(&r->q, &r->req), -EAGAIN);
	assert_false(virtq_has_work(&r->q));

	set_desc(r, 3, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 5);
	set_desc(r, 5, BUF_GPA + 0x100, 24, VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, 1, BUF_GPA + 0x200, 512, VIRTQ_DESC_F_WRITE, 0);
	make_avail(r, 3);
	assert_true(virtq_has_work(&r->q));
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(r->req.head, 3);
	assert_int_equal(r->req.nr_out, 2);
	assert_int_equal(r->req.nr_in, 1);
	assert_int_equal(r->req.out_len, 40);
	assert_int_equal(r->req.in_len, 512);
	assert_ptr_equal(r->req.out[0].iov_base, hva(r, BUF_GPA));
	assert_int_equal(r->req.out[0].iov_len, 16);
	assert_ptr_equal(r->req.out[1].iov_base, hva(r, BUF_GPA + 0x100));
	assert_ptr_equal(r->req.in[0].iov_base, hva(r, BUF_GPA + 0x200));
	assert_int_equal(virtq_pop(&r->q, &r->req), -EAGAIN);

	virtq_push(&r->q, 3, 100);
	assert_int_equal(used_idx(r), 1);
	assert_int_equal(get32(r, USED_GPA + 4), 3);
	assert_int_equal(get32(r, USED_GPA + 8), 100);
	/* A head the device never had is not pushed. */
	virtq_push(&r->q, QSZ, 1);
	assert_int_equal(used_idx(r), 1);
}

/* A batch lands in the used ring in order and moves the used index once;
 * heads the queue cannot have are skipped. */
static void test_push_batch(void **state)
{
	struct ring *r = *state;
	const struct virtq_used batch[] = { { 2, 10 }, { QSZ + 1, 99 }, { 6, 20 }, { 4, 30 } };
	virtq_push_batch(&r->q, batch, 4);
	assert_int_equal(used_idx(r), 3);
	assert_int_equal(r->q.used_idx, 3);
	assert_int_equal(get32(r, USED_GPA + 4), 2);
	assert_int_equal(get32(r, USED_GPA + 8), 10);
	assert_int_equal(get32(r, USED_GPA + 12), 6);
	assert_int_equal(get32(r, USED_GPA + 16), 20);
	assert_int_equal(get32(r, USED_GPA + 20), 4);
	assert_int_equal(get32(r, USED_GPA + 24), 30);
	virtq_push_batch(&r->q, batch, 0);
	assert_int_equal(used_idx(r), 3);
}

/* The chain may use every descriptor once; zero-length buffers add no
 * iovec and their address is not looked at. */
static void test_full_length_chain_and_empty_buffers(void **state)
{
	struct ring *r = *state;
	for (uint16_t i = 0; i < QSZ; i++) {
		uint16_t flags = (i + 1 < QSZ ? VIRTQ_DESC_F_NEXT : 0) | (i >= 4 ? VIRTQ_DESC_F_WRITE : 0);
		uint64_t addr = i == 2 ? 0xdead00000000ULL : BUF_GPA + 0x100ULL * i;
		set_desc(r, i, addr, i == 2 ? 0 : 8, flags, (uint16_t)(i + 1));
	}
	make_avail(r, 0);
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(r->req.nr_out, 3);
	assert_int_equal(r->req.nr_in, 4);
	assert_int_equal(r->req.out_len, 24);
	assert_int_equal(r->req.in_len, 32);
}

static void test_indirect_table(void **state)
{
	struct ring *r = *state;
	r->q.indirect = true;
	set_desc_at(r, TABLE_GPA, 0, BUF_GPA, 10, VIRTQ_DESC_F_NEXT, 2);
	set_desc_at(r, TABLE_GPA, 2, BUF_GPA + 0x100, 20, VIRTQ_DESC_F_NEXT, 1);
	set_desc_at(r, TABLE_GPA, 1, BUF_GPA + 0x200, 30, VIRTQ_DESC_F_WRITE, 0);
	/* The WRITE flag on the descriptor holding the table is ignored. */
	set_desc(r, 6, TABLE_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	make_avail(r, 6);
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(r->req.head, 6);
	assert_int_equal(r->req.nr_out, 2);
	assert_int_equal(r->req.nr_in, 1);
	assert_int_equal(r->req.out_len, 30);
	assert_int_equal(r->req.in_len, 30);
	assert_ptr_equal(r->req.in[0].iov_base, hva(r, BUF_GPA + 0x200));

	/* Direct descriptors first, then the table at the end of the chain. */
	set_desc(r, 0, BUF_GPA + 0x300, 4, VIRTQ_DESC_F_NEXT, 7);
	set_desc(r, 7, TABLE_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(r, 0);
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(r->req.nr_out, 3);
	assert_int_equal(r->req.out_len, 34);
}

static void test_iov_copies(void **state)
{
	(void)state;
	uint8_t a[3] = { 1, 2, 3 }, b[2] = { 4, 5 }, c[4] = { 6, 7, 8, 9 };
	struct iovec iov[3] = { { a, 3 }, { b, 2 }, { c, 4 } };
	uint8_t out[16];
	memset(out, 0, sizeof(out));
	assert_int_equal(iov_to_buf(iov, 3, 2, out, 5), 5);
	assert_memory_equal(out, ((uint8_t[]){ 3, 4, 5, 6, 7 }), 5);
	/* Bounded by the iovecs. */
	assert_int_equal(iov_to_buf(iov, 3, 7, out, 16), 2);
	assert_int_equal(iov_to_buf(iov, 3, 9, out, 16), 0);
	assert_int_equal(iov_to_buf(iov, 3, 100, out, 16), 0);

	uint8_t in[6] = { 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5 };
	assert_int_equal(buf_to_iov(iov, 3, 1, in, 6), 6);
	assert_memory_equal(a, ((uint8_t[]){ 1, 0xa0, 0xa1 }), 3);
	assert_memory_equal(b, ((uint8_t[]){ 0xa2, 0xa3 }), 2);
	assert_memory_equal(c, ((uint8_t[]){ 0xa4, 0xa5, 8, 9 }), 4);
	assert_int_equal(buf_to_iov(iov, 3, 8, in, 6), 1);
	assert_int_equal(c[3], 0xa0);
}

/* ---- Notifications ---- */

static void test_event_idx_interrupts(void **state)
{
	struct ring *r = *state;
	r->q.event_idx = true;
	set_desc(r, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);

	/* First push: always signalled (nothing signalled before). */
	virtq_push(&r->q, 0, 8);
	assert_true(virtq_should_notify(&r->q));
	/* Nothing new: no interrupt. */
	assert_false(virtq_should_notify(&r->q));
	/* The driver wants one after entry 1: used index 1 -> 2 crosses it. */
	set_used_event(r, 1);
	virtq_push(&r->q, 0, 8);
	assert_true(virtq_should_notify(&r->q));
	/* It did not move used_event: 2 -> 3 does not cross it. */
	virtq_push(&r->q, 0, 8);
	assert_false(virtq_should_notify(&r->q));
	/* used_event 5; three pushes take used from 3 to 6, crossing it. */
	set_used_event(r, 5);
	virtq_push(&r->q, 0, 8);
	virtq_push(&r->q, 0, 8);
	virtq_push(&r->q, 0, 8);
	assert_true(virtq_should_notify(&r->q));
	/* NO_INTERRUPT is ignored with EVENT_IDX. */
	put16(r, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	set_used_event(r, 6);
	virtq_push(&r->q, 0, 8);
	assert_true(virtq_should_notify(&r->q));
}

static void test_event_idx_avail_event(void **state)
{
	struct ring *r = *state;
	r->q.event_idx = true;
	set_desc(r, 0, BUF_GPA, 8, 0, 0);
	set_desc(r, 1, BUF_GPA, 8, 0, 0);
	make_avail(r, 0);
	make_avail(r, 1);
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	/* Going idle: asks for a kick at the next entry. */
	assert_int_equal(virtq_pop(&r->q, &r->req), -EAGAIN);
	assert_int_equal(avail_event(r), 2);

	/* Suppressed while busy: the empty pop leaves avail_event alone... */
	virtq_set_notify(&r->q, false);
	make_avail(r, 0);
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(virtq_pop(&r->q, &r->req), -EAGAIN);
	assert_int_equal(avail_event(r), 2);
	/* ...and enabling publishes where the device is. */
	virtq_set_notify(&r->q, true);
	assert_int_equal(avail_event(r), 3);
	assert_false(virtq_has_work(&r->q));
	make_avail(r, 1);
	assert_true(virtq_has_work(&r->q));
}

static void test_no_interrupt_and_no_notify(void **state)
{
	struct ring *r = *state;
	virtq_push(&r->q, 0, 0);
	assert_true(virtq_should_notify(&r->q));
	put16(r, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push(&r->q, 0, 0);
	assert_false(virtq_should_notify(&r->q));
	put16(r, AVAIL_GPA, 0);
	/* Nothing new since the last decision: no interrupt. */
	assert_false(virtq_should_notify(&r->q));
	virtq_push(&r->q, 0, 0);
	assert_true(virtq_should_notify(&r->q));

	virtq_set_notify(&r->q, false);
	assert_int_equal(get16(r, USED_GPA), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notify(&r->q, true);
	assert_int_equal(get16(r, USED_GPA), 0);
}

/* 16-bit indices run over 65535 -> 0 on both rings. */
static void test_index_wraparound(void **state)
{
	struct ring *r = *state;
	r->q.event_idx = true;
	r->q.last_avail = r->q.used_idx = 0xfffe;
	r->q.signalled_used = 0xfffe;
	r->q.signalled_valid = true;
	r->avail_idx = 0xfffe;
	put16(r, AVAIL_GPA + 2, r->avail_idx);
	for (uint16_t i = 0; i < 4; i++) {
		set_desc(r, i, BUF_GPA + 0x10ULL * i, 4, VIRTQ_DESC_F_WRITE, 0);
		make_avail(r, i);
	}
	assert_int_equal(get16(r, AVAIL_GPA + 2), 2);
	for (uint16_t i = 0; i < 4; i++) {
		assert_int_equal(virtq_pop(&r->q, &r->req), 0);
		assert_int_equal(r->req.head, i);
		virtq_push(&r->q, r->req.head, 4);
	}
	assert_int_equal(virtq_pop(&r->q, &r->req), -EAGAIN);
	assert_int_equal(r->q.last_avail, 2);
	assert_int_equal(used_idx(r), 2);
	/* Entry 0xfffe went to slot 6, entry 1 to slot 1. */
	assert_int_equal(get32(r, USED_GPA + 4 + 8 * 6), 0);
	assert_int_equal(get32(r, USED_GPA + 4 + 8 * 1), 3);
	/* used_event 0xffff lies in (0xfffe, 2]. */
	set_used_event(r, 0xffff);
	assert_true(virtq_should_notify(&r->q));
}

/* A driver that keeps the ring full as fast as the device empties it
 * (or rings that refill themselves) cannot hold the device in one pop
 * loop: after one ring's worth, pop says empty until the next round. */
static void test_pop_budget(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, BUF_GPA, 8, 0, 0);
	make_avail(r, 0);
	int popped = 0;
	while (virtq_pop(&r->q, &r->req) == 0) {
		virtq_push(&r->q, 0, 0);
		make_avail(r, 0);
		assert_true(++popped <= QSZ);
	}
	assert_int_equal(popped, QSZ);
	assert_true(r->q.budget_spent);
	assert_false(r->q.broken);
	assert_false(virtq_has_work(&r->q));
	virtq_refill_budget(&r->q);
	assert_false(r->q.budget_spent);
	assert_true(virtq_has_work(&r->q));
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
}

/* ---- Malformed chains ---- */

static void test_loop(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	make_avail(r, 0);
	expect_broken(r);
	/* Reset makes it usable again. */
	virtq_reset(&r->q);
	assert_false(r->q.broken);
	assert_int_equal(virtq_activate(&r->q, &r->mem), 0);
}

static void test_self_loop(void **state)
{
	struct ring *r = *state;
	set_desc(r, 4, BUF_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 4);
	make_avail(r, 4);
	expect_broken(r);
}

static void test_head_out_of_range(void **state)
{
	struct ring *r = *state;
	make_avail(r, QSZ);
	expect_broken(r);
}

static void test_next_out_of_range(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, QSZ);
	make_avail(r, 0);
	expect_broken(r);
}

static void test_buffer_partly_outside_ram(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, RAM_GPA + RAM_SIZE - 8, 16, 0, 0);
	make_avail(r, 0);
	expect_broken(r);
}

static void test_buffer_below_ram(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, RAM_GPA - 4, 8, VIRTQ_DESC_F_WRITE, 0);
	make_avail(r, 0);
	expect_broken(r);
}

static void test_address_overflow(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, UINT64_MAX - 4, 16, 0, 0);
	make_avail(r, 0);
	expect_broken(r);
}

static void test_readable_after_writable(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, 1, BUF_GPA, 8, 0, 0);
	make_avail(r, 0);
	expect_broken(r);
}

static void test_readable_after_writable_in_table(void **state)
{
	struct ring *r = *state;
	r->q.indirect = true;
	set_desc(r, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, 1, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc_at(r, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	make_avail(r, 0);
	expect_broken(r);
}

static void test_avail_index_jump(void **state)
{
	struct ring *r = *state;
	set_desc(r, 0, BUF_GPA, 8, 0, 0);
	put16(r, AVAIL_GPA + 2, QSZ + 1);
	expect_broken(r);
}

static void test_avail_index_full_ring_ok(void **state)
{
	struct ring *r = *state;
	for (uint16_t i = 0; i < QSZ; i++) {
		set_desc(r, i, BUF_GPA, 8, 0, 0);
		make_avail(r, i);
	}
	for (int i = 0; i < QSZ; i++)
		assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(virtq_pop(&r->q, &r->req), -EAGAIN);
}

static void test_indirect_not_negotiated(void **state)
{
	struct ring *r = *state;
	set_desc_at(r, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	set_desc(r, 0, TABLE_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(r, 0);
	expect_broken(r);
}

static void indirect_case(struct ring *r, uint64_t table, uint32_t len, uint16_t flags)
{
	r->q.indirect = true;
	set_desc(r, 2, table, len, VIRTQ_DESC_F_INDIRECT | flags, 3);
	set_desc(r, 3, BUF_GPA, 8, 0, 0);
	make_avail(r, 2);
	expect_broken(r);
}

static void test_indirect_bad_length(void **state)
{
	struct ring *r = *state;
	set_desc_at(r, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	set_desc_at(r, TABLE_GPA, 1, BUF_GPA, 8, 0, 0);
	indirect_case(r, TABLE_GPA, 20, 0);
}

static void test_indirect_zero_length(void **state)
{
	indirect_case(*state, TABLE_GPA, 0, 0);
}

static void test_indirect_too_long(void **state)
{
	indirect_case(*state, TABLE_GPA, 16 * (VIRTQ_MAX_SIZE + 1), 0);
}

static void test_indirect_outside_ram(void **state)
{
	indirect_case(*state, RAM_GPA + RAM_SIZE - 16, 32, 0);
}

static void test_indirect_with_next(void **state)
{
	struct ring *r = *state;
	set_desc_at(r, TABLE_GPA, 0, BUF_GPA, 8, 0, 0);
	indirect_case(r, TABLE_GPA, 16, VIRTQ_DESC_F_NEXT);
}

static void test_nested_indirect(void **state)
{
	struct ring *r = *state;
	set_desc_at(r, TABLE_GPA, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc_at(r, TABLE_GPA, 1, TABLE_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	indirect_case(r, TABLE_GPA, 32, 0);
}

static void test_indirect_loop_and_next_range(void **state)
{
	struct ring *r = *state;
	set_desc_at(r, TABLE_GPA, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc_at(r, TABLE_GPA, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	indirect_case(r, TABLE_GPA, 32, 0);

	virtq_reset(&r->q);
	assert_int_equal(virtq_activate(&r->q, &r->mem), 0);
	r->avail_idx = 0;
	set_desc_at(r, TABLE_GPA, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
	indirect_case(r, TABLE_GPA, 32, 0);
}

/* Direct buffers plus a full indirect table: more buffers than a request
 * can carry. */
static void test_too_many_buffers(void **state)
{
	struct ring *r = *state;
	r->q.indirect = true;
	for (uint16_t i = 0; i < VIRTQ_MAX_SIZE; i++)
		set_desc_at(r, TABLE_GPA, i, BUF_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	set_desc_at(r, TABLE_GPA, VIRTQ_MAX_SIZE - 1, BUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	set_desc(r, 0, TABLE_GPA, 16 * VIRTQ_MAX_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(r, 0);
	/* A full table alone is fine. */
	assert_int_equal(virtq_pop(&r->q, &r->req), 0);
	assert_int_equal(r->req.nr_in, VIRTQ_MAX_SIZE);
	set_desc(r, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 2);
	set_desc(r, 2, TABLE_GPA, 16 * VIRTQ_MAX_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
	make_avail(r, 1);
	expect_broken(r);
}

/* 4 GiB or more in one direction does not fit the used ring's length:
 * refused. The buffers are in a PROT_NONE reservation posing as RAM (the
 * queue never touches buffer contents). */
static void test_total_length_overflow(void **state)
{
	struct ring *r = *state;
	uint64_t big = 0xC0000000ULL;
	void *res = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(res != MAP_FAILED);
	r->mem.regions[1] = (struct guest_region){ 0x100000000ULL, big, res };
	r->mem.nr_regions = 2;
	set_desc(r, 0, 0x100000000ULL, 0xB0000000u, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(r, 1, 0x100000000ULL, 0xB0000000u, VIRTQ_DESC_F_WRITE, 0);
	make_avail(r, 0);
	expect_broken(r);
	munmap(res, big);
}

/* ---- Activation ---- */

static void expect_activate_fails(struct ring *r, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	r->q.size = size;
	r->q.desc_gpa = desc;
	r->q.avail_gpa = avail;
	r->q.used_gpa = used;
	virtq_reset(&r->q);
	assert_int_equal(virtq_activate(&r->q, &r->mem), -EINVAL);
	assert_false(r->q.ready);
	assert_non_null(r->q.error);
	assert_int_equal(virtq_pop(&r->q, &r->req), -EAGAIN);
	assert_false(virtq_has_work(&r->q));
	virtq_push(&r->q, 0, 0);   /* ignored */
	assert_false(virtq_should_notify(&r->q));
}

static void test_activate_checks(void **state)
{
	struct ring *r = *state;
	/* Sizes */
	expect_activate_fails(r, 0, DESC_GPA, AVAIL_GPA, USED_GPA);
	expect_activate_fails(r, 6, DESC_GPA, AVAIL_GPA, USED_GPA);
	expect_activate_fails(r, 2 * VIRTQ_MAX_SIZE, DESC_GPA, AVAIL_GPA, USED_GPA);
	/* Alignment */
	expect_activate_fails(r, QSZ, DESC_GPA + 8, AVAIL_GPA, USED_GPA);
	expect_activate_fails(r, QSZ, DESC_GPA, AVAIL_GPA + 1, USED_GPA);
	expect_activate_fails(r, QSZ, DESC_GPA, AVAIL_GPA, USED_GPA + 2);
	/* Outside RAM, wholly or in part (the trailing event field too) */
	expect_activate_fails(r, QSZ, 0, AVAIL_GPA, USED_GPA);
	expect_activate_fails(r, QSZ, RAM_GPA + RAM_SIZE - 16 * QSZ + 16, AVAIL_GPA, USED_GPA);
	expect_activate_fails(r, QSZ, DESC_GPA, RAM_GPA + RAM_SIZE - (4 + 2 * QSZ), USED_GPA);
	expect_activate_fails(r, QSZ, DESC_GPA, AVAIL_GPA, RAM_GPA + RAM_SIZE - (4 + 8 * QSZ));
	expect_activate_fails(r, QSZ, UINT64_MAX - 15, AVAIL_GPA, USED_GPA);
	/* Exactly at the end of RAM is fine. */
	r->q.size = QSZ;
	r->q.desc_gpa = RAM_GPA + RAM_SIZE - 16 * QSZ;
	r->q.avail_gpa = RAM_GPA + RAM_SIZE - 16 * QSZ - (6 + 2 * QSZ);
	r->q.used_gpa = USED_GPA;
	virtq_reset(&r->q);
	assert_int_equal(virtq_activate(&r->q, &r->mem), 0);
	assert_true(r->q.ready);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_simple_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_push_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_length_chain_and_empty_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_table, setup, teardown),
		cmocka_unit_test(test_iov_copies),
		cmocka_unit_test_setup_teardown(test_event_idx_interrupts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx_avail_event, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_interrupt_and_no_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pop_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_self_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffer_partly_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffer_below_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readable_after_writable_in_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_index_jump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_index_full_ring_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_bad_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_zero_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_with_next, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_loop_and_next_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_total_length_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_activate_checks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
