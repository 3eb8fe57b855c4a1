#!/usr/bin/env bash
# HelloRetryRequest: the probe's first key share is x25519 (its default, or
# --group x25519 absent); a server that only accepts P-256 must make it retry
# with a secp256r1 share, and the handshake must then complete.
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256

# Server accepts only P-256 -> HRR.
s_server p256-only -tls1_3 -www -groups P-256
run_probe
if assert_ok "server P-256 only"; then
	assert_kv "server P-256 only" hrr yes
	assert_kv "server P-256 only" group secp256r1
	assert_kv "server P-256 only" protocol TLSv1.3
fi
stop_server "$SERVER_PID"

# The same with each suite, so the transcript hash after HRR (the synthetic
# message_hash, RFC 9846 §4.4.1) is exercised with SHA-256 and SHA-384.
for suite in TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256; do
	s_server "p256-$suite" -tls1_3 -www -groups P-256 -ciphersuites "$suite"
	run_probe --suite "$suite"
	if assert_ok "HRR with $suite"; then
		assert_kv "HRR with $suite" hrr yes
		assert_kv "HRR with $suite" cipher "$suite"
		assert_kv "HRR with $suite" group secp256r1
	fi
	stop_server "$SERVER_PID"
done

# Control: a server that accepts x25519 must not cause a retry.
s_server x25519 -tls1_3 -www -groups X25519:P-256
run_probe
if assert_ok "server X25519:P-256"; then
	assert_kv "server X25519:P-256" hrr no
	assert_kv "server X25519:P-256" group x25519
fi
stop_server "$SERVER_PID"

# HRR with a cookie (RFC 9846 §4.2.2): s_server -stateless (only honoured
# outside -www, so the response goes through its stdin) answers the first
# ClientHello with an HRR that carries a cookie, even when the key share is
# fine; the second ClientHello must echo it.
RESP='HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'
SRV_ARGS=(-tls1_3 -stateless -msg -naccept 1)
PROBE_ARGS=()
interactive cookie "data:$RESP"
if assert_ok "HRR with cookie (s_server -stateless)"; then
	assert_kv "HRR with cookie" hrr yes
	assert_kv "HRR with cookie" group x25519
fi
n=$(grep -c '^<<< .*ClientHello' "$T/cookie.log")
if [ "$n" -ge 2 ]; then pass "HRR with cookie: server got $n ClientHellos"
else fail "HRR with cookie: server got $n ClientHello(s), expected 2"; fi

# The same with a group change as well (cookie + new key share).
SRV_ARGS=(-tls1_3 -stateless -msg -naccept 1 -groups P-256)
interactive cookie-p256 "data:$RESP"
if assert_ok "HRR with cookie and group change"; then
	assert_kv "HRR with cookie and group change" hrr yes
	assert_kv "HRR with cookie and group change" group secp256r1
fi

# A server that accepts none of our groups: clean handshake_failure.
s_server p384-only -tls1_3 -www -groups P-384
run_probe
assert_fails "server P-384 only" "$RE_HANDSHAKE_FAILURE|insufficient.?security|illegal.?parameter|no.*(common|shared).*group"
stop_server "$SERVER_PID"
finish
