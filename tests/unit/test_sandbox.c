/* The seccomp filters, loaded for real in forked children: what a thread
 * type may do works, and one forbidden call kills the process (SIGSYS). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox.h"

enum probe {
	PROBE_NOTHING,      /* only calls the thread type needs */
	PROBE_INET_SOCKET,  /* forbidden to every thread type */
	PROBE_OPEN,         /* only the main thread opens files */
	PROBE_EXEC_MMAP,    /* executable memory: main thread only (dlopen) */
	PROBE_TTY_IOCTL,    /* a terminal ioctl: main thread only */
	PROBE_FORK,         /* a process, not a thread: never */
};

/* Runs `probe` in a child under the filters of `type` (the main thread's
 * first, as in kvmlite, then the type's own); returns its wait status. */
static int run_filtered(enum sandbox_thread type, enum probe probe)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sandbox_set_seccomp(SECCOMP_KILL);
		if (sandbox_enter(THREAD_VMM) < 0 || (type != THREAD_VMM && sandbox_enter(type) < 0))
			_exit(10);
		/* Calls every thread makes. */
		char c = 'x';
		if (write(STDOUT_FILENO, &c, 0) < 0 || getpid() <= 0)
			_exit(11);
		void *p;
		int fd;
		switch (probe) {
		case PROBE_NOTHING:
			break;
		case PROBE_INET_SOCKET:
			fd = socket(AF_INET, SOCK_DGRAM, 0);
			(void)fd;
			break;
		case PROBE_OPEN:
			fd = open("/dev/null", O_RDONLY);
			(void)fd;
			break;
		case PROBE_EXEC_MMAP:
			p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			(void)p;
			break;
		case PROBE_TTY_IOCTL: {
			struct termios t;
			(void)ioctl(STDIN_FILENO, TCGETS, &t);
			break;
		}
		case PROBE_FORK:
			(void)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, 0);
			break;
		}
		_exit(0); /* _exit: no LeakSanitizer pass in the child */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static bool killed_by_sigsys(int status)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
}

static bool exited_zero(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_each_type_runs_its_own_calls(void **state)
{
	(void)state;
	for (int t = 0; t < THREAD_COUNT; t++)
		assert_true(exited_zero(run_filtered((enum sandbox_thread)t, PROBE_NOTHING)));
}

static void test_inet_socket_kills_every_type(void **state)
{
	(void)state;
	for (int t = 0; t < THREAD_COUNT; t++)
		assert_true(killed_by_sigsys(run_filtered((enum sandbox_thread)t, PROBE_INET_SOCKET)));
}

static void test_fork_kills_every_type(void **state)
{
	(void)state;
	for (int t = 0; t < THREAD_COUNT; t++) {
#if defined(__SANITIZE_ADDRESS__)
		if (t == THREAD_VMM)
			continue; /* LeakSanitizer's tracer is a clone of the main thread */
#endif
		assert_true(killed_by_sigsys(run_filtered((enum sandbox_thread)t, PROBE_FORK)));
	}
}

static void test_main_thread_only_calls(void **state)
{
	(void)state;
	static const enum probe main_only[] = { PROBE_OPEN, PROBE_EXEC_MMAP, PROBE_TTY_IOCTL };
	for (size_t i = 0; i < sizeof(main_only) / sizeof(main_only[0]); i++) {
		int st = run_filtered(THREAD_VMM, main_only[i]);
		assert_true(exited_zero(st));
		assert_true(killed_by_sigsys(run_filtered(THREAD_VCPU, main_only[i])));
		assert_true(killed_by_sigsys(run_filtered(THREAD_DEVICE, main_only[i])));
		assert_true(killed_by_sigsys(run_filtered(THREAD_API, main_only[i])));
	}
}

static void test_off_filters_nothing(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sandbox_set_seccomp(SECCOMP_OFF);
		sandbox_enter(THREAD_VCPU);
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		_exit(fd >= 0 ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(exited_zero(status));
}

static bool listed(enum sandbox_thread type, const char *name)
{
	for (const char *const *n = sandbox_allowed_calls(type); *n; n++)
		if (!strcmp(*n, name))
			return true;
	return false;
}

static void test_allowed_lists(void **state)
{
	(void)state;
	assert_true(listed(THREAD_VCPU, "ioctl"));
	assert_false(listed(THREAD_VCPU, "openat"));
	assert_false(listed(THREAD_VCPU, "socket"));
	assert_true(listed(THREAD_DEVICE, "io_uring_enter"));
	assert_false(listed(THREAD_DEVICE, "openat"));
	assert_true(listed(THREAD_API, "accept4"));
	assert_false(listed(THREAD_API, "ioctl"));
	assert_true(listed(THREAD_VMM, "openat"));
	for (int t = 0; t < THREAD_COUNT; t++) {
		assert_false(listed((enum sandbox_thread)t, "execve"));
		assert_false(listed((enum sandbox_thread)t, "clone3")); /* ENOSYS, not allowed */
	}
	assert_string_equal(sandbox_thread_name(THREAD_DEVICE), "device");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_type_runs_its_own_calls),
		cmocka_unit_test(test_inet_socket_kills_every_type),
		cmocka_unit_test(test_fork_kills_every_type),
		cmocka_unit_test(test_main_thread_only_calls),
		cmocka_unit_test(test_off_filters_nothing),
		cmocka_unit_test(test_allowed_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
