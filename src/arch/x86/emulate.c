/* Decoder and interpreter for the instructions the host KVM may give up on.
 * Semantics follow the Intel SDM (vol. 2 instruction pages, vol. 1 ch. 13
 * for XSAVE). Everything here is pure: the caller supplies the registers,
 * the XSAVE area and the guest memory accessors. */
#include <errno.h>
#include <string.h>

#include "emulate.h"
#include "util.h"

static const char *const emu_names[EMU_INSN_MAX] = {
	[EMU_INT3] = "int3",
	[EMU_CLAC] = "clac",
	[EMU_STAC] = "stac",
	[EMU_POPCNT] = "popcnt",
	[EMU_FWAIT] = "fwait",
	[EMU_CMPXCHG16B] = "lock cmpxchg16b",
	[EMU_XSAVE] = "xsave",
	[EMU_XSAVEOPT] = "xsaveopt",
	[EMU_XRSTOR] = "xrstor",
	[EMU_LDMXCSR] = "ldmxcsr",
	[EMU_STMXCSR] = "stmxcsr",
	[EMU_CMPXCHG8B] = "cmpxchg8b",
	[EMU_XSAVEC] = "xsavec",
	[EMU_FXSAVE] = "fxsave",
	[EMU_FXRSTOR] = "fxrstor",
	[EMU_UNKNOWN] = "unknown",
};

const char *emu_insn_name(enum emu_insn insn)
{
	if ((unsigned)insn >= EMU_INSN_MAX || !emu_names[insn])
		return "unknown";
	return emu_names[insn];
}

bool emu_needs_fpu(enum emu_insn insn)
{
	switch (insn) {
	case EMU_XSAVE: case EMU_XSAVEOPT: case EMU_XSAVEC: case EMU_XRSTOR:
	case EMU_LDMXCSR: case EMU_STMXCSR: case EMU_FXSAVE: case EMU_FXRSTOR:
		return true;
	default:
		return false;
	}
}

/* ---- decoder ---------------------------------------------------------- */

struct emu_cursor {
	const uint8_t *bytes;
	size_t len; /* at most 15: reading past it is "truncated or too long" */
	size_t pos;
};

static int emu_next(struct emu_cursor *c, uint8_t *b)
{
	if (c->pos >= c->len)
		return -EINVAL;
	*b = c->bytes[c->pos++];
	return 0;
}

static int emu_next_disp(struct emu_cursor *c, int size, int32_t *disp)
{
	uint32_t v = 0;
	uint8_t b;

	for (int i = 0; i < size; i++) {
		if (emu_next(c, &b) < 0)
			return -EINVAL;
		v |= (uint32_t)b << (8 * i);
	}
	*disp = size == 1 ? (int8_t)v : (int32_t)v;
	return 0;
}

/* ModRM, SIB and displacement (64-bit and 32-bit addressing share them). */
static int emu_decode_modrm(struct emu_cursor *c, struct emu_decoded *d)
{
	uint8_t modrm, sib, mod, rm;
	int r;

	if ((r = emu_next(c, &modrm)) < 0)
		return r;
	mod = modrm >> 6;
	rm = modrm & 7;
	d->has_modrm = true;
	d->reg = ((modrm >> 3) & 7) | ((d->rex & 4) << 1);
	d->base = -1;
	d->index = -1;
	d->scale = 1;
	if (mod == 3) {
		d->rm_reg = rm | ((d->rex & 1) << 3);
		return 0;
	}
	d->is_mem = true;
	if (rm == 4) {
		if ((r = emu_next(c, &sib)) < 0)
			return r;
		uint8_t idx = ((sib >> 3) & 7) | ((d->rex & 2) << 2);
		d->scale = 1 << (sib >> 6);
		if (idx != 4) /* 100b without REX.X means no index */
			d->index = idx;
		if ((sib & 7) == 5 && mod == 0)
			return emu_next_disp(c, 4, &d->disp); /* no base */
		d->base = (sib & 7) | ((d->rex & 1) << 3);
	} else if (rm == 5 && mod == 0) {
		d->rip_relative = true;
		return emu_next_disp(c, 4, &d->disp);
	} else {
		d->base = rm | ((d->rex & 1) << 3);
	}
	if (mod == 1)
		return emu_next_disp(c, 1, &d->disp);
	if (mod == 2)
		return emu_next_disp(c, 4, &d->disp);
	return 0;
}

