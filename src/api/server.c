/* The API server: libmicrohttpd on a UNIX socket we create and bind
 * ourselves, in MHD's own polling thread, so that a slow client or a long
 * action (pause waits for every vCPU) never blocks a vCPU or the main
 * loop. Requests are handled one at a time, in that thread: the router
 * and the configuration need no lock. */
#include "api.h"

#include <dlfcn.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"

/* libmicrohttpd is loaded only when the API is used: linked in, it and
 * what it pulls in (GnuTLS, nettle, p11-kit) cost every VM about 3 MiB of
 * resident memory at start-up. */
#define MHD_SONAME "libmicrohttpd.so.12"

static struct {
	__typeof__(&MHD_start_daemon) start_daemon;
	__typeof__(&MHD_stop_daemon) stop_daemon;
	__typeof__(&MHD_quiesce_daemon) quiesce_daemon;
	__typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
	__typeof__(&MHD_add_response_header) add_response_header;
	__typeof__(&MHD_queue_response) queue_response;
	__typeof__(&MHD_destroy_response) destroy_response;
	__typeof__(&MHD_lookup_connection_value) lookup_connection_value;
} mhd;

static pthread_once_t mhd_once = PTHREAD_ONCE_INIT;
static const char *mhd_error; /* NULL once every symbol is loaded */

static void mhd_load_once(void)
{
	void *lib = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		mhd_error = dlerror();
		return;
	}
#define MHD_SYM(name)                                                       \
	if (!(*(void **)&mhd.name = dlsym(lib, "MHD_" #name))) { \
		mhd_error = "missing symbol MHD_" #name;            \
		return;                                             \
	}
	MHD_SYM(start_daemon)
	MHD_SYM(stop_daemon)
	MHD_SYM(quiesce_daemon)
	MHD_SYM(create_response_from_buffer)
	MHD_SYM(add_response_header)
	MHD_SYM(queue_response)
	MHD_SYM(destroy_response)
	MHD_SYM(lookup_connection_value)
#undef MHD_SYM
}

#define API_CONN_LIMIT   32
#define API_CONN_TIMEOUT 30 /* seconds an idle client may hold a connection */

struct api_server {
	struct MHD_Daemon *daemon;
	int fd;
	char *path;
	ino_t ino;             /* the socket we bound: unlink only that one */
	struct api_config *cfg;
	const struct api_ops *ops;
	void *opaque;
	bool thread_ready;     /* MHD's thread has named itself and tried its filter */
	bool filtered;         /* ... and the filter is in place (or seccomp is off) */
};

/* One request's body, gathered across MHD's upload callbacks. */
struct api_request {
	char *body;
	size_t len;
	bool too_big;
	bool stop_after_reply; /* Stop: ends the process, so only once answered */
};

static int sock_err(char *err, size_t errlen, int e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int sock_err(char *err, size_t errlen, int e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return e;
}

int api_listen_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (!*path || strlen(path) >= sizeof(sa.sun_path))
		return sock_err(err, errlen, -ENAMETOOLONG, "%s: a socket path must be 1 to %zu bytes", path,
				sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return sock_err(err, errlen, -errno, "socket: %s", strerror(errno));
	for (int attempt = 0; bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0; attempt++) {
		int e = errno;
		struct stat st;
		if (e != EADDRINUSE || attempt > 0 || lstat(path, &st) < 0) {
			close(fd);
			return sock_err(err, errlen, -e, "%s: cannot bind: %s", path, strerror(e));
		}
		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return sock_err(err, errlen, -EEXIST, "%s exists and is not a socket", path);
		}
		/* Someone answering means a live server: never take its path.
		 * Refused means a stale socket a dead process left: replace it. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc = probe < 0 ? -1 : connect(probe, (struct sockaddr *)&sa, sizeof(sa));
		e = errno;
		if (probe >= 0)
			close(probe);
		if (rc == 0 || e != ECONNREFUSED) {
			close(fd);
			return sock_err(err, errlen, -EADDRINUSE, "%s is in use by a running process", path);
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			e = errno;
			close(fd);
			return sock_err(err, errlen, -e, "%s: cannot remove the stale socket: %s", path, strerror(e));
		}
	}
	if (listen(fd, 16) < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return sock_err(err, errlen, -e, "%s: listen: %s", path, strerror(e));
	}
	return fd;
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, const struct api_reply *reply)
{
	size_t len = reply->body ? strlen(reply->body) : 0;
	struct MHD_Response *resp = mhd.create_response_from_buffer(len, reply->body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	if (len)
		mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ret = mhd.queue_response(conn, (unsigned int)reply->status, resp);
	mhd.destroy_response(resp);
	return ret;
}

static void reply_too_big(struct api_reply *reply, const char *what)
{
	char msg[160];
	snprintf(msg, sizeof(msg), "Request payload with size %s is larger than the limit of %d allowed by server.",
		 what, API_MAX_BODY);
	*reply = (struct api_reply){ 0 };
	api_reply_error(reply, 413, msg);
}

static void api_run(struct api_server *srv, const char *method, const char *url, struct api_request *req,
		    struct api_reply *reply)
{
	enum api_state state = srv->ops->state(srv->opaque);
	api_handle(srv->cfg, state, method, url, req->body, req->len, reply);
	if (reply->action == API_ACT_NONE)
		return;
	if (reply->action == API_ACT_STOP) {
		req->stop_after_reply = true; /* see api_completed() */
		return;
	}
	char err[512] = "";
	log_clear_last_error();
	int rc = srv->ops->action(srv->opaque, reply->action, err, sizeof(err));
	if (rc) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", *log_last_error() ? log_last_error() : strerror(-rc));
		api_reply_error(reply, 400, err);
	}
}

