#!/bin/sh
# mmdebstrap customize hook of run.sh: downloads the kernel that Debian's
# linux-image-arm64 points at, with the guest's own apt, and extracts its
# vmlinuz to OUT/vmlinuz.  The kernel is not installed in the guest: booted
# from an initramfs it needs no modules for what the test does, and
# installing it would run initramfs-tools under emulation for minutes.
#
#   fetch-kernel.sh ROOT OUT
set -eu
root=$1 out=$2
pkg=$(chroot "$root" apt-cache depends linux-image-arm64 |
	sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
[ -n "$pkg" ] || { echo "fetch-kernel: no kernel behind linux-image-arm64" >&2; exit 1; }
chroot "$root" sh -c "cd /tmp && apt-get download -q $pkg"
mkdir -p "$out/kernel"
dpkg-deb --fsys-tarfile "$root"/tmp/"$pkg"_*.deb |
	tar -xf - -C "$out/kernel" --wildcards './boot/vmlinuz-*'
mv "$out"/kernel/boot/vmlinuz-* "$out/vmlinuz"
rm -rf "$out/kernel" "$root"/tmp/"$pkg"_*.deb
echo "fetch-kernel: $pkg"
