/* Split virtqueues, device side (virtio 1.2, 2.7).
 *
 * The rings live in guest RAM and the driver may change them at any time,
 * so every shared field is read once with an atomic load (the avail index
 * with acquire, so the ring entry and descriptors read after it are the
 * ones the driver published) and each descriptor is copied to a local
 * before it is checked. The used element is written before the used index
 * (release). Whenever the device publishes where it wants the next kick
 * (avail_event, or clearing NO_NOTIFY) it issues a full barrier before it
 * looks at the avail index again, and virtq_should_notify() issues one
 * between the used index store and the read of used_event: the classic
 * store-then-load pairs that would otherwise lose a kick or an interrupt.
 *
 * Zero-length buffers are allowed (the spec does not forbid them) but add
 * no iovec and are not address-checked; they still count as descriptors
 * for the chain bound and for the readable-before-writable rule. */
#include "queue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "util.h"

#define VIRTQ_DESC_SIZE      16
#define VIRTQ_USED_ELEM_SIZE 8
#define VIRTQ_RING_HDR       4    /* flags and idx, before the ring entries */

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* ---- Ring layout: byte sizes and field addresses ---- */

static uint64_t desc_table_bytes(uint32_t size)
{
	return (uint64_t)size * VIRTQ_DESC_SIZE;
}

/* flags, idx, ring[size], used_event */
static uint64_t avail_ring_bytes(uint32_t size)
{
	return VIRTQ_RING_HDR + 2ULL * size + 2;
}

/* flags, idx, ring[size] of {id, len}, avail_event */
static uint64_t used_ring_bytes(uint32_t size)
{
	return VIRTQ_RING_HDR + (uint64_t)VIRTQ_USED_ELEM_SIZE * size + 2;
}

static uint16_t *avail_flags_ptr(const struct virtq *q)
{
	return (uint16_t *)q->avail_hva;
}

static uint16_t *avail_idx_ptr(const struct virtq *q)
{
	return (uint16_t *)q->avail_hva + 1;
}

static uint16_t *avail_entry_ptr(const struct virtq *q, uint32_t slot)
{
	return (uint16_t *)((uint8_t *)q->avail_hva + VIRTQ_RING_HDR) + slot;
}

static uint16_t *used_event_ptr(const struct virtq *q)
{
	return avail_entry_ptr(q, q->size);
}

static uint16_t *used_flags_ptr(const struct virtq *q)
{
	return (uint16_t *)q->used_hva;
}

static uint16_t *used_idx_ptr(const struct virtq *q)
{
	return (uint16_t *)q->used_hva + 1;
}

static uint32_t *used_elem_ptr(const struct virtq *q, uint32_t slot)
{
	return (uint32_t *)((uint8_t *)q->used_hva + VIRTQ_RING_HDR + (uint64_t)slot * VIRTQ_USED_ELEM_SIZE);
}

static uint16_t *avail_event_ptr(const struct virtq *q)
{
	return (uint16_t *)((uint8_t *)q->used_hva + VIRTQ_RING_HDR + (uint64_t)q->size * VIRTQ_USED_ELEM_SIZE);
}

