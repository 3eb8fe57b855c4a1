#!/usr/bin/env bash
# Client certificates: openssl s_server -Verify 1 -verify_return_error (a
# certificate is required and must chain to the client CA) and -verify 1 (a
# certificate is requested but optional), gnutls-serv --require-client-cert.
# ECDSA P-256, RSA-2048 (rsa_pss_rsae_sha256 CertificateVerify) and Ed25519
# client keys; no certificate when one is required (certificate_required);
# a certificate from a CA the server does not trust.
PRIVATE_NET=1
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256
pki_root cliroot p256
pki_cert cli-ec p256 cliroot client_ext
pki_cert cli-rsa rsa2048 cliroot client_ext
pki_cert cli-ed ed25519 cliroot client_ext
pki_root rogue p256
pki_cert cli-rogue p256 rogue client_ext

REQUIRE=(-tls1_3 -www -Verify 1 -verify_return_error -CAfile "$PKI/cliroot.pem")

for c in cli-ec cli-rsa cli-ed; do
	s_server "req-$c" "${REQUIRE[@]}"
	run_probe --cert "$PKI/$c.pem" --key "$PKI/$c.key"
	assert_ok "required client certificate, $c"
	stop_server "$SERVER_PID"
done

# Required, none given: the server aborts with certificate_required (TLS 1.3;
# the alert may arrive after the probe already sent its Finished and GET).
s_server req-none "${REQUIRE[@]}"
run_probe
assert_fails "required client certificate, none given" "$RE_CERT_REQUIRED|handshake.?failure"
stop_server "$SERVER_PID"

# Required, certificate from an untrusted CA: unknown_ca from the server.
s_server req-rogue "${REQUIRE[@]}"
run_probe --cert "$PKI/cli-rogue.pem" --key "$PKI/cli-rogue.key"
assert_fails "client certificate from an untrusted CA" 'unknown.?ca|bad.?certificate|certificate.?unknown|decrypt.?error'
stop_server "$SERVER_PID"

# Key that does not match the certificate: refused locally or by the server
# (decrypt_error on the CertificateVerify), never a crash.
run_probe_mismatch() { run_probe --cert "$PKI/cli-ec.pem" --key "$PKI/cli-rogue.key"; }
s_server req-mismatch "${REQUIRE[@]}"
run_probe_mismatch
assert_fails "client key not matching its certificate" 'key|match|decrypt.?error|signature'
stop_server "$SERVER_PID"

# Optional request, none given: the probe answers with an empty Certificate.
s_server opt-none -tls1_3 -www -verify 1 -CAfile "$PKI/cliroot.pem"
run_probe
assert_ok "optional client certificate, none given"
stop_server "$SERVER_PID"

# Optional request, one given.
s_server opt-ec -tls1_3 -www -verify 1 -verify_return_error -CAfile "$PKI/cliroot.pem"
run_probe --cert "$PKI/cli-ec.pem" --key "$PKI/cli-ec.key"
assert_ok "optional client certificate, ECDSA given"
stop_server "$SERVER_PID"

# GnuTLS requiring and verifying a client certificate.
if command -v "$GNUTLS_SERV" >/dev/null 2>&1; then
	gnutls_serv g-req --http --require-client-cert --verify-client-cert \
		--x509cafile "$PKI/cliroot.pem" --priority 'NORMAL:-VERS-ALL:+VERS-TLS1.3'
	run_probe --cert "$PKI/cli-ed.pem" --key "$PKI/cli-ed.key"
	assert_ok "gnutls-serv requiring a client certificate, Ed25519 given"
	run_probe
	assert_fails "gnutls-serv requiring a client certificate, none given" "$RE_CERT_REQUIRED|handshake.?failure|bad.?certificate"
	stop_server "$SERVER_PID"
fi
finish
