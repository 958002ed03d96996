/* KVM glue for the instruction fallback: turns a KVM_INTERNAL_ERROR_EMULATION
 * exit into emu_decode/emu_execute on the vCPU's registers and guest memory.
 *
 * Guest memory is reached through KVM_TRANSLATE (guest page tables), then
 * guest_ptr() for guest RAM or the VM's MMIO bus for anything else: on
 * real KVM an instruction reaches us mostly because its memory operand is
 * MMIO. A translation that fails makes the instruction raise #PF with
 * CR2 = the failing page's address. Exceptions are injected with
 * KVM_SET_VCPU_EVENTS. */
#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "bus.h"
#include "emulate.h"
#include "log.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

#define FB_PAGE 4096ull
#define FB_EFER_LMA (1ull << 10)
#define FB_PF_P (1u << 0)
#define FB_PF_FETCH (1u << 4)

/* Where an access failed, for an exact CR2 and P bit. */
struct fb_ctx {
	struct vcpu *vcpu;
	bool pf;
	bool pf_present;
	uint64_t pf_addr;
};

/* ---- host CPU facts, computed once ------------------------------------ */

static struct {
	uint32_t offset[64], size[64];
	uint64_t align64;
	uint32_t mxcsr_mask;
} fb_host;
static pthread_once_t fb_host_once = PTHREAD_ONCE_INIT;

/* struct kvm_xsave follows the host's CPUID 0xD layout (see linux/kvm.h). */
static void fb_host_init(void)
{
	unsigned int eax, ebx, ecx, edx;
	uint8_t fx[512] __attribute__((aligned(16)));

	for (unsigned int i = 2; i < 63; i++) {
		if (!__get_cpuid_count(0xD, i, &eax, &ebx, &ecx, &edx))
			break;
		fb_host.size[i] = eax;
		fb_host.offset[i] = ebx;
		if (ecx & 2)
			fb_host.align64 |= 1ull << i;
	}
	/* MXCSR_MASK as the host reports it; 0 means the SDM's 0xFFBF. */
	memset(fx, 0, sizeof(fx));
	__asm__ volatile("fxsave %0" : "=m"(fx));
	memcpy(&fb_host.mxcsr_mask, fx + 28, 4);
	if (!fb_host.mxcsr_mask)
		fb_host.mxcsr_mask = 0xFFBF;
}

/* ---- guest memory ------------------------------------------------------ */

static int fb_translate(struct fb_ctx *c, uint64_t gva, bool write, uint64_t *gpa)
{
	struct kvm_translation tr = { .linear_address = gva };

	if (ioctl(c->vcpu->fd, KVM_TRANSLATE, &tr) < 0)
		return errno == EFAULT ? -EIO : -errno; /* -EFAULT means #PF here */
	if (!tr.valid || (write && !tr.writeable)) {
		c->pf = true;
		c->pf_present = tr.valid;
		c->pf_addr = gva;
		return -EFAULT;
	}
	*gpa = tr.physical_address;
	return 0;
}

/* One piece of at most 8 bytes: RAM, else the device that claims all of
 * it. A piece no device claims whole is done byte by byte, so RAM next to
 * a device, or a device's last bytes, still work; a byte nobody claims
 * reads all-ones and ignores writes, as for KVM_EXIT_MMIO (src/vcpu.c). */
static void fb_gpa_piece(const struct guest_memory *mem, const struct bus *mmio, uint64_t gpa,
			 uint8_t *buf, uint32_t len, bool write)
{
	uint8_t *p = guest_ptr(mem, gpa, len);

	if (p) {
		if (write)
			memcpy(p, buf, len);
		else
			memcpy(buf, p, len);
		return;
	}
	if (bus_dispatch(mmio, gpa, buf, len, write) != -ENOENT)
		return;
	if (len > 1) {
		for (uint32_t i = 0; i < len; i++)
			fb_gpa_piece(mem, mmio, gpa + i, buf + i, 1, write);
	} else if (!write) {
		buf[0] = 0xFF;
	}
}

int x86_fallback_gpa_access(const struct guest_memory *mem, const struct bus *mmio, uint64_t gpa,
			    void *buf, size_t len, bool write)
{
	uint8_t *b = buf;
	uint8_t *p;

	if (len > FB_PAGE || gpa + len < gpa)
		return -EINVAL;
	if ((p = guest_ptr(mem, gpa, len))) { /* the common case: all RAM */
		if (write)
			memcpy(p, b, len);
		else
			memcpy(b, p, len);
		return 0;
	}
	/* Device registers are at most 8 bytes wide: split as a CPU splits a
	 * wide access, at 8-byte boundaries. */
	for (size_t done = 0; done < len;) {
		uint64_t a = gpa + done;
		uint32_t n = (uint32_t)MIN(len - done, 8 - (a & 7));
		fb_gpa_piece(mem, mmio, a, b + done, n, write);
		done += n;
	}
	return 0;
}

