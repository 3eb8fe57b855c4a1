/*
 * metrics: counters and gauges of the gateway, rendered in the Prometheus
 * text exposition format 0.0.4 and served on a small local HTTP endpoint
 * (metrics_listen = 127.0.0.1:9180).
 *
 * One registry per process, used from the event loop's thread only: no
 * locks, no atomics.  Per-route figures live in a `struct metrics_route`
 * that the caller looks up by name once (at session start, or when an
 * upstream is created) and then updates through the pointer: every update
 * is an array index and an add.  Every update function accepts a NULL
 * route and then does nothing, so a caller may cache NULL when a name is
 * not registered.
 *
 * Routes change on reload.  metrics_routes_set() keeps the entry of every
 * name that stays (counters carry over), adds new names, and *retires*
 * names that are gone: a retired entry is never freed before
 * metrics_init() or metrics_free(), because sessions that started under
 * the old configuration may still hold its pointer; it keeps being
 * rendered, with tlsgate_route_configured 0, so that its counters never go
 * backwards and rate() stays right across a reload.  A retired name that
 * comes back is made current again with its counters intact.  The number
 * of distinct names over the life of the process is bounded by
 * METRICS_MAX_ROUTES.  docs/operations.md lists every metric.
 */
#ifndef TLSGATE_METRICS_H
#define TLSGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct event_base;

/* Distinct route names registered over the life of the process (current
   and retired together); further names are refused. */
#define METRICS_MAX_ROUTES     1024
/* Longest route name, in bytes. */
#define METRICS_MAX_ROUTE_NAME 255
/* Longest server name ("host:port", "[v6]:port") kept; longer are cut. */
#define METRICS_MAX_SERVER_NAME 270

/* The endpoint: connections served at a time (the listener stops
   accepting while this many are open), bytes of request head, and the
   time (ms) a connection may stay idle, and may take to send its head and
   then to read the response and close (each phase). */
#define METRICS_MAX_CONNS      16
#define METRICS_MAX_HEAD       8192
#define METRICS_IO_TIMEOUT_MS  5000

/* Upper bounds (µs) of the request duration histogram buckets, from a
   cached-answer round trip to a long-poll (?ct=N, up to 120 s), and their
   number; a last bucket, le="+Inf", takes the rest. */
#define METRICS_DURATION_BOUNDS_US \
	5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, \
	2500000, 5000000, 10000000, 30000000, 60000000, 120000000
#define METRICS_NBUCKETS       14

/** Why an exchange with the upstream failed (label kind=). */
enum metrics_uperr {
	METRICS_UPERR_DNS = 0,    /* the name did not resolve */
	METRICS_UPERR_CONNECT,    /* TCP connect refused or unreachable */
	METRICS_UPERR_TLS,        /* TLS handshake failed (alert, version) */
	METRICS_UPERR_VERIFY,     /* certificate chain or name not verified */
	METRICS_UPERR_TIMEOUT,    /* connect, handshake or response timeout */
	METRICS_UPERR_PROTOCOL,   /* malformed HTTP response */
	METRICS_UPERR_RESET,      /* connection reset or closed mid-exchange */
	METRICS_UPERR_COUNT
};

struct metrics_route;

/**
 * Empties the registry (every route entry is freed: pointers from before
 * are invalid) and records the process start time `start_ms` (wall clock,
 * ms since the epoch; 0 = now) and the build information (version,
 * OpenSSL and libevent versions).  Called once at start-up; tests call it
 * to start from a known state.  Does not touch the endpoint.
 */
void metrics_init(int64_t start_ms);

/** Frees every route entry (as metrics_init() does), for a clean exit. */
void metrics_free(void);

/**
 * Makes names[0..n) the current routes (NUL-terminated, as in the
 * configuration), in that order: known names keep their entry and
 * counters, new names get a zeroed entry, and registered names that are
 * not in the list are retired (see the top of this file).  Duplicates in
 * the list count once.  Returns 0; or -1 after logging, when a name is
 * empty or longer than METRICS_MAX_ROUTE_NAME, or adding it would exceed
 * METRICS_MAX_ROUTES, or memory runs out: the names that could be handled
 * are, the others have no entry (metrics_route() returns NULL for them).
 */
int metrics_routes_set(const char *const *names, size_t n);

/**
 * The entry of route `name` (current or retired), or NULL when the name
 * was never registered.  The pointer stays valid until metrics_init() or
 * metrics_free(); look it up once and keep it.  Linear in the number of
 * registered names: not for the per-request path.
 */
struct metrics_route *metrics_route(const char *name);

/**
 * Counts one finished request of route `r`: its response status (class
 * 1xx..5xx; anything outside 100..599, e.g. 0 when the device left before
 * a response, is counted as class "none") and its duration in µs, from
 * the first byte of the request to the last byte of the response.
 */
void metrics_request(struct metrics_route *r, int status,
    uint64_t duration_us);

