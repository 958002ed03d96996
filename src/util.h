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

/* Formats a one-line message into err and returns -EINVAL: for parsers
 * that report what is wrong to a boundary that prints it. */
int fail_einval(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "06:00:AC:10:00:02" -> 6 bytes; -EINVAL unless exactly that form. */
int parse_mac(const char *s, uint8_t mac[6]);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t monotonic_ns(void);
/* When the process started (set first thing in main); 0 if unset. */
extern uint64_t process_start_ns;

/* Reads a whole regular file into a malloc'd buffer; negative errno. */
int read_file(const char *path, uint8_t **data, size_t *len);

#endif
