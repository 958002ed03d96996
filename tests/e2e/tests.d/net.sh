# e2e=net: the guest side of the virtio-net case (tests/e2e/cases.d/net.sh).
# Parameters from the command line:
#   net_token=HEX   what http://10.0.2.1:PORT/token.txt holds
#   net_mac=MAC     eth0's MAC (--net ...,mac=)
#   net_port=PORT   the host's httpd
#   net_big_md5=MD5 of http://10.0.2.1:PORT/big (4 MiB)

net_param() {
	for arg in $(cat /proc/cmdline); do
		case "$arg" in
		"$1"=*) echo "${arg#*=}" ;;
		esac
	done
}

# Feature bits the device must have negotiated with Linux: CSUM,
# GUEST_CSUM, MAC, GUEST_TSO4, GUEST_TSO6, HOST_TSO4, HOST_TSO6, MRG_RXBUF,
# STATUS, VERSION_1.
net_check_features() {
	vdev=$(basename "$(readlink /sys/class/net/eth0/device)")
	feats=$(cat "/sys/bus/virtio/devices/$vdev/features")
	say "eth0 is $vdev, features $feats"
	for bit in 0 1 5 7 8 11 12 15 16 32; do
		[ "$(echo "$feats" | cut -c$((bit + 1)))" = 1 ] || fail "virtio-net feature bit $bit not negotiated"
	done
}

test_net() {
	check_cpus
	token=$(net_param net_token)
	mac=$(net_param net_mac)
	port=$(net_param net_port)
	big_md5=$(net_param net_big_md5)
	i=0
	while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -e /sys/class/net/eth0 ] || { fail "no eth0"; return; }
	got_mac=$(cat /sys/class/net/eth0/address)
	[ "$got_mac" = "$mac" ] || fail "eth0's MAC is $got_mac, expected $mac"
	net_check_features

	ip link set lo up
	ip link set eth0 up || fail "ip link set eth0 up"
	ip addr add 10.0.2.15/24 dev eth0 || fail "ip addr add 10.0.2.15/24 dev eth0"
	# VIRTIO_NET_F_STATUS says link up: the carrier is on.
	i=0
	while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] || fail "eth0 has no carrier"

	if ping -c 3 -W 5 10.0.2.1 >/tmp/ping.log 2>&1; then
		say "ping: $(grep -E 'packets transmitted' /tmp/ping.log)"
	else
		fail "ping 10.0.2.1: $(tail -n 2 /tmp/ping.log | tr '\n' ' ')"
	fi

	url=http://10.0.2.1:$port
	got=$(timeout 60 wget -q -O - "$url/token.txt") || fail "wget $url/token.txt failed"
	[ "$got" = "$token" ] || fail "token.txt holds '$got', expected '$token'"

	# 4 MiB from the host: TSO frames into merged receive buffers.
	if timeout 120 wget -q -O /tmp/big "$url/big"; then
		sum=$(md5sum </tmp/big | cut -d' ' -f1)
		say "downloaded $(wc -c </tmp/big) bytes, md5 $sum"
		[ "$sum" = "$big_md5" ] || fail "md5 of the 4 MiB download is $sum, expected $big_md5"
	else
		fail "wget $url/big failed"
	fi

	# 3 MiB to the host (text: busybox wget posts a string): TSO frames out.
	head -c 1048576 /dev/urandom | od -An -v -tx1 >/tmp/up
	sum=$(md5sum </tmp/up | cut -d' ' -f1)
	got=$(timeout 120 wget -q -O - --post-file /tmp/up "$url/cgi-bin/up") || fail "uploading to $url/cgi-bin/up failed"
	say "uploaded $(wc -c </tmp/up) bytes, md5 $sum, the host got $got"
	[ "$got" = "$sum" ] || fail "the host's md5 of the upload is '$got', expected $sum"
}
