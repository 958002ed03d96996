/* vsock_echo: the guest side of the virtio-vsock end-to-end test. Built
 * static into the test initramfs.
 *
 *   vsock_echo listen PORT [COUNT]     accept COUNT connections (default 1)
 *                                      one after the other and echo each
 *                                      one's bytes back until its EOF
 *   vsock_echo connect CID PORT TEXT   connect, send TEXT, shut down the
 *                                      sending side, print what comes back
 *                                      until EOF (and a newline)
 *
 * Prints "vsock_echo: ..." and exits 1 on failure; gives up after 120 s. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

static char buf[64 * 1024];

static void die(const char *what)
{
	fprintf(stderr, "vsock_echo: %s: %s\n", what, strerror(errno));
	exit(1);
}

static unsigned parse_u32(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || !*s || *end || v > 0xffffffffUL) {
		fprintf(stderr, "vsock_echo: bad %s '%s'\n", what, s);
		exit(2);
	}
	return (unsigned)v;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int echo_listen(unsigned port, unsigned count)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(fd, 4) < 0)
		die("listen");
	for (unsigned i = 0; i < count; i++) {
		struct sockaddr_vm peer;
		socklen_t plen = sizeof(peer);
		int c = accept(fd, (struct sockaddr *)&peer, &plen);
		if (c < 0)
			die("accept");
		unsigned long long total = 0;
		for (;;) {
			ssize_t n = read(c, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				die("read");
			if (n == 0)
				break;
			if (write_all(c, buf, (size_t)n) < 0)
				die("write");
			total += (unsigned long long)n;
		}
		close(c);
		printf("vsock_echo: echoed %llu bytes to cid %u port %u\n", total, peer.svm_cid, peer.svm_port);
		fflush(stdout);
	}
	close(fd);
	return 0;
}

static int echo_connect(unsigned cid, unsigned port, const char *text)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	if (write_all(fd, text, strlen(text)) < 0)
		die("write");
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown");
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read");
		if (n == 0 || (got += (size_t)n) == sizeof(buf) - 1)
			break;
	}
	close(fd);
	buf[got] = 0;
	printf("%s\n", buf);
	return 0;
}

int main(int argc, char **argv)
{
	alarm(120);
	if (argc >= 3 && argc <= 4 && !strcmp(argv[1], "listen"))
		return echo_listen(parse_u32(argv[2], "port"), argc == 4 ? parse_u32(argv[3], "count") : 1);
	if (argc == 5 && !strcmp(argv[1], "connect"))
		return echo_connect(parse_u32(argv[2], "cid"), parse_u32(argv[3], "port"), argv[4]);
	fprintf(stderr, "usage: vsock_echo listen PORT [COUNT] | vsock_echo connect CID PORT TEXT\n");
	return 2;
}
