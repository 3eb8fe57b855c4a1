/*
 * http1: a strict, I/O-free HTTP/1.x message parser (RFC 9112).
 *
 * The head parsers work on the bytes received so far and either ask for
 * more, fail with the HTTP status to answer, or describe the whole head
 * with slices pointing into the caller's buffer (nothing is copied and
 * nothing is allocated).  The chunked decoder is incremental over any
 * split of its input.
 */
#ifndef TLSGATE_HTTP1_H
#define TLSGATE_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#define HTTP1_MAX_HEADERS     100   /* more header fields: 431 */
#define HTTP1_MAX_TARGET      8192  /* longer request-target: 414 */
#define HTTP1_MAX_CHUNK_LINE  4096  /* chunk-size line with extensions */
#define HTTP1_MAX_TRAILERS    8192  /* bytes of trailer section */
/* Largest Content-Length or chunk size accepted (2^63 - 1, so that it fits
   an off_t); anything larger is malformed (RFC 9110 §8.6, RFC 9112 §7.1). */
#define HTTP1_MAX_LENGTH      INT64_MAX

/** A slice of the caller's buffer; not NUL-terminated. */
struct http1_str {
	const char *p;
	size_t len;
};

/* Flags the parser sets on header fields so that a proxy can rewrite. */
#define HTTP1_HDR_HOP        0x01 /* hop-by-hop (RFC 9110 §7.6.1): Connection,
				     what Connection names, Keep-Alive,
				     Proxy-Connection, TE, Transfer-Encoding,
				     Upgrade */
#define HTTP1_HDR_HOST       0x02 /* Host */
#define HTTP1_HDR_CL         0x04 /* Content-Length */
#define HTTP1_HDR_EXPECT     0x08 /* Expect */
#define HTTP1_HDR_VIA        0x10 /* Via */
#define HTTP1_HDR_XFF        0x20 /* X-Forwarded-For */
#define HTTP1_HDR_TE         0x40 /* Transfer-Encoding (also HOP) */
#define HTTP1_HDR_CONN       0x80 /* Connection (also HOP) */

struct http1_header {
	struct http1_str name;
	struct http1_str value;   /* OWS trimmed on both sides */
	unsigned flags;           /* HTTP1_HDR_* */
};

enum http1_framing {
	HTTP1_BODY_NONE = 0,      /* no body */
	HTTP1_BODY_LENGTH,        /* content_length bytes */
	HTTP1_BODY_CHUNKED,       /* chunked transfer coding */
	HTTP1_BODY_CLOSE,         /* response only: until the connection closes */
};

struct http1_request {
	struct http1_str method;
	struct http1_str target;  /* as received */
	struct http1_str path;    /* origin-form: absolute-path [ "?" query ];
				     for an absolute-form target, its path
				     ("/" when empty); "*" for OPTIONS * */
	struct http1_str host;    /* Host field value, or the authority of an
				     absolute-form target (RFC 9112 §3.2.2) */
	int minor;                /* HTTP/1.minor: 0 or 1 */
	int keep_alive;           /* 1.1 without "close", or 1.0 with
				     "keep-alive" in Connection */
	int expect_continue;      /* Expect: 100-continue */
	enum http1_framing framing;  /* NONE, LENGTH or CHUNKED */
	uint64_t content_length;  /* when framing == LENGTH */
	size_t nheaders;
	struct http1_header headers[HTTP1_MAX_HEADERS];
};

struct http1_response {
	int status;               /* 100..999 */
	struct http1_str reason;
	int minor;
	int keep_alive;           /* the server will keep the connection */
	enum http1_framing framing;  /* from the request method and status
					(RFC 9112 §6.3), then TE/CL */
	uint64_t content_length;
	size_t nheaders;
	struct http1_header headers[HTTP1_MAX_HEADERS];
};

/**
 * Parses a request head from buf[0..len).  Leading empty lines are skipped
 * (RFC 9112 §2.2).  At most max_head bytes of head are accepted.
 *
 * Returns the length of the head (through the empty line) when complete,
 * with *req filled and its slices pointing into buf; 0 when more bytes are
 * needed; or a negative HTTP status when the request must be refused:
 * -400 (malformed, smuggling attempt), -414 (target longer than
 * HTTP1_MAX_TARGET), -431 (head larger than max_head or too many fields),
 * -501 (a transfer coding other than chunked, or the CONNECT method),
 * -505 (not HTTP/1.x).  Faults are reported as soon as the bytes that show
 * them have arrived, before the head is complete.  Each call re-reads the
 * head from buf[0]; *req may be reused between calls.  The rules are in
 * docs/http1.md.
 */
long http1_parse_request(const char *buf, size_t len, size_t max_head,
    struct http1_request *req);

/**
 * Parses a response head from buf[0..len); `head_request` tells whether it
 * answers a HEAD request (no body, RFC 9112 §6.3).  Interim (1xx) responses
 * parse as complete heads with framing NONE; the caller reads the next one.
 *
 * Returns the head length, 0 for more, or -502 when the response is
 * malformed, its head is larger than max_head or has more than
 * HTTP1_MAX_HEADERS fields, or it is a 101 (we never ask to upgrade).
 */
long http1_parse_response(const char *buf, size_t len, size_t max_head,
    int head_request, struct http1_response *resp);

/**
 * Finds a field by case-insensitive name among headers[0..n); returns its
 * index, or -1.  Starts at index `from`, so that repeated fields can be
 * walked.
 */
int http1_find_header(const struct http1_header *headers, size_t n,
    size_t from, const char *name);

/** Case-insensitive comparison of a slice with a NUL-terminated string. */
int http1_str_ieq(struct http1_str s, const char *lit);

/** Incremental decoder of the chunked transfer coding (RFC 9112 §7.1). */
struct http1_chunked {
	int state;                /* private */
	uint64_t remaining;       /* private: bytes left in this chunk */
	size_t line;              /* private: bytes of the current line */
};

enum http1_chunk_status {
	HTTP1_CHUNK_ERROR = -1,   /* malformed: the message is unusable */
	HTTP1_CHUNK_MORE = 0,     /* all input consumed, need more */
	HTTP1_CHUNK_DATA = 1,     /* payload bytes found (see below) */
	HTTP1_CHUNK_DONE = 2,     /* last chunk and trailers consumed */
};

/** Resets the decoder for a new message (a zeroed struct is reset too). */
void http1_chunked_init(struct http1_chunked *c);

/**
 * Consumes framing and payload from in[0..len).  Sets *consumed to the
 * number of input bytes used (always all of them for MORE).  For DATA,
 * payload bytes are in[*data_off .. *data_off + *data_len), inside the
 * consumed part; call again with the rest of the input.  DONE means the
 * message ended after *consumed bytes (the rest belongs to the next
 * message).  Trailer fields are checked for syntax and discarded.  ERROR
 * and DONE stay until http1_chunked_init().
 */
enum http1_chunk_status http1_chunked_feed(struct http1_chunked *c,
    const char *in, size_t len, size_t *consumed, size_t *data_off,
    size_t *data_len);

/**
 * The reason phrase we send for a status code ("Bad Request"): a static
 * string, "" for a code we do not know (an empty reason is valid).
 */
const char *http1_reason(int status);

#endif
