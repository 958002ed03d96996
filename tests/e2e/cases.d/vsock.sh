# virtio-vsock: guest-initiated (guest -> PATH_5000, answered uppercased) and
# host-initiated (CONNECT 1234 on PATH, echoed by the guest) connections,
# the host side run by tests/e2e/vsock_host.py in the background.
e2e_vsock_setup() {
	rm -f vsock-result v.sock v.sock_5000
	case_args=(--vsock "cid=3,uds=$case_dir/v.sock")
	python3 "$here/vsock_host.py" "$case_dir/v.sock" "$case_dir/vsock-result" "$timeout_s" \
		>"$case_dir/vsock-host.log" 2>&1 &
	echo $! >vsock-host.pid
	# the guest connects to PATH_5000 early: wait until it listens (python
	# starts slowly in the emulated test host)
	for _ in $(seq 600); do
		[ -S v.sock_5000 ] && return 0
		sleep 0.1
	done
	echo "vsock_host.py did not listen on $case_dir/v.sock_5000 in 60 s: $(tail -n 3 vsock-host.log)"
	return 1
}

e2e_vsock_check() {
	local pid
	pid=$(cat vsock-host.pid 2>/dev/null) || pid=""
	# it finishes once its connections are done; give it a moment
	for _ in $(seq 50); do
		[ -s vsock-result ] && break
		sleep 0.1
	done
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	if ! [ -s vsock-result ]; then
		why="host side: no result ($(tail -n 3 vsock-host.log 2>/dev/null | tr '\n' ' '))"
		return 1
	fi
	case $(cat vsock-result) in
	PASS*) return 0 ;;
	*) why="host side: $(cat vsock-result)"; return 1 ;;
	esac
}

e2e_case virtio-vsock bzImage 1 vsock 0 e2e_vsock_setup e2e_vsock_check
