/*
 * keysched.c: the TLS 1.3 key schedule, RFC 9846 §7.1-7.3.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "tls13/buf.h"
#include "tls13/crypto.h"
#include "tls13/keysched.h"
#include "tls13/tls13.h"

int
tls13_expand_label(size_t hashlen, const uint8_t *secret, const char *label,
    const uint8_t *context, size_t ctxlen, uint8_t *out, size_t outlen)
{
	/*
	 * struct {
	 *     uint16 length = Length;
	 *     opaque label<7..255> = "tls13 " + Label;
	 *     opaque context<0..255> = Context;
	 * } HkdfLabel;
	 */
	uint8_t info[2 + 1 + 255 + 1 + 255];
	tls13_wbuf w;
	size_t at;

	tls13_wbuf_init(&w, info, sizeof(info));
	tls13_put_u16(&w, (uint16_t)outlen);
	at = tls13_put_begin(&w, 1);
	tls13_put_bytes(&w, "tls13 ", 6);
	tls13_put_bytes(&w, label, strlen(label));
	tls13_put_end(&w, at, 1);
	at = tls13_put_begin(&w, 1);
	tls13_put_bytes(&w, context, ctxlen);
	tls13_put_end(&w, at, 1);
	if (w.err || outlen > 0xffff)
		return -1;
	return tls13_hkdf_expand(hashlen, secret, info, w.len, out, outlen);
}

int
tls13_derive_secret(size_t hashlen, const uint8_t *secret, const char *label,
    const uint8_t *thash, uint8_t *out)
{
	uint8_t empty[TLS13_MAX_HASH];

	if (thash == NULL) {
		if (tls13_hash(hashlen, NULL, 0, empty) != 0)
			return -1;
		thash = empty;
	}
	return tls13_expand_label(hashlen, secret, label, thash, hashlen, out,
	    hashlen);
}

int
tls13_early_secret(size_t hashlen, const uint8_t *psk, uint8_t *out)
{
	static const uint8_t zero[TLS13_MAX_HASH];

	return tls13_hkdf_extract(hashlen, NULL, 0, psk ? psk : zero, hashlen,
	    out);
}

int
tls13_next_secret(size_t hashlen, uint8_t *secret, const uint8_t *ikm,
    size_t ikmlen)
{
	static const uint8_t zero[TLS13_MAX_HASH];
	uint8_t salt[TLS13_MAX_HASH];
	int ret = -1;

	if (ikm == NULL) {
		ikm = zero;
		ikmlen = hashlen;
	}
	if (tls13_derive_secret(hashlen, secret, "derived", NULL, salt) != 0 ||
	    tls13_hkdf_extract(hashlen, salt, hashlen, ikm, ikmlen,
	    secret) != 0)
		goto out;
	ret = 0;
out:
	OPENSSL_cleanse(salt, sizeof(salt));
	return ret;
}

int
tls13_finished(size_t hashlen, const uint8_t *base, const uint8_t *thash,
    uint8_t *out)
{
	uint8_t key[TLS13_MAX_HASH];
	int ret = -1;

	/* finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length) */
	if (tls13_expand_label(hashlen, base, "finished", NULL, 0, key,
	    hashlen) != 0 ||
	    tls13_hmac(hashlen, key, hashlen, thash, hashlen, out) != 0)
		goto out;
	ret = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	return ret;
}

int
tls13_traffic_keys(size_t hashlen, const uint8_t *secret, size_t keylen,
    uint8_t *key, uint8_t *iv)
{
	if (tls13_expand_label(hashlen, secret, "key", NULL, 0, key,
	    keylen) != 0 ||
	    tls13_expand_label(hashlen, secret, "iv", NULL, 0, iv,
	    TLS13_AEAD_IV) != 0)
		return -1;
	return 0;
}

int
tls13_update_secret(size_t hashlen, uint8_t *secret)
{
	uint8_t next[TLS13_MAX_HASH];
	int ret = -1;

	if (tls13_expand_label(hashlen, secret, "traffic upd", NULL, 0, next,
	    hashlen) != 0)
		goto out;
	memcpy(secret, next, hashlen);
	ret = 0;
out:
	OPENSSL_cleanse(next, sizeof(next));
	return ret;
}
