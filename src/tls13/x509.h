/*
 * x509.h: server certificate validation for the tls13 engine.  The engine
 * never parses ASN.1: this module hands the DER chain to OpenSSL's
 * X509_verify_cert and X509_check_host / X509_check_ip_asc.
 */
#ifndef TLSGATE_TLS13_X509_H
#define TLSGATE_TLS13_X509_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "tls13/tls13.h"

/**
 * Validate the certificate_list of a server Certificate message
 * (RFC 9846 §4.4.2; @a list/@a len is the vector's content, borrowed)
 * against cfg->store and the verify name (cfg->verify_name, else
 * cfg->server_name).  On success *@a leaf_key receives the leaf's public key
 * (the caller frees it with EVP_PKEY_free) and 0 is returned.  Otherwise
 * the alert to send: decode_error, bad_certificate, unsupported_certificate,
 * certificate_expired, certificate_revoked, unknown_ca,
 * unsupported_extension or internal_error, with the X509_V_ERR_* code (0 if
 * none) in *@a x509err.
 */
int tls13_x509_verify(const tls13_config *cfg, const uint8_t *list,
    size_t len, EVP_PKEY **leaf_key, uint32_t *x509err);

/** Create the library context certificates are decoded in and fill its
 *  method caches (once per process; later calls do nothing).  Returns 0,
 *  or -1 if it could not be made (the default context is used then). */
int tls13_x509_global_init(void);

#endif