/* Called in MHD's thread when a connection opens, before its request is
 * read: the thread names itself and loads the API's seccomp filter there,
 * so no byte a client sends is parsed without it. */
static void api_connection_opened(void *cls, struct MHD_Connection *conn, void **socket_context,
				  enum MHD_ConnectionNotificationCode code)
{
	struct api_server *srv = cls;
	if (code != MHD_CONNECTION_NOTIFY_STARTED || srv->thread_ready)
		return;
	srv->thread_ready = true;
	pthread_setname_np(pthread_self(), "api"); /* for the JSON log's "thread" */
	srv->filtered = sandbox_enter(THREAD_API) == 0;
}

static enum MHD_Result api_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct api_server *srv = cls;
	struct api_request *req = *con_cls;
	struct api_reply reply;

	if (!srv->filtered)
		return MHD_NO; /* no filter in this thread: serve nothing */
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*con_cls = req;
		/* A body announced too big is never stored: it is read and
		 * dropped, then refused. Replying before the client has sent it
		 * would race with the client's writes and reset the connection. */
		const char *cl = mhd.lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > API_MAX_BODY)
			req->too_big = true;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->too_big)
			return MHD_YES;
		if (req->len + n > API_MAX_BODY) {
			req->too_big = true; /* chunked: discovered while reading */
			free(req->body);
			req->body = NULL;
			return MHD_YES;
		}
		char *grown = realloc(req->body, req->len + n + 1);
		if (!grown)
			return MHD_NO;
		memcpy(grown + req->len, upload_data, n);
		req->body = grown;
		req->len += n;
		req->body[req->len] = '\0';
		return MHD_YES;
	}
	if (req->too_big) {
		char what[32];
		snprintf(what, sizeof(what), "over %d", API_MAX_BODY);
		reply_too_big(&reply, what);
	} else {
		api_run(srv, method, url, req, &reply);
	}
	log_debug("API: %s %s -> %d", method, url, reply.status);
	enum MHD_Result ret = send_reply(conn, &reply);
	api_reply_free(&reply);
	return ret;
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	struct api_server *srv = cls;
	struct api_request *req = *con_cls;
	if (req) {
		if (req->stop_after_reply) {
			char err[64];
			srv->ops->action(srv->opaque, API_ACT_STOP, err, sizeof(err));
		}
		free(req->body);
		free(req);
	}
	*con_cls = NULL;
}

static void api_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_debug("API server: %s", msg);
}

int api_server_start(struct api_server **out, const char *sock_path, struct api_config *cfg,
		     const struct api_ops *ops, void *opaque, char *err, size_t errlen)
{
	*out = NULL;
	pthread_once(&mhd_once, mhd_load_once);
	if (mhd_error)
		return sock_err(err, errlen, -ENOTSUP, "cannot load %s (apt-get install libmicrohttpd12): %s", MHD_SONAME,
				mhd_error);
	struct api_server *srv = calloc(1, sizeof(*srv));
	if (!srv || !(srv->path = strdup(sock_path))) {
		free(srv);
		return sock_err(err, errlen, -ENOMEM, "out of memory");
	}
	srv->cfg = cfg;
	srv->ops = ops;
	srv->opaque = opaque;
	srv->fd = api_listen_unix(sock_path, err, errlen);
	if (srv->fd < 0) {
		int e = srv->fd;
		free(srv->path);
		free(srv);
		return e;
	}
	struct stat st;
	if (stat(sock_path, &st) == 0)
		srv->ino = st.st_ino;
	srv->daemon = mhd.start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
					       MHD_USE_ERROR_LOG,
				       0, NULL, NULL, api_access, srv, MHD_OPTION_EXTERNAL_LOGGER, api_mhd_log, srv,
				       MHD_OPTION_LISTEN_SOCKET, srv->fd, MHD_OPTION_NOTIFY_COMPLETED, api_completed, srv,
				       MHD_OPTION_NOTIFY_CONNECTION, api_connection_opened, srv,
				       MHD_OPTION_CONNECTION_LIMIT, (unsigned int)API_CONN_LIMIT,
				       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)API_CONN_TIMEOUT, MHD_OPTION_END);
	if (!srv->daemon) {
		close(srv->fd);
		unlink(sock_path);
		free(srv->path);
		free(srv);
		return sock_err(err, errlen, -EIO, "%s: cannot start the HTTP server", sock_path);
	}
	*out = srv;
	return 0;
}

void api_server_stop(struct api_server *srv)
{
	if (!srv)
		return;
	/* Quiesce first: MHD hands the listening socket back, so it is closed
	 * exactly once, here. */
	MHD_socket fd = mhd.quiesce_daemon(srv->daemon);
	mhd.stop_daemon(srv->daemon);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	struct stat st;
	if (stat(srv->path, &st) == 0 && st.st_ino == srv->ino)
		unlink(srv->path);
	free(srv->path);
	free(srv);
}
