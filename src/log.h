/* Logging: one line per event, to stderr. Only boundaries (CLI, API) and
 * the one place that knows the file or field at fault print errors.
 *
 * The API's PUT /logger adds a second sink: a file or FIFO receiving one
 * JSON object per line ({"timestamp","level","thread","message"[,"origin"]})
 * with its own level. */
#ifndef KVMLITE_LOG_H
#define KVMLITE_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same, with where it was logged from (for show_log_origin). */
void log_msg_at(enum log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_error(...) log_msg_at(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...)  log_msg_at(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...)  log_msg_at(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) log_msg_at(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

/* Opens (creating a file, or a FIFO that has a reader) path as the JSON
 * sink, replacing any previous one. max_level < 0 turns the sink off.
 * 0 or a negative errno. */
int log_open_file(const char *path, int max_level, bool show_origin);
void log_close_file(void);

/* The last error this thread logged ("" if none), so the API can hand a
 * failure's reason to its client; log_clear_last_error() forgets it. */
const char *log_last_error(void);
void log_clear_last_error(void);

#endif
