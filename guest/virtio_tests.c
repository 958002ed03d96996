/* virtio test modes for the tiny guest, on the driver in virtio.c:
 *   test=virtio-rng      entropy through queue 0, direct and indirect
 *                        chains, then again with EVENT_IDX
 *   test=virtio-blk      the 1 MiB pattern disk tests/guest/run attaches:
 *                        reads, a write + flush + read back, GET_ID
 *   test=virtio-blk-ro   the same disk read-only: writes fail with IOERR
 *   test=virtio-hostile  a driver that breaks every rule it can, on every
 *                        virtio-rng and virtio-blk found; after each case
 *                        the device is reset and must work again
 * Results go to the test device (0: pass); each check has its own code. */
#include "virtio.h"

void vtest_fail(int code, const char *what, const char *why)
{
	if (code > 255)
		code = 255;
	serial_puts("kvmlite guest: FAIL: ");
	serial_puts(what);
	serial_puts(": ");
	serial_puts(why);
	serial_puts(" (exit code ");
	serial_put_dec((uint64_t)code);
	serial_puts(")\n");
	test_exit((uint32_t)code);
}

void vtest_say(const char *a, const char *b, const char *c)
{
	serial_puts("kvmlite guest: ");
	serial_puts(a);
	if (b)
		serial_puts(b);
	if (c)
		serial_puts(c);
	serial_putc('\n');
}