static int emu_unknown(struct emu_decoded *d)
{
	d->insn = EMU_UNKNOWN;
	d->len = 0;
	return 0;
}

static int emu_done(struct emu_cursor *c, struct emu_decoded *d, enum emu_insn insn)
{
	d->insn = insn;
	d->len = (uint8_t)c->pos;
	return 0;
}

/* 0F AE /digit, memory forms: FXSAVE ... XSAVEOPT. */
static const enum emu_insn emu_grp15[8] = {
	EMU_FXSAVE, EMU_FXRSTOR, EMU_LDMXCSR, EMU_STMXCSR,
	EMU_XSAVE, EMU_XRSTOR, EMU_XSAVEOPT, EMU_UNKNOWN /* clflush */,
};

int emu_decode(const uint8_t *bytes, size_t len, struct emu_decoded *d)
{
	struct emu_cursor c = { bytes, MIN(len, (size_t)EMU_MAX_INSN_LEN), 0 };
	uint8_t b;
	int r;

	memset(d, 0, sizeof(*d));
	d->insn = EMU_UNKNOWN;
	d->addr_size = 8;
	if (!bytes)
		return -EINVAL;

	for (;;) {
		if ((r = emu_next(&c, &b)) < 0)
			return r;
		if (b >= 0x40 && b <= 0x4F) {
			d->rex = b; /* only counts if the opcode follows */
			continue;
		}
		switch (b) {
		case 0x66: d->opsize_prefix = true; break;
		case 0x67: d->addr_size = 4; break;
		case 0xF0: d->lock = true; break;
		case 0xF2: case 0xF3: d->rep = b; break;
		case 0x26: d->seg = EMU_SEG_ES; break;
		case 0x2E: d->seg = EMU_SEG_CS; break;
		case 0x36: d->seg = EMU_SEG_SS; break;
		case 0x3E: d->seg = EMU_SEG_DS; break;
		case 0x64: d->seg = EMU_SEG_FS; break;
		case 0x65: d->seg = EMU_SEG_GS; break;
		default:
			goto opcode;
		}
		d->rex = 0; /* a REX followed by a legacy prefix is ignored */
	}

opcode:
	/* Lock is only valid on cmpxchg8b/16b with a memory operand; anything
	 * else with it is #UD, which is what EMU_UNKNOWN gets. */
	if (b == 0xCC)
		return d->lock ? emu_unknown(d) : emu_done(&c, d, EMU_INT3);
	if (b == 0x9B)
		return d->lock ? emu_unknown(d) : emu_done(&c, d, EMU_FWAIT);
	if (b != 0x0F)
		return emu_unknown(d);

	if ((r = emu_next(&c, &b)) < 0)
		return r;
	switch (b) {
	case 0x01:
		if ((r = emu_next(&c, &b)) < 0)
			return r;
		if (d->lock || d->rep || d->opsize_prefix || (b != 0xCA && b != 0xCB))
			return emu_unknown(d);
		return emu_done(&c, d, b == 0xCA ? EMU_CLAC : EMU_STAC);

	case 0xB8: /* F3 0F B8 /r: popcnt; without F3 it is not ours (JMPE) */
		if (d->rep != 0xF3 || d->lock)
			return emu_unknown(d);
		if ((r = emu_decode_modrm(&c, d)) < 0)
			return r;
		d->opsize = (d->rex & 8) ? 8 : d->opsize_prefix ? 2 : 4;
		return emu_done(&c, d, EMU_POPCNT);

	case 0xC7:
		if ((r = emu_decode_modrm(&c, d)) < 0)
			return r;
		if (!d->is_mem || d->rep)
			return emu_unknown(d);
		if ((d->reg & 7) == 1) {
			d->opsize = (d->rex & 8) ? 16 : 8;
			return emu_done(&c, d, d->opsize == 16 ? EMU_CMPXCHG16B : EMU_CMPXCHG8B);
		}
		if ((d->reg & 7) == 4 && !d->lock && !d->opsize_prefix)
			return emu_done(&c, d, EMU_XSAVEC);
		return emu_unknown(d);

	case 0xAE:
		if ((r = emu_decode_modrm(&c, d)) < 0)
			return r;
		/* register forms are fences/rdfsbase...; 66/F2/F3 select
		 * clwb, ptwrite and friends */
		if (!d->is_mem || d->rep || d->opsize_prefix || d->lock)
			return emu_unknown(d);
		if (emu_grp15[d->reg & 7] == EMU_UNKNOWN)
			return emu_unknown(d);
		return emu_done(&c, d, emu_grp15[d->reg & 7]);

	default:
		return emu_unknown(d);
	}
}

