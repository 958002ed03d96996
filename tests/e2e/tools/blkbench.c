/* blkbench: block I/O throughput, for the virtio-blk benchmark (bench/io).
 * Built static into the test initramfs (guest side) and for the host, so
 * the same code measures the guest's disk and the host file behind it.
 *
 *   blkbench PATH randread|randwrite|seqread|seqwrite SECONDS BLOCK_SIZE THREADS [direct|buffered]
 *
 * Each thread issues synchronous pread/pwrite of BLOCK_SIZE bytes (aligned,
 * O_DIRECT by default so the guest's page cache is not what is measured),
 * at random block offsets or sequentially through its own slice of the
 * device, until SECONDS have passed. THREADS is the queue depth. Prints
 *   BENCH mode=MODE bs=N threads=N ops=N seconds=S iops=N mbps=N
 * and exits 0, or prints why it could not and exits 1. */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

struct job {
	int fd;
	int write, random;
	uint64_t bs, nr_blocks, first, count; /* this thread's slice, in blocks */
	double seconds;
	uint64_t ops;
	int error;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64: a cheap per-thread random block number */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	void *buf;
	if (posix_memalign(&buf, 4096, j->bs)) {
		j->error = ENOMEM;
		return NULL;
	}
	memset(buf, 0x5a, j->bs);
	uint64_t seed = (uint64_t)(uintptr_t)j * 0x9E3779B97F4A7C15ULL | 1;
	uint64_t pos = 0;
	double end = now() + j->seconds;
	while (now() < end) {
		for (int batch = 0; batch < 16; batch++) {
			uint64_t block = j->random ? next_random(&seed) % j->nr_blocks : j->first + pos++ % j->count;
			off_t off = (off_t)(block * j->bs);
			ssize_t n = j->write ? pwrite(j->fd, buf, j->bs, off) : pread(j->fd, buf, j->bs, off);
			if (n != (ssize_t)j->bs) {
				j->error = n < 0 ? errno : EIO;
				free(buf);
				return NULL;
			}
			j->ops++;
		}
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: blkbench PATH randread|randwrite|seqread|seqwrite SECONDS BLOCK_SIZE THREADS "
				"[direct|buffered]\n");
		return 1;
	}
	const char *path = argv[1], *mode = argv[2];
	double seconds = atof(argv[3]);
	uint64_t bs = strtoull(argv[4], NULL, 0);
	int threads = atoi(argv[5]);
	int direct = argc < 7 || strcmp(argv[6], "buffered") != 0;
	int write = !strcmp(mode, "randwrite") || !strcmp(mode, "seqwrite");
	int random = !strncmp(mode, "rand", 4);
	if ((!write && strcmp(mode, "randread") && strcmp(mode, "seqread")) || seconds <= 0 || bs < 512 ||
	    bs % 512 || threads < 1 || threads > MAX_THREADS) {
		fprintf(stderr, "blkbench: bad arguments\n");
		return 1;
	}
	int fd = open(path, (write ? O_RDWR : O_RDONLY) | (direct ? O_DIRECT : 0));
	if (fd < 0) {
		fprintf(stderr, "blkbench: %s: %s\n", path, strerror(errno));
		return 1;
	}
	off_t size = lseek(fd, 0, SEEK_END);
	uint64_t nr_blocks = size > 0 ? (uint64_t)size / bs : 0;
	if (nr_blocks < (uint64_t)threads) {
		fprintf(stderr, "blkbench: %s: too small for %d threads of %llu-byte blocks\n", path, threads,
			(unsigned long long)bs);
		return 1;
	}
	struct job jobs[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	uint64_t slice = nr_blocks / (uint64_t)threads;
	double start = now();
	for (int i = 0; i < threads; i++) {
		jobs[i] = (struct job){ .fd = fd, .write = write, .random = random, .bs = bs, .nr_blocks = nr_blocks,
					.first = slice * (uint64_t)i, .count = slice, .seconds = seconds };
		if (pthread_create(&tids[i], NULL, worker, &jobs[i])) {
			fprintf(stderr, "blkbench: cannot start thread %d\n", i);
			return 1;
		}
	}
	uint64_t ops = 0;
	int error = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(tids[i], NULL);
		ops += jobs[i].ops;
		if (jobs[i].error)
			error = jobs[i].error;
	}
	if (write && fdatasync(fd) < 0)
		error = errno;
	double elapsed = now() - start;
	close(fd);
	if (error) {
		fprintf(stderr, "blkbench: %s %s: %s\n", path, mode, strerror(error));
		return 1;
	}
	printf("BENCH mode=%s bs=%llu threads=%d ops=%llu seconds=%.3f iops=%.0f mbps=%.1f\n", mode,
	       (unsigned long long)bs, threads, (unsigned long long)ops, elapsed, (double)ops / elapsed,
	       (double)ops * (double)bs / elapsed / 1e6);
	return 0;
}
