/*
 * upstream: per-route connection pool and connection set-up.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "config.h"
#include "log.h"
#include "transport.h"
#include "upstream.h"

enum upconn_state {
	UPCONN_CONNECTING,   /* DNS and TCP */
	UPCONN_HANDSHAKE,    /* transport handshake */
	UPCONN_ACTIVE,       /* owned by a session */
	UPCONN_IDLE,         /* in the pool */
};

struct upconn {
	struct upstream *up;
	enum upconn_state state;
	struct bufferevent *bev;     /* socket, then transport bufferevent */
	struct event *timer;         /* connect_timeout while opening */
	upstream_cb cb;
	void *arg;
	int reused;
	int resumed;
	uint64_t rx0, tx0;           /* wire bytes when handed out */
	TAILQ_ENTRY(upconn) entry;   /* in up->idle */
};

TAILQ_HEAD(upconn_list, upconn);

struct upstream {
	const struct route *route;
	struct event_base *base;
	struct evdns_base *dns;
	const struct transport_ops *t;
	void *tctx;
	char name[300];
	struct upconn_list idle;
	size_t nidle;
	unsigned long full, resumed, reused;
	uint64_t wire_rx, wire_tx;      /* of closed connections */
};

static void upconn_free(struct upconn *);
static void upconn_fail(struct upconn *, const char *);
static void upconn_tcp_event(struct bufferevent *, short, void *);
static void upconn_tls_event(struct bufferevent *, short, void *);
static void upconn_timeout(evutil_socket_t, short, void *);
static void upconn_idle_read(struct bufferevent *, void *);
static void upconn_idle_event(struct bufferevent *, short, void *);

