/*
 * buf.c: bounded read and write cursors (see buf.h).
 */
#include <string.h>

#include "tls13/buf.h"

void
tls13_rbuf_init(tls13_rbuf *b, const uint8_t *p, size_t len)
{
	b->base = p;
	b->len = len;
	b->pos = 0;
}

size_t
tls13_rbuf_left(const tls13_rbuf *b)
{
	return b->len - b->pos;
}

static int
get_uint(tls13_rbuf *b, int n, uint32_t *v)
{
	uint32_t x = 0;
	int i;

	if (tls13_rbuf_left(b) < (size_t)n)
		return -1;
	for (i = 0; i < n; i++)
		x = (x << 8) | b->base[b->pos + i];
	b->pos += n;
	*v = x;
	return 0;
}

int
tls13_get_u8(tls13_rbuf *b, uint8_t *v)
{
	uint32_t x;

	if (get_uint(b, 1, &x) != 0)
		return -1;
	*v = (uint8_t)x;
	return 0;
}

int
tls13_get_u16(tls13_rbuf *b, uint16_t *v)
{
	uint32_t x;

	if (get_uint(b, 2, &x) != 0)
		return -1;
	*v = (uint16_t)x;
	return 0;
}

int
tls13_get_u24(tls13_rbuf *b, uint32_t *v)
{
	return get_uint(b, 3, v);
}

int
tls13_get_u32(tls13_rbuf *b, uint32_t *v)
{
	return get_uint(b, 4, v);
}

int
tls13_get_bytes(tls13_rbuf *b, size_t n, const uint8_t **p)
{
	if (tls13_rbuf_left(b) < n)
		return -1;
	*p = b->base + b->pos;
	b->pos += n;
	return 0;
}

static int
get_block(tls13_rbuf *b, int width, tls13_rbuf *sub)
{
	size_t save = b->pos;
	const uint8_t *p;
	uint32_t n;

	if (get_uint(b, width, &n) != 0)
		return -1;
	if (tls13_get_bytes(b, n, &p) != 0) {
		b->pos = save;
		return -1;
	}
	tls13_rbuf_init(sub, p, n);
	return 0;
}

int
tls13_get_block8(tls13_rbuf *b, tls13_rbuf *sub)
{
	return get_block(b, 1, sub);
}

int
tls13_get_block16(tls13_rbuf *b, tls13_rbuf *sub)
{
	return get_block(b, 2, sub);
}

int
tls13_get_block24(tls13_rbuf *b, tls13_rbuf *sub)
{
	return get_block(b, 3, sub);
}

void
tls13_wbuf_init(tls13_wbuf *w, uint8_t *p, size_t cap)
{
	w->base = p;
	w->cap = cap;
	w->len = 0;
	w->err = 0;
}

static void
put_uint(tls13_wbuf *w, int n, uint32_t v)
{
	int i;

	if (w->err || w->cap - w->len < (size_t)n) {
		w->err = 1;
		return;
	}
	for (i = n - 1; i >= 0; i--) {
		w->base[w->len + i] = (uint8_t)v;
		v >>= 8;
	}
	w->len += n;
}

void
tls13_put_u8(tls13_wbuf *w, uint8_t v)
{
	put_uint(w, 1, v);
}

void
tls13_put_u16(tls13_wbuf *w, uint16_t v)
{
	put_uint(w, 2, v);
}

void
tls13_put_u24(tls13_wbuf *w, uint32_t v)
{
	put_uint(w, 3, v);
}

void
tls13_put_u32(tls13_wbuf *w, uint32_t v)
{
	put_uint(w, 4, v);
}

void
tls13_put_bytes(tls13_wbuf *w, const void *p, size_t n)
{
	if (w->err || w->cap - w->len < n) {
		w->err = 1;
		return;
	}
	if (n > 0)
		memcpy(w->base + w->len, p, n);
	w->len += n;
}

size_t
tls13_put_begin(tls13_wbuf *w, int width)
{
	size_t at = w->len;

	put_uint(w, width, 0);
	return at;
}

void
tls13_put_end(tls13_wbuf *w, size_t at, int width)
{
	size_t n;
	int i;

	if (w->err)
		return;
	n = w->len - at - width;
	if (width < 3 && n >> (8 * width) != 0) {
		w->err = 1;
		return;
	}
	for (i = width - 1; i >= 0; i--) {
		w->base[at + i] = (uint8_t)n;
		n >>= 8;
	}
}
