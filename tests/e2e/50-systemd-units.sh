#!/bin/sh
# systemd/tlsgate.service and tlsgate.socket: `systemd-analyze verify`
# must be clean and `systemd-analyze security --offline=yes` must rate the
# service at or below SECURITY_GOAL (issue: <= 1.5; Debian's haproxy and
# nginx units score 9.6).  Nothing is started: both commands only read
# the files.  ExecStart= is pointed at the built daemon so that verify
# can check the binary exists and is executable.
set -eu
TOP=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
TLSGATE=${TLSGATE:-$TOP/tlsgate}
SECURITY_GOAL=${SECURITY_GOAL:-1.5}

command -v systemd-analyze >/dev/null || {
	echo "systemd-analyze not found (apt-get install systemd)"; exit 1; }
[ -x "$TLSGATE" ] || { echo "daemon $TLSGATE not built"; exit 1; }
# ExecStart= wants an absolute path (make asan passes build-asan/tlsgate).
case $TLSGATE in /*) ;; *) TLSGATE=$(pwd)/$TLSGATE ;; esac

tmp=$(mktemp -d /tmp/tlsgate-units.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
sed "s#/usr/sbin/tlsgate#$TLSGATE#g" "$TOP/systemd/tlsgate.service" \
	>"$tmp/tlsgate.service"
cp "$TOP/systemd/tlsgate.socket" "$tmp/tlsgate.socket"
grep -q "^ExecStart=$TLSGATE " "$tmp/tlsgate.service" || {
	echo "ExecStart= does not name /usr/sbin/tlsgate"; exit 1; }

# The properties the issue asks for, so that a score reached some other
# way does not hide a missing one.
for want in 'Type=notify' 'ExecReload=/bin/kill -HUP $MAINPID' \
    'DynamicUser=yes' 'ProtectSystem=strict' 'CapabilityBoundingSet=' \
    'SystemCallFilter=@system-service' 'MemoryDenyWriteExecute=yes' \
    'WatchdogSec=' 'NoNewPrivileges=yes'; do
	grep -q "^$want" "$tmp/tlsgate.service" || {
		echo "tlsgate.service lacks $want"; exit 1; }
done
grep -q '^ListenStream=' "$tmp/tlsgate.socket" || {
	echo "tlsgate.socket has no ListenStream="; exit 1; }

# verify prints its findings on stderr and may exit 0 with warnings:
# any output at all is a failure.
out=$(systemd-analyze verify --man=no "$tmp/tlsgate.service" \
	"$tmp/tlsgate.socket" 2>&1) || { echo "verify failed:"; echo "$out";
	exit 1; }
if [ -n "$out" ]; then
	echo "verify is not clean:"; echo "$out"; exit 1
fi
echo "verify: clean"

sec=$(systemd-analyze security --offline=yes --no-pager \
	"$tmp/tlsgate.service" 2>&1) || true
score=$(printf '%s\n' "$sec" |
	sed -n 's/.*Overall exposure level for tlsgate.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || { echo "no score in:"; printf '%s\n' "$sec"; exit 1; }
echo "security exposure: $score (goal <= $SECURITY_GOAL)"
printf '%s\n' "$sec" | grep '✗' || true
awk -v s="$score" -v g="$SECURITY_GOAL" 'BEGIN { exit !(s + 0 <= g + 0) }' || {
	echo "exposure $score is above the goal $SECURITY_GOAL"; exit 1; }