void vtest_find_device(uint16_t id, struct vdev *d)
{
	const char *why = NULL;

	if (vdev_find(id, 0, d, &why)) {
		d->device_id = id;
		vtest_fail(200, vdev_name(d), why ? why : "no such device on PCI bus 0");
	}
	if (vdev_reset(d))
		vtest_fail(201, vdev_name(d), "device_status does not read 0 after reset");
	vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE);
	vcc_write8(d, VCC_STATUS, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	vdev_read_features(d);
	serial_puts("kvmlite guest: ");
	serial_puts(vdev_name(d));
	serial_puts(" at slot ");
	serial_put_dec((uint64_t)d->slot);
	serial_puts(", BAR0 ");
	serial_put_hex(d->bar_addr[0]);
	serial_puts(" size ");
	serial_put_hex(d->bar_size[0]);
	serial_puts(", features ");
	serial_put_hex(d->offered);
	serial_putc('\n');
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- test=virtio-rng ---------------------------------------------------- */

#define RNG_READ 64

/* Three reads of 64 bytes into buf: a single buffer; an indirect table of
 * two (when indirect); two chained descriptors. */
static void rng_three_reads(struct vdev *d, uint8_t *buf, bool indirect)
{
	uint32_t len;
	struct vbuf one[1] = { { gpa(buf), RNG_READ, true } };
	struct vbuf two[2] = { { gpa(buf + RNG_READ), 32, true }, { gpa(buf + RNG_READ + 32), 32, true } };
	struct vbuf split[2] = { { gpa(buf + 2 * RNG_READ), 16, true }, { gpa(buf + 2 * RNG_READ + 16), 48, true } };

	memset(buf, 0, 3 * RNG_READ);
	CHECK("rng read 1 (one buffer)", vq_request(d, one, 1, false, &len), VQ_OK);
	CHECK("rng read 1: used len", len, RNG_READ);
	CHECK("rng read 2 (two buffers)", vq_request(d, two, 2, indirect, &len), VQ_OK);
	CHECK("rng read 2: used len", len, RNG_READ);
	CHECK("rng read 3 (chain of two)", vq_request(d, split, 2, false, &len), VQ_OK);
	CHECK("rng read 3: used len", len, RNG_READ);
}

/* Three reads posted together, one notify: all three come back. */
static void rng_batch(struct vdev *d, uint8_t *buf)
{
	uint16_t heads[3];
	bool seen[3] = { false };

	memset(buf, 0, 3 * RNG_READ);
	for (int i = 0; i < 3; i++) {
		struct vbuf b = { gpa(buf + i * RNG_READ), RNG_READ, true };
		heads[i] = vq_add(d, &b, 1, false);
	}
	vq_kick(d, false);
	for (int n = 0; n < 3; n++) {
		uint32_t id = 0xffff, len = 0;
		int i;

		CHECK("rng batch: completion", vq_wait(d, &id, &len), VQ_OK);
		for (i = 0; i < 3 && heads[i] != id; i++)
			;
		CHECK_TRUE("rng batch: used id is one of ours", i < 3);
		CHECK_TRUE("rng batch: used id seen once", !seen[i]);
		seen[i] = true;
		CHECK("rng batch: used len", len, RNG_READ);
	}
}

static void rng_check_entropy(const uint8_t *buf, const char *run)
{
	for (int i = 0; i < 3; i++)
		CHECK_TRUE("rng read is not all zero", !all_zero(buf + i * RNG_READ, RNG_READ));
	CHECK_TRUE("rng reads 1 and 2 differ", memcmp(buf, buf + RNG_READ, RNG_READ) != 0);
	CHECK_TRUE("rng reads 2 and 3 differ", memcmp(buf + RNG_READ, buf + 2 * RNG_READ, RNG_READ) != 0);
	CHECK_TRUE("rng reads 1 and 3 differ", memcmp(buf, buf + 2 * RNG_READ, RNG_READ) != 0);
	vtest_say("virtio-rng: 3 x 64 bytes, ", run, ": ok");
}

void test_virtio_rng(void)
{
	struct vdev d;
	uint8_t *buf = virtio_scratch;
	uint8_t first[3 * RNG_READ];

	serial_puts("kvmlite guest: test=virtio-rng\n");
	vtest_find_device(VIRTIO_ID_RNG, &d);
	CHECK_TRUE("rng offers INDIRECT_DESC", d.offered & FEATURE(VIRTIO_F_INDIRECT_DESC));
	CHECK_TRUE("rng offers EVENT_IDX", d.offered & FEATURE(VIRTIO_F_EVENT_IDX));

	/* Run 1: INDIRECT_DESC, the second read through an indirect table. */
	MUST("virtio-rng init (INDIRECT_DESC)", vdev_init(&d, FEATURE(VIRTIO_F_VERSION_1) | FEATURE(VIRTIO_F_INDIRECT_DESC), 0));
	rng_three_reads(&d, buf, true);
	rng_check_entropy(buf, "indirect");
	memcpy(first, buf, sizeof(first));

	/* Run 2: EVENT_IDX; the driver kicks only when avail_event asks,
	 * so a device that does not keep it current stalls here. */
	MUST("virtio-rng init (EVENT_IDX)", vdev_init(&d, FEATURE(VIRTIO_F_VERSION_1) | FEATURE(VIRTIO_F_EVENT_IDX), 0));
	rng_three_reads(&d, buf, false);
	rng_check_entropy(buf, "event-idx");
	CHECK_TRUE("rng differs across runs", memcmp(first, buf, sizeof(first)) != 0);
	rng_batch(&d, buf);
	rng_check_entropy(buf, "event-idx batch");

	/* A queue smaller than the device's maximum. */
	MUST("virtio-rng init (queue of 2)", vdev_init(&d, FEATURE(VIRTIO_F_VERSION_1), 2));
	for (int i = 0; i < 5; i++) {
		rng_three_reads(&d, buf, false);
		rng_check_entropy(buf, "queue of 2");
	}
	CHECK("rng status at the end", vdev_status(&d),
	      VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
	vdev_reset(&d);
	serial_puts("kvmlite guest: test=virtio-rng passed\n");
	test_exit(0);
}

/* ---- test=virtio-blk ---------------------------------------------------- */

#define VIRTIO_BLK_F_RO     5
#define VIRTIO_BLK_F_FLUSH  9
#define BLK_T_IN     0
#define BLK_T_OUT    1
#define BLK_T_FLUSH  4
#define BLK_T_GET_ID 8
#define BLK_S_OK     0
#define BLK_S_IOERR  1
#define BLK_S_UNSUPP 2
#define SECTOR       512
#define DISK_SECTORS 2048 /* tests/guest/run makes a 1 MiB image */


/* What test=virtio-blk writes to sector 1 (tests/guest/run checks it). */
static uint8_t written_byte(uint32_t i)
{
	return (uint8_t)(i * 13 + 0x5a);
}

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static struct blk_hdr blk_hdr __attribute__((aligned(16)));
static uint8_t blk_status;

/* One request: header, data (device-writable for IN and GET_ID), status.
 * With indirect, the whole chain is one indirect table and the data is
 * split in two unequal buffers. Returns the status byte, or 0x100 + the
 * vq error code. */
static int blk_request(struct vdev *d, uint32_t type, uint64_t sector, uint8_t *data, uint32_t len, bool indirect,
		       uint32_t *used_len)
{
	bool data_in = type == BLK_T_IN || type == BLK_T_GET_ID;
	struct vbuf b[4];
	int n = 0, rc;

	blk_hdr = (struct blk_hdr){ .type = type, .sector = sector };
	blk_status = 0xee;
	b[n++] = (struct vbuf){ gpa(&blk_hdr), sizeof(blk_hdr), false };
	if (len && indirect && len > SECTOR) {
		b[n++] = (struct vbuf){ gpa(data), 1536 < len ? 1536 : SECTOR, data_in };
		b[n] = (struct vbuf){ gpa(data) + b[n - 1].len, len - b[n - 1].len, data_in };
		n++;
	} else if (len) {
		b[n++] = (struct vbuf){ gpa(data), len, data_in };
	}
	b[n++] = (struct vbuf){ gpa(&blk_status), 1, true };
	rc = vq_request(d, b, n, indirect, used_len);
	if (rc != VQ_OK) {
		serial_puts("kvmlite guest: virtio-blk request: ");
		serial_puts(vq_strerror(rc));
		serial_putc('\n');
		return 0x100 - rc;
	}
	return blk_status;
}

static void check_pattern(const uint8_t *data, uint64_t sector, uint32_t len, const char *what)
{
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = sector * SECTOR + i;
		if (data[i] != vtest_disk_byte(o)) {
			serial_puts("kvmlite guest: at disk byte ");
			serial_put_hex(o);
			serial_putc('\n');
			CHECK(what, data[i], vtest_disk_byte(o));
		}
	}
}

void test_virtio_blk(bool read_only)
{
	struct vdev d;
	uint8_t *data = virtio_scratch;
	uint64_t features = FEATURE(VIRTIO_F_VERSION_1) | FEATURE(VIRTIO_F_INDIRECT_DESC);
	uint32_t len;
	char id[21];

	serial_puts(read_only ? "kvmlite guest: test=virtio-blk-ro\n" : "kvmlite guest: test=virtio-blk\n");
	vtest_find_device(VIRTIO_ID_BLOCK, &d);
	CHECK_TRUE("blk offers FLUSH", d.offered & FEATURE(VIRTIO_BLK_F_FLUSH));
	CHECK("blk offers RO exactly on a read-only disk", !!(d.offered & FEATURE(VIRTIO_BLK_F_RO)), read_only);
	features |= d.offered & (FEATURE(VIRTIO_BLK_F_FLUSH) | FEATURE(VIRTIO_BLK_F_RO));
	MUST("virtio-blk init", vdev_init(&d, features, 0));
	CHECK_TRUE("blk has a device config", d.devcfg_len >= 8);
	CHECK("blk capacity (sectors)", vdev_cfg_read64(&d, 0), DISK_SECTORS);

	/* Reads: sector 0; the last 8 sectors through an indirect table
	 * with the data split off a sector boundary; past the end. */
	memset(data, 0, 8 * SECTOR);
	CHECK("blk read sector 0: status", blk_request(&d, BLK_T_IN, 0, data, SECTOR, false, &len), BLK_S_OK);
	CHECK("blk read sector 0: used len (data + status)", len, SECTOR + 1);
	check_pattern(data, 0, SECTOR, "blk sector 0 pattern");
	memset(data, 0, 8 * SECTOR);
	CHECK("blk read last 8 sectors: status",
	      blk_request(&d, BLK_T_IN, DISK_SECTORS - 8, data, 8 * SECTOR, true, &len), BLK_S_OK);
	CHECK("blk read last 8 sectors: used len", len, 8 * SECTOR + 1);
	check_pattern(data, DISK_SECTORS - 8, 8 * SECTOR, "blk last sectors pattern");
	CHECK("blk read past the end: status", blk_request(&d, BLK_T_IN, DISK_SECTORS, data, SECTOR, false, &len),
	      BLK_S_IOERR);
	CHECK("blk read across the end: status",
	      blk_request(&d, BLK_T_IN, DISK_SECTORS - 1, data, 2 * SECTOR, false, &len), BLK_S_IOERR);
	CHECK("blk read of half a sector: status", blk_request(&d, BLK_T_IN, 0, data, 256, false, &len), BLK_S_IOERR);
	CHECK("blk unknown request type: status", blk_request(&d, 0x7777, 0, data, SECTOR, false, &len), BLK_S_UNSUPP);

	/* Write sector 1, flush, read it back. */
	for (uint32_t i = 0; i < SECTOR; i++)
		data[i] = written_byte(i);
	if (read_only) {
		CHECK("blk write to a read-only disk: status",
		      blk_request(&d, BLK_T_OUT, 1, data, SECTOR, false, &len), BLK_S_IOERR);
		memset(data, 0, SECTOR);
		CHECK("blk read sector 1: status", blk_request(&d, BLK_T_IN, 1, data, SECTOR, false, &len), BLK_S_OK);
		check_pattern(data, 1, SECTOR, "blk sector 1 unchanged on a read-only disk");
	} else {
		CHECK("blk write sector 1: status", blk_request(&d, BLK_T_OUT, 1, data, SECTOR, false, &len), BLK_S_OK);
		CHECK("blk flush: status", blk_request(&d, BLK_T_FLUSH, 0, NULL, 0, false, &len), BLK_S_OK);
		memset(data, 0, SECTOR);
		CHECK("blk read sector 1: status", blk_request(&d, BLK_T_IN, 1, data, SECTOR, false, &len), BLK_S_OK);
		for (uint32_t i = 0; i < SECTOR; i++)
			CHECK("blk sector 1 reads back what was written", data[i], written_byte(i));
		CHECK("blk write past the end: status",
		      blk_request(&d, BLK_T_OUT, DISK_SECTORS, data, SECTOR, false, &len), BLK_S_IOERR);
	}
	/* Sector 2 is untouched either way. */
	CHECK("blk read sector 2: status", blk_request(&d, BLK_T_IN, 2, data, SECTOR, true, &len), BLK_S_OK);
	check_pattern(data, 2, SECTOR, "blk sector 2 pattern");

	/* GET_ID: 20 bytes, NUL-padded when shorter; the host checks it. */
	memset(data, 0xaa, 20);
	CHECK("blk GET_ID: status", blk_request(&d, BLK_T_GET_ID, 0, data, 20, false, &len), BLK_S_OK);
	memcpy(id, data, 20);
	id[20] = 0;
	for (int i = 0; i < 20; i++)
		CHECK_TRUE("blk GET_ID is printable and NUL-padded", (id[i] >= 0x20 && id[i] < 0x7f) || !id[i]);
	CHECK_TRUE("blk GET_ID is not empty", id[0] != 0);
	vtest_say("virtio-blk id '", id, "'");

	CHECK("blk status at the end", vdev_status(&d),
	      VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
	vdev_reset(&d);
	serial_puts(read_only ? "kvmlite guest: test=virtio-blk-ro passed\n" : "kvmlite guest: test=virtio-blk passed\n");
	test_exit(0);
}
