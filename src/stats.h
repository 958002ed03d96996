/* Named counters a VM reports: --stats prints them at exit, the metrics
 * flush writes them as JSON. The vCPU core, the arch and each device add a
 * group while the VM is built; the counters stay where they are kept and
 * are read through the group's read function when reported. */
#ifndef KVMLITE_STATS_H
#define KVMLITE_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The value of counter index of the group whose opaque this is. Called
 * from any thread while the counters change: read them atomically. */
typedef uint64_t (*stats_read_fn)(const void *opaque, int index);

struct stats_group {
	const char *name;            /* "exits", "fallback", "virtio-blk0" */
	int nr;
	const char *const *names;    /* nr counter names */
	stats_read_fn read;
	const void *opaque;
	struct stats_group *next;
};

/* Appends a group to *list. 0 or -ENOMEM. */
int stats_add(struct stats_group **list, const char *name, int nr, const char *const *names, stats_read_fn read,
	      const void *opaque);
void stats_free(struct stats_group **list);

/* For groups kept as an array of uint64_t: opaque is the array. */
uint64_t stats_read_array(const void *opaque, int index);

/* One line per group: "name: a=1 b=2". */
void stats_print(const struct stats_group *list, FILE *out);
/* Every group as JSON members: "name":{"a":1,"b":2},... (no braces
 * around); the length written, or -ENOSPC when buf is too small. */
int stats_json(const struct stats_group *list, char *buf, size_t len);

#endif
