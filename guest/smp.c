/* Application processor bring-up: INIT + 2 x STARTUP IPIs per AP through
 * the xAPIC, a real-mode trampoline at TRAMPOLINE_ADDR (entry.S), and a
 * checked-in bitmap each AP marks with its own APIC ID. */
#include "guest.h"

#define LAPIC_ID       0x020
#define LAPIC_SVR      0x0F0
#define LAPIC_ICR_LO   0x300
#define LAPIC_ICR_HI   0x310
#define ICR_BUSY       (1u << 12)
#define ICR_INIT       0x00004500u /* INIT, level assert */
#define ICR_STARTUP    0x00004600u /* STARTUP, vector in bits 0-7 */
#define XAPIC_MAX_ID   0xFE       /* 0xFF is the broadcast destination */
#define WAIT_SPINS     (1u << 26) /* bound on waiting for the APs */

extern const char trampoline_start[], trampoline_end[];

static uint64_t lapic_base = X86_LAPIC_ADDR;
static uint64_t checked_in[4]; /* bitmap of xAPIC IDs */
static uint32_t nr_checked_in;

static uint32_t lapic_read(uint32_t reg) { return mmio_read32(lapic_base + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(lapic_base + reg, v); }

static void spin(unsigned n)
{
	while (n--)
		cpu_relax();
}

static int send_ipi(uint32_t apic_id, uint32_t icr)
{
	unsigned i;

	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr);
	for (i = 0; i < 1000000 && (lapic_read(LAPIC_ICR_LO) & ICR_BUSY); i++)
		cpu_relax();
	return (lapic_read(LAPIC_ICR_LO) & ICR_BUSY) ? -1 : 0;
}

/* Called by entry.S on each AP, in long mode on its own stack. */
__attribute__((noreturn)) void ap_main(void);
void ap_main(void)
{
	uint32_t id = lapic_read(LAPIC_ID) >> 24;
	uint64_t bit = 1ULL << (id % 64);

	guest_idt_load();
	if (!(__atomic_fetch_or(&checked_in[id / 64], bit, __ATOMIC_SEQ_CST) & bit))
		__atomic_fetch_add(&nr_checked_in, 1, __ATOMIC_SEQ_CST);
	guest_halt();
}

static bool is_checked_in(uint32_t id)
{
	return __atomic_load_n(&checked_in[id / 64], __ATOMIC_SEQ_CST) & (1ULL << (id % 64));
}

int smp_boot(const struct acpi_info *ai, const char **why)
{
	size_t tlen = (size_t)(trampoline_end - trampoline_start);
	uint32_t bsp_id, expected = 0;
	bool bsp_listed = false;
	int n = 0;

	if (ai->lapic_addr && ai->lapic_addr < 0x100000000ULL)
		lapic_base = ai->lapic_addr;
	/* Software-enable the LAPIC (SVR bit 8), spurious vector 0xFF. */
	lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x1FF);
	bsp_id = lapic_read(LAPIC_ID) >> 24;

	for (int i = 0; i < ai->nr_cpus; i++) {
		if (ai->apic_ids[i] == bsp_id) {
			bsp_listed = true;
			continue;
		}
		if (ai->apic_ids[i] > XAPIC_MAX_ID) {
			*why = "APIC ID beyond xAPIC reach";
			return -1;
		}
		expected++;
	}
	if (!bsp_listed) {
		*why = "boot CPU not in the MADT";
		return -1;
	}

	/* The trampoline page: below the VMM's Linux page tables at 0x9000
	 * (unused in a PVH boot) and away from start_info at 0x6000. */
	if (tlen > 0x1000) {
		*why = "trampoline too large";
		return -1;
	}
	memcpy(phys_ptr(TRAMPOLINE_ADDR), trampoline_start, tlen);
	__asm__ volatile("mfence" : : : "memory");

	for (int i = 0; i < ai->nr_cpus; i++) {
		uint32_t id = ai->apic_ids[i];

		if (id == bsp_id)
			continue;
		if (send_ipi(id, ICR_INIT)) {
			*why = "INIT IPI not delivered";
			return -1;
		}
		spin(10000);
		for (int k = 0; k < 2; k++) {
			if (send_ipi(id, ICR_STARTUP | (TRAMPOLINE_ADDR >> 12))) {
				*why = "STARTUP IPI not delivered";
				return -1;
			}
			spin(1000);
		}
	}

	for (uint32_t i = 0; i < WAIT_SPINS && __atomic_load_n(&nr_checked_in, __ATOMIC_SEQ_CST) < expected; i++)
		cpu_relax();

	/* Count only the CPUs the MADT lists: the BSP plus each AP seen. */
	for (int i = 0; i < ai->nr_cpus; i++)
		if (ai->apic_ids[i] == bsp_id || is_checked_in(ai->apic_ids[i]))
			n++;
	return n;
}
