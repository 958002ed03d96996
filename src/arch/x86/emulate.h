/* Trap-and-emulate fallback: decode and execute, in userspace, the few
 * instructions a host KVM may fail to emulate (KVM_EXIT_INTERNAL_ERROR,
 * KVM_INTERNAL_ERROR_EMULATION). Pure functions over bytes, a register
 * file and memory callbacks, so each instruction is unit-tested.
 *
 * Only 64-bit mode is decoded (the guest is a 64-bit kernel at CPL0). */
#ifndef KVMLITE_X86_EMULATE_H
#define KVMLITE_X86_EMULATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum emu_insn {
	EMU_INT3,
	EMU_CLAC,
	EMU_STAC,
	EMU_POPCNT,
	EMU_FWAIT,
	EMU_CMPXCHG16B,
	EMU_XSAVE,
	EMU_XSAVEOPT,
	EMU_XRSTOR,
	EMU_LDMXCSR,
	EMU_STMXCSR,
	EMU_CMPXCHG8B,
	EMU_XSAVEC,
	EMU_FXSAVE,
	EMU_FXRSTOR,
	EMU_UNKNOWN,
	EMU_INSN_MAX
};

const char *emu_insn_name(enum emu_insn insn);

/* General-purpose registers by their x86 encoding. */
enum {
	EMU_RAX, EMU_RCX, EMU_RDX, EMU_RBX, EMU_RSP, EMU_RBP, EMU_RSI, EMU_RDI,
	EMU_R8, EMU_R9, EMU_R10, EMU_R11, EMU_R12, EMU_R13, EMU_R14, EMU_R15,
};

enum emu_seg { EMU_SEG_NONE, EMU_SEG_ES, EMU_SEG_CS, EMU_SEG_SS, EMU_SEG_DS, EMU_SEG_FS, EMU_SEG_GS };

#define EMU_RFLAGS_CF (1u << 0)
#define EMU_RFLAGS_PF (1u << 2)
#define EMU_RFLAGS_AF (1u << 4)
#define EMU_RFLAGS_ZF (1u << 6)
#define EMU_RFLAGS_SF (1u << 7)
#define EMU_RFLAGS_OF (1u << 11)
#define EMU_RFLAGS_AC (1u << 18)

#define EMU_CR0_EM (1u << 2)
#define EMU_CR0_TS (1u << 3)
#define EMU_CR4_LA57 (1u << 12)
#define EMU_CR4_OSFXSR (1u << 9)
#define EMU_CR4_OSXSAVE (1u << 18)

/* Exception vectors the emulator raises. */
#define EMU_VEC_BP 3
#define EMU_VEC_UD 6
#define EMU_VEC_NM 7
#define EMU_VEC_GP 13
#define EMU_VEC_PF 14

#define EMU_MAX_INSN_LEN 15
#define EMU_XSAVE_AREA_SIZE 4096 /* like struct kvm_xsave.region */
#define EMU_XSAVE_HDR 512        /* XSTATE_BV at 512, XCOMP_BV at 520 */
#define EMU_MXCSR_OFFSET 24
#define EMU_MXCSR_DEFAULT 0x1F80u

struct emu_decoded {
	enum emu_insn insn;
	uint8_t len;        /* total bytes; 0 for EMU_UNKNOWN */
	uint8_t opsize;     /* operand bytes: 2/4/8 (popcnt), 8/16 (cmpxchg8b/16b) */
	uint8_t addr_size;  /* 8, or 4 with the 0x67 prefix */
	uint8_t rex;        /* 0 if none */
	uint8_t rep;        /* last of 0xF2/0xF3, or 0 */
	bool lock;
	bool opsize_prefix; /* 0x66 */
	enum emu_seg seg;

	/* ModRM operands (valid when has_modrm) */
	bool has_modrm;
	uint8_t reg;        /* ModRM.reg with REX.R: register operand or /digit */
	bool is_mem;        /* r/m is memory; else rm_reg is the register */
	uint8_t rm_reg;
	int8_t base;        /* -1: none */
	int8_t index;       /* -1: none */
	uint8_t scale;      /* 1, 2, 4, 8 */
	bool rip_relative;  /* disp is relative to the next instruction */
	int32_t disp;
};

