#!/usr/bin/env bash
# max_fragment_length (RFC 6066 §4) against openssl s_server: the probe
# reports the negotiated limit, the server really sends records no larger
# than limit + 1 (content type) + 16 (AEAD tag) -- read from s_server -msg --
# and a ~5 KB response (s_server -www's status page) spanning many small
# records arrives.  A smaller limit must also shrink the probe's peak memory.
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256

# max_sent_record LOG: the largest application_data record (type 0x17) the
# server wrote, from the hex record headers s_server -msg logs.
max_sent_record()
{
	local t l1 l2 n m=0 c=0
	while read -r t _ _ l1 l2; do
		[ "$t" = 17 ] || continue
		n=$((16#$l1$l2))
		c=$((c + 1))
		[ "$n" -gt "$m" ] && m=$n
	done < <(grep -A1 '^>>> .*RecordHeader' "$1" | grep -E '^ +[0-9a-f]{2} ')
	echo "$m $c"
}

s_server mfl-none -tls1_3 -www -msg
run_probe
if assert_ok "no max_fragment_length"; then
	assert_num "no max_fragment_length" record_limit 'v == 16384 || v == 16385'
fi
peak_full=$(kv_num peak_bytes)
stop_server "$SERVER_PID"

for n in 512 1024 2048 4096; do
	s_server "mfl-$n" -tls1_3 -www -msg
	run_probe --max-fragment "$n"
	if assert_ok "max_fragment_length $n"; then
		assert_num "max_fragment_length $n" record_limit "v == $n"
		read -r biggest count <<<"$(max_sent_record "$T/mfl-$n.log")"
		if [ "$biggest" -gt 0 ] && [ "$biggest" -le $((n + 17)) ]; then
			pass "max_fragment_length $n: server's largest encrypted record $biggest <= $((n + 17))"
		else
			fail "max_fragment_length $n: server sent a $biggest-byte record (limit $((n + 17))): not negotiated?"
		fi
		# The status page is ~5 KB: it must have come in several records.
		if [ "$n" -lt 4096 ] && [ "$count" -lt 4 ]; then
			fail "max_fragment_length $n: only $count application records: response too small to test"
		fi
		if [ "$n" = 512 ] && [ -n "$peak_full" ]; then
			assert_num "max_fragment_length 512 (peak without: $peak_full)" peak_bytes "v < $peak_full"
		fi
	fi
	stop_server "$SERVER_PID"
done

# max_fragment_length with resumption: the second connection renegotiates it.
s_server mfl-resume -tls1_3 -www -msg
run_probe --max-fragment 512 --resume
if assert_ok "max_fragment_length 512, resumed"; then
	assert_kv "max_fragment_length 512, resumed" resumed yes
	assert_num "max_fragment_length 512, resumed" record_limit 'v == 512'
fi
stop_server "$SERVER_PID"

# Values other than 512/1024/2048/4096 cannot be expressed (RFC 6066 §4):
# the probe must refuse, not round or drop the extension -- against a live
# server, so that a probe that connects anyway is caught.
s_server mfl-bad -tls1_3 -www
run_probe --max-fragment 1000
if [ "$PROBE_RC" -ne 0 ] && ! _probe_crashed; then
	pass "max_fragment_length 1000 refused (exit $PROBE_RC): $(head -n 1 "$T/probe.err")"
else
	fail "max_fragment_length 1000: expected a clean refusal, got $(_describe_rc)"
fi
stop_server "$SERVER_PID"
finish
