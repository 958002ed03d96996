/* Instruction fallback: decoder and interpreter. Encodings come from GNU as
 * (assembled, then objdump -d); expected results from the Intel SDM,
 * derived by hand in the comments, or computed with compiler builtins. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "emulate.h"

/* ---- fake guest memory: [FAKE_BASE, FAKE_BASE + FAKE_SIZE) ---------- */

#define FAKE_BASE 0x100000ull
#define FAKE_SIZE 16384

struct fake_mem {
	uint8_t bytes[FAKE_SIZE] __attribute__((aligned(64)));
	uint64_t ro_start, ro_end; /* writes here fail like a read-only page */
	int reads, writes, cmpxchgs;
};

static bool fake_range(uint64_t gva, size_t len)
{
	return gva >= FAKE_BASE && len <= FAKE_SIZE && gva - FAKE_BASE <= FAKE_SIZE - len;
}

static int fake_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
	struct fake_mem *m = ctx;
	if (!fake_range(gva, len))
		return -EFAULT;
	memcpy(buf, m->bytes + (gva - FAKE_BASE), len);
	m->reads++;
	return 0;
}

static int fake_write(void *ctx, uint64_t gva, const void *buf, size_t len)
{
	struct fake_mem *m = ctx;
	if (!fake_range(gva, len) || (gva < m->ro_end && gva + len > m->ro_start))
		return -EFAULT;
	memcpy(m->bytes + (gva - FAKE_BASE), buf, len);
	m->writes++;
	return 0;
}

static int fake_cmpxchg(void *ctx, uint64_t gva, void *expected, const void *desired, size_t len)
{
	struct fake_mem *m = ctx;
	if (!fake_range(gva, len))
		return -EFAULT;
	m->cmpxchgs++;
	uint8_t *p = m->bytes + (gva - FAKE_BASE);
	if (memcmp(p, expected, len)) {
		memcpy(expected, p, len);
		return 0;
	}
	memcpy(p, desired, len);
	return 1;
}

static struct fake_mem fm;
static struct emu_mem mem_rw = { fake_read, fake_write, NULL, &fm };
static uint8_t xarea[EMU_XSAVE_AREA_SIZE] __attribute__((aligned(64)));

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static uint8_t *gmem(uint64_t gva) { return fm.bytes + (gva - FAKE_BASE); }

/* Standard-format offsets (CPUID.0xD) of an AVX-512 Intel CPU (SDM vol. 1
 * 13.4 and any such host's cpuid -l 0xd): AVX 576/256, opmask 1088/64,
 * ZMM_Hi256 1152/512, Hi16_ZMM 1664/1024. */
static void cpu_init(struct emu_cpu *cpu)
{
	memset(cpu, 0, sizeof(*cpu));
	memset(&fm, 0, sizeof(fm));
	memset(xarea, 0, sizeof(xarea));
	cpu->rip = 0xffffffff81000000ull;
	cpu->rflags = 0x2;
	cpu->cr0 = 0x80050033; /* PG WP NE ET MP PE: TS and EM clear */
	cpu->cr4 = EMU_CR4_OSFXSR | EMU_CR4_OSXSAVE | (1u << 5);
	cpu->xcr0 = 0x7; /* x87 SSE AVX */
	cpu->mxcsr_mask = 0xFFFF;
	cpu->xsave = xarea;
	cpu->xsave_offset[2] = 576, cpu->xsave_size[2] = 256;
	cpu->xsave_offset[5] = 1088, cpu->xsave_size[5] = 64;
	cpu->xsave_offset[6] = 1152, cpu->xsave_size[6] = 512;
	cpu->xsave_offset[7] = 1664, cpu->xsave_size[7] = 1024;
	cpu->xsave_align64 = 0;
	wr16(xarea, 0x37F);
	wr32(xarea + 24, 0x1F80);
}

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static struct emu_decoded decode_ok(const uint8_t *b, size_t n)
{
	struct emu_decoded d;
	assert_int_equal(emu_decode(b, n, &d), 0);
	return d;
}

/* ---- decoder --------------------------------------------------------- */

static void test_decode_simple(void **state)
{
	(void)state;
	struct emu_decoded d = decode_ok(BYTES(0xcc));
	assert_int_equal(d.insn, EMU_INT3);
	assert_int_equal(d.len, 1);
	d = decode_ok(BYTES(0x0f, 0x01, 0xca));
	assert_int_equal(d.insn, EMU_CLAC);
	assert_int_equal(d.len, 3);
	d = decode_ok(BYTES(0x0f, 0x01, 0xcb));
	assert_int_equal(d.insn, EMU_STAC);
	assert_int_equal(d.len, 3);
	d = decode_ok(BYTES(0x9b));
	assert_int_equal(d.insn, EMU_FWAIT);
	assert_int_equal(d.len, 1);
	/* trailing bytes belong to the next instruction */
	d = decode_ok(BYTES(0x9b, 0xcc, 0xcc));
	assert_int_equal(d.len, 1);
}

static void test_decode_popcnt(void **state)
{
	(void)state;
	/* 66 f3 0f b8 c8: popcnt %ax,%cx (ModRM c8: mod 3, reg 1, rm 0) */
	struct emu_decoded d = decode_ok(BYTES(0x66, 0xf3, 0x0f, 0xb8, 0xc8));
	assert_int_equal(d.insn, EMU_POPCNT);
	assert_int_equal(d.len, 5);
	assert_int_equal(d.opsize, 2);
	assert_int_equal(d.reg, EMU_RCX);
	assert_false(d.is_mem);
	assert_int_equal(d.rm_reg, EMU_RAX);
	d = decode_ok(BYTES(0xf3, 0x0f, 0xb8, 0xc8));
	assert_int_equal(d.opsize, 4);
	assert_int_equal(d.len, 4);
	d = decode_ok(BYTES(0xf3, 0x48, 0x0f, 0xb8, 0xc8));
	assert_int_equal(d.opsize, 8);
	assert_int_equal(d.len, 5);
	/* f3 4c 0f b8 0f: popcnt (%rdi),%r9 (REX.W+R, reg 1+8, rm 7) */
	d = decode_ok(BYTES(0xf3, 0x4c, 0x0f, 0xb8, 0x0f));
	assert_int_equal(d.reg, EMU_R9);
	assert_true(d.is_mem);
	assert_int_equal(d.base, EMU_RDI);
	assert_int_equal(d.index, -1);
	assert_int_equal(d.disp, 0);
	/* f3 42 0f b8 44 e4 10: popcnt 0x10(%rsp,%r12,8),%eax */
	d = decode_ok(BYTES(0xf3, 0x42, 0x0f, 0xb8, 0x44, 0xe4, 0x10));
	assert_int_equal(d.len, 7);
	assert_int_equal(d.opsize, 4);
	assert_int_equal(d.reg, EMU_RAX);
	assert_int_equal(d.base, EMU_RSP);
	assert_int_equal(d.index, EMU_R12);
	assert_int_equal(d.scale, 8);
	assert_int_equal(d.disp, 0x10);
	/* a REX followed by a legacy prefix is ignored (SDM 2.2.1): 48 66 ...
	 * is a 16-bit popcnt, not a 64-bit one */
	d = decode_ok(BYTES(0x48, 0x66, 0xf3, 0x0f, 0xb8, 0xc8));
	assert_int_equal(d.opsize, 2);
	/* without F3, 0F B8 is not popcnt */
	d = decode_ok(BYTES(0x0f, 0xb8, 0xc8));
	assert_int_equal(d.insn, EMU_UNKNOWN);
	assert_int_equal(d.len, 0);
}