/* The register state an instruction may need. The x87/SSE/AVX state lives
 * only in the XSAVE area (standard format, exactly struct kvm_xsave.region),
 * MXCSR included (offset 24): one copy, nothing to keep in sync. */
struct emu_cpu {
	uint64_t gpr[16];
	uint64_t rip;
	uint64_t rflags;
	uint8_t cpl;                    /* clac/stac are #UD above 0 */
	uint64_t cr0, cr4;
	uint64_t xcr0;
	uint64_t fs_base, gs_base;
	uint32_t mxcsr_mask;            /* MXCSR_MASK; 0 means 0xFFFF */
	uint8_t *xsave;                 /* EMU_XSAVE_AREA_SIZE bytes, or NULL */
	/* CPUID.(EAX=0xD,ECX=i): standard offset (EBX), size (EAX) and
	 * "64-byte aligned when compacted" (ECX bit 1) of component i >= 2. */
	uint32_t xsave_offset[64];
	uint32_t xsave_size[64];
	uint64_t xsave_align64;
};

/* Guest-virtual memory access. Return 0, -EFAULT for a page fault (the
 * instruction then raises #PF, see emu_execute), or another negative
 * errno when the access cannot be done at all (the VMM gives up). */
struct emu_mem {
	int (*read)(void *ctx, uint64_t gva, void *buf, size_t len);
	int (*write)(void *ctx, uint64_t gva, const void *buf, size_t len);
	/* Optional atomic compare-exchange of len (8 or 16) bytes for lock
	 * cmpxchg8b/16b: 1 if memory equalled *expected and now holds
	 * *desired, 0 if not (then *expected is set to the memory value),
	 * or a negative errno as above. NULL: read then write (not atomic). */
	int (*cmpxchg)(void *ctx, uint64_t gva, void *expected, const void *desired, size_t len);
	void *ctx;
};

/* An exception for the caller to inject. cr2 is set with #PF: it is the
 * first byte of the access the emulator made; a caller that knows the
 * exact faulting page (its memory callbacks) may refine it, and the P bit
 * of the error code, which the emulator leaves 0. */
struct emu_fault {
	int vector;
	bool has_error_code;
	uint32_t error_code;
	bool has_cr2;
	uint64_t cr2;
};

/* Decodes one 64-bit-mode instruction. 0 on success (the kind is
 * EMU_UNKNOWN with len 0 for anything not supported); -EINVAL when the
 * bytes end before the instruction does or it would exceed 15 bytes. */
int emu_decode(const uint8_t *bytes, size_t len, struct emu_decoded *out);

/* Executes a decoded instruction on cpu:
 *   0  done: state updated, RIP advanced past the instruction;
 *   1  *fault must be injected; state unchanged, RIP at the instruction
 *      (a fault), except int3 whose #BP is a trap: RIP already advanced;
 *   <0 cannot be emulated (e.g. -ENOTSUP, or a memory callback's error).
 * EMU_UNKNOWN raises #UD. */
int emu_execute(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		struct emu_fault *fault);

/* Guest linear address of the memory operand (FS/GS base included). */
uint64_t emu_effective_address(const struct emu_decoded *d, const struct emu_cpu *cpu);

/* Does the instruction touch the x87/SSE/XSAVE state (cpu->xsave)? */
bool emu_needs_fpu(enum emu_insn insn);

struct vcpu;
struct guest_memory;
struct bus;
/* KVM glue: handles a KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION
 * exit by emulating the instruction or injecting the exception it raises.
 * 0 to re-enter the guest, negative errno if the VM must stop. */
int x86_fallback_handle(struct vcpu *vcpu);

/* The fallback's access to guest-physical [gpa, gpa + len), len at most a
 * page: guest RAM if all of it is RAM, else pieces of at most 8 bytes
 * split at 8-byte boundaries, each RAM or dispatched on the mmio bus (a
 * piece no device claims whole goes byte by byte; an unclaimed byte reads
 * 0xFF, a write to it is dropped). Never touches host memory outside guest
 * RAM. 0, or -EINVAL for a length over a page or a wrapping range. */
int x86_fallback_gpa_access(const struct guest_memory *mem, const struct bus *mmio, uint64_t gpa,
			    void *buf, size_t len, bool write);

#endif
