/*
 * park: idle keep-alive connections held in as little memory as the
 * kernel's socket needs.  A device that keeps its connection open between
 * readings (every few seconds or minutes) would otherwise hold a whole
 * session: a bufferevent with two evbuffers, a timer and the exchange
 * state, about 1.7 KB.  A parked connection is one socket and a 24-byte
 * slot outside the heap; when bytes arrive the owner builds a session
 * again.  Linux only (epoll, mremap).
 */
#ifndef TLSGATE_PARK_H
#define TLSGATE_PARK_H

#include <stddef.h>

#include <event2/util.h>

struct event_base;
struct parkset;

/**
 * Called once per parked socket: `readable` is 1 when bytes (or EOF)
 * arrived, 0 when the timeout passed first, or when park_close_all()
 * empties the set (then `closing` is 1).  The socket belongs to the
 * callee from then on; the set has already forgotten it.
 */
typedef void (*park_cb)(evutil_socket_t fd, int readable, int closing,
    void *arg);

/** A set of parked sockets on `base` calling cb(..., arg).  NULL on ENOMEM. */
struct parkset *parkset_new(struct event_base *base, park_cb cb, void *arg);

/**
 * Closes every parked socket without calling the callback, and frees the
 * set.  NULL is a no-op.
 */
void parkset_free(struct parkset *ps);

/**
 * Parks `fd` until it is readable or `timeout_s` seconds (> 0) pass.
 * Returns 0, or -1 (the slot array cannot grow, or epoll refused the
 * socket) with `fd` still the caller's.
 */
int park_add(struct parkset *ps, evutil_socket_t fd, int timeout_s);

/** Number of sockets parked in `ps`. */
size_t park_count(const struct parkset *ps);

/**
 * Hands every parked socket to the callback with readable 0 and
 * closing 1, for a shutdown that closes idle connections at once.
 */
void park_close_all(struct parkset *ps);

/** Bytes one parked socket costs in `ps`'s own structures. */
size_t park_entry_size(void);

#endif