static void test_decode_cmpxchg(void **state)
{
	(void)state;
	/* f0 48 0f c7 0e: lock cmpxchg16b (%rsi) */
	struct emu_decoded d = decode_ok(BYTES(0xf0, 0x48, 0x0f, 0xc7, 0x0e));
	assert_int_equal(d.insn, EMU_CMPXCHG16B);
	assert_int_equal(d.len, 5);
	assert_true(d.lock);
	assert_int_equal(d.opsize, 16);
	assert_int_equal(d.base, EMU_RSI);
	/* 0f c7 4d 08: cmpxchg8b 0x8(%rbp) */
	d = decode_ok(BYTES(0x0f, 0xc7, 0x4d, 0x08));
	assert_int_equal(d.insn, EMU_CMPXCHG8B);
	assert_int_equal(d.len, 4);
	assert_int_equal(d.opsize, 8);
	assert_int_equal(d.base, EMU_RBP);
	assert_int_equal(d.disp, 8);
	/* 65 f0 48 0f c7 0c 25 34 12 00 00: lock cmpxchg16b %gs:0x1234
	 * (SIB 25: no index, base 101 with mod 0 = disp32 only) */
	d = decode_ok(BYTES(0x65, 0xf0, 0x48, 0x0f, 0xc7, 0x0c, 0x25, 0x34, 0x12, 0x00, 0x00));
	assert_int_equal(d.insn, EMU_CMPXCHG16B);
	assert_int_equal(d.len, 11);
	assert_int_equal(d.seg, EMU_SEG_GS);
	assert_int_equal(d.base, -1);
	assert_int_equal(d.index, -1);
	assert_int_equal(d.disp, 0x1234);
	/* register form 0f c7 c8 is not cmpxchg8b */
	d = decode_ok(BYTES(0x0f, 0xc7, 0xc8));
	assert_int_equal(d.insn, EMU_UNKNOWN);
}

static void test_decode_grp15_and_xsavec(void **state)
{
	(void)state;
	struct { const uint8_t b[8]; size_t n; enum emu_insn insn; } cases[] = {
		{ { 0x0f, 0xae, 0x27 }, 3, EMU_XSAVE },             /* xsave (%rdi) */
		{ { 0x48, 0x0f, 0xae, 0x27 }, 4, EMU_XSAVE },       /* xsave64 (%rdi) */
		{ { 0x48, 0x0f, 0xae, 0x73, 0x40 }, 5, EMU_XSAVEOPT }, /* xsaveopt64 0x40(%rbx) */
		{ { 0x48, 0x0f, 0xc7, 0x27 }, 4, EMU_XSAVEC },      /* xsavec64 (%rdi) */
		{ { 0x48, 0x0f, 0xae, 0x2f }, 4, EMU_XRSTOR },      /* xrstor64 (%rdi) */
		{ { 0x0f, 0xae, 0x54, 0x24, 0xfc }, 5, EMU_LDMXCSR }, /* ldmxcsr -4(%rsp) */
		{ { 0x0f, 0xae, 0x18 }, 3, EMU_STMXCSR },           /* stmxcsr (%rax) */
		{ { 0x48, 0x0f, 0xae, 0x07 }, 4, EMU_FXSAVE },      /* fxsave64 (%rdi) */
		{ { 0x48, 0x0f, 0xae, 0x0f }, 4, EMU_FXRSTOR },     /* fxrstor64 (%rdi) */
		{ { 0x0f, 0xae, 0x07 }, 3, EMU_FXSAVE },            /* fxsave (%rdi) */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct emu_decoded d = decode_ok(cases[i].b, cases[i].n);
		assert_int_equal(d.insn, cases[i].insn);
		assert_int_equal(d.len, cases[i].n);
		assert_true(d.is_mem);
	}
	struct emu_decoded d = decode_ok(BYTES(0x0f, 0xae, 0x54, 0x24, 0xfc));
	assert_int_equal(d.base, EMU_RSP);
	assert_int_equal(d.index, -1);
	assert_int_equal(d.disp, -4);
	/* 0f ae 2d 00 01 00 00: xrstor 0x100(%rip) */
	d = decode_ok(BYTES(0x0f, 0xae, 0x2d, 0x00, 0x01, 0x00, 0x00));
	assert_int_equal(d.insn, EMU_XRSTOR);
	assert_int_equal(d.len, 7);
	assert_true(d.rip_relative);
	assert_int_equal(d.disp, 0x100);
	/* 64 41 0f ae 55 00: ldmxcsr %fs:0x0(%r13) (r13 needs a disp8) */
	d = decode_ok(BYTES(0x64, 0x41, 0x0f, 0xae, 0x55, 0x00));
	assert_int_equal(d.insn, EMU_LDMXCSR);
	assert_int_equal(d.len, 6);
	assert_int_equal(d.seg, EMU_SEG_FS);
	assert_int_equal(d.base, EMU_R13);
	/* 67 0f ae 10: addr32 ldmxcsr (%eax) */
	d = decode_ok(BYTES(0x67, 0x0f, 0xae, 0x10));
	assert_int_equal(d.insn, EMU_LDMXCSR);
	assert_int_equal(d.addr_size, 4);
	assert_int_equal(d.len, 4);
}

