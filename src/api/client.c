/* The client side of the API, for `kvmlite pause|resume|stop|status|list`:
 * one hand-written HTTP/1.1 request per connection ("Connection: close"),
 * and just enough of the answer read back: the status code and the body. */
#include "api.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define CLIENT_TIMEOUT_S 60          /* a pause waits for every vCPU */
#define CLIENT_MAX_RESPONSE (256 * 1024)

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int api_client_request(const char *sock_path, const char *method, const char *path, const char *body,
		       int *status, char *resp, size_t resp_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, sock_path, strlen(sock_path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	char head[512];
	size_t body_len = body ? strlen(body) : 0;
	int n = snprintf(head, sizeof(head),
			 "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n",
			 method, path);
	if (body)
		n += snprintf(head + n, sizeof(head) - (size_t)n,
			      "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	int err = (size_t)n >= sizeof(head) ? -ENAMETOOLONG : send_all(fd, head, (size_t)n);
	if (!err && body)
		err = send_all(fd, body, body_len);
	char *buf = err ? NULL : malloc(CLIENT_MAX_RESPONSE + 1);
	size_t got = 0;
	if (!err && !buf)
		err = -ENOMEM;
	while (!err && got < CLIENT_MAX_RESPONSE) {
		ssize_t r = recv(fd, buf + got, CLIENT_MAX_RESPONSE - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			err = errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (err) {
		free(buf);
		return err;
	}
	buf[got] = '\0';
	int code;
	char *body_start = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.%*1[01] %3d", &code) != 1 || !body_start) {
		free(buf);
		return -EPROTO;
	}
	*status = code;
	if (resp && resp_len)
		snprintf(resp, resp_len, "%s", body_start + 4);
	free(buf);
	return 0;
}

void api_client_fault(const char *resp, char *out, size_t out_len)
{
	out[0] = '\0';
	json_object *obj = json_tokener_parse(resp);
	json_object *msg;
	if (obj && json_object_object_get_ex(obj, "fault_message", &msg) && json_object_is_type(msg, json_type_string))
		snprintf(out, out_len, "%s", json_object_get_string(msg));
	json_object_put(obj);
}

const char *api_sock_dir(void)
{
	const char *dir = getenv("KVMLITE_SOCK_DIR");
	return dir && *dir ? dir : API_DEFAULT_SOCK_DIR;
}
