/*
 * crypto_openssl.c: crypto.h implemented with OpenSSL 3 libcrypto.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "tls13/crypto.h"
#include "tls13/tls13.h"

static const EVP_MD *
md_of(size_t hashlen)
{
	switch (hashlen) {
	case 32:
		return EVP_sha256();
	case 48:
		return EVP_sha384();
	default:
		return NULL;
	}
}

size_t
tls13_suite_hashlen(uint16_t suite)
{
	switch (suite) {
	case TLS13_AES_128_GCM_SHA256:
	case TLS13_CHACHA20_POLY1305_SHA256:
		return 32;
	case TLS13_AES_256_GCM_SHA384:
		return 48;
	default:
		return 0;
	}
}

size_t
tls13_suite_keylen(uint16_t suite)
{
	switch (suite) {
	case TLS13_AES_128_GCM_SHA256:
		return 16;
	case TLS13_AES_256_GCM_SHA384:
	case TLS13_CHACHA20_POLY1305_SHA256:
		return 32;
	default:
		return 0;
	}
}

int
tls13_hash_new(EVP_MD_CTX **ctx, size_t hashlen)
{
	const EVP_MD *md = md_of(hashlen);

	*ctx = NULL;
	if (md == NULL || (*ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (EVP_DigestInit_ex(*ctx, md, NULL) != 1) {
		tls13_hash_free(ctx);
		return -1;
	}
	return 0;
}

int
tls13_hash_update(EVP_MD_CTX *ctx, const uint8_t *p, size_t n)
{
	return EVP_DigestUpdate(ctx, p, n) == 1 ? 0 : -1;
}

int
tls13_hash_peek(EVP_MD_CTX *ctx, const uint8_t *more, size_t n,
    uint8_t *out)
{
	EVP_MD_CTX *tmp;
	int ret = -1;

	if ((tmp = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (EVP_MD_CTX_copy_ex(tmp, ctx) == 1 &&
	    (n == 0 || EVP_DigestUpdate(tmp, more, n) == 1) &&
	    EVP_DigestFinal_ex(tmp, out, NULL) == 1)
		ret = 0;
	EVP_MD_CTX_free(tmp);
	return ret;
}

void
tls13_hash_free(EVP_MD_CTX **ctx)
{
	EVP_MD_CTX_free(*ctx);
	*ctx = NULL;
}

int
tls13_hash(size_t hashlen, const uint8_t *p, size_t n, uint8_t *out)
{
	const EVP_MD *md = md_of(hashlen);

	if (md == NULL)
		return -1;
	return EVP_Digest(p, n, out, NULL, md, NULL) == 1 ? 0 : -1;
}

int
tls13_hmac(size_t hashlen, const uint8_t *key, size_t keylen,
    const uint8_t *data, size_t n, uint8_t *out)
{
	const EVP_MD *md = md_of(hashlen);

	if (md == NULL || keylen > 255)
		return -1;
	return HMAC(md, key, (int)keylen, data, n, out, NULL) != NULL ? 0 : -1;
}

int
tls13_hkdf_extract(size_t hashlen, const uint8_t *salt, size_t saltlen,
    const uint8_t *ikm, size_t ikmlen, uint8_t *out)
{
	static const uint8_t zero[TLS13_MAX_HASH];

	/* RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM); no salt = HashLen zeros. */
	if (salt == NULL) {
		salt = zero;
		saltlen = hashlen;
	}
	return tls13_hmac(hashlen, salt, saltlen, ikm, ikmlen, out);
}

int
tls13_hkdf_expand(size_t hashlen, const uint8_t *prk, const uint8_t *info,
    size_t infolen, uint8_t *out, size_t outlen)
{
	uint8_t blk[TLS13_MAX_HASH + 512 + 1], t[TLS13_MAX_HASH];
	size_t tlen = 0, done = 0, n;
	uint8_t i;
	int ret = -1;

	/* RFC 5869 §2.3: T(i) = HMAC(PRK, T(i-1) | info | i). */
	if (infolen > 512 || outlen > 255 * hashlen)
		return -1;
	for (i = 1; done < outlen; i++) {
		memcpy(blk, t, tlen);
		memcpy(blk + tlen, info, infolen);
		blk[tlen + infolen] = i;
		if (tls13_hmac(hashlen, prk, hashlen, blk, tlen + infolen + 1,
		    t) != 0)
			goto out;
		tlen = hashlen;
		n = outlen - done < hashlen ? outlen - done : hashlen;
		memcpy(out + done, t, n);
		done += n;
	}
	ret = 0;
out:
	OPENSSL_cleanse(t, sizeof(t));
	OPENSSL_cleanse(blk, sizeof(blk));
	return ret;
}

