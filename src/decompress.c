/* Bounded host-side decompression with zlib, liblzma, libzstd and liblz4.
 * Every decoder writes into one growing buffer that never exceeds
 * max_out + a small slack, so a decompression bomb costs at most max_out. */
#include "decompress.h"

#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "util.h"

#define LZ4_LEGACY_MAGIC 0x184C2102u
#define LZ4_LEGACY_BLOCK (8u << 20) /* decompressed size of a full block */

static const struct {
	uint8_t magic[6];
	uint8_t len;
	int format;
} decompress_magics[] = {
	{ { 0x1f, 0x8b, 0x08 }, 3, DECOMP_GZIP },
	{ { 0xfd, '7', 'z', 'X', 'Z', 0x00 }, 6, DECOMP_XZ },
	{ { 0x28, 0xb5, 0x2f, 0xfd }, 4, DECOMP_ZSTD },
	{ { 0x02, 0x21, 0x4c, 0x18 }, 4, DECOMP_LZ4_LEGACY },
	{ { 0x89, 'L', 'Z', 'O', 0x00 }, 5, DECOMP_LZO },
	/* lc=3 lp=0 pb=2 and a dictionary size that is a multiple of 64 KiB:
	 * what `lzma` writes, and the test Linux itself uses. */
	{ { 0x5d, 0x00, 0x00 }, 3, DECOMP_LZMA },
};

int decompress_detect(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(decompress_magics); i++) {
		if (len >= decompress_magics[i].len &&
		    memcmp(buf, decompress_magics[i].magic, decompress_magics[i].len) == 0)
			return decompress_magics[i].format;
	}
	if (len >= 4 && buf[0] == 'B' && buf[1] == 'Z' && buf[2] == 'h' && buf[3] >= '1' && buf[3] <= '9')
		return DECOMP_BZIP2;
	return DECOMP_UNKNOWN;
}

const char *decompress_format_name(int format)
{
	switch (format) {
	case DECOMP_GZIP: return "gzip";
	case DECOMP_XZ: return "xz";
	case DECOMP_LZMA: return "lzma";
	case DECOMP_ZSTD: return "zstd";
	case DECOMP_LZ4_LEGACY: return "lz4";
	case DECOMP_BZIP2: return "bzip2";
	case DECOMP_LZO: return "lzo";
	default: return "unknown";
	}
}

/* The output buffer. limit is the largest size it may grow to; decoders
 * check len against max_out after each step. */
struct outbuf {
	uint8_t *buf;
	size_t len, cap, limit, max_out;
};

static size_t add_sat(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Makes room for at least `want` more bytes (fewer if limit is reached,
 * but at least one): -EFBIG when full, -ENOMEM. */
static int outbuf_reserve(struct outbuf *ob, size_t want)
{
	if (ob->len > ob->max_out || ob->len >= ob->limit)
		return -EFBIG;
	if (ob->cap - ob->len >= want)
		return 0;
	size_t cap = MAX(ob->cap, (size_t)64 << 10);
	while (cap - ob->len < want && cap < ob->limit)
		cap = add_sat(cap, cap);
	cap = MIN(cap, ob->limit);
	if (cap == ob->cap)
		return 0;
	uint8_t *p = realloc(ob->buf, cap);
	if (!p)
		return -ENOMEM;
	ob->buf = p;
	ob->cap = cap;
	return 0;
}

static int decompress_gzip(const uint8_t *in, size_t in_len, struct outbuf *ob)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
		return -ENOMEM;
	size_t fed = 0;
	int err;
	for (;;) {
		if (zs.avail_in == 0 && fed < in_len) {
			zs.next_in = (Bytef *)(in + fed);
			zs.avail_in = (uInt)MIN(in_len - fed, (size_t)UINT_MAX);
			fed += zs.avail_in;
		}
		err = outbuf_reserve(ob, (size_t)1 << 20);
		if (err)
			break;
		size_t room = MIN(ob->cap - ob->len, (size_t)UINT_MAX);
		zs.next_out = ob->buf + ob->len;
		zs.avail_out = (uInt)room;
		int ret = inflate(&zs, Z_NO_FLUSH);
		ob->len += room - zs.avail_out;
		if (ob->len > ob->max_out) {
			err = -EFBIG;
			break;
		}
		if (ret == Z_STREAM_END) {
			err = 0;
			break;
		}
		if (ret == Z_OK)
			continue;
		/* Z_BUF_ERROR with output room means the input ran out. */
		err = ret == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
		break;
	}
	inflateEnd(&zs);
	return err;
}