/* ---- execution helpers ------------------------------------------------ */

uint64_t emu_effective_address(const struct emu_decoded *d, const struct emu_cpu *cpu)
{
	uint64_t ea = (uint64_t)(int64_t)d->disp;

	if (d->rip_relative)
		ea += cpu->rip + d->len;
	if (d->base >= 0)
		ea += cpu->gpr[d->base];
	if (d->index >= 0)
		ea += cpu->gpr[d->index] * d->scale;
	if (d->addr_size == 4)
		ea = (uint32_t)ea;
	/* In 64-bit mode only FS and GS have a base. */
	if (d->seg == EMU_SEG_FS)
		ea += cpu->fs_base;
	else if (d->seg == EMU_SEG_GS)
		ea += cpu->gs_base;
	return ea;
}

static int emu_raise(struct emu_fault *f, int vector, bool has_ec, uint32_t ec)
{
	memset(f, 0, sizeof(*f));
	f->vector = vector;
	f->has_error_code = has_ec;
	f->error_code = ec;
	return 1;
}

static int emu_gp0(struct emu_fault *f)
{
	return emu_raise(f, EMU_VEC_GP, true, 0);
}

static bool emu_canonical(const struct emu_cpu *cpu, uint64_t va)
{
	int bits = (cpu->cr4 & EMU_CR4_LA57) ? 57 : 48;
	int64_t s = (int64_t)(va << (64 - bits)) >> (64 - bits);

	return (uint64_t)s == va;
}

/* A memory callback's error becomes #PF (-EFAULT) or stays an error. */
static int emu_mem_error(int err, uint64_t gva, bool write, struct emu_fault *f)
{
	if (err != -EFAULT)
		return err < 0 ? err : -EIO;
	emu_raise(f, EMU_VEC_PF, true, write ? 2 : 0); /* W bit; CPL0: U=0 */
	f->has_cr2 = true;
	f->cr2 = gva;
	return 1;
}

static int emu_read(const struct emu_mem *m, uint64_t gva, void *buf, size_t len,
		    struct emu_fault *f)
{
	int r = m->read(m->ctx, gva, buf, len);

	return r ? emu_mem_error(r, gva, false, f) : 0;
}

static int emu_write(const struct emu_mem *m, uint64_t gva, const void *buf, size_t len,
		     struct emu_fault *f)
{
	int r = m->write(m->ctx, gva, buf, len);

	return r ? emu_mem_error(r, gva, true, f) : 0;
}

/* Operand address checks common to every memory instruction: canonical
 * (else #GP(0); #SS for stack-based addresses is not modelled) and
 * alignment (else #GP(0)). *ea receives the address. */
static int emu_mem_operand(const struct emu_decoded *d, const struct emu_cpu *cpu, size_t size,
			   uint64_t align, uint64_t *ea, struct emu_fault *f)
{
	*ea = emu_effective_address(d, cpu);
	if (!emu_canonical(cpu, *ea) || !emu_canonical(cpu, *ea + size - 1))
		return emu_gp0(f);
	if (align > 1 && (*ea & (align - 1)))
		return emu_gp0(f);
	return 0;
}

static uint64_t emu_load_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void emu_store_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes a register as an instruction of that operand size does: 32-bit
 * results zero-extend, 16-bit ones keep the upper bits. */
static void emu_set_reg(struct emu_cpu *cpu, int reg, uint64_t v, int size)
{
	if (size == 8)
		cpu->gpr[reg] = v;
	else if (size == 4)
		cpu->gpr[reg] = (uint32_t)v;
	else
		cpu->gpr[reg] = (cpu->gpr[reg] & ~0xFFFFull) | (v & 0xFFFF);
}

/* ---- simple instructions --------------------------------------------- */