int
tls13_aead_new(EVP_CIPHER_CTX **ctx, uint16_t suite, const uint8_t *key,
    int enc)
{
	const EVP_CIPHER *cipher;

	switch (suite) {
	case TLS13_AES_128_GCM_SHA256:
		cipher = EVP_aes_128_gcm();
		break;
	case TLS13_AES_256_GCM_SHA384:
		cipher = EVP_aes_256_gcm();
		break;
	case TLS13_CHACHA20_POLY1305_SHA256:
		cipher = EVP_chacha20_poly1305();
		break;
	default:
		return -1;
	}
	if ((*ctx = EVP_CIPHER_CTX_new()) == NULL)
		return -1;
	if (EVP_CipherInit_ex(*ctx, cipher, NULL, key, NULL, enc) != 1) {
		tls13_aead_free(ctx);
		return -1;
	}
	return 0;
}

void
tls13_aead_free(EVP_CIPHER_CTX **ctx)
{
	EVP_CIPHER_CTX_free(*ctx);
	*ctx = NULL;
}

int
tls13_aead_seal(EVP_CIPHER_CTX *ctx, const uint8_t *nonce, const uint8_t *aad,
    size_t aadlen, uint8_t *buf, size_t n, uint8_t *tag)
{
	int l;

	if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 1) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &l, aad, (int)aadlen) != 1 ||
	    (n > 0 && EVP_EncryptUpdate(ctx, buf, &l, buf, (int)n) != 1) ||
	    EVP_EncryptFinal_ex(ctx, buf + n, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TLS13_AEAD_TAG,
	    tag) != 1)
		return -1;
	return 0;
}

int
tls13_aead_open(EVP_CIPHER_CTX *ctx, const uint8_t *nonce, const uint8_t *aad,
    size_t aadlen, uint8_t *buf, size_t n, const uint8_t *tag)
{
	uint8_t t[TLS13_AEAD_TAG];
	int l;

	memcpy(t, tag, sizeof(t));
	if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, 0) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &l, aad, (int)aadlen) != 1 ||
	    (n > 0 && EVP_DecryptUpdate(ctx, buf, &l, buf, (int)n) != 1) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TLS13_AEAD_TAG,
	    t) != 1 ||
	    EVP_DecryptFinal_ex(ctx, buf + n, &l) != 1)
		return -1;
	return 0;
}

size_t
tls13_kex_publen(uint16_t group)
{
	switch (group) {
	case TLS13_GROUP_X25519:
		return 32;
	case TLS13_GROUP_SECP256R1:
		return 65;
	default:
		return 0;
	}
}

/* Known-answer tests only: a P-256 key from a fixed scalar.  ECDH needs
 * only the scalar; the public share is left zero (the test sends the
 * trace's ClientHello verbatim). */
static int
p256_from_private(const uint8_t *priv, EVP_PKEY **key, uint8_t *pub)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	BIGNUM *bn = NULL;
	int ret = -1;

	*key = NULL;
	memset(pub, 0, 65);
	pub[0] = 4;
	if ((bn = BN_bin2bn(priv, 32, NULL)) == NULL ||
	    (bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    "P-256", 0) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, key, EVP_PKEY_KEYPAIR, params) != 1)
		goto out;
	ret = 0;
out:
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(bn);
	return ret;
}

int
tls13_kex_keygen(uint16_t group, const uint8_t *fixed_priv, EVP_PKEY **key,
    uint8_t *pub)
{
	size_t len;

	*key = NULL;
	switch (group) {
	case TLS13_GROUP_X25519:
		if (fixed_priv != NULL)
			*key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519,
			    NULL, fixed_priv, 32);
		else
			*key = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
		len = 32;
		if (*key == NULL ||
		    EVP_PKEY_get_raw_public_key(*key, pub, &len) != 1 ||
		    len != 32)
			goto fail;
		return 0;
	case TLS13_GROUP_SECP256R1:
		if (fixed_priv != NULL)
			return p256_from_private(fixed_priv, key, pub);
		/* RFC 9846 §4.2.8.2: UncompressedPointRepresentation. */
		*key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		if (*key == NULL ||
		    EVP_PKEY_get_octet_string_param(*key,
		    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, 65, &len) != 1 ||
		    len != 65 || pub[0] != 4)
			goto fail;
		return 0;
	default:
		return -1;
	}