static void test_decode_unknown(void **state)
{
	(void)state;
	struct { const uint8_t b[6]; size_t n; } cases[] = {
		{ { 0x0f, 0xae, 0xf0 }, 3 },       /* mfence */
		{ { 0x0f, 0xae, 0x38 }, 3 },       /* clflush (%rax) */
		{ { 0x66, 0x0f, 0xae, 0x30 }, 4 }, /* clwb (%rax) */
		{ { 0x90 }, 1 },                   /* nop */
		{ { 0x0f, 0x01, 0xd0 }, 3 },       /* xgetbv */
		{ { 0xf0, 0xf3, 0x0f, 0xb8, 0xc8 }, 5 }, /* lock popcnt: #UD */
		{ { 0xf0, 0xcc }, 2 },             /* lock int3: #UD */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct emu_decoded d = decode_ok(cases[i].b, cases[i].n);
		assert_int_equal(d.insn, EMU_UNKNOWN);
		assert_int_equal(d.len, 0);
	}
	assert_string_equal(emu_insn_name(EMU_UNKNOWN), "unknown");
	assert_string_equal(emu_insn_name(EMU_CMPXCHG16B), "lock cmpxchg16b");
	assert_string_equal(emu_insn_name(EMU_XRSTOR), "xrstor");
	assert_string_equal(emu_insn_name((enum emu_insn)999), "unknown");
	for (int i = 0; i < EMU_INSN_MAX; i++)
		assert_non_null(emu_insn_name((enum emu_insn)i));
}

static void test_decode_truncated(void **state)
{
	(void)state;
	static const struct { uint8_t b[12]; size_t n; } valid[] = {
		{ { 0x66, 0xf3, 0x0f, 0xb8, 0xc8 }, 5 },
		{ { 0xf3, 0x42, 0x0f, 0xb8, 0x44, 0xe4, 0x10 }, 7 },
		{ { 0x65, 0xf0, 0x48, 0x0f, 0xc7, 0x0c, 0x25, 0x34, 0x12, 0x00, 0x00 }, 11 },
		{ { 0x0f, 0xae, 0x2d, 0x00, 0x01, 0x00, 0x00 }, 7 },
		{ { 0x0f, 0x01, 0xca }, 3 },
		{ { 0x0f, 0xc7, 0x4d, 0x08 }, 4 },
	};
	struct emu_decoded d;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		for (size_t k = 0; k < valid[i].n; k++)
			assert_int_equal(emu_decode(valid[i].b, k, &d), -EINVAL);
		assert_int_equal(emu_decode(valid[i].b, valid[i].n, &d), 0);
		assert_int_equal(d.len, valid[i].n);
	}
	assert_int_equal(emu_decode(NULL, 5, &d), -EINVAL);
}

static void test_decode_too_long(void **state)
{
	(void)state;
	uint8_t b[32];
	struct emu_decoded d;
	/* 11 redundant 66 prefixes + f3 0f b8 c8 = 15 bytes: the limit */
	memset(b, 0x66, 11);
	memcpy(b + 11, (uint8_t[]){ 0xf3, 0x0f, 0xb8, 0xc8 }, 4);
	assert_int_equal(emu_decode(b, 15, &d), 0);
	assert_int_equal(d.insn, EMU_POPCNT);
	assert_int_equal(d.len, 15);
	/* one more prefix: 16 bytes, invalid even with all bytes present */
	memset(b, 0x66, 12);
	memcpy(b + 12, (uint8_t[]){ 0xf3, 0x0f, 0xb8, 0xc8 }, 4);
	assert_int_equal(emu_decode(b, 16, &d), -EINVAL);
	assert_int_equal(emu_decode(b, sizeof(b), &d), -EINVAL);
	/* 14 prefixes + int3 = 15; 15 prefixes + int3 = 16 */
	memset(b, 0x2e, 14);
	b[14] = 0xcc;
	assert_int_equal(emu_decode(b, 15, &d), 0);
	assert_int_equal(d.len, 15);
	memset(b, 0x2e, 15);
	b[15] = 0xcc;
	assert_int_equal(emu_decode(b, 16, &d), -EINVAL);
}

/* ---- simple execution ------------------------------------------------- */

static void test_exec_clac_stac_fwait_int3(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	uint64_t rip = cpu.rip;
	cpu.rflags = 0x2 | EMU_RFLAGS_AC | EMU_RFLAGS_CF | EMU_RFLAGS_ZF;

	struct emu_decoded d = decode_ok(BYTES(0x0f, 0x01, 0xca));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(cpu.rflags, 0x2 | EMU_RFLAGS_CF | EMU_RFLAGS_ZF); /* only AC cleared */
	assert_int_equal(cpu.rip, rip + 3);

	d = decode_ok(BYTES(0x0f, 0x01, 0xcb));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(cpu.rflags, 0x2 | EMU_RFLAGS_CF | EMU_RFLAGS_ZF | (1u << 18));
	assert_int_equal(cpu.rip, rip + 6);

	d = decode_ok(BYTES(0x9b));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(cpu.rip, rip + 7);

	/* clac/stac at CPL 3: #UD, nothing changes */
	cpu.cpl = 3;
	d = decode_ok(BYTES(0x0f, 0x01, 0xca));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 6);
	assert_int_equal(cpu.rip, rip + 7);
	assert_true(cpu.rflags & EMU_RFLAGS_AC);
	cpu.cpl = 0;

	/* int3 is a trap: #BP with RIP after the instruction */
	d = decode_ok(BYTES(0xcc));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 3);
	assert_false(f.has_error_code);
	assert_int_equal(cpu.rip, rip + 8);

	/* unknown: #UD, RIP stays */
	d = decode_ok(BYTES(0x0f, 0xae, 0xf0));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 6);
	assert_int_equal(cpu.rip, rip + 8);
}

static const uint64_t popcnt_inputs[] = {
	0, 1, 0x8000000000000000ull, 0xffffffffffffffffull, 0x123456789abcdef0ull,
	0xffffffff00000000ull, 0x00000000ffff0000ull, 0x5555aaaa00ff00ffull, 0x10000ull,
};