static int emu_popcnt(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		      struct emu_fault *f)
{
	uint64_t src, mask = d->opsize == 8 ? ~0ull : (1ull << (8 * d->opsize)) - 1;
	int r;

	if (d->is_mem) {
		uint8_t buf[8];
		uint64_t ea;

		if ((r = emu_mem_operand(d, cpu, d->opsize, 1, &ea, f)) ||
		    (r = emu_read(mem, ea, buf, d->opsize, f)))
			return r;
		src = emu_load_le(buf, d->opsize);
	} else {
		src = cpu->gpr[d->rm_reg] & mask;
	}
	emu_set_reg(cpu, d->reg, (uint64_t)__builtin_popcountll(src), d->opsize);
	cpu->rflags &= ~(uint64_t)(EMU_RFLAGS_OF | EMU_RFLAGS_SF | EMU_RFLAGS_ZF | EMU_RFLAGS_AF |
				   EMU_RFLAGS_CF | EMU_RFLAGS_PF);
	if (src == 0)
		cpu->rflags |= EMU_RFLAGS_ZF;
	return 0;
}

/* cmpxchg8b m64 / cmpxchg16b m128: compare rDX:rAX with memory; equal:
 * store rCX:rBX, ZF=1; else load memory into rDX:rAX, ZF=0. */
static int emu_cmpxchg(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		       struct emu_fault *f)
{
	size_t half = d->opsize / 2;
	uint8_t expected[16], desired[16], cur[16];
	uint64_t ea;
	int r, equal;

	/* Only cmpxchg16b demands alignment; both must be writable. */
	if ((r = emu_mem_operand(d, cpu, d->opsize, d->opsize == 16 ? 16 : 1, &ea, f)))
		return r;
	emu_store_le(expected, cpu->gpr[EMU_RAX], half);
	emu_store_le(expected + half, cpu->gpr[EMU_RDX], half);
	emu_store_le(desired, cpu->gpr[EMU_RBX], half);
	emu_store_le(desired + half, cpu->gpr[EMU_RCX], half);

	if (mem->cmpxchg) {
		memcpy(cur, expected, d->opsize);
		equal = mem->cmpxchg(mem->ctx, ea, cur, desired, d->opsize);
		if (equal < 0)
			return emu_mem_error(equal, ea, true, f);
	} else {
		if ((r = emu_read(mem, ea, cur, d->opsize, f)))
			return r;
		equal = memcmp(cur, expected, d->opsize) == 0;
		if (equal && (r = emu_write(mem, ea, desired, d->opsize, f)))
			return r;
	}
	if (equal) {
		cpu->rflags |= EMU_RFLAGS_ZF;
	} else {
		/* 32-bit halves zero-extend into RAX/RDX like any 32-bit write */
		cpu->gpr[EMU_RAX] = emu_load_le(cur, half);
		cpu->gpr[EMU_RDX] = emu_load_le(cur + half, half);
		cpu->rflags &= ~(uint64_t)EMU_RFLAGS_ZF;
	}
	return 0;
}

/* ---- x87/SSE/XSAVE state ---------------------------------------------
 * The "processor state" is cpu->xsave in standard format. A component
 * whose XSTATE_BV bit is clear there is in its initial configuration
 * whatever the bytes say; MXCSR (offset 24) is always valid. */

#define EMU_X87 0
#define EMU_SSE 1
#define EMU_AVX 2
#define EMU_FCW_INIT 0x037F

static uint64_t emu_bv(const struct emu_cpu *cpu)
{
	return emu_load_le(cpu->xsave + EMU_XSAVE_HDR, 8);
}

static void emu_set_bv(struct emu_cpu *cpu, uint64_t bv)
{
	emu_store_le(cpu->xsave + EMU_XSAVE_HDR, bv, 8);
}

static uint32_t emu_mxcsr(const struct emu_cpu *cpu)
{
	return (uint32_t)emu_load_le(cpu->xsave + EMU_MXCSR_OFFSET, 4);
}

static uint32_t emu_mxcsr_mask(const struct emu_cpu *cpu)
{
	return cpu->mxcsr_mask ? cpu->mxcsr_mask : 0xFFFF;
}

/* Byte ranges of a component in the standard layout; x87 has two (the
 * legacy area around MXCSR), the others one. Returns the count. */
static int emu_ranges(const struct emu_cpu *cpu, int i, uint32_t off[2], uint32_t size[2])
{
	if (i == EMU_X87) {
		off[0] = 0, size[0] = 24;   /* fcw .. fdp */
		off[1] = 32, size[1] = 128; /* st0-st7 */
		return 2;
	}
	if (i == EMU_SSE) {
		off[0] = 160, size[0] = 256; /* xmm0-15 */
		return 1;
	}
	off[0] = cpu->xsave_offset[i];
	size[0] = cpu->xsave_size[i];
	return 1;
}

