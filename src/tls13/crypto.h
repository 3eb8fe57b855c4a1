/*
 * crypto.h: the narrow interface between the tls13 engine and its
 * cryptographic primitives (hash, HMAC/HKDF, AEAD, key exchange, signature),
 * in the spirit of picotls' descriptor structs.  crypto_openssl.c implements
 * it with OpenSSL libcrypto; nothing else in src/tls13 calls EVP directly
 * except x509.c for certificate path validation.
 *
 * Hash algorithms are identified by their output length: 32 is SHA-256,
 * 48 is SHA-384 (the only two TLS 1.3 suites use).  Every function returns
 * 0 on success and -1 on failure unless it says otherwise.
 */
#ifndef TLSGATE_TLS13_CRYPTO_H
#define TLSGATE_TLS13_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define TLS13_AEAD_TAG 16
#define TLS13_AEAD_IV  12

/** Hash length of suite @a suite, or 0 if the suite is not supported. */
size_t tls13_suite_hashlen(uint16_t suite);
/** AEAD key length of suite @a suite, or 0 if not supported. */
size_t tls13_suite_keylen(uint16_t suite);

/** Allocate *@a ctx as an empty running hash of length @a hashlen. */
int tls13_hash_new(EVP_MD_CTX **ctx, size_t hashlen);
/** Absorb @a n bytes. */
int tls13_hash_update(EVP_MD_CTX *ctx, const uint8_t *p, size_t n);
/** Write the digest of what was absorbed so far, followed by @a n more
 *  bytes @a more (may be NULL/0), into @a out, leaving @a ctx unchanged
 *  (a copy is finalised). */
int tls13_hash_peek(EVP_MD_CTX *ctx, const uint8_t *more, size_t n,
    uint8_t *out);
/** Free *@a ctx and set it to NULL; NULL is fine. */
void tls13_hash_free(EVP_MD_CTX **ctx);
/** One-shot hash of @a n bytes into @a out. */
int tls13_hash(size_t hashlen, const uint8_t *p, size_t n, uint8_t *out);
/** HMAC with hash @a hashlen; @a out receives @a hashlen bytes. */
int tls13_hmac(size_t hashlen, const uint8_t *key, size_t keylen,
    const uint8_t *data, size_t n, uint8_t *out);
/** HKDF-Extract (RFC 5869); a NULL @a salt means hashlen zero bytes. */
int tls13_hkdf_extract(size_t hashlen, const uint8_t *salt, size_t saltlen,
    const uint8_t *ikm, size_t ikmlen, uint8_t *out);
/** HKDF-Expand (RFC 5869); @a infolen at most 512, @a outlen at most 255*hashlen. */
int tls13_hkdf_expand(size_t hashlen, const uint8_t *prk, const uint8_t *info,
    size_t infolen, uint8_t *out, size_t outlen);

/** Allocate *@a ctx keyed with @a key for @a suite, to encrypt if @a enc. */
int tls13_aead_new(EVP_CIPHER_CTX **ctx, uint16_t suite, const uint8_t *key,
    int enc);
/** Free *@a ctx and set it to NULL. */
void tls13_aead_free(EVP_CIPHER_CTX **ctx);
/** Encrypt @a n bytes of @a buf in place under @a nonce and @a aad and
 *  write the 16-byte tag to @a tag. */
int tls13_aead_seal(EVP_CIPHER_CTX *ctx, const uint8_t *nonce,
    const uint8_t *aad, size_t aadlen, uint8_t *buf, size_t n, uint8_t *tag);
/** Decrypt @a n bytes of @a buf in place and check @a tag.  Returns -1 if
 *  the tag does not match (the plaintext must then be ignored). */
int tls13_aead_open(EVP_CIPHER_CTX *ctx, const uint8_t *nonce,
    const uint8_t *aad, size_t aadlen, uint8_t *buf, size_t n,
    const uint8_t *tag);

/** Public key share length of @a group (32 or 65), or 0 if unsupported. */
size_t tls13_kex_publen(uint16_t group);
/** Create an ephemeral key for @a group in *@a key (caller frees with
 *  EVP_PKEY_free); @a fixed_priv (32 bytes, x25519 only) makes it
 *  deterministic for known-answer tests.  Writes the public share to
 *  @a pub (tls13_kex_publen bytes). */
int tls13_kex_keygen(uint16_t group, const uint8_t *fixed_priv,
    EVP_PKEY **key, uint8_t *pub);
/** ECDH with the peer's share @a peer; writes the 32-byte shared secret to
 *  @a out.  Returns -1 for an invalid share (RFC 9846 §4.2.8.2, §7.4). */
int tls13_kex_derive(EVP_PKEY *key, uint16_t group, const uint8_t *peer,
    size_t peerlen, uint8_t *out);

/** 1 if @a scheme is one this engine supports in CertificateVerify. */
int tls13_sig_supported(uint16_t scheme);
/** 1 if key @a key can produce/verify @a scheme (type and curve match). */
int tls13_sig_key_matches(EVP_PKEY *key, uint16_t scheme);
/** Verify @a sig over @a data with @a key under @a scheme; 0 if valid. */
int tls13_sig_verify(EVP_PKEY *key, uint16_t scheme, const uint8_t *data,
    size_t n, const uint8_t *sig, size_t siglen);
/** Sign @a data with @a key under @a scheme into @a sig (capacity @a cap). */
int tls13_sig_sign(EVP_PKEY *key, uint16_t scheme, const uint8_t *data,
    size_t n, uint8_t *sig, size_t cap, size_t *siglen);

/** Run every primitive once so libcrypto's lazy, process-wide caches
 *  (provider algorithm fetches, method tables) are filled before any
 *  connection is measured.  Returns 0 or -1. */
int tls13_crypto_warmup(void);

#endif
