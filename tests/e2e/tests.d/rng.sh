# e2e=rng, e2e=rng_off: the guest side of the virtio-rng cases
# (tests/e2e/cases.d/misc.sh).

# The hw_random core's current source ("none" without one).
rng_current() {
	for f in /sys/class/misc/hw_random/rng_current /sys/devices/virtual/misc/hw_random/rng_current; do
		if [ -r "$f" ]; then
			cat "$f"
			return
		fi
	done
	echo none
}

# e2e=rng: virtio-rng (on by default) is the hardware RNG and gives
# random bytes: not all zero, and two reads differ.
test_rng() {
	check_cpus
	cur=$(rng_current)
	say "hw_random: $cur"
	case "$cur" in
	virtio_rng.*) ;;
	*) fail "rng_current is '$cur', expected virtio_rng.N"; return ;;
	esac
	[ -c /dev/hwrng ] || { fail "no /dev/hwrng"; return; }
	head -c 4096 /dev/hwrng >/tmp/rng1 || fail "reading /dev/hwrng failed"
	head -c 4096 /dev/hwrng >/tmp/rng2 || fail "reading /dev/hwrng again failed"
	n=$(wc -c </tmp/rng1)
	[ "$n" -eq 4096 ] || fail "read $n bytes from /dev/hwrng, expected 4096"
	od -An -v -tx1 /tmp/rng1 | tr -d ' \n' | grep -q '[1-9a-f]' || fail "4096 bytes from /dev/hwrng are all zero"
	cmp -s /tmp/rng1 /tmp/rng2 && fail "two reads of /dev/hwrng gave the same bytes"
	say "hwrng: 2 x $n bytes, they differ"
}

# e2e=rng_off: with --no-rng there is no virtio-rng.
test_rng_off() {
	check_cpus
	cur=$(rng_current)
	say "hw_random: $cur"
	case "$cur" in
	virtio_rng.*) fail "--no-rng, yet rng_current is '$cur'" ;;
	esac
	for d in /sys/bus/virtio/devices/*; do
		[ -r "$d/device" ] || continue
		# virtio device ID 4: entropy source
		[ "$(cat "$d/device")" = 0x0004 ] && fail "--no-rng, yet $d is a virtio-rng"
	done
}
