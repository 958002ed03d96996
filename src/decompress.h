/* Host-side decompression of kernel payloads (the compressed vmlinux in a
 * bzImage, compressed initrds): format detection by magic, and bounded
 * one-shot decompression so a hostile image cannot exhaust host memory. */
#ifndef KVMLITE_DECOMPRESS_H
#define KVMLITE_DECOMPRESS_H

#include <stddef.h>
#include <stdint.h>

enum decompress_format {
	DECOMP_UNKNOWN = 0,
	DECOMP_GZIP,
	DECOMP_XZ,
	DECOMP_LZMA,       /* legacy .lzma ("LZMA alone") */
	DECOMP_ZSTD,
	DECOMP_LZ4_LEGACY, /* lz4 -l: magic 0x184C2102, 8 MiB blocks */
	DECOMP_BZIP2,      /* detected, not supported */
	DECOMP_LZO,        /* detected, not supported */
};

/* A suggested max_out for kernels. */
#define DECOMPRESS_MAX_DEFAULT (512ULL << 20)

/* The format of buf by its magic, DECOMP_UNKNOWN if none matches. */
int decompress_detect(const uint8_t *buf, size_t len);

/* "gzip", "xz", ...; "unknown" for anything else. */
const char *decompress_format_name(int format);

/* Decompresses the first stream in `in` into a malloc'd *out (caller
 * frees) of *out_len bytes. Data after the end of the stream is ignored
 * (Linux appends the decompressed size to its payloads).
 * Errors: -ENOTSUP unknown or unsupported format, -EINVAL corrupt or
 * truncated input, -EFBIG output larger than max_out, -ENOMEM. */
int decompress(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, size_t max_out);

#endif
