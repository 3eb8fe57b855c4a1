/*
 * http1: a strict, I/O-free HTTP/1.x parser (RFC 9112).
 *
 * The head parsers re-read the head from the start of the buffer on every
 * call: each call is linear in the bytes it looks at (at most max_head),
 * which keeps them stateless.  Complete lines are checked as soon as they
 * are seen, so a bad request is refused before its head ends.  What is
 * accepted and refused, and why, is in docs/http1.md.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http1.h"

/*
 * Character classes.  T: tchar (RFC 9110 §5.6.2); V: field-vchar, i.e.
 * VCHAR or obs-text (RFC 9110 §5.5); W: SP or HTAB; H: HEXDIG; U: allowed
 * in a request-target (visible ASCII but "#", see docs/http1.md);
 * R: reg-name character, unreserved or sub-delims (RFC 3986 §3.2.2).
 */
/* clang-format off */
#define C_T	0x01
#define C_V	0x02
#define C_W	0x04
#define C_H	0x08
#define C_U	0x10
#define C_R	0x20

#define W	C_W
#define A	(C_T | C_V | C_U | C_R)
#define X	(C_T | C_V | C_H | C_U | C_R)
#define S	(C_V | C_U | C_R)
#define P	(C_V | C_U)
#define K	(C_T | C_V | C_U)
#define N	(C_T | C_V)
#define O	C_V

static const unsigned char ctab[256] = {
	/* 00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, W, 0, 0, 0, 0, 0, 0,
	/* 10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 20 */ W, A, P, N, A, K, A, A, S, S, A, A, S, A, A, P,
	/* 30 */ X, X, X, X, X, X, X, X, X, X, P, S, P, S, P, P,
	/* 40 */ P, X, X, X, X, X, X, A, A, A, A, A, A, A, A, A,
	/* 50 */ A, A, A, A, A, A, A, A, A, A, A, P, P, P, K, A,
	/* 60 */ K, X, X, X, X, X, X, A, A, A, A, A, A, A, A, A,
	/* 70 */ A, A, A, A, A, A, A, A, A, A, A, P, K, P, A, 0,
	/* 80 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	/* 90 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	/* a0 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	/* b0 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	/* c0 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	/* d0 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	/* e0 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
	/* f0 */ O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
};

#undef W
#undef A
#undef X
#undef S
#undef P
#undef K
#undef N
#undef O
/* clang-format on */

/* Whether c (a byte, or -1 for "none") is in class cls. */
static int
is(int c, unsigned cls)
{
	return c >= 0 && c <= 255 && (ctab[c] & cls) != 0;
}

/*
 * A bounded cursor over a slice.  Reads past the end give -1, so no parse
 * step can look beyond the bytes it was given.
 */
struct cur {
	const char *p;
	size_t len;
	size_t pos;
};

static int
cur_peek(const struct cur *c)
{
	return c->pos < c->len ? (unsigned char)c->p[c->pos] : -1;
}

static int
cur_eat(struct cur *c, int ch)
{
	if (cur_peek(c) != ch)
		return 0;
	c->pos++;
	return 1;
}

/* Advances over characters of class cls; returns how many. */
static size_t
cur_span(struct cur *c, unsigned cls)
{
	size_t start = c->pos;

	while (c->pos < c->len && is((unsigned char)c->p[c->pos], cls))
		c->pos++;
	return c->pos - start;
}

static struct http1_str
cur_slice(const struct cur *c, size_t from)
{
	struct http1_str s = { c->p + from, c->pos - from };

	return s;
}

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Case-insensitive equality of two slices (ASCII, whatever the locale). */
static int
str_ieq(struct http1_str a, struct http1_str b)
{
	size_t i;

	if (a.len != b.len)
		return 0;
	for (i = 0; i < a.len; i++)
		if (lower((unsigned char)a.p[i]) !=
		    lower((unsigned char)b.p[i]))
			return 0;
	return 1;
}

int
http1_str_ieq(struct http1_str s, const char *lit)
{
	size_t i;

	for (i = 0; i < s.len; i++)
		if (lit[i] == '\0' ||
		    lower((unsigned char)s.p[i]) !=
			lower((unsigned char)lit[i]))
			return 0;
	return lit[i] == '\0';
}

int
http1_find_header(
    const struct http1_header *headers, size_t n, size_t from, const char *name)
{
	size_t i;

	for (i = from; i < n && i <= INT_MAX; i++)
		if (http1_str_ieq(headers[i].name, name))
			return (int)i;
	return -1;
}

