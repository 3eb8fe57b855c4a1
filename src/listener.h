/*
 * listener: the listening sockets (one per distinct `listen` address; the
 * routes sharing an address share its socket), accepting connections and
 * enforcing max_clients.  Sockets passed by systemd (socket activation,
 * service_listen_fds) are used for the addresses they are bound to.
 */
#ifndef TLSGATE_LISTENER_H
#define TLSGATE_LISTENER_H

#include <stddef.h>

struct config;
struct event_base;
struct proxy;

/* listen(2) backlog. */
#define LISTENER_BACKLOG 128
/* After accept(2) fails for lack of descriptors, pause this long (ms). */
#define LISTENER_EMFILE_PAUSE_MS 1000

struct listener;

/**
 * Takes the socket passed by the service manager for each listen address
 * of `cfg` that has one, and binds the others (SO_REUSEADDR; an IPv6 socket is
 * IPv6-only, so "[::]" and "0.0.0.0" can be listed side by side) and
 * hands accepted connections to `px`.  At most cfg->max_clients sessions
 * exist at a time: the sockets stop accepting when the limit is reached
 * and resume when a session ends (so none is accepted only to be
 * dropped).  Returns NULL after logging why.
 */
struct listener *listener_new(struct event_base *base,
    const struct config *cfg, struct proxy *px);

/**
 * Switches to `cfg` (which must outlive the listener or the next reload):
 * sockets on addresses that stay are kept as they are (no re-bind, queued
 * connections kept), new addresses are opened, removed ones closed (an
 * inherited socket is only no longer accepted on).  Returns 0, or -1 after
 * logging with nothing changed (e.g. a new address cannot be bound).
 */
int listener_reload(struct listener *l, const struct config *cfg);

/** Stops accepting and closes the sockets (shutdown). */
void listener_close(struct listener *l);

/** Frees `l` (closing the sockets if still open).  NULL is a no-op. */
void listener_free(struct listener *l);

/** Number of listening sockets. */
size_t listener_count(const struct listener *l);

#endif
