/* `kvmlite run`: build a VM from the command line, run it, report how it
 * ended through the exit status. */
#include "cmd_run.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cmd.h"
#include "log.h"
#include "term.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

#define RUN_DEFAULT_RAM (256ULL << 20)
#define RUN_MIN_RAM (2ULL << 20)
#define RUN_MAX_CPUS 255 /* xAPIC IDs in the MADT */
#define CONSOLE_ESCAPE 0x01 /* Ctrl-A, then 'x' quits, as in QEMU */

static const char run_usage[] =
	"usage: kvmlite run [OPTIONS]\n"
	"\n"
	"Boots a guest on KVM; with no --kernel, the embedded test guest.\n"
	"\n"
	"  -k, --kernel PATH       bzImage, ELF vmlinux or PVH ELF kernel\n"
	"  -i, --initrd PATH       initial ramdisk\n"
	"      --cmdline STR       kernel command line (replaces the default)\n"
	"      --append STR        appended to the kernel command line\n"
	"  -c, --cpus N            vCPUs (default 1)\n"
	"  -m, --memory SIZE       guest RAM, e.g. 512M, 2G (default 256M)\n"
	"      --console serial|none   serial: COM1 is this terminal (default)\n"
	"      --on-reboot exit|restart  what a guest reboot does (default exit)\n"
	"      --stats             print exit and fallback counts at exit\n"
	"      --testdev           add the test device (for guest tests)\n"
	"  -v, --verbose           log more (repeat for debug)\n"
	"  -h, --help              this help\n"
	"\n"
	"Console: Ctrl-A x quits. Exit status: 0 when the guest powers off (or\n"
	"reboots with --on-reboot exit), 1 on a VMM error, 2 on a usage error,\n"
	"3 when the guest panics, 128+N when ended by signal N; with --testdev,\n"
	"the code the guest wrote.\n";

enum { OPT_CMDLINE = 256, OPT_APPEND, OPT_CONSOLE, OPT_ON_REBOOT, OPT_STATS, OPT_TESTDEV };

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int run_parse_args(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen)
{
	static const struct option options[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "append", required_argument, NULL, OPT_APPEND },
		{ "cpus", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "console", required_argument, NULL, OPT_CONSOLE },
		{ "on-reboot", required_argument, NULL, OPT_ON_REBOOT },
		{ "stats", no_argument, NULL, OPT_STATS },
		{ "testdev", no_argument, NULL, OPT_TESTDEV },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	*cfg = (struct vm_config){ .nr_cpus = 1, .ram_size = RUN_DEFAULT_RAM };
	opterr = 0;
	optind = 0; /* glibc: start afresh, so the parser can run more than once */
	int c;
	while ((c = getopt_long(argc, argv, ":k:i:c:m:vh", options, NULL)) != -1) {
		char *end;
		long n;
		switch (c) {
		case 'k': cfg->kernel_path = optarg; break;
		case 'i': cfg->initrd_path = optarg; break;
		case OPT_CMDLINE: cfg->cmdline = optarg; break;
		case OPT_APPEND: cfg->append = optarg; break;
		case 'c':
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 1 || n > RUN_MAX_CPUS)
				return fail(err, errlen, "--cpus %s: expected a number from 1 to %d", optarg, RUN_MAX_CPUS);
			cfg->nr_cpus = (int)n;
			break;
		case 'm':
			if (parse_size(optarg, &cfg->ram_size) < 0)
				return fail(err, errlen, "--memory %s: expected a size such as 512M or 2G", optarg);
			if (cfg->ram_size < RUN_MIN_RAM)
				return fail(err, errlen, "--memory %s: a guest needs at least 2M", optarg);
			if (cfg->ram_size % 4096)
				return fail(err, errlen, "--memory %s: must be a multiple of 4K", optarg);
			break;
		case OPT_CONSOLE:
			if (!strcmp(optarg, "serial"))
				cfg->console = CONSOLE_SERIAL;
			else if (!strcmp(optarg, "none"))
				cfg->console = CONSOLE_NONE;
			else
				return fail(err, errlen, "--console %s: expected serial or none", optarg);
			break;
		case OPT_ON_REBOOT:
			if (!strcmp(optarg, "exit"))
				cfg->on_reboot = REBOOT_EXIT;
			else if (!strcmp(optarg, "restart"))
				cfg->on_reboot = REBOOT_RESTART;
			else
				return fail(err, errlen, "--on-reboot %s: expected exit or restart", optarg);
			break;
		case OPT_STATS: cfg->stats = true; break;
		case OPT_TESTDEV: cfg->testdev = true; break;
		case 'v':
			if (log_threshold < LOG_DEBUG)
				log_threshold++;
			break;
		case 'h': return 1;
		case ':': return fail(err, errlen, "option %s needs a value", argv[optind - 1]);
		default: return fail(err, errlen, "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
	return 0;
}

/* Checks that need the host; one message naming the problem. */
static int run_check_host(const struct vm_config *cfg)
{
	const char *files[][2] = { { "--kernel", cfg->kernel_path }, { "--initrd", cfg->initrd_path } };
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		if (files[i][1] && access(files[i][1], R_OK) < 0) {
			log_error("%s %s: %s", files[i][0], files[i][1], strerror(errno));
			return -errno;
		}
	}
	long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
	if (pages > 0 && page_size > 0 && cfg->ram_size > (uint64_t)pages * (uint64_t)page_size) {
		log_error("--memory: %llu MiB is more than this host's %llu MiB of RAM",
			  (unsigned long long)(cfg->ram_size >> 20),
			  (unsigned long long)(((uint64_t)pages * (uint64_t)page_size) >> 20));
		return -ENOMEM;
	}
	return 0;
}

/* Console escape: Ctrl-A x quits; Ctrl-A Ctrl-A sends one Ctrl-A. */
struct console_state {
	bool escape;
	bool quit;
};

static size_t console_filter(struct console_state *st, uint8_t *buf, size_t len, bool is_tty)
{
	if (!is_tty)
		return len;
	size_t out = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t ch = buf[i];
		if (st->escape) {
			st->escape = false;
			if (ch == 'x') {
				st->quit = true;
				break;
			}
			if (ch != CONSOLE_ESCAPE)
				continue;
		} else if (ch == CONSOLE_ESCAPE) {
			st->escape = true;
			continue;
		}
		buf[out++] = ch;
	}
	return out;
}

