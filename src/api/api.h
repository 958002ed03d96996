/* The control plane: a Firecracker-compatible HTTP/JSON API on a UNIX
 * socket (docs/API.md).
 *
 *   routes.c   the pure part: (method, path, body, VM state) -> (status,
 *              JSON body, action), plus the configuration the API builds
 *              up before InstanceStart. No I/O: unit-tested and fuzzed.
 *   server.c   libmicrohttpd on a socket we bind ourselves; runs in its own
 *              thread and carries out actions through struct api_ops.
 *   client.c   the tiny HTTP client behind `kvmlite pause|resume|stop|...`.
 */
#ifndef KVMLITE_API_H
#define KVMLITE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "version.h"


/* Bodies above this get 413 (Firecracker's default limit is 51200). */
#define API_MAX_BODY       (64 * 1024)
#define API_MAX_DRIVES     8
#define API_MAX_IFACES     8
#define API_MAX_ID         64
#define API_MAX_CPUS       255     /* xAPIC IDs in the MADT, as `run --cpus` */
#define API_MAX_MEM_MIB    (1u << 20) /* 1 TiB */
#define API_DEFAULT_SOCK_DIR "/run/kvmlite"

/* The VM's state as the API sees it (same order as enum vm_state). */
enum api_state { API_NOT_STARTED, API_RUNNING, API_PAUSED, API_STOPPED };

/* What the server must do after a request the router accepted. */
enum api_action {
	API_ACT_NONE,
	API_ACT_START,         /* InstanceStart: build and start the VM */
	API_ACT_PAUSE,
	API_ACT_RESUME,
	API_ACT_STOP,          /* kvmlite's "Stop": power off, exit status 0 */
	API_ACT_FLUSH_METRICS,
	API_ACT_LOGGER,        /* (re)open the log sink from cfg->logger */
	API_ACT_METRICS,       /* open the metrics sink from cfg->metrics */
};

struct api_drive {
	char id[API_MAX_ID + 1];
	char *path_on_host;
	bool is_root_device;
	bool is_read_only;
	char *partuuid;
	char *cache_type;      /* "Unsafe" | "Writeback" */
	char *io_engine;       /* "Sync" | "Async" */
};

struct api_iface {
	char id[API_MAX_ID + 1];
	char *host_dev_name;
	char *guest_mac;       /* NULL or "xx:xx:xx:xx:xx:xx" */
};

enum api_log_level { API_LOG_OFF, API_LOG_ERROR, API_LOG_WARNING, API_LOG_INFO, API_LOG_DEBUG, API_LOG_TRACE };

/* Everything the API accumulates before InstanceStart. Strings are owned
 * (malloc'd) and freed by api_config_free(). */
struct api_config {
	char *kernel_path;     /* NULL: the embedded guest */
	char *initrd_path;
	char *boot_args;       /* NULL: the default command line */
	int vcpu_count;
	uint32_t mem_size_mib;
	bool smt;
	bool track_dirty_pages;

	struct api_drive drives[API_MAX_DRIVES];
	int nr_drives;
	struct api_iface ifaces[API_MAX_IFACES];
	int nr_ifaces;

	bool has_vsock;
	uint32_t vsock_cid;
	char *vsock_uds_path;

	bool has_logger;
	char *log_path;
	enum api_log_level log_level;
	bool log_show_level;
	bool log_show_origin;

	char *metrics_path;    /* NULL: no metrics */

	char id[API_MAX_ID + 1]; /* instance id shown by GET / */
};

struct api_reply {
	int status;            /* HTTP status */
	char *body;            /* malloc'd JSON, NULL for none (204) */
	enum api_action action;
};

/* Initial values from a vm_config (the `run` command line). Strings are
 * copied. 0 or -ENOMEM. */
int api_config_init(struct api_config *cfg, const struct vm_config *vm_cfg);
void api_config_free(struct api_config *cfg);
/* Points vm_cfg's fields at cfg's (vm_cfg's other fields stay). */
void api_config_apply(const struct api_config *cfg, struct vm_config *vm_cfg);
/* Why cfg cannot boot yet (a device kvmlite lacks), or NULL. */
const char *api_config_unsupported(const struct api_config *cfg);

/* Handles one request. body may be NULL when len is 0; it need not be
 * NUL-terminated. Always fills reply (free it with api_reply_free()).
 * Returns 0, or -ENOMEM when even an error reply could not be built
 * (reply->status is then 500 with a NULL body). */
int api_handle(struct api_config *cfg, enum api_state state, const char *method, const char *path,
	       const char *body, size_t len, struct api_reply *reply);
void api_reply_free(struct api_reply *reply);
/* Replaces reply with status and {"fault_message": msg}. */
void api_reply_error(struct api_reply *reply, int status, const char *msg);

/* A Firecracker --config-file document ({"boot-source": ..., "machine-config":
 * ..., "drives": [...], ...}) applied to cfg as the matching PUTs would be.
 * 0, or -EINVAL with the first problem in err. */
int api_config_load(struct api_config *cfg, const char *json, size_t len, char *err, size_t errlen);

const char *api_state_name(enum api_state state);

/* server.c ---------------------------------------------------------------- */

/* What the server calls to carry out an action; each returns 0 or a
 * negative errno with a message for the client in err. Called in the
 * server's thread, one request at a time. */
struct api_ops {
	enum api_state (*state)(void *opaque);
	int (*action)(void *opaque, enum api_action action, char *err, size_t errlen);
};

struct api_server;

/* Binds sock_path (refusing a socket another process still serves;
 * replacing a stale one) and starts the server thread. 0, or a negative
 * errno with a message in err. */
int api_server_start(struct api_server **out, const char *sock_path, struct api_config *cfg,
		     const struct api_ops *ops, void *opaque, char *err, size_t errlen);
/* Stops the thread, closes and removes the socket. NULL is fine. */
void api_server_stop(struct api_server *srv);

/* Creates a UNIX stream socket listening on path; see api_server_start.
 * Returns the fd or a negative errno with a message in err. */
int api_listen_unix(const char *path, char *err, size_t errlen);

/* client.c ---------------------------------------------------------------- */

/* One request over the UNIX socket at sock_path. *status gets the HTTP
 * status; resp (if not NULL) the body, NUL-terminated and truncated to
 * resp_len - 1. 0, or a negative errno (the socket is not there, nobody
 * listens, the answer is not HTTP). */
int api_client_request(const char *sock_path, const char *method, const char *path, const char *body,
		       int *status, char *resp, size_t resp_len);
/* The "fault_message" of a JSON error body, copied into out ("" if none). */
void api_client_fault(const char *resp, char *out, size_t out_len);
/* The default socket directory: $KVMLITE_SOCK_DIR, else /run/kvmlite. */
const char *api_sock_dir(void);

#endif
