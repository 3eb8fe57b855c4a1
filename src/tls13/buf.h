/*
 * buf.h: the bounded cursor every tls13 parser and builder goes through
 * (s2n's stuffer is the model).  A length that runs past the end is an
 * error value, never a read or write past the buffer.
 */
#ifndef TLSGATE_TLS13_BUF_H
#define TLSGATE_TLS13_BUF_H

#include <stddef.h>
#include <stdint.h>

/** Read cursor over borrowed bytes [base, base+len). */
typedef struct tls13_rbuf {
	const uint8_t *base;
	size_t len;
	size_t pos;
} tls13_rbuf;

/** Write cursor over a borrowed buffer of @c cap bytes.  An overflow sets
 *  @c err and turns every later put into a no-op, so builders check once. */
typedef struct tls13_wbuf {
	uint8_t *base;
	size_t cap;
	size_t len;
	int err;
} tls13_wbuf;

/** Initialise @a b over @a p/@a len (borrowed). */
void tls13_rbuf_init(tls13_rbuf *b, const uint8_t *p, size_t len);
/** Bytes left to read. */
size_t tls13_rbuf_left(const tls13_rbuf *b);
/** Read an integer of 1, 2, 3 or 4 bytes (big endian).  Return 0 or -1 if
 *  fewer bytes are left (the cursor does not move then). */
int tls13_get_u8(tls13_rbuf *b, uint8_t *v);
int tls13_get_u16(tls13_rbuf *b, uint16_t *v);
int tls13_get_u24(tls13_rbuf *b, uint32_t *v);
int tls13_get_u32(tls13_rbuf *b, uint32_t *v);
/** Point *@a p at the next @a n bytes and skip them.  Return 0 or -1. */
int tls13_get_bytes(tls13_rbuf *b, size_t n, const uint8_t **p);
/** Read a vector with a 1/2/3-byte length prefix into sub-cursor @a sub
 *  (RFC 9846 §3.4).  Return 0 or -1 when the length runs past the end. */
int tls13_get_block8(tls13_rbuf *b, tls13_rbuf *sub);
int tls13_get_block16(tls13_rbuf *b, tls13_rbuf *sub);
int tls13_get_block24(tls13_rbuf *b, tls13_rbuf *sub);

/** Initialise @a w over @a p (capacity @a cap, borrowed), empty. */
void tls13_wbuf_init(tls13_wbuf *w, uint8_t *p, size_t cap);
/** Append an integer or bytes; on overflow set w->err. */
void tls13_put_u8(tls13_wbuf *w, uint8_t v);
void tls13_put_u16(tls13_wbuf *w, uint16_t v);
void tls13_put_u24(tls13_wbuf *w, uint32_t v);
void tls13_put_u32(tls13_wbuf *w, uint32_t v);
void tls13_put_bytes(tls13_wbuf *w, const void *p, size_t n);
/** Reserve @a width (1..3) length bytes and return their offset, for
 *  tls13_put_end() to back-patch. */
size_t tls13_put_begin(tls13_wbuf *w, int width);
/** Write the length of everything after the @a width-byte prefix at
 *  @a at; sets w->err if it does not fit in @a width bytes. */
void tls13_put_end(tls13_wbuf *w, size_t at, int width);

#endif
