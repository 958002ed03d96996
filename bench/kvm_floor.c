/* kvm_floor: the cost of a bare KVM_RUN round trip, the floor under any
 * VMM's exit figures (bench/README.md).
 *
 *   kvm_floor pio|mmio N [GUEST_ELF]
 *   kvm_floor --real pio|mmio N
 *
 * Default: loads the tiny guest (GUEST_ELF, default
 * build/guest/kvmlite-guest.elf) into 8 MiB of RAM and enters it at its PVH
 * entry with "bench=pio n=N" (or mmio): the very loop the VMMs are measured
 * with, at CPL3 in long mode. This is the least a VMM can do: one thread, no
 * in-kernel irqchip or PIT, no device model. Port reads get 0xFF (so the
 * guest's serial console never waits), every other exit is re-entered at
 * once. The time runs from the first write to the bench port or address to
 * the Nth; prints exits (N - 1), elapsed_ms and exits_per_s.
 *
 * --real: a three-instruction real-mode loop instead, without paging: on a
 * nested host whose world switches flush the TLB, this shows how much of
 * an exit is the guest's page walks. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <elf.h>

#define RAM_SIZE        (8u << 20)
#define REAL_CODE       0x1000
#define REAL_MMIO       0x10000         /* past the real-mode RAM slot */
#define REAL_RAM        0x10000
#define START_INFO      0x6000          /* struct hvm_start_info */
#define CMDLINE         0x20000
#define PVH_MAGIC       0x336ec578u
#define BENCH_PORT      0x3E0           /* guest/bench.c */
#define BENCH_MMIO      0xD0000000ULL   /* guest/bench.c */
#define TIMEOUT_S       120
#define MAX_CPUID       256

static const uint8_t real_pio[] = {
	0xba, 0xe0, 0x03, /* mov $0x3e0, %dx */
	0xee,             /* 1: out %al, %dx */
	0xeb, 0xfd,       /* jmp 1b */
};
static const uint8_t real_mmio[] = {
	0xb8, 0x00, 0x10, /* mov $0x1000, %ax */
	0x8e, 0xd8,       /* mov %ax, %ds */
	0xa2, 0x00, 0x00, /* 1: mov %al, (0)   (ds:0 = 0x10000) */
	0xeb, 0xfb,       /* jmp 1b */
};

/* The guest's console output, shown if it stops early. */
static char console[4096];
static size_t console_len;

static int die(const char *what)
{
	fprintf(stderr, "kvm_floor: %s: %s\n", what, strerror(errno));
	return 1;
}

static int fail(const char *what)
{
	fprintf(stderr, "kvm_floor: %s\n", what);
	if (console_len)
		fprintf(stderr, "kvm_floor: guest console:\n%.*s\n", (int)console_len, console);
	return 1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Copies the PT_LOAD segments of an ELF64 into ram; the entry or 0. */
static uint64_t load_elf(const char *path, uint8_t *ram, size_t ram_size)
{
	struct stat st;
	uint8_t *img;
	const Elf64_Ehdr *eh;
	uint64_t entry = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(*eh)) {
		fprintf(stderr, "kvm_floor: %s: cannot read\n", path);
		return 0;
	}
	img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (img == MAP_FAILED)
		return 0;
	eh = (const Elf64_Ehdr *)img;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > (uint64_t)st.st_size ||
	    eh->e_phnum > ((uint64_t)st.st_size - eh->e_phoff) / sizeof(Elf64_Phdr)) {
		fprintf(stderr, "kvm_floor: %s: not an ELF64 executable\n", path);
		goto out;
	}
	for (int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff) + i;

		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_filesz > ph->p_memsz || ph->p_paddr > ram_size || ph->p_memsz > ram_size - ph->p_paddr ||
		    ph->p_offset > (uint64_t)st.st_size || ph->p_filesz > (uint64_t)st.st_size - ph->p_offset) {
			fprintf(stderr, "kvm_floor: %s: segment %d does not fit\n", path, i);
			goto out;
		}
		memcpy(ram + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
		memset(ram + ph->p_paddr + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
	}
	/* The linker script makes the ELF entry the PVH entry (pvh_start). */
	entry = eh->e_entry;
out:
	munmap(img, (size_t)st.st_size);
	return entry;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	*s = (struct kvm_segment){ .base = 0, .limit = 0xFFFFFFFF, .selector = sel, .type = type,
		.present = 1, .db = 1, .s = 1, .g = 1 };
}

