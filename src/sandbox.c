/* Per-thread seccomp filters (see sandbox.h). Each thread type gets an
 * allow list; everything else kills the process. Some calls are allowed
 * only with certain arguments:
 *   ioctl   only KVM's (type 0xAE), plus, for the main thread, the
 *           terminal and tap ones ('T') and block-device size queries;
 *   mmap, mprotect   never executable, except in the main thread (dlopen
 *           of libmicrohttpd when the API starts);
 *   socket  AF_UNIX only (API socket, vsock host side);
 *   clone   threads only (CLONE_THREAD); clone3, whose flags a filter
 *           cannot see, fails with ENOSYS so that glibc falls back to clone.
 * A thread inherits the filter of the thread that created it and stacks
 * its own on top: a call passes only if every filter allows it. So the
 * main thread's filter, which every thread inherits, is its own list plus
 * all the others, and its own list holds what a new thread does before it
 * loads its own filter (set_robust_list, rseq, seccomp). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <linux/kvm.h>
#include <sched.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

enum arg_rule {
	ARGS_ANY,
	ARGS_IOCTL,      /* the thread's ioctl list */
	ARGS_NO_EXEC,    /* mmap/mprotect without PROT_EXEC */
	ARGS_UNIX,       /* socket(AF_UNIX, ...) */
	ARGS_THREAD,     /* clone(CLONE_THREAD | ...) */
	ARGS_ENOSYS,     /* fails with ENOSYS instead of killing */
	ARGS_GET_NAME,   /* prctl(PR_GET_NAME): the log's thread name */
};

struct syscall_rule {
	const char *name;
	enum arg_rule args;
};

#define END { NULL, ARGS_ANY }

/* What every thread does: memory, locks, time, logging, signals, exit. */
#define COMMON_RULES                                                                          \
	{ "read", ARGS_ANY }, { "write", ARGS_ANY }, { "readv", ARGS_ANY }, { "writev", ARGS_ANY }, \
	{ "close", ARGS_ANY }, { "futex", ARGS_ANY }, { "clock_gettime", ARGS_ANY },               \
	{ "clock_nanosleep", ARGS_ANY }, { "nanosleep", ARGS_ANY }, { "gettid", ARGS_ANY },          \
	{ "getpid", ARGS_ANY }, { "tgkill", ARGS_ANY }, { "rt_sigprocmask", ARGS_ANY },              \
	{ "rt_sigreturn", ARGS_ANY }, { "madvise", ARGS_ANY }, { "munmap", ARGS_ANY },               \
	{ "brk", ARGS_ANY }, { "sched_yield", ARGS_ANY }, { "restart_syscall", ARGS_ANY },          \
	{ "exit", ARGS_ANY }, { "exit_group", ARGS_ANY }, { "prctl", ARGS_GET_NAME } SANITIZER_RULES

/* The sanitizer runtimes' own calls: an alternate signal stack in every
 * thread, and, from the main thread at exit, LeakSanitizer's tracer (a
 * clone that ptraces the others). Only in sanitizer builds. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_RULES , { "sigaltstack", ARGS_ANY }
#define SANITIZER_VMM_RULES                                                                  \
	{ "clone", ARGS_ANY }, { "ptrace", ARGS_ANY }, { "wait4", ARGS_ANY }, { "getppid", ARGS_ANY }, \
	{ "open", ARGS_ANY }, { "getdents", ARGS_ANY }, { "getdents64", ARGS_ANY },               \
	{ "sched_getaffinity", ARGS_ANY }, { "kill", ARGS_ANY },
#else
#define SANITIZER_RULES
#define SANITIZER_VMM_RULES
#endif

static const struct syscall_rule vmm_rules[] = {
	COMMON_RULES,
	/* guest RAM, the KVM run areas, io_uring rings, dlopen */
	{ "mmap", ARGS_ANY }, { "mprotect", ARGS_ANY }, { "mremap", ARGS_ANY },
	/* kernel, initrd, disks, /dev/kvm, /dev/net/tun, log and metrics files, the API socket directory */
	{ "openat", ARGS_ANY }, { "newfstatat", ARGS_ANY }, { "fstat", ARGS_ANY }, { "statx", ARGS_ANY },
	{ "lseek", ARGS_ANY }, { "pread64", ARGS_ANY }, { "faccessat", ARGS_ANY }, { "faccessat2", ARGS_ANY },
	{ "access", ARGS_ANY }, { "readlink", ARGS_ANY }, { "getcwd", ARGS_ANY }, { "mkdir", ARGS_ANY },
	{ "unlink", ARGS_ANY }, { "fcntl", ARGS_ANY }, { "dup", ARGS_ANY }, { "ioctl", ARGS_IOCTL },
	{ "fsync", ARGS_ANY }, { "fdatasync", ARGS_ANY }, { "flock", ARGS_ANY }, /* disks are locked */
	{ "sysinfo", ARGS_ANY }, /* glibc's qsort (sorting the buses) */
	/* the devices' fds */
	{ "eventfd2", ARGS_ANY }, { "epoll_create1", ARGS_ANY }, { "epoll_ctl", ARGS_ANY },
	{ "timerfd_create", ARGS_ANY }, { "timerfd_settime", ARGS_ANY },
	{ "io_uring_setup", ARGS_ANY }, { "io_uring_register", ARGS_ANY }, { "io_uring_enter", ARGS_ANY },
	{ "socket", ARGS_UNIX }, { "bind", ARGS_ANY }, { "listen", ARGS_ANY }, { "connect", ARGS_ANY },
	{ "accept4", ARGS_ANY }, { "setsockopt", ARGS_ANY }, { "getsockopt", ARGS_ANY },
	{ "shutdown", ARGS_ANY },
	/* the event loop */
	{ "poll", ARGS_ANY }, { "ppoll", ARGS_ANY }, { "signalfd4", ARGS_ANY }, { "rt_sigaction", ARGS_ANY },
	/* creating threads, and what a new thread does before its own filter */
	{ "clone", ARGS_THREAD }, { "clone3", ARGS_ENOSYS }, { "set_robust_list", ARGS_ANY },
	{ "rseq", ARGS_ANY }, { "prctl", ARGS_ANY }, { "seccomp", ARGS_ANY }, { "sigaltstack", ARGS_ANY },
	{ "sched_getaffinity", ARGS_ANY }, { "getrandom", ARGS_ANY },
	SANITIZER_VMM_RULES
	END
};

