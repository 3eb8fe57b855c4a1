/*
 * upstream: per-route servers and their health, connection pool and
 * connection set-up.
 *
 * Every connection, pooled or being opened, and every health check is a
 * struct upconn bound to one server of the route.  A server's health is
 * two counters of consecutive results: `bad` (failed connection attempts
 * and failed checks) takes it down at health_fall, `good` (good checks)
 * brings it up at health_rise.  The active checks are plain requests on
 * fresh connections opened exactly like traffic (same transport, SNI and
 * verification), never pooled.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "config.h"
#include "http1.h"
#include "log.h"
#include "transport.h"
#include "upstream.h"

/* "[" host "]:" port, for logs; a longer host name is cut in the name
 * only, never in what is resolved. */
#define UPSTREAM_NAMELEN 300

enum upconn_state {
	UPCONN_CONNECTING,   /* DNS and TCP */
	UPCONN_HANDSHAKE,    /* transport handshake */
	UPCONN_ACTIVE,       /* owned by a session, or a check running */
	UPCONN_IDLE,         /* in the pool */
};

/* One server of the route's `upstream` list. */
struct upserver {
	struct upstream *up;
	const char *host;
	uint16_t port;
	char name[UPSTREAM_NAMELEN];
	int healthy;                 /* 1: new connections may go here */
	int good, bad;               /* consecutive good checks, failures */
	int trial;                   /* passive: the trial connection is open */
	struct timespec retry_at;    /* passive: when down, no trial before */
	struct event *check_timer;   /* active: the next check */
	struct upconn *check;        /* active: the check in progress */
};

struct upconn {
	struct upstream *up;
	struct upserver *srv;
	enum upconn_state state;
	struct bufferevent *bev;     /* socket, then transport bufferevent */
	struct event *timer;         /* connect_timeout while opening; the
					whole health_timeout of a check */
	upstream_cb cb;
	void *arg;
	int check;                   /* a health check, not traffic */
	int trial;                   /* the trial connection of srv */
	uint32_t tried;              /* servers attempted (bit i: servers[i]) */
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
	struct upserver *servers;
	size_t nservers;
	size_t next;                    /* round-robin: the next to try */
	int active;                     /* 1: health_check is set and the
					   checks run */
	char *name;                     /* every server, comma-separated */
	struct upconn_list idle;
	size_t nidle;
	size_t nopen;                   /* traffic connections, any state */
	unsigned long full, resumed, reused;
	uint64_t wire_rx, wire_tx;      /* of closed connections */
};

static void upconn_free(struct upconn *);
static void upconn_drop_bev(struct upconn *);
static int upconn_start(struct upconn *, struct upserver *, char *, size_t);
static void upconn_failed(struct upconn *, const char *);
static void upconn_tcp_event(struct bufferevent *, short, void *);
static void upconn_tls_event(struct bufferevent *, short, void *);
static void upconn_timeout(evutil_socket_t, short, void *);
static void upconn_idle_read(struct bufferevent *, void *);
static void upconn_idle_event(struct bufferevent *, short, void *);
static int upserver_usable(const struct upserver *, const struct timespec *);
static struct upserver *upstream_pick(struct upstream *, uint32_t);
static void upserver_failed(struct upserver *, const char *);
static void upserver_good(struct upserver *, int);
static void upserver_check_start(evutil_socket_t, short, void *);
static void upserver_check_done(struct upserver *, const char *);
static int upserver_check_parse(struct upserver *, struct bufferevent *);
static void upserver_check_read(struct bufferevent *, void *);
static void upserver_check_event(struct bufferevent *, short, void *);
static void upstream_stop_checks(struct upstream *);

static void
upstream_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

