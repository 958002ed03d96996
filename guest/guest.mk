# The embedded tiny guest (guest/): a freestanding ELF64 with a PVH note,
# loaded at 1 MiB. Included by the top Makefile; paths are relative to the
# repo root.

GUEST_ELF    := $(BUILD)/guest/kvmlite-guest.elf
GUEST_SRCS   := $(wildcard guest/*.c) $(wildcard guest/*.S)
GUEST_OBJS   := $(patsubst guest/%,$(BUILD)/guest/%.o,$(GUEST_SRCS))
GUEST_CFLAGS := -m64 -ffreestanding -fno-pic -fno-pie -nostdlib -mno-red-zone \
	-mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-tree-loop-distribute-patterns -fcf-protection=none \
	-O2 -g -Wall -Wextra -Werror -std=gnu11 -Iguest -Isrc/arch/$(ARCH) -MMD -MP
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,guest/guest.ld -Wl,--build-id=none \
	-Wl,-z,noexecstack -Wl,-z,max-page-size=0x1000 -Wl,--no-warn-rwx-segments

$(BUILD)/guest/%.c.o: guest/%.c
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@
$(BUILD)/guest/%.S.o: guest/%.S
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@

# Stripped of symbols and debug info: it is embedded in kvmlite.
$(GUEST_ELF): $(GUEST_OBJS) guest/guest.ld guest/guest.mk
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@.debug $(GUEST_OBJS)
	objcopy --strip-all $@.debug $@
