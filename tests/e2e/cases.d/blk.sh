# virtio-blk cases (guest side: tests/e2e/tests.d/blk.sh). Each boots with
# a 64 MiB ext4 image made here whose /hello.txt holds a random token.
#   virtio-blk-msix  read-write, MSI-X: the guest checks the token, writes
#                    out.txt and a 4 MiB file, trims; the host finds both
#   virtio-blk-intx  the same with pci=nomsi: interrupts through INTx
#   virtio-blk-ro    --disk ...,readonly: reads work, writes fail, and the
#                    image is unchanged afterwards
e2e_case virtio-blk-msix bzImage 2 blk 0 blk_setup_msix blk_check_rw
e2e_case virtio-blk-intx bzImage 1 blk 0 blk_setup_intx blk_check_rw
e2e_case virtio-blk-ro bzImage 1 blk_ro 0 blk_setup_ro blk_check_ro

blk_disk_sectors=$((64 * 1024 * 1024 / 512))

# disk.img with hello.txt; token and disk.sum (its checksum) beside it.
blk_make_image() {
	local token
	token=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n') || return 1
	mkdir -p content && echo "$token" >content/hello.txt || return 1
	echo "$token" >token || return 1
	mkfs.ext4 -F -q -d content disk.img 64M || return 1
	sha256sum disk.img | cut -d' ' -f1 >disk.sum
}

blk_setup_msix() {
	blk_make_image || return 1
	case_args=(--disk "$case_dir/disk.img,id=kvmlite-e2e")
	case_append="blk_token=$(cat token) blk_irq=msix blk_serial=kvmlite-e2e"
}

blk_setup_intx() {
	blk_make_image || return 1
	case_args=(--disk "$case_dir/disk.img")
	case_append="pci=nomsi blk_token=$(cat token) blk_irq=intx blk_serial=kvmlite-disk0"
}

blk_setup_ro() {
	blk_make_image || return 1
	case_args=(--disk "$case_dir/disk.img,readonly")
	case_append="blk_token=$(cat token)"
}

# What the guest wrote must be in the image: out.txt ("guest-TOKEN-SECTORS
# MD5") and /big with that MD5; and the file system must be clean.
blk_check_rw() {
	local token out want sum
	token=$(cat token)
	out=$(debugfs -R 'cat /out.txt' disk.img 2>/dev/null)
	debugfs -R 'dump /big big' disk.img >/dev/null 2>&1
	sum=$(md5sum big 2>/dev/null | cut -d' ' -f1)
	want="guest-$token-$blk_disk_sectors $sum"
	if [ "$out" != "$want" ]; then
		why="out.txt in the image holds '$out', expected '$want' (md5 of /big in the image: '$sum')"
		return 1
	fi
	if ! e2fsck -f -n disk.img >fsck.log 2>&1; then
		why="e2fsck finds errors in the image: $(tail -n 3 fsck.log | tr '\n' ' ')"
		return 1
	fi
}

blk_check_ro() {
	if [ "$(sha256sum disk.img | cut -d' ' -f1)" != "$(cat disk.sum)" ]; then
		why="the read-only image changed"
		return 1
	fi
}
