/* virtio-console: the queue callbacks on split rings in fake guest RAM,
 * with a pipe (or a regular file) as the console fd: output written, a
 * full pipe waited for with EPOLLOUT instead of blocking, a pipe without
 * reader dropped; host input queued until the guest posts buffers, and
 * bounded. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/virtio_console.h"
#include "util.h"

#define RAM_GPA   0x100000ULL
#define RAM_SIZE  0x100000ULL
#define QSZ       16
#define RING_GPA(q)  (RAM_GPA + 0x4000ULL * (uint64_t)(q))
#define BUF_GPA   (RAM_GPA + 0x10000)

struct guest {
	struct virtio_console con;
	int pipe[2];
	uint8_t ram[RAM_SIZE];
	struct guest_memory mem;
	uint16_t avail_idx[2], next_desc[2];
	uint64_t next_buf;
};

static uint8_t *hva(struct guest *g, uint64_t gpa)
{
	return g->ram + (gpa - RAM_GPA);
}

/* A chain of n buffers on queue q; their addresses in gpas. */
static void post(struct guest *g, int q, int n, const uint32_t *lens, bool writable, uint64_t *gpas)
{
	uint16_t head = g->next_desc[q];
	for (int i = 0; i < n; i++) {
		uint16_t d = (uint16_t)((head + i) % QSZ), next = (uint16_t)((d + 1) % QSZ);
		uint16_t flags = (uint16_t)((writable ? 2 : 0) | (i + 1 < n ? 1 : 0));
		gpas[i] = g->next_buf;
		g->next_buf += (lens[i] + 15) & ~15u;
		uint8_t *p = hva(g, RING_GPA(q) + 16ULL * d);
		memcpy(p, &gpas[i], 8);
		memcpy(p + 8, &lens[i], 4);
		memcpy(p + 12, &flags, 2);
		memcpy(p + 14, &next, 2);
	}
	g->next_desc[q] = (uint16_t)((head + n) % QSZ);
	memcpy(hva(g, RING_GPA(q) + 0x1000 + 4 + 2ULL * (g->avail_idx[q] % QSZ)), &head, 2);
	g->avail_idx[q]++;
	memcpy(hva(g, RING_GPA(q) + 0x1000 + 2), &g->avail_idx[q], 2);
}

static uint16_t used_idx(struct guest *g, int q)
{
	uint16_t v;
	memcpy(&v, hva(g, RING_GPA(q) + 0x2000 + 2), 2);
	return v;
}

static uint32_t used_len(struct guest *g, int q, uint16_t slot)
{
	uint32_t v;
	memcpy(&v, hva(g, RING_GPA(q) + 0x2000 + 8 + 8ULL * (slot % QSZ)), 4);
	return v;
}

static struct guest *new_guest(int out_fd)
{
	struct guest *g = calloc(1, sizeof(*g));
	assert_non_null(g);
	g->pipe[0] = g->pipe[1] = -1;
	g->mem = (struct guest_memory){ .regions = { { RAM_GPA, RAM_SIZE, g->ram } }, .nr_regions = 1 };
	g->next_buf = BUF_GPA;
	virtio_console_setup(&g->con, out_fd, 0, 0);
	struct virtio_device *dev = &g->con.vdev;
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&dev->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		      VIRTIO_STATUS_DRIVER_OK;
	dev->driver_features = 1ull << VIRTIO_F_VERSION_1;
	dev->config_vector = VIRTIO_NO_VECTOR;
	for (int q = 0; q < 2; q++) {
		struct virtio_queue_state *s = &dev->queues[q];
		s->enabled = true;
		s->vector = VIRTIO_NO_VECTOR;
		s->vq = (struct virtq){ .size = QSZ, .desc_gpa = RING_GPA(q), .avail_gpa = RING_GPA(q) + 0x1000,
					.used_gpa = RING_GPA(q) + 0x2000 };
		assert_int_equal(virtq_activate(&s->vq, &g->mem), 0);
	}
	return g;
}

static int setup_pipe(void **state)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	struct guest *g = new_guest(p[1]);
	g->pipe[0] = p[0];
	g->pipe[1] = p[1];
	*state = g;
	return 0;
}

static int teardown(void **state)
{
	struct guest *g = *state;
	g->con.vdev.ops->reset(&g->con.vdev);
	pthread_mutex_destroy(&g->con.vdev.lock);
	if (g->pipe[0] >= 0)
		close(g->pipe[0]);
	if (g->pipe[1] >= 0)
		close(g->pipe[1]);
	free(g);
	return 0;
}

