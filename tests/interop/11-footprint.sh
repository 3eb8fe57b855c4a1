#!/usr/bin/env bash
# The constrained-uplink promises of docs (ARCHITECTURE.md, "The built-in
# TLS 1.3 client"), measured by the probe against openssl s_server:
#   - engine state beyond the record buffers "in the low single KB"
#     (state_bytes <= 8 KiB), on a full handshake as well as a resumed one;
#   - a minimal ClientHello (handshake_bytes_sent <= 400 for a full
#     handshake: ClientHello + Finished, no client certificate);
#   - resumption skips the certificate chain (<= 512 bytes received);
#   - with max_fragment_length 512 and resumption, the whole connection
#     peaks under 16 KiB.
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256

s_server fp -tls1_3 -www
run_probe
if assert_ok "full handshake"; then
	assert_num "full handshake" state_bytes 'v > 0 && v <= 8192'
	assert_num "full handshake" handshake_bytes_sent 'v > 0 && v <= 400'
fi

run_probe --resume
if assert_ok "resumed"; then
	assert_kv "resumed" resumed yes
	assert_num "resumed" state_bytes 'v > 0 && v <= 8192'
	assert_num "resumed" handshake_bytes_received 'v > 0 && v <= 512'
fi

run_probe --resume --max-fragment 512
if assert_ok "resumed, max_fragment_length 512"; then
	assert_num "resumed, max_fragment_length 512" record_limit 'v == 512'
	assert_num "resumed, max_fragment_length 512" peak_bytes 'v > 0 && v <= 16384'
fi
stop_server "$SERVER_PID"
finish
