#!/usr/bin/env bash
# server_name (RFC 6066 §3) against openssl s_server -servername: the server
# picks the right certificate only if the probe sent the right SNI (its
# default certificate is for other.example and would fail verification);
# a name the server does not serve gets unrecognized_name with
# -servername_fatal; an IP literal is not sent as SNI (RFC 6066 §3) and is
# verified against the certificate's IP address.
. "$(dirname "$0")/lib.sh"
need_probe
pki_root root p256
pki_cert srv p256 root server_ext        # tlsgate.test, localhost, 127.0.0.1
pki_cert dflt p256 root other_ext        # other.example

s_server sni -tls1_3 -www -servername "$SNI" -servername_fatal \
	-cert "$PKI/dflt.pem" -key "$PKI/dflt.key" -cert2 "$PKI/srv.pem" -key2 "$PKI/srv.key"

run_probe
assert_ok "SNI $SNI selects the right certificate"
assert_log "SNI $SNI: server saw it" "$T/sni.log" "Hostname in TLS extension: \"$SNI\""

run_probe --sni localhost
assert_fails "SNI the server does not serve (-servername_fatal)" 'unrecognized.?name'
stop_server "$SERVER_PID"

# IP literal: no SNI, the server's default certificate (with IP SAN) is used.
s_server ip -tls1_3 -www -servername "$SNI" \
	-cert "$PKI/srv.pem" -key "$PKI/srv.key" -cert2 "$PKI/dflt.pem" -key2 "$PKI/dflt.key"
run_probe --sni 127.0.0.1
assert_ok "IP literal 127.0.0.1 verified against the IP SAN"
if grep -q 'Hostname in TLS extension' "$T/ip.log"; then
	fail "IP literal: the probe sent it as SNI: $(grep 'Hostname in TLS extension' "$T/ip.log")"
else
	pass "IP literal: no SNI sent"
fi
run_probe --sni 127.0.0.2
assert_fails "IP literal not in the certificate" "$RE_NAME|ip address"
stop_server "$SERVER_PID"

# The default certificate (other.example) when asked for other.example.
s_server other -tls1_3 -www -cert "$PKI/dflt.pem" -key "$PKI/dflt.key"
run_probe --sni other.example
assert_ok "SNI other.example, certificate for other.example"
run_probe --sni OTHER.Example
assert_ok "SNI in mixed case matches (DNS names are case-insensitive)"
stop_server "$SERVER_PID"
finish