static void kick(struct guest *g, int q)
{
	virtq_refill_budget(&g->con.vdev.queues[q].vq);
	g->con.vdev.ops->queue_notify(&g->con.vdev, q);
}

/* Posts text as a transmit chain of two buffers. */
static void post_text(struct guest *g, const char *text)
{
	size_t n = strlen(text);
	uint32_t lens[2] = { (uint32_t)(n / 2), (uint32_t)(n - n / 2) };
	uint64_t gpas[2];
	post(g, CONSOLE_TX_QUEUE, 2, lens, false, gpas);
	memcpy(hva(g, gpas[0]), text, lens[0]);
	memcpy(hva(g, gpas[1]), text + lens[0], lens[1]);
}

static void test_output(void **state)
{
	struct guest *g = *state;
	post_text(g, "hello, ");
	post_text(g, "console\n");
	kick(g, CONSOLE_TX_QUEUE);
	assert_int_equal(used_idx(g, CONSOLE_TX_QUEUE), 2);
	assert_int_equal(used_len(g, CONSOLE_TX_QUEUE, 0), 0);
	char buf[64] = { 0 };
	assert_int_equal(read(g->pipe[0], buf, sizeof(buf)), 15);
	assert_string_equal(buf, "hello, console\n");
	assert_int_equal(g->con.stats[CONSOLE_STAT_TX_BYTES], 15);
}

/* A full pipe: the chain waits (not pushed), the worker watches for
 * EPOLLOUT; once there is room the rest goes out in order. */
static void test_output_stall(void **state)
{
	struct guest *g = *state;
	struct virtio_device *dev = &g->con.vdev;
	int fl = fcntl(g->pipe[1], F_GETFL);
	fcntl(g->pipe[1], F_SETFL, fl | O_NONBLOCK);
	static char junk[4096];
	size_t filled = 0;
	ssize_t n;
	while ((n = write(g->pipe[1], junk, sizeof(junk))) > 0)
		filled += (size_t)n;
	assert_int_equal(errno, EAGAIN);
	fcntl(g->pipe[1], F_SETFL, fl);

	post_text(g, "abc");
	post_text(g, "def");
	kick(g, CONSOLE_TX_QUEUE);
	assert_int_equal(used_idx(g, CONSOLE_TX_QUEUE), 0);
	assert_int_equal(dev->nr_watches, 1);
	assert_int_equal(dev->watches[0].fd, g->pipe[1]);
	assert_int_equal(dev->watches[0].events, EPOLLOUT);
	assert_int_equal(g->con.stats[CONSOLE_STAT_OUTPUT_STALLS], 1);
	/* Another kick while full changes nothing. */
	kick(g, CONSOLE_TX_QUEUE);
	assert_int_equal(used_idx(g, CONSOLE_TX_QUEUE), 0);
	assert_int_equal(dev->nr_watches, 1);

	/* The reader catches up: the worker's EPOLLOUT callback. */
	static char sink[1 << 16];
	while (filled) {
		n = read(g->pipe[0], sink, MIN(sizeof(sink), filled));
		assert_true(n > 0);
		filled -= (size_t)n;
	}
	virtq_refill_budget(&dev->queues[CONSOLE_TX_QUEUE].vq);
	dev->watches[0].fn(dev, g->pipe[1], EPOLLOUT);
	assert_int_equal(dev->nr_watches, 0);
	assert_int_equal(used_idx(g, CONSOLE_TX_QUEUE), 2);
	char buf[16] = { 0 };
	assert_int_equal(read(g->pipe[0], buf, sizeof(buf)), 6);
	assert_string_equal(buf, "abcdef");
}

static void test_output_no_reader(void **state)
{
	struct guest *g = *state;
	close(g->pipe[0]);
	g->pipe[0] = -1;
	post_text(g, "lost");
	kick(g, CONSOLE_TX_QUEUE);
	/* Dropped, but the guest gets its buffer back. */
	assert_int_equal(used_idx(g, CONSOLE_TX_QUEUE), 1);
	assert_int_equal(g->con.stats[CONSOLE_STAT_OUTPUT_DROPPED], 4);
	assert_int_equal(g->con.stats[CONSOLE_STAT_TX_BYTES], 0);
}

