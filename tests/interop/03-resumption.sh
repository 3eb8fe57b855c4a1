#!/usr/bin/env bash
# Session tickets and PSK resumption against openssl s_server: --resume
# connects, keeps the ticket, connects again and reports the second
# connection, which must be resumed (psk) and skip the certificate chain.
. "$(dirname "$0")/lib.sh"
need_probe
pki_std rsa2048 rsa2048   # RSA leaf + RSA intermediate: ~2 KB of certificates

s_server tickets -tls1_3 -www -num_tickets 2
run_probe
assert_ok "full handshake" && assert_kv "full handshake" resumed no
full=$(kv_num handshake_bytes_received)
full_sent=$(kv_num handshake_bytes_sent)
[ -n "$full" ] || { fail "full handshake: handshake_bytes_received missing"; full=0; }

run_probe --resume
if assert_ok "resumed"; then
	assert_kv "resumed" resumed yes
	assert_kv "resumed" protocol TLSv1.3
	# No Certificate/CertificateVerify: well under half of the full handshake.
	assert_num "resumed (full received $full)" handshake_bytes_received "v > 0 && v * 2 < $full"
	# The ClientHello now carries the ticket, so the client sends more.
	[ -n "$full_sent" ] &&
		assert_num "resumed (full sent $full_sent)" handshake_bytes_sent "v > $full_sent"
fi

# The server refuses the ticket (another s_server: other ticket keys).  The
# resumed ClientHello offers only the ticket's suite (AES-128-GCM, from the
# first server); the server must fall back to a full handshake with it, and
# the chain is verified again.  This server prefers ChaCha20: had the probe
# offered its whole list, it would have got that.
first_port=$PORT
first_pid=$SERVER_PID
s_server tickets-other -tls1_3 -www -serverpref \
	-ciphersuites TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256
other_port=$PORT
PORT=$first_port
run_probe --resume-port "$other_port"
if assert_ok "ticket refused, full handshake"; then
	assert_kv "ticket refused, full handshake" resumed no
	assert_kv "ticket refused, full handshake" cipher TLS_AES_128_GCM_SHA256
	assert_num "ticket refused (full received $full)" handshake_bytes_received "v * 2 > $full"
fi
stop_server "$SERVER_PID"
SERVER_PID=$first_pid
stop_server "$SERVER_PID"

# The PSK binder and key schedule with SHA-384.
s_server tickets384 -tls1_3 -www -ciphersuites TLS_AES_256_GCM_SHA384
run_probe --resume --suite TLS_AES_256_GCM_SHA384
if assert_ok "resumed, AES-256/SHA-384"; then
	assert_kv "resumed, AES-256/SHA-384" resumed yes
	assert_kv "resumed, AES-256/SHA-384" cipher TLS_AES_256_GCM_SHA384
fi
stop_server "$SERVER_PID"

# Resumption through a HelloRetryRequest: the binder must be computed over
# a transcript that includes the HRR (RFC 9846 §4.2.11.2).
s_server tickets-hrr -tls1_3 -www -groups P-256
run_probe --resume
if assert_ok "resumed after HRR"; then
	assert_kv "resumed after HRR" resumed yes
	assert_kv "resumed after HRR" group secp256r1
fi
stop_server "$SERVER_PID"

# Stateful tickets (OpenSSL's -no_ticket in TLS 1.3 issues tickets that are
# session-cache keys instead of encrypted state): opaque to the client.
s_server stateful -tls1_3 -www -no_ticket
run_probe --resume
assert_ok "resumed, stateful ticket" && assert_kv "resumed, stateful ticket" resumed yes
stop_server "$SERVER_PID"

# A server that issues no tickets: the second connection cannot resume.
# The probe may then do a full handshake (exit 0, resumed=no) or report that
# it has no ticket (clean non-zero exit); it must never claim resumed=yes.
s_server noticket -tls1_3 -www -num_tickets 0
run_probe --resume
if [ "$PROBE_RC" -eq 0 ]; then
	assert_ok "no tickets" && assert_kv "no tickets" resumed no
else
	assert_fails "no tickets" 'ticket|resum|psk'
fi
stop_server "$SERVER_PID"
finish
