#!/bin/sh
# Prepares a cross-build environment for ARCH (arm64 for Raspberry Pi OS
# 64-bit, armhf for the 32-bit one):
#
#   packaging/cross-deps.sh arm64      -> build-pkg/cross/arm64/root
#
# Debian 12's libevent-dev is not Multi-Arch: same (its event-config.h is
# architecture-specific), so installing libevent-dev:arm64 on this machine
# would remove libevent-dev:amd64 and break the native build.  The cross
# build therefore runs in a Debian 12 amd64 chroot made with mmdebstrap,
# with ARCH as a foreign architecture, Debian's cross toolchain
# (crossbuild-essential-ARCH), the ARCH -dev packages of every library the
# build needs, pkgconf:ARCH for the ARCH-linux-gnu-pkg-config wrapper, and
# qemu-user-static to run the unit tests.  The chroot is made once and
# reused (delete build-pkg/cross/ARCH to refresh it).  Needs root.
#
# Why build-pkg/ and not build/: the Makefile includes every *.d file found
# under build/, and a root file system is full of directories named *.d.
#
# MIRROR (default http://deb.debian.org/debian) and SECURITY_MIRROR
# (default http://deb.debian.org/debian-security) choose the archive.
set -eu
arch=${1:?usage: cross-deps.sh ARCH}
case "$arch" in
arm64|armhf) ;;
*) echo "cross-deps: unsupported architecture $arch (arm64, armhf)" >&2; exit 1 ;;
esac
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/build-pkg/cross/$arch
root=$dir/root
mirror=${MIRROR:-http://deb.debian.org/debian}
security=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
[ -f "$dir/ready" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "cross-deps: making the $arch build chroot needs root" >&2; exit 1
fi
sh "$top/packaging/deps.sh" cross
native=$(dpkg --print-architecture)
include="build-essential,debhelper,fakeroot,crossbuild-essential-$arch"
include="$include,qemu-user-static,ca-certificates,pkgconf:$arch"
for p in libevent-dev libssl-dev libinih-dev libsystemd-dev libcmocka-dev; do
	include="$include,$p:$arch"
done
rm -rf "$dir"
mkdir -p "$dir"
echo "cross-deps: making the $arch cross-build chroot in $root"
start=$(date +%s)
make_root() { # extra sources...
	rm -rf "$root"
	mmdebstrap --variant=buildd --architectures="$native,$arch" \
		--include="$include" \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		bookworm "$root" \
		"deb $mirror bookworm main" \
		"deb $mirror bookworm-updates main" "$@" >"$dir/mmdebstrap.log" 2>&1
}
# A mirror caught mid-sync fails the index download: try once more, then
# without the security suite (a build chroot only; the package's library
# dependencies come from the symbols files, which the suites share).
make_root "deb $security bookworm-security main" ||
{ sleep 10; make_root "deb $security bookworm-security main"; } ||
{ echo "cross-deps: WARNING: $security failed; building without it" >&2; make_root; } || {
	tail -n 30 "$dir/mmdebstrap.log" >&2
	echo "cross-deps: mmdebstrap failed; log: $dir/mmdebstrap.log" >&2
	exit 1
}
touch "$dir/ready"
echo "cross-deps: chroot ready in $(( $(date +%s) - start ))s"
