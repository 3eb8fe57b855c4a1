#!/usr/bin/env bash
# The constrained-uplink promises of docs (ARCHITECTURE.md, "The built-in
# TLS 1.3 client"), measured by the probe against openssl s_server:
#   - engine state beyond the record buffers "in the low single KB"
#     (state_bytes <= 8 KiB), on a full handshake as well as a resumed one;
#   - a minimal ClientHello (handshake_bytes_sent <= 400 for a full
#     handshake: ClientHello + Finished, no client certificate);
#   - resumption skips the certificate chain (<= 512 bytes received);
#   - with max_fragment_length 512 and resumption, the whole connection
#     peaks under 16 KiB during the handshake, and once established holds
#     at most 3 KB (3072 bytes) while records flow: at or below
#     TLS13_SMALL_RECORD (1024) the AEAD contexts live for one record, above
#     it (2048) they are kept.
#   - the full-handshake peak of this P-256 chain stays under 36 KiB (it
#     was 43 KiB before certificates were decoded in their own library
#     context: docs/tls13.md).
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256

s_server fp -tls1_3 -www
run_probe
if assert_ok "full handshake"; then
	assert_num "full handshake" state_bytes 'v > 0 && v <= 8192'
	assert_num "full handshake" handshake_bytes_sent 'v > 0 && v <= 400'
	assert_num "full handshake" peak_bytes 'v > 0 && v <= 36864'
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
	assert_num "resumed, max_fragment_length 512" tx_bytes 'v == 512 + 22'
	assert_num "resumed, max_fragment_length 512" rx_bytes 'v == 5 + 512 + 256'
	assert_num "resumed, max_fragment_length 512" conn_bytes_idle 'v > 0 && v <= 2048'
	assert_num "resumed, max_fragment_length 512" conn_peak_data 'v > 0 && v <= 3072'
	assert_kv "resumed, max_fragment_length 512" state_bytes_active "$(kv state_bytes)"
fi

# At the limit: contexts per record; above it: kept while data flows.
run_probe --max-fragment 1024
if assert_ok "max_fragment_length 1024"; then
	assert_num "max_fragment_length 1024" record_limit 'v == 1024'
	assert_kv "max_fragment_length 1024" state_bytes_active "$(kv state_bytes)"
fi
run_probe --max-fragment 2048
if assert_ok "max_fragment_length 2048"; then
	assert_num "max_fragment_length 2048" record_limit 'v == 2048'
	idle=$(kv_num state_bytes)
	assert_num "max_fragment_length 2048 (idle $idle)" state_bytes_active "v > ${idle:-0} + 1500"
fi
stop_server "$SERVER_PID"
finish
