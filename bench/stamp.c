/* stamp: runs one VMM command and timestamps what it does, for bench/run.
 *
 *   stamp [--timeout S] [--log FILE] [--idle LINE --ram-mib N] -- CMD ARGS...
 *   stamp --repeat K [--parallel P] [--timeout S] [--log FILE] -- CMD ARGS...
 *
 * Single run: CMD's stdout (the guest's serial console) comes through a
 * pipe read at once, so each byte is timestamped when the VMM writes it.
 * Prints one line of key=value:
 *   total_ms      fork to the end of wait4 (start to exit)
 *   first_ms      first output byte (firmware output included)
 *   guest_ms      first byte of the first "kvmlite guest:" (the guest's own)
 *   loop_ms       from the newline of "kvmlite guest: bench begin" to the
 *                 next byte (the loop between the two markers); -1 if none
 *   maxrss_kb     wait4's ru_maxrss (peak RSS)
 *   ram_rss_kb    with --idle: resident guest RAM when the LINE arrived
 *                 (Rss of mappings at least N MiB big, from /proc/PID/smaps);
 *                 then CMD is killed
 *   status        exit code, or 128+signal, or "timeout"
 * The console output goes to FILE at the end, not while timing: FILE may be
 * on a slow file system (9p in the KVM test host); CMD's stderr goes there
 * directly.
 * --repeat: K runs back to back (P workers in parallel, K each), stdout to
 * /dev/null, stderr to FILE; prints vms, failures and elapsed_ms. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MARK_GUEST "kvmlite guest:"
#define MARK_BEGIN "kvmlite guest: bench begin"
#define LOG_MAX    (1 << 20) /* console bytes kept for the log */

struct opts {
	double timeout_s;
	const char *log;
	const char *idle;
	long ram_mib;
	int repeat, parallel;
	char **argv;
};

