/*
 * offline: store-and-forward for routes with `offline_queue = yes`.
 *
 * One spool (src/spool.h) per such route, opened at start-up and kept
 * across reloads while the route keeps its spool_dir, and one background
 * sender per route that replays the queue through an uplink of its own,
 * oldest entry first, at most spool_rate entries per second.  An entry
 * leaves the spool only after the upstream answered 2xx; a final refusal
 * (4xx other than 408 and 429) moves it to dead/; anything else keeps it
 * and retries after a backoff.  The proxy decides which requests are
 * queued (offline_eligible() and friends) and hands them to offline_put().
 *
 * One instance per process, driven from the event loop's thread, like the
 * metrics registry: the proxy reaches it by route, without a pointer.
 * The behaviour seen by devices and operators is in docs/spool.md.
 */
#ifndef TLSGATE_OFFLINE_H
#define TLSGATE_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

#include "http1.h"
#include "spool.h"

struct config;
struct event_base;
struct evdns_base;
struct route;

/* Backoff of the sender after a failed replay: the first wait, doubled
   after each failure up to the last (ms). */
#define OFFLINE_BACKOFF_MIN_MS   1000
#define OFFLINE_BACKOFF_MAX_MS   30000
/* A Retry-After from the upstream is honoured up to this (seconds). */
#define OFFLINE_RETRY_AFTER_MAX  300
/* Retry-After sent to a device when the spool is full (seconds), unless
   the time to replay the queue at spool_rate is longer (then that, up to
   OFFLINE_RETRY_AFTER_MAX). */
#define OFFLINE_FULL_RETRY_AFTER 30
/* Bytes of a replay's response body read before the sender gives up on
   the connection (the verdict only needs the status); the first
   SPOOL_MAX_RESPONSE bytes of the response are kept for dead/. */
#define OFFLINE_MAX_RESPONSE_BODY (1024 * 1024)
/* Name of the header that carries the entry's id on a replay and in the
   device's 202. */
#define OFFLINE_ID_HEADER        "X-Tlsgate-Queue-Id"

/** What the sender does with an entry after the upstream's status. */
enum offline_verdict {
	OFFLINE_ACK = 0,      /* 2xx: delivered, removed */
	OFFLINE_DEAD,         /* 4xx but 408/429: moved to dead/ */
	OFFLINE_RETRY,        /* anything else: kept, retried later */
};

/**
 * Opens the spool of every route of `cfg` with offline_queue (creating
 * missing parent directories of spool_dir with mode 0700) and starts a
 * sender for each non-empty one.  Holds a reference to cfg.  May be called
 * once; offline_free() undoes it.  Returns 0, or -1 with a one-line reason
 * in err[errlen] and nothing left open (the daemon refuses to start).
 */
int offline_init(struct event_base *base, struct evdns_base *dns,
    struct config *cfg, char *err, size_t errlen);

/**
 * Applies `cfg` (a reference is taken, the old one dropped): a spool whose
 * directory is still some offline route's spool_dir stays open (no
 * recovery scan, no entry lost), new directories are opened, spools no
 * longer configured are closed; every sender gets a new uplink for its
 * route's new settings (a replay in flight is abandoned and the entry
 * sent again, with the same id).  Returns 0, or -1 with a reason in
 * err[errlen] and everything as before (the caller keeps its old
 * configuration).
 */
int offline_reload(struct config *cfg, char *err, size_t errlen);

/** Stops the senders, closes every spool (entries stay on disk). */
void offline_free(void);

/**
 * 1 when route `r` (of any configuration generation) has an open spool:
 * it has offline_queue and its spool_dir is one of the current
 * configuration's.  0 otherwise, and before offline_init().
 */
int offline_enabled(const struct route *r);

/**
 * 1 when a request of route `r` must be queued without trying the
 * upstream, to keep arrival order: the spool holds entries or a replay is
 * in flight.  0 otherwise (also when `r` has no spool).
 */
int offline_backlog(const struct route *r);

/**
 * Queues `e` in the spool of route `r` (e->route is ignored and set to
 * the route's name) and wakes its sender.  Updates the metrics of the
 * route and logs refusals.  Returns 0 with the id in id_out, SPOOL_FULL,
 * or -1 (no spool, invalid entry or I/O error; logged).
 */
int offline_put(const struct route *r, const struct spool_entry_in *e,
    char id_out[SPOOL_ID_SIZE]);

/**
 * Seconds a device is told to wait (Retry-After) when the spool of `r` is
 * full: OFFLINE_FULL_RETRY_AFTER, or the time to replay the queue at
 * spool_rate when longer, at most OFFLINE_RETRY_AFTER_MAX.
 */
int offline_full_retry_after(const struct route *r);

/**
 * Tells the sender of `r` that the upstream just answered live traffic
 * (a response below 500): a sender waiting out a backoff tries at once.
 * No-op when `r` has no spool or nothing is queued.
 */
void offline_kick(const struct route *r);

/**
 * 1 when the query of path[0..len) (origin-form, the part after '?') has
 * a parameter named `ct` (Drogue Cloud's command long-poll, "?ct=30" or
 * "&ct=30"): such a request waits for a live answer and is never queued.
 */
int offline_longpoll(const char *path, size_t len);

/**
 * 1 when a request may be held for queueing on route `r`: the route has
 * offline_queue, the method is POST, the path has no `ct` parameter, the
 * body is framed (Content-Length or chunked) and, with Content-Length,
 * content_length is at most offline_max_body(max_body_size).  0
 * otherwise: the request is proxied as without a queue.
 */
int offline_eligible(const struct route *r, const char *method,
    size_t method_len, const char *path, size_t path_len,
    enum http1_framing framing, uint64_t content_length,
    uint64_t max_body_size);

/** The largest body held for queueing: min(max_body_size (0 = none),
    SPOOL_MAX_BODY). */
uint64_t offline_max_body(uint64_t max_body_size);

/** 1 when a live response with `status` (502, 503, 504) queues the
    request instead of being relayed. */
int offline_status_queues(int status);

/** The sender's verdict on a replay answered with `status`. */
enum offline_verdict offline_verdict(int status);

/**
 * The wait before the next replay attempt after a failure: `prev_ms` the
 * previous wait (0 after a success), `retry_after` the seconds of the
 * upstream's Retry-After (-1 when absent).  Doubles from
 * OFFLINE_BACKOFF_MIN_MS to OFFLINE_BACKOFF_MAX_MS; a Retry-After
 * replaces it, bounded to [OFFLINE_BACKOFF_MIN_MS,
 * OFFLINE_RETRY_AFTER_MAX s].
 */
int64_t offline_backoff(int64_t prev_ms, long retry_after);

/**
 * Parses a Retry-After value v[0..len) in the delay-seconds form (RFC 9110
 * §10.2.3); returns the seconds (saturated at OFFLINE_RETRY_AFTER_MAX), or
 * -1 for an HTTP-date or anything else (the caller's backoff applies).
 */
long offline_parse_retry_after(const char *v, size_t len);

#endif