/* Runs the VM until it stops: the main thread forwards console input and
 * turns termination signals into a stop. Returns the signal that ended
 * it, or 0. */
static int run_event_loop(struct vm *vm, int sig_fd)
{
	bool input = vm->console_input != NULL;
	bool is_tty = isatty(STDIN_FILENO);
	struct console_state console = { 0 };
	for (;;) {
		struct pollfd fds[3] = {
			{ .fd = vm->stop_fd, .events = POLLIN },
			{ .fd = sig_fd, .events = POLLIN },
			{ .fd = input ? STDIN_FILENO : -1, .events = POLLIN },
		};
		if (poll(fds, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			vm_stop(vm, VM_EXIT_ERROR, 0);
			return 0;
		}
		if (fds[0].revents)
			return 0;
		if (fds[1].revents) {
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
				vm_stop(vm, VM_EXIT_ERROR, 0);
				return (int)si.ssi_signo;
			}
		}
		if (fds[2].revents) {
			uint8_t buf[256];
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				input = false; /* EOF or error: the guest keeps running without input */
				continue;
			}
			size_t len = console_filter(&console, buf, (size_t)n, is_tty);
			if (len)
				vm->console_input(vm->console_opaque, buf, len);
			if (console.quit) {
				vm_stop(vm, VM_EXIT_POWEROFF, 0);
				return 0;
			}
		}
	}
}

static double ms_since_start(uint64_t ns)
{
	return ns ? (double)(ns - process_start_ns) / 1e6 : 0.0;
}

static void print_stats(struct vm *vm)
{
	fprintf(stderr, "startup: first KVM_RUN %.1f ms, first guest exit %.1f ms after process start\n",
		ms_since_start(vm->first_run_ns), ms_since_start(vm->first_exit_ns));
	fprintf(stderr, "exits:");
	for (int s = 0; s < VCPU_STAT_MAX; s++) {
		uint64_t total = 0;
		for (int i = 0; i < vm->nr_vcpus; i++)
			total += vm->vcpus[i].stats[s];
		fprintf(stderr, " %s=%llu", vcpu_stat_name((enum vcpu_stat)s), (unsigned long long)total);
	}
	fprintf(stderr, "\n");
	arch_print_stats(vm, stderr);
}

static int exit_status(const struct vm *vm, int signo)
{
	if (signo)
		return 128 + signo;
	switch (vm->exit_reason) {
	case VM_EXIT_POWEROFF:
	case VM_EXIT_RESET:
		return 0;
	case VM_EXIT_PANIC:
		log_error("the guest panicked");
		return EXIT_GUEST_PANIC;
	case VM_EXIT_TEST:
		return vm->exit_code;
	case VM_EXIT_NONE:
	case VM_EXIT_ERROR:
		break;
	}
	return EXIT_VMM_ERROR;
}

int cmd_run(int argc, char **argv)
{
	struct vm_config cfg;
	char err[256];
	int rc = run_parse_args(argc, argv, &cfg, err, sizeof(err));
	if (rc == 1) {
		fputs(run_usage, stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "kvmlite: %s\n", err);
		fprintf(stderr, "Try 'kvmlite run --help'.\n");
		return EXIT_USAGE;
	}
	if (run_check_host(&cfg) < 0)
		return EXIT_VMM_ERROR;

	/* Termination signals arrive through a signalfd; blocked here, before
	 * any thread exists, so every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	int sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return EXIT_VMM_ERROR;
	}

	int status;
	for (;;) {
		struct vm vm;
		if (vm_create(&vm, &cfg) < 0) {
			vm_destroy(&vm);
			status = EXIT_VMM_ERROR;
			break;
		}
		if (cfg.console == CONSOLE_SERIAL)
			term_raw_enter();
		int signo = 0;
		if (vm_start(&vm) == 0)
			signo = run_event_loop(&vm, sig_fd);
		vm_wait(&vm);
		term_restore();
		if (cfg.stats)
			print_stats(&vm);
		bool restart = vm.exit_reason == VM_EXIT_RESET && cfg.on_reboot == REBOOT_RESTART && !signo;
		status = exit_status(&vm, signo);
		vm_destroy(&vm);
		if (!restart)
			break;
		log_info("guest rebooted: restarting");
	}
	close(sig_fd);
	return status;
}
