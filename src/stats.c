#include "stats.h"

#include <errno.h>
#include <stdlib.h>

int stats_add(struct stats_group **list, const char *name, int nr, const char *const *names, stats_read_fn read,
	      const void *opaque)
{
	struct stats_group *g = malloc(sizeof(*g));
	if (!g)
		return -ENOMEM;
	*g = (struct stats_group){ name, nr, names, read, opaque, NULL };
	while (*list)
		list = &(*list)->next;
	*list = g;
	return 0;
}

void stats_free(struct stats_group **list)
{
	while (*list) {
		struct stats_group *g = *list;
		*list = g->next;
		free(g);
	}
}

uint64_t stats_read_array(const void *opaque, int index)
{
	return __atomic_load_n(&((const uint64_t *)opaque)[index], __ATOMIC_RELAXED);
}

void stats_print(const struct stats_group *list, FILE *out)
{
	for (const struct stats_group *g = list; g; g = g->next) {
		fprintf(out, "%s:", g->name);
		for (int i = 0; i < g->nr; i++)
			fprintf(out, " %s=%llu", g->names[i], (unsigned long long)g->read(g->opaque, i));
		fprintf(out, "\n");
	}
}

int stats_json(const struct stats_group *list, char *buf, size_t len)
{
	size_t n = 0;
	for (const struct stats_group *g = list; g; g = g->next) {
		n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s\"%s\":{", g == list ? "" : ",", g->name);
		for (int i = 0; i < g->nr; i++)
			n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s\"%s\":%llu", i ? "," : "",
					      g->names[i], (unsigned long long)g->read(g->opaque, i));
		n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "}");
	}
	if (n >= len)
		return -ENOSPC;
	return (int)n;
}
