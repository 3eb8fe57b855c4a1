#!/usr/bin/env bash
# Every cipher suite x every group against openssl s_server (TLS 1.3 only,
# all suites and groups enabled): told to offer one suite and one group,
# the probe must negotiate exactly those, with no HRR.  (02-hrr and
# 08-verify-failures cover servers restricted to other choices.)
# Also the probe's defaults against a default s_server.
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256

s_server all -tls1_3 -www -groups X25519:P-256 \
	-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
for suite in TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
	for group in x25519 secp256r1; do
		run_probe --suite "$suite" --group "$group"
		if assert_ok "$suite/$group"; then
			assert_kv "$suite/$group" protocol TLSv1.3
			assert_kv "$suite/$group" cipher "$suite"
			assert_kv "$suite/$group" group "$group"
			assert_kv "$suite/$group" hrr no
			assert_kv "$suite/$group" resumed no
		fi
	done
done
stop_server "$SERVER_PID"

# Defaults: no --suite/--group.  The server accepts anything TLS 1.3, so the
# probe's own first choices must go through in one round trip.
s_server default -tls1_3 -www
run_probe
if assert_ok "defaults"; then
	assert_kv "defaults" protocol TLSv1.3
	assert_kv "defaults" hrr no
	assert_num "defaults" handshake_bytes_sent 'v > 0'
	assert_num "defaults" handshake_bytes_received 'v > 0'
	assert_num "defaults" state_bytes 'v > 0'
	assert_num "defaults" peak_bytes 'v > 0'
	assert_num "defaults" record_limit 'v >= 64 && v <= 16385'
fi
finish
