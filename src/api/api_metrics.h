/* The metrics line the API writes (metrics.c); kept apart from api.h so
 * that the router (routes.c) stays free of the VM's headers. */
#ifndef KVMLITE_API_METRICS_H
#define KVMLITE_API_METRICS_H

struct vm;

/* Appends one JSON line to fd: state, exit_reason (NULL: omitted) and,
 * with a vm, its exit and fallback counts. 0 or a negative errno. */
int api_metrics_write(int fd, const struct vm *vm, const char *state, const char *exit_reason);

#endif