/* The components RFBM names must all be known and fit in the area. */
static int emu_check_components(const struct emu_cpu *cpu, uint64_t rfbm)
{
	for (int i = 2; i < 63; i++) {
		if (!(rfbm >> i & 1))
			continue;
		uint64_t end = (uint64_t)cpu->xsave_offset[i] + cpu->xsave_size[i];
		if (!cpu->xsave_size[i] || cpu->xsave_offset[i] < EMU_XSAVE_HDR + 64 ||
		    end > EMU_XSAVE_AREA_SIZE)
			return -ENOTSUP;
	}
	return 0;
}

/* Component i in its initial configuration: all zero except FCW. */
static void emu_init_component(struct emu_cpu *cpu, int i)
{
	uint32_t off[2], size[2];
	int n = emu_ranges(cpu, i, off, size);

	for (int k = 0; k < n; k++)
		memset(cpu->xsave + off[k], 0, size[k]);
	if (i == EMU_X87)
		emu_store_le(cpu->xsave, EMU_FCW_INIT, 2);
	emu_set_bv(cpu, emu_bv(cpu) & ~(1ull << i));
}

/* Component i as the processor holds it, packed: x87 as the 160 legacy
 * bytes (MXCSR bytes zero), others as stored. */
static void emu_get_component(const struct emu_cpu *cpu, int i, uint8_t *out)
{
	uint32_t off[2], size[2];
	bool inuse = emu_bv(cpu) >> i & 1;

	emu_ranges(cpu, i, off, size);

	if (i == EMU_X87) {
		memset(out, 0, 160);
		if (inuse) {
			memcpy(out, cpu->xsave, 24);
			memcpy(out + 32, cpu->xsave + 32, 128);
		} else {
			emu_store_le(out, EMU_FCW_INIT, 2);
		}
		return;
	}
	if (inuse)
		memcpy(out, cpu->xsave + off[0], size[0]);
	else
		memset(out, 0, size[0]);
}

static void emu_put_component(struct emu_cpu *cpu, int i, const uint8_t *in)
{
	if (i == EMU_X87) {
		memcpy(cpu->xsave, in, 24);
		memcpy(cpu->xsave + 32, in + 32, 128);
	} else {
		uint32_t off[2], size[2];
		emu_ranges(cpu, i, off, size);
		memcpy(cpu->xsave + off[0], in, size[0]);
	}
	emu_set_bv(cpu, emu_bv(cpu) | (1ull << i));
}

/* Loading MXCSR: make SSE state "in use" so whoever consumes the area
 * (KVM_SET_XSAVE) takes MXCSR from it; stale XMM bytes under a clear bit
 * are zeroed first so the registers keep their (initial) value. */
static void emu_put_mxcsr(struct emu_cpu *cpu, uint32_t v)
{
	if (!(emu_bv(cpu) >> EMU_SSE & 1)) {
		memset(cpu->xsave + 160, 0, 256);
		emu_set_bv(cpu, emu_bv(cpu) | (1ull << EMU_SSE));
	}
	emu_store_le(cpu->xsave + EMU_MXCSR_OFFSET, v, 4);
}

/* XINUSE as the processor reports it (SSE counts MXCSR != default). */
static uint64_t emu_xinuse(const struct emu_cpu *cpu)
{
	uint64_t in = emu_bv(cpu);

	if (emu_mxcsr(cpu) != EMU_MXCSR_DEFAULT)
		in |= 1ull << EMU_SSE;
	return in;
}

/* Offsets of the compacted format for the components in xcomp_bv. */
static int emu_compacted_offsets(const struct emu_cpu *cpu, uint64_t xcomp_bv, uint32_t off[64])
{
	uint64_t o = EMU_XSAVE_HDR + 64;

	off[EMU_X87] = 0;
	off[EMU_SSE] = 160;
	for (int i = 2; i < 63; i++) {
		if (!(xcomp_bv >> i & 1))
			continue;
		if (cpu->xsave_align64 >> i & 1)
			o = ALIGN_UP(o, 64);
		off[i] = (uint32_t)o;
		o += cpu->xsave_size[i];
		if (o > 0x100000) /* sizes come from CPUID; keep it sane */
			return -ENOTSUP;
	}
	return 0;
}

