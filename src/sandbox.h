/* The sandbox: one seccomp system-call filter per thread type, built with
 * libseccomp.
 *
 * The main (VMM) thread loads its filter before it creates any thread, so
 * every thread inherits it; each vCPU, device worker and API thread then
 * adds its own, narrower one as the first thing it does. Filters stack: a
 * call must pass all of them. A forbidden call kills the whole process.
 * The lists, and why each entry is there, are in sandbox.c. */
#ifndef KVMLITE_SANDBOX_H
#define KVMLITE_SANDBOX_H

#include <stddef.h>

enum seccomp_mode {
	SECCOMP_OFF,  /* --no-seccomp; also what unit tests get */
	SECCOMP_KILL, /* the default for `kvmlite run` */
	SECCOMP_LOG,  /* --seccomp-log: forbidden calls go to the kernel's audit log */
};

enum sandbox_thread {
	THREAD_VMM,    /* main thread: builds, runs and tears down the VM */
	THREAD_VCPU,   /* KVM_RUN and the exits it handles */
	THREAD_DEVICE, /* a virtio device's worker */
	THREAD_API,    /* the HTTP server: parses requests, hands actions to the main thread */
	THREAD_COUNT
};

/* Sets the mode for the process; call once, before any thread starts. */
void sandbox_set_seccomp(enum seccomp_mode mode);

/* Loads the filter of thread type `type` into the calling thread (nothing
 * when the mode is SECCOMP_OFF). Returns 0 or a negative errno. */
int sandbox_enter(enum sandbox_thread type);

const char *sandbox_thread_name(enum sandbox_thread type);

/* The system calls thread type `type` may make, by name, NULL-terminated
 * (for tests and docs). */
const char *const *sandbox_allowed_calls(enum sandbox_thread type);

#endif
