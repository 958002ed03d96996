/* The tiny guest kvmlite boots when no --kernel is given: greets on COM1,
 * finds the CPUs and power-off in ACPI, starts every AP, then powers off;
 * or runs one device test selected by test=... on the command line. */
#include "guest.h"

#define PVH_MAGIC 0x336ec578u

/* struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h) */
#define SI_MAGIC   0
#define SI_CMDLINE 24
#define SI_RSDP    32

enum guest_mode {
	MODE_NORMAL, MODE_PIO, MODE_MMIO, MODE_SERIAL, MODE_EXIT_CODE, MODE_FAIL, MODE_SPIN, MODE_FALLBACK,
	MODE_COUNTER, MODE_VIRTIO_RNG, MODE_VIRTIO_BLK, MODE_VIRTIO_BLK_RO, MODE_VIRTIO_HOSTILE, MODE_BLK_CRASH,
	MODE_UNKNOWN
};

static const struct {
	const char *name;
	enum guest_mode mode;
} modes[] = {
	{ "pio", MODE_PIO }, { "mmio", MODE_MMIO }, { "serial", MODE_SERIAL }, { "exit-code", MODE_EXIT_CODE },
	{ "fail", MODE_FAIL }, { "spin", MODE_SPIN }, { "fallback", MODE_FALLBACK }, { "counter", MODE_COUNTER },
	{ "virtio-rng", MODE_VIRTIO_RNG }, { "virtio-blk", MODE_VIRTIO_BLK }, { "virtio-blk-ro", MODE_VIRTIO_BLK_RO },
	{ "virtio-hostile", MODE_VIRTIO_HOSTILE }, { "blk-crash", MODE_BLK_CRASH },
};

static struct acpi_info acpi;
uint64_t guest_start_info;

/* The value of the last test=... token of cmdline (NULL: none). */
static enum guest_mode parse_cmdline(const char *cmdline)
{
	enum guest_mode mode = MODE_NORMAL;
	size_t i = 0;

	if (!cmdline)
		return mode;
	/* Bounded: the VMM's limit is 64 KiB. */
	while (i < 0x10000 && cmdline[i]) {
		size_t start, len;

		while (cmdline[i] == ' ')
			i++;
		start = i;
		while (i < 0x10000 && cmdline[i] && cmdline[i] != ' ')
			i++;
		len = i - start;
		if (len < 5 || memcmp(cmdline + start, "test=", 5))
			continue;
		start += 5;
		len -= 5;
		mode = MODE_UNKNOWN;
		for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
			if (strlen(modes[m].name) == len && !memcmp(cmdline + start, modes[m].name, len))
				mode = modes[m].mode;
	}
	return mode;
}

static __attribute__((noreturn)) void power_off(void)
{
	serial_puts("kvmlite guest: powering off\n");
	if (acpi.pm1a_cnt) {
		outw((uint16_t)acpi.pm1a_cnt, (uint16_t)(acpi.slp_typ_s5 << 10 | 1 << 13)); /* SLP_TYPa | SLP_EN */
	} else {
		uint8_t v = (uint8_t)(acpi.slp_typ_s5 << 2 | 1 << 5); /* SLP_TYPx | SLP_EN */
		if (acpi.sleep_ctl_io)
			outb((uint16_t)acpi.sleep_ctl, v);
		else
			mmio_write8(acpi.sleep_ctl, v);
	}
	/* Powering off may take the VMM a moment; staying on is a failure. */
	for (uint32_t i = 0; i < (1u << 26); i++)
		cpu_relax();
	guest_fail("still running after ACPI power-off");
}

__attribute__((noreturn)) void main(uint32_t start_info);
void main(uint32_t start_info)
{
	const uint8_t *si = phys_ptr(start_info);
	uint64_t cmdline_pa = 0, rsdp_pa = 0;
	const char *why = NULL;
	int n;

	serial_init();
	guest_idt_load();
	serial_puts("kvmlite guest: hello\n");

	if (!start_info || *(const uint32_t *)(si + SI_MAGIC) != PVH_MAGIC)
		guest_fail("no PVH start_info (bad magic)");
	/* Read start_info before the trampoline may reuse low memory. */
	memcpy(&cmdline_pa, si + SI_CMDLINE, 8);
	memcpy(&rsdp_pa, si + SI_RSDP, 8);
	guest_start_info = start_info;
	if (cmdline_pa >= 0x100000000ULL - 0x10000)
		cmdline_pa = 0;

	switch (parse_cmdline(cmdline_pa ? phys_ptr(cmdline_pa) : NULL)) {
	case MODE_PIO: test_pio();
	case MODE_MMIO: test_mmio();
	case MODE_SERIAL: test_serial();
	case MODE_EXIT_CODE: test_exit_code();
	case MODE_FAIL: guest_fail("test=fail asked for a failure");
	case MODE_SPIN: test_spin();
	case MODE_FALLBACK: test_fallback();
	case MODE_COUNTER: test_counter();
	case MODE_VIRTIO_RNG: test_virtio_rng();
	case MODE_VIRTIO_BLK: test_virtio_blk(false);
	case MODE_VIRTIO_BLK_RO: test_virtio_blk(true);
	case MODE_VIRTIO_HOSTILE: test_virtio_hostile();
	case MODE_BLK_CRASH: test_blk_crash();
	case MODE_UNKNOWN: guest_fail("unknown test= mode");
	case MODE_NORMAL: break;
	}

	/* bench=...: idle never returns; pio and mmio boot on as usual. */
	if (cmdline_pa)
		bench_run(phys_ptr(cmdline_pa), rsdp_pa);

	if (acpi_probe(rsdp_pa, &acpi, &why))
		guest_fail(why);
	n = smp_boot(&acpi, &why);
	if (n < 0)
		guest_fail(why);
	serial_puts("kvmlite guest: ");
	serial_put_dec((uint64_t)n);
	serial_putc('/');
	serial_put_dec((uint64_t)acpi.nr_cpus);
	serial_puts(" vCPUs checked in\n");
	if (n != acpi.nr_cpus)
		guest_fail("not every vCPU checked in");
	power_off();
}
