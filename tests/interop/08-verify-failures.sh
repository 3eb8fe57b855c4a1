#!/usr/bin/env bash
# Failures the probe must detect and report cleanly: non-zero exit, not a
# signal or a time-out, the reason on stderr.  Server certificate problems
# (untrusted CA, wrong name, expired, not yet valid, missing intermediate)
# and servers we cannot talk to (TLS 1.2 only, none of our suites, not TLS,
# raw servers sending an alert, a truncated or a malformed ServerHello).
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256
pki_root other p256
pki_cert expired p256 int server_ext 20200101000000Z 20210101000000Z
pki_cert future p256 int server_ext 20990101000000Z 20991231000000Z

# Untrusted CA: the probe trusts a different root.
s_server good -tls1_3 -www
run_probe --ca "$PKI/other.pem"
assert_fails "untrusted CA" "$RE_UNKNOWN_CA"

# Wrong name: the certificate is for tlsgate.test and localhost.
run_probe --sni wrong.example
assert_fails "name mismatch (--sni wrong.example)" "$RE_NAME"
run_probe --sni sub.tlsgate.test
assert_fails "name mismatch (--sni sub.tlsgate.test)" "$RE_NAME"

# Control: the same server with the right CA and name works, so the
# failures above are about the CA and the name, not the set-up.
run_probe
assert_ok "control: right CA and name"
stop_server "$SERVER_PID"

# Expired leaf (valid 2020-01-01 .. 2021-01-01, issued with openssl ca).
s_server expired -tls1_3 -www -cert "$PKI/expired.pem" -key "$PKI/expired.key" -cert_chain "$PKI/chain.pem"
run_probe
assert_fails "expired certificate" "$RE_EXPIRED"
stop_server "$SERVER_PID"

# Not yet valid leaf (2099).
s_server future -tls1_3 -www -cert "$PKI/future.pem" -key "$PKI/future.key" -cert_chain "$PKI/chain.pem"
run_probe
assert_fails "certificate not yet valid" "$RE_NOT_YET"
stop_server "$SERVER_PID"

# The server omits the intermediate: the chain cannot be built.
s_server nochain -tls1_3 -www -cert "$PKI/srv.pem" -key "$PKI/srv.key"
run_probe
assert_fails "intermediate missing from the chain" "$RE_UNKNOWN_CA"
stop_server "$SERVER_PID"

# A server that only speaks TLS 1.2: protocol_version.
s_server tls12 -tls1_2 -www
run_probe
assert_fails "TLS 1.2-only server" "$RE_PROTOCOL_VERSION"
stop_server "$SERVER_PID"

# A TLS 1.3 server with none of our suites (AES-CCM only): handshake_failure.
s_server ccm -tls1_3 -www -ciphersuites TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256
run_probe
assert_fails "server with none of our suites" "$RE_HANDSHAKE_FAILURE"
stop_server "$SERVER_PID"

# The probe offers one suite the server does not enable.
s_server only256 -tls1_3 -www -ciphersuites TLS_AES_256_GCM_SHA384
run_probe --suite TLS_AES_128_GCM_SHA256
assert_fails "probe's only suite not enabled on the server" "$RE_HANDSHAKE_FAILURE"
stop_server "$SERVER_PID"

# Not a TLS server at all (plain HTTP answer): a clean error, no hang.
PORT=$(free_port)
start_server plain "$PORT" "$PYTHON" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); c.settimeout(5)
    try: c.recv(4096); c.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    except OSError: pass
    c.close()
' "$PORT"
run_probe
if [ "$PROBE_RC" -ne 0 ] && ! _probe_crashed; then
	pass "plain-HTTP server: clean failure (exit $PROBE_RC): $(head -n 1 "$T/probe.err")"
else
	fail "plain-HTTP server: expected a clean failure, got $(_describe_rc)"
fi
stop_server "$SERVER_PID"

# Raw servers: read the ClientHello, send HEX bytes, close.
raw_server()
{
	PORT=$(free_port)
	start_server "$1" "$PORT" "$PYTHON" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); c.settimeout(5)
    try: c.recv(4096); c.sendall(bytes.fromhex(sys.argv[2]))
    except OSError: pass
    c.close()
' "$PORT" "$2"
}

# A plaintext fatal alert instead of a ServerHello: the peer's alert.
raw_server raw-alert 15030300020228
run_probe
assert_fails "plaintext handshake_failure alert from the server" "$RE_HANDSHAKE_FAILURE"
stop_server "$SERVER_PID"

# A ServerHello record cut short, then EOF: a clean error, no hang.
raw_server raw-trunc 16030300500200004c0303
run_probe
if [ "$PROBE_RC" -ne 0 ] && ! _probe_crashed; then
	pass "truncated ServerHello then EOF: clean failure (exit $PROBE_RC): $(head -n 1 "$T/probe.err")"
else
	fail "truncated ServerHello then EOF: expected a clean failure, got $(_describe_rc)"
fi
stop_server "$SERVER_PID"

# A complete but malformed ServerHello (length fields that run past the
# message): decode_error or illegal_parameter, no crash.
raw_server raw-bad 160303000a020000060303ffffff00
run_probe
assert_fails "malformed ServerHello" 'decode.?error|illegal.?parameter|unexpected.?message'
stop_server "$SERVER_PID"

# Nothing listening: connection refused, clean error.
PORT=$(free_port)
run_probe
assert_fails "nothing listening" 'refused|connect'
finish
