/*
 * libFuzzer target: http1_parse_request(), then the chunked decoder over
 * the bytes after the head.  Besides memory safety it checks what the
 * parser promises: slices inside the buffer, a head no longer than
 * max_head, only the documented statuses, the same answer for every
 * prefix of a complete head (0), and the same chunked outcome whatever
 * the split of the body.  A parsed head is then rewritten as the proxy
 * sends it upstream (proxy_rewrite_request_head), with one set_header and
 * one remove_header rule, gateway credentials or not, on a
 * store-and-forward route or not: the result must parse again as one
 * complete head with the same method, path, version 1.1 and framing, the
 * route's Host, and none of the fields the rules and the route drop.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "config.h"
#include "http1.h"
#include "offline.h"
#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEAD 4096

static void
check_slice(const char *buf, size_t len, struct http1_str s)
{
	if (s.len == 0)
		return;
	/* "/" for an absolute-form target without a path is static. */
	if (s.len == 1 && s.p[0] == '/')
		return;
	if (s.p < buf || s.p + s.len > buf + len)
		abort();
}

/* Decodes in[0..len) whole, then in pieces of `step`; both must agree. */
static void
check_chunked(const char *in, size_t len, size_t step)
{
	struct http1_chunked c;
	enum http1_chunk_status st[2];
	size_t total[2], used[2], pos, end, consumed, off, dlen;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		http1_chunked_init(&c);
		pos = 0;
		total[pass] = 0;
		st[pass] = HTTP1_CHUNK_MORE;
		while (pos < len) {
			end = pass == 0 || len - pos < step ? len : pos + step;
			st[pass] = http1_chunked_feed(
			    &c, in + pos, end - pos, &consumed, &off, &dlen);
			if (consumed > end - pos)
				abort();
			if (st[pass] == HTTP1_CHUNK_DATA &&
			    (dlen == 0 || off + dlen > consumed))
				abort();
			if (st[pass] == HTTP1_CHUNK_MORE &&
			    consumed != end - pos)
				abort();
			if (st[pass] == HTTP1_CHUNK_DATA)
				total[pass] += dlen;
			pos += consumed;
			if (st[pass] == HTTP1_CHUNK_DONE ||
			    st[pass] == HTTP1_CHUNK_ERROR)
				break;
			if (st[pass] == HTTP1_CHUNK_DATA)
				st[pass] = HTTP1_CHUNK_MORE;
		}
		used[pass] = pos;
	}
	if (st[0] != st[1] || total[0] != total[1] ||
	    (st[0] == HTTP1_CHUNK_DONE && used[0] != used[1]))
		abort();
}

/* 1 when h has a field named name (any case). */
static int
has_field(const struct http1_request *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->nheaders; i++)
		if (http1_str_ieq(h->headers[i].name, name))
			return 1;
	return 0;
}

static void
check_rewrite(const struct http1_request *req, uint8_t mode)
{
	static struct http1_request out;
	static char rm[] = "X-Drop", host[] = "cloud.test", sname[] = "X-Site",
	    sval[] = "gw-1";
	struct route r;
	struct evbuffer *eb = evbuffer_new();
	const char *p;
	size_t len;
	long rc;

	if (eb == NULL)
		abort();
	memset(&r, 0, sizeof(r));
	r.host = host;
	r.set_headers[0].name = sname;
	r.set_headers[0].value = sval;
	r.nset_headers = 1;
	r.remove_headers[0] = rm;
	r.nremove_headers = 1;
	r.offline_queue = mode & 1;
	if (proxy_rewrite_request_head(req, &r, "192.0.2.7",
	    (mode & 2) ? "dXNlcjpwdw==" : NULL, eb) != 0)
		abort();
	len = evbuffer_get_length(eb);
	p = (const char *)evbuffer_pullup(eb, -1);
	rc = http1_parse_request(p, len, 1 << 20, &out);
	/* Host (an HTTP/1.0 request may have none), Via, X-Forwarded-For,
	 * X-Site and Authorization may take a head near the field limit
	 * past it. */
	if (rc == -431 && req->nheaders + 5 > HTTP1_MAX_HEADERS) {
		evbuffer_free(eb);
		return;
	}
	if (rc != (long)len || out.minor != 1 ||
	    out.method.len != req->method.len ||
	    memcmp(out.method.p, req->method.p, out.method.len) != 0 ||
	    out.path.len != req->path.len ||
	    memcmp(out.path.p, req->path.p, out.path.len) != 0 ||
	    !http1_str_ieq(out.host, "cloud.test") ||
	    out.framing != req->framing ||
	    (req->framing == HTTP1_BODY_LENGTH &&
	    out.content_length != req->content_length) ||
	    has_field(&out, "X-Drop") || !has_field(&out, "X-Site") ||
	    ((mode & 1) && has_field(&out, OFFLINE_ID_HEADER)) ||
	    ((mode & 2) && !has_field(&out, "Authorization")))
		abort();
	evbuffer_free(eb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http1_request req, again;
	const char *buf = (const char *)data;
	size_t i;
	long rc;

	rc = http1_parse_request(buf, size, MAX_HEAD, &req);
	if (rc < 0) {
		if (rc != -400 && rc != -414 && rc != -431 && rc != -501 &&
		    rc != -505)
			abort();
		return 0;
	}
	if (rc == 0)
		return 0;
	if ((size_t)rc > size || rc > MAX_HEAD ||
	    req.nheaders > HTTP1_MAX_HEADERS || req.minor < 0 ||
	    req.minor > 1 || req.target.len > HTTP1_MAX_TARGET)
		abort();
	check_slice(buf, size, req.method);
	check_slice(buf, size, req.target);
	check_slice(buf, size, req.path);
	check_slice(buf, size, req.host);
	for (i = 0; i < req.nheaders; i++) {
		check_slice(buf, size, req.headers[i].name);
		check_slice(buf, size, req.headers[i].value);
		if (req.headers[i].name.len == 0)
			abort();
	}
	if (req.framing == HTTP1_BODY_CLOSE)
		abort();
	/* A complete head's prefix is an incomplete head, nothing else. */
	if (http1_parse_request(buf, (size_t)rc - 1, MAX_HEAD, &again) != 0)
		abort();
	/* Bytes after the head do not change the head. */
	if (http1_parse_request(buf, (size_t)rc, MAX_HEAD, &again) != rc)
		abort();
	check_rewrite(&req, data[0]);
	if (size > (size_t)rc)
		check_chunked(
		    buf + rc, size - (size_t)rc, 1 + (size_t)data[0] % 7);
	return 0;
}
