/* test=virtio-hostile: a driver that breaks the rules, on every virtio-rng
 * and virtio-blk on the bus. Each case sets the device up (or half up),
 * does one bad thing and checks the device's answer where the spec or
 * kvmlite's design gives one:
 *   - a malformed chain (loop, too long, bad head, buffer or table outside
 *     RAM, bad indirect table, avail index too far ahead, readable after
 *     writable): DEVICE_NEEDS_RESET, and the chain is not completed;
 *   - rings outside RAM, misaligned or of a size that is not a power of
 *     two: DEVICE_NEEDS_RESET or the queue is not enabled;
 *   - a malformed virtio-blk request: completed with IOERR or UNSUPP;
 *   - writes to read-only registers, out-of-range selectors and vectors,
 *     odd-width accesses, accesses beyond a structure: ignored (the
 *     values read back unchanged, NO_VECTOR for a bad vector), and the
 *     device keeps working without a reset.
 * Then the device is reset, set up again, and one good request must
 * succeed. The host runs this with the ASan build too: the VMM must not
 * crash, hang or touch memory outside guest RAM. */
#define VTEST_CODE_BASE 100
#include "virtio.h"

#define F_V1   FEATURE(VIRTIO_F_VERSION_1)
#define F_IND  FEATURE(VIRTIO_F_INDIRECT_DESC)

#define BLK_T_IN     0
#define BLK_T_OUT    1
#define BLK_T_FLUSH  4
#define BLK_T_GET_ID 8
#define BLK_T_DISCARD 11
#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2
#define SECTOR       512

#define RAM_MARKER_ADDR 0x800000ull /* free guest RAM (the image ends below 2 MiB) */
#define OUTSIDE_RAM     0xffffffff0000ull
#define BEYOND_RAM      0xbffff000ull /* below the MMIO hole, above any RAM the tests give */

/* Memory for the cases: payload data, raw rings, indirect tables. */
#define DATA     (virtio_scratch + 0x0000) /* 8 KiB */
#define RAW_DESC (virtio_scratch + 0x4000)
#define RAW_AVAIL (virtio_scratch + 0x5000)
#define RAW_USED (virtio_scratch + 0x6000)
#define TABLE_A  ((struct vring_desc *)(virtio_scratch + 0x7000))
#define TABLE_B  ((struct vring_desc *)(virtio_scratch + 0x7800))

static struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
} hdr __attribute__((aligned(16)));
static uint8_t blk_status;
static const char *outcome; /* what the device did, for the case's line */

#define EXPECT_RC(what, rc, want)                                                              \
	do {                                                                                   \
		int rc_ = (rc);                                                                \
		if (rc_ != (want))                                                             \
			vtest_fail(VTEST_CODE_BASE + __COUNTER__ + 1, what, vq_strerror(rc_)); \
	} while (0)

static bool is_blk(const struct vdev *d)
{
	return d->device_id == VIRTIO_ID_BLOCK;
}

static void set_desc(volatile struct vring_desc *t, int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	t[i].addr = addr;
	t[i].len = len;
	t[i].flags = flags;
	t[i].next = next;
}

/* A valid request: rng 64 bytes; blk a read of sector 0. *data_idx is
 * the data buffer's index. */
static int payload(const struct vdev *d, struct vbuf *b, int *data_idx)
{
	memset(DATA, 0, SECTOR);
	if (is_blk(d)) {
		hdr = (struct blk_hdr){ .type = BLK_T_IN, .sector = 0 };
		blk_status = 0xee;
		b[0] = (struct vbuf){ gpa(&hdr), sizeof(hdr), false };
		b[1] = (struct vbuf){ gpa(DATA), SECTOR, true };
		b[2] = (struct vbuf){ gpa(&blk_status), 1, true };
		*data_idx = 1;
		return 3;
	}
	b[0] = (struct vbuf){ gpa(DATA), 64, true };
	*data_idx = 0;
	return 1;
}

/* The payload came back right. */
static void check_payload(const struct vdev *d, uint32_t len, const char *what)
{
	if (is_blk(d)) {
		CHECK(what, blk_status, BLK_S_OK);
		CHECK(what, len, SECTOR + 1);
		for (uint32_t i = 0; i < SECTOR; i++)
			CHECK(what, DATA[i], vtest_disk_byte(i));
		return;
	}
	CHECK(what, len, 64);
	bool zero = true;
	for (int i = 0; i < 64; i++)
		zero &= !DATA[i];
	CHECK_TRUE(what, !zero);
}

static void good_request(struct vdev *d, const char *what)
{
	struct vbuf b[3];
	int di, n = payload(d, b, &di);
	uint32_t len = 0;

	EXPECT_RC(what, vq_request(d, b, n, false, &len), VQ_OK);
	check_payload(d, len, what);
}

/* Publishes head 0 of hand-made descriptors, kicks, waits. */
static int kick_head0(struct vdev *d, uint32_t *len)
{
	uint16_t head = 0;
	uint32_t id;

	vq_add_heads(d, &head, 1);
	vq_kick(d, true);
	return vq_wait(d, &id, len);
}

static void expect_needs_reset(struct vdev *d, int rc, const char *what)
{
	if (rc == VQ_OK || rc == VQ_BAD_ID)
		vtest_fail(VTEST_CODE_BASE + 90, what, "the device completed a malformed chain");
	if (rc == VQ_TIMEOUT)
		vtest_fail(VTEST_CODE_BASE + 91, what, "no DEVICE_NEEDS_RESET (timed out)");
	CHECK_TRUE(what, vdev_status(d) & VIRTIO_S_NEEDS_RESET);
	outcome = "DEVICE_NEEDS_RESET";
}

/* ---- Malformed chains ---- */

/* desc 0 -> 1 -> 0: all readable for blk (so only the loop is wrong),
 * all writable for rng. */
static void hc_loop(struct vdev *d, int arg)
{
	uint32_t len;
	uint16_t dir = is_blk(d) ? 0 : VRING_DESC_F_WRITE;

	MUST("init", vdev_init(d, F_V1, 0));
	set_desc(d->q.desc, 0, gpa(DATA), 16, dir | VRING_DESC_F_NEXT, 1);
	set_desc(d->q.desc, 1, gpa(DATA) + 16, 16, dir | VRING_DESC_F_NEXT, (uint16_t)arg);
	expect_needs_reset(d, kick_head0(d, &len), "a chain that loops");
}

/* A queue of 16: first a valid chain of all 16 descriptors, then all 16
 * with NEXT, the last pointing back to the first. */
