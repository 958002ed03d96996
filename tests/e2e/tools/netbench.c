/* netbench: TCP throughput, for the virtio-net benchmark (bench/io). Built
 * static into the test initramfs (guest side) and for the host.
 *
 *   netbench server PORT                 serve one client, then exit
 *   netbench client HOST PORT MB tx|rx   tx: send MB MiB to the server;
 *                                        rx: receive MB MiB from it
 *
 * The client times from connect to the server's 8-byte acknowledgement of
 * the last byte (tx) or to the last byte received (rx), and prints
 *   BENCH net=tx|rx mib=N seconds=S mbps=N
 * The server is told the direction and size by a 9-byte request. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static char buf[CHUNK];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int full_io(int fd, void *p, size_t len, int is_write)
{
	char *c = p;
	while (len) {
		ssize_t n = is_write ? write(fd, c, len) : read(fd, c, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sends (or receives) total bytes in CHUNK pieces. */
static int stream(int fd, uint64_t total, int is_write)
{
	while (total) {
		size_t n = total < CHUNK ? (size_t)total : CHUNK;
		if (full_io(fd, buf, n, is_write) < 0)
			return -1;
		total -= n;
	}
	return 0;
}

static int serve(int port)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0) {
		perror("netbench server");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	int fd = accept(ls, NULL, NULL);
	unsigned char req[9];
	if (fd < 0 || full_io(fd, req, sizeof(req), 0) < 0) {
		perror("netbench server: request");
		return 1;
	}
	uint64_t total;
	memcpy(&total, req + 1, sizeof(total));
	if (req[0] == 't') { /* the client sends: receive, then acknowledge */
		if (stream(fd, total, 0) < 0 || full_io(fd, &total, sizeof(total), 1) < 0)
			return 1;
	} else if (stream(fd, total, 1) < 0) {
		return 1;
	}
	close(fd);
	close(ls);
	return 0;
}

static int client(const char *host, int port, uint64_t mib, int tx)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "netbench: bad host %s\n", host);
		return 1;
	}
	double start = now();
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("netbench client: connect");
		return 1;
	}
	uint64_t total = mib << 20;
	unsigned char req[9] = { tx ? 't' : 'r' };
	memcpy(req + 1, &total, sizeof(total));
	uint64_t ack = 0;
	if (full_io(fd, req, sizeof(req), 1) < 0 || stream(fd, total, tx) < 0 ||
	    (tx && (full_io(fd, &ack, sizeof(ack), 0) < 0 || ack != total))) {
		perror("netbench client: transfer");
		return 1;
	}
	double secs = now() - start;
	close(fd);
	printf("BENCH net=%s mib=%llu seconds=%.3f mbps=%.1f\n", tx ? "tx" : "rx", (unsigned long long)mib, secs,
	       (double)total / secs / 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "server"))
		return serve(atoi(argv[2]));
	if (argc == 6 && !strcmp(argv[1], "client") && (!strcmp(argv[5], "tx") || !strcmp(argv[5], "rx")))
		return client(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10), !strcmp(argv[5], "tx"));
	fprintf(stderr, "usage: netbench server PORT | netbench client HOST PORT MB tx|rx\n");
	return 1;
}
