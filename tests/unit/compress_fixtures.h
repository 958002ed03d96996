/* Test fixtures shared by the unit tests that need compressed payloads:
 * each helper compresses a buffer with the format's own library (or, for
 * legacy lz4, frames it by hand) and fails the running cmocka test if the
 * library refuses. Header-only because every test_*.c is its own program;
 * the functions are static inline so a test that uses only some of them
 * still builds under -Werror. The caller frees blob.buf. */
#ifndef KVMLITE_TESTS_COMPRESS_FIXTURES_H
#define KVMLITE_TESTS_COMPRESS_FIXTURES_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

struct blob {
	uint8_t *buf;
	size_t len;
};

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline struct blob gzip_compress(const uint8_t *in, size_t len)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&zs, len) + 64;
	struct blob b = { malloc(cap), 0 };
	assert_non_null(b.buf);
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = b.buf;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	b.len = zs.total_out;
	deflateEnd(&zs);
	return b;
}

/* xz with a CRC32 check and LZMA2 at the given preset. With bcj, the x86
 * BCJ filter goes first, the way Linux packs its payload. */
static inline struct blob xz_compress(const uint8_t *in, size_t len, uint32_t preset, bool bcj)
{
	lzma_options_lzma opt;
	assert_false(lzma_lzma_preset(&opt, preset));
	lzma_filter filters[3];
	size_t n = 0;
	if (bcj)
		filters[n++] = (lzma_filter){ .id = LZMA_FILTER_X86, .options = NULL };
	filters[n++] = (lzma_filter){ .id = LZMA_FILTER_LZMA2, .options = &opt };
	filters[n] = (lzma_filter){ .id = LZMA_VLI_UNKNOWN, .options = NULL };
	size_t cap = lzma_stream_buffer_bound(len);
	struct blob b = { malloc(cap), 0 };
	assert_non_null(b.buf);
	assert_int_equal(lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, NULL, in, len, b.buf, &b.len, cap),
			 LZMA_OK);
	return b;
}

/* The legacy .lzma format (lzma_alone), LZMA1 at preset 2. */
static inline struct blob lzma_alone_compress(const uint8_t *in, size_t len)
{
	lzma_options_lzma opt;
	assert_false(lzma_lzma_preset(&opt, 2));
	lzma_stream s = LZMA_STREAM_INIT;
	assert_int_equal(lzma_alone_encoder(&s, &opt), LZMA_OK);
	size_t cap = len + len / 2 + 4096;
	struct blob b = { malloc(cap), 0 };
	assert_non_null(b.buf);
	s.next_in = in;
	s.avail_in = len;
	s.next_out = b.buf;
	s.avail_out = cap;
	lzma_ret r;
	do
		r = lzma_code(&s, LZMA_FINISH);
	while (r == LZMA_OK);
	assert_int_equal(r, LZMA_STREAM_END);
	b.len = s.total_out;
	lzma_end(&s);
	return b;
}

/* zstd at level 3; checksum adds the optional xxhash64 content checksum. */
static inline struct blob zstd_compress(const uint8_t *in, size_t len, bool checksum)
{
	size_t cap = ZSTD_compressBound(len);
	struct blob b = { malloc(cap), 0 };
	assert_non_null(b.buf);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	assert_non_null(cc);
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3)));
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, checksum ? 1 : 0)));
	b.len = ZSTD_compress2(cc, b.buf, cap, in, len);
	ZSTD_freeCCtx(cc);
	assert_false(ZSTD_isError(b.len));
	return b;
}

/* The legacy lz4 frame (lz4 -l) built by hand: magic, then (le32 size,
 * block) for each block of at most block_len input bytes. */
static inline struct blob lz4_legacy_compress(const uint8_t *in, size_t len, size_t block_len)
{
	assert_true(block_len > 0);
	size_t nblocks = (len + block_len - 1) / block_len;
	size_t cap = 4 + nblocks * (4 + (size_t)LZ4_compressBound((int)block_len));
	struct blob b = { malloc(cap), 0 };
	assert_non_null(b.buf);
	put_le32(b.buf, 0x184C2102);
	b.len = 4;
	for (size_t off = 0; off < len; off += block_len) {
		int n = (int)(len - off < block_len ? len - off : block_len);
		int c = LZ4_compress_default((const char *)in + off, (char *)b.buf + b.len + 4, n,
					     (int)(cap - b.len - 4));
		assert_true(c > 0);
		put_le32(b.buf + b.len, (uint32_t)c);
		b.len += 4 + (size_t)c;
	}
	return b;
}

#endif
