#!/usr/bin/env bash
# Server certificate and CertificateVerify types, against openssl s_server
# with -sigalgs pinned to one scheme so the test knows which one was used:
#   RSA-2048 chain root -> intermediate -> leaf: rsa_pss_rsae_sha256/384/512
#   ECDSA P-256 leaf: ecdsa_secp256r1_sha256; P-384 leaf: ecdsa_secp384r1_sha384
#   Ed25519 leaf: ed25519
# plus all-ECDSA and all-Ed25519 chains (certificate signatures other than
# RSA), and a depth-4 chain (two intermediates).
. "$(dirname "$0")/lib.sh"
need_probe
pki_root root rsa2048
pki_cert int rsa2048 root ca_ext
pki_cert rsa rsa2048 int server_ext
pki_cert ec256 p256 int server_ext
pki_cert ec384 p384 int server_ext
pki_cert ed ed25519 int server_ext
# ECDSA-only chain: P-384 root -> P-256 intermediate -> P-256 leaf.
pki_root ecroot p384
pki_cert ecint p256 ecroot ca_ext
pki_cert ecleaf p256 ecint server_ext
# Ed25519-only chain.
pki_root edroot ed25519
pki_cert edleaf ed25519 edroot server_ext
# Two intermediates: root -> int -> int2 -> leaf.
pki_cert int2 rsa2048 int ca_ext
pki_cert deep p256 int2 server_ext
cat "$PKI/int2.pem" "$PKI/int.pem" >"$PKI/chain2.pem"
# A ~20 KB leaf (600 subjectAltNames): the Certificate message is larger
# than one record, so it must be reassembled across records.
{
	printf '[ big_ext ]\nbasicConstraints = critical,CA:FALSE\n'
	printf 'keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n'
	printf 'subjectAltName = @big_alt\n[ big_alt ]\nDNS.0 = %s\n' "$SNI"
	for i in $(seq 1 600); do printf 'DNS.%d = host%04d.interop.tlsgate.example\n' "$i" "$i"; done
} >>"$PKI/openssl.cnf"
pki_cert big p256 int big_ext

# case NAME LEAF SIGALG [CHAIN [ROOT]]
case_()
{
	local name=$1 leaf=$2 sigalg=$3 chain=${4:-int} root=${5:-root}
	s_server "$name" -tls1_3 -www -sigalgs "$sigalg" \
		-cert "$PKI/$leaf.pem" -key "$PKI/$leaf.key" -cert_chain "$PKI/$chain.pem"
	run_probe --ca "$PKI/$root.pem"
	assert_ok "$name ($sigalg)"
	stop_server "$SERVER_PID"
}

case_ rsa-chain-pss256 rsa rsa_pss_rsae_sha256
case_ rsa-chain-pss384 rsa rsa_pss_rsae_sha384
case_ rsa-chain-pss512 rsa rsa_pss_rsae_sha512
case_ ecdsa-p256 ec256 ecdsa_secp256r1_sha256
case_ ecdsa-p384 ec384 ecdsa_secp384r1_sha384
case_ ed25519 ed ed25519
case_ ecdsa-chain ecleaf ecdsa_secp256r1_sha256 ecint ecroot
case_ ed25519-chain edleaf ed25519 edroot edroot
case_ depth-4-chain deep ecdsa_secp256r1_sha256 chain2 root

# The big certificate: one handshake message over two 16 KB records, and
# over ~45 records with max_fragment_length 512.
bigsize=$(wc -c <"$PKI/big.pem")
s_server big -tls1_3 -www -cert "$PKI/big.pem" -key "$PKI/big.key" -cert_chain "$PKI/int.pem"
run_probe
if assert_ok "certificate of $bigsize PEM bytes"; then
	assert_num "certificate of $bigsize PEM bytes" handshake_bytes_received 'v > 16384'
fi
run_probe --max-fragment 512
assert_ok "certificate of $bigsize PEM bytes, max_fragment_length 512" &&
	assert_num "big certificate, max_fragment_length 512" record_limit 'v == 512'
stop_server "$SERVER_PID"

# The RSA chain once more without pinning, with the probe's default offer.
s_server rsa-default -tls1_3 -www -cert "$PKI/rsa.pem" -key "$PKI/rsa.key" -cert_chain "$PKI/int.pem"
run_probe
assert_ok "rsa-chain, server's choice of scheme"
stop_server "$SERVER_PID"

# RSA PKCS#1 v1.5 is not allowed for CertificateVerify in TLS 1.3
# (RFC 9846 §4.2.3): a server restricted to it has no scheme in common.
s_server rsa-pkcs1 -tls1_3 -www -sigalgs rsa_pkcs1_sha256 \
	-cert "$PKI/rsa.pem" -key "$PKI/rsa.key" -cert_chain "$PKI/int.pem"
run_probe
assert_fails "server limited to rsa_pkcs1_sha256" "$RE_HANDSHAKE_FAILURE|illegal.?parameter|signature|no.*common"
stop_server "$SERVER_PID"
finish
