#!/usr/bin/env bash
# ALPN (RFC 7301): --alpn http/1.1 against s_server -alpn http/1.1 (the
# server logs what the client offered); the selected protocol, if the probe
# prints it (alpn=...), must be http/1.1; a server that insists on another
# protocol (gnutls-serv --alpn-fatal) makes the handshake fail with
# no_application_protocol.
PRIVATE_NET=1
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256

s_server alpn -tls1_3 -www -alpn http/1.1
run_probe --alpn http/1.1
if assert_ok "ALPN http/1.1"; then
	assert_log "ALPN http/1.1: server received the probe's offer" "$T/alpn.log" \
		'ALPN protocols advertised by the client: http/1\.1'
	if grep -q '^alpn=' "$T/probe.out"; then
		if [ "$(kv alpn)" = http/1.1 ]; then pass "ALPN http/1.1: alpn=$(kv alpn)"; else fail "ALPN http/1.1: alpn=$(kv alpn), expected http/1.1"; fi
	fi
fi

# Without --alpn the probe offers nothing, and the server does not mind.
run_probe
assert_ok "no ALPN offered"
n=$(grep -c 'ALPN protocols advertised by the client' "$T/alpn.log")
if [ "$n" -eq 1 ]; then pass "no ALPN offered: server saw no ALPN extension the second time"; else fail "no ALPN offered: server logged $n ALPN offers over two connections (expected 1)"; fi
stop_server "$SERVER_PID"

# Server without ALPN: the probe's offer is simply not answered.
s_server noalpn -tls1_3 -www
run_probe --alpn http/1.1
assert_ok "ALPN offered, server has none"
if grep -q '^alpn=' "$T/probe.out"; then
	case $(kv alpn) in
	'' | none | -) pass "ALPN offered, server has none: alpn=$(kv alpn)" ;;
	*) fail "ALPN offered, server has none: alpn=$(kv alpn) but the server selected nothing" ;;
	esac
fi
stop_server "$SERVER_PID"

if command -v "$GNUTLS_SERV" >/dev/null 2>&1; then
	gnutls_serv g-h2 --http --alpn=h2 --alpn-fatal --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3'
	run_probe --alpn http/1.1
	assert_fails "server insists on h2" 'no.?application.?protocol'
	stop_server "$SERVER_PID"
fi
finish