static int decompress_lzma(const uint8_t *in, size_t in_len, struct outbuf *ob, int xz)
{
	lzma_stream strm = LZMA_STREAM_INIT;
	/* No LZMA_CONCATENATED: stop at the end of the first stream so the
	 * size Linux appends is not parsed as a second one. */
	lzma_ret ret = xz ? lzma_stream_decoder(&strm, UINT64_MAX, 0)
			  : lzma_alone_decoder(&strm, UINT64_MAX);
	if (ret != LZMA_OK)
		return -ENOMEM;
	strm.next_in = in;
	strm.avail_in = in_len;
	int err;
	for (;;) {
		err = outbuf_reserve(ob, (size_t)1 << 20);
		if (err)
			break;
		size_t room = ob->cap - ob->len;
		strm.next_out = ob->buf + ob->len;
		strm.avail_out = room;
		ret = lzma_code(&strm, LZMA_FINISH);
		ob->len += room - strm.avail_out;
		if (ob->len > ob->max_out) {
			err = -EFBIG;
			break;
		}
		if (ret == LZMA_STREAM_END) {
			err = 0;
			break;
		}
		if (ret == LZMA_OK)
			continue;
		err = (ret == LZMA_MEM_ERROR || ret == LZMA_MEMLIMIT_ERROR) ? -ENOMEM : -EINVAL;
		break;
	}
	lzma_end(&strm);
	return err;
}

static int decompress_zstd(const uint8_t *in, size_t in_len, struct outbuf *ob)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	if (!ds)
		return -ENOMEM;
	ZSTD_inBuffer zin = { in, in_len, 0 };
	int err;
	for (;;) {
		err = outbuf_reserve(ob, (size_t)1 << 20);
		if (err)
			break;
		ZSTD_outBuffer zout = { ob->buf + ob->len, ob->cap - ob->len, 0 };
		size_t ret = ZSTD_decompressStream(ds, &zout, &zin);
		if (ZSTD_isError(ret)) {
			err = ZSTD_getErrorCode(ret) == ZSTD_error_memory_allocation ? -ENOMEM : -EINVAL;
			break;
		}
		ob->len += zout.pos;
		if (ob->len > ob->max_out) {
			err = -EFBIG;
			break;
		}
		if (ret == 0) /* frame complete and flushed */
			break;
		if (zin.pos == zin.size && zout.pos < zout.size) {
			err = -EINVAL; /* truncated */
			break;
		}
	}
	ZSTD_freeDStream(ds);
	return err;
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* lz4 legacy frame: magic, then blocks of (le32 compressed size, data),
 * each decompressing to at most 8 MiB. Ends at end of input, at a zero
 * size, or at Linux's appended le32 total size; no end marker, so a cut
 * exactly between blocks cannot be told from the end. */
static int decompress_lz4_legacy(const uint8_t *in, size_t in_len, struct outbuf *ob)
{
	if (in_len < 4 || get_le32(in) != LZ4_LEGACY_MAGIC)
		return -EINVAL;
	size_t pos = 4;
	/* A whole block must fit, so the buffer may pass max_out by one block
	 * before the size check below catches it. */
	ob->limit = add_sat(ob->max_out, LZ4_LEGACY_BLOCK);
	while (pos < in_len) {
		if (in_len - pos < 4)
			return -EINVAL; /* a cut size field */
		uint32_t chunk = get_le32(in + pos);
		size_t rest = in_len - pos - 4;
		if (chunk == LZ4_LEGACY_MAGIC) { /* concatenated frames */
			pos += 4;
			continue;
		}
		if (chunk == 0)
			break;
		if (rest == 0 && chunk == (uint32_t)ob->len)
			break; /* Linux's size_append trailer */
		if (chunk > rest || chunk > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK))
			return -EINVAL;
		int err = outbuf_reserve(ob, LZ4_LEGACY_BLOCK);
		if (err)
			return err;
		if (ob->cap - ob->len < LZ4_LEGACY_BLOCK)
			return -EFBIG;
		int n = LZ4_decompress_safe((const char *)in + pos + 4, (char *)ob->buf + ob->len,
					    (int)chunk, (int)LZ4_LEGACY_BLOCK);
		if (n < 0)
			return -EINVAL;
		ob->len += (size_t)n;
		if (ob->len > ob->max_out)
			return -EFBIG;
		pos += 4 + (size_t)chunk;
	}
	return 0;
}

int decompress(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, size_t max_out)
{
	*out = NULL;
	*out_len = 0;
	/* One byte past max_out lets a decoder show that there is more. */
	struct outbuf ob = { .limit = add_sat(max_out, 1), .max_out = max_out };
	int err;
	switch (decompress_detect(in, in_len)) {
	case DECOMP_GZIP: err = decompress_gzip(in, in_len, &ob); break;
	case DECOMP_XZ: err = decompress_lzma(in, in_len, &ob, 1); break;
	case DECOMP_LZMA: err = decompress_lzma(in, in_len, &ob, 0); break;
	case DECOMP_ZSTD: err = decompress_zstd(in, in_len, &ob); break;
	case DECOMP_LZ4_LEGACY: err = decompress_lz4_legacy(in, in_len, &ob); break;
	default: err = -ENOTSUP; break;
	}
	if (err) {
		free(ob.buf);
		return err;
	}
	if (!ob.buf) { /* empty output: still hand back a valid pointer */
		ob.buf = malloc(1);
		if (!ob.buf)
			return -ENOMEM;
	}
	*out = ob.buf;
	*out_len = ob.len;
	return 0;
}
