/* Host-side payload decompression: every format round-trips data the
 * test compresses with the libraries themselves; truncation, corruption
 * and oversized output are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compress_fixtures.h"
#include "decompress.h"

#define DATA_LEN (3u << 20) /* several output growth steps and lz4 blocks */

static uint8_t *data;

/* Compressible but not trivial: words from a small vocabulary, picked by
 * an LCG, with some raw noise. */
static int setup_data(void **state)
{
	static const char *words[] = { "kernel ", "virtio ", "guest ", "page ", "\n", "0x1000 ", "boot " };
	data = malloc(DATA_LEN);
	if (!data)
		return -1;
	uint32_t x = 12345;
	size_t i = 0;
	while (i < DATA_LEN) {
		x = x * 1103515245 + 12345;
		if ((x >> 16) % 8 == 7) {
			data[i++] = (uint8_t)(x >> 24);
			continue;
		}
		const char *w = words[(x >> 16) % 7];
		for (; *w && i < DATA_LEN; w++)
			data[i++] = (uint8_t)*w;
	}
	return 0;
}

static struct blob compress_fresh(int fmt, const uint8_t *in, size_t len)
{
	switch (fmt) {
	case DECOMP_GZIP: return gzip_compress(in, len);
	case DECOMP_XZ: return xz_compress(in, len, 2, true); /* BCJ + LZMA2, like Linux */
	case DECOMP_LZMA: return lzma_alone_compress(in, len);
	case DECOMP_ZSTD: return zstd_compress(in, len, false);
	case DECOMP_LZ4_LEGACY: return lz4_legacy_compress(in, len, 1u << 20);
	}
	fail();
	return (struct blob){ 0 };
}

static const int formats[] = { DECOMP_GZIP, DECOMP_XZ, DECOMP_LZMA, DECOMP_ZSTD, DECOMP_LZ4_LEGACY };
#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

/* xz and lzma are slow to compress: the whole data set is compressed once
 * per format and copies are handed out. */
static struct blob cache[NFORMATS];

static struct blob compress_as(int fmt, const uint8_t *in, size_t len)
{
	if (in != data || len != DATA_LEN)
		return compress_fresh(fmt, in, len);
	for (size_t i = 0; i < NFORMATS; i++) {
		if (formats[i] != fmt)
			continue;
		if (!cache[i].buf)
			cache[i] = compress_fresh(fmt, in, len);
		struct blob b = { malloc(cache[i].len), cache[i].len };
		assert_non_null(b.buf);
		memcpy(b.buf, cache[i].buf, b.len);
		return b;
	}
	fail();
	return (struct blob){ 0 };
}

static int teardown_data(void **state)
{
	for (size_t i = 0; i < NFORMATS; i++)
		free(cache[i].buf);
	free(data);
	return 0;
}

static void expect_roundtrip(const struct blob *b, size_t max_out)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	assert_int_equal(decompress(b->buf, b->len, &out, &out_len, max_out), 0);
	assert_int_equal(out_len, DATA_LEN);
	assert_memory_equal(out, data, DATA_LEN);
	free(out);
}

static void test_detect(void **state)
{
	for (size_t i = 0; i < NFORMATS; i++) {
		struct blob b = compress_as(formats[i], data, 4096);
		assert_int_equal(decompress_detect(b.buf, b.len), formats[i]);
		free(b.buf);
	}
	static const uint8_t bz2[] = "BZh91AY&SY";
	assert_int_equal(decompress_detect(bz2, sizeof(bz2) - 1), DECOMP_BZIP2);
	static const uint8_t lzo[] = { 0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a };
	assert_int_equal(decompress_detect(lzo, sizeof(lzo)), DECOMP_LZO);
	static const uint8_t elf[] = { 0x7f, 'E', 'L', 'F', 2, 1, 1, 0 };
	assert_int_equal(decompress_detect(elf, sizeof(elf)), DECOMP_UNKNOWN);
	assert_int_equal(decompress_detect(elf, 0), DECOMP_UNKNOWN);
	static const uint8_t gz_short[] = { 0x1f, 0x8b };
	assert_int_equal(decompress_detect(gz_short, 2), DECOMP_UNKNOWN);
	assert_string_equal(decompress_format_name(DECOMP_ZSTD), "zstd");
}

static void test_roundtrip(void **state)
{
	for (size_t i = 0; i < NFORMATS; i++) {
		struct blob b = compress_as(formats[i], data, DATA_LEN);
		assert_true(b.len < DATA_LEN);
		expect_roundtrip(&b, DECOMPRESS_MAX_DEFAULT);
		expect_roundtrip(&b, DATA_LEN); /* exactly the limit is fine */
		free(b.buf);
	}
}

/* Linux appends the le32 decompressed size after each payload. */
static void test_roundtrip_with_size_trailer(void **state)
{
	for (size_t i = 0; i < NFORMATS; i++) {
		struct blob b = compress_as(formats[i], data, DATA_LEN);
		b.buf = realloc(b.buf, b.len + 4);
		assert_non_null(b.buf);
		put_le32(b.buf + b.len, DATA_LEN);
		b.len += 4;
		expect_roundtrip(&b, DECOMPRESS_MAX_DEFAULT);
		free(b.buf);
	}
}

