# Cases of the small virtio devices (guest side: tests/e2e/tests.d/rng.sh,
# console.sh):
#   virtio-rng      the default virtio-rng is the guest's hw_random source
#                   and /dev/hwrng gives random bytes
#   no-rng          --no-rng: no virtio-rng in the guest
#   virtio-console  --console virtio, console=hvc0: the markers come through
#                   hvc0; a line written to ttyS0 must not reach the host
e2e_case virtio-rng bzImage 1 rng 0 - misc_rng_check
e2e_case no-rng bzImage 1 rng_off 0 misc_no_rng_setup -
e2e_case virtio-console bzImage 1 console 0 misc_console_setup misc_console_check

# --stats prints "virtio-rng: requests=N bytes=N ...": the guest's reads
# went through the device.
misc_rng_check() {
	local bytes
	bytes=$(grep -aoE '^virtio-rng: .*' "$log" | grep -oE 'bytes=[0-9]+' | cut -d= -f2)
	if [ -z "$bytes" ] || [ "$bytes" -lt 8192 ]; then
		why="virtio-rng stats show ${bytes:-no} bytes, expected at least 8192"
		return 1
	fi
}

misc_no_rng_setup() {
	case_args=(--no-rng)
}

misc_console_setup() {
	case_args=(--console virtio) # the default command line then says console=hvc0
	# Debian's 6.1 resets virtio devices at shutdown (virtio_dev_shutdown)
	# before it prints "reboot: Power down", so hvc0 cannot show that line:
	# the exit status (0, not the panic's 3) tells the power-off instead.
	case_want="KVMLITE-E2E: userspace reached|KVMLITE-E2E: cpus=1|KVMLITE-E2E: PASS"
}

misc_console_check() {
	if grep -qaF "KVMLITE-E2E: through ttyS0" "$log"; then
		why="a line written to ttyS0 reached the host with --console virtio"
		return 1
	fi
	if [ "$(grep -acE '^0{200}' "$log")" -ne 100 ]; then
		why="the guest's 100 long lines on hvc0 are not all in the log ($(grep -acE '^0{200}' "$log") found)"
		return 1
	fi
	# The kernel's own messages come through hvc0 as well.
	grep -qaE 'Linux version|Run /init' "$log" || { why="no kernel messages on hvc0"; return 1; }
}
