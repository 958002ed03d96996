#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_WARN;

static const char *const level_names[] = { "error", "warning", "info", "debug" };
static const char *const level_json_names[] = { "Error", "Warning", "Info", "Debug" };

/* The JSON sink: written under a lock so that replacing it never races a
 * writer on a closed descriptor. */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static int file_fd = -1;
static int file_level = -1; /* read without the lock: a stale value only costs one lock */
static bool file_show_origin;

static __thread char last_error[256];

/* Appends s to out as the inside of a JSON string; returns the new length
 * (bounded by cap - 1, always NUL-terminated). */
static size_t json_escape(char *out, size_t len, size_t cap, const char *s)
{
	for (; *s && len + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[len++] = '\\';
			out[len++] = (char)c;
		} else if (c < 0x20) {
			len += (size_t)snprintf(out + len, cap - len, "\\u%04x", c);
		} else {
			out[len++] = (char)c;
		}
	}
	out[len] = '\0';
	return len;
}

static void log_write_json(enum log_level level, const char *file, int line, const char *msg)
{
	char thread[16] = "?";
	pthread_getname_np(pthread_self(), thread, sizeof(thread));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char buf[2048];
	size_t n = (size_t)snprintf(buf, sizeof(buf),
				    "{\"timestamp\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"thread\":\"",
				    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
				    ts.tv_nsec / 1000000, level_json_names[level]);
	n = json_escape(buf, n, sizeof(buf), thread);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\",\"message\":\"");
	n = json_escape(buf, n, sizeof(buf) - 64, msg);
	if (file_show_origin && file) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\",\"origin\":\"");
		n = json_escape(buf, n, sizeof(buf) - 16, file);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ":%d", line);
	}
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\"}\n");
	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	pthread_mutex_lock(&file_lock);
	/* One write per line (O_APPEND); a full FIFO drops the line rather
	 * than block a vCPU. */
	if (file_fd >= 0 && write(file_fd, buf, n) < 0) {
		/* nothing to do: logging must not fail its caller */
	}
	pthread_mutex_unlock(&file_lock);
}

static void log_vmsg(enum log_level level, const char *file, int line, const char *fmt, va_list ap)
{
	bool to_file = (int)level <= __atomic_load_n(&file_level, __ATOMIC_RELAXED);
	if (level > log_threshold && !to_file && level != LOG_ERROR)
		return;
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (level == LOG_ERROR) {
		size_t n = strnlen(msg, sizeof(last_error) - 1); /* truncation is fine */
		memcpy(last_error, msg, n);
		last_error[n] = '\0';
	}
	if (level <= log_threshold) /* "\r\n": the terminal may be in raw mode while the guest runs. */
		fprintf(stderr, "kvmlite: %s: %s\r\n", level_names[level], msg);
	if (to_file)
		log_write_json(level, file, line, msg);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, NULL, 0, fmt, ap);
	va_end(ap);
}

void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, file, line, fmt, ap);
	va_end(ap);
}

int log_open_file(const char *path, int max_level, bool show_origin)
{
	/* O_NONBLOCK: opening a FIFO without a reader fails (ENXIO) instead
	 * of hanging the API, and a full FIFO never blocks a writer. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		fcntl(fd, F_SETFL, O_APPEND); /* a file never blocks for long: keep every line */
	pthread_mutex_lock(&file_lock);
	int old = file_fd;
	file_fd = fd;
	file_show_origin = show_origin;
	__atomic_store_n(&file_level, max_level, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&file_lock);
	if (old >= 0)
		close(old);
	return 0;
}

void log_close_file(void)
{
	pthread_mutex_lock(&file_lock);
	__atomic_store_n(&file_level, -1, __ATOMIC_RELAXED);
	if (file_fd >= 0)
		close(file_fd);
	file_fd = -1;
	pthread_mutex_unlock(&file_lock);
}

const char *log_last_error(void)
{
	return last_error;
}

void log_clear_last_error(void)
{
	last_error[0] = '\0';
}