fail:
	EVP_PKEY_free(*key);
	*key = NULL;
	return -1;
}

int
tls13_kex_derive(EVP_PKEY *key, uint16_t group, const uint8_t *peer,
    size_t peerlen, uint8_t *out)
{
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	size_t len = 32;
	int ret = -1;

	if (peerlen != tls13_kex_publen(group))
		return -1;
	if (group == TLS13_GROUP_X25519) {
		pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer,
		    peerlen);
	} else {
		if (peer[0] != 4)
			return -1;
		if ((pk = EVP_PKEY_new()) == NULL ||
		    EVP_PKEY_copy_parameters(pk, key) != 1 ||
		    EVP_PKEY_set1_encoded_public_key(pk, peer, peerlen) != 1)
			goto out;
	}
	if (pk == NULL || (pctx = EVP_PKEY_CTX_new(key, NULL)) == NULL)
		goto out;
	/* OpenSSL rejects an x25519 all-zero result and off-curve points
	 * (RFC 9846 §7.4.2, §7.4.1). */
	if (EVP_PKEY_derive_init(pctx) != 1 ||
	    EVP_PKEY_derive_set_peer(pctx, pk) != 1 ||
	    EVP_PKEY_derive(pctx, out, &len) != 1 || len != 32)
		goto out;
	ret = 0;
out:
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pk);
	return ret;
}

int
tls13_sig_supported(uint16_t scheme)
{
	switch (scheme) {
	case TLS13_SIG_ECDSA_SECP256R1_SHA256:
	case TLS13_SIG_ECDSA_SECP384R1_SHA384:
	case TLS13_SIG_RSA_PSS_RSAE_SHA256:
	case TLS13_SIG_RSA_PSS_RSAE_SHA384:
	case TLS13_SIG_RSA_PSS_RSAE_SHA512:
	case TLS13_SIG_ED25519:
		return 1;
	default:
		return 0;
	}
}

static const EVP_MD *
sig_md(uint16_t scheme)
{
	switch (scheme) {
	case TLS13_SIG_ECDSA_SECP256R1_SHA256:
	case TLS13_SIG_RSA_PSS_RSAE_SHA256:
		return EVP_sha256();
	case TLS13_SIG_ECDSA_SECP384R1_SHA384:
	case TLS13_SIG_RSA_PSS_RSAE_SHA384:
		return EVP_sha384();
	case TLS13_SIG_RSA_PSS_RSAE_SHA512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

int
tls13_sig_key_matches(EVP_PKEY *key, uint16_t scheme)
{
	char group[32];

	switch (scheme) {
	case TLS13_SIG_ECDSA_SECP256R1_SHA256:
	case TLS13_SIG_ECDSA_SECP384R1_SHA384:
		/* RFC 9846 §4.2.3: the curve is bound to the scheme. */
		if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
		    EVP_PKEY_get_group_name(key, group, sizeof(group),
		    NULL) != 1)
			return 0;
		return strcmp(group, scheme == TLS13_SIG_ECDSA_SECP256R1_SHA256 ?
		    "prime256v1" : "secp384r1") == 0;
	case TLS13_SIG_RSA_PSS_RSAE_SHA256:
	case TLS13_SIG_RSA_PSS_RSAE_SHA384:
	case TLS13_SIG_RSA_PSS_RSAE_SHA512:
		return EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
	case TLS13_SIG_ED25519:
		return EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
	default:
		return 0;
	}
}

static int
sig_init(EVP_MD_CTX *m, EVP_PKEY *key, uint16_t scheme, int sign)
{
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *md = sig_md(scheme);
	int r;

	if (!tls13_sig_key_matches(key, scheme))
		return -1;
	r = sign ? EVP_DigestSignInit(m, &pctx, md, NULL, key) :
	    EVP_DigestVerifyInit(m, &pctx, md, NULL, key);
	if (r != 1)
		return -1;
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
		/* RFC 9846 §4.2.3: RSASSA-PSS, salt as long as the digest,
		 * MGF1 with the same hash. */
		if (EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
		    RSA_PSS_SALTLEN_DIGEST) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1)
			return -1;
	}
	return 0;
}

