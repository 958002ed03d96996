/* Trap-and-emulate fallback: decode and execute, in userspace, the few
 * instructions a host KVM may fail to emulate (KVM_EXIT_INTERNAL_ERROR,
 * KVM_INTERNAL_ERROR_EMULATION). Pure functions over bytes, a register
 * file and memory callbacks, so each instruction is unit-tested. */
#ifndef KVMLITE_X86_EMULATE_H
#define KVMLITE_X86_EMULATE_H

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
	EMU_UNKNOWN,
	EMU_INSN_MAX
};

const char *emu_insn_name(enum emu_insn insn);

#endif
