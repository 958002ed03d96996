/* `kvmlite run`: build a VM from the command line, run it, report how it
 * ended through the exit status. */
#include "cmd_run.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_metrics.h"
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
	"      --disk PATH[,readonly][,id=NAME]\n"
	"                          a virtio-blk disk on a raw image (repeatable;\n"
	"                          the first is /dev/vda)\n"
	"      --net tap=NAME[,mac=MAC]\n"
	"                          a virtio-net interface on an existing tap device\n"
	"      --vsock cid=N,uds=PATH\n"
	"                          virtio-vsock, host side on UNIX socket PATH\n"
	"      --no-rng            leave out virtio-rng (the guest's entropy source)\n"
	"      --console serial|virtio|none\n"
	"                          serial: COM1 is this terminal (default);\n"
	"                          virtio: the guest's hvc0 (virtio-console) is;\n"
	"                          none: no guest console\n"
	"      --on-reboot exit|restart  what a guest reboot does (default exit)\n"
	"      --stats             print exit and fallback counts at exit\n"
	"      --testdev           add the test device (for guest tests)\n"
	"      --no-seccomp        no system-call filters (for debugging)\n"
	"      --seccomp-log       log forbidden system calls to the kernel's audit\n"
	"                          log instead of killing kvmlite (for debugging)\n"
	"      --api-sock PATH     serve the Firecracker-compatible API on this UNIX\n"
	"                          socket (auto: $KVMLITE_SOCK_DIR or /run/kvmlite,\n"
	"                          /<pid>.sock); the VM starts on InstanceStart\n"
	"      --config-file FILE  Firecracker JSON configuration: start at once\n"
	"  -v, --verbose           log more (repeat for debug)\n"
	"  -h, --help              this help\n"
	"\n"
	"Console: Ctrl-A x quits. Exit status: 0 when the guest powers off (or\n"
	"reboots with --on-reboot exit), 1 on a VMM error, 2 on a usage error,\n"
	"3 when the guest panics, 128+N when ended by signal N; with --testdev,\n"
	"the code the guest wrote.\n";

enum {
	OPT_CMDLINE = 256, OPT_APPEND, OPT_CONSOLE, OPT_ON_REBOOT, OPT_STATS, OPT_TESTDEV, OPT_API_SOCK,
	OPT_CONFIG_FILE, OPT_DISK, OPT_NET, OPT_VSOCK, OPT_NO_RNG, OPT_NO_SECCOMP, OPT_SECCOMP_LOG,
};

void vm_config_free(struct vm_config *cfg)
{
	for (int i = 0; i < cfg->nr_owned; i++)
		free(cfg->owned[i]);
	cfg->nr_owned = 0;
}

/* A copy of s[0, len) that cfg owns; NULL when out of memory. */
static char *config_strndup(struct vm_config *cfg, const char *s, size_t len)
{
	if (cfg->nr_owned == (int)ARRAY_SIZE(cfg->owned))
		return NULL;
	char *copy = strndup(s, len);
	if (copy)
		cfg->owned[cfg->nr_owned++] = copy;
	return copy;
}

/* Splits "first,key=value,flag" in place of a copy: calls fn for each
 * comma-separated item after the first; the first item is returned. */
typedef int (*option_item_fn)(struct vm_config *cfg, void *obj, const char *item, size_t len, char *err, size_t errlen);

static int parse_items(struct vm_config *cfg, const char *spec, void *obj, option_item_fn fn, char *err, size_t errlen)
{
	while (*spec) {
		const char *comma = strchr(spec, ',');
		size_t len = comma ? (size_t)(comma - spec) : strlen(spec);
		int rc = fn(cfg, obj, spec, len, err, errlen);
		if (rc)
			return rc;
		spec += len + (comma ? 1 : 0);
		if (comma && !*spec)
			return fail_einval(err, errlen, "trailing comma");
	}
	return 0;
}

static bool item_is(const char *item, size_t len, const char *key)
{
	return strlen(key) == len && !strncmp(item, key, len);
}

/* "key=" prefix: the value's length, or -1. */
static int item_value(const char *item, size_t len, const char *key, const char **value)
{
	size_t klen = strlen(key);
	if (len <= klen || strncmp(item, key, klen) || item[klen] != '=')
		return -1;
	*value = item + klen + 1;
	return (int)(len - klen - 1);
}