static void test_truncated(void **state)
{
	for (size_t i = 0; i < NFORMATS; i++) {
		struct blob b = compress_as(formats[i], data, DATA_LEN);
		const size_t cuts[] = { b.len / 2, b.len - 1, 7 };
		for (size_t j = 0; j < 3; j++) {
			uint8_t *out = (uint8_t *)1;
			size_t out_len = 1;
			int err = decompress(b.buf, cuts[j], &out, &out_len, DECOMPRESS_MAX_DEFAULT);
			/* lz4 legacy has no end marker: a cut right after a
			 * block is a shorter valid stream, b.len - 1 is not. */
			assert_int_equal(err, -EINVAL);
			assert_null(out);
			assert_int_equal(out_len, 0);
		}
		free(b.buf);
	}
}

static void test_max_out(void **state)
{
	for (size_t i = 0; i < NFORMATS; i++) {
		struct blob b = compress_as(formats[i], data, DATA_LEN);
		uint8_t *out = (uint8_t *)1;
		size_t out_len = 1;
		assert_int_equal(decompress(b.buf, b.len, &out, &out_len, DATA_LEN - 1), -EFBIG);
		assert_null(out);
		assert_int_equal(decompress(b.buf, b.len, &out, &out_len, 4096), -EFBIG);
		assert_int_equal(decompress(b.buf, b.len, &out, &out_len, 0), -EFBIG);
		free(b.buf);
	}
}

/* 256 MiB of zeros in a few hundred KiB of zstd must not be inflated
 * past the limit. */
static void test_bomb(void **state)
{
	const size_t big = 256u << 20;
	uint8_t *zeros = calloc(1, big);
	assert_non_null(zeros);
	struct blob b = zstd_compress(zeros, big, false);
	free(zeros);
	assert_true(b.len < (1u << 20));
	uint8_t *out;
	size_t out_len;
	assert_int_equal(decompress(b.buf, b.len, &out, &out_len, 16u << 20), -EFBIG);
	free(b.buf);
}

static void test_corrupt(void **state)
{
	for (size_t i = 0; i < NFORMATS; i++) {
		struct blob b = compress_as(formats[i], data, DATA_LEN);
		b.buf[b.len / 2] ^= 0x55;
		b.buf[b.len / 2 + 1] ^= 0xAA;
		uint8_t *out;
		size_t out_len;
		int err = decompress(b.buf, b.len, &out, &out_len, DECOMPRESS_MAX_DEFAULT);
		if (formats[i] == DECOMP_LZ4_LEGACY || formats[i] == DECOMP_LZMA) {
			/* No checksum: garbage may decode, but never past bounds. */
			if (err == 0) {
				assert_true(out_len <= DECOMPRESS_MAX_DEFAULT);
				free(out);
			} else {
				assert_int_equal(err, -EINVAL);
			}
		} else {
			assert_int_equal(err, -EINVAL); /* CRC32 / xxhash / block checks */
		}
		free(b.buf);
	}
}

static void test_lz4_legacy_framing(void **state)
{
	/* Two frames back to back, then a zero-size end marker and junk. */
	struct blob a = lz4_legacy_compress(data, DATA_LEN / 2, 1u << 19);
	struct blob c = lz4_legacy_compress(data + DATA_LEN / 2, DATA_LEN - DATA_LEN / 2, 1u << 20);
	size_t len = a.len + c.len + 8;
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	memcpy(buf, a.buf, a.len);
	memcpy(buf + a.len, c.buf, c.len);
	put_le32(buf + a.len + c.len, 0);
	put_le32(buf + a.len + c.len + 4, 0xdeadbeef);
	struct blob b = { buf, len };
	expect_roundtrip(&b, DECOMPRESS_MAX_DEFAULT);

	/* A trailer that is not the decompressed size is a truncated block. */
	put_le32(buf + a.len + c.len, DATA_LEN + 1);
	b.len = a.len + c.len + 4;
	uint8_t *out;
	size_t out_len;
	assert_int_equal(decompress(b.buf, b.len, &out, &out_len, DECOMPRESS_MAX_DEFAULT), -EINVAL);

	/* A block size beyond what an 8 MiB block can compress to. */
	put_le32(buf + 4, 0x7fffffff);
	assert_int_equal(decompress(buf, len, &out, &out_len, DECOMPRESS_MAX_DEFAULT), -EINVAL);
	free(a.buf);
	free(c.buf);
	free(buf);
}

static void test_unsupported(void **state)
{
	uint8_t *out = (uint8_t *)1;
	size_t out_len = 1;
	static const uint8_t bz2[] = "BZh91AY&SY\x01\x02\x03";
	assert_int_equal(decompress(bz2, sizeof(bz2), &out, &out_len, 1 << 20), -ENOTSUP);
	assert_null(out);
	assert_int_equal(decompress(data, 4096, &out, &out_len, 1 << 20), -ENOTSUP);
	assert_int_equal(decompress(data, 0, &out, &out_len, 1 << 20), -ENOTSUP);
}

static void test_empty_stream(void **state)
{
	struct blob b = gzip_compress(data, 0);
	uint8_t *out = NULL;
	size_t out_len = 1;
	assert_int_equal(decompress(b.buf, b.len, &out, &out_len, 1 << 20), 0);
	assert_non_null(out);
	assert_int_equal(out_len, 0);
	free(out);
	free(b.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_roundtrip_with_size_trailer),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_max_out),
		cmocka_unit_test(test_bomb),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_lz4_legacy_framing),
		cmocka_unit_test(test_unsupported),
		cmocka_unit_test(test_empty_stream),
	};
	return cmocka_run_group_tests(tests, setup_data, teardown_data);
}
