// Self-test of the KVM test host (not part of kvmlite):
//   gcc -O2 -o build/kvmhost-selftest tests/kvmhost/selftest.c -lpthread
//   tests/kvmhost/run -- build/kvmhost-selftest [NVCPUS]
// (the binary must live under the cwd or on the host's root fs: /tmp inside
// the test host is a fresh tmpfs, except for the cwd itself).
// Checks: real-mode OUT+HLT exits, KVM_EXIT_IO rate, 64-bit long-mode guest
// (10M-iteration loop timing), KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2 + N vCPUs.
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#define CHK(x) do { if ((long)(x) < 0) { fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, strerror(errno)); exit(1);} } while (0)
static int kvm, vm; static size_t runsz;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}

static uint8_t *setup_mem(size_t sz) {
	uint8_t *m = mmap(0, sz, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0);
	struct kvm_userspace_memory_region r = {.slot=0,.guest_phys_addr=0,.memory_size=sz,.userspace_addr=(uint64_t)m};
	CHK(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r));
	return m;
}
static int mkvcpu(int id, struct kvm_run **run) {
	int fd = ioctl(vm, KVM_CREATE_VCPU, id); CHK(fd);
	*run = mmap(0, runsz, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0);
	return fd;
}
static void realmode(int fd, uint16_t ip) {
	struct kvm_sregs s; CHK(ioctl(fd, KVM_GET_SREGS, &s));
	s.cs.base = 0; s.cs.selector = 0; CHK(ioctl(fd, KVM_SET_SREGS, &s));
	struct kvm_regs r = {.rip = ip, .rflags = 2}; CHK(ioctl(fd, KVM_SET_REGS, &r));
}

/* real mode: mov $0x3f8,%dx; mov $'A',%al; out %al,(%dx); hlt */
static const uint8_t rm_code[] = {0xba,0xf8,0x03,0xb0,'A',0xee,0xf4};
/* real mode io loop: mov $100000,%ecx; 1: out %al,(%dx); addr32 loop 1b; hlt */
static const uint8_t rm_ioloop[] = {0xba,0xf8,0x03, 0x66,0xb9,0xa0,0x86,0x01,0x00, 0xee, 0x67,0xe2,0xfc, 0xf4};
/* long mode: mov $10000000,%rcx; 1: dec %rcx; jnz 1b; mov $0x3f8,%dx; mov $'L',%al; out; hlt */
static const uint8_t lm_code[] = {0x48,0xc7,0xc1,0x80,0x96,0x98,0x00, 0x48,0xff,0xc9, 0x75,0xfb, 0x66,0xba,0xf8,0x03, 0xb0,'L', 0xee, 0xf4};

static void test_realmode(void) {
	vm = ioctl(kvm, KVM_CREATE_VM, 0); CHK(vm);
	uint8_t *m = setup_mem(0x10000); memcpy(m+0x1000, rm_code, sizeof rm_code);
	struct kvm_run *run; int fd = mkvcpu(0, &run); realmode(fd, 0x1000);
	CHK(ioctl(fd, KVM_RUN, 0));
	if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x3f8) { printf("realmode: unexpected exit %d\n", run->exit_reason); exit(1); }
	char c = *((char*)run + run->io.data_offset);
	CHK(ioctl(fd, KVM_RUN, 0));
	if (run->exit_reason != KVM_EXIT_HLT) { printf("realmode: expected HLT got %d\n", run->exit_reason); exit(1); }
	printf("realmode: OK (IO '%c' then HLT)\n", c);
	/* IO exit rate */
	memcpy(m+0x2000, rm_ioloop, sizeof rm_ioloop); realmode(fd, 0x2000);
	int n = 0; double t0 = now();
	for (;;) { CHK(ioctl(fd, KVM_RUN, 0)); if (run->exit_reason == KVM_EXIT_IO) n++; else break; }
	double dt = now()-t0;
	printf("io exits: %d in %.3fs = %.0f exits/s (final exit %d)\n", n, dt, n/dt, run->exit_reason);
	close(fd); close(vm);
}