static const struct syscall_rule vcpu_rules[] = {
	COMMON_RULES,
	{ "mmap", ARGS_NO_EXEC }, { "mprotect", ARGS_NO_EXEC },
	/* KVM_RUN, registers for the instruction fallback, IRQ lines, and the
	 * MSI-X routes, irqfds and ioeventfds a guest's PCI writes change,
	 * and the tap offloads the guest's virtio-net features choose */
	{ "ioctl", ARGS_IOCTL },
	/* what a device does when the guest enables or resets it */
	{ "epoll_ctl", ARGS_ANY }, { "timerfd_settime", ARGS_ANY },
	END
};

static const struct syscall_rule device_rules[] = {
	COMMON_RULES,
	{ "mmap", ARGS_NO_EXEC }, { "mprotect", ARGS_NO_EXEC },
	{ "epoll_wait", ARGS_ANY }, { "epoll_pwait", ARGS_ANY }, { "epoll_ctl", ARGS_ANY },
	{ "timerfd_settime", ARGS_ANY }, { "ioctl", ARGS_IOCTL }, /* KVM_IRQ_LINE for INTx */
	/* virtio-blk */
	{ "io_uring_enter", ARGS_ANY }, { "fdatasync", ARGS_ANY }, { "fallocate", ARGS_ANY },
	{ "pread64", ARGS_ANY }, { "pwrite64", ARGS_ANY }, { "preadv", ARGS_ANY }, { "pwritev", ARGS_ANY },
	/* virtio-rng */
	{ "getrandom", ARGS_ANY },
	/* virtio-vsock: connections to and from the host's UNIX sockets */
	{ "socket", ARGS_UNIX }, { "connect", ARGS_ANY }, { "accept4", ARGS_ANY }, { "sendmsg", ARGS_ANY },
	{ "recvmsg", ARGS_ANY }, { "sendto", ARGS_ANY }, { "recvfrom", ARGS_ANY }, { "shutdown", ARGS_ANY },
	{ "getsockopt", ARGS_ANY }, { "fcntl", ARGS_ANY },
	END
};

static const struct syscall_rule api_rules[] = {
	COMMON_RULES,
	{ "mmap", ARGS_NO_EXEC }, { "mprotect", ARGS_NO_EXEC },
	{ "poll", ARGS_ANY }, { "ppoll", ARGS_ANY }, { "accept4", ARGS_ANY }, { "recvfrom", ARGS_ANY },
	{ "sendto", ARGS_ANY }, { "sendmsg", ARGS_ANY }, { "recvmsg", ARGS_ANY }, { "shutdown", ARGS_ANY },
	{ "fcntl", ARGS_ANY }, { "setsockopt", ARGS_ANY }, { "getsockopt", ARGS_ANY },
	{ "getsockname", ARGS_ANY }, { "getpeername", ARGS_ANY },
	{ "getrandom", ARGS_ANY }, /* json-c's hash seed */
	END
};

/* ioctls by type (the second byte of the request number), or exactly. */
struct ioctl_rule {
	unsigned long value;
	bool type_only;
};

