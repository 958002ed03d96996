# e2e=vsock: the guest side of the virtio-vsock case (tests/e2e/cases.d/vsock.sh).
# The host's helper (tests/e2e/vsock_host.py) listens on PATH_5000 and
# uppercases what it gets; it also connects to PATH twice ("CONNECT 1234"):
# a short token, then 1 MiB, each echoed back by our listener.
test_vsock() {
	check_cpus
	vsock_echo listen 1234 2 >/tmp/vsock-listen.log 2>&1 &
	listener=$!

	# guest -> host
	out=$(vsock_echo connect 2 5000 hello) || fail "vsock_echo connect 2 5000: $out"
	say "vsock guest-initiated: got '$out'"
	[ "$out" = HELLO ] || fail "guest-initiated: got '$out', expected HELLO"
	# no listener on PATH_5001: refused at once, not hung
	if out=$(vsock_echo connect 2 5001 x 2>&1); then
		fail "connecting to port 5001 (nobody listens) succeeded: $out"
	fi

	# host -> guest: the listener exits after the host's two connections
	n=0
	while kill -0 "$listener" 2>/dev/null; do
		n=$((n + 1))
		if [ "$n" -gt 1200 ]; then
			fail "the host did not complete its connections to port 1234 in 120 s"
			kill "$listener"
			break
		fi
		sleep 0.1
	done
	wait "$listener" || fail "vsock_echo listen failed"
	while read -r line; do say "vsock host-initiated: $line"; done </tmp/vsock-listen.log
	[ "$(grep -c '^vsock_echo: echoed' /tmp/vsock-listen.log)" = 2 ] || fail "the listener did not echo two connections"
}
