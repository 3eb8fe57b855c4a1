#!/usr/bin/env bash
# Middlebox compatibility mode (RFC 9846 Appendix D.4) is optional for a
# client and off by default (tls13_config.compat_mode).  Both settings must
# interoperate with openssl s_server and gnutls-serv, full and resumed, and
# the difference on the wire must be exactly what the appendix describes:
# the client's 32-byte legacy_session_id and its dummy change_cipher_spec
# (5 + 1 bytes) and the server's echo of the session id.  OpenSSL 3.0 and
# GnuTLS servers send their own dummy change_cipher_spec either way (their
# side of the option is theirs), so the server difference is the echo only.
PRIVATE_NET=1
. "$(dirname "$0")/lib.sh"
need_probe
need "$GNUTLS_SERV" "apt install gnutls-bin"
pki_std ed25519   # fixed-length CertificateVerify: exact byte counts

# compare NAME RESUMED [ARGS...]: run the probe with ARGS, without and with
# --compat, and check the byte differences.
compare()
{
	local name=$1 sent0 recv0 sent1 recv1
	RESUMED=$2
	shift 2
	run_probe "$@"
	assert_ok "$name, compat off" || return
	assert_kv "$name, compat off" resumed "$RESUMED"
	sent0=$(kv_num handshake_bytes_sent)
	recv0=$(kv_num handshake_bytes_received)
	run_probe --compat "$@"
	assert_ok "$name, compat on" || return
	assert_kv "$name, compat on" resumed "$RESUMED"
	sent1=$(kv_num handshake_bytes_sent)
	recv1=$(kv_num handshake_bytes_received)
	if [ -n "$sent0" ] && [ -n "$sent1" ] && [ $((sent1 - sent0)) -eq 38 ]; then
		pass "$name: compat mode costs the client 38 bytes ($sent0 -> $sent1)"
	else
		fail "$name: client bytes $sent0 -> $sent1, expected +38 (session id 32, CCS 6)"
	fi
	if [ -n "$recv0" ] && [ -n "$recv1" ] && [ $((recv1 - recv0)) -eq 32 ]; then
		pass "$name: the server echoes 32 more bytes ($recv0 -> $recv1)"
	else
		fail "$name: server bytes $recv0 -> $recv1, expected +32 (session id echo)"
	fi
}

s_server compat -tls1_3 -www
compare "openssl" no
compare "openssl resumed" yes --resume
stop_server "$SERVER_PID"

gnutls_serv g-compat --http --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3'
compare "gnutls" no
compare "gnutls resumed" yes --resume
stop_server "$SERVER_PID"
finish
