/* PUT /metrics + FlushMetrics: one JSON object per line appended to the
 * metrics file or FIFO: the VM's state and every counter group (src/stats.h:
 * exits by reason, the arch's fallback counts, each device's counters).
 * A flush is a snapshot: the groups read their counters atomically. */
#include "api_metrics.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vm.h"

int api_metrics_write(int fd, const struct vm *vm, const char *state, const char *exit_reason)
{
	char buf[16384];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"utc_timestamp_ms\":%llu,\"vm_state\":\"%s\"",
				    (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)(ts.tv_nsec / 1000000),
				    state);
	if (exit_reason)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",\"exit_reason\":\"%s\"", exit_reason);
	if (vm) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",\"vcpu_count\":%d,", vm->nr_vcpus);
		int len = n < sizeof(buf) ? stats_json(vm->stats, buf + n, sizeof(buf) - n) : -ENOSPC;
		if (len < 0)
			return len;
		n += (size_t)len;
	}
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}\n");
	if (n >= sizeof(buf))
		return -ENOSPC;
	ssize_t w = write(fd, buf, n);
	if (w < 0)
		return -errno;
	return (size_t)w == n ? 0 : -EIO;
}