static uint16_t load16(const uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static void store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static uint16_t avail_idx_acquire(const struct virtq *q)
{
	return le16toh(__atomic_load_n(avail_idx_ptr(q), __ATOMIC_ACQUIRE));
}

/* One copy of the descriptor; only the copy is checked and used. */
static void read_desc(const uint8_t *table, uint32_t index, struct virtq_desc *d)
{
	uint8_t raw[VIRTQ_DESC_SIZE];
	memcpy(raw, table + (uint64_t)index * VIRTQ_DESC_SIZE, sizeof(raw));
	memcpy(&d->addr, raw, 8);
	memcpy(&d->len, raw + 8, 4);
	memcpy(&d->flags, raw + 12, 2);
	memcpy(&d->next, raw + 14, 2);
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

/* ---- Setup ---- */

int virtq_activate(struct virtq *q, const struct guest_memory *mem)
{
	q->ready = false;
	q->error = NULL;
	if (!q->size || q->size > VIRTQ_MAX_SIZE || (q->size & (q->size - 1))) {
		q->error = "queue size is not a power of two up to the maximum";
		return -EINVAL;
	}
	if (q->desc_gpa % 16 || q->avail_gpa % 2 || q->used_gpa % 4) {
		q->error = "misaligned ring address";
		return -EINVAL;
	}
	void *desc = guest_ptr(mem, q->desc_gpa, desc_table_bytes(q->size));
	void *avail = guest_ptr(mem, q->avail_gpa, avail_ring_bytes(q->size));
	void *used = guest_ptr(mem, q->used_gpa, used_ring_bytes(q->size));
	if (!desc || !avail || !used) {
		q->error = "ring outside guest RAM";
		return -EINVAL;
	}
	q->mem = mem;
	q->desc_hva = desc;
	q->avail_hva = avail;
	q->used_hva = used;
	q->notify_enabled = true;
	q->broken = false;
	q->ready = true;
	virtq_refill_budget(q);
	return 0;
}

void virtq_refill_budget(struct virtq *q)
{
	q->budget = q->size;
	q->budget_spent = false;
}

void virtq_reset(struct virtq *q)
{
	q->last_avail = q->used_idx = q->signalled_used = 0;
	q->signalled_valid = false;
	q->ready = false;
	q->desc_hva = q->avail_hva = q->used_hva = NULL;
	q->notify_enabled = true;
	q->broken = false;
	q->error = NULL;
	q->budget = 0;
	q->budget_spent = false;
}

/* ---- Taking chains ---- */

static int virtq_fail(struct virtq *q, const char *why)
{
	q->broken = true;
	q->error = why;
	return -EINVAL;
}

/* Appends one buffer of the chain to req, as an out (device-readable) or
 * in (device-writable) iovec. */
static int add_buffer(struct virtq *q, struct virtq_req *req, const struct virtq_desc *d, bool *seen_writable)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	if (!writable && *seen_writable)
		return virtq_fail(q, "a device-readable buffer follows a device-writable one");
	*seen_writable |= writable;
	if (d->len == 0)
		return 0;
	if (req->nr_out + req->nr_in >= VIRTQ_MAX_SEGS)
		return virtq_fail(q, "too many buffers in one chain");
	void *hva = guest_ptr(q->mem, d->addr, d->len);
	if (!hva)
		return virtq_fail(q, "buffer outside guest RAM");
	/* Lengths are reported back in 32-bit fields: a request of 4 GiB
	 * or more in one direction is refused rather than truncated. */
	if (writable) {
		req->in[req->nr_in++] = (struct iovec){ hva, d->len };
		req->in_len += d->len;
		if (req->in_len > UINT32_MAX)
			return virtq_fail(q, "device-writable buffers total 4 GiB or more");
	} else {
		req->out[req->nr_out++] = (struct iovec){ hva, d->len };
		req->out_len += d->len;
		if (req->out_len > UINT32_MAX)
			return virtq_fail(q, "device-readable buffers total 4 GiB or more");
	}
	return 0;
}

/* Walks the chain from head: the queue's descriptors, possibly ending in
 * one indirect table. Each table bounds its own walk by its entry count,
 * which also catches loops. */
static int walk_chain(struct virtq *q, uint16_t head, struct virtq_req *req)
{
	const uint8_t *table = q->desc_hva;
	uint32_t table_size = q->size, budget = q->size, index = head;
	bool in_indirect = false, seen_writable = false;

	for (;;) {
		if (budget == 0)
			return virtq_fail(q, in_indirect ? "indirect chain longer than its table (a loop?)"
							 : "descriptor chain longer than the queue (a loop?)");
		budget--;
		struct virtq_desc d;
		read_desc(table, index, &d);

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return virtq_fail(q, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
			if (in_indirect)
				return virtq_fail(q, "nested indirect table");
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return virtq_fail(q, "indirect descriptor with NEXT");
			if (d.len == 0 || d.len % VIRTQ_DESC_SIZE || d.len / VIRTQ_DESC_SIZE > VIRTQ_MAX_SIZE)
				return virtq_fail(q, "indirect table length is not 1..1024 descriptors");
			table = guest_ptr(q->mem, d.addr, d.len);
			if (!table)
				return virtq_fail(q, "indirect table outside guest RAM");
			table_size = budget = d.len / VIRTQ_DESC_SIZE;
			index = 0;
			in_indirect = true;
			continue;
		}

		int err = add_buffer(q, req, &d, &seen_writable);
		if (err)
			return err;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= table_size)
			return virtq_fail(q, "next descriptor index beyond the table");
		index = d.next;
	}
}