/* 32-bit protected mode, paging off, EBX = start_info: the PVH entry state. */
static int setup_pvh(int kvm, int cpu, uint8_t *ram, uint64_t entry, const char *cmdline)
{
	struct kvm_cpuid2 *cpuid;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = entry, .rbx = START_INFO, .rflags = 0x2 };
	uint32_t si[4] = { PVH_MAGIC, 1, 0, 0 };
	uint64_t cmdline_pa = CMDLINE;

	/* Without a CPUID table the guest may not enable long mode. */
	cpuid = calloc(1, sizeof(*cpuid) + MAX_CPUID * sizeof(cpuid->entries[0]));
	if (!cpuid)
		return fail("out of memory");
	cpuid->nent = MAX_CPUID;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0 || ioctl(cpu, KVM_SET_CPUID2, cpuid) < 0)
		return die("KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2");
	free(cpuid);

	memcpy(ram + START_INFO, si, sizeof(si));
	memcpy(ram + START_INFO + 24, &cmdline_pa, sizeof(cmdline_pa)); /* cmdline_paddr */
	strcpy((char *)ram + CMDLINE, cmdline);

	if (ioctl(cpu, KVM_GET_SREGS, &sregs) < 0)
		return die("KVM_GET_SREGS");
	flat_segment(&sregs.cs, 0x08, 0xB);
	flat_segment(&sregs.ds, 0x10, 0x3);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){ .limit = 0x67, .type = 0xB, .present = 1 };
	sregs.cr0 = 0x11; /* PE | ET */
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(cpu, KVM_SET_SREGS, &sregs) < 0)
		return die("KVM_SET_SREGS");
	if (ioctl(cpu, KVM_SET_REGS, &regs) < 0)
		return die("KVM_SET_REGS");
	return 0;
}

static int setup_real(int cpu, uint8_t *ram, int pio)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = REAL_CODE, .rflags = 0x2 };

	memcpy(ram + REAL_CODE, pio ? real_pio : real_mmio, pio ? sizeof(real_pio) : sizeof(real_mmio));
	if (ioctl(cpu, KVM_GET_SREGS, &sregs) < 0)
		return die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(cpu, KVM_SET_SREGS, &sregs) < 0)
		return die("KVM_SET_SREGS");
	if (ioctl(cpu, KVM_SET_REGS, &regs) < 0)
		return die("KVM_SET_REGS");
	return 0;
}

int main(int argc, char **argv)
{
	const char *elf = "build/guest/kvmlite-guest.elf";
	struct kvm_userspace_memory_region slot;
	struct kvm_run *run;
	int kvm, vm, cpu, size, pio, real = 0, a = 1;
	long n, count = 0;
	uint64_t bench_mmio;
	uint8_t *ram;
	size_t ram_size;
	double t0 = 0, t1;
	char cmdline[64];

	if (argc > 1 && !strcmp(argv[1], "--real")) {
		real = 1;
		a++;
	}
	if (argc - a < 2 || argc - a > 3 - real || (strcmp(argv[a], "pio") && strcmp(argv[a], "mmio")) ||
	    (n = atol(argv[a + 1])) < 2) {
		fprintf(stderr, "usage: kvm_floor pio|mmio N [GUEST_ELF]\n       kvm_floor --real pio|mmio N\n");
		return 2;
	}
	pio = !strcmp(argv[a], "pio");
	if (argc - a == 3)
		elf = argv[a + 2];
	ram_size = real ? REAL_RAM : RAM_SIZE;
	bench_mmio = real ? REAL_MMIO : BENCH_MMIO;
	alarm(TIMEOUT_S); /* a guest that never gets there must not hang the bench */

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return die("/dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return die("KVM_CREATE_VM");
	if (ioctl(vm, KVM_SET_TSS_ADDR, 0xFFFBD000UL) < 0) /* needed by VMX real mode */
		return die("KVM_SET_TSS_ADDR");
	ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		return die("mmap");
	slot = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0,
		.memory_size = ram_size, .userspace_addr = (uintptr_t)ram };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		return die("KVM_SET_USER_MEMORY_REGION");

	cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (cpu < 0)
		return die("KVM_CREATE_VCPU");
	size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < (int)sizeof(*run))
		return die("KVM_GET_VCPU_MMAP_SIZE");
	run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
	if (run == MAP_FAILED)
		return die("mmap kvm_run");

	if (real) {
		if (setup_real(cpu, ram, pio))
			return 1;
	} else {
		uint64_t entry = load_elf(elf, ram, ram_size);

		if (!entry)
			return 1;
		snprintf(cmdline, sizeof(cmdline), "bench=%s n=%ld", pio ? "pio" : "mmio", n);
		if (setup_pvh(kvm, cpu, ram, entry, cmdline))
			return 1;
	}

	for (;;) {
		int hit = 0;

		if (ioctl(cpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			return die("KVM_RUN");
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *data = (uint8_t *)run + run->io.data_offset;
			size_t len = (size_t)run->io.size * run->io.count;

			if (run->io.direction == KVM_EXIT_IO_IN)
				memset(data, 0xFF, len);
			else if (run->io.port == BENCH_PORT)
				hit = 1;
			else if (run->io.port == 0x3F8 && console_len < sizeof(console))
				console[console_len++] = (char)data[0];
			break;
		}
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xFF, sizeof(run->mmio.data));
			else if (run->mmio.phys_addr == bench_mmio)
				hit = 1;
			break;
		case KVM_EXIT_HLT:
			return fail("the guest halted before the loop ended");
		default:
			fprintf(stderr, "kvm_floor: unexpected exit reason %u\n", run->exit_reason);
			return fail("stopped");
		}
		if (hit && (pio ? run->exit_reason == KVM_EXIT_IO : run->exit_reason == KVM_EXIT_MMIO)) {
			if (++count == 1)
				t0 = now_ms();
			if (count == n)
				break;
		}
	}
	t1 = now_ms();
	printf("exits=%ld elapsed_ms=%.3f exits_per_s=%.0f\n", n - 1, t1 - t0, (double)(n - 1) * 1e3 / (t1 - t0));
	return 0;
}
