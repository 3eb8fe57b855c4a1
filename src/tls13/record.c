/*
 * record.c: record protection, RFC 9846 §5.2-5.3.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "tls13/crypto.h"
#include "tls13/keysched.h"
#include "tls13/record.h"

int
tls13_dir_set(struct tls13_dir *d, uint16_t suite, size_t hashlen,
    const uint8_t *secret, int enc)
{
	tls13_aead_free(&d->aead);
	if (secret != d->secret)
		memcpy(d->secret, secret, hashlen);
	d->suite = suite;
	d->hashlen = (uint8_t)hashlen;
	d->enc = (uint8_t)enc;
	d->seq = 0;
	/* §7.3; the key itself is derived when the first record needs it. */
	return tls13_expand_label(hashlen, secret, "iv", NULL, 0, d->iv,
	    TLS13_AEAD_IV);
}

/* Build the keyed AEAD context of @a d if it was dropped or not made. */
static int
dir_ready(struct tls13_dir *d)
{
	uint8_t key[32];
	int ret = -1;

	if (d->aead != NULL)
		return 0;
	/* §7.3: the key only; the IV was derived by tls13_dir_set. */
	if (tls13_expand_label(d->hashlen, d->secret, "key", NULL, 0, key,
	    tls13_suite_keylen(d->suite)) != 0 ||
	    tls13_aead_new(&d->aead, d->suite, key, d->enc) != 0)
		goto out;
	ret = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	return ret;
}

void
tls13_dir_idle(struct tls13_dir *d)
{
	tls13_aead_free(&d->aead);
}

void
tls13_dir_clear(struct tls13_dir *d)
{
	tls13_aead_free(&d->aead);
	OPENSSL_cleanse(d, sizeof(*d));
}

/* §5.3: the per-record nonce is the IV XORed with the 64-bit sequence
 * number, left-padded to the IV length. */
static void
make_nonce(const struct tls13_dir *d, uint8_t *nonce)
{
	int i;

	memcpy(nonce, d->iv, TLS13_AEAD_IV);
	for (i = 0; i < 8; i++)
		nonce[TLS13_AEAD_IV - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

int
tls13_record_seal(struct tls13_dir *d, uint8_t type, uint8_t *rec,
    size_t ptlen, size_t pad, size_t *reclen)
{
	uint8_t nonce[TLS13_AEAD_IV];
	size_t inner = ptlen + 1 + pad, len = inner + TLS13_AEAD_TAG;

	/* §5.2: TLSInnerPlaintext = content || type || zeros; the outer
	 * header says application_data, legacy version 0x0303. */
	rec[TLS13_HDR + ptlen] = type;
	memset(rec + TLS13_HDR + ptlen + 1, 0, pad);
	rec[0] = TLS13_CT_APP;
	rec[1] = 3;
	rec[2] = 3;
	rec[3] = (uint8_t)(len >> 8);
	rec[4] = (uint8_t)len;
	make_nonce(d, nonce);
	if (dir_ready(d) != 0 || tls13_aead_seal(d->aead, nonce, rec, TLS13_HDR, rec + TLS13_HDR,
	    inner, rec + TLS13_HDR + inner) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	d->seq++;
	if (d->per_record)
		tls13_aead_free(&d->aead);
	*reclen = TLS13_HDR + len;
	return 0;
}

int
tls13_record_open(struct tls13_dir *d, uint8_t *rec, size_t reclen,
    uint8_t *type, size_t *ptlen)
{
	uint8_t nonce[TLS13_AEAD_IV];
	size_t n;
	int ok;

	/* §5.2: a TLSCiphertext longer than 2^14 + 256 is record_overflow;
	 * one too short to hold a tag cannot authenticate. */
	if (reclen - TLS13_HDR > TLS13_MAX_PLAINTEXT + 256)
		return TLS13_ALERT_RECORD_OVERFLOW;
	if (reclen < TLS13_HDR + 1 + TLS13_AEAD_TAG)
		return TLS13_ALERT_BAD_RECORD_MAC;
	n = reclen - TLS13_HDR - TLS13_AEAD_TAG;
	make_nonce(d, nonce);
	if (dir_ready(d) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	ok = tls13_aead_open(d->aead, nonce, rec, TLS13_HDR, rec + TLS13_HDR,
	    n, rec + TLS13_HDR + n) == 0;
	if (d->per_record)
		tls13_aead_free(&d->aead);
	if (!ok)
		return TLS13_ALERT_BAD_RECORD_MAC;
	d->seq++;
	/* Strip the zero padding; no non-zero byte at all is
	 * unexpected_message (§5.4). */
	while (n > 0 && rec[TLS13_HDR + n - 1] == 0)
		n--;
	if (n == 0)
		return TLS13_ALERT_UNEXPECTED_MESSAGE;
	*type = rec[TLS13_HDR + n - 1];
	*ptlen = n - 1;
	if (*ptlen > TLS13_MAX_PLAINTEXT)
		return TLS13_ALERT_RECORD_OVERFLOW;
	return 0;
}
