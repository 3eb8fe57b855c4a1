/*
 * upstream: the uplink side of one route: its transport context, a pool of
 * idle keep-alive connections shared by every device connection, and the
 * opening of new connections (asynchronous DNS, TCP, handshake).
 */
#ifndef TLSGATE_UPSTREAM_H
#define TLSGATE_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct event_base;
struct evdns_base;
struct route;
struct transport_ops;

/*
 * Idle pooled connections are closed after this many seconds, before a
 * typical server would (nginx and most load balancers use 60 s or more),
 * so that a reused connection has rarely been closed by the other end.
 */
#define UPSTREAM_IDLE_TIMEOUT 30
/*
 * Idle connections kept per route; more are closed when released.  It must
 * exceed the number of device requests a route has in flight at once, or
 * every burst closes connections that the next burst opens again with a
 * handshake (measured: 190 handshakes per 1,000 requests with 32 devices
 * and a bound of 16).  Surplus connections go at UPSTREAM_IDLE_TIMEOUT.
 */
#define UPSTREAM_POOL_MAX 128
/* Longest reason string given to callbacks (and the access log). */
#define UPSTREAM_ERRLEN 160

struct upstream;
struct upconn;

/**
 * Called once when upstream_connect() finishes.  On success `c` is the
 * connection, owned by the caller, with no callbacks set and reading and
 * writing disabled; on failure `c` is NULL (already freed) and `err` says
 * why ("DNS: ...", "connect: ...", "connect timeout", "TLS: ...").
 */
typedef void (*upstream_cb)(struct upconn *c, const char *err, void *arg);

/**
 * Creates the uplink of route `r` (which must outlive it) using transport
 * `t`, or when `t` is NULL the one the route's `tls` key names
 * (transport_openssl or transport_tls13).  Returns NULL with a reason in
 * err[errlen].
 */
struct upstream *upstream_new(const struct route *r, struct event_base *base,
    struct evdns_base *dns, const struct transport_ops *t, char *err,
    size_t errlen);

/**
 * Closes the idle connections and frees `up`.  Every connection handed
 * out must have been released or closed first.  NULL is a no-op.
 */
void upstream_free(struct upstream *up);

/**
 * Takes the most recently used idle connection out of the pool, or
 * returns NULL when there is none.  The caller owns the result, which has
 * no callbacks and no timeouts set.
 */
struct upconn *upstream_get(struct upstream *up);

/**
 * Starts a new connection: the name is resolved again (so DNS changes
 * are followed), then TCP, then the transport's handshake, all within
 * the route's connect_timeout.  `cb` is called exactly once, later,
 * unless upstream_close() cancels the attempt first.  Returns the
 * connection being opened, or NULL with a reason in err[errlen] when
 * nothing could be started (cb is then never called).
 */
struct upconn *upstream_connect(struct upstream *up, upstream_cb cb,
    void *arg, char *err, size_t errlen);

/**
 * Gives a connection back to the pool after a complete exchange.  The
 * caller must only do so when the response was fully read, the request
 * fully sent and the server did not ask to close.  Closes it instead when
 * the pool is full or bytes are left unread.
 */
void upstream_release(struct upconn *c);

/**
 * Enables reading on `c` again after the caller paused it (backpressure
 * towards a slow device).  Use this rather than bufferevent_enable(): a
 * transport that decrypts ahead hands over what it holds, through the
 * read callback.
 */
void upstream_resume(struct upconn *c);

/** Closes a connection, or cancels one being opened.  NULL is a no-op. */
void upstream_close(struct upconn *c);

/** The bufferevent carrying the plaintext of `c`. */
struct bufferevent *upstream_bev(struct upconn *c);

/**
 * How `c` came to be: "new" (full handshake), "resumed" (new connection,
 * resumed TLS session) or "reused" (taken from the pool).
 */
const char *upstream_tls_mode(const struct upconn *c);

/** 1 when `c` was taken from the pool. */
int upstream_reused(const struct upconn *c);

/**
 * Bytes received and sent on the wire by `c` (TLS records) since it was
 * handed out: for a new connection its handshake included, for a pooled
 * one only this exchange.  0 and 0 unless `c` is in use.
 */
void upstream_exchange_bytes(const struct upconn *c, uint64_t *rx,
    uint64_t *tx);

/**
 * Describes the failure just reported by an error or EOF event on the
 * bufferevent of `c` into err[errlen].
 */
void upstream_error(struct upconn *c, char *err, size_t errlen);

/** Name of the transport: "openssl" or "builtin". */
const char *upstream_transport(const struct upstream *up);

/** "host:port" of the route's server, for logs. */
const char *upstream_name(const struct upstream *up);

/** Number of idle pooled connections. */
size_t upstream_idle(const struct upstream *up);

/** Closes every idle connection (used at shutdown). */
void upstream_drain(struct upstream *up);

/** Counters: full handshakes, resumed handshakes, pool reuses. */
void upstream_stats(const struct upstream *up, unsigned long *full,
    unsigned long *resumed, unsigned long *reused);

/**
 * Bytes received and sent on the wire (TLS records, handshakes included)
 * by the connections of `up` closed so far.
 */
void upstream_wire_bytes(const struct upstream *up, uint64_t *rx,
    uint64_t *tx);

#endif
