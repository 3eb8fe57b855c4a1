/*
 * record.h: TLS 1.3 record protection (RFC 9846 §5.2-5.4).
 */
#ifndef TLSGATE_TLS13_RECORD_H
#define TLSGATE_TLS13_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "tls13/tls13.h"

#define TLS13_CT_CCS        20
#define TLS13_CT_ALERT      21
#define TLS13_CT_HANDSHAKE  22
#define TLS13_CT_APP        23
#define TLS13_HDR           5

/** Bytes a protected record adds to its plaintext: header, inner type, tag. */
#define TLS13_SEAL_OVERHEAD (TLS13_HDR + 1 + 16)

/** Key direction @a d for @a suite from traffic secret @a secret (copied
 *  into d->secret); @a enc selects sealing.  Frees an older context; the
 *  new one is built by the first seal/open (by every one when
 *  d->per_record is set, which this keeps).  Returns 0 or -1. */
int tls13_dir_set(struct tls13_dir *d, uint16_t suite, size_t hashlen,
    const uint8_t *secret, int enc);
/** Free the keyed AEAD context of @a d; the next record rebuilds it. */
void tls13_dir_idle(struct tls13_dir *d);
/** Free the AEAD context of @a d and wipe its secrets. */
void tls13_dir_clear(struct tls13_dir *d);
/**
 * Protect a record in place.  @a rec points at room for the header,
 * followed by @a ptlen plaintext bytes at rec+5; then @a pad zero bytes,
 * the inner type and the tag are appended (the caller checked the room:
 * ptlen + pad + TLS13_SEAL_OVERHEAD).  *@a reclen gets the record size.
 * Returns 0 or TLS13_ALERT_INTERNAL_ERROR.
 */
int tls13_record_seal(struct tls13_dir *d, uint8_t type, uint8_t *rec,
    size_t ptlen, size_t pad, size_t *reclen);
/**
 * Unprotect record @a rec (header included, @a reclen bytes) in place.
 * On success the plaintext is at rec+5, *@a ptlen long, of inner type
 * *@a type, padding removed.  Returns 0, TLS13_ALERT_BAD_RECORD_MAC,
 * TLS13_ALERT_RECORD_OVERFLOW or TLS13_ALERT_UNEXPECTED_MESSAGE (all-zero
 * plaintext).
 */
int tls13_record_open(struct tls13_dir *d, uint8_t *rec, size_t reclen,
    uint8_t *type, size_t *ptlen);

#endif