int virtq_pop(struct virtq *q, struct virtq_req *req)
{
	if (q->broken)
		return -EINVAL;
	if (!q->ready)
		return -EAGAIN;
	if (q->budget == 0) {
		q->budget_spent = true;
		return -EAGAIN;
	}
	uint16_t avail = avail_idx_acquire(q);
	uint16_t pending = (uint16_t)(avail - q->last_avail);
	if (pending == 0 && q->event_idx && q->notify_enabled) {
		/* About to go idle: ask for a kick at the next entry, then
		 * look again, so a buffer added meanwhile is not missed. */
		store16(avail_event_ptr(q), q->last_avail);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail = avail_idx_acquire(q);
		pending = (uint16_t)(avail - q->last_avail);
	}
	if (pending == 0)
		return -EAGAIN;
	if (pending > q->size)
		return virtq_fail(q, "the available index ran more than the queue size ahead");

	uint16_t head = load16(avail_entry_ptr(q, q->last_avail & (q->size - 1u)));
	if (head >= q->size)
		return virtq_fail(q, "head descriptor index beyond the queue size");
	req->head = head;
	req->nr_out = req->nr_in = 0;
	req->out_len = req->in_len = 0;
	int err = walk_chain(q, head, req);
	if (err)
		return err;
	q->last_avail++;
	q->budget--;
	return 0;
}

bool virtq_has_work(const struct virtq *q)
{
	if (!q->ready || q->broken || q->budget == 0)
		return false;
	return avail_idx_acquire(q) != q->last_avail;
}

/* ---- Returning chains and notifications ---- */

void virtq_push_batch(struct virtq *q, const struct virtq_used *used, int n)
{
	if (!q->ready)
		return;
	uint16_t idx = q->used_idx;
	for (int i = 0; i < n; i++) {
		if (used[i].head >= q->size)
			continue;
		uint32_t *elem = used_elem_ptr(q, idx & (q->size - 1u));
		__atomic_store_n(&elem[0], htole32(used[i].head), __ATOMIC_RELAXED);
		__atomic_store_n(&elem[1], htole32(used[i].len), __ATOMIC_RELAXED);
		idx++;
	}
	q->used_idx = idx;
	__atomic_store_n(used_idx_ptr(q), htole16(q->used_idx), __ATOMIC_RELEASE);
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	struct virtq_used one = { head, len };
	virtq_push_batch(q, &one, 1);
}

/* virtio 1.2, 2.7.10: interrupt if used_event lies in (old, new]. */
static bool vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_should_notify(struct virtq *q)
{
	if (!q->ready)
		return false;
	/* The used index store must be visible before the driver's
	 * suppression fields are read (the driver does the reverse). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t old_idx = q->signalled_used, new_idx = q->used_idx;
	bool valid = q->signalled_valid;
	/* Nothing pushed since the last decision: nothing to tell. */
	if (new_idx == old_idx)
		return false;
	q->signalled_used = new_idx;
	q->signalled_valid = true;
	if (!q->event_idx)
		return !(load16(avail_flags_ptr(q)) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	return !valid || vring_need_event(load16(used_event_ptr(q)), new_idx, old_idx);
}

void virtq_set_notify(struct virtq *q, bool enable)
{
	q->notify_enabled = enable;
	if (!q->ready)
		return;
	if (q->event_idx) {
		/* Disabling: leave avail_event behind, so the driver's next
		 * additions pass it without a kick. */
		if (enable)
			store16(avail_event_ptr(q), q->last_avail);
	} else {
		store16(used_flags_ptr(q), enable ? 0 : VIRTQ_USED_F_NO_NOTIFY);
	}
	if (enable)
		__atomic_thread_fence(__ATOMIC_SEQ_CST); /* before the caller's virtq_has_work() */
}

/* ---- iovec copies ---- */

int iov_slice(const struct iovec *src, int nr, uint64_t offset, uint64_t len, struct iovec *dst, int max)
{
	int n = 0;
	for (int i = 0; i < nr && len; i++) {
		if (offset >= src[i].iov_len) {
			offset -= src[i].iov_len;
			continue;
		}
		if (n == max)
			return -EINVAL;
		uint64_t take = MIN(src[i].iov_len - offset, len);
		dst[n++] = (struct iovec){ (uint8_t *)src[i].iov_base + offset, take };
		len -= take;
		offset = 0;
	}
	return len ? -EINVAL : n;
}

uint64_t iov_to_buf(const struct iovec *iov, int nr, uint64_t offset, void *buf, uint64_t len)
{
	uint64_t done = 0;
	for (int i = 0; i < nr && done < len; i++) {
		uint64_t seg = iov[i].iov_len;
		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		uint64_t n = MIN(seg - offset, len - done);
		memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

uint64_t buf_to_iov(const struct iovec *iov, int nr, uint64_t offset, const void *buf, uint64_t len)
{
	uint64_t done = 0;
	for (int i = 0; i < nr && done < len; i++) {
		uint64_t seg = iov[i].iov_len;
		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		uint64_t n = MIN(seg - offset, len - done);
		memcpy((uint8_t *)iov[i].iov_base + offset, (const uint8_t *)buf + done, n);
		done += n;
		offset = 0;
	}
	return done;
}
