/* PUT /metrics + FlushMetrics: one JSON object per line appended to the
 * metrics file or FIFO: exit counts by reason and fallback counts, each
 * summed over the vCPUs, and the VM's state.
 *
 * The counters are plain uint64_t that each vCPU thread increments; they
 * are read here with relaxed atomic loads (a flush is a snapshot). The
 * fallback counts are x86's (struct arch_vcpu); an arch hook would keep
 * this file generic once there is a second arch. */
#include "api_metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emulate.h"
#include "vcpu.h"
#include "vm.h"

static uint64_t sum(const struct vm *vm, size_t offset)
{
	uint64_t total = 0;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		const uint64_t *p = (const uint64_t *)((const char *)&vm->vcpus[i] + offset);
		total += __atomic_load_n(p, __ATOMIC_RELAXED);
	}
	return total;
}

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
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",\"fallback\":{");
		for (int k = 0; k < EMU_INSN_MAX && n < sizeof(buf); k++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"%s\":%llu", k ? "," : "",
					      emu_insn_name((enum emu_insn)k),
					      (unsigned long long)sum(vm, offsetof(struct vcpu, arch.fallback) +
									  (size_t)k * sizeof(uint64_t)));
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}");
	}
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}\n");
	if (n >= sizeof(buf))
		return -ENOSPC;
	ssize_t w = write(fd, buf, n);
	if (w < 0)
		return -errno;
	return (size_t)w == n ? 0 : -EIO;
}
