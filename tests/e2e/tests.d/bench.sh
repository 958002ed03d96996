# e2e=bench_io: the guest side of bench/io. Measures /dev/vda with blkbench
# and the network to the host with netbench, printing their BENCH lines;
# bench/io reads them off the console. Parameters from the command line:
#   bench_secs=N      seconds per disk measurement (default 5)
#   bench_net=IP      the host's address (the guest takes .2 of its /24)
#   bench_mib=N       MiB per network transfer (default 256)
test_bench_io() {
	secs=5 host="" mib=256
	for arg in $(cat /proc/cmdline); do
		case "$arg" in
		bench_secs=*) secs=${arg#bench_secs=} ;;
		bench_net=*) host=${arg#bench_net=} ;;
		bench_mib=*) mib=${arg#bench_mib=} ;;
		esac
	done
	[ -b /dev/vda ] || { fail "no /dev/vda"; return; }
	blkbench /dev/vda randread "$secs" 4096 4 || fail "blkbench randread"
	blkbench /dev/vda randwrite "$secs" 4096 4 || fail "blkbench randwrite"
	blkbench /dev/vda seqread "$secs" 1048576 1 || fail "blkbench seqread"
	blkbench /dev/vda seqwrite "$secs" 1048576 1 || fail "blkbench seqwrite"
	if [ -n "$host" ]; then
		ip link set eth0 up && ip addr add "${host%.*}.2/24" dev eth0 || { fail "cannot configure eth0"; return; }
		# The host's server may still be starting: a few tries.
		for dir in tx rx; do
			n=0
			until netbench client "$host" 5600 "$mib" "$dir"; do
				n=$((n + 1))
				[ $n -lt 10 ] || { fail "netbench $dir"; break; }
				sleep 1
			done
		done
	fi
}
