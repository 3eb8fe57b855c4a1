#!/usr/bin/env bash
# Interop with gnutls-serv (GnuTLS 3.7): every suite x group (the probe
# offering just that one), a group-forced HRR, and
# record_size_limit (RFC 8449), which OpenSSL 3.0 does not implement,
# including the fallback when the server ignores it.  The
# server's debug log (-d 5) shows the limit it negotiated and the length of
# every record it sent, so the test checks the server really obeyed the
# probe's limit.  gnutls-serv requests (without requiring) a client
# certificate by default, so every run here also exercises an empty client
# Certificate.  Note: gnutls-serv has no option to bind 127.0.0.1 only.
PRIVATE_NET=1
. "$(dirname "$0")/lib.sh"
need_probe
need "$GNUTLS_SERV" "apt install gnutls-bin"
pki_std p256

TLS13='NORMAL:-VERS-ALL:+VERS-TLS1.3'

gnutls_serv g-all --http --priority "$TLS13:+CHACHA20-POLY1305:+GROUP-X25519:+GROUP-SECP256R1"
for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
	for group in x25519 secp256r1; do
		run_probe --suite "$suite" --group "$group"
		if assert_ok "gnutls $suite/$group"; then
			assert_kv "gnutls $suite/$group" protocol TLSv1.3
			assert_kv "gnutls $suite/$group" cipher "$suite"
			assert_kv "gnutls $suite/$group" group "$group"
		fi
	done
done
stop_server "$SERVER_PID"

# HRR with GnuTLS: it only accepts P-256, the probe's first share is x25519.
gnutls_serv g-hrr --http --priority "$TLS13:-GROUP-ALL:+GROUP-SECP256R1"
run_probe
if assert_ok "gnutls HRR"; then
	assert_kv "gnutls HRR" hrr yes
	assert_kv "gnutls HRR" group secp256r1
fi
stop_server "$SERVER_PID"

# record_size_limit.  A 6000-byte body forces many records at every limit.
{
	printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6000\r\n\r\n'
	head -c 4500 /dev/urandom | base64 -w 100 | head -c 6000
} >"$T/body"

for n in 512 1024 2000 4096; do
	gnutls_serv "g-rsl-$n" --httpdata "$T/body" -d 5 --priority "$TLS13"
	run_probe --record-size-limit "$n"
	if assert_ok "record_size_limit $n"; then
		# The option may count the content-type byte (wire value n, content
		# n-1) or not (content n, wire n+1): accept both readings.
		assert_num "record_size_limit $n" record_limit "v == $n || v == $n - 1"
		# GnuTLS announces 16385 for itself; a client that asked for
		# small records sends no larger ones (one small send buffer).
		assert_num "record_size_limit $n" send_limit "v == $n"
		log=$T/g-rsl-$n.log
		wire=$(sed -n 's/.*record_size_limit \([0-9]*\) negotiated.*/\1/p' "$log" | head -n 1)
		if [ "$wire" = "$n" ] || [ "$wire" = $((n + 1)) ]; then
			pass "record_size_limit $n: gnutls-serv negotiated $wire"
		else
			fail "record_size_limit $n: gnutls-serv negotiated '${wire:-nothing}'"
		fi
		# Records sent under encryption (epoch >= 1): 5 header + inner
		# plaintext (<= wire limit) + 16 tag.
		max=$(sed -n 's/.*Sent Packet\[[0-9]*\] .* in epoch [1-9][0-9]* and length: \([0-9]*\).*/\1/p' "$log" | sort -n | tail -n 1)
		apps=$(grep -c 'Sent Packet.*Application Data.*epoch [1-9]' "$log")
		if [ -n "$max" ] && [ "$max" -le $((${wire:-$n} + 21)) ] && [ "$apps" -ge 2 ]; then
			pass "record_size_limit $n: largest record sent $max bytes, response in $apps records"
		else
			fail "record_size_limit $n: largest record sent ${max:-?} (limit $((${wire:-$n} + 21))), $apps application records"
		fi
	fi
	stop_server "$SERVER_PID"
done

# GnuTLS ignores a record_size_limit below 512 ("client requested too small
# record_size_limit; ignoring"), and OpenSSL 3.0 has no max_fragment_length
# answer here: the probe must fall back to full-size records (docs: "falling
# back to full 16 KB records when the server ignores both") and still read
# the ~6 KB record the server sends.
gnutls_serv g-rsl-64 --httpdata "$T/body" -d 5 --priority "$TLS13"
run_probe --record-size-limit 64
if assert_ok "record_size_limit 64, ignored by the server"; then
	assert_num "record_size_limit 64, ignored by the server" record_limit 'v == 16384 || v == 16385'
	assert_log "record_size_limit 64: gnutls-serv did ignore it (test set-up)" \
		"$T/g-rsl-64.log" 'too small record_size_limit'
fi
stop_server "$SERVER_PID"
finish