struct upstream *
upstream_new(const struct route *r, struct event_base *base,
    struct evdns_base *dns, const struct transport_ops *t, char *err,
    size_t errlen)
{
	struct upstream *up;
	struct upserver *s;
	struct timeval now = { 0, 0 };
	size_t i, len = 0;

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
	/* A route built without the list (servers[0] only in
	 * upstream_host/upstream_port) has one server. */
	up->nservers = r->nservers > 0 ? r->nservers : 1;
	if (up->nservers > CONFIG_MAX_SERVERS) {
		snprintf(err, errlen, "more than %d servers",
		    CONFIG_MAX_SERVERS);
		goto out;
	}
	if ((up->servers = calloc(up->nservers, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < up->nservers; i++) {
		s = &up->servers[i];
		s->up = up;
		s->host = r->nservers > 0 ? r->servers[i].host :
		    r->upstream_host;
		s->port = r->nservers > 0 ? r->servers[i].port :
		    r->upstream_port;
		/* Servers start up: traffic and checks take them down. */
		s->healthy = 1;
		if (strchr(s->host, ':') != NULL)
			snprintf(s->name, sizeof(s->name), "[%s]:%u", s->host,
			    s->port);
		else
			snprintf(s->name, sizeof(s->name), "%s:%u", s->host,
			    s->port);
		len += strlen(s->name) + 1;
	}
	if ((up->name = malloc(len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	up->name[0] = '\0';
	for (i = 0; i < up->nservers; i++) {
		if (i > 0)
			strcat(up->name, ",");
		strcat(up->name, up->servers[i].name);
	}
	if (r->health_method != NULL && r->health_path != NULL) {
		up->active = 1;
		/* The first checks run at once, so that a server that is
		 * down at start-up is found within health_fall checks. */
		for (i = 0; i < up->nservers; i++) {
			s = &up->servers[i];
			if ((s->check_timer = evtimer_new(base,
			    upserver_check_start, s)) == NULL ||
			    evtimer_add(s->check_timer, &now) == -1) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
		}
	}
	if ((up->tctx = t->ctx_new(r, err, errlen)) == NULL)
		goto out;
	return up;
out:
	upstream_stop_checks(up);
	free(up->servers);
	free(up->name);
	free(up);
	return NULL;
}

void
upstream_free(struct upstream *up)
{
	if (up == NULL)
		return;
	upstream_drain(up);
	up->t->ctx_free(up->tctx);
	free(up->servers);
	free(up->name);
	free(up);
}

/* Cancels the timers and the checks in progress; a no-op when there are
 * none (passive routes, or already stopped). */
static void
upstream_stop_checks(struct upstream *up)
{
	struct upserver *s;
	size_t i;

	for (i = 0; up->servers != NULL && i < up->nservers; i++) {
		s = &up->servers[i];
		if (s->check_timer != NULL) {
			event_free(s->check_timer);
			s->check_timer = NULL;
		}
		if (s->check != NULL) {
			upconn_free(s->check);
			s->check = NULL;
		}
	}
	up->active = 0;
}

void
upstream_passive(struct upstream *up)
{
	upstream_stop_checks(up);
}

void
upstream_drain(struct upstream *up)
{
	struct upconn *c;

	upstream_stop_checks(up);
	while ((c = TAILQ_FIRST(&up->idle)) != NULL)
		upconn_free(c);
}

/* Frees the bufferevent of c (and with it the socket), adding what went
 * over the wire to the route's counters. */
static void
upconn_drop_bev(struct upconn *c)
{
	evutil_socket_t fd;
	uint64_t rx, tx;

	if (c->bev == NULL)
		return;
	if (c->state != UPCONN_CONNECTING) {
		c->up->t->wire_bytes(c->bev, &rx, &tx);
		c->up->wire_rx += rx;
		c->up->wire_tx += tx;
	}
	/* During DNS and TCP the socket bufferevent does not own its fd (so
	 * that the transport can take it over). */
	fd = c->state == UPCONN_CONNECTING ? bufferevent_getfd(c->bev) : -1;
	bufferevent_free(c->bev);
	if (fd >= 0)
		evutil_closesocket(fd);
	c->bev = NULL;
}

/* The only place that frees a connection. */
static void
upconn_free(struct upconn *c)
{
	if (c->state == UPCONN_IDLE) {
		TAILQ_REMOVE(&c->up->idle, c, entry);
		c->up->nidle--;
	}
	/* A trial cancelled before it finished proves nothing: the next
	 * connection may try again. */
	if (c->trial)
		c->srv->trial = 0;
	if (!c->check)
		c->up->nopen--;
	if (c->timer != NULL)
		event_free(c->timer);
	upconn_drop_bev(c);
	free(c);
}

/* ---- server selection and health ---- */

/* 1 when a new connection may go to s now. */
static int
upserver_usable(const struct upserver *s, const struct timespec *now)
{
	if (s->healthy)
		return 1;
	/* Without active checks only traffic can show that a server is
	 * back: one trial connection at a time, health_interval after the
	 * last failure (a circuit breaker's half-open state). */
	if (s->up->active || s->trial)
		return 0;
	return now->tv_sec > s->retry_at.tv_sec ||
	    (now->tv_sec == s->retry_at.tv_sec &&
	    now->tv_nsec >= s->retry_at.tv_nsec);
}

/*
 * The server for the next connection attempt: the first usable one from
 * up->next on (round-robin over the usable servers), skipping those in
 * the mask `tried`.  NULL when there is none.
 */
static struct upserver *
upstream_pick(struct upstream *up, uint32_t tried)
{
	struct timespec now;
	struct upserver *s;
	size_t i, k;

	upstream_now(&now);
	for (k = 0; k < up->nservers; k++) {
		i = (up->next + k) % up->nservers;
		s = &up->servers[i];
		if ((tried & (UINT32_C(1) << i)) != 0 ||
		    !upserver_usable(s, &now))
			continue;
		up->next = (i + 1) % up->nservers;
		return s;
	}
	return NULL;
}

static size_t
upstream_count_up(const struct upstream *up)
{
	size_t i, n = 0;

	for (i = 0; i < up->nservers; i++)
		n += up->servers[i].healthy != 0;
	return n;
}

/* A failed connection attempt or check on s: why says what failed. */
static void
upserver_failed(struct upserver *s, const char *why)
{
	struct upstream *up = s->up;
	const struct route *r = up->route;
	struct upconn *c, *next;

	s->good = 0;
	if (s->bad < INT_MAX)
		s->bad++;
	/* A lone server without checks stays up: there is nowhere else to
	 * send a request, and trying it gives the device the real reason
	 * (502) rather than a 503 that hides it. */
	if (!up->active && up->nservers == 1) {
		log_debug("route %s: server %s: %s", r->name, s->name, why);
		return;
	}
	upstream_now(&s->retry_at);
	s->retry_at.tv_sec += r->health_interval;
	if (!s->healthy || s->bad < r->health_fall) {
		log_debug("route %s: server %s: %s (%d failures)", r->name,
		    s->name, why, s->bad);
		return;
	}
	s->healthy = 0;
	log_warnx("route %s: server %s down (%s, %d failures)", r->name,
	    s->name, why, s->bad);
	/* Pooled connections to it would be handed out again: close them.
	 * Those in use finish their exchange and are closed on release. */
	for (c = TAILQ_FIRST(&up->idle); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (c->srv == s)
			upconn_free(c);
	}
	if (upstream_count_up(up) == 0)
		log_warnx("route %s: all servers down", r->name);
}

/* A good check (check = 1) or a connection established to s. */
static void
upserver_good(struct upserver *s, int check)
{
	const struct route *r = s->up->route;

	s->bad = 0;
	if (check && s->good < INT_MAX)
		s->good++;
	if (s->healthy)
		return;
	if (s->up->active) {
		/* Only the checks bring a server back (a connection that
		 * was opened before it went down proves little). */
		if (!check || s->good < r->health_rise)
			return;
		s->healthy = 1;
		log_info("route %s: server %s up (%d good checks)", r->name,
		    s->name, s->good);
		return;
	}
	s->healthy = 1;
	s->good = 0;
	log_info("route %s: server %s up (trial connection succeeded)",
	    r->name, s->name);
}

/* ---- connections ---- */

struct upconn *
upstream_get(struct upstream *up)
{
	struct upconn *c;

	/* Most recently used first: the least likely to have timed out.
	 * Connections to a server that went down were closed then; this
	 * loop only guards that rule. */
	while ((c = TAILQ_LAST(&up->idle, upconn_list)) != NULL &&
	    !c->srv->healthy)
		upconn_free(c);
	if (c == NULL)
		return NULL;
	TAILQ_REMOVE(&up->idle, c, entry);
	up->nidle--;
	c->state = UPCONN_ACTIVE;
	c->reused = 1;
	up->reused++;
	up->t->wire_bytes(c->bev, &c->rx0, &c->tx0);
	/* Reading stays enabled: the caller needs it at once, and turning
	 * it off and on again costs two epoll_ctl() calls per request.
	 * Writing was off since upstream_release(); the caller's
	 * bufferevent_set_timeouts() replaces the idle timeout. */
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	return c;
}

/*
 * Starts an attempt of c on server s: (re)arms the timer, then DNS and
 * TCP.  Returns -1 with err set when nothing could be started; the
 * caller counts that as a failed attempt.
 */
static int
upconn_start(struct upconn *c, struct upserver *s, char *err, size_t errlen)
{
	struct upstream *up = c->up;
	const struct route *r = up->route;
	struct timeval tv = { c->check ? r->health_timeout : r->connect_timeout,
	    0 };

	upconn_drop_bev(c);
	c->srv = s;
	c->state = UPCONN_CONNECTING;
	c->tried |= UINT32_C(1) << (size_t)(s - up->servers);
	if (!s->healthy && !c->check) {
		c->trial = 1;
		s->trial = 1;
	}
	if ((c->timer == NULL &&
	    (c->timer = evtimer_new(up->base, upconn_timeout, c)) == NULL) ||
	    evtimer_add(c->timer, &tv) == -1 ||
	    (c->bev = bufferevent_socket_new(up->base, -1, 0)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	bufferevent_setcb(c->bev, NULL, NULL, upconn_tcp_event, c);
	/* Resolved on every new connection: no address is cached. */
	if (bufferevent_socket_connect_hostname(c->bev, up->dns, AF_UNSPEC,
	    s->host, s->port) == -1) {
		snprintf(err, errlen, "connect: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	log_debug("upstream %s: connecting%s", s->name,
	    c->check ? " (health check)" : c->trial ? " (trial)" : "");
	return 0;
}

/*
 * Ends a failed attempt of c: counts it against its server, then starts
 * the next server not yet tried.  Returns 0 when one was started, -1
 * when none is left, with the last reason in err[errlen] (prefixed with
 * the server when the route has several).
 */
static int
upconn_next(struct upconn *c, const char *why, char *err, size_t errlen)
{
	struct upserver *s;
	char reason[UPSTREAM_ERRLEN];

	snprintf(reason, sizeof(reason), "%s", why);
	for (;;) {
		if (c->trial) {
			c->trial = 0;
			c->srv->trial = 0;
		}
		upserver_failed(c->srv, reason);
		if (c->up->nservers > 1)
			snprintf(err, errlen, "%s: %s", c->srv->name, reason);
		else
			snprintf(err, errlen, "%s", reason);
		if ((s = upstream_pick(c->up, c->tried)) == NULL)
			return -1;
		log_debug("upstream %s: %s; trying %s", c->srv->name, reason,
		    s->name);
		if (upconn_start(c, s, reason, sizeof(reason)) == 0)
			return 0;
	}
}

struct upconn *
upstream_connect(struct upstream *up, upstream_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct upserver *s;
	struct upconn *c;
	char why[UPSTREAM_ERRLEN];

	if ((s = upstream_pick(up, 0)) == NULL) {
		snprintf(err, errlen, "all servers down");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->up = up;
	c->cb = cb;
	c->arg = arg;
	up->nopen++;
	if (upconn_start(c, s, why, sizeof(why)) == -1 &&
	    upconn_next(c, why, err, errlen) == -1) {
		upconn_free(c);
		return NULL;
	}
	return c;
}

/*
 * An attempt of c failed (DNS, TCP, handshake, verification, timeout).
 * A check ends; traffic moves on to the next server, or reports the
 * failure to the owner, c being freed before the callback.
 */
static void
upconn_failed(struct upconn *c, const char *why)
{
	upstream_cb cb = c->cb;
	void *arg = c->arg;
	char err[UPSTREAM_ERRLEN];

	if (c->check) {
		upserver_check_done(c->srv, why);
		return;
	}
	log_debug("upstream %s: %s", c->srv->name, why);
	if (upconn_next(c, why, err, sizeof(err)) == 0)
		return;
	upconn_free(c);
	cb(NULL, err, arg);
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
			upconn_failed(c, err);
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
	upconn_failed(c, err);
}

static void
upconn_tls_event(struct bufferevent *bev, short what, void *arg)
{
	struct upconn *c = arg;
	struct upstream *up = c->up;
	const struct route *r = up->route;
	char err[UPSTREAM_ERRLEN];
	uint64_t rx, tx;

	if (!(what & BEV_EVENT_CONNECTED)) {
		/* A certificate that does not verify counts as a failure
		 * too: the server cannot be used until it is fixed. */
		up->t->error(bev, err, sizeof(err));
		upconn_failed(c, err);
		return;
	}
	c->state = UPCONN_ACTIVE;
	if (c->check) {
		/* RFC 9112 §9.6: "close" asks the server to end the
		 * connection after its response; RFC 9110 §7.2: Host is the
		 * route's, as for traffic.  health_timeout keeps running. */
		evbuffer_add_printf(bufferevent_get_output(bev),
		    "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
		    r->health_method, r->health_path, r->host);
		bufferevent_setcb(bev, upserver_check_read, NULL,
		    upserver_check_event, c->srv);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		return;
	}
	event_free(c->timer);
	c->timer = NULL;
	c->resumed = up->t->resumed(bev);
	if (c->resumed)
		up->resumed++;
	else
		up->full++;
	if (c->trial) {
		c->trial = 0;
		c->srv->trial = 0;
	}
	upserver_good(c->srv, 0);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	/* What the handshake alone cost on the wire (the tickets a TLS 1.3
	 * server sends come after it). */
	up->t->wire_bytes(bev, &rx, &tx);
	log_debug("upstream %s: connected (%s, handshake bytes sent=%"
	    PRIu64 " received=%" PRIu64 ")", c->srv->name,
	    c->resumed ? "resumed" : "full handshake", tx, rx);
	c->cb(c, NULL, c->arg);
}

static void
upconn_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *c = arg;
	char why[64];

	(void)fd;
	(void)what;
	if (c->check)
		snprintf(why, sizeof(why), "no response within %d s",
		    c->up->route->health_timeout);
	else
		snprintf(why, sizeof(why), "connect timeout");
	upconn_failed(c, why);
}

/* ---- active health checks ---- */

/* health_interval has passed since the last check of s ended. */
static void
upserver_check_start(evutil_socket_t fd, short what, void *arg)
{
	struct upserver *s = arg;
	struct upconn *c;
	char err[UPSTREAM_ERRLEN];

	(void)fd;
	(void)what;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		upserver_check_done(s, "out of memory");
		return;
	}
	c->up = s->up;
	c->check = 1;
	s->check = c;
	if (upconn_start(c, s, err, sizeof(err)) == -1)
		upserver_check_done(s, err);
}

/*
 * Ends the check of s in progress (if any): closes its connection,
 * counts the result (why NULL: good) and schedules the next one.
 */
static void
upserver_check_done(struct upserver *s, const char *why)
{
	struct timeval tv = { s->up->route->health_interval, 0 };
	char reason[UPSTREAM_ERRLEN];

	/* why may point into the connection's buffers. */
	if (why != NULL)
		snprintf(reason, sizeof(reason), "health check: %s", why);
	if (s->check != NULL) {
		upconn_free(s->check);
		s->check = NULL;
	}
	if (why == NULL)
		upserver_good(s, 1);
	else
		upserver_failed(s, reason);
	/* From the end of this check, so that checks never overlap. */
	if (s->check_timer != NULL)
		evtimer_add(s->check_timer, &tv);
}

/*
 * Parses the check's response head from what bev received: good is a
 * complete head with a final status below 500 (RFC 9110 §15.6: the
 * server failed), whatever follows.  Returns 1 when the check ended
 * (bev is freed then), 0 when more bytes are needed.
 */
static int
upserver_check_parse(struct upserver *s, struct bufferevent *bev)
{
	const struct route *r = s->up->route;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct http1_response resp;
	const char *p;
	char why[64];
	size_t len;
	long n;
	int head = strcmp(r->health_method, "HEAD") == 0;

	for (;;) {
		if ((len = evbuffer_get_length(in)) == 0)
			return 0;
		if (len > UPSTREAM_CHECK_MAX_HEAD)
			len = UPSTREAM_CHECK_MAX_HEAD;
		if ((p = (const char *)evbuffer_pullup(in,
		    (ev_ssize_t)len)) == NULL) {
			upserver_check_done(s, "out of memory");
			return 1;
		}
		n = http1_parse_response(p, len, UPSTREAM_CHECK_MAX_HEAD, head,
		    &resp);
		if (n < 0) {
			upserver_check_done(s, "malformed or oversized "
			    "response head");
			return 1;
		}
		if (n == 0) {
			if (len < UPSTREAM_CHECK_MAX_HEAD)
				return 0;
			upserver_check_done(s, "response head too large");
			return 1;
		}
		/* RFC 9110 §15.2: interim responses precede the final one. */
		if (resp.status >= 200)
			break;
		evbuffer_drain(in, (size_t)n);
	}
	if (resp.status >= 500) {
		snprintf(why, sizeof(why), "status %d", resp.status);
		upserver_check_done(s, why);
		return 1;
	}
	upserver_check_done(s, NULL);
	return 1;
}

static void
upserver_check_read(struct bufferevent *bev, void *arg)
{
	(void)upserver_check_parse(arg, bev);
}

static void
upserver_check_event(struct bufferevent *bev, short what, void *arg)
{
	struct upserver *s = arg;
	char err[UPSTREAM_ERRLEN];

	/* A head that came with the close may not have been read yet. */
	if (upserver_check_parse(s, bev))
		return;
	if (what & BEV_EVENT_EOF) {
		upserver_check_done(s, "connection closed before the response "
		    "head");
		return;
	}
	s->up->t->error(bev, err, sizeof(err));
	upserver_check_done(s, err);
}

/* ---- the pool ---- */

void
upstream_release(struct upconn *c)
{
	struct upstream *up = c->up;
	struct timeval tv = { UPSTREAM_IDLE_TIMEOUT, 0 };

	if (up->nidle >= UPSTREAM_POOL_MAX || !c->srv->healthy ||
	    evbuffer_get_length(bufferevent_get_input(c->bev)) != 0 ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) != 0) {
		upconn_free(c);
		return;
	}
	c->state = UPCONN_IDLE;
	TAILQ_INSERT_TAIL(&up->idle, c, entry);
	up->nidle++;
	/* Watch for the server closing it, and for the idle limit.  The
	 * read watermark stays as the last user set it (the input is
	 * empty, so it suspends nothing), and reading is enabled only when
	 * it was paused: each of these re-adds the read event. */
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, upconn_idle_read, NULL, upconn_idle_event,
	    c);
	bufferevent_set_timeouts(c->bev, &tv, NULL);
	/* Writing stays enabled: with nothing queued it watches nothing,
	 * and enabling it again for the next request would make the
	 * OpenSSL bufferevent watch for writability once for nothing. */
	if (!(bufferevent_get_enabled(c->bev) & EV_READ))
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

int
upstream_send(struct upconn *c, const void *p, size_t len)
{
	if (c->up->t->send != NULL)
		return c->up->t->send(c->bev, p, len);
	return evbuffer_add(bufferevent_get_output(c->bev), p, len);
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
	    c->srv->name);
	upconn_free(c);
}

static void
upconn_idle_event(struct bufferevent *bev, short what, void *arg)
{
	struct upconn *c = arg;

	(void)bev;
	log_debug("upstream %s: idle connection %s", c->srv->name,
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

const char *
upstream_conn_server(const struct upconn *c)
{
	return c->srv->name;
}

size_t
upstream_healthy(const struct upstream *up)
{
	struct timespec now;
	size_t i, n = 0;

	upstream_now(&now);
	for (i = 0; i < up->nservers; i++)
		n += upserver_usable(&up->servers[i], &now);
	return n;
}

size_t
upstream_open(const struct upstream *up)
{
	return up->nopen;
}

size_t
upstream_nservers(const struct upstream *up)
{
	return up->nservers;
}

const char *
upstream_server(const struct upstream *up, size_t i, int *up_now)
{
	if (i >= up->nservers)
		return NULL;
	if (up_now != NULL)
		*up_now = up->servers[i].healthy;
	return up->servers[i].name;
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
