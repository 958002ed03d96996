# kvmlite: a small VMM on Linux KVM.  `make help` lists the targets.

ARCH        ?= x86
BUILD       ?= build
CC          ?= gcc
PKGS        := zlib liblzma libzstd liblz4 json-c liburing libseccomp
DLOPEN_PKGS := libmicrohttpd  # headers only: src/api/server.c loads it when the API is used
TEST_PKGS   := cmocka

# Debian packages the build, the tests and the demo need (`make deps`).
DEB_PKGS := build-essential pkg-config libcmocka-dev zlib1g-dev liblzma-dev \
	libjson-c-dev libmicrohttpd-dev curl \
	libzstd-dev liblz4-dev busybox-static cpio xz-utils zstd lz4 gzip \
	qemu-system-x86 linux-source-6.1 bc flex bison libelf-dev libssl-dev \
	dwarves kmod python3 curl clang libclang-rt-14-dev \
	liburing-dev libseccomp-dev e2fsprogs iproute2

CFLAGS_BASE := -std=gnu11 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
	-D_GNU_SOURCE -Isrc -Isrc/arch/$(ARCH) -MMD -MP \
	$(shell pkg-config --cflags $(PKGS) $(DLOPEN_PKGS) 2>/dev/null)
CFLAGS      ?= -O2
LDLIBS_BASE := -pthread $(shell pkg-config --libs $(PKGS) 2>/dev/null)
SAN_FLAGS   := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

SRCS := $(wildcard src/*.c src/api/*.c src/virtio/*.c src/devices/*.c src/arch/$(ARCH)/*.c)
ASMS := $(wildcard src/arch/$(ARCH)/*.S)
UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

.SECONDARY:
.PHONY: all deps check unit unit-asan guest-test api-test fuzz e2e demo clean help
all: $(BUILD)/kvmlite

help:
	@echo "make deps        install the Debian packages kvmlite needs (root)"
	@echo "make             build $(BUILD)/kvmlite (and the embedded guest)"
	@echo "make demo        deps + build + boot the embedded guest with 2 vCPUs"
	@echo "make check       deps + build + unit tests (plain and ASan/UBSan) + guest and Linux boot tests"
	@echo "make unit        unit tests only"
	@echo "make fuzz        the API request fuzzer for FUZZ_SECONDS (default 20)"
	@echo "make clean"

deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

include guest/guest.mk

# Two variants of every object: plain ($(BUILD)/obj) and sanitized ($(BUILD)/asan).
define variant
$(1)_OBJS := $$(patsubst %.c,$(BUILD)/$(1)/%.o,$$(SRCS)) $$(patsubst %.S,$(BUILD)/$(1)/%.o,$$(ASMS))
$(BUILD)/$(1)/%.o: %.c
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_BASE) $(2) -c $$< -o $$@
$(BUILD)/$(1)/%.o: %.S $(GUEST_ELF)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_BASE) -DGUEST_ELF='"$(GUEST_ELF)"' -c $$< -o $$@
$(BUILD)/$(1)/tests/%.o: tests/unit/%.c
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_BASE) $(2) $$(shell pkg-config --cflags $(TEST_PKGS)) -c $$< -o $$@
$(BUILD)/$(1)/tests/%: $(BUILD)/$(1)/tests/%.o $$(filter-out $(BUILD)/$(1)/src/main.o,$$($(1)_OBJS))
	$$(CC) $(2) -o $$@ $$^ $$(LDLIBS_BASE) $$(shell pkg-config --libs $(TEST_PKGS))
endef
$(eval $(call variant,obj,$(CFLAGS)))
$(eval $(call variant,asan,$(SAN_FLAGS)))

$(BUILD)/kvmlite: $(obj_OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS_BASE)
$(BUILD)/kvmlite-asan: $(asan_OBJS)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LDLIBS_BASE)

unit: $(addprefix $(BUILD)/obj/tests/,$(UNIT_TESTS))
	@tests/unit/run $(BUILD)/obj/tests $(UNIT_TESTS)
unit-asan: $(addprefix $(BUILD)/asan/tests/,$(UNIT_TESTS))
	@tests/unit/run $(BUILD)/asan/tests $(UNIT_TESTS)

guest-test: $(BUILD)/kvmlite $(BUILD)/kvmlite-asan
	tests/kvmhost/run --timeout 1200 -- tests/guest/run $(BUILD)/kvmlite $(BUILD)/kvmlite-asan
	tests/kvmhost/run --timeout 900 -- tests/guest/blk-crash $(BUILD)/kvmlite

api-test: $(BUILD)/kvmlite $(BUILD)/kvmlite-asan
	tests/e2e/run --prepare
	tests/kvmhost/run --timeout 1500 -- tests/api/run $(BUILD)/kvmlite $(BUILD)/kvmlite-asan

# A short libFuzzer run per target (tests/fuzz/run-*) in `make check`;
# longer by hand (tests/fuzz/run-TARGET SECONDS).
FUZZ_SECONDS ?= 20
fuzz:
	@status=0; for t in tests/fuzz/run-*; do $$t $(FUZZ_SECONDS) || status=1; done; exit $$status

# Kernels and initramfs are built (and cached) on this machine first: in the
# KVM test host the root file system is read-only.
e2e: $(BUILD)/kvmlite
	tests/e2e/run --prepare
	tests/kvmhost/run --timeout 3000 -- tests/e2e/run $(BUILD)/kvmlite
	tests/e2e/debian-cloud $(BUILD)/kvmlite

check: deps
	$(MAKE) all
	tests/check unit unit-asan fuzz guest-test api-test e2e

demo: deps
	$(MAKE) all
	tests/kvmhost/run -- $(BUILD)/kvmlite run --cpus 2

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)
