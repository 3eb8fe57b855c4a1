/*
 * libFuzzer target: http1_parse_response(), then the chunked decoder over
 * the bytes after the head.  The first byte picks the HEAD-request flag
 * and the split size for the decoder; the rest is the response.  Checks
 * slices, statuses, framing rules of RFC 9112 §6.3, the prefix property,
 * and that every split of a chunked body decodes the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEAD 4096

static void
check_slice(const char *buf, size_t len, struct http1_str s)
{
	if (s.len > 0 && (s.p < buf || s.p + s.len > buf + len))
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http1_response resp, again;
	const char *buf;
	size_t i;
	long rc;
	int head_request;

	if (size == 0)
		return 0;
	head_request = data[0] & 1;
	buf = (const char *)data + 1;
	size--;
	rc = http1_parse_response(buf, size, MAX_HEAD, head_request, &resp);
	if (rc < 0) {
		if (rc != -502)
			abort();
		return 0;
	}
	if (rc == 0)
		return 0;
	if ((size_t)rc > size || rc > MAX_HEAD ||
	    resp.nheaders > HTTP1_MAX_HEADERS || resp.status < 100 ||
	    resp.status > 999 || resp.status == 101 || resp.minor < 0 ||
	    resp.minor > 1)
		abort();
	check_slice(buf, size, resp.reason);
	for (i = 0; i < resp.nheaders; i++) {
		check_slice(buf, size, resp.headers[i].name);
		check_slice(buf, size, resp.headers[i].value);
	}
	/* RFC 9112 §6.3 item 1, and CLOSE framing never keeps the line. */
	if ((head_request || resp.status / 100 == 1 || resp.status == 204 ||
		resp.status == 304) &&
	    resp.framing != HTTP1_BODY_NONE)
		abort();
	if (resp.framing == HTTP1_BODY_CLOSE && resp.keep_alive)
		abort();
	if (http1_parse_response(
		buf, (size_t)rc - 1, MAX_HEAD, head_request, &again) != 0)
		abort();
	if (http1_parse_response(
		buf, (size_t)rc, MAX_HEAD, head_request, &again) != rc)
		abort();
	if (size - (size_t)rc > 0)
		check_chunked(buf + rc, size - (size_t)rc,
		    1 + (size_t)(data[0] >> 1) % 7);
	return 0;
}