static int disk_item(struct vm_config *cfg, void *obj, const char *item, size_t len, char *err, size_t errlen)
{
	struct disk_config *d = obj;
	const char *v;
	int vlen;
	if (!d->path) {
		if (!len)
			return fail_einval(err, errlen, "expected PATH[,readonly][,id=NAME]");
		if (!(d->path = config_strndup(cfg, item, len)))
			return -ENOMEM;
	} else if (item_is(item, len, "readonly") || item_is(item, len, "ro")) {
		d->read_only = true;
	} else if ((vlen = item_value(item, len, "id", &v)) >= 0) {
		if (vlen == 0 || vlen > 20)
			return fail_einval(err, errlen, "id must be 1 to 20 characters");
		if (!(d->id = config_strndup(cfg, v, (size_t)vlen)))
			return -ENOMEM;
	} else {
		return fail_einval(err, errlen, "unknown item '%.*s' (expected readonly or id=NAME)", (int)len, item);
	}
	return 0;
}

static int net_item(struct vm_config *cfg, void *obj, const char *item, size_t len, char *err, size_t errlen)
{
	struct net_config *n = obj;
	const char *v;
	int vlen;
	if ((vlen = item_value(item, len, "tap", &v)) >= 0) {
		if (vlen == 0 || vlen > 15)
			return fail_einval(err, errlen, "tap must be an interface name of 1 to 15 characters");
		if (!(n->tap = config_strndup(cfg, v, (size_t)vlen)))
			return -ENOMEM;
	} else if ((vlen = item_value(item, len, "mac", &v)) >= 0) {
		char mac[18];
		snprintf(mac, sizeof(mac), "%.*s", vlen, v);
		if (vlen != 17 || parse_mac(mac, n->mac) < 0)
			return fail_einval(err, errlen, "mac must look like 06:00:AC:10:00:02");
		if (n->mac[0] & 1)
			return fail_einval(err, errlen, "mac %s is a multicast address", mac);
		n->has_mac = true;
	} else {
		return fail_einval(err, errlen, "unknown item '%.*s' (expected tap=NAME or mac=MAC)", (int)len, item);
	}
	return 0;
}

static int vsock_item(struct vm_config *cfg, void *obj, const char *item, size_t len, char *err, size_t errlen)
{
	struct vsock_config *vs = obj;
	const char *v;
	int vlen;
	if ((vlen = item_value(item, len, "cid", &v)) >= 0) {
		char num[16];
		char *end;
		snprintf(num, sizeof(num), "%.*s", vlen, v);
		errno = 0;
		unsigned long cid = strtoul(num, &end, 10);
		if (vlen == 0 || vlen > 10 || *end || errno || cid < 3 || cid > UINT32_MAX - 1)
			return fail_einval(err, errlen, "cid must be a number from 3 to %u", UINT32_MAX - 1);
		vs->guest_cid = (uint32_t)cid;
	} else if ((vlen = item_value(item, len, "uds", &v)) >= 0) {
		if (vlen == 0 || vlen >= 100)
			return fail_einval(err, errlen, "uds must be a socket path of 1 to 99 characters");
		if (!(vs->uds_path = config_strndup(cfg, v, (size_t)vlen)))
			return -ENOMEM;
	} else {
		return fail_einval(err, errlen, "unknown item '%.*s' (expected cid=N or uds=PATH)", (int)len, item);
	}
	return 0;
}