static void test_exec_popcnt_reg(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	const uint64_t all_flags = EMU_RFLAGS_CF | EMU_RFLAGS_PF | EMU_RFLAGS_AF | EMU_RFLAGS_ZF |
				   EMU_RFLAGS_SF | EMU_RFLAGS_OF;
	struct { const uint8_t b[5]; size_t n; int size; } forms[] = {
		{ { 0x66, 0xf3, 0x0f, 0xb8, 0xc8 }, 5, 2 }, /* popcnt %ax,%cx */
		{ { 0xf3, 0x0f, 0xb8, 0xc8 }, 4, 4 },       /* popcnt %eax,%ecx */
		{ { 0xf3, 0x48, 0x0f, 0xb8, 0xc8 }, 5, 8 }, /* popcnt %rax,%rcx */
	};
	for (size_t fi = 0; fi < 3; fi++) {
		for (size_t i = 0; i < sizeof(popcnt_inputs) / sizeof(popcnt_inputs[0]); i++) {
			cpu_init(&cpu);
			struct emu_decoded d = decode_ok(forms[fi].b, forms[fi].n);
			int size = forms[fi].size;
			uint64_t mask = size == 8 ? ~0ull : (1ull << (8 * size)) - 1;
			uint64_t src = popcnt_inputs[i] & mask;
			uint64_t old_rcx = 0xdeadbeefcafebabeull;
			uint64_t rip = cpu.rip;
			cpu.gpr[EMU_RAX] = popcnt_inputs[i];
			cpu.gpr[EMU_RCX] = old_rcx;
			cpu.rflags = 0x2 | all_flags | EMU_RFLAGS_AC;
			assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
			uint64_t cnt = (uint64_t)__builtin_popcountll(src);
			/* 16-bit keeps RCX[63:16]; 32-bit zero-extends */
			uint64_t want = size == 2 ? (old_rcx & ~0xffffull) | cnt : cnt;
			assert_int_equal(cpu.gpr[EMU_RCX], want);
			assert_int_equal(cpu.gpr[EMU_RAX], popcnt_inputs[i]);
			assert_int_equal(cpu.rflags, 0x2 | EMU_RFLAGS_AC | (src == 0 ? EMU_RFLAGS_ZF : 0));
			assert_int_equal(cpu.rip, rip + forms[fi].n);
		}
	}
}

static void test_exec_popcnt_mem(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	/* popcnt 0x10(%rsp,%r12,8),%eax with rsp = BASE+0x100, r12 = 3:
	 * address BASE + 0x100 + 24 + 0x10 = BASE + 0x128 */
	struct emu_decoded d = decode_ok(BYTES(0xf3, 0x42, 0x0f, 0xb8, 0x44, 0xe4, 0x10));
	cpu.gpr[EMU_RSP] = FAKE_BASE + 0x100;
	cpu.gpr[EMU_R12] = 3;
	cpu.gpr[EMU_RAX] = ~0ull;
	wr32(gmem(FAKE_BASE + 0x128), 0xf0f0f00f);
	wr32(gmem(FAKE_BASE + 0x12c), 0xffffffff); /* beyond the 4 bytes read */
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], __builtin_popcount(0xf0f0f00fu));
	assert_false(cpu.rflags & EMU_RFLAGS_ZF);

	/* popcnt (%rdi),%r9 at an unmapped address: #PF, read, cr2 = address */
	cpu_init(&cpu);
	uint64_t rip = cpu.rip;
	d = decode_ok(BYTES(0xf3, 0x4c, 0x0f, 0xb8, 0x0f));
	cpu.gpr[EMU_RDI] = 0x5000;
	cpu.gpr[EMU_R9] = 77;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 14);
	assert_true(f.has_error_code);
	assert_int_equal(f.error_code, 0);
	assert_true(f.has_cr2);
	assert_int_equal(f.cr2, 0x5000);
	assert_int_equal(cpu.gpr[EMU_R9], 77);
	assert_int_equal(cpu.rip, rip);

	/* non-canonical address: #GP(0) */
	cpu.gpr[EMU_RDI] = 0x0000800000000000ull;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	assert_true(f.has_error_code);
	assert_int_equal(f.error_code, 0);
	/* with LA57 the same address is canonical (and unmapped here) */
	cpu.cr4 |= EMU_CR4_LA57;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 14);
}

static void test_effective_address(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	cpu_init(&cpu);
	/* xrstor 0x100(%rip), 7 bytes: next RIP + 0x100 */
	struct emu_decoded d = decode_ok(BYTES(0x0f, 0xae, 0x2d, 0x00, 0x01, 0x00, 0x00));
	assert_int_equal(emu_effective_address(&d, &cpu), cpu.rip + 7 + 0x100);
	/* %gs:0x1234 */
	cpu.gs_base = 0xffff888000000000ull;
	d = decode_ok(BYTES(0x65, 0xf0, 0x48, 0x0f, 0xc7, 0x0c, 0x25, 0x34, 0x12, 0x00, 0x00));
	assert_int_equal(emu_effective_address(&d, &cpu), 0xffff888000001234ull);
	/* %fs:0(%r13) */
	cpu.fs_base = 0x7000;
	cpu.gpr[EMU_R13] = 0x123;
	d = decode_ok(BYTES(0x64, 0x41, 0x0f, 0xae, 0x55, 0x00));
	assert_int_equal(emu_effective_address(&d, &cpu), 0x7123);
	/* addr32 (%eax): the upper half of RAX is not part of the address */
	cpu.gpr[EMU_RAX] = 0xabcdef0000010010ull;
	d = decode_ok(BYTES(0x67, 0x0f, 0xae, 0x10));
	assert_int_equal(emu_effective_address(&d, &cpu), 0x10010);
	/* -4(%rsp) */
	cpu.gpr[EMU_RSP] = 0x2000;
	d = decode_ok(BYTES(0x0f, 0xae, 0x54, 0x24, 0xfc));
	assert_int_equal(emu_effective_address(&d, &cpu), 0x1ffc);
	/* cs/ds overrides have no base in 64-bit mode */
	d = decode_ok(BYTES(0x2e, 0x0f, 0xae, 0x54, 0x24, 0xfc));
	assert_int_equal(emu_effective_address(&d, &cpu), 0x1ffc);
}

/* ---- cmpxchg8b/16b ---------------------------------------------------- */