/* Fields that the framing or the proxy's rewriting cares about.  The
 * length is compared first: every field of every head is looked up here,
 * and most names differ from all of these in length already. */
#define KNOWN(name, flags) { name, sizeof(name) - 1, flags }
static const struct {
	const char *name;
	size_t len;
	unsigned flags;
} known_fields[] = {
	KNOWN("host", HTTP1_HDR_HOST),
	KNOWN("content-length", HTTP1_HDR_CL),
	KNOWN("transfer-encoding", HTTP1_HDR_TE | HTTP1_HDR_HOP),
	KNOWN("connection", HTTP1_HDR_CONN | HTTP1_HDR_HOP),
	/* RFC 9110 §7.6.1 and RFC 9112 §9.3 name these hop-by-hop. */
	KNOWN("keep-alive", HTTP1_HDR_HOP),
	KNOWN("proxy-connection", HTTP1_HDR_HOP),
	KNOWN("te", HTTP1_HDR_HOP),
	KNOWN("upgrade", HTTP1_HDR_HOP),
	KNOWN("expect", HTTP1_HDR_EXPECT),
	KNOWN("via", HTTP1_HDR_VIA),
	KNOWN("x-forwarded-for", HTTP1_HDR_XFF),
};
#undef KNOWN

static unsigned
field_flags(struct http1_str name)
{
	size_t i;

	for (i = 0; i < sizeof(known_fields) / sizeof(known_fields[0]); i++)
		if (name.len == known_fields[i].len &&
		    http1_str_ieq(name, known_fields[i].name))
			return known_fields[i].flags;
	return 0;
}

/*
 * Parses one field line (RFC 9112 §5): field-name ":" OWS field-value OWS.
 * A line starting with whitespace is obs-fold, or whitespace before the
 * first field; both are refused (RFC 9112 §5.2, §2.2).  Whitespace between
 * name and colon must be refused (RFC 9112 §5.1).  The value may hold
 * VCHAR, obs-text, SP and HTAB only: NUL, CR, LF and other controls are
 * refused (RFC 9110 §5.5).  Returns 0 or -1.
 */
static int
field_parse(struct http1_str line, struct http1_header *h)
{
	struct cur c = { line.p, line.len, 0 };
	size_t start, end;

	if (cur_span(&c, C_T) == 0)
		return -1;
	h->name = cur_slice(&c, 0);
	if (!cur_eat(&c, ':'))
		return -1;
	cur_span(&c, C_W);
	start = c.pos;
	if (cur_span(&c, C_V | C_W) != c.len - start)
		return -1;
	end = c.len;
	while (end > start && is((unsigned char)line.p[end - 1], C_W))
		end--;
	h->value.p = line.p + start;
	h->value.len = end - start;
	h->flags = field_flags(h->name);
	return 0;
}

/*
 * Walks a comma-separated list of tokens (RFC 9110 §5.6.1).  Each call
 * yields one element with OWS trimmed, possibly empty; returns 1, 0 at the
 * end of the list, or -1 when an element is not a single token.
 */
struct list {
	struct http1_str v;
	size_t pos;
	int done;
};

static int
list_next(struct list *l, struct http1_str *elem)
{
	const char *p, *comma;
	size_t rest, n;
	struct cur c;

	if (l->done)
		return 0;
	p = l->v.p + l->pos;
	rest = l->v.len - l->pos;
	comma = rest > 0 ? memchr(p, ',', rest) : NULL;
	n = comma != NULL ? (size_t)(comma - p) : rest;
	if (comma != NULL)
		l->pos += n + 1;
	else
		l->done = 1;
	c.p = p;
	c.len = n;
	c.pos = 0;
	cur_span(&c, C_W);
	elem->p = p + c.pos;
	elem->len = cur_span(&c, C_T);
	cur_span(&c, C_W);
	return c.pos == c.len ? 1 : -1;
}

/*
 * 1*DIGIT (RFC 9110 §8.6), nothing else: no sign, no list, no inner space,
 * at most HTTP1_MAX_LENGTH.  Returns 0 or -1.
 */
