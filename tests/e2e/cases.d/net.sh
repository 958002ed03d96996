# virtio-net case (guest side: tests/e2e/tests.d/net.sh). The setup makes a
# tap kvl-tap0 with 10.0.2.1/24 and runs busybox httpd on it: token.txt (a
# random token), big (4 MiB, its MD5 passed to the guest) and a CGI that
# stores what the guest POSTs and answers its MD5. The guest (10.0.2.15)
# pings the host, fetches both files, uploads 3 MiB; the check wants clean
# virtio-net counters.
#
# The tap, the server and kvmlite live in a network namespace of the test's
# own (kvl-e2e), so the host's network is neither used nor changed.
e2e_case virtio-net bzImage 2 net 0 net_setup net_check

net_ns=kvl-e2e
net_tap=kvl-tap0
net_mac=06:6b:76:6c:00:42

net_cleanup() {
	local pid
	pid=$(cat httpd.pid 2>/dev/null) || pid=""
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	rm -f httpd.pid
	ip netns del "$net_ns" 2>/dev/null || true
}

net_setup() {
	command -v ip >/dev/null || { echo "no ip command (iproute2)"; return 1; }
	[ -c /dev/net/tun ] || { echo "no /dev/net/tun"; return 1; }
	ip netns del "$net_ns" 2>/dev/null || true
	ip netns add "$net_ns" || return 1
	ip -n "$net_ns" link set lo up || return 1
	ip -n "$net_ns" tuntap add dev "$net_tap" mode tap || return 1
	ip -n "$net_ns" addr add 10.0.2.1/24 dev "$net_tap" || return 1
	ip -n "$net_ns" link set "$net_tap" up || return 1

	local token port
	token=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n') || return 1
	mkdir -p www/cgi-bin || return 1
	echo "$token" >www/token.txt
	head -c 4194304 /dev/urandom >www/big || return 1
	cat >www/cgi-bin/up <<'CGI'
#!/bin/sh
# Stores the POSTed body as $UPLOAD_PATH and answers its MD5.
head -c "${CONTENT_LENGTH:-0}" >"$UPLOAD_PATH.tmp" && mv "$UPLOAD_PATH.tmp" "$UPLOAD_PATH"
printf 'Content-Type: text/plain\r\n\r\n'
md5sum <"$UPLOAD_PATH" | cut -d' ' -f1
CGI
	chmod +x www/cgi-bin/up
	# A port of its own, so that a server left by an earlier run is no bother.
	port=$((20000 + RANDOM % 10000))
	UPLOAD_PATH=$case_dir/upload timeout "$timeout_s" ip netns exec "$net_ns" busybox httpd -f -p "10.0.2.1:$port" \
		-h "$case_dir/www" >httpd.log 2>&1 &
	echo $! >httpd.pid
	case_args=(--net "tap=$net_tap,mac=$net_mac")
	case_wrap=(ip netns exec "$net_ns")
	case_append="net_token=$token net_mac=$net_mac net_port=$port net_big_md5=$(md5sum <www/big | cut -d' ' -f1)"
}

# --stats prints "virtio-net0: tx_frames=N ...": frames both ways, none
# dropped or refused.
net_check() {
	local stats
	net_cleanup
	stats=$(grep -aE '^virtio-net0:' "$log" | tail -n 1)
	if [ -z "$stats" ]; then
		why="no virtio-net0 stats in the log"
		return 1
	fi
	net_stat() { echo "$stats" | grep -oE " $1=[0-9]+" | cut -d= -f2; }
	if [ "$(net_stat tx_frames)" -lt 10 ] || [ "$(net_stat rx_frames)" -lt 10 ]; then
		why="too few frames: $stats"
	elif [ "$(net_stat tx_dropped)" -ne 0 ] || [ "$(net_stat tx_errors)" -ne 0 ] || [ "$(net_stat rx_errors)" -ne 0 ]; then
		why="frames dropped or refused: $stats"
	elif ! [ -s upload ]; then
		why="the guest's upload did not arrive"
	fi
	[ -z "$why" ]
}