static void test_exec_cmpxchg16b(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	const uint64_t A = 0x1111222233334444ull, B = 0x5555666677778888ull;
	const uint64_t C = 0x99990000aaaabbbbull, D = 0xccccddddeeeeffffull;
	struct emu_decoded d = decode_ok(BYTES(0xf0, 0x48, 0x0f, 0xc7, 0x0e));

	/* equal: memory gets RCX:RBX, ZF = 1, RDX:RAX unchanged */
	cpu_init(&cpu);
	uint64_t rip = cpu.rip;
	uint64_t addr = FAKE_BASE + 0x40;
	wr64(gmem(addr), A), wr64(gmem(addr + 8), B);
	cpu.gpr[EMU_RSI] = addr;
	cpu.gpr[EMU_RAX] = A, cpu.gpr[EMU_RDX] = B, cpu.gpr[EMU_RBX] = C, cpu.gpr[EMU_RCX] = D;
	cpu.rflags = 0x2 | EMU_RFLAGS_CF;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd64(gmem(addr)), C);
	assert_int_equal(rd64(gmem(addr + 8)), D);
	assert_int_equal(cpu.gpr[EMU_RAX], A);
	assert_int_equal(cpu.gpr[EMU_RDX], B);
	assert_int_equal(cpu.rflags, 0x2 | EMU_RFLAGS_CF | EMU_RFLAGS_ZF); /* CF untouched */
	assert_int_equal(cpu.rip, rip + 5);

	/* different (high half only): RDX:RAX gets memory, ZF = 0 */
	cpu.gpr[EMU_RAX] = C, cpu.gpr[EMU_RDX] = A;
	cpu.gpr[EMU_RBX] = 1, cpu.gpr[EMU_RCX] = 2;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd64(gmem(addr)), C);
	assert_int_equal(rd64(gmem(addr + 8)), D);
	assert_int_equal(cpu.gpr[EMU_RAX], C);
	assert_int_equal(cpu.gpr[EMU_RDX], D);
	assert_int_equal(cpu.rflags, 0x2 | EMU_RFLAGS_CF);

	/* misaligned: #GP(0), nothing changes */
	cpu_init(&cpu);
	wr64(gmem(addr + 8), A), wr64(gmem(addr + 16), B);
	cpu.gpr[EMU_RSI] = addr + 8;
	cpu.gpr[EMU_RAX] = A, cpu.gpr[EMU_RDX] = B, cpu.gpr[EMU_RBX] = C, cpu.gpr[EMU_RCX] = D;
	rip = cpu.rip;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	assert_true(f.has_error_code);
	assert_int_equal(f.error_code, 0);
	assert_int_equal(rd64(gmem(addr + 8)), A);
	assert_int_equal(cpu.rip, rip);
	assert_int_equal(fm.writes, 0);

	/* read-only page: #PF with the W bit */
	cpu_init(&cpu);
	fm.ro_start = FAKE_BASE, fm.ro_end = FAKE_BASE + 0x1000;
	cpu.gpr[EMU_RSI] = addr;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 14);
	assert_int_equal(f.error_code & 2, 2);
	assert_int_equal(f.cr2, addr);

	/* the atomic callback is used when present */
	cpu_init(&cpu);
	struct emu_mem mem_atomic = { fake_read, fake_write, fake_cmpxchg, &fm };
	wr64(gmem(addr), A), wr64(gmem(addr + 8), B);
	cpu.gpr[EMU_RSI] = addr;
	cpu.gpr[EMU_RAX] = A, cpu.gpr[EMU_RDX] = B, cpu.gpr[EMU_RBX] = C, cpu.gpr[EMU_RCX] = D;
	assert_int_equal(emu_execute(&d, &cpu, &mem_atomic, &f), 0);
	assert_int_equal(fm.cmpxchgs, 1);
	assert_int_equal(fm.writes, 0);
	assert_int_equal(rd64(gmem(addr)), C);
	assert_true(cpu.rflags & EMU_RFLAGS_ZF);
	assert_int_equal(emu_execute(&d, &cpu, &mem_atomic, &f), 0); /* now differs */
	assert_int_equal(cpu.gpr[EMU_RAX], C);
	assert_int_equal(cpu.gpr[EMU_RDX], D);
	assert_false(cpu.rflags & EMU_RFLAGS_ZF);
}

static void test_exec_cmpxchg8b(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	/* cmpxchg8b 0x8(%rbp): compares EDX:EAX (upper halves ignored) */
	struct emu_decoded d = decode_ok(BYTES(0x0f, 0xc7, 0x4d, 0x08));
	cpu_init(&cpu);
	uint64_t addr = FAKE_BASE + 0x203; /* no alignment needed */
	cpu.gpr[EMU_RBP] = addr - 8;
	wr32(gmem(addr), 0x11223344), wr32(gmem(addr + 4), 0x55667788);
	cpu.gpr[EMU_RAX] = 0xffffffff11223344ull, cpu.gpr[EMU_RDX] = 0xeeeeeeee55667788ull;
	cpu.gpr[EMU_RBX] = 0xaaaaaaaa0000beefull, cpu.gpr[EMU_RCX] = 0xbbbbbbbb0000cafeull;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_true(cpu.rflags & EMU_RFLAGS_ZF);
	assert_int_equal(rd32(gmem(addr)), 0x0000beef);
	assert_int_equal(rd32(gmem(addr + 4)), 0x0000cafe);
	/* differs now: EAX/EDX get memory, zero-extended like 32-bit writes */
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_false(cpu.rflags & EMU_RFLAGS_ZF);
	assert_int_equal(cpu.gpr[EMU_RAX], 0x0000beef);
	assert_int_equal(cpu.gpr[EMU_RDX], 0x0000cafe);
}

/* ---- MXCSR, FXSAVE ---------------------------------------------------- */

static void test_exec_ldmxcsr_stmxcsr(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	uint64_t rip = cpu.rip;
	/* ldmxcsr -4(%rsp) */
	struct emu_decoded d = decode_ok(BYTES(0x0f, 0xae, 0x54, 0x24, 0xfc));
	cpu.gpr[EMU_RSP] = FAKE_BASE + 0x104;
	/* 0x9fc0 = FZ (0x8000) | exception masks (0x1f80) | DAZ (0x40): all
	 * within MXCSR_MASK 0xFFFF */
	wr32(gmem(FAKE_BASE + 0x100), 0x9fc0);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd32(xarea + 24), 0x9fc0);
	assert_int_equal(rd64(xarea + 512) & 2, 2); /* SSE state now in use */
	assert_int_equal(cpu.rip, rip + 5);

	/* bit 16 is reserved: #GP(0), MXCSR unchanged */
	wr32(gmem(FAKE_BASE + 0x100), 0x11f80);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	assert_int_equal(f.error_code, 0);
	assert_int_equal(rd32(xarea + 24), 0x9fc0);
	assert_int_equal(cpu.rip, rip + 5);
	/* a CPU without DAZ (MXCSR_MASK 0xFFBF) refuses bit 6 */
	cpu.mxcsr_mask = 0xFFBF;
	wr32(gmem(FAKE_BASE + 0x100), 0x1fc0);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);

	/* stmxcsr (%rax) */
	d = decode_ok(BYTES(0x0f, 0xae, 0x18));
	cpu.gpr[EMU_RAX] = FAKE_BASE + 0x300;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd32(gmem(FAKE_BASE + 0x300)), 0x9fc0);

	/* CR0.TS: #NM; CR4.OSFXSR clear: #UD */
	cpu.cr0 |= EMU_CR0_TS;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 7);
	cpu.cr0 &= ~(uint64_t)EMU_CR0_TS;
	cpu.cr4 &= ~(uint64_t)EMU_CR4_OSFXSR;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 6);
}

