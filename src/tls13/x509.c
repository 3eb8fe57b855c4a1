/*
 * x509.c: certificate chain and name validation through OpenSSL's X509
 * store (see x509.h).
 */
#include <string.h>

#include <arpa/inet.h>

#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/provider.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "tls13/buf.h"
#include "tls13/crypto.h"
#include "tls13/x509.h"

/*
 * Certificates are decoded in a library context of their own.  OpenSSL 3.0
 * decodes each certificate's public key through OSSL_DECODER, whose setup
 * walks a copy of every method the context has fetched (88 bytes each): in
 * the default context of a process that also does TLS that is ~200 methods,
 * 17 KB per certificate.  This context only ever holds the key management
 * and decoder methods, and the copy is ~3 KB.  It is filled once per
 * process (tls13_x509_global_init) and lives until exit.  Only decoding
 * happens there: the X509 objects keep the default context, so chain and
 * signature checks run where openssl.cnf applies.
 */
static OSSL_LIB_CTX *x509_ctx;
static CRYPTO_ONCE x509_once = CRYPTO_ONCE_STATIC_INIT;

static void
noop_keymgmt(EVP_KEYMGMT *k, void *arg)
{
	(void)k;
	(void)arg;
}

static void
noop_decoder(OSSL_DECODER *d, void *arg)
{
	(void)d;
	(void)arg;
}

static void
x509_ctx_make(void)
{
	OSSL_LIB_CTX *ctx;

	if ((ctx = OSSL_LIB_CTX_new()) == NULL)
		return;
	if (OSSL_PROVIDER_load(ctx, "default") == NULL) {
		OSSL_LIB_CTX_free(ctx);
		return;
	}
	/* Fetch every key manager and decoder now, not on the first
	 * connection. */
	EVP_KEYMGMT_do_all_provided(ctx, noop_keymgmt, NULL);
	OSSL_DECODER_do_all_provided(ctx, noop_decoder, NULL);
	x509_ctx = ctx;
}

/* The context certificates are decoded in; NULL (the default context) if
 * it could not be made. */
static OSSL_LIB_CTX *
x509_libctx(void)
{
	if (!CRYPTO_THREAD_run_once(&x509_once, x509_ctx_make))
		return NULL;
	return x509_ctx;
}

int
tls13_x509_global_init(void)
{
	return x509_libctx() != NULL ? 0 : -1;
}

/* Map an X509_V_ERR_* code to the alert RFC 9846 §6.2 describes. */
static int
x509_alert(int verr)
{
	switch (verr) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return TLS13_ALERT_CERTIFICATE_EXPIRED;
	case X509_V_ERR_CERT_REVOKED:
		return TLS13_ALERT_CERTIFICATE_REVOKED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return TLS13_ALERT_UNKNOWN_CA;
	default:
		return TLS13_ALERT_BAD_CERTIFICATE;
	}
}

/* 1 if @a name is an IPv4 or IPv6 literal. */
static int
is_ip(const char *name)
{
	unsigned char tmp[16];

	return inet_pton(AF_INET, name, tmp) == 1 ||
	    inet_pton(AF_INET6, name, tmp) == 1;
}

int
tls13_x509_verify(const tls13_config *cfg, const uint8_t *list, size_t len,
    EVP_PKEY **leaf_key, uint32_t *x509err)
{
	STACK_OF(X509) *chain = NULL;
	X509_STORE_CTX *sctx = NULL;
	X509 *leaf = NULL, *x;
	EVP_PKEY *key;
	tls13_rbuf b, data, ext;
	const uint8_t *p;
	const char *name;
	int ret = TLS13_ALERT_INTERNAL_ERROR, bt;

	*leaf_key = NULL;
	*x509err = 0;
	tls13_rbuf_init(&b, list, len);
	/* §4.4.2.4: an empty server Certificate is decode_error. */
	if (len == 0) {
		ret = TLS13_ALERT_DECODE_ERROR;
		goto out;
	}
	if ((chain = sk_X509_new_null()) == NULL)
		goto out;
	while (tls13_rbuf_left(&b) > 0) {
		if (tls13_get_block24(&b, &data) != 0 || data.len == 0 ||
		    tls13_get_block16(&b, &ext) != 0) {
			ret = TLS13_ALERT_DECODE_ERROR;
			goto out;
		}
		/* We offer no extension that may appear here (status_request,
		 * SCT), so any is unsupported_extension (§4.2). */
		if (ext.len != 0) {
			ret = TLS13_ALERT_UNSUPPORTED_EXTENSION;
			goto out;
		}
		p = data.base;
		x = (X509 *)ASN1_item_d2i_ex(NULL, &p, (long)data.len,
		    ASN1_ITEM_rptr(X509), x509_libctx(), NULL);
		if (x == NULL || p != data.base + data.len) {
			X509_free(x);
			ret = TLS13_ALERT_BAD_CERTIFICATE;
			goto out;
		}
		if (leaf == NULL)
			leaf = x;
		else if (!sk_X509_push(chain, x)) {
			X509_free(x);
			goto out;
		}
	}
	if ((key = X509_get0_pubkey(leaf)) == NULL) {
		ret = TLS13_ALERT_UNSUPPORTED_CERTIFICATE;
		goto out;
	}
	bt = EVP_PKEY_get_base_id(key);
	if (bt != EVP_PKEY_RSA && bt != EVP_PKEY_EC && bt != EVP_PKEY_ED25519) {
		ret = TLS13_ALERT_UNSUPPORTED_CERTIFICATE;
		goto out;
	}
	if (!cfg->insecure_no_verify) {
		if (cfg->store == NULL ||
		    (sctx = X509_STORE_CTX_new()) == NULL ||
		    X509_STORE_CTX_init(sctx, cfg->store, leaf, chain) != 1 ||
		    X509_STORE_CTX_set_default(sctx, "ssl_server") != 1)
			goto out;
		if (X509_verify_cert(sctx) != 1) {
			*x509err = (uint32_t)X509_STORE_CTX_get_error(sctx);
			ret = x509_alert((int)*x509err);
			goto out;
		}
		name = cfg->verify_name ? cfg->verify_name : cfg->server_name;
		if (name == NULL) {
			ret = TLS13_ALERT_BAD_CERTIFICATE;
			*x509err = X509_V_ERR_HOSTNAME_MISMATCH;
			goto out;
		}
		if (is_ip(name)) {
			if (X509_check_ip_asc(leaf, name, 0) != 1) {
				*x509err = X509_V_ERR_IP_ADDRESS_MISMATCH;
				ret = TLS13_ALERT_BAD_CERTIFICATE;
				goto out;
			}
		} else if (X509_check_host(leaf, name, 0, 0, NULL) != 1) {
			*x509err = X509_V_ERR_HOSTNAME_MISMATCH;
			ret = TLS13_ALERT_BAD_CERTIFICATE;
			goto out;
		}
	}
	if (EVP_PKEY_up_ref(key) != 1)
		goto out;
	*leaf_key = key;
	ret = 0;
out:
	X509_STORE_CTX_free(sctx);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	return ret;
}