/* Copies page by page. Every page is translated before any byte is
 * written, so a fault on the second page leaves memory untouched. */
static int fb_access(struct fb_ctx *c, uint64_t gva, void *buf, size_t len, bool write)
{
	const struct vm *vm = c->vcpu->vm;
	uint64_t gpa;
	int r;

	for (int pass = write ? 0 : 1; pass < 2; pass++) {
		for (size_t done = 0; done < len;) {
			uint64_t va = gva + done;
			size_t n = MIN(len - done, FB_PAGE - (va & (FB_PAGE - 1)));
			if ((r = fb_translate(c, va, write, &gpa)))
				return r;
			if (pass == 1 &&
			    (r = x86_fallback_gpa_access(&vm->mem, &vm->mmio, gpa, (uint8_t *)buf + done, n, write)))
				return r;
			done += n;
		}
	}
	return 0;
}

static int fb_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
	return fb_access(ctx, gva, buf, len, false);
}

static int fb_write(void *ctx, uint64_t gva, const void *buf, size_t len)
{
	return fb_access(ctx, gva, (void *)buf, len, true);
}

/* Atomic against the other vCPUs when the operand is naturally aligned RAM
 * (always aligned for cmpxchg16b). A misaligned cmpxchg8b is done as a
 * read, a compare and a write, as a split lock is something the host may
 * refuse; so is an operand in MMIO: the device sees the reads, then the
 * writes only if the compare succeeds, each in 8-byte pieces (a device
 * cannot do a 16-byte atomic access anyway). */