static void test_exec_fxsave_fxrstor(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	/* x87 and SSE in use: FCW 0x27f, ST0 bytes, XMM5 pattern, MXCSR */
	wr64(xarea + 512, 3);
	wr16(xarea, 0x27f);
	memset(xarea + 32, 0x3c, 10);
	for (int i = 0; i < 16; i++)
		xarea[160 + 5 * 16 + i] = (uint8_t)(0xa0 + i);
	wr32(xarea + 24, 0x1f80 | 0x6000); /* RC = 11b */
	uint64_t addr = FAKE_BASE + 0x1000;
	memset(gmem(addr), 0xee, 512);

	struct emu_decoded d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x07)); /* fxsave64 (%rdi) */
	cpu.gpr[EMU_RDI] = addr;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd16(gmem(addr)), 0x27f);
	assert_int_equal(gmem(addr + 32)[9], 0x3c);
	assert_int_equal(rd32(gmem(addr + 24)), 0x7f80);
	assert_int_equal(rd32(gmem(addr + 28)), 0xffff); /* MXCSR_MASK */
	assert_int_equal(gmem(addr + 160 + 80)[15], 0xaf);
	assert_int_equal(gmem(addr + 464)[0], 0xee); /* software bytes untouched */

	/* change the registers, fxrstor brings them back */
	memset(xarea + 160, 0, 256);
	wr16(xarea, 0x37f);
	wr32(xarea + 24, 0x1f80);
	d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x0f));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd16(xarea), 0x27f);
	assert_int_equal(rd32(xarea + 24), 0x7f80);
	assert_int_equal(xarea[160 + 80], 0xa0);

	/* 16-byte alignment */
	cpu.gpr[EMU_RDI] = addr + 8;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	/* fxrstor of a reserved MXCSR bit: #GP, state unchanged */
	cpu.gpr[EMU_RDI] = addr;
	wr32(gmem(addr + 24), 0x80000000u | 0x1f80);
	wr16(gmem(addr), 0x7f);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	assert_int_equal(rd16(xarea), 0x27f);
}

/* ---- XSAVE family ------------------------------------------------------ */

static void test_exec_xsave_xrstor_roundtrip(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	/* x87, SSE, AVX in use; XMM3 and YMM3's upper half set */
	wr64(xarea + 512, 7);
	for (int i = 0; i < 16; i++) {
		xarea[160 + 3 * 16 + i] = (uint8_t)(0x30 + i);
		xarea[576 + 3 * 16 + i] = (uint8_t)(0x60 + i);
	}
	wr16(xarea, 0x7f);
	uint64_t addr = FAKE_BASE + 0x2000; /* 64-byte aligned */
	memset(gmem(addr), 0xee, 1024);
	wr64(gmem(addr + 512), 0x80); /* a stale bit outside RFBM survives XSAVE */
	memset(gmem(addr + 520), 0, 56);

	/* xsave64 (%rdi), EDX:EAX = all ones: RFBM = XCR0 = 7 */
	struct emu_decoded d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x27));
	cpu.gpr[EMU_RDI] = addr;
	cpu.gpr[EMU_RAX] = 0xffffffff, cpu.gpr[EMU_RDX] = 0xffffffff;
	uint64_t rip = cpu.rip;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(cpu.rip, rip + 4);
	assert_int_equal(rd64(gmem(addr + 512)), 0x87);
	assert_int_equal(rd16(gmem(addr)), 0x7f);
	assert_int_equal(rd32(gmem(addr + 24)), 0x1f80);
	assert_int_equal(gmem(addr + 160 + 48)[0], 0x30);
	assert_int_equal(gmem(addr + 576 + 48)[15], 0x6f);
	assert_int_equal(gmem(addr + 576 + 256)[0], 0xee); /* nothing past AVX */

	/* clobber XMM3 and YMM3-high, then xrstor64 (%rdi) */
	memset(xarea + 160, 0x99, 256);
	memset(xarea + 576, 0x99, 256);
	wr16(xarea, 0x37f);
	wr64(gmem(addr + 512), 7); /* the stale bit 7 is not in XCR0: clear it */
	d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x2f));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(xarea[160 + 48], 0x30);
	assert_int_equal(xarea[160 + 63], 0x3f);
	assert_int_equal(xarea[160], 0);      /* XMM0 was 0 when saved */
	assert_int_equal(xarea[576 + 48], 0x60);
	assert_int_equal(xarea[576], 0);
	assert_int_equal(rd16(xarea), 0x7f);
	assert_int_equal(rd64(xarea + 512), 7);
}