/* --disk, --net, --vsock: errors say which option. */
static int parse_device_option(struct vm_config *cfg, int opt, const char *arg, char *err, size_t errlen)
{
	char why[200] = "";
	int rc = 0;
	const char *name = opt == OPT_DISK ? "--disk" : opt == OPT_NET ? "--net" : "--vsock";
	if (opt == OPT_DISK) {
		if (cfg->nr_disks == VM_MAX_DISKS)
			return fail_einval(err, errlen, "--disk: at most %d disks", VM_MAX_DISKS);
		struct disk_config *d = &cfg->disks[cfg->nr_disks];
		rc = parse_items(cfg, arg, d, disk_item, why, sizeof(why));
		if (!rc && !d->path)
			rc = fail_einval(why, sizeof(why), "expected PATH[,readonly][,id=NAME]");
		if (!rc)
			cfg->nr_disks++;
	} else if (opt == OPT_NET) {
		if (cfg->nr_nets == VM_MAX_NETS)
			return fail_einval(err, errlen, "--net: at most %d interfaces", VM_MAX_NETS);
		struct net_config *n = &cfg->nets[cfg->nr_nets];
		rc = parse_items(cfg, arg, n, net_item, why, sizeof(why));
		if (!rc && !n->tap)
			rc = fail_einval(why, sizeof(why), "expected tap=NAME[,mac=MAC]");
		for (int i = 0; !rc && i < cfg->nr_nets; i++) {
			if (!strcmp(cfg->nets[i].tap, n->tap))
				rc = fail_einval(why, sizeof(why), "tap %s is given twice", n->tap);
		}
		if (!rc)
			cfg->nr_nets++;
	} else {
		if (cfg->vsock.enabled)
			return fail_einval(err, errlen, "--vsock: only one vsock device");
		rc = parse_items(cfg, arg, &cfg->vsock, vsock_item, why, sizeof(why));
		if (!rc && (!cfg->vsock.guest_cid || !cfg->vsock.uds_path))
			rc = fail_einval(why, sizeof(why), "expected cid=N,uds=PATH");
		cfg->vsock.enabled = rc == 0;
	}
	if (rc == -ENOMEM)
		return fail_einval(err, errlen, "%s: out of memory", name);
	if (rc)
		return fail_einval(err, errlen, "%s %s: %s", name, arg, why);
	return 0;
}

static int parse_args(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen);

int run_parse_args(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen)
{
	int rc = parse_args(argc, argv, cfg, err, errlen);
	if (rc)
		vm_config_free(cfg);
	return rc;
}