/* #UD/#NM checks shared by the x87/SSE state instructions. */
static int emu_fpu_usable(const struct emu_decoded *d, const struct emu_cpu *cpu,
			  struct emu_fault *f)
{
	bool xs = d->insn == EMU_XSAVE || d->insn == EMU_XSAVEOPT || d->insn == EMU_XSAVEC ||
		  d->insn == EMU_XRSTOR;

	if (xs && !(cpu->cr4 & EMU_CR4_OSXSAVE))
		return emu_raise(f, EMU_VEC_UD, false, 0);
	if ((d->insn == EMU_LDMXCSR || d->insn == EMU_STMXCSR) &&
	    ((cpu->cr0 & EMU_CR0_EM) || !(cpu->cr4 & EMU_CR4_OSFXSR)))
		return emu_raise(f, EMU_VEC_UD, false, 0);
	if (cpu->cr0 & EMU_CR0_TS)
		return emu_raise(f, EMU_VEC_NM, false, 0);
	return 0;
}

static int emu_ldmxcsr(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		       struct emu_fault *f)
{
	uint8_t buf[4];
	uint64_t ea;
	uint32_t v;
	int r;

	if ((r = emu_mem_operand(d, cpu, 4, 1, &ea, f)) || (r = emu_read(mem, ea, buf, 4, f)))
		return r;
	v = (uint32_t)emu_load_le(buf, 4);
	if (v & ~emu_mxcsr_mask(cpu))
		return emu_gp0(f);
	emu_put_mxcsr(cpu, v);
	return 0;
}

static int emu_stmxcsr(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		       struct emu_fault *f)
{
	uint64_t ea;
	int r;

	if ((r = emu_mem_operand(d, cpu, 4, 1, &ea, f)))
		return r;
	return emu_write(mem, ea, cpu->xsave + EMU_MXCSR_OFFSET, 4, f);
}

/* fxsave m512: x87, MXCSR, MXCSR_MASK, XMM0-15 (bytes 0..415; the rest
 * is reserved or software's, not written). The x87 pointers are stored in
 * the 64-bit (REX.W) format whatever the prefix. */
static int emu_fxsave(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		      struct emu_fault *f)
{
	uint8_t buf[416];
	uint64_t ea;
	int r;

	if ((r = emu_mem_operand(d, cpu, 512, 16, &ea, f)))
		return r;
	emu_get_component(cpu, EMU_X87, buf);
	emu_store_le(buf + 24, emu_mxcsr(cpu), 4);
	emu_store_le(buf + 28, emu_mxcsr_mask(cpu), 4);
	emu_get_component(cpu, EMU_SSE, buf + 160);
	return emu_write(mem, ea, buf, sizeof(buf), f);
}

static int emu_fxrstor(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		       struct emu_fault *f)
{
	uint8_t buf[416];
	uint64_t ea;
	uint32_t mxcsr;
	int r;

	if ((r = emu_mem_operand(d, cpu, 512, 16, &ea, f)) ||
	    (r = emu_read(mem, ea, buf, sizeof(buf), f)))
		return r;
	mxcsr = (uint32_t)emu_load_le(buf + 24, 4);
	if (mxcsr & ~emu_mxcsr_mask(cpu))
		return emu_gp0(f);
	emu_put_component(cpu, EMU_X87, buf);
	emu_put_component(cpu, EMU_SSE, buf + 160);
	emu_put_mxcsr(cpu, mxcsr);
	return 0;
}

