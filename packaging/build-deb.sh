#!/bin/sh
# Builds the tlsgate Debian package from the working tree:
#
#   packaging/build-deb.sh [ARCH]     (ARCH: arm64, armhf; default: native)
#
# OUT (default build-pkg/deb/<arch>) is the output directory; what an earlier
# build left there is removed first.  DEB_BUILD_OPTIONS=nocheck skips the
# unit tests.
#
# The tree is copied to OUT/tlsgate-<version>/ with packaging/debian/ as its
# debian/, so the build (and its `make clean`) never touches the working
# tree.  A cross build happens in the chroot that packaging/cross-deps.sh
# ARCH makes (needs root).  The .deb, .changes and .buildinfo land in OUT;
# lintian then checks them, and any error or warning fails.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
arch=${1:-}
native=$(dpkg --print-architecture)
[ -n "$arch" ] || arch=$native
version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
out=${OUT:-$top/build-pkg/deb/$arch}
src=$out/tlsgate-$version

rm -rf "$src" "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo "$out"/*.log
mkdir -p "$src"
tar -cf - --exclude=./.git --exclude=./build --exclude=./build-asan \
	--exclude=./build-fuzz --exclude=./build-pkg --exclude=./tlsgate \
	--exclude=./tlsgate-probe \
	--exclude='*.o' --exclude='*.d' --exclude=__pycache__ \
	--exclude=./packaging/debian . | tar -xf - -C "$src"
cp -R packaging/debian "$src/debian"

start=$(date +%s)
if [ "$arch" = "$native" ]; then
	(cd "$src" && dpkg-buildpackage -us -uc -b -J"$(nproc)") >"$out/build.log" 2>&1 || fail=1
else
	# A cross build runs in the chroot packaging/cross-deps.sh made (see
	# there why not on this machine), with /proc and /dev from the host.
	root=$top/build-pkg/cross/$arch/root
	[ -f "$top/build-pkg/cross/$arch/ready" ] || {
		echo "build-deb: no $arch chroot: run packaging/cross-deps.sh $arch" >&2
		exit 1
	}
	rm -rf "$root/build"
	mkdir -p "$root/build"
	cp -R "$src" "$root/build/"
	# Build-Depends added since the chroot was made are installed first.
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	mount -t proc proc "$root/proc"
	mount --bind /dev "$root/dev"
	trap 'umount "$root/proc" "$root/dev" 2>/dev/null || true' EXIT
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/build LC_ALL=C.UTF-8 DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-}" \
		sh -c "cd /build/${src##*/} &&
		  { dpkg-checkbuilddeps -a $arch 2>/dev/null ||
		    { apt-get update -q && apt-get build-dep -y -q -a $arch ./; }; } &&
		  dpkg-buildpackage -us -uc -b -J$(nproc) --host-arch=$arch" \
		>"$out/build.log" 2>&1 || fail=1
	umount "$root/proc" "$root/dev"
	trap - EXIT
	cp "$root"/build/*.deb "$root"/build/*.changes "$root"/build/*.buildinfo "$out/" 2>/dev/null || true
fi
if [ -n "${fail:-}" ]; then
	tail -n 40 "$out/build.log" >&2
	echo "build-deb: dpkg-buildpackage failed; full log: $out/build.log" >&2
	exit 1
fi
grep -E '^== |\[  (PASSED|FAILED)  \]' "$out/build.log" | tail -n 40 || true
echo "build-deb: built in $(( $(date +%s) - start ))s:"
ls -1 "$out"/*.deb

# lintian prints one tag a line, "E: ..." or "W: ..." for what counts here.
changes=$(ls "$out"/*.changes)
lintian --fail-on error,warning "$changes" | tee "$out/lintian.log"
echo "build-deb: lintian: no errors, no warnings"
