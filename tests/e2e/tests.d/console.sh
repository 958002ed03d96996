# e2e=console: the guest side of the virtio-console case
# (tests/e2e/cases.d/misc.sh). Booted with --console virtio and
# console=hvc0: every marker the harness reads came through hvc0. Also
# writes a line to ttyS0, which the host must not print (the 16550 stays
# but is silent).
test_console() {
	check_cpus
	active=$(cat /sys/class/tty/console/active 2>/dev/null)
	say "console active: $active"
	case " $active " in
	*" hvc0 "*) ;;
	*) fail "/sys/class/tty/console/active is '$active', expected hvc0" ;;
	esac
	[ -c /dev/hvc0 ] || fail "no /dev/hvc0"
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device" 2>/dev/null)" = 0x0003 ] && say "virtio-console: $(basename "$d")"
	done
	if [ -c /dev/ttyS0 ]; then
		echo "KVMLITE-E2E: through ttyS0" >/dev/ttyS0 || fail "writing to /dev/ttyS0 failed"
	else
		fail "no /dev/ttyS0 (the 16550 should stay)"
	fi
	# Longer than a pipe's buffer in one go: written in several chunks.
	line=$(printf '%0200d' 0)
	i=0
	while [ $i -lt 100 ]; do
		echo "$line" 
		i=$((i + 1))
	done >/dev/console
	say "hvc0 output done"
}