/* xsave / xsaveopt / xsavec m: RFBM = XCR0 & EDX:EAX. */
static int emu_xsave(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		     struct emu_fault *f)
{
	uint64_t rfbm = cpu->xcr0 & ((cpu->gpr[EMU_RDX] << 32) | (uint32_t)cpu->gpr[EMU_RAX]);
	uint64_t xinuse = emu_xinuse(cpu), ea, bv;
	bool compacted = d->insn == EMU_XSAVEC;
	uint32_t coff[64];
	uint8_t hdr[16], buf[EMU_XSAVE_AREA_SIZE];
	int r;

	rfbm &= ~(1ull << 63);
	if ((r = emu_check_components(cpu, rfbm)))
		return r;
	if (compacted && (r = emu_compacted_offsets(cpu, rfbm, coff)))
		return r;
	if ((r = emu_mem_operand(d, cpu, EMU_XSAVE_HDR + 64, 64, &ea, f)))
		return r;

	if (compacted) {
		bv = rfbm & xinuse;
		emu_store_le(hdr + 8, rfbm | (1ull << 63), 8);
	} else {
		/* XSAVE rewrites only the XSTATE_BV bits RFBM names */
		if ((r = emu_read(mem, ea + EMU_XSAVE_HDR, hdr, 8, f)))
			return r;
		bv = (emu_load_le(hdr, 8) & ~rfbm) | (rfbm & xinuse);
	}
	emu_store_le(hdr, bv, 8);

	for (int i = 0; i < 63; i++) {
		uint32_t off[2], size[2];

		if (!(rfbm >> i & 1))
			continue;
		/* init optimization: a component in its initial state need
		 * not be written, XSTATE_BV says so (XSAVE writes anyway) */
		if (d->insn != EMU_XSAVE && !(xinuse >> i & 1))
			continue;
		emu_get_component(cpu, i, buf);
		emu_ranges(cpu, i, off, size);
		if (compacted && i >= 2)
			off[0] = coff[i];
		if (i == EMU_X87) {
			if ((r = emu_write(mem, ea, buf, 24, f)) ||
			    (r = emu_write(mem, ea + 32, buf + 32, 128, f)))
				return r;
			continue;
		}
		if ((r = emu_write(mem, ea + off[0], buf, size[0], f)))
			return r;
	}
	if (rfbm & ((1ull << EMU_SSE) | (1ull << EMU_AVX))) {
		uint8_t mx[8];
		emu_store_le(mx, emu_mxcsr(cpu), 4);
		emu_store_le(mx + 4, emu_mxcsr_mask(cpu), 4);
		if ((r = emu_write(mem, ea + EMU_MXCSR_OFFSET, mx, 8, f)))
			return r;
	}
	return emu_write(mem, ea + EMU_XSAVE_HDR, hdr, compacted ? 16 : 8, f);
}

/* xrstor m, standard or compacted (XCOMP_BV bit 63). Everything is read
 * and checked before any state changes, so a fault leaves it intact. */
static int emu_xrstor(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		      struct emu_fault *f)
{
	uint64_t rfbm = cpu->xcr0 & ((cpu->gpr[EMU_RDX] << 32) | (uint32_t)cpu->gpr[EMU_RAX]);
	uint8_t hdr[64], legacy[512];
	static const uint8_t zero[48];
	uint64_t ea, xstate_bv, xcomp_bv;
	uint32_t off[64], mxcsr = 0;
	bool compacted, load_mxcsr;
	int r;

	rfbm &= ~(1ull << 63);
	if ((r = emu_check_components(cpu, rfbm)))
		return r;
	if ((r = emu_mem_operand(d, cpu, EMU_XSAVE_HDR + 64, 64, &ea, f)) ||
	    (r = emu_read(mem, ea + EMU_XSAVE_HDR, hdr, sizeof(hdr), f)))
		return r;
	xstate_bv = emu_load_le(hdr, 8);
	xcomp_bv = emu_load_le(hdr + 8, 8);
	compacted = xcomp_bv >> 63;
	if (compacted) {
		uint64_t comp = xcomp_bv & ~(1ull << 63);
		if ((comp & ~cpu->xcr0) || (xstate_bv & ~comp) || memcmp(hdr + 16, zero, 48))
			return emu_gp0(f);
		if ((r = emu_compacted_offsets(cpu, comp, off)))
			return r;
	} else {
		if ((xstate_bv & ~cpu->xcr0) || memcmp(hdr + 8, zero, 16))
			return emu_gp0(f);
		for (int i = 2; i < 64; i++)
			off[i] = cpu->xsave_offset[i];
	}

	/* MXCSR: from memory when RFBM names SSE or AVX; the compacted form
	 * initializes it when neither is in XSTATE_BV. */
	load_mxcsr = rfbm & 6;
	if ((rfbm & 7) && (r = emu_read(mem, ea, legacy, sizeof(legacy), f)))
		return r;
	if (load_mxcsr) {
		if (compacted && !(xstate_bv & 6))
			mxcsr = EMU_MXCSR_DEFAULT;
		else
			mxcsr = (uint32_t)emu_load_le(legacy + EMU_MXCSR_OFFSET, 4);
		if (mxcsr & ~emu_mxcsr_mask(cpu))
			return emu_gp0(f);
	}

	/* Read the extended components into a scratch copy of the area, so
	 * nothing changes if a later read faults. */
	uint8_t comp[EMU_XSAVE_AREA_SIZE];
	for (int i = 2; i < 63; i++) {
		if (!((rfbm & xstate_bv) >> i & 1))
			continue;
		if ((r = emu_read(mem, ea + off[i], comp + cpu->xsave_offset[i],
				  cpu->xsave_size[i], f)))
			return r;
	}

	for (int i = 0; i < 63; i++) {
		if (!(rfbm >> i & 1))
			continue;
		if (!(xstate_bv >> i & 1))
			emu_init_component(cpu, i);
		else if (i == EMU_X87)
			emu_put_component(cpu, i, legacy);
		else if (i == EMU_SSE)
			emu_put_component(cpu, i, legacy + 160);
		else
			emu_put_component(cpu, i, comp + cpu->xsave_offset[i]);
	}
	if (load_mxcsr) {
		if (mxcsr == EMU_MXCSR_DEFAULT || (emu_bv(cpu) >> EMU_SSE & 1))
			emu_store_le(cpu->xsave + EMU_MXCSR_OFFSET, mxcsr, 4);
		else
			emu_put_mxcsr(cpu, mxcsr);
	}
	return 0;
}