/* xsave then xrstor, x87+SSE only, after modifying every XMM register */
static void test_exec_xsave_xrstor_xmm(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	wr64(xarea + 512, 3);
	uint8_t xmm7[16];
	for (int i = 0; i < 16; i++)
		xmm7[i] = (uint8_t)(0xc0 ^ (i * 7));
	memcpy(xarea + 160 + 7 * 16, xmm7, 16);
	uint64_t addr = FAKE_BASE + 0x2000;
	struct emu_decoded sv = decode_ok(BYTES(0x0f, 0xae, 0x27));  /* xsave (%rdi) */
	struct emu_decoded rs = decode_ok(BYTES(0x0f, 0xae, 0x2f));  /* xrstor (%rdi) */
	cpu.gpr[EMU_RDI] = addr;
	cpu.gpr[EMU_RAX] = 3, cpu.gpr[EMU_RDX] = 0; /* x87 + SSE */
	assert_int_equal(emu_execute(&sv, &cpu, &mem_rw, &f), 0);
	uint8_t before[512 + 64];
	memcpy(before, xarea, sizeof(before));
	memset(xarea + 160, 0x55, 256); /* modify every XMM register */
	wr32(gmem(addr + 24), 0x3f80);  /* and the saved MXCSR: RC = 01b */
	assert_int_equal(emu_execute(&rs, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd32(xarea + 24), 0x3f80); /* RFBM[1]: MXCSR loaded */
	assert_memory_equal(xarea + 160 + 7 * 16, xmm7, 16);
	assert_memory_equal(xarea + 160, before + 160, 256);
	assert_int_equal(rd16(xarea), 0x37f);
}

static void test_exec_xrstor_init(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	/* everything in use and non-initial */
	wr64(xarea + 512, 7);
	wr16(xarea, 0x7f);
	wr16(xarea + 2, 0x3800);
	memset(xarea + 32, 0x11, 128);
	memset(xarea + 160, 0x22, 256);
	memset(xarea + 576, 0x33, 256);
	/* memory: XSTATE_BV = 0, MXCSR 0x1fc0, junk in the data */
	uint64_t addr = FAKE_BASE + 0x2040;
	memset(gmem(addr), 0x77, 1024);
	memset(gmem(addr + 512), 0, 64);
	wr32(gmem(addr + 24), 0x1fc0);
	struct emu_decoded d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x2f));
	cpu.gpr[EMU_RDI] = addr;
	cpu.gpr[EMU_RAX] = ~0ull, cpu.gpr[EMU_RDX] = ~0ull;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	/* SDM 13.8.1: each RFBM component with XSTATE_BV clear is
	 * initialized (FCW 0x37F, everything else 0) and MXCSR is still
	 * loaded from memory since RFBM[1] = 1 */
	uint8_t zero[256] = { 0 };
	assert_int_equal(rd16(xarea), 0x37f);
	assert_int_equal(rd16(xarea + 2), 0);
	assert_memory_equal(xarea + 32, zero, 128);
	assert_memory_equal(xarea + 160, zero, 256);
	assert_memory_equal(xarea + 576, zero, 256);
	assert_int_equal(rd32(xarea + 24), 0x1fc0);

	/* with RFBM = x87 only, SSE and AVX are left alone */
	cpu_init(&cpu);
	wr64(xarea + 512, 7);
	wr16(xarea, 0x7f);
	memset(xarea + 160, 0x22, 256);
	memset(xarea + 576, 0x33, 256);
	memset(gmem(addr + 512), 0, 64);
	cpu.gpr[EMU_RDI] = addr;
	cpu.gpr[EMU_RAX] = 1, cpu.gpr[EMU_RDX] = 0;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd16(xarea), 0x37f);
	assert_int_equal(xarea[160], 0x22);
	assert_int_equal(xarea[576 + 255], 0x33);
	assert_int_equal(rd32(xarea + 24), 0x1f80); /* MXCSR untouched */
}

static void test_exec_xrstor_faults(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	wr64(xarea + 512, 3);
	memset(xarea + 160, 0x22, 256);
	uint64_t addr = FAKE_BASE + 0x2000;
	struct emu_decoded d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x2f));
	cpu.gpr[EMU_RAX] = ~0ull, cpu.gpr[EMU_RDX] = ~0ull;
	uint64_t rip = cpu.rip;
	wr32(gmem(addr + 24), 0x1f80);

	/* misaligned (64 bytes required) */
	cpu.gpr[EMU_RDI] = addr + 16;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	cpu.gpr[EMU_RDI] = addr;
	/* XSTATE_BV bit 5 is not in XCR0 (7) */
	wr64(gmem(addr + 512), 0x20);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	/* standard form: header bytes 8..23 must be zero */
	wr64(gmem(addr + 512), 0);
	gmem(addr + 512)[20] = 1;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	gmem(addr + 512)[20] = 0;
	/* reserved MXCSR bit */
	wr32(gmem(addr + 24), 0x10000 | 0x1f80);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	/* nothing changed through all of it */
	assert_int_equal(xarea[160], 0x22);
	assert_int_equal(rd64(xarea + 512), 3);
	assert_int_equal(cpu.rip, rip);
	/* CR4.OSXSAVE clear: #UD */
	cpu.cr4 &= ~(uint64_t)EMU_CR4_OSXSAVE;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 6);
	/* unmapped area: #PF */
	cpu.cr4 |= EMU_CR4_OSXSAVE;
	cpu.gpr[EMU_RDI] = 0x40000;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 14);
	assert_true(f.has_cr2);
	assert_true(f.cr2 >= 0x40000 && f.cr2 < 0x40000 + 576);
}

static void test_exec_xsaveopt_skips_init(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	/* only x87 in use; SSE and AVX initial, MXCSR default */
	wr64(xarea + 512, 1);
	wr16(xarea, 0x7f);
	uint64_t addr = FAKE_BASE + 0x2000;
	memset(gmem(addr), 0xee, 1024);
	wr64(gmem(addr + 512), 0x6);
	struct emu_decoded d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x73, 0x40)); /* 0x40(%rbx) */
	cpu.gpr[EMU_RBX] = addr - 0x40;
	cpu.gpr[EMU_RAX] = 7, cpu.gpr[EMU_RDX] = 0;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	/* XSTATE_BV[i] = XINUSE[i] for RFBM: 1 */
	assert_int_equal(rd64(gmem(addr + 512)), 1);
	assert_int_equal(rd16(gmem(addr)), 0x7f);
	/* init optimization: SSE/AVX data not written */
	assert_int_equal(gmem(addr + 160)[0], 0xee);
	assert_int_equal(gmem(addr + 576)[0], 0xee);

	/* plain XSAVE writes them (their initial value, zero) */
	d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x27));
	cpu.gpr[EMU_RDI] = addr;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(gmem(addr + 160)[0], 0);
	assert_int_equal(gmem(addr + 576)[0], 0);
	assert_int_equal(rd64(gmem(addr + 512)), 1);
	/* misaligned */
	cpu.gpr[EMU_RDI] = addr + 32;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
}

