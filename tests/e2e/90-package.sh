#!/bin/sh
# The Debian package: builds the native .deb from this tree (unit tests
# skipped: the suite runs them already) into a temp dir, fails on any
# lintian error or warning, and checks what the package holds and does:
# the daemon in /usr/sbin, its configuration as a conffile that passes
# `tlsgate -t`, the unit files as in systemd/, both man pages, the service
# enabled on installation and the socket not.  Then `make install` with
# DESTDIR and PREFIX: paths substituted, an existing configuration kept.
# Under a minute on an idle machine.
set -eu
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$top"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-pkg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # description, command...
	what=$1; shift
	if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}

sh packaging/deps.sh
OUT=$tmp/deb DEB_BUILD_OPTIONS=nocheck sh packaging/build-deb.sh
arch=$(dpkg --print-architecture)
deb=$(ls "$tmp"/deb/tlsgate_*_"$arch".deb)

dpkg-deb -c "$deb" | awk '{ print $1, $NF }' >"$tmp/contents"
has() { grep -qx -- "$1" "$tmp/contents"; }
check "binary /usr/sbin/tlsgate, mode 0755" has "-rwxr-xr-x ./usr/sbin/tlsgate"
check "configuration /etc/tlsgate/tlsgate.conf" has "-rw-r--r-- ./etc/tlsgate/tlsgate.conf"
check "man page tlsgate(8)" has "-rw-r--r-- ./usr/share/man/man8/tlsgate.8.gz"
check "man page tlsgate.conf(5)" has "-rw-r--r-- ./usr/share/man/man5/tlsgate.conf.5.gz"
check "copyright" has "-rw-r--r-- ./usr/share/doc/tlsgate/copyright"
check "no tlsgate-probe (a test tool)" sh -c "! grep -q tlsgate-probe '$tmp/contents'"

dpkg-deb -x "$deb" "$tmp/root"
dpkg-deb -e "$deb" "$tmp/control"
for u in systemd/*.service systemd/*.socket; do
	[ -e "$u" ] || continue
	check "unit ${u#systemd/} shipped as in the tree" \
		cmp -s "$u" "$tmp/root/lib/systemd/system/${u#systemd/}"
done
check "conffile" grep -qx /etc/tlsgate/tlsgate.conf "$tmp/control/conffiles"
check "man page tlsgate(8) is docs/tlsgate.8" sh -c \
	"gzip -dc '$tmp/root/usr/share/man/man8/tlsgate.8.gz' | cmp -s - docs/tlsgate.8"
check "postinst enables tlsgate.service" \
	grep -q "deb-systemd-helper enable 'tlsgate.service'" "$tmp/control/postinst"
check "postinst starts tlsgate.service" \
	grep -q "deb-systemd-invoke \$_dh_action 'tlsgate.service'" "$tmp/control/postinst"
if [ -e systemd/tlsgate.socket ]; then
	# Left to the administrator: enabled only if it already was.
	check "postinst does not start tlsgate.socket" sh -c \
		"! grep -q \"deb-systemd-invoke .*'tlsgate.socket'\" '$tmp/control/postinst'"
	check "postinst enables tlsgate.socket only if it was enabled" sh -c \
		"grep -B3 \"deb-systemd-helper enable 'tlsgate.socket'\" '$tmp/control/postinst' |
		 grep -q \"was-enabled 'tlsgate.socket'\""
fi
check "packaged binary reports version 0.1.0" sh -c \
	"'$tmp/root/usr/sbin/tlsgate' -V 2>&1 | grep -q '0\.1\.0'"
check "packaged configuration passes tlsgate -t" \
	"$tmp/root/usr/sbin/tlsgate" -t -c "$tmp/root/etc/tlsgate/tlsgate.conf"

# make install: DESTDIR and PREFIX honoured, an admin's config kept.
inst=$tmp/inst
mkdir -p "$inst/etc/tlsgate"
echo "# the administrator's" >"$inst/etc/tlsgate/tlsgate.conf"
# The packaged binary stands in for the tree's: -o keeps make from
# rebuilding it, so this test never compiles anything in the tree.
mkdir -p "$tmp/bin"
cp "$tmp/root/usr/sbin/tlsgate" "$tmp/bin/tlsgate"
make -s -o "$tmp/bin/tlsgate" install BIN="$tmp/bin" DESTDIR="$inst" PREFIX=/opt/tg \
	>"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; exit 1; }
check "make install: PREFIX/sbin/tlsgate" cmp -s "$tmp/bin/tlsgate" "$inst/opt/tg/sbin/tlsgate"
check "make install: man pages under PREFIX" \
	test -f "$inst/opt/tg/share/man/man5/tlsgate.conf.5"
check "make install: unit runs PREFIX/sbin/tlsgate" \
	grep -q '^ExecStart=/opt/tg/sbin/tlsgate ' "$inst/lib/systemd/system/tlsgate.service"
check "make install: existing configuration kept" \
	grep -qx "# the administrator's" "$inst/etc/tlsgate/tlsgate.conf"

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "package checks passed"