static void test_output_file(void **state)
{
	FILE *f = tmpfile();
	assert_non_null(f);
	struct guest *g = new_guest(fileno(f));
	assert_false(g->con.out_pollable);
	post_text(g, "to a file");
	kick(g, CONSOLE_TX_QUEUE);
	assert_int_equal(used_idx(g, CONSOLE_TX_QUEUE), 1);
	char buf[16] = { 0 };
	assert_int_equal(pread(fileno(f), buf, sizeof(buf), 0), 9);
	assert_string_equal(buf, "to a file");
	*state = g;
	teardown(state);
	fclose(f);
}

static void test_input(void **state)
{
	struct guest *g = *state;
	/* Typed before the guest posted buffers: kept. */
	assert_int_equal(virtio_console_input(&g->con, (const uint8_t *)"ls -l\n", 6), 6);
	kick(g, CONSOLE_RX_QUEUE);
	assert_int_equal(used_idx(g, CONSOLE_RX_QUEUE), 0);

	uint32_t len = 4;
	uint64_t gpa[1], gpa2[1];
	post(g, CONSOLE_RX_QUEUE, 1, &len, true, gpa);
	kick(g, CONSOLE_RX_QUEUE);
	assert_int_equal(used_idx(g, CONSOLE_RX_QUEUE), 1);
	assert_int_equal(used_len(g, CONSOLE_RX_QUEUE, 0), 4);
	assert_memory_equal(hva(g, gpa[0]), "ls -", 4);

	len = 64;
	post(g, CONSOLE_RX_QUEUE, 1, &len, true, gpa2);
	kick(g, CONSOLE_RX_QUEUE);
	assert_int_equal(used_idx(g, CONSOLE_RX_QUEUE), 2);
	assert_int_equal(used_len(g, CONSOLE_RX_QUEUE, 1), 2);
	assert_memory_equal(hva(g, gpa2[0]), "l\n", 2);
	assert_int_equal(g->con.stats[CONSOLE_STAT_RX_BYTES], 6);
}

static void test_input_bounded(void **state)
{
	struct guest *g = *state;
	static uint8_t big[CONSOLE_INPUT_MAX + 100];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	assert_int_equal(virtio_console_input(&g->con, big, 100), 100);
	assert_int_equal(virtio_console_input(&g->con, big + 100, CONSOLE_INPUT_MAX), CONSOLE_INPUT_MAX - 100);
	assert_int_equal(g->con.stats[CONSOLE_STAT_INPUT_DROPPED], 100);
	/* Drained in order across the ring's wrap. */
	uint32_t len = 3000;
	uint64_t a[1], b[1];
	post(g, CONSOLE_RX_QUEUE, 1, &len, true, a);
	kick(g, CONSOLE_RX_QUEUE);
	assert_int_equal(virtio_console_input(&g->con, big + CONSOLE_INPUT_MAX, 100), 100);
	len = 2000;
	post(g, CONSOLE_RX_QUEUE, 1, &len, true, b);
	kick(g, CONSOLE_RX_QUEUE);
	assert_memory_equal(hva(g, a[0]), big, 3000);
	assert_int_equal(used_len(g, CONSOLE_RX_QUEUE, 1), CONSOLE_INPUT_MAX - 3000 + 100);
	assert_memory_equal(hva(g, b[0]), big + 3000, CONSOLE_INPUT_MAX + 100 - 3000);
}

static void test_config(void **state)
{
	struct virtio_console con;
	virtio_console_setup(&con, STDERR_FILENO, 132, 43);
	assert_int_equal(con.vdev.device_id, VIRTIO_ID_CONSOLE);
	assert_int_equal(con.vdev.nr_queues, 2);
	assert_true(con.vdev.features & 1ull << VIRTIO_CONSOLE_F_SIZE);
	assert_int_equal(con.vdev.config_size, 12);
	assert_int_equal(con.vdev.config[0] | con.vdev.config[1] << 8, 132);
	assert_int_equal(con.vdev.config[2] | con.vdev.config[3] << 8, 43);
	virtio_console_setup(&con, STDERR_FILENO, 0, 0);
	assert_false(con.vdev.features & 1ull << VIRTIO_CONSOLE_F_SIZE);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_output_file),
		cmocka_unit_test_setup_teardown(test_output, setup_pipe, teardown),
		cmocka_unit_test_setup_teardown(test_output_stall, setup_pipe, teardown),
		cmocka_unit_test_setup_teardown(test_output_no_reader, setup_pipe, teardown),
		cmocka_unit_test_setup_teardown(test_input, setup_pipe, teardown),
		cmocka_unit_test_setup_teardown(test_input_bounded, setup_pipe, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
