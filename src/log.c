#include "log.h"

#include <stdarg.h>
#include <stdio.h>

enum log_level log_threshold = LOG_WARN;

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	if (level > log_threshold)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* "\r\n": the terminal may be in raw mode while the guest runs. */
	fprintf(stderr, "kvmlite: %s: %s\r\n", names[level], line);
}