struct upstream *
upstream_new(const struct route *r, struct event_base *base,
    struct evdns_base *dns, const struct transport_ops *t, char *err,
    size_t errlen)
{
	struct upstream *up;

	if ((up = calloc(1, sizeof(*up))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* The route's `tls` key picks the client unless the caller did. */
	if (t == NULL)
		t = r->tls == CONFIG_TLS_BUILTIN ? &transport_tls13 :
		    &transport_openssl;
	up->route = r;
	up->base = base;
	up->dns = dns;
	up->t = t;
	TAILQ_INIT(&up->idle);
	if (strchr(r->upstream_host, ':') != NULL)
		snprintf(up->name, sizeof(up->name), "[%s]:%u",
		    r->upstream_host, r->upstream_port);
	else
		snprintf(up->name, sizeof(up->name), "%s:%u",
		    r->upstream_host, r->upstream_port);
	if ((up->tctx = t->ctx_new(r, err, errlen)) == NULL) {
		free(up);
		return NULL;
	}
	return up;
}

void
upstream_free(struct upstream *up)
{
	if (up == NULL)
		return;
	upstream_drain(up);
	up->t->ctx_free(up->tctx);
	free(up);
}

void
upstream_drain(struct upstream *up)
{
	struct upconn *c;

	while ((c = TAILQ_FIRST(&up->idle)) != NULL)
		upconn_free(c);
}

/* The only place that frees a connection. */
static void
upconn_free(struct upconn *c)
{
	evutil_socket_t fd;
	uint64_t rx, tx;

	if (c->state == UPCONN_IDLE) {
		TAILQ_REMOVE(&c->up->idle, c, entry);
		c->up->nidle--;
	}
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->bev != NULL && c->state != UPCONN_CONNECTING) {
		c->up->t->wire_bytes(c->bev, &rx, &tx);
		c->up->wire_rx += rx;
		c->up->wire_tx += tx;
	}
	if (c->bev != NULL) {
		/* During DNS and TCP the socket bufferevent does not own its
		 * fd (so that the transport can take it over). */
		fd = c->state == UPCONN_CONNECTING ?
		    bufferevent_getfd(c->bev) : -1;
		bufferevent_free(c->bev);
		if (fd >= 0)
			evutil_closesocket(fd);
	}
	free(c);
}

struct upconn *
upstream_get(struct upstream *up)
{
	struct upconn *c;

	/* Most recently used first: the least likely to have timed out. */
	if ((c = TAILQ_LAST(&up->idle, upconn_list)) == NULL)
		return NULL;
	TAILQ_REMOVE(&up->idle, c, entry);
	up->nidle--;
	c->state = UPCONN_ACTIVE;
	c->reused = 1;
	up->reused++;
	up->t->wire_bytes(c->bev, &c->rx0, &c->tx0);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	return c;
}

struct upconn *
upstream_connect(struct upstream *up, upstream_cb cb, void *arg, char *err,
    size_t errlen)
{
	const struct route *r = up->route;
	struct timeval tv = { r->connect_timeout, 0 };
	struct upconn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->up = up;
	c->cb = cb;
	c->arg = arg;
	c->state = UPCONN_CONNECTING;
	if ((c->timer = evtimer_new(up->base, upconn_timeout, c)) == NULL ||
	    evtimer_add(c->timer, &tv) == -1 ||
	    (c->bev = bufferevent_socket_new(up->base, -1, 0)) == NULL) {
		snprintf(err, errlen, "out of memory");
		upconn_free(c);
		return NULL;
	}
	bufferevent_setcb(c->bev, NULL, NULL, upconn_tcp_event, c);
	/* Resolved on every new connection: no address is cached. */
	if (bufferevent_socket_connect_hostname(c->bev, up->dns, AF_UNSPEC,
	    r->upstream_host, r->upstream_port) == -1) {
		snprintf(err, errlen, "connect: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		upconn_free(c);
		return NULL;
	}
	log_debug("upstream %s: connecting", up->name);
	return c;
}

/* Reports failure to the owner; `c` is freed before the callback. */
static void
upconn_fail(struct upconn *c, const char *why)
{
	upstream_cb cb = c->cb;
	void *arg = c->arg;

	log_debug("upstream %s: %s", c->up->name, why);
	upconn_free(c);
	cb(NULL, why, arg);
}

static void
upconn_tcp_event(struct bufferevent *bev, short what, void *arg)
{
	struct upconn *c = arg;
	struct upstream *up = c->up;
	char err[UPSTREAM_ERRLEN];
	int dnserr, on = 1;

	if (what & BEV_EVENT_CONNECTED) {
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
		    TCP_NODELAY, &on, sizeof(on));
		c->state = UPCONN_HANDSHAKE;
		/* The transport owns the socket bufferevent from here on. */
		c->bev = NULL;
		c->bev = up->t->start(up->tctx, bev, err, sizeof(err));
		if (c->bev == NULL) {
			upconn_fail(c, err);
			return;
		}
		bufferevent_setcb(c->bev, NULL, NULL, upconn_tls_event, c);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		return;
	}
	if ((dnserr = bufferevent_socket_get_dns_error(bev)) != 0)
		snprintf(err, sizeof(err), "DNS: %s",
		    evutil_gai_strerror(dnserr));
	else if (EVUTIL_SOCKET_ERROR() != 0)
		snprintf(err, sizeof(err), "connect: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else
		snprintf(err, sizeof(err), "connect: failed");
	upconn_fail(c, err);
}

static void
upconn_tls_event(struct bufferevent *bev, short what, void *arg)
{
	struct upconn *c = arg;
	struct upstream *up = c->up;
	char err[UPSTREAM_ERRLEN];
	uint64_t rx, tx;

	if (what & BEV_EVENT_CONNECTED) {
		event_free(c->timer);
		c->timer = NULL;
		c->resumed = up->t->resumed(bev);
		if (c->resumed)
			up->resumed++;
		else
			up->full++;
		c->state = UPCONN_ACTIVE;
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		/* What the handshake alone cost on the wire (the tickets a
		 * TLS 1.3 server sends come after it). */
		up->t->wire_bytes(bev, &rx, &tx);
		log_debug("upstream %s: connected (%s, handshake bytes sent=%"
		    PRIu64 " received=%" PRIu64 ")", up->name,
		    c->resumed ? "resumed" : "full handshake", tx, rx);
		c->cb(c, NULL, c->arg);
		return;
	}
	up->t->error(bev, err, sizeof(err));
	upconn_fail(c, err);
}

static void
upconn_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *c = arg;

	(void)fd;
	(void)what;
	upconn_fail(c, "connect timeout");
}

void
upstream_release(struct upconn *c)
{
	struct upstream *up = c->up;
	struct timeval tv = { UPSTREAM_IDLE_TIMEOUT, 0 };

	if (up->nidle >= UPSTREAM_POOL_MAX ||
	    evbuffer_get_length(bufferevent_get_input(c->bev)) != 0 ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) != 0) {
		upconn_free(c);
		return;
	}
	c->state = UPCONN_IDLE;
	TAILQ_INSERT_TAIL(&up->idle, c, entry);
	up->nidle++;
	/* Watch for the server closing it, and for the idle limit. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, upconn_idle_read, NULL, upconn_idle_event,
	    c);
	bufferevent_set_timeouts(c->bev, &tv, NULL);
	bufferevent_disable(c->bev, EV_WRITE);
	bufferevent_enable(c->bev, EV_READ);
	if (up->t->park != NULL)
		up->t->park(c->bev);
}

void
upstream_resume(struct upconn *c)
{
	bufferevent_enable(c->bev, EV_READ);
	if (c->up->t->resume != NULL)
		c->up->t->resume(c->bev);
}

/* A server does not speak first on an idle HTTP connection. */
static void
upconn_idle_read(struct bufferevent *bev, void *arg)
{
	struct upconn *c = arg;

	/* A read callback deferred while the connection was still in use
	 * (the built-in transport defers them) may run here with nothing
	 * to read. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) == 0)
		return;
	log_debug("upstream %s: unexpected bytes on an idle connection",
	    c->up->name);
	upconn_free(c);
}

static void
upconn_idle_event(struct bufferevent *bev, short what, void *arg)
{
	struct upconn *c = arg;

	(void)bev;
	log_debug("upstream %s: idle connection %s", c->up->name,
	    (what & BEV_EVENT_TIMEOUT) ? "timed out" : "closed");
	upconn_free(c);
}

void
upstream_close(struct upconn *c)
{
	if (c != NULL)
		upconn_free(c);
}

struct bufferevent *
upstream_bev(struct upconn *c)
{
	return c->bev;
}

const char *
upstream_tls_mode(const struct upconn *c)
{
	if (c->reused)
		return "reused";
	return c->resumed ? "resumed" : "new";
}

int
upstream_reused(const struct upconn *c)
{
	return c->reused;
}

void
upstream_exchange_bytes(const struct upconn *c, uint64_t *rx, uint64_t *tx)
{
	*rx = *tx = 0;
	if (c->state != UPCONN_ACTIVE)
		return;
	c->up->t->wire_bytes(c->bev, rx, tx);
	*rx -= *rx >= c->rx0 ? c->rx0 : *rx;
	*tx -= *tx >= c->tx0 ? c->tx0 : *tx;
}

void
upstream_error(struct upconn *c, char *err, size_t errlen)
{
	c->up->t->error(c->bev, err, errlen);
}

const char *
upstream_transport(const struct upstream *up)
{
	return up->t->name;
}

const char *
upstream_name(const struct upstream *up)
{
	return up->name;
}

size_t
upstream_idle(const struct upstream *up)
{
	return up->nidle;
}

void
upstream_stats(const struct upstream *up, unsigned long *full,
    unsigned long *resumed, unsigned long *reused)
{
	*full = up->full;
	*resumed = up->resumed;
	*reused = up->reused;
}

void
upstream_wire_bytes(const struct upstream *up, uint64_t *rx, uint64_t *tx)
{
	*rx = up->wire_rx;
	*tx = up->wire_tx;
}
