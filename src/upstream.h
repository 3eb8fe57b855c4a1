/*
 * upstream: the uplink side of one route: its transport context, its
 * servers (the `upstream` list) with their health, a pool of idle
 * keep-alive connections shared by every device connection, and the
 * opening of new connections (asynchronous DNS, TCP, handshake).
 *
 * New connections go round-robin to the servers that are up.  A server
 * goes down after health_fall failures in a row: failed connection
 * attempts (DNS, TCP, TLS, certificate) always count; with `health_check`
 * so do failed active checks, and health_rise good checks bring it back;
 * without, one trial connection is let through health_interval seconds
 * after the last failure, and its success brings the server back.  The
 * pool is per route: a pooled connection is reused whatever its server,
 * so under keep-alive load is spread by connection, not by request.
 * docs/design.md, "Several servers and health checks".
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
/*
 * Largest response head a health check reads: a check needs the status
 * line only, so a bigger head counts as a failed check.
 */
#define UPSTREAM_CHECK_MAX_HEAD 8192

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
 * Cancels `up`'s active health checks for good: its servers are judged by
 * its own traffic, as on a route without health_check.  For a second
 * uplink of a route (the store-and-forward sender's), whose checks would
 * repeat the proxy's on the same servers.
 */
void upstream_passive(struct upstream *up);

/**
 * Closes the idle connections, cancels the health checks (also one in
 * progress) and frees `up`.  Every connection handed out must have been
 * released or closed first.  NULL is a no-op.
 */
void upstream_free(struct upstream *up);

/**
 * Takes the most recently used idle connection out of the pool, or
 * returns NULL when there is none.  The caller owns the result, which has
 * no callbacks, reading enabled (bytes that arrive wait in its input
 * buffer) and writing disabled; the pool's idle read timeout is still set
 * and must be replaced with bufferevent_set_timeouts() before the loop
 * runs again.
 */
struct upconn *upstream_get(struct upstream *up);

/**
 * Starts a new connection to the next server that is up (round-robin):
 * the name is resolved again (so DNS changes are followed), then TCP,
 * then the transport's handshake (SNI and verified name from the route),
 * within the route's connect_timeout.  A failed attempt counts against
 * that server and the next server not yet tried is attempted (nothing
 * was sent, so this is safe for any request); the failure is reported
 * when every usable server failed once.  `cb` is called exactly once,
 * later, unless upstream_close() cancels the attempt first.  Returns the
 * connection being opened, or NULL with a reason in err[errlen] when
 * nothing could be started (cb is then never called): "all servers
 * down" when no server may be used (see upstream_healthy()).  On a
 * route with several servers a reason names the server that failed
 * last ("127.0.0.1:8443: connect: Connection refused").
 */
struct upconn *upstream_connect(struct upstream *up, upstream_cb cb,
    void *arg, char *err, size_t errlen);

/**
 * Gives a connection back to the pool after a complete exchange.  The
 * caller must only do so when the response was fully read, the request
 * fully sent and the server did not ask to close.  Closes it instead when
 * the pool is full, bytes are left unread or its server is down.
 */
void upstream_release(struct upconn *c);

/**
 * Enables reading on `c` again after the caller paused it (backpressure
 * towards a slow device).  Use this rather than bufferevent_enable(): a
 * transport that decrypts ahead hands over what it holds, through the
 * read callback.
 */
void upstream_resume(struct upconn *c);

/**
 * Appends len bytes to c's output, writing them at once when nothing is
 * queued ahead of them (transport_ops.send).  Returns 0, or -1 when out
 * of memory.
 */
int upstream_send(struct upconn *c, const void *p, size_t len);

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

/**
 * The route's servers for logs: "host:port" ("[v6]:port"), several
 * joined with commas ("10.0.0.1:443,10.0.0.2:443").  Owned by `up`.
 */
const char *upstream_name(const struct upstream *up);

/**
 * "host:port" of the server `c` goes to (or is being opened to), for the
 * access log.  Owned by the upstream of `c`.
 */
const char *upstream_conn_server(const struct upconn *c);

/**
 * Number of servers a new connection may go to now: those up, plus, on a
 * route without health_check, those down whose health_interval has
 * passed since their last failure (each lets one trial connection
 * through).  When it is 0, upstream_connect() fails with "all servers
 * down": answer 503 with Retry-After: health_interval (RFC 9110 §15.6.4,
 * §10.2.3) without trying.
 */
size_t upstream_healthy(const struct upstream *up);

/**
 * Connections of `up` open for traffic: idle, in use and being opened.
 * Health check connections are not counted.
 */
size_t upstream_open(const struct upstream *up);

/** Number of servers of the route (its `upstream` list), at least 1. */
size_t upstream_nservers(const struct upstream *up);

/**
 * The i-th server of the route: returns its "host:port" (owned by `up`)
 * and sets *up_now (when not NULL) to 1 when it is up, 0 when down; NULL
 * when i is past the end.  For a per-server metrics gauge.
 */
const char *upstream_server(const struct upstream *up, size_t i,
    int *up_now);

/** Number of idle pooled connections. */
size_t upstream_idle(const struct upstream *up);

/**
 * Closes every idle connection and stops the active health checks for
 * good (servers keep the state they have; passive detection goes on).
 * For shutdown, and for the uplinks of a configuration that a reload
 * replaced.
 */
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