static int
length_parse(struct http1_str v, uint64_t *out)
{
	uint64_t n = 0;
	size_t i;
	unsigned d;

	if (v.len == 0)
		return -1;
	for (i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		d = (unsigned)(v.p[i] - '0');
		if (n > ((uint64_t)HTTP1_MAX_LENGTH - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*out = n;
	return 0;
}

/*
 * uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IPv6 literal
 * in brackets, or a reg-name (which covers IPv4) made of unreserved,
 * sub-delims and pct-encoded octets; the port, when present, at most 65535.
 * IPvFuture and zone identifiers are refused.  An empty value is allowed
 * when allow_empty (RFC 9112 §3.2).  Returns 0 or -1.
 */
static int
authority_check(struct http1_str v, int allow_empty)
{
	struct cur c = { v.p, v.len, 0 };
	char lit[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	unsigned long port = 0;
	size_t start;

	if (v.len == 0)
		return allow_empty ? 0 : -1;
	if (cur_eat(&c, '[')) {
		start = c.pos;
		while (is(cur_peek(&c), C_H) || cur_peek(&c) == ':' ||
		    cur_peek(&c) == '.')
			c.pos++;
		if (c.pos - start >= sizeof(lit) || !cur_eat(&c, ']'))
			return -1;
		memcpy(lit, v.p + start, c.pos - 1 - start);
		lit[c.pos - 1 - start] = '\0';
		if (inet_pton(AF_INET6, lit, &a6) != 1)
			return -1;
	} else {
		start = c.pos;
		for (;;) {
			if (cur_span(&c, C_R) > 0)
				continue;
			if (!cur_eat(&c, '%'))
				break;
			if (!is(cur_peek(&c), C_H))
				return -1;
			c.pos++;
			if (!is(cur_peek(&c), C_H))
				return -1;
			c.pos++;
		}
		if (c.pos == start)
			return -1;
	}
	if (cur_eat(&c, ':')) {
		while (cur_peek(&c) >= '0' && cur_peek(&c) <= '9') {
			port = port * 10 + (unsigned long)(cur_peek(&c) - '0');
			if (port > 65535)
				return -1;
			c.pos++;
		}
	}
	return c.pos == c.len ? 0 : -1;
}

/* What the framing-related fields of a head say. */
struct fields {
	int ncl; /* Content-Length fields */
	uint64_t cl;
	int nhost;           /* Host fields */
	size_t host;         /* index of the last Host field */
	int te;              /* a Transfer-Encoding field is present */
	int nchunked;        /* how often "chunked" is listed */
	int chunked_last;    /* the final coding is chunked */
	int te_other;        /* a coding other than chunked is listed */
	int close;           /* Connection: close */
	int keep_alive;      /* Connection: keep-alive */
	int expect_continue; /* Expect: 100-continue */
};

/*
 * Transfer-Encoding (RFC 9112 §6.1): a list of codings, combined over all
 * its fields in order.  We take bare coding names only: empty elements and
 * parameters are refused, because disagreeing about this field is how
 * requests are smuggled.
 */
static int
te_scan(struct http1_str v, struct fields *f)
{
	struct list l = { v, 0, 0 };
	struct http1_str e;
	int r;

	f->te = 1;
	while ((r = list_next(&l, &e)) == 1) {
		if (e.len == 0)
			return -1;
		if (http1_str_ieq(e, "chunked")) {
			f->nchunked++;
			f->chunked_last = 1;
		} else {
			f->te_other = 1;
			f->chunked_last = 0;
		}
	}
	return r;
}

/*
 * Connection (RFC 9110 §7.6.1): "close" and "keep-alive" steer persistence
 * (RFC 9112 §9.3); any other option names a field that this hop consumes,
 * which is then flagged HOP.  Naming Host or Content-Length would let a
 * sender make a proxy drop the routing or the framing of the message, so
 * that is refused.  Empty elements are ignored (RFC 9110 §5.6.1).
 */
static int
connection_scan(
    struct http1_str v, struct http1_header *hs, size_t n, struct fields *f)
{
	struct list l = { v, 0, 0 };
	struct http1_str e;
	size_t i;
	int r;

	while ((r = list_next(&l, &e)) == 1) {
		if (e.len == 0)
			continue;
		if (http1_str_ieq(e, "close")) {
			f->close = 1;
			continue;
		}
		if (http1_str_ieq(e, "keep-alive"))
			f->keep_alive = 1;
		if (http1_str_ieq(e, "host") ||
		    http1_str_ieq(e, "content-length"))
			return -1;
		for (i = 0; i < n; i++)
			if (str_ieq(hs[i].name, e))
				hs[i].flags |= HTTP1_HDR_HOP;
	}
	return r;
}

/* Reads what the fields say about framing and persistence; 0 or -1. */
static int
fields_scan(struct http1_header *hs, size_t n, struct fields *f)
{
	size_t i;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < n; i++) {
		if (hs[i].flags & HTTP1_HDR_CL) {
			/*
			 * RFC 9110 §8.6 lets a recipient accept repeated
			 * identical values; a strict proxy does not
			 * (RFC 9112 §6.3 item 5).
			 */
			if (++f->ncl > 1 ||
			    length_parse(hs[i].value, &f->cl) == -1)
				return -1;
		}
		if (hs[i].flags & HTTP1_HDR_HOST) {
			f->nhost++;
			f->host = i;
		}
		if ((hs[i].flags & HTTP1_HDR_TE) &&
		    te_scan(hs[i].value, f) == -1)
			return -1;
		if ((hs[i].flags & HTTP1_HDR_CONN) &&
		    connection_scan(hs[i].value, hs, n, f) == -1)
			return -1;
		if ((hs[i].flags & HTTP1_HDR_EXPECT) &&
		    http1_str_ieq(hs[i].value, "100-continue"))
			f->expect_continue = 1;
	}
	return 0;
}

/*
 * The head being parsed: at most max_head bytes of it are looked at, and
 * once that many are there without a complete head, it is too large.
 */
struct head {
	const char *buf;
	size_t len; /* min(received, max_head) */
	size_t pos; /* start of the next line */
	int full;   /* received >= max_head */
};

static void
head_init(struct head *h, const char *buf, size_t len, size_t max_head)
{
	if (max_head > LONG_MAX)
		max_head = LONG_MAX;
	h->buf = buf;
	h->len = len < max_head ? len : max_head;
	h->pos = 0;
	h->full = len >= max_head;
}

/*
 * Cuts the next line.  Returns 1 with *line (CRLF excluded) and moves on;
 * 0 when its end has not arrived (*line holds what there is); -1 for a
 * bare LF.  RFC 9112 §2.2 lets a recipient take LF alone as a line end;
 * we do not, so that we and the server behind us cannot disagree on where
 * a field ends.  A bare CR is refused later as a control character.
 */
static int
head_line(struct head *h, struct http1_str *line)
{
	const char *start = h->buf + h->pos;
	size_t avail = h->len - h->pos;
	const char *lf;
	size_t n;

	lf = avail > 0 ? memchr(start, '\n', avail) : NULL;
	line->p = start;
	if (lf == NULL) {
		line->len = avail;
		return 0;
	}
	n = (size_t)(lf - start);
	if (n == 0 || start[n - 1] != '\r')
		return -1;
	line->len = n - 1;
	h->pos += n + 1;
	return 1;
}

/* Reads field lines up to the empty line; see http1_parse_request(). */
static long
head_fields(struct head *h, struct http1_header *hs, size_t *nheaders, long bad,
    long too_many, long too_big)
{
	struct http1_str line;
	int r;

	for (;;) {
		r = head_line(h, &line);
		if (r == -1)
			return bad;
		if (r == 0)
			return h->full ? too_big : 0;
		if (line.len == 0)
			return (long)h->pos;
		if (*nheaders == HTTP1_MAX_HEADERS)
			return too_many;
		if (field_parse(line, &hs[*nheaders]) == -1)
			return bad;
		(*nheaders)++;
	}
}

/*
 * HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3).
 * Returns the minor version, 1 for any 1.x above 1.1 (RFC 9110 §6.2: a
 * 1.x recipient may treat them as 1.1); -1 when malformed; -2 when the
 * major version is not 1.
 */
static int
version_parse(const char *p, size_t len)
{
	if (len != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' ||
	    p[5] > '9' || p[6] != '.' || p[7] < '0' || p[7] > '9')
		return -1;
	if (p[5] != '1')
		return -2;
	return p[7] == '0' ? 0 : 1;
}

/*
 * absolute-form (RFC 9112 §3.2.2): "http" or "https" "://" authority
 * path-abempty [ "?" query ].  The authority becomes req->host and the
 * rest the origin-form path.  userinfo must be treated as an error (RFC
 * 9110 §4.2.4); an empty host is invalid for these schemes (§4.2.1).
 */
static int
absolute_form(struct http1_str t, struct http1_request *req)
{
	static const char slash[] = "/";
	struct cur c = { t.p, t.len, 0 };
	struct http1_str scheme;
	size_t start;

	cur_span(&c, C_T);
	scheme = cur_slice(&c, 0);
	if (!http1_str_ieq(scheme, "http") && !http1_str_ieq(scheme, "https"))
		return -1;
	if (!cur_eat(&c, ':') || !cur_eat(&c, '/') || !cur_eat(&c, '/'))
		return -1;
	start = c.pos;
	while (cur_peek(&c) != -1 && cur_peek(&c) != '/' && cur_peek(&c) != '?')
		c.pos++;
	req->host = cur_slice(&c, start);
	/* "@" is no reg-name character, so userinfo fails here. */
	if (authority_check(req->host, 0) == -1)
		return -1;
	if (c.pos == c.len) {
		req->path.p = slash;
		req->path.len = 1;
		return 0;
	}
	/* "http://h?q": its origin-form "/?q" is not a slice of the buffer. */
	if (cur_peek(&c) == '?')
		return -1;
	req->path.p = t.p + c.pos;
	req->path.len = t.len - c.pos;
	return 0;
}

/*
 * request-line = method SP request-target SP HTTP-version (RFC 9112 §3),
 * single spaces only.  Also checks a line whose end has not arrived
 * (complete == 0) as far as it goes, so that a long target is refused
 * with 414 before it ends.  Returns 0 or a negative status.
 */
static long
request_line(struct http1_str line, int complete, struct http1_request *req)
{
	struct cur c = { line.p, line.len, 0 };
	size_t start, n;
	int v;

	if (cur_span(&c, C_T) == 0 && (complete || c.pos < c.len))
		return -400;
	req->method = cur_slice(&c, 0);
	if (!complete && c.pos == c.len)
		return 0;
	if (!cur_eat(&c, ' '))
		return -400;
	start = c.pos;
	cur_span(&c, C_U);
	req->target = cur_slice(&c, start);
	if (req->target.len > HTTP1_MAX_TARGET)
		return -414;
	if (!complete && c.pos == c.len)
		return 0;
	if (req->target.len == 0 || !cur_eat(&c, ' '))
		return -400;
	if (!complete) {
		/* Not "HTTP/" or longer than "HTTP/x.y" and its CR. */
		n = c.len - c.pos;
		if (n > 9 ||
		    memcmp(line.p + c.pos, "HTTP/", n < 5 ? n : 5) != 0)
			return -400;
		return 0;
	}
	v = version_parse(line.p + c.pos, c.len - c.pos);
	if (v == -1)
		return -400;
	if (v == -2)
		return -505;
	req->minor = v;

	/* The gateway is not a tunnel: CONNECT gets 501 (§3.2.3). */
	if (req->method.len == 7 && memcmp(req->method.p, "CONNECT", 7) == 0)
		return -501;
	if (req->target.p[0] == '/') {
		req->path = req->target;
		return 0;
	}
	/* asterisk-form is for OPTIONS only (RFC 9112 §3.2.4). */
	if (req->target.len == 1 && req->target.p[0] == '*') {
		if (req->method.len != 7 ||
		    memcmp(req->method.p, "OPTIONS", 7) != 0)
			return -400;
		req->path = req->target;
		return 0;
	}
	return absolute_form(req->target, req) == -1 ? -400 : 0;
}

/* Framing, Host and persistence of a request whose head is complete. */
static long
request_finish(struct http1_request *req)
{
	struct fields f;

	if (fields_scan(req->headers, req->nheaders, &f) == -1)
		return -400;
	/* RFC 9112 §3.2: exactly one Host in 1.1, at most one in 1.0. */
	if (f.nhost > 1 || (f.nhost == 0 && req->minor == 1))
		return -400;
	if (f.nhost == 1) {
		if (authority_check(req->headers[f.host].value, 1) == -1)
			return -400;
		/* An absolute-form target overrides Host (§3.2.2). */
		if (req->host.p == NULL)
			req->host = req->headers[f.host].value;
	}
	if (f.te) {
		/* RFC 9112 §6.1: both may be a smuggling attempt. */
		if (f.ncl > 0)
			return -400;
		/* §6.1: TE in 1.0 means faulty framing. */
		if (req->minor == 0)
			return -400;
		/* §6.3 item 4: chunked must be final, and applied once. */
		if (!f.chunked_last || f.nchunked > 1)
			return -400;
		/* §6.1: a coding we do not understand. */
		if (f.te_other)
			return -501;
		req->framing = HTTP1_BODY_CHUNKED;
	} else if (f.ncl == 1) {
		req->framing = HTTP1_BODY_LENGTH;
		req->content_length = f.cl;
	} else
		req->framing = HTTP1_BODY_NONE;
	/* RFC 9112 §9.3. */
	req->keep_alive = !f.close && (req->minor == 1 || f.keep_alive);
	/* RFC 9110 §10.1.1: ignore 100-continue in a 1.0 request. */
	req->expect_continue = f.expect_continue && req->minor == 1;
	return 0;
}

long
http1_parse_request(
    const char *buf, size_t len, size_t max_head, struct http1_request *req)
{
	struct head h;
	struct http1_str line;
	long rc;
	int r;

	memset(req, 0, offsetof(struct http1_request, headers));
	head_init(&h, buf, len, max_head);

	/* RFC 9112 §2.2: ignore empty lines before the request-line. */
	while (
	    h.len - h.pos >= 2 && buf[h.pos] == '\r' && buf[h.pos + 1] == '\n')
		h.pos += 2;
	if (h.len - h.pos == 1 && buf[h.pos] == '\r')
		return h.full ? -431 : 0;

	r = head_line(&h, &line);
	if (r == -1)
		return -400;
	rc = request_line(line, r, req);
	if (rc < 0)
		return rc;
	if (r == 0)
		return h.full ? -431 : 0;
	rc = head_fields(&h, req->headers, &req->nheaders, -400, -431, -431);
	if (rc <= 0)
		return rc;
	r = (int)request_finish(req);
	return r < 0 ? r : rc;
}

/*
 * status-line = HTTP-version SP status-code SP [ reason-phrase ]
 * (RFC 9112 §4).  We also take a status line that ends right after the
 * code, which some servers send when the reason is empty.
 */
static int
status_line(struct http1_str line, struct http1_response *resp)
{
	struct cur c = { line.p, line.len, 13 };
	int v, i;

	if (line.len < 12)
		return -1;
	v = version_parse(line.p, 8);
	if (v < 0 || line.p[8] != ' ')
		return -1;
	resp->minor = v;
	for (i = 9; i < 12; i++) {
		if (line.p[i] < '0' || line.p[i] > '9')
			return -1;
		resp->status = resp->status * 10 + (line.p[i] - '0');
	}
	if (resp->status < 100)
		return -1;
	if (line.len == 12)
		return 0;
	if (line.p[12] != ' ')
		return -1;
	if (cur_span(&c, C_V | C_W) != line.len - 13)
		return -1;
	resp->reason = cur_slice(&c, 13);
	return 0;
}

/* Framing and persistence of a response (RFC 9112 §6.3, §9.3). */
static int
response_finish(struct http1_response *resp, int head_request)
{
	struct fields f;
	int s = resp->status;

	if (fields_scan(resp->headers, resp->nheaders, &f) == -1)
		return -1;
	/* We never ask to upgrade (RFC 9110 §15.2.2). */
	if (s == 101)
		return -1;
	/* §6.1, §6.3 item 3: conflicting framing, whatever the status. */
	if (f.te && (f.ncl > 0 || resp->minor == 0 || f.nchunked > 1))
		return -1;
	/* RFC 9112 §7.4: without a TE field in the request (we never send
	 * one) only chunked may be applied.  Relaying another coding would
	 * need it kept in Transfer-Encoding, which HTTP/1.0 devices cannot
	 * receive, so such a response is refused rather than mislabelled. */
	if (f.te_other)
		return -1;
	if (head_request || s / 100 == 1 || s == 204 || s == 304)
		resp->framing = HTTP1_BODY_NONE; /* §6.3 item 1 */
	else if (f.te)                           /* item 4 */
		resp->framing =
		    f.chunked_last ? HTTP1_BODY_CHUNKED : HTTP1_BODY_CLOSE;
	else if (f.ncl == 1) { /* item 6 */
		resp->framing = HTTP1_BODY_LENGTH;
		resp->content_length = f.cl;
	} else /* item 8 */
		resp->framing = HTTP1_BODY_CLOSE;
	resp->keep_alive = resp->framing != HTTP1_BODY_CLOSE && !f.close &&
	    (resp->minor == 1 || f.keep_alive);
	return 0;
}

long
http1_parse_response(const char *buf, size_t len, size_t max_head,
    int head_request, struct http1_response *resp)
{
	struct head h;
	struct http1_str line;
	long rc;
	int r;

	memset(resp, 0, offsetof(struct http1_response, headers));
	head_init(&h, buf, len, max_head);
	r = head_line(&h, &line);
	if (r == -1)
		return -502;
	if (r == 0)
		return h.full ? -502 : 0;
	if (status_line(line, resp) == -1)
		return -502;
	rc = head_fields(&h, resp->headers, &resp->nheaders, -502, -502, -502);
	if (rc <= 0)
		return rc;
	return response_finish(resp, head_request) == -1 ? -502 : rc;
}

/*
 * The chunked decoder (RFC 9112 §7.1), one state per position in
 *
 *   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *   last-chunk = 1*"0" [ chunk-ext ] CRLF, then trailer fields and CRLF
 *
 * A zeroed struct is a decoder at the start of a message.
 */
enum {
	CS_SIZE0 = 0, /* first hex digit of a chunk-size */
	CS_SIZE,      /* more digits, ";", BWS or CR */
	CS_EXT,       /* after an extension: ";", BWS or CR */
	CS_EXT_BWS,   /* BWS, which must lead to ";" */
	CS_NAME0,     /* BWS, then the first character of ext-name */
	CS_NAME,      /* ext-name */
	CS_NAME_BWS,  /* BWS after ext-name: "=" or ";" */
	CS_VAL0,      /* BWS after "=", then a token or a quoted-string */
	CS_TOKEN,     /* token ext-val */
	CS_QUOTED,    /* inside a quoted-string ext-val */
	CS_QPAIR,     /* after a backslash in it */
	CS_LINE_LF,   /* LF ending the chunk line */
	CS_DATA,      /* chunk-data; remaining counts it down */
	CS_DATA_CR,   /* CRLF after chunk-data */
	CS_DATA_LF,
	CS_TR0, /* start of a trailer line, or CR of the end */
	CS_TR_NAME,
	CS_TR_VALUE,
	CS_TR_LF,
	CS_END_LF, /* LF of the final empty line */
	CS_DONE,
	CS_ERROR,
};

void
http1_chunked_init(struct http1_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CS_SIZE0;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* After chunk-size or a whole extension: ";", CR, or BWS before ";". */
static int
after_item(int ch)
{
	if (ch == ';')
		return CS_NAME0;
	if (ch == '\r')
		return CS_LINE_LF;
	return is(ch, C_W) ? CS_EXT_BWS : CS_ERROR;
}

/* After ext-name and maybe BWS: "=", the next ";", or more BWS. */
static int
after_name(int ch)
{
	if (ch == '=')
		return CS_VAL0;
	if (ch == ';')
		return CS_NAME0;
	return is(ch, C_W) ? CS_NAME_BWS : CS_ERROR;
}

/* One byte of framing; returns the next state, CS_ERROR when malformed. */
static int
chunked_step(struct http1_chunked *c, int ch)
{
	int d;

	switch (c->state) {
	case CS_SIZE0:
	case CS_SIZE:
		/* Hex digits only: no "0x", sign or inner space. */
		if ((d = hexval(ch)) >= 0) {
			if (c->remaining >
			    ((uint64_t)HTTP1_MAX_LENGTH - d) / 16)
				return CS_ERROR;
			c->remaining = c->remaining * 16 + (unsigned)d;
			return CS_SIZE;
		}
		return c->state == CS_SIZE0 ? CS_ERROR : after_item(ch);
	case CS_EXT:
		return after_item(ch);
	case CS_EXT_BWS:
		if (ch == ';')
			return CS_NAME0;
		return is(ch, C_W) ? CS_EXT_BWS : CS_ERROR;
	case CS_NAME0:
		if (is(ch, C_T))
			return CS_NAME;
		return is(ch, C_W) ? CS_NAME0 : CS_ERROR;
	case CS_NAME:
		if (is(ch, C_T))
			return CS_NAME;
		if (ch == '\r')
			return CS_LINE_LF;
		return after_name(ch);
	case CS_NAME_BWS:
		return after_name(ch);
	case CS_VAL0:
		if (is(ch, C_T))
			return CS_TOKEN;
		if (ch == '"')
			return CS_QUOTED;
		return is(ch, C_W) ? CS_VAL0 : CS_ERROR;
	case CS_TOKEN:
		if (is(ch, C_T))
			return CS_TOKEN;
		if (ch == ';')
			return CS_NAME0;
		if (ch == '\r')
			return CS_LINE_LF;
		return is(ch, C_W) ? CS_EXT_BWS : CS_ERROR;
	case CS_QUOTED:
		/* qdtext and quoted-pair (RFC 9110 §5.6.4). */
		if (ch == '"')
			return CS_EXT;
		if (ch == '\\')
			return CS_QPAIR;
		return is(ch, C_V | C_W) ? CS_QUOTED : CS_ERROR;
	case CS_QPAIR:
		return is(ch, C_V | C_W) ? CS_QUOTED : CS_ERROR;
	case CS_LINE_LF:
		if (ch != '\n')
			return CS_ERROR;
		c->line = 0;
		return c->remaining == 0 ? CS_TR0 : CS_DATA;
	case CS_DATA_CR:
		/* RFC 9112 §7.1: CRLF, not LF alone, ends chunk-data. */
		return ch == '\r' ? CS_DATA_LF : CS_ERROR;
	case CS_DATA_LF:
		c->line = 0;
		return ch == '\n' ? CS_SIZE0 : CS_ERROR;
	case CS_TR0:
		/* A trailer field line (RFC 9112 §7.1.2), no obs-fold. */
		if (ch == '\r')
			return CS_END_LF;
		return is(ch, C_T) ? CS_TR_NAME : CS_ERROR;
	case CS_TR_NAME:
		if (ch == ':')
			return CS_TR_VALUE;
		return is(ch, C_T) ? CS_TR_NAME : CS_ERROR;
	case CS_TR_VALUE:
		if (ch == '\r')
			return CS_TR_LF;
		return is(ch, C_V | C_W) ? CS_TR_VALUE : CS_ERROR;
	case CS_TR_LF:
		return ch == '\n' ? CS_TR0 : CS_ERROR;
	case CS_END_LF:
		return ch == '\n' ? CS_DONE : CS_ERROR;
	default:
		return CS_ERROR;
	}
}

enum http1_chunk_status
http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len,
    size_t *consumed, size_t *data_off, size_t *data_len)
{
	size_t i = 0, n;

	*data_off = 0;
	*data_len = 0;
	while (i < len && c->state != CS_DONE && c->state != CS_ERROR) {
		if (c->state == CS_DATA) {
			n = len - i;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = CS_DATA_CR;
			*data_off = i;
			*data_len = n;
			*consumed = i + n;
			return HTTP1_CHUNK_DATA;
		}
		/* Bound the chunk line, and the trailer section as a whole. */
		if (c->state <= CS_LINE_LF && ++c->line > HTTP1_MAX_CHUNK_LINE)
			c->state = CS_ERROR;
		else if (c->state >= CS_TR0 && c->state <= CS_END_LF &&
		    ++c->line > HTTP1_MAX_TRAILERS)
			c->state = CS_ERROR;
		else
			c->state = chunked_step(c, (unsigned char)in[i++]);
	}
	*consumed = i;
	if (c->state == CS_ERROR)
		return HTTP1_CHUNK_ERROR;
	return c->state == CS_DONE ? HTTP1_CHUNK_DONE : HTTP1_CHUNK_MORE;
}

const char *
http1_reason(int status)
{
	static const struct {
		int status;
		const char *reason;
	} reasons[] = {
		/* RFC 9110 §15. */
		{ 100, "Continue" },
		{ 101, "Switching Protocols" },
		{ 200, "OK" },
		{ 201, "Created" },
		{ 202, "Accepted" },
		{ 203, "Non-Authoritative Information" },
		{ 204, "No Content" },
		{ 205, "Reset Content" },
		{ 206, "Partial Content" },
		{ 300, "Multiple Choices" },
		{ 301, "Moved Permanently" },
		{ 302, "Found" },
		{ 303, "See Other" },
		{ 304, "Not Modified" },
		{ 307, "Temporary Redirect" },
		{ 308, "Permanent Redirect" },
		{ 400, "Bad Request" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 406, "Not Acceptable" },
		{ 407, "Proxy Authentication Required" },
		{ 408, "Request Timeout" },
		{ 409, "Conflict" },
		{ 410, "Gone" },
		{ 411, "Length Required" },
		{ 412, "Precondition Failed" },
		{ 413, "Content Too Large" },
		{ 414, "URI Too Long" },
		{ 415, "Unsupported Media Type" },
		{ 416, "Range Not Satisfiable" },
		{ 417, "Expectation Failed" },
		{ 421, "Misdirected Request" },
		{ 422, "Unprocessable Content" },
		{ 426, "Upgrade Required" },
		/* RFC 6585. */
		{ 428, "Precondition Required" },
		{ 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" },
		{ 500, "Internal Server Error" },
		{ 501, "Not Implemented" },
		{ 502, "Bad Gateway" },
		{ 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" },
		{ 505, "HTTP Version Not Supported" },
	};
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	/* The reason-phrase may be empty (RFC 9112 §4). */
	return "";
}
