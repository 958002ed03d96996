# The embedded tiny guest (placeholder until guest/ is written).
GUEST_ELF := $(BUILD)/guest/kvmlite-guest.elf
$(GUEST_ELF):
	@mkdir -p $(@D)
	printf '' > $@