static void on_alarm(int sig)
{
	(void)sig;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int open_log(const char *path)
{
	int fd = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	if (fd < 0) {
		fprintf(stderr, "stamp: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	return fd;
}

/* Child side: stdin /dev/null, stdout out_fd, stderr err_fd, then CMD. */
static void exec_child(char **argv, int out_fd, int err_fd)
{
	int null = open("/dev/null", O_RDONLY);

	if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
		_exit(126);
	execvp(argv[0], argv);
	fprintf(stderr, "stamp: %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static int status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

/* Sum of Rss over mappings at least min_kb big: the guest RAM mapping(s). */
static long guest_ram_rss_kb(pid_t pid, long min_kb)
{
	char path[64], line[512];
	unsigned long lo, hi;
	bool big = false;
	long total = 0, kb;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			big = (long)((hi - lo) / 1024) >= min_kb;
		else if (big && sscanf(line, "Rss: %ld kB", &kb) == 1)
			total += kb;
	}
	fclose(f);
	return total;
}

static int run_single(const struct opts *o)
{
	/* A ring of the last bytes and their arrival times, to find where a
	 * marker started even if it came in several reads. */
	enum { RING = 64 };
	char ring[RING], line[256];
	double ring_t[RING];
	size_t nbytes = 0, llen = 0;
	double t0, first = -1, guest = -1, begin_nl = -1, loop = -1, ram_rss = -1, end;
	bool want_loop_end = false, killed = false, timed_out = false;
	int pfd[2], log_fd, status = 0;
	struct rusage ru = { 0 };
	char *out = malloc(LOG_MAX);
	size_t out_len = 0;
	pid_t pid;

	log_fd = open_log(o->log);
	if (!out)
		return perror("stamp: malloc"), 2;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return perror("stamp: pipe"), 2;
	t0 = now_ms();
	pid = fork();
	if (pid < 0)
		return perror("stamp: fork"), 2;
	if (pid == 0)
		exec_child(o->argv, pfd[1], log_fd);
	close(pfd[1]);

	for (;;) {
		char buf[4096];
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		double left = o->timeout_s * 1e3 - (now_ms() - t0);
		ssize_t n;
		double t;
		int r;

		if (left <= 0) {
			timed_out = true;
			kill(pid, SIGKILL);
			break;
		}
		r = poll(&p, 1, (int)left + 1);
		if (r <= 0)
			continue; /* EINTR, or the deadline: checked above */
		n = read(pfd[0], buf, sizeof(buf));
		t = now_ms();
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out_len < LOG_MAX) {
			size_t k = (size_t)n < LOG_MAX - out_len ? (size_t)n : LOG_MAX - out_len;

			memcpy(out + out_len, buf, k);
			out_len += k;
		}
		if (first < 0)
			first = t;
		for (ssize_t i = 0; i < n; i++, nbytes++) {
			char c = buf[i];

			if (want_loop_end) {
				loop = t - begin_nl;
				want_loop_end = false;
			}
			ring[nbytes % RING] = c;
			ring_t[nbytes % RING] = t;
			if (guest < 0 && nbytes + 1 >= strlen(MARK_GUEST)) {
				size_t m = strlen(MARK_GUEST), s = nbytes + 1 - m;
				bool match = true;

				for (size_t k = 0; k < m && match; k++)
					match = ring[(s + k) % RING] == MARK_GUEST[k];
				if (match)
					guest = ring_t[s % RING];
			}
			if (c != '\n') {
				if (c != '\r' && llen < sizeof(line) - 1)
					line[llen++] = c;
				continue;
			}
			line[llen] = 0;
			llen = 0;
			if (begin_nl < 0 && strstr(line, MARK_BEGIN)) {
				begin_nl = t;
				want_loop_end = true;
			}
			if (o->idle && !killed && strstr(line, o->idle)) {
				ram_rss = (double)guest_ram_rss_kb(pid, o->ram_mib * 1024);
				kill(pid, SIGKILL);
				killed = true;
			}
		}
	}
	close(pfd[0]);
	/* Bounded: a VMM may close its output and linger, or be stuck in the
	 * kernel; SIGALRM (no SA_RESTART) interrupts wait4. */
	sigaction(SIGALRM, &(struct sigaction){ .sa_handler = on_alarm }, NULL);
	alarm(10);
	for (int tries = 0; wait4(pid, &status, 0, &ru) < 0; tries++) {
		if (errno != EINTR || tries == 2) {
			printf("status=unkillable\n");
			return 0;
		}
		kill(pid, SIGKILL);
		alarm(10);
	}
	alarm(0);
	end = now_ms();
	if (write(log_fd, out, out_len) < 0) {
		/* the log is best effort */
	}
	free(out);
	close(log_fd);
	printf("total_ms=%.3f first_ms=%.3f guest_ms=%.3f loop_ms=%.3f maxrss_kb=%ld ram_rss_kb=%.0f status=",
	       end - t0, first < 0 ? -1 : first - t0, guest < 0 ? -1 : guest - t0, loop, ru.ru_maxrss, ram_rss);
	if (timed_out)
		printf("timeout\n");
	else
		printf("%d\n", killed ? 0 : status_code(status));
	return 0;
}

/* One worker of --repeat: K runs in a row; exits with the failure count. */
static int worker(const struct opts *o, int log_fd)
{
	sigset_t chld;
	int failures = 0, null = open("/dev/null", O_WRONLY | O_CLOEXEC);

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	for (int k = 0; k < o->repeat; k++) {
		struct timespec to = { (time_t)o->timeout_s, 0 };
		int status;
		pid_t pid = fork();

		if (pid < 0)
			return o->repeat;
		if (pid == 0) {
			sigprocmask(SIG_UNBLOCK, &chld, NULL);
			exec_child(o->argv, null, log_fd);
		}
		/* Sleeps until the child ends (no polling delay) or times out. */
		while (waitpid(pid, &status, WNOHANG) == 0) {
			if (sigtimedwait(&chld, NULL, &to) < 0 && errno == EAGAIN) {
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				status = -1;
				break;
			}
		}
		if (status != 0)
			failures++;
	}
	return failures > 255 ? 255 : failures;
}

static int run_repeat(const struct opts *o)
{
	int log_fd = open_log(o->log), failures = 0, status;
	pid_t pids[64];
	double t0 = now_ms(), t1;

	for (int w = 0; w < o->parallel; w++) {
		pids[w] = fork();
		if (pids[w] < 0)
			return perror("stamp: fork"), 2;
		if (pids[w] == 0)
			_exit(worker(o, log_fd));
	}
	for (int w = 0; w < o->parallel; w++) {
		while (waitpid(pids[w], &status, 0) < 0 && errno == EINTR)
			;
		failures += WIFEXITED(status) ? WEXITSTATUS(status) : o->repeat;
	}
	t1 = now_ms();
	printf("vms=%d failures=%d elapsed_ms=%.3f\n", o->repeat * o->parallel, failures, t1 - t0);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: stamp [--timeout S] [--log FILE] [--idle LINE --ram-mib N] -- CMD ARGS...\n"
			"       stamp --repeat K [--parallel P] [--timeout S] [--log FILE] -- CMD ARGS...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .timeout_s = 120, .parallel = 1 };
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--"))
			break;
		if (!v)
			usage();
		if (!strcmp(a, "--timeout"))
			o.timeout_s = atof(v);
		else if (!strcmp(a, "--log"))
			o.log = v;
		else if (!strcmp(a, "--idle"))
			o.idle = v;
		else if (!strcmp(a, "--ram-mib"))
			o.ram_mib = atol(v);
		else if (!strcmp(a, "--repeat"))
			o.repeat = atoi(v);
		else if (!strcmp(a, "--parallel"))
			o.parallel = atoi(v);
		else
			usage();
		i++;
	}
	if (i + 1 >= argc || o.timeout_s <= 0 || o.parallel < 1 || o.parallel > 64 || o.repeat < 0 ||
	    (o.idle && o.ram_mib <= 0))
		usage();
	o.argv = argv + i + 1;
	signal(SIGPIPE, SIG_IGN);
	return o.repeat ? run_repeat(&o) : run_single(&o);
}