static void test_exec_xsavec_compacted(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	cpu.xcr0 = 0xe7; /* x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM */
	wr64(xarea + 512, 0x27); /* x87 SSE AVX opmask in use */
	memset(xarea + 576, 0x44, 256);   /* AVX */
	memset(xarea + 1088, 0x55, 64);   /* opmask */
	xarea[160] = 0x66;
	uint64_t addr = FAKE_BASE + 0x2000;
	memset(gmem(addr), 0xee, 4096);
	/* XSAVEC writes only XSTATE_BV and XCOMP_BV of the header; the rest
	 * must be zero for XRSTOR, software clears it (SDM 13.10) */
	memset(gmem(addr + 528), 0, 48);
	struct emu_decoded d = decode_ok(BYTES(0x48, 0x0f, 0xc7, 0x27)); /* xsavec64 (%rdi) */
	cpu.gpr[EMU_RDI] = addr;
	cpu.gpr[EMU_RAX] = 0x67, cpu.gpr[EMU_RDX] = 0; /* RFBM = 0x67 & 0xe7 = 0x67 */
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	/* SDM 13.4.3: compacted; after the 576-byte legacy+header, the RFBM
	 * components in order: AVX (2) at 576, opmask (5) at 576+256 = 832,
	 * ZMM_Hi256 (6) at 896 but it is initial, so not written */
	assert_int_equal(rd64(gmem(addr + 512)), 0x27);
	assert_int_equal(rd64(gmem(addr + 520)), 0x8000000000000067ull);
	assert_int_equal(gmem(addr + 576)[0], 0x44);
	assert_int_equal(gmem(addr + 832)[0], 0x55);
	assert_int_equal(gmem(addr + 832 + 63)[0], 0x55);
	assert_int_equal(gmem(addr + 896)[0], 0xee);
	assert_int_equal(gmem(addr + 160)[0], 0x66);

	/* compacted xrstor brings it back */
	memset(xarea + 576, 0, 256);
	memset(xarea + 1088, 0, 64);
	memset(xarea + 1152, 0x12, 512);
	wr64(xarea + 512, 0x67);
	d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x2f));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(xarea[576], 0x44);
	assert_int_equal(xarea[1088 + 63], 0x55);
	assert_int_equal(xarea[1152], 0); /* ZMM_Hi256: XSTATE_BV clear -> init */
	assert_int_equal(rd64(xarea + 512), 0x27);

	/* compacted form: a non-zero byte in 16..63 of the header is #GP */
	gmem(addr + 560)[0] = 1;
	memset(xarea + 576, 0, 256);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);
	assert_int_equal(xarea[576], 0);
	gmem(addr + 560)[0] = 0;
	/* XSTATE_BV naming a component XCOMP_BV lacks is #GP too */
	wr64(gmem(addr + 512), 0x80 | 0x27);
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 1);
	assert_int_equal(f.vector, 13);

	/* 64-byte alignment (CPUID.0xD ECX bit 1), as on Sapphire Rapids:
	 * PKRU (9) 8 bytes at standard 2688, TILECFG (17) 64 bytes at 2752,
	 * aligned. Compacted with RFBM = x87|SSE|PKRU|TILECFG: PKRU at 576,
	 * TILECFG at ALIGN_UP(576 + 8, 64) = 640 */
	cpu_init(&cpu);
	cpu.xcr0 = 0x20203;
	cpu.xsave_offset[9] = 2688, cpu.xsave_size[9] = 8;
	cpu.xsave_offset[17] = 2752, cpu.xsave_size[17] = 64;
	cpu.xsave_align64 = 1ull << 17;
	wr64(xarea + 512, 0x20200);
	memset(xarea + 2688, 0x91, 8);
	memset(xarea + 2752, 0x92, 64);
	memset(gmem(addr), 0xee, 4096);
	cpu.gpr[EMU_RDI] = addr;
	cpu.gpr[EMU_RAX] = 0x20203, cpu.gpr[EMU_RDX] = 0;
	d = decode_ok(BYTES(0x48, 0x0f, 0xc7, 0x27));
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), 0);
	assert_int_equal(rd64(gmem(addr + 520)), 0x8000000000020203ull);
	assert_int_equal(rd64(gmem(addr + 512)), 0x20200);
	assert_int_equal(gmem(addr + 576)[7], 0x91);
	assert_int_equal(gmem(addr + 584)[0], 0xee); /* alignment gap */
	assert_int_equal(gmem(addr + 640)[0], 0x92);
	assert_int_equal(gmem(addr + 640)[63], 0x92);
	assert_int_equal(gmem(addr + 704)[0], 0xee);
}

static void test_exec_bad_input(void **state)
{
	(void)state;
	struct emu_cpu cpu;
	struct emu_fault f;
	cpu_init(&cpu);
	struct emu_decoded d = decode_ok(BYTES(0x48, 0x0f, 0xae, 0x27));
	/* no XSAVE area: the caller's mistake, not a guest fault */
	cpu.xsave = NULL;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), -EINVAL);
	/* a component with no CPUID size cannot be handled */
	cpu_init(&cpu);
	cpu.xcr0 = 0x207; /* component 9 (PKRU) unknown to this emu_cpu */
	cpu.gpr[EMU_RAX] = ~0ull, cpu.gpr[EMU_RDX] = ~0ull;
	cpu.gpr[EMU_RDI] = FAKE_BASE;
	assert_true(emu_execute(&d, &cpu, &mem_rw, &f) < 0);
	/* a forged decode with out-of-range registers is refused */
	d = decode_ok(BYTES(0xf3, 0x0f, 0xb8, 0xc8));
	d.reg = 40;
	assert_int_equal(emu_execute(&d, &cpu, &mem_rw, &f), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_simple),
		cmocka_unit_test(test_decode_popcnt),
		cmocka_unit_test(test_decode_cmpxchg),
		cmocka_unit_test(test_decode_grp15_and_xsavec),
		cmocka_unit_test(test_decode_unknown),
		cmocka_unit_test(test_decode_truncated),
		cmocka_unit_test(test_decode_too_long),
		cmocka_unit_test(test_exec_clac_stac_fwait_int3),
		cmocka_unit_test(test_exec_popcnt_reg),
		cmocka_unit_test(test_exec_popcnt_mem),
		cmocka_unit_test(test_effective_address),
		cmocka_unit_test(test_exec_cmpxchg16b),
		cmocka_unit_test(test_exec_cmpxchg8b),
		cmocka_unit_test(test_exec_ldmxcsr_stmxcsr),
		cmocka_unit_test(test_exec_fxsave_fxrstor),
		cmocka_unit_test(test_exec_xsave_xrstor_roundtrip),
		cmocka_unit_test(test_exec_xsave_xrstor_xmm),
		cmocka_unit_test(test_exec_xrstor_init),
		cmocka_unit_test(test_exec_xrstor_faults),
		cmocka_unit_test(test_exec_xsaveopt_skips_init),
		cmocka_unit_test(test_exec_xsavec_compacted),
		cmocka_unit_test(test_exec_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