static void test_longmode(void) {
	vm = ioctl(kvm, KVM_CREATE_VM, 0); CHK(vm);
	uint8_t *m = setup_mem(0x200000);
	uint64_t *pml4 = (void*)(m+0x1000), *pdpt = (void*)(m+0x2000), *pd = (void*)(m+0x3000);
	pml4[0] = 0x2000|3; pdpt[0] = 0x3000|3; pd[0] = 0x83; /* 2MB identity */
	memcpy(m+0x10000, lm_code, sizeof lm_code);
	struct kvm_run *run; int fd = mkvcpu(0, &run);
	struct kvm_sregs s; CHK(ioctl(fd, KVM_GET_SREGS, &s));
	s.cr3 = 0x1000; s.cr4 = 0x20; s.cr0 = 0x80050033; s.efer = 0x500;
	struct kvm_segment cs = {.base=0,.limit=0xffffffff,.selector=8,.type=11,.present=1,.dpl=0,.db=0,.s=1,.l=1,.g=1};
	struct kvm_segment ds = cs; ds.type = 3; ds.selector = 16; ds.l = 0; ds.db = 1;
	s.cs = cs; s.ds = s.es = s.fs = s.gs = s.ss = ds;
	CHK(ioctl(fd, KVM_SET_SREGS, &s));
	struct kvm_regs r = {.rip = 0x10000, .rflags = 2, .rsp = 0x100000}; CHK(ioctl(fd, KVM_SET_REGS, &r));
	double t0 = now();
	CHK(ioctl(fd, KVM_RUN, 0));
	double dt = now()-t0;
	if (run->exit_reason != KVM_EXIT_IO) { printf("longmode: unexpected exit %d\n", run->exit_reason); exit(1); }
	char c = *((char*)run + run->io.data_offset);
	CHK(ioctl(fd, KVM_RUN, 0));
	if (run->exit_reason != KVM_EXIT_HLT) { printf("longmode: expected HLT got %d\n", run->exit_reason); exit(1); }
	printf("longmode: OK ('%c' then HLT); 10M dec/jnz loop took %.3fs = %.1f M iter/s\n", c, dt, 10/dt);
	close(fd); close(vm);
}

struct th { int fd; struct kvm_run *run; int id; int ok; };
static void *vcpu_thread(void *p) {
	struct th *t = p;
	for (int i = 0; i < 3; i++) {
		if (ioctl(t->fd, KVM_RUN, 0) < 0) { perror("KVM_RUN smp"); return 0; }
		if (t->run->exit_reason == KVM_EXIT_IO) { t->ok = 1; return 0; } /* HLT would block in-kernel with irqchip */
		printf("smp vcpu%d: exit %d\n", t->id, t->run->exit_reason); return 0;
	}
	return 0;
}
static void test_smp(int n) {
	vm = ioctl(kvm, KVM_CREATE_VM, 0); CHK(vm);
	CHK(ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000));
	CHK(ioctl(vm, KVM_CREATE_IRQCHIP, 0));
	struct kvm_pit_config pc = {.flags = KVM_PIT_SPEAKER_DUMMY}; CHK(ioctl(vm, KVM_CREATE_PIT2, &pc));
	uint8_t *m = setup_mem(0x10000); memcpy(m+0x1000, rm_code, sizeof rm_code);
	m[0x1000+4] = '0';
	struct th t[16]; pthread_t pt[16];
	for (int i = 0; i < n; i++) {
		t[i].fd = mkvcpu(i, &t[i].run); t[i].id = i; t[i].ok = 0;
		/* with in-kernel irqchip, APs start in wait-for-SIPI; make all runnable */
		struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE}; CHK(ioctl(t[i].fd, KVM_SET_MP_STATE, &mp));
		realmode(t[i].fd, 0x1000);
	}
	for (int i = 0; i < n; i++) pthread_create(&pt[i], 0, vcpu_thread, &t[i]);
	int ok = 0; for (int i = 0; i < n; i++) { pthread_join(pt[i], 0); ok += t[i].ok; }
	/* with in-kernel LAPIC, HLT is handled in-kernel (vcpu blocks) unless no irq... we accept both */
	printf("smp: irqchip+pit2 OK, %d/%d vcpus ran and exited with KVM_EXIT_IO\n", ok, n);
	close(vm);
}

int main(int argc, char **argv) {
	kvm = open("/dev/kvm", O_RDWR); CHK(kvm);
	printf("KVM_GET_API_VERSION=%d\n", ioctl(kvm, KVM_GET_API_VERSION, 0));
	runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	test_realmode();
	test_longmode();
	test_smp(argc > 1 ? atoi(argv[1]) : 2);
	return 0;
}