static void hc_long_chain(struct vdev *d, int arg)
{
	uint32_t id, len;
	uint16_t head = 0;

	(void)arg;
	MUST("init (queue of 16)", vdev_init(d, F_V1, 16));
	if (is_blk(d)) {
		hdr = (struct blk_hdr){ .type = BLK_T_IN, .sector = 0 };
		blk_status = 0xee;
		set_desc(d->q.desc, 0, gpa(&hdr), sizeof(hdr), VRING_DESC_F_NEXT, 1);
		for (int i = 1; i < 15; i++)
			set_desc(d->q.desc, i, gpa(DATA) + (uint64_t)(i - 1) * SECTOR, SECTOR,
				 VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, (uint16_t)(i + 1));
		set_desc(d->q.desc, 15, gpa(&blk_status), 1, VRING_DESC_F_WRITE, 0);
	} else {
		for (int i = 0; i < 16; i++)
			set_desc(d->q.desc, i, gpa(DATA) + 4 * (uint64_t)i, 4,
				 VRING_DESC_F_WRITE | (i < 15 ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1));
	}
	vq_add_heads(d, &head, 1);
	vq_kick(d, true);
	EXPECT_RC("a chain of all 16 descriptors", vq_wait(d, &id, &len), VQ_OK);
	if (is_blk(d)) {
		CHECK("a chain of all 16 descriptors: status", blk_status, BLK_S_OK);
		CHECK("a chain of all 16 descriptors: len", len, 14 * SECTOR + 1);
		for (uint32_t i = 0; i < 14 * SECTOR; i++)
			CHECK("a chain of all 16 descriptors: data", DATA[i], vtest_disk_byte(i));
	} else {
		CHECK("a chain of all 16 descriptors: len", len, 64);
	}
	d->q.desc[15].flags |= VRING_DESC_F_NEXT;
	d->q.desc[15].next = 0;
	expect_needs_reset(d, kick_head0(d, &len), "a chain longer than the queue");
}

static void hc_bad_head(struct vdev *d, int arg)
{
	uint16_t head;
	uint32_t id, len;

	MUST("init", vdev_init(d, F_V1, 0));
	head = arg ? 0xffff : d->q.size;
	vq_add_heads(d, &head, 1);
	vq_kick(d, true);
	expect_needs_reset(d, vq_wait(d, &id, &len), "a head index >= the queue size");
}

/* The payload's data buffer at an address that is not guest RAM. */
static void hc_bad_buffer(struct vdev *d, int arg)
{
	struct vbuf b[3];
	int di, n;
	uint32_t id, len;

	MUST("init", vdev_init(d, F_V1, 0));
	n = payload(d, b, &di);
	switch (arg) {
	case 0: b[di].addr = OUTSIDE_RAM; break;
	case 1: b[di].addr = 0xfffffffffffff000ull, b[di].len = 0x2000; break; /* wraps */
	case 2: b[di].len = 0xffffffff; break;                                  /* huge */
	case 3: b[di].addr = d->common; break;   /* the device's own registers */
	case 4: b[di].addr = BEYOND_RAM; break;
	}
	vq_add(d, b, n, false);
	vq_kick(d, true);
	expect_needs_reset(d, vq_wait(d, &id, &len), "a buffer outside guest RAM");
}

/* arg: 0 length not a multiple of 16, 1 length 0, 2 more than 1024
 * entries, 3 nested, 4 without INDIRECT_DESC, 5 with NEXT, 6 outside RAM.
 * Case 0 first shows that the same table, well-formed, works. */
