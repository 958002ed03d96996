/* test=counter: the BSP counts and prints "count=N" on COM1 after every
 * COUNTER_SPIN pauses; the APs are never started (they wait for INIT/SIPI
 * in KVM). The host pauses and resumes the VM under it and checks that
 * the printed values go up by exactly one from line to line: nothing is
 * lost or repeated across a pause, and counting goes on after a resume. */
#include "guest.h"

#define COUNTER_SPIN (1u << 20) /* a line every few ms, also under nested TCG */

void test_counter(void)
{
	serial_puts("kvmlite guest: counting\n");
	for (uint64_t count = 1;; count++) {
		for (uint32_t i = 0; i < COUNTER_SPIN; i++)
			cpu_relax();
		serial_puts("count=");
		serial_put_dec(count);
		serial_putc('\n');
	}
}
