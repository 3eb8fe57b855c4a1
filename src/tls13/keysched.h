/*
 * keysched.h: the TLS 1.3 key schedule (RFC 9846 §7.1) on top of crypto.h.
 * All secrets are @a hashlen bytes; every function returns 0 or -1.
 */
#ifndef TLSGATE_TLS13_KEYSCHED_H
#define TLSGATE_TLS13_KEYSCHED_H

#include <stddef.h>
#include <stdint.h>

/** HKDF-Expand-Label(secret, "tls13 " + label, context, outlen) (§7.1). */
int tls13_expand_label(size_t hashlen, const uint8_t *secret,
    const char *label, const uint8_t *context, size_t ctxlen, uint8_t *out,
    size_t outlen);
/** Derive-Secret(secret, label, messages) given Transcript-Hash(messages)
 *  in @a thash; NULL @a thash means the hash of no messages. */
int tls13_derive_secret(size_t hashlen, const uint8_t *secret,
    const char *label, const uint8_t *thash, uint8_t *out);
/** Early Secret = HKDF-Extract(0, PSK or zeros) into @a out. */
int tls13_early_secret(size_t hashlen, const uint8_t *psk, uint8_t *out);
/** Advance @a secret in place to the next stage:
 *  HKDF-Extract(Derive-Secret(secret, "derived", ""), ikm or zeros).
 *  Early -> Handshake Secret (ikm = (EC)DHE), Handshake -> Master. */
int tls13_next_secret(size_t hashlen, uint8_t *secret, const uint8_t *ikm,
    size_t ikmlen);
/** Finished verify_data = HMAC(finished_key(base), thash) (§4.4.4). */
int tls13_finished(size_t hashlen, const uint8_t *base, const uint8_t *thash,
    uint8_t *out);
/** Traffic key and IV from a traffic secret (§7.3). */
int tls13_traffic_keys(size_t hashlen, const uint8_t *secret, size_t keylen,
    uint8_t *key, uint8_t *iv);
/** application_traffic_secret_N+1 from _N, in place (§7.2). */
int tls13_update_secret(size_t hashlen, uint8_t *secret);

#endif