/**
 * Counts one finished request that no route took (no route matched: 404;
 * or the head was refused before a route could be chosen: 400, 408, 414,
 * 431, 501, 505), by the class of its status as metrics_request() does.
 */
void metrics_request_unrouted(int status);

/** Adds bytes received from (`in`) and sent to (`out`) the uplink, TLS
    records and handshakes included. */
void metrics_uplink_bytes(struct metrics_route *r, uint64_t in,
    uint64_t out);

/** Counts one completed uplink TLS handshake: full, or `resumed` (PSK). */
void metrics_handshake(struct metrics_route *r, int resumed);

/** Counts one upstream failure of `kind`; an out-of-range kind is ignored. */
void metrics_upstream_error(struct metrics_route *r, enum metrics_uperr kind);

/**
 * Adds `open` and `idle` (either may be negative) to the gauges of
 * upstream connections open (connecting, busy or idle) and idle in the
 * pool.  Deltas rather than absolute values, so that the old and new
 * upstream sets of a route that overlap during a reload add up.
 */
void metrics_upstream_conns(struct metrics_route *r, int open, int idle);

/**
 * Sets the function metrics_render() calls before it renders, with
 * `arg`, to refresh the gauges that are cheaper to read than to track:
 * when one is set, every route's upstream connection gauges are zeroed
 * first and `cb` adds the current figures with metrics_upstream_conns().
 * NULL removes it (the gauges then keep what the deltas made them).
 */
void metrics_set_collector(void (*cb)(void *), void *arg);

/**
 * For a collector: records that server `name` ("host:port") of route `r`
 * is up (`up` 1) or down (0) now, shown as tlsgate_upstream_server_up.
 * The list of each route is emptied before the collector runs; a name
 * already recorded for `r` in this collection keeps its first value (a
 * collector gives the configuration in force first).  A name longer than
 * METRICS_MAX_SERVER_NAME is cut; when memory runs out the server is
 * left out.
 */
void metrics_upstream_server(struct metrics_route *r, const char *name,
    int up);

/**
 * Sets the store-and-forward gauges of `r`: entries queued, their bytes
 * on disk, and the arrival time of the oldest (wall clock ms since the
 * epoch; ignored when `entries` is 0).  The age is computed when rendered.
 */
void metrics_spool_set(struct metrics_route *r, uint64_t entries,
    uint64_t bytes, int64_t oldest_ms);

/** Store-and-forward events (label event= of tlsgate_spool_events_total). */
enum metrics_spool_ev {
	METRICS_SPOOL_QUEUED = 0, /* a request was queued (device got 202) */
	METRICS_SPOOL_FULL,       /* refused: spool full (device got 503) */
	METRICS_SPOOL_REPLAYED,   /* an entry was delivered (upstream 2xx) */
	METRICS_SPOOL_DEAD,       /* an entry was moved to dead/ */
	METRICS_SPOOL_CORRUPT,    /* a damaged file was moved to corrupt/ */
	METRICS_SPOOL_EV_COUNT
};

/** Counts one store-and-forward event of `r`; an out-of-range ev is
    ignored. */
void metrics_spool_event(struct metrics_route *r, enum metrics_spool_ev ev);

/** Counts a device connection accepted: open gauge and total counter. */
void metrics_device_opened(void);

/** Counts a device connection closed (the open gauge never goes below 0). */
void metrics_device_closed(void);

/**
 * Records a configuration reload: `ok` 1 when the new configuration was
 * applied, 0 when it was refused; `when_ms` is the wall clock (ms since
 * the epoch; 0 = now).
 */
void metrics_reload(int ok, int64_t when_ms);

/**
 * Appends the whole registry to `out` in the text exposition format
 * 0.0.4: for each family a # HELP and a # TYPE line, then its samples;
 * route entries in registration order.  `now_ms` (wall clock ms since the
 * epoch, 0 = now) is the time the spool ages are computed against.
 * Returns 0, or -1 when `out` could not grow (what was appended stays).
 */
int metrics_render(struct evbuffer *out, int64_t now_ms);

/**
 * Starts the endpoint on `addr_port` ("127.0.0.1:9180", "[::1]:9180"; port
 * 0 picks a free port, see metrics_listen_port()) in `base`: GET or HEAD
 * /metrics (any query ignored) → 200 with the registry, another path →
 * 404, another method → 405; one request per connection (the response
 * says Connection: close); a malformed or oversized request head gets the
 * status http1_parse_request() gives.  Limits: METRICS_MAX_CONNS,
 * METRICS_MAX_HEAD, METRICS_IO_TIMEOUT_MS.  Only one endpoint runs at a
 * time.  Returns 0, or -1 with a message in err[errlen].
 */
int metrics_listen_start(struct event_base *base, const char *addr_port,
    char *err, size_t errlen);

/** The port the endpoint is bound to, or -1 when it is not running. */
int metrics_listen_port(void);

/** Closes the endpoint and every connection on it; safe when not running. */
void metrics_listen_stop(void);

#endif