static void hc_indirect(struct vdev *d, int arg)
{
	struct vbuf b[3];
	int di, n;
	uint32_t len;

	MUST("init", vdev_init(d, arg == 4 ? F_V1 : F_V1 | F_IND, 0));
	n = payload(d, b, &di);
	for (int i = 0; i < n; i++)
		set_desc(TABLE_A, i, b[i].addr, b[i].len,
			 (uint16_t)((b[i].write ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
			 (uint16_t)(i + 1));
	set_desc(d->q.desc, 0, gpa(TABLE_A), 16 * (uint32_t)n, VRING_DESC_F_INDIRECT, 0);
	if (arg == 0) {
		EXPECT_RC("a well-formed indirect table", kick_head0(d, &len), VQ_OK);
		check_payload(d, len, "a well-formed indirect table");
		payload(d, b, &di);
		d->q.desc[0].len = 16 * (uint32_t)n + 1;
	}
	switch (arg) {
	case 1: d->q.desc[0].len = 0; break;
	case 2: d->q.desc[0].len = 16 * 1025; break;
	case 3:
		memcpy(TABLE_B, TABLE_A, sizeof(struct vring_desc) * (size_t)n);
		set_desc(TABLE_A, 0, gpa(TABLE_B), 16 * (uint32_t)n, VRING_DESC_F_INDIRECT, 0);
		break;
	case 5:
		d->q.desc[0].flags |= VRING_DESC_F_NEXT;
		d->q.desc[0].next = 1;
		set_desc(d->q.desc, 1, gpa(DATA) + 0x1000, 16, VRING_DESC_F_WRITE, 0);
		break;
	case 6: d->q.desc[0].addr = OUTSIDE_RAM; break;
	}
	expect_needs_reset(d, kick_head0(d, &len), "a bad indirect descriptor");
}

static void hc_avail_ahead(struct vdev *d, int arg)
{
	uint32_t id, len;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	d->q.avail[1] = (uint16_t)(d->q.size + 1);
	vq_kick(d, true);
	expect_needs_reset(d, vq_wait(d, &id, &len), "avail->idx more than the queue size ahead");
}

static void hc_readable_after_writable(struct vdev *d, int arg)
{
	struct vbuf b[4];
	int di, n;
	uint32_t id, len;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	n = payload(d, b, &di);
	b[n++] = (struct vbuf){ gpa(DATA) + 0x1000, 16, false };
	vq_add(d, b, n, false);
	vq_kick(d, true);
	expect_needs_reset(d, vq_wait(d, &id, &len), "a readable buffer after a writable one");
}

/* The device writes the request's data over its own rings (rng: random
 * bytes on the avail ring or the descriptor table; blk: sector 0's
 * pattern). Whatever follows, the VMM survives and a reset recovers. */
static void hc_overwrite_rings(struct vdev *d, int arg)
{
	struct vbuf b[3];
	int di, n, rc;
	uint32_t id, len;

	MUST("init", vdev_init(d, F_V1, 0));
	n = payload(d, b, &di);
	b[di].addr = arg ? gpa(d->q.desc) + 64 : gpa(d->q.avail);
	vq_add(d, b, n, false);
	vq_kick(d, true);
	rc = vq_wait(d, &id, &len);
	outcome = vq_strerror(rc);
}

/* ---- Rings and queue registers ---- */

/* Queue 0 with one ring address that is not usable. */
static void hc_bad_rings(struct vdev *d, int arg)
{
	uint64_t desc = gpa(RAW_DESC), avail = gpa(RAW_AVAIL), used = gpa(RAW_USED);
	uint16_t enabled;
	uint8_t status;

	MUST("negotiate", vdev_negotiate(d, F_V1));
	memset(RAW_DESC, 0, 0x3000);
	switch (arg) {
	case 0: desc = OUTSIDE_RAM; break;
	case 1: avail = 0xfeb00000ull; break;         /* the test device's MMIO */
	case 2: used = BEYOND_RAM; break;
	case 3: desc += 8; break;                     /* misaligned */
	case 4: used = d->common; break;              /* the device's own BAR */
	case 5: desc = 0xfffffffffffffff0ull; break;  /* wraps */
	}
	vcc_write16(d, VCC_Q_SELECT, 0);
	vcc_write16(d, VCC_Q_SIZE, 16);
	vcc_write64(d, VCC_Q_DESC, desc);
	vcc_write64(d, VCC_Q_DRIVER, avail);
	vcc_write64(d, VCC_Q_DEVICE, used);
	vcc_write16(d, VCC_Q_ENABLE, 1);
	enabled = vcc_read16(d, VCC_Q_ENABLE);
	status = vdev_status(d);
	CHECK_TRUE("rings outside RAM: NEEDS_RESET or queue not enabled", (status & VIRTIO_S_NEEDS_RESET) || !enabled);
	/* Going on anyway must not make the queue live. */
	vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
	mmio_write16(d->notify_base + (uint64_t)vcc_read16(d, VCC_Q_NOFF) * d->notify_mult, 0);
	status = vdev_status(d);
	CHECK_TRUE("rings outside RAM: not live after DRIVER_OK",
		   (status & VIRTIO_S_NEEDS_RESET) || !(status & VIRTIO_S_DRIVER_OK) || !enabled);
	outcome = status & VIRTIO_S_NEEDS_RESET ? "DEVICE_NEEDS_RESET" : "queue not enabled";
}

/* queue_size: 3, 0, twice the maximum, 0xffff. */
static void hc_queue_size(struct vdev *d, int arg)
{
	static const uint16_t sizes[] = { 3, 0, 0, 0xffff };
	uint16_t max, bad, rb;

	MUST("negotiate", vdev_negotiate(d, F_V1));
	vcc_write16(d, VCC_Q_SELECT, 0);
	max = vcc_read16(d, VCC_Q_SIZE);
	bad = arg == 2 ? (uint16_t)(max * 2) : sizes[arg];
	vcc_write16(d, VCC_Q_SIZE, bad);
	rb = vcc_read16(d, VCC_Q_SIZE);
	if (rb != bad || !bad) {
		CHECK_TRUE("refused queue_size keeps a power of two up to the maximum", rb && rb <= max && !(rb & (rb - 1)));
		outcome = "refused";
		return;
	}
	/* Taken as written: enabling must not work. Rings are sized for
	 * what the device believes (below 1 MiB of RAM either way). */
	vcc_write64(d, VCC_Q_DESC, 0x400000);
	vcc_write64(d, VCC_Q_DRIVER, 0x500000);
	vcc_write64(d, VCC_Q_DEVICE, 0x600000);
	vcc_write16(d, VCC_Q_ENABLE, 1);
	CHECK_TRUE("accepted bad queue_size: NEEDS_RESET or queue not enabled",
		   (vdev_status(d) & VIRTIO_S_NEEDS_RESET) || !vcc_read16(d, VCC_Q_ENABLE));
	outcome = "enable refused";
}

/* Read-only fields keep their values; queue_enable 0 and a new queue_desc
 * on a live queue change nothing a driver can see. */
static void hc_read_only(struct vdev *d, int arg)
{
	uint32_t df0;
	uint16_t numq, noff;
	uint8_t gen;
	int rc;
	uint32_t len;
	struct vbuf b[3];
	int di, n;

	(void)arg;
	MUST("negotiate", vdev_negotiate(d, F_V1));
	vcc_write32(d, VCC_DFSELECT, 0);
	df0 = vcc_read32(d, VCC_DF);
	vcc_write32(d, VCC_DF, ~df0);
	CHECK("device_feature is read-only", vcc_read32(d, VCC_DF), df0);
	numq = vcc_read16(d, VCC_NUMQ);
	vcc_write16(d, VCC_NUMQ, (uint16_t)(numq + 5));
	CHECK("num_queues is read-only", vcc_read16(d, VCC_NUMQ), numq);
	gen = vcc_read8(d, VCC_CFGGEN);
	vcc_write8(d, VCC_CFGGEN, (uint8_t)(gen + 1));
	CHECK("config_generation is read-only", vcc_read8(d, VCC_CFGGEN), gen);
	MUST("queue setup", vq_setup(d, 0));
	noff = vcc_read16(d, VCC_Q_NOFF);
	vcc_write16(d, VCC_Q_NOFF, (uint16_t)(noff + 7));
	CHECK("queue_notify_off is read-only", vcc_read16(d, VCC_Q_NOFF), noff);
	/* Features are fixed once FEATURES_OK is set: dropping VERSION_1
	 * now must not change how the device works. */
	vcc_write32(d, VCC_GFSELECT, 1);
	vcc_write32(d, VCC_GF, 0);
	MUST("DRIVER_OK", vdev_driver_ok(d));
	good_request(d, "good request after writes to read-only fields");

	/* Without RING_RESET, queue_enable 0 means nothing; queue_desc on an
	 * enabled queue is not the driver's to change. Either the device
	 * ignores both or it asks for a reset. */
	vcc_write16(d, VCC_Q_SELECT, 0);
	vcc_write16(d, VCC_Q_ENABLE, 0);
	vcc_write64(d, VCC_Q_DESC, OUTSIDE_RAM);
	vcc_write16(d, VCC_Q_SIZE, 4);
	n = payload(d, b, &di);
	rc = vq_request(d, b, n, false, &len);
	if (rc == VQ_OK)
		check_payload(d, len, "request after queue_enable 0 and queue_desc on a live queue");
	else
		EXPECT_RC("request after queue_enable 0 and queue_desc on a live queue", rc, VQ_NEEDS_RESET);
	outcome = rc == VQ_OK ? "ignored" : "DEVICE_NEEDS_RESET";
}

static void hc_queue_select(struct vdev *d, int arg)
{
	const uint16_t sels[] = { d->num_queues, 0x7fff, 0xffff };

	(void)arg;
	MUST("negotiate", vdev_negotiate(d, F_V1));
	for (int i = 0; i < 3; i++) {
		vcc_write16(d, VCC_Q_SELECT, sels[i]);
		CHECK("queue_size of a queue that does not exist", vcc_read16(d, VCC_Q_SIZE), 0);
		vcc_write16(d, VCC_Q_SIZE, 4);
		vcc_write64(d, VCC_Q_DESC, OUTSIDE_RAM);
		vcc_write16(d, VCC_Q_MSIX, 0);
		vcc_write16(d, VCC_Q_ENABLE, 1);
		mmio_write16(d->notify_base, sels[i]);
		CHECK("queue_size of a queue that does not exist, after writes", vcc_read16(d, VCC_Q_SIZE), 0);
	}
	CHECK("status after writes to queues that do not exist", vdev_status(d),
	      VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	MUST("queue 0 setup after out-of-range selects", vq_setup(d, 0));
	MUST("DRIVER_OK", vdev_driver_ok(d));
	good_request(d, "good request after out-of-range queue_select");
	outcome = "ignored";
}

/* Accesses of every width at offsets no field starts at, and writes that
 * straddle fields (a 16-bit write of 0 over num_queues' high byte and
 * device_status would be a reset if taken as a status write). */
static void hc_odd_width(struct vdev *d, int arg)
{
	static const uint8_t odd2[] = { 0x01, 0x03, 0x11, 0x13, 0x15, 0x1d, 0x21, 0x37 };
	static const uint8_t odd4[] = { 0x01, 0x02, 0x03, 0x06, 0x11, 0x12, 0x13, 0x16, 0x1a, 0x36 };
	static const uint8_t odd8[] = { 0x00, 0x04, 0x0c, 0x10, 0x14, 0x18, 0x24, 0x34 };
	uint8_t st;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	st = vdev_status(d);
	for (uint32_t off = 0; off < 0x40; off++)
		(void)vcc_read8(d, off);
	for (size_t i = 0; i < sizeof(odd2); i++)
		(void)mmio_read16(d->common + odd2[i]);
	for (size_t i = 0; i < sizeof(odd4); i++)
		(void)mmio_read32(d->common + odd4[i]);
	for (size_t i = 0; i < sizeof(odd8); i++)
		(void)mmio_read64(d->common + odd8[i]);
	mmio_write16(d->common + 0x13, 0);
	mmio_write32(d->common + 0x12, 0);
	mmio_write32(d->common + 0x13, 0);
	mmio_write64(d->common + 0x10, 0);
	mmio_write32(d->common + 0x36, 0xffffffff); /* across the end of the fields */
	mmio_write64(d->common + d->common_len - 4, 0);
	mmio_write32(d->common + 0x100, 0xffffffff);
	mmio_write8(d->common + 0x1f, 0xff);        /* queue_notify_off's high byte */
	/* kvmlite's rule: an access that does not stay inside one field is
	 * ignored. */
	CHECK("device_status after straddling writes", vdev_status(d), st);
	good_request(d, "good request after odd-width accesses");
	outcome = "ignored";
}

/* Reads and writes beyond the device config, ISR and notify structures. */
static void hc_beyond(struct vdev *d, int arg)
{
	uint8_t st;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	st = vdev_status(d);
	if (d->devcfg) {
		uint64_t end = d->devcfg + d->devcfg_len;

		for (uint32_t off = 0; off < 0x1000 - d->devcfg_len; off += off < 16 ? 1 : 0x80) {
			uint32_t v4 = mmio_read32(end + off);
			uint8_t v1 = mmio_read8(end + off);

			CHECK_TRUE("device config read beyond its length is 0 or all-ones", v4 == 0 || v4 == 0xffffffff);
			CHECK_TRUE("device config read beyond its length is 0 or all-ones", v1 == 0 || v1 == 0xff);
			mmio_write32(end + off, 0xdeadbeef);
		}
		(void)mmio_read64(end - 4);          /* straddles the end */
		(void)mmio_read32(end - 2);
		mmio_write32(end - 2, 0xffffffff);   /* ... and writes the last bytes */
	}
	for (uint32_t off = 1; off < 8; off++)
		(void)mmio_read8(d->isr + off);
	mmio_write32(d->isr, 0xffffffff);            /* read-only */
	(void)mmio_read64(d->isr);
	/* Notify: beyond the last queue's register, odd widths, a bogus
	 * queue index, reads. */
	mmio_write16(d->notify_base + d->notify_len, 0);
	mmio_write16(d->notify_base + d->notify_len + 0x100, 5);
	mmio_write8(d->notify_base, 0);
	mmio_write32(d->notify_base, 0xffffffff);
	mmio_write64(d->notify_base, 0);
	mmio_write16(d->notify_base + 1, 0);
	(void)mmio_read32(d->notify_base);
	CHECK("device_status after accesses beyond the structures", vdev_status(d), st);
	good_request(d, "good request after accesses beyond the structures");
	outcome = "ignored";
}

/* The VIRTIO_PCI_CAP_PCI_CFG window: a valid read, then bars, offsets and
 * lengths the spec does not allow. */
static void hc_pci_cfg_window(struct vdev *d, int arg)
{
	uint8_t cap = d->pcicfg_cap, st;
	uint32_t common_off = (uint32_t)(d->common - d->bar_addr[d->common_bar]);
	static const struct { uint8_t bar; uint32_t off, len; } bad[] = {
		{ 7, 0, 4 }, { 0, 0xfffffffc, 4 }, { 0, 0, 3 }, { 0, 1, 4 }, { 0, 0, 0 }, { 0, 0, 0xffffffff },
		{ 0, 0x7ffe, 4 }, { 0, 0x4000, 4 }, { 5, 0x10, 2 },
	};

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	if (!cap) {
		outcome = "no PCI_CFG capability";
		return;
	}
	st = vdev_status(d);
	pci_write8(d->slot, cap + 4u, (uint8_t)d->common_bar);
	pci_write32(d->slot, cap + 8u, common_off + VCC_NUMQ);
	pci_write32(d->slot, cap + 12u, 2);
	CHECK("num_queues through the PCI_CFG window", pci_read16(d->slot, cap + 16u), d->num_queues);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pci_write8(d->slot, cap + 4u, bad[i].bar);
		pci_write32(d->slot, cap + 8u, bad[i].off);
		pci_write32(d->slot, cap + 12u, bad[i].len);
		(void)pci_read32(d->slot, cap + 16u);
		(void)pci_read8(d->slot, cap + 19u);
		pci_write32(d->slot, cap + 16u, 0);
		pci_write8(d->slot, cap + 18u, 0);
	}
	/* The rest of the capability is read-only. */
	pci_write8(d->slot, cap + 3u, 1);
	CHECK("PCI_CFG cap cfg_type is read-only", pci_read8(d->slot, cap + 3u), 5);
	CHECK("device_status after PCI_CFG window abuse", vdev_status(d), st);
	good_request(d, "good request after PCI_CFG window abuse");
	outcome = "ignored";
}

/* ---- MSI-X ---- */

static void hc_msix(struct vdev *d, int arg)
{
	uint8_t cap = d->msix_cap;
	uint16_t ctrl, nvec;
	uint32_t tbl, pba;
	uint64_t table, pbase;
	uint8_t st;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	if (!cap) {
		outcome = "no MSI-X";
		return;
	}
	st = vdev_status(d);
	ctrl = pci_read16(d->slot, cap + 2u);
	nvec = (uint16_t)((ctrl & 0x7ff) + 1);
	tbl = pci_read32(d->slot, cap + 4u);
	pba = pci_read32(d->slot, cap + 8u);
	CHECK_TRUE("MSI-X table in an implemented BAR", (tbl & 7) < 6 && d->bar_addr[tbl & 7]);
	CHECK_TRUE("MSI-X PBA in an implemented BAR", (pba & 7) < 6 && d->bar_addr[pba & 7]);
	table = d->bar_addr[tbl & 7] + (tbl & ~7u);
	pbase = d->bar_addr[pba & 7] + (pba & ~7u);

	/* Garbage everywhere while MSI-X is off (entries stay masked). */
	for (uint16_t v = 0; v < nvec; v++) {
		uint64_t e = table + 16u * v;
		mmio_write32(e + 0, 0xdeadbeef);
		mmio_write32(e + 4, 0xffffffff);
		mmio_write32(e + 8, 0x12345678);
		mmio_write32(e + 12, 0xffffffff);
	}
	mmio_write8(table + 1, 0x55);
	mmio_write64(table + 8, 0xffffffffffffffffull);
	(void)mmio_read64(table);
	CHECK("MSI-X vector control keeps the mask bit", mmio_read32(table + 12) & 1, 1);
	mmio_write32(table + 16u * nvec, 0xffffffff);          /* just past the table */
	mmio_write64(table + 16u * nvec - 4, 0);               /* across its end */
	mmio_write32(pbase, 0xffffffff);                       /* the PBA is read-only */
	mmio_write8(pbase + 7, 0xff);
	CHECK("MSI-X PBA ignores writes", mmio_read32(pbase), 0);

	/* Vectors the table does not have read back as NO_VECTOR (4.1.5.1.2). */
	vcc_write16(d, VCC_MSIX, nvec);
	CHECK("config_msix_vector out of range", vcc_read16(d, VCC_MSIX), VIRTIO_NO_VECTOR);
	vcc_write16(d, VCC_MSIX, 0x7fe);
	CHECK("config_msix_vector out of range", vcc_read16(d, VCC_MSIX), VIRTIO_NO_VECTOR);
	vcc_write16(d, VCC_Q_SELECT, 0);
	vcc_write16(d, VCC_Q_MSIX, 0xfffe);
	CHECK("queue_msix_vector out of range", vcc_read16(d, VCC_Q_MSIX), VIRTIO_NO_VECTOR);
	vcc_write16(d, VCC_Q_MSIX, nvec);
	CHECK("queue_msix_vector out of range", vcc_read16(d, VCC_Q_MSIX), VIRTIO_NO_VECTOR);

	/* A valid vector 0, masked, for queue 0; MSI-X on: the interrupt
	 * waits in the PBA until unmasked. (Fixed delivery to vector 0x40:
	 * with interrupts off it stays pending in the local APIC.) */
	mmio_write32(table + 0, 0xfee00000);
	mmio_write32(table + 4, 0);
	mmio_write32(table + 8, 0x40);
	mmio_write32(table + 12, 1);
	vcc_write16(d, VCC_Q_MSIX, 0);
	CHECK("queue_msix_vector 0", vcc_read16(d, VCC_Q_MSIX), 0);
	pci_write16(d->slot, cap + 2u, (uint16_t)(ctrl | 0x8000));
	d->q.no_interrupt = false;
	good_request(d, "good request with a masked MSI-X vector");
	/* The interrupt follows the used index: give it a moment. */
	for (int i = 0; i < 100000 && !(mmio_read32(pbase) & 1); i++)
		cpu_relax();
	CHECK("MSI-X pending bit of the masked vector", mmio_read32(pbase) & 1, 1);
	mmio_write32(table + 12, 0);
	CHECK("MSI-X pending bit after unmasking", mmio_read32(pbase) & 1, 0);
	/* Function mask and garbage control bits, then MSI-X off again. */
	pci_write16(d->slot, cap + 2u, 0xffff);
	good_request(d, "good request with MSI-X function-masked");
	pci_write16(d->slot, cap + 2u, (uint16_t)(ctrl & ~0xc000));
	mmio_write32(table + 12, 1);
	CHECK("device_status after MSI-X abuse", vdev_status(d), st);
	good_request(d, "good request after MSI-X abuse");
	outcome = "ok";
}

/* ---- Status and features ---- */

/* arg 0: features the device did not offer; 1: without VERSION_1;
 * 2: feature selectors out of range; 3: DRIVER_OK without FEATURES_OK,
 * and a queue enabled before FEATURES_OK. */
static void hc_features(struct vdev *d, int arg)
{
	uint64_t unoffered = 0;
	const char *why;
	uint8_t st;

	MUST("reset", vdev_reset(d) ? "device_status does not read 0" : NULL);
	switch (arg) {
	case 0:
		for (int bit = 63; bit >= 0 && !unoffered; bit--)
			if (!((d->offered >> bit) & 1))
				unoffered = FEATURE(bit);
		why = vdev_negotiate(d, F_V1 | unoffered);
		CHECK_TRUE("FEATURES_OK refused for a feature not offered", why != NULL);
		outcome = "FEATURES_OK refused";
		break;
	case 1:
		why = vdev_negotiate(d, 0);
		outcome = why ? "FEATURES_OK refused" : "FEATURES_OK accepted";
		break;
	case 2:
		vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
		vcc_write32(d, VCC_DFSELECT, 0x12345);
		(void)vcc_read32(d, VCC_DF);
		vcc_write32(d, VCC_GFSELECT, 0);
		vcc_write32(d, VCC_GF, 0);
		vcc_write32(d, VCC_GFSELECT, 1);
		vcc_write32(d, VCC_GF, (uint32_t)(F_V1 >> 32));
		vcc_write32(d, VCC_GFSELECT, 0xffffffff);
		vcc_write32(d, VCC_GF, 0xffffffff);
		vcc_write32(d, VCC_GFSELECT, 0);
		CHECK("driver_feature word 0 after a write with select 0xffffffff", vcc_read32(d, VCC_GF), 0);
		vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
		CHECK_TRUE("FEATURES_OK after selector abuse", vdev_status(d) & VIRTIO_S_FEATURES_OK);
		MUST("queue setup", vq_setup(d, 0));
		MUST("DRIVER_OK", vdev_driver_ok(d));
		good_request(d, "good request after feature selector abuse");
		outcome = "ignored";
		break;
	case 3:
		vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
		vcc_write32(d, VCC_GFSELECT, 1);
		vcc_write32(d, VCC_GF, (uint32_t)(F_V1 >> 32));
		vcc_write16(d, VCC_Q_SELECT, 0);
		vcc_write64(d, VCC_Q_DESC, gpa(RAW_DESC));
		vcc_write64(d, VCC_Q_DRIVER, gpa(RAW_AVAIL));
		vcc_write64(d, VCC_Q_DEVICE, gpa(RAW_USED));
		vcc_write16(d, VCC_Q_ENABLE, 1);
		vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_DRIVER_OK);
		mmio_write16(d->notify_base, 0);
		st = vdev_status(d);
		CHECK_TRUE("DRIVER_OK without FEATURES_OK does not make the device live",
			   !(st & VIRTIO_S_DRIVER_OK) || (st & VIRTIO_S_NEEDS_RESET));
		outcome = st & VIRTIO_S_NEEDS_RESET ? "DEVICE_NEEDS_RESET" : "DRIVER_OK ignored";
		break;
	}
}

/* ---- Lifetime ---- */

/* A reset right after the kick, while the request may be in flight. */
static void hc_reset_in_flight(struct vdev *d, int arg)
{
	struct vbuf b[3];
	int di, n;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	for (int i = 0; i < 4; i++) {
		n = payload(d, b, &di);
		vq_add(d, b, n, false);
	}
	vq_kick(d, true);
	MUST("reset with requests in flight", vdev_reset(d) ? "device_status does not read 0" : NULL);
	outcome = "reset";
}

/* BAR 0 moved elsewhere in the window: registers and kicks follow. */
static void hc_bar_move(struct vdev *d, int arg)
{
	int bar = d->common_bar;
	uint32_t reg = 0x10 + 4 * (uint32_t)bar, old = pci_read32(d->slot, reg);
	uint64_t to = 0xe0000000ull - d->bar_size[bar] * (arg ? 2 : 1);
	const char *why = NULL;
	volatile uint32_t *marker = phys_ptr(RAM_MARKER_ADDR);

	pci_write32(d->slot, reg, (uint32_t)to);
	if (vdev_remap(d, &why))
		vtest_fail(VTEST_CODE_BASE + 95, "remap after a BAR move", why);
	CHECK("BAR address after a move", d->bar_addr[bar], to);
	MUST("init after a BAR move", vdev_init(d, F_V1, 0));
	good_request(d, "good request after a BAR move");
	/* A BAR over RAM must not hide it. */
	*marker = 0x5a5aa5a5;
	pci_write32(d->slot, reg, (uint32_t)RAM_MARKER_ADDR);
	CHECK("RAM under a BAR programmed over it", *marker, 0x5a5aa5a5);
	pci_write32(d->slot, reg, old);
	if (vdev_remap(d, &why))
		vtest_fail(VTEST_CODE_BASE + 96, "remap after moving the BAR back", why);
	outcome = "registers followed";
}

/* ---- More chains ---- */

/* An indirect table whose chain loops (arg 0) or points past its end
 * (arg 1). */
static void hc_indirect_chain(struct vdev *d, int arg)
{
	uint16_t dir = is_blk(d) ? 0 : VRING_DESC_F_WRITE;
	uint32_t len;

	MUST("init", vdev_init(d, F_V1 | F_IND, 0));
	for (int i = 0; i < 4; i++)
		set_desc(TABLE_A, i, gpa(DATA) + 16 * (uint64_t)i, 16, dir | VRING_DESC_F_NEXT, (uint16_t)(i + 1));
	TABLE_A[3].next = arg ? 100 : 0;
	set_desc(d->q.desc, 0, gpa(TABLE_A), 4 * 16, VRING_DESC_F_INDIRECT, 0);
	expect_needs_reset(d, kick_head0(d, &len), "a bad chain inside an indirect table");
}

/* Only zero-length buffers: nothing to write into. Completing with
 * length 0 or asking for a reset are both answers; hanging is not. */
static void hc_zero_length(struct vdev *d, int arg)
{
	uint32_t len = 0xdead;
	int rc;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	set_desc(d->q.desc, 0, gpa(DATA), 0, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(d->q.desc, 1, 0, 0, VRING_DESC_F_WRITE, 0);
	rc = kick_head0(d, &len);
	if (rc == VQ_OK)
		CHECK("zero-length buffers: used len", len, 0);
	else
		EXPECT_RC("zero-length buffers", rc, VQ_NEEDS_RESET);
	outcome = vq_strerror(rc);
}

/* avail->idx runs backwards after a completed request. */
static void hc_avail_backwards(struct vdev *d, int arg)
{
	uint32_t id, len;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	good_request(d, "good request before avail->idx runs backwards");
	d->q.avail[1] = (uint16_t)(d->q.avail_idx - 1);
	vq_kick(d, true);
	expect_needs_reset(d, vq_wait(d, &id, &len), "avail->idx runs backwards");
}

/* A thousand kicks with nothing available, then a good request. */
static void hc_kick_storm(struct vdev *d, int arg)
{
	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	for (int i = 0; i < 1000; i++)
		mmio_write16(d->q.notify, 0);
	good_request(d, "good request after a kick storm");
	outcome = "ignored";
}

/* Writable buffers adding up to 4 GiB: twenty of 205 MiB, all over the
 * same RAM from 16 MiB. */
static void hc_four_gib(struct vdev *d, int arg)
{
	struct vbuf b[24];
	int di, n, rc;
	uint32_t id, len;

	(void)arg;
	MUST("init (indirect)", vdev_init(d, F_V1 | F_IND, 0));
	n = payload(d, b, &di);
	for (int i = 0; i < 20; i++)
		b[di + i] = (struct vbuf){ 0x1000000, 205u << 20, true };
	if (is_blk(d)) {
		b[di + 20] = (struct vbuf){ gpa(&blk_status), 1, true };
		n = di + 21;
	} else {
		n = 20;
	}
	vq_add(d, b, n, false);
	vq_kick(d, true);
	rc = vq_wait(d, &id, &len);
	if (rc == VQ_OK && is_blk(d))
		CHECK("4 GiB of writable buffers: blk status", blk_status, BLK_S_IOERR);
	else if (rc != VQ_OK)
		EXPECT_RC("4 GiB of writable buffers", rc, VQ_NEEDS_RESET);
	outcome = vq_strerror(rc);
}

/* An indirect table of 1024 entries (the most the spec allows): rng gets
 * 1024 one-byte buffers; blk a read of 1022 sectors into 1022 buffers,
 * far above its seg_max, so IOERR is an answer too. */
static void hc_indirect_1024(struct vdev *d, int arg)
{
	struct vring_desc *t = phys_ptr(0x1000000);
	uint8_t *data = phys_ptr(0x1100000);
	uint32_t len;
	int rc;

	(void)arg;
	MUST("init (indirect)", vdev_init(d, F_V1 | F_IND, 0));
	for (int i = 0; i < 1024; i++)
		set_desc(t, i, gpa(data) + (uint64_t)i * SECTOR, is_blk(d) ? SECTOR : 1,
			 VRING_DESC_F_WRITE | (i < 1023 ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1));
	if (is_blk(d)) {
		hdr = (struct blk_hdr){ .type = BLK_T_IN, .sector = 0 };
		blk_status = 0xee;
		set_desc(t, 0, gpa(&hdr), sizeof(hdr), VRING_DESC_F_NEXT, 1);
		set_desc(t, 1023, gpa(&blk_status), 1, VRING_DESC_F_WRITE, 0);
	}
	memset(data, 0, 1024 * SECTOR);
	set_desc(d->q.desc, 0, gpa(t), 1024 * 16, VRING_DESC_F_INDIRECT, 0);
	rc = kick_head0(d, &len);
	EXPECT_RC("an indirect table of 1024 entries", rc, VQ_OK);
	if (!is_blk(d)) {
		CHECK("1024 one-byte buffers: used len", len, 1024);
		outcome = "completed";
		return;
	}
	CHECK_TRUE("1022-sector read: OK or IOERR", blk_status == BLK_S_OK || blk_status == BLK_S_IOERR);
	if (blk_status == BLK_S_OK) {
		CHECK("1022-sector read: used len", len, 1022 * SECTOR + 1);
		for (uint32_t i = 0; i < 1022 * SECTOR; i++)
			if (data[SECTOR + i] != vtest_disk_byte(i))
				CHECK("1022-sector read: data", data[SECTOR + i], vtest_disk_byte(i));
	}
	outcome = blk_status == BLK_S_OK ? "OK" : "IOERR";
}

/* The end of guest RAM, from the PVH memory map: a buffer in its last
 * bytes works, one that crosses the end does not. */
static uint64_t ram_end(void)
{
	const uint8_t *si = phys_ptr(guest_start_info);
	uint64_t map = 0, end = 0;
	uint32_t version, entries = 0;

	memcpy(&version, si + 4, 4);
	if (version >= 1) {
		memcpy(&map, si + 40, 8);
		memcpy(&entries, si + 48, 4);
	}
	for (uint32_t i = 0; i < entries && i < 128; i++) {
		const uint8_t *e = phys_ptr(map + 24ull * i);
		uint64_t addr, size;
		uint32_t type;

		memcpy(&addr, e, 8);
		memcpy(&size, e + 8, 8);
		memcpy(&type, e + 16, 4);
		if (type == 1 && addr + size <= 0x100000000ull && addr + size > end)
			end = addr + size;
	}
	return end;
}

static void hc_ram_end(struct vdev *d, int arg)
{
	struct vbuf b[3];
	int di, n;
	uint32_t id, len;
	uint64_t end = ram_end();

	CHECK_TRUE("the PVH memory map has RAM below 4 GiB", end >= 0x1000000);
	MUST("init", vdev_init(d, F_V1, 0));
	n = payload(d, b, &di);
	b[di].addr = end - b[di].len + (arg ? 1 : 0);
	vq_add(d, b, n, false);
	vq_kick(d, true);
	if (arg) {
		expect_needs_reset(d, vq_wait(d, &id, &len), "a buffer across the end of RAM");
		return;
	}
	EXPECT_RC("a buffer in the last bytes of RAM", vq_wait(d, &id, &len), VQ_OK);
	if (is_blk(d)) {
		CHECK("a buffer in the last bytes of RAM: status", blk_status, BLK_S_OK);
		CHECK("a buffer in the last bytes of RAM: data", *(volatile uint8_t *)phys_ptr(end - 1),
		      vtest_disk_byte(SECTOR - 1));
	} else {
		CHECK("a buffer in the last bytes of RAM: len", len, 64);
	}
	outcome = "completed";
}

/* Every status bit at once, FAILED included. */
static void hc_status_ff(struct vdev *d, int arg)
{
	uint8_t st;

	(void)arg;
	MUST("reset", vdev_reset(d) ? "device_status does not read 0" : NULL);
	vcc_write8(d, VCC_STATUS, 0xff);
	st = vdev_status(d);
	CHECK_TRUE("status 0xff: not DRIVER_OK without negotiation", !(st & VIRTIO_S_DRIVER_OK) || (st & VIRTIO_S_NEEDS_RESET));
	mmio_write16(d->notify_base, 0);
	outcome = "ignored";
}

/* ---- PCI ---- */

#define ECAM_BASE 0xe0000000ull

static uint64_t ecam(int slot, int fn, uint32_t off)
{
	return ECAM_BASE + ((uint64_t)slot << 15 | (uint64_t)fn << 12 | off);
}

/* Read-only header fields, unimplemented BARs, functions and slots that
 * do not exist, extended config space, both mechanisms. */
static void hc_pci_config(struct vdev *d, int arg)
{
	uint32_t id = pci_read32(d->slot, 0), class_rev = pci_read32(d->slot, 8);
	uint8_t st;

	(void)arg;
	MUST("init", vdev_init(d, F_V1, 0));
	st = vdev_status(d);
	pci_write32(d->slot, 0, 0x12345678);
	CHECK("PCI vendor/device ID is read-only", pci_read32(d->slot, 0), id);
	pci_write32(d->slot, 8, 0xffffffff);
	CHECK("PCI class/revision is read-only", pci_read32(d->slot, 8), class_rev);
	pci_write8(d->slot, 0x34, 0x10);
	CHECK("capability pointer is read-only", pci_read8(d->slot, 0x34) >= 0x40, 1);
	for (int bar = 0; bar < 6; bar++) {
		if (d->bar_size[bar] || bar == d->common_bar)
			continue;
		pci_write32(d->slot, 0x10 + 4u * (uint32_t)bar, 0xffffffff);
		CHECK("an unimplemented BAR reads 0 after all-ones", pci_read32(d->slot, 0x10 + 4u * (uint32_t)bar), 0);
	}
	/* Functions 1-7 of this slot, and through ECAM too. */
	for (int fn = 1; fn < 8; fn++) {
		outl(X86_PORT_PCI_CONFIG, 0x80000000u | (uint32_t)d->slot << 11 | (uint32_t)fn << 8);
		CHECK("a function that does not exist (0xCFC)", inl(X86_PORT_PCI_CONFIG + 4), 0xffffffff);
		CHECK("a function that does not exist (ECAM)", mmio_read32(ecam(d->slot, fn, 0)), 0xffffffff);
		mmio_write32(ecam(d->slot, fn, 0x10), 0);
	}
	/* Bus 1..255 through 0xCF8, with the enable bit clear, register 0xfc. */
	outl(X86_PORT_PCI_CONFIG, 0x80000000u | 1u << 16 | (uint32_t)d->slot << 11);
	CHECK("bus 1 does not exist", inl(X86_PORT_PCI_CONFIG + 4), 0xffffffff);
	outl(X86_PORT_PCI_CONFIG, 0x80ff0000u | 0xfcu);
	(void)inl(X86_PORT_PCI_CONFIG + 4);
	outl(X86_PORT_PCI_CONFIG, (uint32_t)d->slot << 11);
	(void)inl(X86_PORT_PCI_CONFIG + 4);
	outl(X86_PORT_PCI_CONFIG + 4, 0xffffffff);
	(void)inw(X86_PORT_PCI_CONFIG + 6);
	/* Extended config space of this function through ECAM: reads, and
	 * writes that must not reach the header. */
	for (uint32_t off = 0x100; off < 0x1000; off += 0x1fc)
		mmio_write32(ecam(d->slot, 0, off), 0xffffffff);
	(void)mmio_read64(ecam(d->slot, 0, 0xff8));
	mmio_write8(ecam(d->slot, 0, 0xfff), 0xff);
	CHECK("vendor/device ID through ECAM", mmio_read32(ecam(d->slot, 0, 0)), id);
	CHECK("device_status after PCI config abuse", vdev_status(d), st);
	good_request(d, "good request after PCI config abuse");
	outcome = "ignored";
}

/* Our BAR 0 on top of another function's BAR 0, then back. */
static void hc_bar_overlap(struct vdev *d, int arg)
{
	int bar = d->common_bar, other = -1;
	uint32_t reg = 0x10 + 4 * (uint32_t)bar, old = pci_read32(d->slot, reg), target = 0;
	const char *why = NULL;

	(void)arg;
	for (int slot = 1; slot < 32 && other < 0; slot++) {
		if (slot == d->slot || (pci_read32(slot, 0) & 0xffff) == 0xffff)
			continue;
		target = pci_read32(slot, 0x10) & ~0xfu;
		if (target)
			other = slot;
	}
	if (other < 0) {
		outcome = "no other function";
		return;
	}
	pci_write32(d->slot, reg, target);
	(void)mmio_read32(target);
	(void)mmio_read16(target + VCC_NUMQ);
	pci_write32(d->slot, reg, 0xffffffff); /* sizing with decoding on */
	(void)pci_read32(d->slot, reg);
	pci_write32(d->slot, reg, old);
	if (vdev_remap(d, &why))
		vtest_fail(VTEST_CODE_BASE + 98, "remap after moving the BAR back", why);
	outcome = "survived";
}

/* ---- blk requests that are well-formed chains but bad requests ---- */

/* arg selects the request; the answer must be an error status. */
static void hc_blk_request(struct vdev *d, int arg)
{
	struct vbuf b[4];
	int n = 0, rc;
	uint32_t len;
	uint32_t type = BLK_T_IN;
	uint64_t sector = 0;
	uint32_t hdr_len = sizeof(hdr), data_len = SECTOR;
	bool data_write = true;

	MUST("init", vdev_init(d, F_V1, 0));
	switch (arg) {
	case 0: hdr_len = 8; break;                          /* header too short */
	case 1: sector = 0xffffffffffffffffull; break;       /* overflows */
	case 2: data_write = false; break;                   /* IN into a readable buffer */
	case 3: type = BLK_T_GET_ID, data_len = 4; break;    /* ID buffer too small */
	case 4: type = BLK_T_FLUSH; break;                   /* FLUSH with data */
	case 5: type = BLK_T_DISCARD, data_write = false, data_len = 16; break; /* not negotiated */
	case 6: type = BLK_T_OUT, data_write = false, sector = 0xfffffffffffffff0ull; break;
	case 7: data_len = SECTOR + 1; break;                /* not whole sectors */
	}
	hdr = (struct blk_hdr){ .type = type, .sector = sector };
	blk_status = 0xee;
	b[n++] = (struct vbuf){ gpa(&hdr), hdr_len, false };
	b[n++] = (struct vbuf){ gpa(DATA), data_len, data_write };
	b[n++] = (struct vbuf){ gpa(&blk_status), 1, true };
	rc = vq_request(d, b, n, false, &len);
	if (rc == VQ_NEEDS_RESET) {
		outcome = "DEVICE_NEEDS_RESET";
		return;
	}
	EXPECT_RC("a bad virtio-blk request", rc, VQ_OK);
	CHECK_TRUE("a bad virtio-blk request completes with IOERR or UNSUPP",
		   blk_status == BLK_S_IOERR || blk_status == BLK_S_UNSUPP);
	outcome = blk_status == BLK_S_IOERR ? "IOERR" : "UNSUPP";
}

/* A request with no device-writable byte for the status. */
static void hc_blk_no_status(struct vdev *d, int arg)
{
	struct vbuf b[2];
	uint32_t id, len;
	int rc;

	MUST("init", vdev_init(d, F_V1, 0));
	hdr = (struct blk_hdr){ .type = BLK_T_OUT, .sector = 0x100000 };
	b[0] = (struct vbuf){ gpa(&hdr), sizeof(hdr), false };
	b[1] = (struct vbuf){ gpa(DATA), arg ? 0 : SECTOR, arg != 0 }; /* 1: a zero-length "status" */
	vq_add(d, b, 2, false);
	vq_kick(d, true);
	rc = vq_wait(d, &id, &len);
	if (rc == VQ_OK)
		CHECK("request without a status byte: used len", len, 0);
	else
		EXPECT_RC("request without a status byte", rc, VQ_NEEDS_RESET);
	outcome = vq_strerror(rc);
}

/* ---- The run ---- */

struct hostile_case {
	const char *name;
	void (*fn)(struct vdev *d, int arg);
	int arg;
	bool blk_only;
};

static const struct hostile_case cases[] = {
	{ "descriptor loop 0 -> 1 -> 0", hc_loop, 0, false },
	{ "descriptor loop 1 -> 1", hc_loop, 1, false },
	{ "chain longer than the queue", hc_long_chain, 0, false },
	{ "head index = queue size", hc_bad_head, 0, false },
	{ "head index 0xffff", hc_bad_head, 1, false },
	{ "buffer at 0xffffffff0000", hc_bad_buffer, 0, false },
	{ "buffer address + length wraps", hc_bad_buffer, 1, false },
	{ "buffer length 0xffffffff", hc_bad_buffer, 2, false },
	{ "buffer on the device's own BAR", hc_bad_buffer, 3, false },
	{ "buffer beyond RAM", hc_bad_buffer, 4, false },
	{ "indirect table length not a multiple of 16", hc_indirect, 0, false },
	{ "indirect table length 0", hc_indirect, 1, false },
	{ "indirect table of 1025 entries", hc_indirect, 2, false },
	{ "nested indirect table", hc_indirect, 3, false },
	{ "indirect without INDIRECT_DESC", hc_indirect, 4, false },
	{ "indirect descriptor with NEXT", hc_indirect, 5, false },
	{ "indirect table outside RAM", hc_indirect, 6, false },
	{ "avail->idx far ahead", hc_avail_ahead, 0, false },
	{ "readable buffer after a writable one", hc_readable_after_writable, 0, false },
	{ "device writes over the avail ring", hc_overwrite_rings, 0, false },
	{ "device writes over the descriptor table", hc_overwrite_rings, 1, false },
	{ "descriptor table outside RAM", hc_bad_rings, 0, false },
	{ "avail ring on MMIO", hc_bad_rings, 1, false },
	{ "used ring beyond RAM", hc_bad_rings, 2, false },
	{ "misaligned descriptor table", hc_bad_rings, 3, false },
	{ "used ring on the device's own BAR", hc_bad_rings, 4, false },
	{ "descriptor table address wraps", hc_bad_rings, 5, false },
	{ "queue_size 3", hc_queue_size, 0, false },
	{ "queue_size 0", hc_queue_size, 1, false },
	{ "queue_size twice the maximum", hc_queue_size, 2, false },
	{ "queue_size 0xffff", hc_queue_size, 3, false },
	{ "writes to read-only fields", hc_read_only, 0, false },
	{ "queue_select out of range", hc_queue_select, 0, false },
	{ "odd-width and straddling common config accesses", hc_odd_width, 0, false },
	{ "accesses beyond device config, ISR, notify", hc_beyond, 0, false },
	{ "PCI_CFG window abuse", hc_pci_cfg_window, 0, false },
	{ "MSI-X garbage and out-of-range vectors", hc_msix, 0, false },
	{ "features not offered", hc_features, 0, false },
	{ "no VERSION_1", hc_features, 1, false },
	{ "feature selectors out of range", hc_features, 2, false },
	{ "DRIVER_OK without FEATURES_OK", hc_features, 3, false },
	{ "reset with requests in flight", hc_reset_in_flight, 0, false },
	{ "indirect chain that loops", hc_indirect_chain, 0, false },
	{ "indirect next beyond its table", hc_indirect_chain, 1, false },
	{ "only zero-length buffers", hc_zero_length, 0, false },
	{ "avail->idx runs backwards", hc_avail_backwards, 0, false },
	{ "kick storm", hc_kick_storm, 0, false },
	{ "writable buffers of 4 GiB in total", hc_four_gib, 0, false },
	{ "indirect table of 1024 entries", hc_indirect_1024, 0, false },
	{ "buffer in the last bytes of RAM", hc_ram_end, 0, false },
	{ "buffer across the end of RAM", hc_ram_end, 1, false },
	{ "device_status 0xff", hc_status_ff, 0, false },
	{ "PCI config abuse", hc_pci_config, 0, false },
	{ "BAR 0 over another function's BAR", hc_bar_overlap, 0, false },
	{ "BAR 0 moved", hc_bar_move, 0, false },
	{ "BAR 0 moved again", hc_bar_move, 1, false },
	{ "blk: header of 8 bytes", hc_blk_request, 0, true },
	{ "blk: sector 2^64 - 1", hc_blk_request, 1, true },
	{ "blk: read into a readable buffer", hc_blk_request, 2, true },
	{ "blk: GET_ID into 4 bytes", hc_blk_request, 3, true },
	{ "blk: FLUSH with data", hc_blk_request, 4, true },
	{ "blk: DISCARD not negotiated", hc_blk_request, 5, true },
	{ "blk: write at sector 2^64 - 16", hc_blk_request, 6, true },
	{ "blk: read of 513 bytes", hc_blk_request, 7, true },
	{ "blk: no status byte", hc_blk_no_status, 0, true },
	{ "blk: zero-length status buffer", hc_blk_no_status, 1, true },
};

static int run_cases(struct vdev *d)
{
	int n = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hostile_case *c = &cases[i];

		if (c->blk_only && !is_blk(d))
			continue;
		serial_puts("kvmlite guest: hostile ");
		serial_puts(vdev_name(d));
		serial_puts(": ");
		serial_puts(c->name);
		serial_puts(": ");
		outcome = "?";
		c->fn(d, c->arg);
		serial_puts(outcome);
		/* Whatever happened: reset, set up again, one good request. */
		MUST("re-initialization after a hostile case", vdev_init(d, F_V1, 0));
		good_request(d, "good request after reset");
		serial_puts(", recovered\n");
		n++;
	}
	MUST("reset at the end", vdev_reset(d) ? "device_status does not read 0" : NULL);
	return n;
}

void test_virtio_hostile(void)
{
	static const uint16_t ids[] = { VIRTIO_ID_RNG, VIRTIO_ID_BLOCK };
	int devices = 0, total = 0;

	serial_puts("kvmlite guest: test=virtio-hostile\n");
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct vdev d;
		const char *why = NULL;

		if (vdev_find(ids[i], 0, &d, &why)) {
			if (why) {
				d.device_id = ids[i];
				vtest_fail(VTEST_CODE_BASE + 97, vdev_name(&d), why);
			}
			continue;
		}
		total += run_cases(&d);
		devices++;
	}
	CHECK_TRUE("a virtio-rng or virtio-blk device to attack", devices > 0);
	serial_puts("kvmlite guest: hostile: ");
	serial_put_dec((uint64_t)total);
	serial_puts(" cases on ");
	serial_put_dec((uint64_t)devices);
	serial_puts(" devices survived\n");
	serial_puts("kvmlite guest: test=virtio-hostile passed\n");
	test_exit(0);
}
