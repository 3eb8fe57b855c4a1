#!/bin/sh
# `make image-test`: boots Debian 12 arm64 (what Raspberry Pi OS 64-bit is)
# under qemu-system-aarch64 with the tlsgate package installed, and reads
# the verdict of the in-guest test (guest/tlsgate-image-test) from the
# serial console.  Needs root, qemu-user-static (binfmt, to run the guest's
# maintainer scripts while building its root file system), mmdebstrap,
# qemu-system-arm; packaging/deps.sh image installs them.
#
#   1. the arm64 package: IMAGE_TEST_DEB, or `make deb ARCH=arm64`
#   2. a base root file system (systemd, python3, curl, openssl and the
#      package's libraries) and Debian's arm64 kernel, made once with
#      mmdebstrap and cached in build-pkg/image/ (delete build-pkg/image/base to
#      refresh; build-pkg/ because the Makefile includes every *.d under
#      build/, and a root file system has directories named so)
#   3. a copy of it with the package installed by dpkg (which enables
#      tlsgate.service), the test's config, PKI, upstream and unit
#   4. packed as a gzip'd newc cpio and booted as the initramfs, systemd as
#      PID 1, no network device: everything happens on the guest's loopback
#
# IMAGE_TEST_TIMEOUT (seconds, default 900) bounds the boot.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/packaging/image-test
dir=$top/build-pkg/image
mirror=${MIRROR:-http://deb.debian.org/debian}
security=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
timeout=${IMAGE_TEST_TIMEOUT:-900}
t0=$(date +%s)
step() { echo "image-test: [$(( $(date +%s) - t0 ))s] $*"; }

[ "$(id -u)" = 0 ] || { echo "image-test: needs root (chroot, mknod)" >&2; exit 1; }
mkdir -p "$dir"

# 1. The package.
deb=${IMAGE_TEST_DEB:-}
if [ -z "$deb" ]; then
	step "building the arm64 package"
	sh "$top/packaging/cross-deps.sh" arm64
	sh "$top/packaging/build-deb.sh" arm64 >"$dir/build-deb.log" 2>&1 || {
		tail -n 30 "$dir/build-deb.log" >&2; exit 1; }
	deb=$(ls "$top"/build-pkg/deb/arm64/tlsgate_*_arm64.deb)
fi
step "package: $deb"

# Running arm64 programs in the guest's chroot goes through binfmt_misc;
# register Debian's qemu-aarch64 entry if nothing did (no systemd-binfmt).
bm=/proc/sys/fs/binfmt_misc
[ -e $bm/register ] || mount -t binfmt_misc binfmt_misc $bm
[ -e $bm/qemu-aarch64 ] || grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >$bm/register

# 2. Base root file system and kernel, cached.
if [ ! -f "$dir/base.ready" ] || [ ! -f "$dir/vmlinuz" ]; then
	step "making the base root file system (mmdebstrap, a few minutes)"
	rm -rf "$dir/base" "$dir/base.ready"
	base() { # extra sources...
		rm -rf "$dir/base"
		mmdebstrap --architectures=arm64 --variant=minbase \
			--include=systemd-sysv,python3,curl,openssl,ca-certificates,procps,libevent-2.1-7,libevent-openssl-2.1-7,libinih1,libssl3,libsystemd0 \
			--dpkgopt='path-exclude=/usr/share/doc/*' \
			--dpkgopt='path-include=/usr/share/doc/*/copyright' \
			--dpkgopt='path-exclude=/usr/share/man/*' \
			--dpkgopt='path-exclude=/usr/share/locale/*' \
			--customize-hook="sh '$here/fetch-kernel.sh' \"\$1\" '$dir'" \
			bookworm "$dir/base" \
			"deb $mirror bookworm main" \
			"deb $mirror bookworm-updates main" "$@" >"$dir/mmdebstrap.log" 2>&1
	}
	# As in cross-deps.sh: a mirror caught mid-sync gets a second try,
	# then the guest is made without the security suite.
	base "deb $security bookworm-security main" ||
	{ sleep 10; base "deb $security bookworm-security main"; } ||
	{ echo "image-test: WARNING: $security failed; building without it" >&2; base; } || {
		tail -n 30 "$dir/mmdebstrap.log" >&2; exit 1; }
	touch "$dir/base.ready"
fi

# 3. The guest: the package, a config, the test.
step "installing the package into a copy of the base"
root=$dir/rootfs
rm -rf "$root"
cp -a "$dir/base" "$root"
cp "$deb" "$root/tmp/tlsgate.deb"
chroot "$root" dpkg -i /tmp/tlsgate.deb >"$dir/dpkg.log" 2>&1 || {
	cat "$dir/dpkg.log" >&2; exit 1; }
rm "$root/tmp/tlsgate.deb"
[ -L "$root/etc/systemd/system/multi-user.target.wants/tlsgate.service" ] || {
	echo "image-test: the package did not enable tlsgate.service" >&2; exit 1; }

pki=$dir/pki
rm -rf "$pki"; mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj '/CN=tlsgate image test CA' -keyout "$pki/ca.key" -out "$pki/ca.pem" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-subj '/CN=cloud.test' -keyout "$pki/cloud.key" -out "$pki/cloud.csr" 2>/dev/null
printf 'subjectAltName=DNS:cloud.test\nextendedKeyUsage=serverAuth\n' >"$pki/ext"
openssl x509 -req -in "$pki/cloud.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
	-CAcreateserial -days 2 -extfile "$pki/ext" -out "$pki/cloud.pem" 2>/dev/null

lib=$root/usr/local/lib/tlsgate-image-test
mkdir -p "$lib"
install -m 0644 "$pki/cloud.pem" "$pki/cloud.key" "$lib/"
install -m 0755 "$here/guest/upstream.py" "$lib/upstream.py"
install -m 0755 "$here/guest/tlsgate-image-test" "$root/usr/local/sbin/tlsgate-image-test"
install -m 0644 "$here/guest/tlsgate-image-test.service" "$root/etc/systemd/system/"
install -m 0644 "$pki/ca.pem" "$root/etc/tlsgate/image-test-ca.pem"
install -m 0644 "$here/guest/tlsgate.conf" "$root/etc/tlsgate/tlsgate.conf"
chroot "$root" systemctl enable tlsgate-image-test.service >/dev/null 2>&1
echo tlsgate-image-test >"$root/etc/hostname"

# 4. Pack and boot.
step "packing the initramfs"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$dir/rootfs.cpio.gz"
step "booting ($(du -m "$dir/rootfs.cpio.gz" | cut -f1) MB initramfs, timeout ${timeout}s)"
console=$dir/console.log
timeout "$timeout" qemu-system-aarch64 -M virt -cpu cortex-a57 -smp 2 -m 2048 \
	-nographic -no-reboot -nic none \
	-kernel "$dir/vmlinuz" -initrd "$dir/rootfs.cpio.gz" \
	-append 'console=ttyAMA0 rdinit=/sbin/init panic=-1' \
	</dev/null >"$console" 2>&1 || true
grep -a 'image-test:\|IMAGE-TEST:' "$console" || true
if grep -aq '^IMAGE-TEST: PASS' "$console"; then
	step "PASS (console: $console)"
	exit 0
fi
tail -n 60 "$console" >&2
step "FAIL (console: $console)"
exit 1
