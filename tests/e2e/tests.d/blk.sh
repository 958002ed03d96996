# virtio-blk guest tests (host side: tests/e2e/cases.d/blk.sh). Parameters
# from the command line:
#   blk_token=HEX    what the host wrote to /hello.txt on the disk
#   blk_irq=msix|intx  how the disk's interrupts must arrive
#   blk_serial=ID    what /sys/block/vda/serial must read (GET_ID)

blk_param() {
	for arg in $(cat /proc/cmdline); do
		case "$arg" in
		"$1"=*) echo "${arg#*=}" ;;
		esac
	done
}

# The disk appears once virtio-pci probed it; the probe may still run.
blk_wait_disk() {
	i=0
	while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -b /dev/vda ]
}

# The /proc/interrupts lines of the disk's virtio device (virtioN).
blk_irq_lines() {
	vdev=$(basename "$(readlink /sys/block/vda/device)")
	grep -E "[[:space:]]$vdev(-[a-z0-9.]+)?(,|\$)" /proc/interrupts
}

blk_check_irq() {
	want=$1
	lines=$(blk_irq_lines)
	say "vda interrupts: $(echo "$lines" | tr -s ' \n' ' ')"
	[ -n "$lines" ] || { fail "no /proc/interrupts line for the disk"; return; }
	case "$want" in
	msix)
		# per-queue vectors: virtioN-req.0 (6.1), virtioN-requests (older)
		echo "$lines" | grep -q -- "$vdev-req" || fail "no per-queue (MSI-X) interrupt for vda"
		echo "$lines" | grep -q "MSI" || fail "vda's interrupts are not MSI"
		echo "$lines" | grep -q "IO-APIC" && fail "vda uses an IO-APIC line with MSI-X on"
		;;
	intx)
		echo "$lines" | grep -q "IO-APIC" || fail "vda has no IO-APIC (INTx) line"
		echo "$lines" | grep -q "MSI" && fail "vda uses MSI with pci=nomsi"
		;;
	esac
	# Each line: the number, one count per CPU, then the chip: the sum of
	# the counts must show that the disk did interrupt.
	total=0
	ncpu=$(head -n 1 /proc/interrupts | wc -w)
	for n in $(echo "$lines" | awk -v n="$ncpu" '{ s = 0; for (i = 2; i <= n + 1; i++) s += $i; print s }'); do
		total=$((total + n))
	done
	[ "$total" -gt 0 ] || fail "no interrupt counted for vda"
}

blk_check_serial() {
	want=$(blk_param blk_serial)
	[ -z "$want" ] && return
	got=$(cat /sys/block/vda/serial 2>/dev/null)
	[ "$got" = "$want" ] || fail "vda serial is '$got', expected '$want' (GET_ID)"
}

# e2e=blk: mount the ext4 disk, check the host's token, write out.txt and
# a larger file (the host checks both), trim, and check the interrupts.
test_blk() {
	check_cpus
	token=$(blk_param blk_token)
	[ -n "$token" ] || { fail "no blk_token= on the command line"; return; }
	blk_wait_disk || { fail "no /dev/vda"; return; }
	size=$(cat /sys/block/vda/size)
	say "vda: $size sectors, ro=$(cat /sys/block/vda/ro), serial='$(cat /sys/block/vda/serial 2>/dev/null)'"
	blk_check_serial
	[ "$(cat /sys/block/vda/ro)" = 0 ] || fail "vda is read-only"
	mkdir -p /mnt
	mount -t ext4 /dev/vda /mnt || { fail "cannot mount /dev/vda"; return; }
	got=$(cat /mnt/hello.txt)
	[ "$got" = "$token" ] || fail "hello.txt holds '$got', expected '$token'"
	# 4 MiB of random data: multi-segment writes, then read back after
	# a remount (which empties the page cache of this file system).
	dd if=/dev/urandom of=/mnt/big bs=64k count=64 2>/dev/null || fail "cannot write /mnt/big"
	sum=$(md5sum /mnt/big | cut -d' ' -f1)
	echo "guest-$token-$size $sum" >/mnt/out.txt || fail "cannot write out.txt"
	echo "scratch" >/mnt/scratch && sync && rm /mnt/scratch
	sync
	umount /mnt || fail "umount"
	mount -t ext4 /dev/vda /mnt || { fail "cannot mount /dev/vda again"; return; }
	[ "$(md5sum /mnt/big | cut -d' ' -f1)" = "$sum" ] || fail "/mnt/big reads back different"
	trimmed=$(fstrim -v /mnt 2>&1) || fail "fstrim: $trimmed"
	say "fstrim: $trimmed"
	umount /mnt || fail "umount"
	blk_check_irq "$(blk_param blk_irq)"
}

# e2e=blk_ro: the disk is read-only to the guest: reads work, writes fail.
test_blk_ro() {
	check_cpus
	token=$(blk_param blk_token)
	blk_wait_disk || { fail "no /dev/vda"; return; }
	ro=$(cat /sys/block/vda/ro)
	say "vda: $(cat /sys/block/vda/size) sectors, ro=$ro"
	[ "$ro" = 1 ] || fail "/sys/block/vda/ro is '$ro', expected 1"
	dd if=/dev/vda of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null || fail "direct read of /dev/vda failed"
	if dd if=/dev/zero of=/dev/vda bs=4096 count=1 oflag=direct 2>/dev/null; then
		fail "a direct write to the read-only /dev/vda succeeded"
	else
		say "direct write to /dev/vda refused, as it should be"
	fi
	mkdir -p /mnt
	if mount -t ext4 -o ro /dev/vda /mnt; then
		got=$(cat /mnt/hello.txt)
		[ "$got" = "$token" ] || fail "hello.txt holds '$got', expected '$token'"
		{ echo x >/mnt/new; } 2>/dev/null && fail "wrote to the read-only mount"
		umount /mnt || fail "umount"
	else
		fail "cannot mount /dev/vda read-only"
	fi
	blk_check_irq msix
}
