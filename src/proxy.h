/*
 * proxy: the gateway session.  A device connection (se_in) carries a
 * sequence of HTTP/1.x requests; each is matched to a route, rewritten,
 * and sent over a pooled or new uplink connection (se_out); the response
 * comes back rewritten for the device.  Bodies stream both ways with
 * bounded buffers.  One function, session_close(), frees a session.
 */
#ifndef TLSGATE_PROXY_H
#define TLSGATE_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "metrics.h"

struct config;
struct event_base;
struct evbuffer;
struct evdns_base;
struct http1_request;
struct http1_response;
struct route;

/*
 * Backpressure: when the buffer toward one side holds this much, reading
 * from the other side stops until it drains to half (le-proxy style).
 * Also the read watermark of each side, so every buffer is bounded.
 */
#define PROXY_BUF_HIGH (64 * 1024)
/* Seconds a closing device connection is drained after our last byte, so
 * that an unread request body does not turn our answer into a reset. */
#define PROXY_LINGER 2
/* Longest method kept for the access log (longer ones are cut). */
#define PROXY_MAX_METHOD 32
/*
 * A keep-alive device connection idle this long is parked (src/park.h):
 * its session is freed and only the socket and one event remain until
 * the next byte arrives.  Devices that send a reading every few seconds or
 * minutes spend almost all their time parked; under load (gaps of
 * milliseconds) nothing is parked, so the hot path pays nothing.
 */
#define PROXY_PARK_AFTER_MS 1000
/* After parking, free memory is given back to the kernel (malloc_trim)
 * at most this often, so that the RSS of a gateway whose devices went
 * idle falls to what the parked connections need. */
#define PROXY_TRIM_MS 1000

struct proxy;

/**
 * Creates the proxy for `cfg` (a reference is taken) with one uplink per
 * route.  Returns NULL with a one-line reason in err[errlen] (e.g. a
 * ca_file that cannot be read).
 */
struct proxy *proxy_new(struct event_base *base, struct evdns_base *dns,
    struct config *cfg, char *err, size_t errlen);

/**
 * Makes `cfg` (a reference is taken) the configuration of new sessions,
 * with new uplinks for its routes.  Sessions in flight keep the
 * configuration and uplinks they started with until their exchange ends;
 * the old ones are freed with the last of them.  Returns 0, or -1 with a
 * one-line reason in err[errlen] and nothing changed.
 */
int proxy_reload(struct proxy *px, struct config *cfg, char *err,
    size_t errlen);

/** Live counts for STATUS= and logs; see proxy_counts(). */
struct proxy_counts {
	size_t sessions;         /* device connections, parked included */
	size_t parked;           /* of which parked (idle, session freed) */
	size_t upstream_busy;    /* uplink connections serving a session */
	size_t upstream_idle;    /* pooled idle uplink connections */
	size_t generations;      /* older configurations still in use */
	uint64_t requests;       /* exchanges completed since start */
};

/** Fills *c with the current counts. */
void proxy_counts(const struct proxy *px, struct proxy_counts *c);

/** Closes every session and uplink, then frees `px`.  NULL is a no-op. */
void proxy_free(struct proxy *px);

/** Calls cb(arg) each time a session ends (the listener counts them). */
void proxy_set_close_cb(struct proxy *px, void (*cb)(void *), void *arg);

/**
 * Starts a session on the accepted socket `fd` (which it owns from now
 * on, also on failure), from `peer`, accepted on the configured listen
 * address `listen`.  Returns 0, or -1 after logging (fd closed).
 */
int proxy_accept(struct proxy *px, evutil_socket_t fd,
    const struct sockaddr *peer, socklen_t peerlen,
    const struct sockaddr *listen, socklen_t listenlen);

/**
 * Graceful stop: idle sessions are closed now, the others after their
 * current exchange (answered with Connection: close); idle uplink
 * connections are closed.
 */
void proxy_shutdown(struct proxy *px);

/** Number of open sessions. */
size_t proxy_sessions(const struct proxy *px);

/** 1 when two socket addresses have the same family, address and port. */
int proxy_addr_equal(const struct sockaddr *a, const struct sockaddr *b);

/**
 * Appends to `out` the request head sent upstream for `req` on route `r`:
 * "METHOD path HTTP/1.1", "Host: <r->host>", the device's fields except
 * hop-by-hop ones, Host, Content-Length and Expect, one Via with
 * "1.x tlsgate" appended (RFC 9110 §7.6.3), one X-Forwarded-For with
 * `client_ip` appended, then the route's header rules (a field named by
 * `remove_header` or `set_header` is left out, Via and X-Forwarded-For
 * included; the `set_header` fields follow), then, when `basic` is not
 * NULL, "Authorization: Basic <basic>" in place of any the device or a
 * `set_header` line gave, then the framing (Content-Length or
 * Transfer-Encoding: chunked) and the empty line.  Returns 0, or -1 when
 * out of memory.
 */
int proxy_rewrite_request_head(const struct http1_request *req,
    const struct route *r, const char *client_ip, const char *basic,
    struct evbuffer *out);

/* Flags of proxy_rewrite_response_head(). */
#define PROXY_RESP_CHUNKED 0x01  /* we re-encode the body as chunked */
#define PROXY_RESP_KEEP    0x02  /* the device connection stays open */
#define PROXY_RESP_DEV10   0x04  /* the device spoke HTTP/1.0 */
#define PROXY_RESP_INTERIM 0x08  /* a 1xx: no framing, no Connection */

/**
 * Appends to `out` the response head sent to the device for `resp`:
 * "HTTP/1.1 SSS reason", the fields except hop-by-hop ones (and except
 * Content-Length when the body is re-framed), Via with "1.x tlsgate"
 * appended, "Transfer-Encoding: chunked" with PROXY_RESP_CHUNKED, and
 * "Connection: close" without PROXY_RESP_KEEP ("Connection: keep-alive"
 * to a 1.0 device that keeps it).  Returns 0, or -1 when out of memory.
 */
int proxy_rewrite_response_head(const struct http1_response *resp,
    unsigned flags, struct evbuffer *out);

/**
 * The metrics kind of an upstream failure described by `why` (a reason
 * from upstream.c, a transport, or the proxy: "DNS: ...", "connect: ...",
 * "connect timeout", "TLS: certificate verify failed: ...", "TLS: ...",
 * "upstream timeout", "malformed response", "upstream closed
 * connection"); `connecting` is 1 while the connection was being opened
 * (a TLS failure then is a handshake failure, otherwise the connection
 * broke: reset).  A reason that names a server first ("host:port: ...")
 * is classified by what follows.
 */
enum metrics_uperr proxy_uperr_kind(const char *why, int connecting);

/**
 * For metrics_set_collector(): adds the open and idle uplink connections
 * of every route of the proxy `arg` (current and older configurations
 * still in use) to the routes' gauges, and records whether each server
 * is up (the configuration in force first).
 */
void proxy_metrics_collect(void *arg);

/**
 * 1 when `method` is idempotent (RFC 9110 §9.2.2: GET, HEAD, OPTIONS,
 * TRACE, PUT, DELETE), so that a request may be retried.
 */
int proxy_idempotent(const char *method);

#endif