static const struct ioctl_rule vmm_ioctls[] = {
	{ KVMIO, true },
	{ 'T', true },                   /* TCGETS/TCSETS (raw terminal), TUNSETIFF and friends */
	{ 0x12, true },                  /* BLKGETSIZE64, BLKSSZGET: disks that are block devices */
	{ SIOCGIFINDEX, false },         /* if_nametoindex: does the tap exist? */
	{ 0, false },
};
static const struct ioctl_rule vcpu_ioctls[] = { { KVMIO, true }, { TUNSETOFFLOAD, false }, { 0, false } };
static const struct ioctl_rule kvm_ioctls[] = { { KVMIO, true }, { 0, false } };
static const struct ioctl_rule no_ioctls[] = { { 0, false } };

static const struct {
	const char *name;
	const struct syscall_rule *rules;
	const struct ioctl_rule *ioctls;
} thread_types[THREAD_COUNT] = {
	[THREAD_VMM] = { "vmm", vmm_rules, vmm_ioctls },
	[THREAD_VCPU] = { "vcpu", vcpu_rules, vcpu_ioctls },
	[THREAD_DEVICE] = { "device", device_rules, kvm_ioctls },
	[THREAD_API] = { "api", api_rules, no_ioctls },
};

static enum seccomp_mode mode = SECCOMP_OFF;

void sandbox_set_seccomp(enum seccomp_mode m)
{
	mode = m;
}

const char *sandbox_thread_name(enum sandbox_thread type)
{
	return type < THREAD_COUNT ? thread_types[type].name : "?";
}

const char *const *sandbox_allowed_calls(enum sandbox_thread type)
{
	static const char *names[THREAD_COUNT][128];
	if (type >= THREAD_COUNT)
		return NULL;
	if (!names[type][0]) {
		size_t n = 0;
		for (const struct syscall_rule *r = thread_types[type].rules; r->name && n + 1 < 128; r++)
			if (r->args != ARGS_ENOSYS)
				names[type][n++] = r->name;
	}
	return names[type];
}

static int add_rule(scmp_filter_ctx ctx, int nr, const struct syscall_rule *r, const struct ioctl_rule *ioctls)
{
	switch (r->args) {
	case ARGS_ANY:
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	case ARGS_ENOSYS:
		return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
	case ARGS_NO_EXEC:
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	case ARGS_UNIX:
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	case ARGS_GET_NAME:
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
	case ARGS_THREAD:
		return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
					SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	case ARGS_IOCTL:
		for (const struct ioctl_rule *io = ioctls; io->value; io++) {
			int rc = io->type_only
				 ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
						    SCMP_A1_32(SCMP_CMP_MASKED_EQ, 0xff00, io->value << 8))
				 : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A1_32(SCMP_CMP_EQ, io->value));
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	return -EINVAL;
}

/* A forbidden call made on purpose, for the tests that show a filter is
 * in place: KVMLITE_SECCOMP_PROBE=<thread type> makes the first thread of
 * that type open an AF_INET socket, which no thread may do. */
static void seccomp_probe(enum sandbox_thread type)
{
	const char *probe = getenv("KVMLITE_SECCOMP_PROBE");
	if (!probe || strcmp(probe, thread_types[type].name))
		return;
	static bool done[THREAD_COUNT];
	if (__atomic_exchange_n(&done[type], true, __ATOMIC_SEQ_CST))
		return;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	log_warn("seccomp probe: socket(AF_INET) in a %s thread returned %d (no filter stopped it)",
		 thread_types[type].name, fd);
	if (fd >= 0)
		close(fd);
}

int sandbox_enter(enum sandbox_thread type)
{
	if (type >= THREAD_COUNT)
		return -EINVAL;
	if (mode == SECCOMP_OFF) {
		seccomp_probe(type);
		return 0;
	}
	scmp_filter_ctx ctx = seccomp_init(mode == SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	int rc = 0;
	for (int t = 0; t < THREAD_COUNT && rc == 0; t++) {
		if (t != (int)type && type != THREAD_VMM)
			continue;
		for (const struct syscall_rule *r = thread_types[t].rules; r->name && rc == 0; r++) {
			int nr = seccomp_syscall_resolve_name(r->name);
			if (nr == __NR_SCMP_ERROR) {
				log_error("seccomp: unknown system call %s", r->name);
				rc = -EINVAL;
				break;
			}
			rc = add_rule(ctx, nr, r, thread_types[t].ioctls);
			if (rc == -EEXIST)
				rc = 0; /* the main thread's list has it already */
			if (rc < 0)
				log_error("seccomp: %s rule for %s: %s", thread_types[t].name, r->name, strerror(-rc));
		}
	}
	if (rc == 0 && (rc = seccomp_load(ctx)) < 0)
		log_error("seccomp: loading the %s filter: %s", thread_types[type].name, strerror(-rc));
	seccomp_release(ctx);
	if (rc == 0)
		seccomp_probe(type);
	return rc;
}