static int fb_cmpxchg(void *ctx, uint64_t gva, void *expected, const void *desired, size_t len)
{
	struct fb_ctx *c = ctx;
	uint64_t gpa;
	uint8_t *p;
	int r;

	if (len != 8 && len != 16)
		return -EINVAL;
	if ((gva & (FB_PAGE - 1)) + len <= FB_PAGE) {
		if ((r = fb_translate(c, gva, true, &gpa)))
			return r;
		p = guest_ptr(&c->vcpu->vm->mem, gpa, len);
		if (p && len == 16 && !((uintptr_t)p & 15)) {
			uint64_t lo, hi, nlo, nhi;
			bool ok;
			memcpy(&lo, expected, 8);
			memcpy(&hi, (uint8_t *)expected + 8, 8);
			memcpy(&nlo, desired, 8);
			memcpy(&nhi, (const uint8_t *)desired + 8, 8);
			__asm__ volatile("lock cmpxchg16b %1"
					 : "=@ccz"(ok), "+m"(*(volatile __int128 *)p), "+a"(lo), "+d"(hi)
					 : "b"(nlo), "c"(nhi)
					 : "memory");
			if (!ok) {
				memcpy(expected, &lo, 8);
				memcpy((uint8_t *)expected + 8, &hi, 8);
			}
			return ok;
		}
		if (p && len == 8 && !((uintptr_t)p & 7)) {
			uint64_t exp, des;
			memcpy(&exp, expected, 8);
			memcpy(&des, desired, 8);
			bool ok = __atomic_compare_exchange_n((uint64_t *)p, &exp, des, false,
							      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
			if (!ok)
				memcpy(expected, &exp, 8);
			return ok;
		}
	}
	uint8_t cur[16];
	if ((r = fb_access(c, gva, cur, len, false)))
		return r;
	if (memcmp(cur, expected, len)) {
		memcpy(expected, cur, len);
		return 0;
	}
	return (r = fb_access(c, gva, (void *)desired, len, true)) ? r : 1;
}

/* ---- the instruction ----------------------------------------------------- */

/* Up to 15 bytes at RIP, stopping at a page that does not translate
 * (*short_at says where, for a #PF if the decoder needs more). */
static int fb_fetch(struct fb_ctx *c, uint64_t rip, uint8_t *bytes, size_t *len)
{
	size_t got = 0;

	while (got < EMU_MAX_INSN_LEN) {
		uint64_t va = rip + got, gpa;
		size_t n = MIN(EMU_MAX_INSN_LEN - got, FB_PAGE - (va & (FB_PAGE - 1)));
		int r = fb_translate(c, va, false, &gpa);
		uint8_t *p;
		if (r == -EFAULT && got)
			break; /* c->pf records the page, used if the bytes fall short */
		if (r)
			return r;
		if (!(p = guest_ptr(&c->vcpu->vm->mem, gpa, n)))
			break;
		memcpy(bytes + got, p, n);
		got += n;
	}
	*len = got;
	return 0;
}

static void fb_log_unknown(struct vcpu *vcpu, uint64_t rip, const uint8_t *bytes, size_t len,
			   const char *why)
{
	char hex[3 * EMU_MAX_INSN_LEN + 1] = "";

	if (vcpu->arch.unknown_logged)
		return;
	vcpu->arch.unknown_logged = true;
	for (size_t i = 0; i < len && i < EMU_MAX_INSN_LEN; i++)
		snprintf(hex + 3 * i, 4, "%s%02x", i ? " " : "", bytes[i]);
	log_warn("vCPU %d: cannot emulate instruction at rip 0x%llx (%s): %s", vcpu->id,
		 (unsigned long long)rip, why, len ? hex : "no bytes");
}

static int fb_inject(struct vcpu *vcpu, const struct emu_fault *f)
{
	struct kvm_vcpu_events ev;

	if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	/* Write back only what we read, plus the exception. */
	ev.flags &= ~(uint32_t)(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR);
	ev.exception.nr = (uint8_t)f->vector;
	ev.exception.has_error_code = f->has_error_code;
	ev.exception.error_code = f->error_code;
	if (ev.flags & KVM_VCPUEVENT_VALID_PAYLOAD) {
		/* KVM_CAP_EXCEPTION_PAYLOAD: a pending exception is fully
		 * delivered by KVM, CR2 from the payload */
		ev.exception.pending = 1;
		ev.exception.injected = 0;
		ev.exception_has_payload = f->vector == EMU_VEC_PF;
		ev.exception_payload = f->vector == EMU_VEC_PF ? f->cr2 : 0;
	} else {
		ev.exception.injected = 1;
		ev.exception.pending = 0;
	}
	return ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ? -errno : 0;
}

static void fb_regs_to_cpu(const struct kvm_regs *r, const struct kvm_sregs *s, struct emu_cpu *cpu)
{
	uint64_t g[16] = { r->rax, r->rcx, r->rdx, r->rbx, r->rsp, r->rbp, r->rsi, r->rdi,
			   r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15 };

	memcpy(cpu->gpr, g, sizeof(g));
	cpu->rip = r->rip;
	cpu->rflags = r->rflags;
	cpu->cpl = s->cs.selector & 3;
	cpu->cr0 = s->cr0;
	cpu->cr4 = s->cr4;
	cpu->fs_base = s->fs.base;
	cpu->gs_base = s->gs.base;
}

static void fb_cpu_to_regs(const struct emu_cpu *cpu, struct kvm_regs *r)
{
	const uint64_t *g = cpu->gpr;

	r->rax = g[EMU_RAX], r->rcx = g[EMU_RCX], r->rdx = g[EMU_RDX], r->rbx = g[EMU_RBX];
	r->rsp = g[EMU_RSP], r->rbp = g[EMU_RBP], r->rsi = g[EMU_RSI], r->rdi = g[EMU_RDI];
	r->r8 = g[EMU_R8], r->r9 = g[EMU_R9], r->r10 = g[EMU_R10], r->r11 = g[EMU_R11];
	r->r12 = g[EMU_R12], r->r13 = g[EMU_R13], r->r14 = g[EMU_R14], r->r15 = g[EMU_R15];
	r->rip = cpu->rip;
	r->rflags = cpu->rflags;
}

static int fb_get_xcr0(struct vcpu *vcpu, uint64_t *xcr0)
{
	struct kvm_xcrs xcrs;

	memset(&xcrs, 0, sizeof(xcrs));
	if (ioctl(vcpu->fd, KVM_GET_XCRS, &xcrs) < 0)
		return -errno;
	for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++) {
		if (xcrs.xcrs[i].xcr == 0) {
			*xcr0 = xcrs.xcrs[i].value;
			return 0;
		}
	}
	*xcr0 = 3; /* x87 | SSE: XCR0's value at reset */
	return 0;
}

static bool fb_changes_fpu(enum emu_insn insn)
{
	return insn == EMU_XRSTOR || insn == EMU_FXRSTOR || insn == EMU_LDMXCSR;
}

