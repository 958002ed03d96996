#ifndef KVMLITE_UTIL_H
#define KVMLITE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a) - 1))

/* "512M", "2G", "65536", "1T": bytes; -EINVAL for garbage or overflow. */
int parse_size(const char *s, uint64_t *out);

/* Reads a whole regular file into a malloc'd buffer; negative errno. */
int read_file(const char *path, uint8_t **data, size_t *len);

#endif