static int parse_args(int argc, char **argv, struct vm_config *cfg, char *err, size_t errlen)
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
		{ "api-sock", required_argument, NULL, OPT_API_SOCK },
		{ "config-file", required_argument, NULL, OPT_CONFIG_FILE },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "net", required_argument, NULL, OPT_NET },
		{ "vsock", required_argument, NULL, OPT_VSOCK },
		{ "no-rng", no_argument, NULL, OPT_NO_RNG },
		{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
		{ "seccomp-log", no_argument, NULL, OPT_SECCOMP_LOG },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	*cfg = (struct vm_config){ .nr_cpus = 1, .ram_size = RUN_DEFAULT_RAM, .seccomp = SECCOMP_KILL };
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
				return fail_einval(err, errlen, "--cpus %s: expected a number from 1 to %d", optarg, RUN_MAX_CPUS);
			cfg->nr_cpus = (int)n;
			break;
		case 'm':
			if (parse_size(optarg, &cfg->ram_size) < 0)
				return fail_einval(err, errlen, "--memory %s: expected a size such as 512M or 2G", optarg);
			if (cfg->ram_size < RUN_MIN_RAM)
				return fail_einval(err, errlen, "--memory %s: a guest needs at least 2M", optarg);
			if (cfg->ram_size % 4096)
				return fail_einval(err, errlen, "--memory %s: must be a multiple of 4K", optarg);
			break;
		case OPT_CONSOLE:
			if (!strcmp(optarg, "serial"))
				cfg->console = CONSOLE_SERIAL;
			else if (!strcmp(optarg, "virtio"))
				cfg->console = CONSOLE_VIRTIO;
			else if (!strcmp(optarg, "none"))
				cfg->console = CONSOLE_NONE;
			else
				return fail_einval(err, errlen, "--console %s: expected serial, virtio or none", optarg);
			break;
		case OPT_ON_REBOOT:
			if (!strcmp(optarg, "exit"))
				cfg->on_reboot = REBOOT_EXIT;
			else if (!strcmp(optarg, "restart"))
				cfg->on_reboot = REBOOT_RESTART;
			else
				return fail_einval(err, errlen, "--on-reboot %s: expected exit or restart", optarg);
			break;
		case OPT_STATS: cfg->stats = true; break;
		case OPT_TESTDEV: cfg->testdev = true; break;
		case OPT_API_SOCK:
			if (!*optarg)
				return fail_einval(err, errlen, "--api-sock: expected a socket path or auto");
			cfg->api_sock = optarg;
			break;
		case OPT_CONFIG_FILE: cfg->config_file = optarg; break;
		case OPT_DISK:
		case OPT_NET:
		case OPT_VSOCK:
			if (parse_device_option(cfg, c, optarg, err, errlen) < 0)
				return -EINVAL;
			break;
		case OPT_NO_RNG: cfg->no_rng = true; break;
		case OPT_NO_SECCOMP: cfg->seccomp = SECCOMP_OFF; break;
		case OPT_SECCOMP_LOG: cfg->seccomp = SECCOMP_LOG; break;
		case 'v':
			if (log_threshold < LOG_DEBUG)
				log_threshold++;
			break;
		case 'h': return 1;
		case ':': return fail_einval(err, errlen, "option %s needs a value", argv[optind - 1]);
		default: return fail_einval(err, errlen, "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail_einval(err, errlen, "unexpected argument '%s'", argv[optind]);
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
	for (int i = 0; i < cfg->nr_disks; i++) {
		const struct disk_config *d = &cfg->disks[i];
		if (access(d->path, R_OK | (d->read_only ? 0 : W_OK)) < 0) {
			log_error("--disk %s: %s%s", d->path, strerror(errno),
				  errno == EACCES || errno == EROFS ? " (add ,readonly for a read-only disk)" : "");
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

struct run_ctx;
static int run_serve_call(struct run_ctx *ctx);
static int run_call_fd(const struct run_ctx *ctx);

/* Runs the VM until it stops: the main thread forwards console input,
 * turns termination signals into a stop and, with the API (ctx), runs the
 * actions the API thread hands it. Returns the signal that ended it, or 0. */
static int run_event_loop(struct vm *vm, int sig_fd, struct run_ctx *ctx)
{
	bool input = vm->console_input != NULL;
	bool is_tty = isatty(STDIN_FILENO);
	struct console_state console = { 0 };
	for (;;) {
		struct pollfd fds[4] = {
			{ .fd = vm->stop_fd, .events = POLLIN },
			{ .fd = sig_fd, .events = POLLIN },
			{ .fd = input ? STDIN_FILENO : -1, .events = POLLIN },
			{ .fd = ctx ? run_call_fd(ctx) : -1, .events = POLLIN },
		};
		if (poll(fds, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			vm_stop(vm, VM_EXIT_ERROR, 0);
			return 0;
		}
		if (fds[0].revents)
			return 0;
		if (fds[3].revents && run_serve_call(ctx) < 0) {
			vm_stop(vm, VM_EXIT_ERROR, 0);
			return 0;
		}
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
	stats_print(vm->stats, stderr);
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

/* ---- with the API (--api-sock) or a --config-file ----------------------
 *
 * The VM is built from the configuration the API accumulates (initial
 * values from the command line), when InstanceStart arrives, or at once
 * with --config-file. The API thread only parses requests: every action
 * (start, pause, resume, stop, opening the log and metrics files) is handed
 * to the main thread, which runs it from its event loop while the API
 * thread waits for the result. So the API thread's seccomp filter needs
 * none of the calls that build a VM. State queries read ctx under
 * ctx->lock, which the main thread also takes before destroying the VM. */

struct run_ctx {
	struct vm_config cfg;      /* what vm_create reads */
	struct api_config api;
	pthread_mutex_t lock;      /* guards the fields below against the API thread */
	struct vm vm;
	bool vm_live;              /* vm created and not destroyed yet */
	bool started;              /* InstanceStart done: never "Not started" again */
	bool stop_requested;       /* "Stop" before InstanceStart */
	int wake_fd;               /* eventfd: an API action is waiting */
	int metrics_fd;
	/* The action handed to the main thread: set by the API thread, which
	 * then waits on call_done until call_finished (or !serving). */
	bool serving;              /* the main thread still takes actions */
	bool call_pending, call_finished;
	enum api_action call;
	int call_rc;
	char *call_err;            /* the API thread's buffer, for the message */
	size_t call_errlen;
	pthread_cond_t call_done;
	char sock_path[108];
};

static void run_wake(struct run_ctx *ctx)
{
	uint64_t one = 1;
	if (write(ctx->wake_fd, &one, sizeof(one)) < 0)
		log_warn("cannot wake the main thread: %s", strerror(errno));
}

static enum api_state run_api_state_locked(struct run_ctx *ctx)
{
	if (!ctx->started)
		return API_NOT_STARTED;
	if (!ctx->vm_live)
		return API_STOPPED;
	switch (vm_get_state(&ctx->vm)) {
	case VM_NOT_STARTED: return API_NOT_STARTED;
	case VM_RUNNING: return API_RUNNING;
	case VM_PAUSED: return API_PAUSED;
	case VM_STOPPED: break;
	}
	return API_STOPPED;
}

static enum api_state run_api_state(void *opaque)
{
	struct run_ctx *ctx = opaque;
	pthread_mutex_lock(&ctx->lock);
	enum api_state state = run_api_state_locked(ctx);
	pthread_mutex_unlock(&ctx->lock);
	return state;
}

static int run_errmsg(char *err, size_t errlen, int rc, const char *what)
{
	const char *why = log_last_error();
	snprintf(err, errlen, "%s: %s", what, *why ? why : strerror(-rc));
	return rc;
}

/* Called with ctx->lock held. */
static int run_start_vm_locked(struct run_ctx *ctx, char *err, size_t errlen)
{
	log_clear_last_error();
	api_config_apply(&ctx->api, &ctx->cfg);
	int rc = run_check_host(&ctx->cfg);
	if (rc < 0)
		return run_errmsg(err, errlen, rc, "Cannot start the microVM");
	rc = vm_create(&ctx->vm, &ctx->cfg);
	if (rc < 0) {
		vm_destroy(&ctx->vm);
		return run_errmsg(err, errlen, rc, "Cannot create the microVM");
	}
	ctx->vm_live = ctx->started = true;
	rc = vm_start(&ctx->vm); /* on failure the VM stopped itself: the main loop ends it */
	if (rc < 0)
		return run_errmsg(err, errlen, rc, "Cannot start the microVM");
	return 0;
}

static int run_flush_metrics_locked(struct run_ctx *ctx, const char *exit_reason)
{
	if (ctx->metrics_fd < 0)
		return -ENOENT;
	return api_metrics_write(ctx->metrics_fd, ctx->vm_live ? &ctx->vm : NULL,
				 api_state_name(run_api_state_locked(ctx)), exit_reason);
}

static int run_open_sinks(struct run_ctx *ctx, enum api_action action, char *err, size_t errlen)
{
	/* enum api_log_level -> enum log_level; Off turns the sink off. */
	static const int levels[] = { -1, LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_DEBUG };
	if (action == API_ACT_LOGGER) {
		int rc = log_open_file(ctx->api.log_path, levels[ctx->api.log_level], ctx->api.log_show_origin);
		if (rc < 0) {
			snprintf(err, errlen, "Cannot open the log file %s: %s", ctx->api.log_path, strerror(-rc));
			ctx->api.has_logger = false;
		}
		return rc;
	}
	int fd = open(ctx->api.metrics_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "Cannot open the metrics file %s: %s", ctx->api.metrics_path, strerror(-rc));
		free(ctx->api.metrics_path);
		ctx->api.metrics_path = NULL; /* so that a corrected PUT is no "reinitialization" */
		return rc;
	}
	pthread_mutex_lock(&ctx->lock);
	ctx->metrics_fd = fd;
	pthread_mutex_unlock(&ctx->lock);
	return 0;
}

/* Runs an API action, in the main thread. */
static int run_do_action(struct run_ctx *ctx, enum api_action action, char *err, size_t errlen)
{
	int rc = 0;
	switch (action) {
	case API_ACT_NONE:
		return 0;
	case API_ACT_START:
		pthread_mutex_lock(&ctx->lock);
		rc = run_start_vm_locked(ctx, err, errlen);
		pthread_mutex_unlock(&ctx->lock);
		if (!rc)
			log_info("API: the microVM started");
		return rc;
	case API_ACT_PAUSE:
	case API_ACT_RESUME:
		/* Blocks until every vCPU is parked (or back in the guest). */
		pthread_mutex_lock(&ctx->lock);
		rc = !ctx->vm_live ? -ESHUTDOWN : action == API_ACT_PAUSE ? vm_pause(&ctx->vm) : vm_resume(&ctx->vm);
		pthread_mutex_unlock(&ctx->lock);
		if (rc == -ESHUTDOWN)
			snprintf(err, errlen, "The microVM has stopped.");
		else if (rc)
			snprintf(err, errlen, "Cannot %s the microVM: %s", action == API_ACT_PAUSE ? "pause" : "resume",
				 strerror(-rc));
		return rc;
	case API_ACT_STOP:
		pthread_mutex_lock(&ctx->lock);
		if (ctx->vm_live)
			vm_stop(&ctx->vm, VM_EXIT_POWEROFF, 0);
		else
			ctx->stop_requested = true;
		pthread_mutex_unlock(&ctx->lock);
		log_info("API: stop requested");
		return 0;
	case API_ACT_FLUSH_METRICS:
		pthread_mutex_lock(&ctx->lock);
		rc = run_flush_metrics_locked(ctx, NULL);
		pthread_mutex_unlock(&ctx->lock);
		if (rc)
			snprintf(err, errlen, "Cannot write the metrics: %s", strerror(-rc));
		return rc;
	case API_ACT_LOGGER:
	case API_ACT_METRICS:
		return run_open_sinks(ctx, action, err, errlen);
	}
	return -EINVAL;
}

/* The API thread's side: hands the action to the main thread and waits. */
static int run_api_action(void *opaque, enum api_action action, char *err, size_t errlen)
{
	struct run_ctx *ctx = opaque;
	if (action == API_ACT_NONE)
		return 0;
	pthread_mutex_lock(&ctx->lock);
	ctx->call = action;
	ctx->call_err = err;
	ctx->call_errlen = errlen;
	ctx->call_pending = true;
	ctx->call_finished = false;
	if (ctx->serving)
		run_wake(ctx);
	while (!ctx->call_finished && ctx->serving)
		pthread_cond_wait(&ctx->call_done, &ctx->lock);
	int rc = ctx->call_rc;
	if (!ctx->call_finished) {
		rc = -ESHUTDOWN;
		snprintf(err, errlen, "The microVM has stopped.");
	}
	ctx->call_pending = false;
	pthread_mutex_unlock(&ctx->lock);
	return rc;
}

static int run_call_fd(const struct run_ctx *ctx)
{
	return ctx->wake_fd;
}

/* The main thread's side: runs the waiting action, if any. Returns 0, or
 * -1 if the wake-up fd failed. */
static int run_serve_call(struct run_ctx *ctx)
{
	uint64_t v;
	if (read(ctx->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
		log_error("API wake-up: %s", strerror(errno));
		return -1;
	}
	pthread_mutex_lock(&ctx->lock);
	bool pending = ctx->call_pending && !ctx->call_finished;
	enum api_action action = ctx->call;
	pthread_mutex_unlock(&ctx->lock);
	if (!pending)
		return 0;
	/* The API thread waits, so its buffer and ctx->api stay still. */
	int rc = run_do_action(ctx, action, ctx->call_err, ctx->call_errlen);
	pthread_mutex_lock(&ctx->lock);
	ctx->call_rc = rc;
	ctx->call_finished = true;
	pthread_cond_broadcast(&ctx->call_done);
	pthread_mutex_unlock(&ctx->lock);
	return 0;
}

/* From here on the main thread takes no action: a waiting or later one
 * fails with "stopped". */
static void run_stop_serving(struct run_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	ctx->serving = false;
	pthread_cond_broadcast(&ctx->call_done);
	pthread_mutex_unlock(&ctx->lock);
}

static const struct api_ops run_api_ops = { .state = run_api_state, .action = run_api_action };

/* Waits for InstanceStart: 0 once started, -1 on a Stop before it, else
 * the exit status (a signal). */
static int run_wait_start(struct run_ctx *ctx, int sig_fd)
{
	for (;;) {
		struct pollfd fds[2] = { { .fd = sig_fd, .events = POLLIN }, { .fd = ctx->wake_fd, .events = POLLIN } };
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			return EXIT_VMM_ERROR;
		}
		if (fds[0].revents) {
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
				return 128 + (int)si.ssi_signo;
		}
		if (fds[1].revents) {
			if (run_serve_call(ctx) < 0)
				return EXIT_VMM_ERROR;
			pthread_mutex_lock(&ctx->lock);
			bool started = ctx->started, stop = ctx->stop_requested;
			pthread_mutex_unlock(&ctx->lock);
			if (started)
				return 0;
			if (stop)
				return -1;
		}
	}
}

/* The VM runs (and restarts on reboot with --on-reboot restart) until it
 * stops; returns the exit status. */
static int run_vm_loop(struct run_ctx *ctx, int sig_fd)
{
	for (;;) {
		if (ctx->cfg.console != CONSOLE_NONE)
			term_raw_enter();
		int signo = run_event_loop(&ctx->vm, sig_fd, ctx);
		vm_wait(&ctx->vm);
		term_restore();
		if (ctx->cfg.stats)
			print_stats(&ctx->vm);
		bool restart = ctx->vm.exit_reason == VM_EXIT_RESET && ctx->cfg.on_reboot == REBOOT_RESTART && !signo;
		int status = exit_status(&ctx->vm, signo);
		pthread_mutex_lock(&ctx->lock);
		if (!restart && ctx->metrics_fd >= 0 &&
		    run_flush_metrics_locked(ctx, vm_exit_reason_name(ctx->vm.exit_reason)) < 0)
			log_warn("cannot write the final metrics");
		ctx->vm_live = false;
		pthread_mutex_unlock(&ctx->lock);
		vm_destroy(&ctx->vm);
		if (!restart)
			return status;
		log_info("guest rebooted: restarting");
		pthread_mutex_lock(&ctx->lock);
		int rc = vm_create(&ctx->vm, &ctx->cfg);
		if (rc == 0) {
			ctx->vm_live = true;
			vm_start(&ctx->vm); /* on failure the VM stopped itself */
		}
		pthread_mutex_unlock(&ctx->lock);
		if (rc < 0) {
			vm_destroy(&ctx->vm);
			return EXIT_VMM_ERROR;
		}
	}
}

static int run_load_config_file(struct run_ctx *ctx, const char *path)
{
	uint8_t *data;
	size_t len;
	int rc = read_file(path, &data, &len);
	if (rc < 0) {
		fprintf(stderr, "kvmlite: --config-file %s: %s\n", path, strerror(-rc));
		return EXIT_USAGE;
	}
	char err[512];
	rc = api_config_load(&ctx->api, (const char *)data, len, err, sizeof(err));
	free(data);
	if (rc < 0) {
		fprintf(stderr, "kvmlite: --config-file %s: %s\n", path, err);
		return EXIT_USAGE;
	}
	if ((ctx->api.has_logger && run_open_sinks(ctx, API_ACT_LOGGER, err, sizeof(err)) < 0) ||
	    (ctx->api.metrics_path && run_open_sinks(ctx, API_ACT_METRICS, err, sizeof(err)) < 0)) {
		fprintf(stderr, "kvmlite: --config-file %s: %s\n", path, err);
		return EXIT_VMM_ERROR;
	}
	return 0;
}

static int run_sock_path(struct run_ctx *ctx, const char *arg)
{
	if (strcmp(arg, "auto")) {
		if (strlen(arg) >= sizeof(ctx->sock_path)) {
			fprintf(stderr, "kvmlite: --api-sock %s: longer than %zu bytes\n", arg, sizeof(ctx->sock_path) - 1);
			return EXIT_USAGE;
		}
		snprintf(ctx->sock_path, sizeof(ctx->sock_path), "%s", arg);
		return 0;
	}
	const char *dir = api_sock_dir();
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "kvmlite: --api-sock auto: cannot create %s: %s\n", dir, strerror(errno));
		return EXIT_VMM_ERROR;
	}
	if ((size_t)snprintf(ctx->sock_path, sizeof(ctx->sock_path), "%s/%d.sock", dir, (int)getpid()) >=
	    sizeof(ctx->sock_path)) {
		fprintf(stderr, "kvmlite: --api-sock auto: %s is too long a directory\n", dir);
		return EXIT_USAGE;
	}
	return 0;
}

static int run_with_api(const struct vm_config *cli_cfg, int sig_fd)
{
	struct run_ctx ctx = { .cfg = *cli_cfg, .wake_fd = -1, .metrics_fd = -1, .serving = true };
	struct api_server *srv = NULL;
	int status = EXIT_VMM_ERROR;
	char err[512];
	pthread_mutex_init(&ctx.lock, NULL);
	pthread_cond_init(&ctx.call_done, NULL);
	/* A log or metrics FIFO whose reader went away must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (api_config_init(&ctx.api, &ctx.cfg) < 0)
		goto out;
	ctx.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctx.wake_fd < 0)
		goto out;
	if (cli_cfg->config_file && (status = run_load_config_file(&ctx, cli_cfg->config_file)))
		goto out;
	if (cli_cfg->api_sock) {
		if ((status = run_sock_path(&ctx, cli_cfg->api_sock)))
			goto out;
		status = EXIT_VMM_ERROR;
		if (api_server_start(&srv, ctx.sock_path, &ctx.api, &run_api_ops, &ctx, err, sizeof(err)) < 0) {
			fprintf(stderr, "kvmlite: --api-sock: %s\n", err);
			goto out;
		}
		log_info("API socket: %s", ctx.sock_path);
	}
	status = EXIT_VMM_ERROR;
	if (cli_cfg->config_file) {
		const char *why = api_config_unsupported(&ctx.api);
		if (why) {
			fprintf(stderr, "kvmlite: --config-file %s: %s\n", cli_cfg->config_file, why);
			goto out;
		}
		pthread_mutex_lock(&ctx.lock);
		int rc = run_start_vm_locked(&ctx, err, sizeof(err));
		bool started = ctx.started;
		pthread_mutex_unlock(&ctx.lock);
		if (rc < 0 && !started)
			goto out; /* already logged */
	} else {
		int rc = run_wait_start(&ctx, sig_fd);
		if (rc) {
			status = rc < 0 ? 0 : rc; /* Stop before InstanceStart: nothing ran, nothing failed */
			goto out;
		}
	}
	status = run_vm_loop(&ctx, sig_fd);
out:
	run_stop_serving(&ctx);
	api_server_stop(srv); /* no request may touch ctx from here on */
	log_close_file();
	if (ctx.metrics_fd >= 0)
		close(ctx.metrics_fd);
	if (ctx.wake_fd >= 0)
		close(ctx.wake_fd);
	api_config_free(&ctx.api);
	pthread_cond_destroy(&ctx.call_done);
	pthread_mutex_destroy(&ctx.lock);
	return status;
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
	/* With the API, the host checks wait for the final configuration. */
	if (!cfg.api_sock && !cfg.config_file && run_check_host(&cfg) < 0) {
		vm_config_free(&cfg);
		return EXIT_VMM_ERROR;
	}

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
		vm_config_free(&cfg);
		return EXIT_VMM_ERROR;
	}

	/* glibc reads /etc/localtime on the first gmtime_r (log timestamps),
	 * in whichever thread that is: here, before any filter. */
	tzset();
	sandbox_set_seccomp(cfg.seccomp);
	if (sandbox_enter(THREAD_VMM) < 0) {
		close(sig_fd);
		vm_config_free(&cfg);
		return EXIT_VMM_ERROR;
	}

	int status;
	if (cfg.api_sock || cfg.config_file) {
		status = run_with_api(&cfg, sig_fd);
		close(sig_fd);
		vm_config_free(&cfg);
		return status;
	}
	for (;;) {
		struct vm vm;
		if (vm_create(&vm, &cfg) < 0) {
			vm_destroy(&vm);
			status = EXIT_VMM_ERROR;
			break;
		}
		if (cfg.console != CONSOLE_NONE)
			term_raw_enter();
		int signo = 0;
		if (vm_start(&vm) == 0)
			signo = run_event_loop(&vm, sig_fd, NULL);
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
	vm_config_free(&cfg);
	return status;
}