int x86_fallback_handle(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct fb_ctx ctx = { .vcpu = vcpu };
	struct emu_mem mem = { fb_read, fb_write, fb_cmpxchg, &ctx };
	struct kvm_xsave xsave;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct emu_cpu cpu;
	struct emu_decoded d;
	struct emu_fault f;
	uint8_t bytes[EMU_MAX_INSN_LEN];
	size_t len = 0;
	int r;

	pthread_once(&fb_host_once, fb_host_init);
	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;

	/* flags and the 16 bytes count as 3 data words; older KVMs leave
	 * them out (ndata 0) and the fields hold stale data */
	if (run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		len = MIN((size_t)run->emulation_failure.insn_size, sizeof(bytes));
		memcpy(bytes, run->emulation_failure.insn_bytes, len);
	}
	if (!(sregs.efer & FB_EFER_LMA) || !sregs.cs.l) {
		/* the decoder knows 64-bit mode only */
		vcpu->arch.fallback[EMU_UNKNOWN]++;
		fb_log_unknown(vcpu, regs.rip, bytes, len, "not in 64-bit mode");
		return -ENOTSUP;
	}

	r = len ? emu_decode(bytes, len, &d) : -EINVAL;
	if (r == -EINVAL && len < EMU_MAX_INSN_LEN) {
		/* no bytes from KVM, or too few: fetch them ourselves */
		r = fb_fetch(&ctx, regs.rip, bytes, &len);
		if (r == -EFAULT) { /* RIP's own page does not translate */
			f = (struct emu_fault){ EMU_VEC_PF, true, FB_PF_FETCH | (ctx.pf_present ? FB_PF_P : 0),
						true, ctx.pf_addr };
			goto inject;
		}
		if (r)
			return r;
		r = emu_decode(bytes, len, &d);
	}
	if (r == -EINVAL) {
		if (len < EMU_MAX_INSN_LEN && ctx.pf) /* runs into an unmapped page */
			f = (struct emu_fault){ EMU_VEC_PF, true, FB_PF_FETCH | (ctx.pf_present ? FB_PF_P : 0),
						true, ctx.pf_addr };
		else /* longer than 15 bytes, or runs into MMIO */
			f = (struct emu_fault){ EMU_VEC_GP, true, 0, false, 0 };
		vcpu->arch.fallback[EMU_UNKNOWN]++;
		goto inject;
	}
	if (r)
		return r;

	memset(&cpu, 0, sizeof(cpu));
	fb_regs_to_cpu(&regs, &sregs, &cpu);
	if (cpu.cpl && d.has_modrm && d.is_mem) {
		/* KVM_TRANSLATE ignores the U/S bit: emulating a user-mode
		 * access could reach kernel memory. Refuse with #UD. */
		vcpu->arch.fallback[EMU_UNKNOWN]++;
		fb_log_unknown(vcpu, regs.rip, bytes, len, "memory operand at CPL > 0, #UD injected");
		f = (struct emu_fault){ EMU_VEC_UD, false, 0, false, 0 };
		goto inject;
	}
	if (emu_needs_fpu(d.insn)) {
		if (ioctl(vcpu->fd, KVM_GET_XSAVE, &xsave) < 0)
			return -errno;
		if ((r = fb_get_xcr0(vcpu, &cpu.xcr0)))
			return r;
		cpu.xsave = (uint8_t *)xsave.region;
		memcpy(cpu.xsave_offset, fb_host.offset, sizeof(cpu.xsave_offset));
		memcpy(cpu.xsave_size, fb_host.size, sizeof(cpu.xsave_size));
		cpu.xsave_align64 = fb_host.align64;
		cpu.mxcsr_mask = fb_host.mxcsr_mask;
	}

	ctx.pf = false; /* only the execution's faults from here */
	r = emu_execute(&d, &cpu, &mem, &f);
	vcpu->arch.fallback[d.insn]++;
	if (d.insn == EMU_UNKNOWN)
		fb_log_unknown(vcpu, regs.rip, bytes, len, "unsupported, #UD injected");
	if (r < 0) {
		log_error("vCPU %d: emulating %s at rip 0x%llx failed: %s", vcpu->id,
			  emu_insn_name(d.insn), (unsigned long long)regs.rip, strerror(-r));
		return r;
	}
	if (r == 0 || cpu.rip != regs.rip) { /* done, or int3's trap */
		fb_cpu_to_regs(&cpu, &regs);
		if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
			return -errno;
	}
	if (r == 0) {
		if (fb_changes_fpu(d.insn) && ioctl(vcpu->fd, KVM_SET_XSAVE, &xsave) < 0)
			return -errno;
		return 0;
	}
	if (f.vector == EMU_VEC_PF && ctx.pf) {
		f.cr2 = ctx.pf_addr;
		f.error_code |= ctx.pf_present ? FB_PF_P : 0;
	}

inject:
	if (f.vector == EMU_VEC_PF) {
		/* without KVM_CAP_EXCEPTION_PAYLOAD, CR2 must be in place first */
		sregs.cr2 = f.cr2;
		if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
			return -errno;
	}
	return fb_inject(vcpu, &f);
}