/* ---- dispatcher ------------------------------------------------------- */

int emu_execute(const struct emu_decoded *d, struct emu_cpu *cpu, const struct emu_mem *mem,
		struct emu_fault *f)
{
	int r;

	memset(f, 0, sizeof(*f));
	if (d->insn == EMU_UNKNOWN || (unsigned)d->insn >= EMU_INSN_MAX || !d->len)
		return emu_raise(f, EMU_VEC_UD, false, 0);
	if (d->len > EMU_MAX_INSN_LEN)
		return -EINVAL;
	if (d->has_modrm && (d->reg > 15 || d->rm_reg > 15 || d->base > 15 || d->index > 15))
		return -EINVAL; /* not from emu_decode */
	if (emu_needs_fpu(d->insn)) {
		if (!cpu->xsave)
			return -EINVAL;
		if ((r = emu_fpu_usable(d, cpu, f)))
			return r;
	}
	if ((d->has_modrm && d->is_mem) && (!mem || !mem->read || !mem->write))
		return -EINVAL;

	switch (d->insn) {
	case EMU_INT3:
		/* a trap: the exception frame points after the instruction */
		cpu->rip += d->len;
		return emu_raise(f, EMU_VEC_BP, false, 0);
	case EMU_CLAC:
		if (cpu->cpl)
			return emu_raise(f, EMU_VEC_UD, false, 0);
		cpu->rflags &= ~(uint64_t)EMU_RFLAGS_AC;
		r = 0;
		break;
	case EMU_STAC:
		if (cpu->cpl)
			return emu_raise(f, EMU_VEC_UD, false, 0);
		cpu->rflags |= EMU_RFLAGS_AC;
		r = 0;
		break;
	case EMU_FWAIT:
		/* pending unmasked x87 exceptions (#MF) are not modelled */
		r = 0;
		break;
	case EMU_POPCNT:    r = emu_popcnt(d, cpu, mem, f); break;
	case EMU_CMPXCHG8B:
	case EMU_CMPXCHG16B: r = emu_cmpxchg(d, cpu, mem, f); break;
	case EMU_LDMXCSR:   r = emu_ldmxcsr(d, cpu, mem, f); break;
	case EMU_STMXCSR:   r = emu_stmxcsr(d, cpu, mem, f); break;
	case EMU_FXSAVE:    r = emu_fxsave(d, cpu, mem, f); break;
	case EMU_FXRSTOR:   r = emu_fxrstor(d, cpu, mem, f); break;
	case EMU_XSAVE:
	case EMU_XSAVEOPT:
	case EMU_XSAVEC:    r = emu_xsave(d, cpu, mem, f); break;
	case EMU_XRSTOR:    r = emu_xrstor(d, cpu, mem, f); break;
	default:
		return emu_raise(f, EMU_VEC_UD, false, 0);
	}
	if (r == 0)
		cpu->rip += d->len;
	return r;
}