int
tls13_sig_verify(EVP_PKEY *key, uint16_t scheme, const uint8_t *data,
    size_t n, const uint8_t *sig, size_t siglen)
{
	EVP_MD_CTX *m;
	int ret = -1;

	if ((m = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (sig_init(m, key, scheme, 0) == 0 &&
	    EVP_DigestVerify(m, sig, siglen, data, n) == 1)
		ret = 0;
	EVP_MD_CTX_free(m);
	return ret;
}

int
tls13_sig_sign(EVP_PKEY *key, uint16_t scheme, const uint8_t *data,
    size_t n, uint8_t *sig, size_t cap, size_t *siglen)
{
	EVP_MD_CTX *m;
	size_t len = 0;
	int ret = -1;

	if ((m = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (sig_init(m, key, scheme, 1) != 0 ||
	    EVP_DigestSign(m, NULL, &len, data, n) != 1 || len > cap)
		goto out;
	len = cap;
	if (EVP_DigestSign(m, sig, &len, data, n) != 1)
		goto out;
	*siglen = len;
	ret = 0;
out:
	EVP_MD_CTX_free(m);
	return ret;
}

int
tls13_crypto_warmup(void)
{
	static const uint16_t suites[] = { TLS13_AES_128_GCM_SHA256,
		TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256 };
	static const uint16_t groups[] = { TLS13_GROUP_X25519,
		TLS13_GROUP_SECP256R1 };
	uint8_t buf[64] = { 0 }, pub[65], out[64], sig[512];
	EVP_CIPHER_CTX *ctx;
	EVP_PKEY *k, *sk;
	EVP_MD_CTX *h;
	size_t i, siglen;
	int ret = 0;

	for (i = 0; i < 2; i++) {
		if (tls13_hash_new(&h, i ? 48 : 32) != 0 ||
		    tls13_hash_update(h, buf, 8) != 0 ||
		    tls13_hash_peek(h, buf, 8, out) != 0 ||
		    tls13_hkdf_expand(i ? 48 : 32, buf, buf, 8, out, 8) != 0)
			ret = -1;
		tls13_hash_free(&h);
	}
	for (i = 0; i < 3; i++) {
		if (tls13_aead_new(&ctx, suites[i], buf, 1) != 0 ||
		    tls13_aead_seal(ctx, buf, buf, 5, out, 16, out + 16) != 0)
			ret = -1;
		tls13_aead_free(&ctx);
		if (tls13_aead_new(&ctx, suites[i], buf, 0) != 0)
			ret = -1;
		tls13_aead_free(&ctx);
	}
	for (i = 0; i < 2; i++) {
		if (tls13_kex_keygen(groups[i], NULL, &k, pub) != 0 ||
		    tls13_kex_derive(k, groups[i], pub,
		    tls13_kex_publen(groups[i]), out) != 0)
			ret = -1;
		EVP_PKEY_free(k);
	}
	/* Signature verification paths (RSA-PSS, ECDSA, Ed25519). */
	sk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	if (sk == NULL || tls13_sig_sign(sk, TLS13_SIG_RSA_PSS_RSAE_SHA256,
	    buf, 8, sig, sizeof(sig), &siglen) != 0 ||
	    tls13_sig_verify(sk, TLS13_SIG_RSA_PSS_RSAE_SHA256, buf, 8, sig,
	    siglen) != 0)
		ret = -1;
	EVP_PKEY_free(sk);
	sk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (sk == NULL || tls13_sig_sign(sk, TLS13_SIG_ECDSA_SECP256R1_SHA256,
	    buf, 8, sig, sizeof(sig), &siglen) != 0 ||
	    tls13_sig_verify(sk, TLS13_SIG_ECDSA_SECP256R1_SHA256, buf, 8, sig,
	    siglen) != 0)
		ret = -1;
	EVP_PKEY_free(sk);
	sk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (sk == NULL || tls13_sig_sign(sk, TLS13_SIG_ED25519, buf, 8, sig,
	    sizeof(sig), &siglen) != 0)
		ret = -1;
	EVP_PKEY_free(sk);
	OPENSSL_cleanse(out, sizeof(out));
	return ret;
}
