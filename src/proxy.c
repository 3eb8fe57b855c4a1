/*
 * proxy: device sessions, request/response rewriting and body relaying.
 *
 * A session is two halves: se_in, the device's bufferevent, and se_out,
 * the uplink connection of the exchange in progress (taken from the
 * route's pool, or opened for it).  Requests are handled one at a time:
 * the next head is parsed only once the current response is complete, so
 * pipelined requests are answered in order and their bytes simply wait in
 * se_in's input buffer (bounded by its read watermark).
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "config.h"
#include "headers.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "offline.h"
#include "park.h"
#include "proxy.h"
#include "sockread.h"
#include "transport.h"
#include "upstream.h"

/*
 * A request body of at most this many bytes that arrived with its head
 * is sent upstream in the same write as the head (one TLS record instead
 * of two); a larger one, or one still on its way, is streamed after it.
 */
#define PROXY_COALESCE_MAX (8 * 1024)

enum req_state {
	REQ_HEAD,       /* waiting for a request head */
	REQ_WAIT_UP,    /* head parsed, waiting for an uplink connection */
	REQ_BODY,       /* relaying (or discarding) the request body */
	REQ_DONE,       /* request complete */
};

enum resp_state {
	RESP_NONE,      /* nothing asked upstream yet */
	RESP_HEAD,      /* waiting for the (final) response head */
	RESP_BODY,      /* relaying the response body */
	RESP_DONE,      /* response complete */
};

enum timer_mode {
	TIMER_NONE,
	TIMER_HEAD,     /* header_timeout: 408 */
	TIMER_IDLE,     /* idle_timeout between requests: close */
	TIMER_PARK,     /* PROXY_PARK_AFTER_MS between requests: park */
	TIMER_LINGER,   /* PROXY_LINGER after our last byte: close */
};

/*
 * Store-and-forward of one request (a POST on an offline_queue route):
 * its body is read whole before anything goes upstream, so that it can be
 * queued when the upstream cannot take it.
 */
enum session_offline {
	SESSION_OFFLINE_NONE = 0,
	SESSION_OFFLINE_COLLECT,   /* reading the body into obody */
	SESSION_OFFLINE_HELD,      /* body complete: forwarding, may queue */
	SESSION_OFFLINE_DONE,      /* queued, or refused: no second try */
};

struct session {
	struct proxy *px;
	struct config *cfg;             /* reference held */
	struct upstream **ups;          /* the uplinks of cfg's routes */
	TAILQ_ENTRY(session) entry;
	struct bufferevent *se_in;      /* device; writes only */
	struct event *rd;               /* reads the device: dev_sock_read */
	struct evbuffer_cb_entry *rd_cb;        /* dev_input_changed */
	unsigned rd_on:1;               /* reading wanted (dev_rd_enable) */
	unsigned rd_full:1;             /* input at proxy_read_high() */
	int rd_to;                      /* read timeout, seconds, or 0 */
	struct upconn *se_out;          /* uplink of this exchange */
	struct upconn *connecting;      /* uplink being opened */
	struct event *timer;
	enum timer_mode tmode;
	union {                         /* the address it came in on */
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	} listen;
	char client[INET6_ADDRSTRLEN + 8];     /* "ip:port" for the log */
	int closing;                    /* flushing, then lingering */
	int in_to_mode, in_to_secs;     /* last session_in_timeouts() */

	/* The exchange in progress; reset by session_txn_reset(). */
	int active;                     /* bytes of a request were seen */
	struct timespec t0;
	const struct route *route;
	struct upstream *up;
	char method[PROXY_MAX_METHOD];
	char *path;                     /* without the query */
	int minor;
	int keep_alive;
	int head_req;
	int expect;
	enum http1_framing req_framing;
	uint64_t req_left;
	uint64_t req_body;              /* payload bytes read */
	struct http1_chunked req_chunk;
	enum req_state req;
	int discard;                    /* body read and dropped (no route) */
	int offline;                    /* enum session_offline */
	struct evbuffer *obody;         /* the body held for offline_queue */
	struct evbuffer *head_out;      /* rewritten head, kept for a retry;
					   NULL between exchanges */
	int retried;
	int up_bytes;                   /* a response byte came from upstream */
	int up_eof;                     /* the uplink closed */
	enum resp_state resp;
	int status;
	enum http1_framing resp_framing;
	uint64_t resp_left;
	struct http1_chunked resp_chunk;
	int out_chunked;                /* chunk-encode toward the device */
	int up_keep;                    /* uplink reusable after response */
	int resp_started;               /* final response bytes were sent */
	int dev_keep;                   /* device connection stays open */
	uint64_t bytes_in, bytes_out;
	uint64_t wire_rx, wire_tx;   /* TLS bytes of the exchange, uplink */
	const char *tls;
	const char *server;             /* "host:port" of the uplink, or NULL */
	char *err;                      /* why the exchange failed, or NULL */
	int retry_after;                /* seconds for Retry-After, or 0 */

	/* The metrics entry of mroute_of, looked up once per route the
	 * connection uses (metrics_route() is a linear search). */
	const struct route *mroute_of;
	struct metrics_route *mroute;
};

TAILQ_HEAD(session_list, session);

/*
 * A configuration replaced by a reload, kept with its uplinks until the
 * last session that holds it ends: a request in flight finishes on the
 * route, timeouts and connection it started with.
 */
struct proxy_gen {
	struct config *cfg;             /* reference held */
	struct upstream **ups;
	TAILQ_ENTRY(proxy_gen) entry;
};

TAILQ_HEAD(gen_list, proxy_gen);

struct proxy {
	struct event_base *base;
	struct evdns_base *dns;
	struct config *cfg;
	struct upstream **ups;          /* one per cfg->routes[i] */
	struct gen_list retired;        /* older cfg/ups still in use */
	struct session_list sessions;
	size_t nsessions;               /* in `sessions`, not the parked */
	struct parkset *parked;         /* idle device connections */
	struct event *trim;             /* pending malloc_trim after parking */
	uint64_t nrequests;             /* exchanges logged so far */
	int stopping;
	void (*close_cb)(void *);
	void *close_arg;
};

static void session_close(struct session *, const char *);
static void session_free(struct session *, int);
static void session_park(struct session *);
static void session_cut(struct session *, const char *);
static void session_idle_timer(struct session *);
static int proxy_session_start(struct proxy *, evutil_socket_t,
    const struct sockaddr *, socklen_t, const struct sockaddr *, socklen_t,
    int);
static void proxy_unpark(evutil_socket_t, int, int, void *);
static void proxy_trim(evutil_socket_t, short, void *);
static void session_next(struct session *);
static void session_txn_reset(struct session *);
static void session_txn_log(struct session *);
static void session_txn_finish(struct session *);
static void session_timer_set(struct session *, enum timer_mode, int);
static void session_in_timeouts(struct session *, int);
static void session_timer(evutil_socket_t, short, void *);
static void session_flush_close(struct session *);
static void session_linger(struct session *);
static void session_parse_head(struct session *);
static int session_allowed(const struct session *);
static void session_error(struct session *, int, const char *, int);
static void session_start_upstream(struct session *);
static void session_connected(struct upconn *, const char *, void *);
static void session_attach(struct session *, struct upconn *);
static void session_coalesce_body(struct session *);
static void session_pump_request(struct session *);
static void session_request_done(struct session *);
static void session_pump_response(struct session *);
static struct evbuffer *session_dev_stage(struct session *);
static void session_dev_flush(struct session *);
static void session_parse_response(struct session *);
static void session_response_done(struct session *);
static void session_upstream_failed(struct session *, const char *, int);
static void session_release_upstream(struct session *, int);
static void session_offline_check(struct session *,
    const struct http1_request *);
static void session_offline_begin(struct session *);
static void session_offline_collect(struct session *);
static void session_offline_held(struct session *);
static void session_offline_queue(struct session *, const char *);
static int session_offline_fallback(struct session *, int, const char *);
static int session_offline_response(struct session *, int);
static void session_offline_reset(struct session *);
static void dev_read(struct bufferevent *, void *);
static void dev_sock_read(evutil_socket_t, short, void *);
static void dev_input_changed(struct evbuffer *,
    const struct evbuffer_cb_info *, void *);
static void dev_rd_arm(struct session *);
static void dev_rd_enable(struct session *);
static void dev_rd_disable(struct session *);
static void dev_write(struct bufferevent *, void *);
static void dev_event(struct bufferevent *, short, void *);
static void up_read(struct bufferevent *, void *);
static void up_write(struct bufferevent *, void *);
static void up_event(struct bufferevent *, short, void *);
static size_t proxy_read_high(const struct config *);
static struct upstream **proxy_ups_new(struct proxy *, struct config *,
    char *, size_t);
static void proxy_ups_free(struct config *, struct upstream **);
static void proxy_gc(struct proxy *);
static int proxy_has_listen(const struct config *, const struct sockaddr *);
static void session_take_reload(struct session *);
static int out_add(struct session *, const void *, size_t);
static int out_printf(struct session *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- proxy ---- */

/* One uplink per route of cfg; NULL with err set (nothing left over). */
static struct upstream **
proxy_ups_new(struct proxy *px, struct config *cfg, char *err,
    size_t errlen)
{
	struct upstream **ups;
	size_t i;

	if ((ups = calloc(cfg->nroutes, sizeof(*ups))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (i = 0; i < cfg->nroutes; i++) {
		ups[i] = upstream_new(&cfg->routes[i], px->base, px->dns, NULL,
		    err, errlen);
		if (ups[i] == NULL) {
			proxy_ups_free(cfg, ups);
			return NULL;
		}
		if (!cfg->routes[i].verify)
			log_warnx("route %s: verify = no: the upstream "
			    "certificate is NOT checked; anyone on the path "
			    "can read and change the traffic",
			    cfg->routes[i].name);
	}
	return ups;
}

/* Logs the counters of each uplink, then frees them; NULL entries (a
 * partly built array) are skipped. */
static void
proxy_ups_free(struct config *cfg, struct upstream **ups)
{
	unsigned long full, resumed, reused;
	uint64_t rx, tx;
	size_t i;

	for (i = 0; i < cfg->nroutes && ups[i] != NULL; i++) {
		upstream_drain(ups[i]);
		upstream_stats(ups[i], &full, &resumed, &reused);
		upstream_wire_bytes(ups[i], &rx, &tx);
		log_info("route %s: %lu full handshakes, %lu resumed, %lu "
		    "reused connections; uplink bytes rx=%" PRIu64 " tx=%"
		    PRIu64 " (tls=%s)", cfg->routes[i].name, full,
		    resumed, reused, rx, tx, upstream_transport(ups[i]));
	}
	for (i = 0; i < cfg->nroutes; i++)
		upstream_free(ups[i]);
	free(ups);
}

/* Frees the retired generations no session holds any more (the list's
 * own reference is the last one). */
static void
proxy_gc(struct proxy *px)
{
	struct proxy_gen *g, *next;

	for (g = TAILQ_FIRST(&px->retired); g != NULL; g = next) {
		next = TAILQ_NEXT(g, entry);
		if (g->cfg->refcnt > 1)
			continue;
		TAILQ_REMOVE(&px->retired, g, entry);
		proxy_ups_free(g->cfg, g->ups);
		config_unref(g->cfg);
		free(g);
	}
}

struct proxy *
proxy_new(struct event_base *base, struct evdns_base *dns,
    struct config *cfg, char *err, size_t errlen)
{
	struct proxy *px;

	if ((px = calloc(1, sizeof(*px))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	px->base = base;
	px->dns = dns;
	TAILQ_INIT(&px->sessions);
	TAILQ_INIT(&px->retired);
	if ((px->parked = parkset_new(base, proxy_unpark, px)) == NULL ||
	    (px->trim = evtimer_new(base, proxy_trim, px)) == NULL) {
		snprintf(err, errlen, "out of memory");
		parkset_free(px->parked);
		free(px);
		return NULL;
	}
	if ((px->ups = proxy_ups_new(px, cfg, err, errlen)) == NULL) {
		event_free(px->trim);
		parkset_free(px->parked);
		free(px);
		return NULL;
	}
	px->cfg = config_ref(cfg);
	return px;
}

int
proxy_reload(struct proxy *px, struct config *cfg, char *err, size_t errlen)
{
	struct proxy_gen *g;
	struct upstream **ups;
	size_t i;

	if ((g = calloc(1, sizeof(*g))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((ups = proxy_ups_new(px, cfg, err, errlen)) == NULL) {
		free(g);
		return -1;
	}
	/* Idle pooled connections of the old generation would only wait
	 * for sessions that will not ask for them. */
	g->cfg = px->cfg;
	g->ups = px->ups;
	TAILQ_INSERT_TAIL(&px->retired, g, entry);
	for (i = 0; i < g->cfg->nroutes; i++)
		upstream_drain(g->ups[i]);
	px->cfg = config_ref(cfg);
	px->ups = ups;
	proxy_gc(px);
	return 0;
}

void
proxy_free(struct proxy *px)
{
	struct session *s;
	struct proxy_gen *g;

	if (px == NULL)
		return;
	px->close_cb = NULL;
	while ((s = TAILQ_FIRST(&px->sessions)) != NULL)
		session_close(s, "shutdown");
	/* Closes the parked sockets. */
	parkset_free(px->parked);
	event_free(px->trim);
	while ((g = TAILQ_FIRST(&px->retired)) != NULL) {
		TAILQ_REMOVE(&px->retired, g, entry);
		proxy_ups_free(g->cfg, g->ups);
		config_unref(g->cfg);
		free(g);
	}
	proxy_ups_free(px->cfg, px->ups);
	config_unref(px->cfg);
	free(px);
}

void
proxy_counts(const struct proxy *px, struct proxy_counts *c)
{
	const struct session *s;
	const struct proxy_gen *g;
	size_t i;

	memset(c, 0, sizeof(*c));
	c->parked = park_count(px->parked);
	c->sessions = px->nsessions + c->parked;
	c->requests = px->nrequests;
	TAILQ_FOREACH(s, &px->sessions, entry)
		if (s->se_out != NULL || s->connecting != NULL)
			c->upstream_busy++;
	for (i = 0; i < px->cfg->nroutes; i++)
		c->upstream_idle += upstream_idle(px->ups[i]);
	TAILQ_FOREACH(g, &px->retired, entry) {
		c->generations++;
		for (i = 0; i < g->cfg->nroutes; i++)
			c->upstream_idle += upstream_idle(g->ups[i]);
	}
}

void
proxy_set_close_cb(struct proxy *px, void (*cb)(void *), void *arg)
{
	px->close_cb = cb;
	px->close_arg = arg;
}

size_t
proxy_sessions(const struct proxy *px)
{
	return px->nsessions + park_count(px->parked);
}

void
proxy_shutdown(struct proxy *px)
{
	struct session *s, *next;
	size_t i;

	struct proxy_gen *g;

	px->stopping = 1;
	for (s = TAILQ_FIRST(&px->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		/* Between requests: nothing is lost by closing now. */
		if (s->req == REQ_HEAD && !s->active && !s->closing &&
		    evbuffer_get_length(bufferevent_get_input(s->se_in)) == 0)
			session_close(s, NULL);
	}
	park_close_all(px->parked);
	for (i = 0; i < px->cfg->nroutes; i++)
		upstream_drain(px->ups[i]);
	TAILQ_FOREACH(g, &px->retired, entry)
		for (i = 0; i < g->cfg->nroutes; i++)
			upstream_drain(g->ups[i]);
}

/* The device read watermark: a whole head must fit, and a body chunk. */
static size_t
proxy_read_high(const struct config *cfg)
{
	/* max_header_size is at most 1 MiB (config.c), so it fits. */
	return cfg->max_header_size + 1 > PROXY_BUF_HIGH ?
	    (size_t)cfg->max_header_size + 1 : PROXY_BUF_HIGH;
}

int
proxy_accept(struct proxy *px, evutil_socket_t fd,
    const struct sockaddr *peer, socklen_t peerlen,
    const struct sockaddr *listen, socklen_t listenlen)
{
	return proxy_session_start(px, fd, peer, peerlen, listen, listenlen,
	    0);
}

/*
 * A session on socket fd: a new device connection, or (`unparked`) a
 * parked one whose next request is arriving; that one was counted as
 * open when it was accepted and keeps its TCP_NODELAY.
 */
static int
proxy_session_start(struct proxy *px, evutil_socket_t fd,
    const struct sockaddr *peer, socklen_t peerlen,
    const struct sockaddr *listen, socklen_t listenlen, int unparked)
{
	struct session *s;
	char host[INET6_ADDRSTRLEN] = "?";
	int on = 1;
	unsigned port = 0;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warnx("session: out of memory");
		evutil_closesocket(fd);
		if (unparked)
			metrics_device_closed();
		return -1;
	}
	if (peer->sa_family == AF_INET &&
	    peerlen >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const void *)peer;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(s->client, sizeof(s->client), "%s:%u", host, port);
	} else if (peer->sa_family == AF_INET6 &&
	    peerlen >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const void *)peer;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(s->client, sizeof(s->client), "[%s]:%u", host,
		    port);
	} else
		snprintf(s->client, sizeof(s->client), "?");
	if (listenlen > (socklen_t)sizeof(s->listen))
		listenlen = sizeof(s->listen);
	memcpy(&s->listen, listen, listenlen);
	s->px = px;
	s->cfg = config_ref(px->cfg);
	s->ups = px->ups;
	TAILQ_INSERT_TAIL(&px->sessions, s, entry);
	px->nsessions++;
	if (!unparked) {
		metrics_device_opened();
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on,
		    sizeof(on));
	}
	s->se_in = bufferevent_socket_new(px->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->se_in == NULL) {
		evutil_closesocket(fd);
		log_warnx("session %s: out of memory", s->client);
		session_close(s, NULL);
		return -1;
	}
	if ((s->timer = evtimer_new(px->base, session_timer, s)) == NULL) {
		log_warnx("session %s: out of memory", s->client);
		session_close(s, NULL);
		return -1;
	}
	/* The bufferevent writes; we read (dev_sock_read).  Writing is
	 * enabled from the start (libevent's default) and armed when bytes
	 * are queued; enabling it here would arm it on an empty buffer: two
	 * epoll_ctl calls and a wake-up per connection. */
	if ((s->rd = event_new(px->base, fd, EV_READ | EV_PERSIST,
	    dev_sock_read, s)) == NULL || (s->rd_cb = evbuffer_add_cb(
	    bufferevent_get_input(s->se_in), dev_input_changed, s)) == NULL) {
		log_warnx("session %s: out of memory", s->client);
		session_close(s, NULL);
		return -1;
	}
	bufferevent_setcb(s->se_in, dev_read, dev_write, dev_event, s);
	session_in_timeouts(s, 0);
	dev_rd_enable(s);
	log_debug("session %s: %s", s->client, unparked ? "unparked" :
	    "accepted");
	session_txn_reset(s);
	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	/* header_timeout runs from the connection's start (RFC 9112 §9.5
	 * leaves it to us): a device that connects and says nothing gets
	 * 408 like one that is slow to finish its head. */
	session_timer_set(s, TIMER_HEAD, s->cfg->header_timeout);
	return 0;
}

/* ---- pure helpers ---- */

int
proxy_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr,
		    sizeof(x->sin6_addr)) == 0;
	}
	return 0;
}

/*
 * Head rewriting copies its pieces (a dozen or more per head) into a
 * buffer on the stack and hands them to the evbuffer in few large
 * evbuffer_add() calls: each call runs the evbuffer's callbacks (on the
 * device's output, libevent's write scheduling), and the profile showed
 * per-piece adds and printf formatting as the largest user-space cost.
 */
#define PROXY_HBUF_SIZE 2048

struct proxy_hbuf {
	struct evbuffer *out;
	size_t len;
	int err;                        /* an evbuffer_add() failed */
	char buf[PROXY_HBUF_SIZE];
};

static void
hbuf_flush(struct proxy_hbuf *h)
{
	if (h->len > 0 && evbuffer_add(h->out, h->buf, h->len) == -1)
		h->err = 1;
	h->len = 0;
}

static void
hbuf_add(struct proxy_hbuf *h, const void *p, size_t n)
{
	if (n > sizeof(h->buf) - h->len) {
		hbuf_flush(h);
		/* A piece larger than the buffer goes on its own. */
		if (n > sizeof(h->buf)) {
			if (evbuffer_add(h->out, p, n) == -1)
				h->err = 1;
			return;
		}
	}
	memcpy(h->buf + h->len, p, n);
	h->len += n;
}

static void
hbuf_str(struct proxy_hbuf *h, const char *s)
{
	hbuf_add(h, s, strlen(s));
}

/* Decimal digits of v, for Content-Length and the status code. */
static void
hbuf_u64(struct proxy_hbuf *h, uint64_t v, size_t mindigits)
{
	char d[20];                     /* UINT64_MAX has 20 digits */
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 || sizeof(d) - i < mindigits);
	hbuf_add(h, d + i, sizeof(d) - i);
}

/* Ends the head: 0, or -1 when an evbuffer_add() failed. */
static int
hbuf_end(struct proxy_hbuf *h)
{
	hbuf_flush(h);
	return h->err ? -1 : 0;
}

static void
hbuf_init(struct proxy_hbuf *h, struct evbuffer *out)
{
	h->out = out;
	h->len = 0;
	h->err = 0;
}

/*
 * Appends "Name: v1, v2, ..., 1.x tlsgate" (our Via entry for `minor`)
 * or "Name: v1, v2, ..., extra" gathering every field `flag` marks.
 */
static void
proxy_add_list(struct proxy_hbuf *h, const struct http1_header *hs,
    size_t n, unsigned flag, const char *name, const char *extra)
{
	size_t i;

	hbuf_str(h, name);
	hbuf_add(h, ": ", 2);
	for (i = 0; i < n; i++) {
		if (!(hs[i].flags & flag) || hs[i].value.len == 0)
			continue;
		hbuf_add(h, hs[i].value.p, hs[i].value.len);
		hbuf_add(h, ", ", 2);
	}
	hbuf_str(h, extra);
	hbuf_add(h, "\r\n", 2);
}

static void
proxy_add_field(struct proxy_hbuf *h, const struct http1_header *hd)
{
	hbuf_add(h, hd->name.p, hd->name.len);
	hbuf_add(h, ": ", 2);
	hbuf_add(h, hd->value.p, hd->value.len);
	hbuf_add(h, "\r\n", 2);
}

/* RFC 9110 §7.6.3: the protocol received (HTTP/1.0 or 1.1), our name. */
static const char *
proxy_via(int minor)
{
	return minor == 0 ? "1.0 tlsgate" : "1.1 tlsgate";
}

int
proxy_rewrite_request_head(const struct http1_request *req,
    const struct route *r, const char *client_ip, const char *basic,
    struct evbuffer *out)
{
	const unsigned drop = HTTP1_HDR_HOP | HTTP1_HDR_HOST | HTTP1_HDR_CL |
	    HTTP1_HDR_EXPECT | HTTP1_HDR_VIA | HTTP1_HDR_XFF;
	const struct http1_header *h;
	struct proxy_hbuf hb;
	size_t i;
	int rc;

	hbuf_init(&hb, out);
	hbuf_add(&hb, req->method.p, req->method.len);
	hbuf_add(&hb, " ", 1);
	hbuf_add(&hb, req->path.p, req->path.len);
	hbuf_str(&hb, " HTTP/1.1\r\nHost: ");
	hbuf_str(&hb, r->host);
	hbuf_add(&hb, "\r\n", 2);
	for (i = 0; i < req->nheaders; i++) {
		h = &req->headers[i];
		if ((h->flags & drop) || !headers_pass(r, h->name.p,
		    h->name.len))
			continue;
		/* The gateway's credentials replace the device's. */
		if (basic != NULL && http1_str_ieq(h->name, "Authorization"))
			continue;
		/* On a store-and-forward route the queue id is the gateway's
		 * word to the cloud: a device's own would pass for one. */
		if (r->offline_queue && http1_str_ieq(h->name,
		    OFFLINE_ID_HEADER))
			continue;
		proxy_add_field(&hb, h);
	}
	/* RFC 9110 §7.6.3: the protocol we received, then our name.  The
	 * route's rules apply to our own fields too (a site may not want
	 * device addresses to leave the LAN in X-Forwarded-For). */
	if (headers_pass(r, "Via", 3))
		proxy_add_list(&hb, req->headers, req->nheaders,
		    HTTP1_HDR_VIA, "Via", proxy_via(req->minor));
	if (headers_pass(r, "X-Forwarded-For", 15))
		proxy_add_list(&hb, req->headers, req->nheaders,
		    HTTP1_HDR_XFF, "X-Forwarded-For", client_ip);
	/* headers_append() writes to the evbuffer itself. */
	if (hbuf_end(&hb) == -1 || headers_append(r, basic != NULL ?
	    "Authorization" : NULL, out) == -1)
		return -1;
	/* RFC 7617 §2; the value is a secret and is never logged. */
	if (basic != NULL) {
		hbuf_str(&hb, "Authorization: Basic ");
		hbuf_str(&hb, basic);
		hbuf_add(&hb, "\r\n", 2);
	}
	/* Framing is ours (RFC 9112 §6.1: Transfer-Encoding and
	 * Content-Length are per hop); the body is re-encoded to match. */
	if (req->framing == HTTP1_BODY_LENGTH) {
		hbuf_str(&hb, "Content-Length: ");
		hbuf_u64(&hb, req->content_length, 1);
		hbuf_add(&hb, "\r\n", 2);
	} else if (req->framing == HTTP1_BODY_CHUNKED)
		hbuf_str(&hb, "Transfer-Encoding: chunked\r\n");
	hbuf_add(&hb, "\r\n", 2);
	rc = hbuf_end(&hb);
	/* The stack copy of the gateway's credentials. */
	if (basic != NULL)
		OPENSSL_cleanse(hb.buf, sizeof(hb.buf));
	return rc;
}

int
proxy_rewrite_response_head(const struct http1_response *resp,
    unsigned flags, struct evbuffer *out)
{
	unsigned drop = HTTP1_HDR_HOP | HTTP1_HDR_VIA;
	struct proxy_hbuf hb;
	size_t i;

	/* The body is re-framed: its old length no longer applies. */
	if ((flags & PROXY_RESP_CHUNKED) ||
	    resp->framing == HTTP1_BODY_CHUNKED ||
	    resp->framing == HTTP1_BODY_CLOSE)
		drop |= HTTP1_HDR_CL;
	hbuf_init(&hb, out);
	/* RFC 9110 §6.2: we send our own version, HTTP/1.1. */
	hbuf_str(&hb, "HTTP/1.1 ");
	hbuf_u64(&hb, (uint64_t)resp->status, 3);
	hbuf_add(&hb, " ", 1);
	hbuf_add(&hb, resp->reason.p, resp->reason.len);
	hbuf_add(&hb, "\r\n", 2);
	for (i = 0; i < resp->nheaders; i++)
		if (!(resp->headers[i].flags & drop))
			proxy_add_field(&hb, &resp->headers[i]);
	proxy_add_list(&hb, resp->headers, resp->nheaders, HTTP1_HDR_VIA,
	    "Via", proxy_via(resp->minor));
	if (!(flags & PROXY_RESP_INTERIM)) {
		if (flags & PROXY_RESP_CHUNKED)
			hbuf_str(&hb, "Transfer-Encoding: chunked\r\n");
		if (!(flags & PROXY_RESP_KEEP))
			hbuf_str(&hb, "Connection: close\r\n");
		else if (flags & PROXY_RESP_DEV10)
			hbuf_str(&hb, "Connection: keep-alive\r\n");
	}
	hbuf_add(&hb, "\r\n", 2);
	return hbuf_end(&hb);
}

enum metrics_uperr
proxy_uperr_kind(const char *why, int connecting)
{
	static const struct {
		const char *prefix;
		enum metrics_uperr kind;
	} kinds[] = {
		{ "DNS:", METRICS_UPERR_DNS },
		{ "connect timeout", METRICS_UPERR_TIMEOUT },
		{ "connect:", METRICS_UPERR_CONNECT },
		{ "TLS: certificate verify", METRICS_UPERR_VERIFY },
		{ "upstream timeout", METRICS_UPERR_TIMEOUT },
		{ "malformed", METRICS_UPERR_PROTOCOL },
		{ "unexpected 101", METRICS_UPERR_PROTOCOL },
		{ "upstream closed connection", METRICS_UPERR_RESET },
	};
	const char *p = why;
	size_t i;
	int pass;

	/* A route with several servers names the server first. */
	for (pass = 0; pass < 2 && p != NULL; pass++) {
		for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
			if (strncmp(p, kinds[i].prefix,
			    strlen(kinds[i].prefix)) == 0)
				return kinds[i].kind;
		if (strncmp(p, "TLS:", 4) == 0)
			return connecting ? METRICS_UPERR_TLS :
			    METRICS_UPERR_RESET;
		if ((p = strstr(p, ": ")) != NULL)
			p += 2;
	}
	return connecting ? METRICS_UPERR_CONNECT : METRICS_UPERR_RESET;
}

/* Adds the uplink connections of one configuration's routes. */
static void
proxy_collect_ups(const struct config *cfg, struct upstream **ups)
{
	struct metrics_route *mr;
	const char *name;
	size_t i, k;
	int up;

	for (i = 0; i < cfg->nroutes; i++) {
		mr = metrics_route(cfg->routes[i].name);
		metrics_upstream_conns(mr, (int)upstream_open(ups[i]),
		    (int)upstream_idle(ups[i]));
		for (k = 0; (name = upstream_server(ups[i], k, &up)) != NULL;
		    k++)
			metrics_upstream_server(mr, name, up);
	}
}

void
proxy_metrics_collect(void *arg)
{
	const struct proxy *px = arg;
	const struct proxy_gen *g;

	proxy_collect_ups(px->cfg, px->ups);
	TAILQ_FOREACH(g, &px->retired, entry)
		proxy_collect_ups(g->cfg, g->ups);
}

int
proxy_idempotent(const char *method)
{
	static const char *const idem[] = {
		"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE",
	};
	size_t i;

	/* Method names are case-sensitive (RFC 9110 §9.1). */
	for (i = 0; i < sizeof(idem) / sizeof(idem[0]); i++)
		if (strcmp(method, idem[i]) == 0)
			return 1;
	return 0;
}

/* ---- session ---- */

/*
 * Records why the exchange failed; the first reason stays unless
 * `overwrite`.  Kept out of line so that an idle session is small.
 */
static void
session_set_err(struct session *s, const char *why, int overwrite)
{
	char *e;

	if (why == NULL || (s->err != NULL && !overwrite))
		return;
	if ((e = strndup(why, UPSTREAM_ERRLEN - 1)) == NULL)
		return;
	free(s->err);
	s->err = e;
}

/* The device's address without the port, for X-Forwarded-For: "ip:port"
 * or "[ip6]:port" as kept for the log. */
static void
session_client_ip(const struct session *s, char *ip, size_t iplen)
{
	const char *p = s->client, *end;

	if (*p == '[') {
		p++;
		end = strchr(p, ']');
	} else
		end = strrchr(p, ':');
	if (end == NULL)
		end = p + strlen(p);
	snprintf(ip, iplen, "%.*s", (int)(end - p), p);
}

/*
 * The only place that frees a session and its parts.  Logs the exchange
 * in progress, if any; `reason` is what ended it (NULL: nothing to say).
 */
static void
session_close(struct session *s, const char *reason)
{
	struct proxy *px = s->px;
	struct linger rst = { 1, 0 };

	if (s->active) {
		session_set_err(s, reason, 0);
		session_txn_log(s);
	}
	/* RFC 9112 §8: a close-delimited body that is cut short looks
	 * complete to the device after a FIN.  A reset says it is not. */
	if (s->se_in != NULL && s->resp == RESP_BODY && !s->out_chunked &&
	    s->resp_framing != HTTP1_BODY_LENGTH)
		(void)setsockopt(bufferevent_getfd(s->se_in), SOL_SOCKET,
		    SO_LINGER, &rst, sizeof(rst));
	log_debug("session %s: closed%s%s", s->client,
	    reason != NULL ? ": " : "", reason != NULL ? reason : "");
	session_free(s, 0);
	proxy_gc(px);
	if (px->close_cb != NULL)
		px->close_cb(px->close_arg);
}

/*
 * Frees s.  With `parked`, its socket has been handed to the park set and
 * the device connection stays open: it is neither closed nor counted as
 * closed.
 */
static void
session_free(struct session *s, int parked)
{
	struct proxy *px = s->px;

	TAILQ_REMOVE(&px->sessions, s, entry);
	px->nsessions--;
	if (!parked)
		metrics_device_closed();
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->rd != NULL)
		event_free(s->rd);
	if (s->rd_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(s->se_in),
		    s->rd_cb);
	if (s->se_in != NULL)
		bufferevent_free(s->se_in);
	/* Counts the uplink bytes of the exchange cut short. */
	session_release_upstream(s, 0);
	upstream_close(s->connecting);
	if (s->head_out != NULL)
		evbuffer_free(s->head_out);
	session_offline_reset(s);
	free(s->err);
	free(s->path);
	config_unref(s->cfg);
	free(s);
}

static void
session_txn_reset(struct session *s)
{
	s->active = 0;
	s->route = NULL;
	s->up = NULL;
	snprintf(s->method, sizeof(s->method), "-");
	free(s->path);
	s->path = NULL;
	s->minor = 1;
	s->keep_alive = 0;
	s->head_req = 0;
	s->expect = 0;
	s->req_framing = HTTP1_BODY_NONE;
	s->req_left = 0;
	s->req_body = 0;
	s->req = REQ_HEAD;
	s->discard = 0;
	session_offline_reset(s);
	/* An idle keep-alive connection holds as little as possible. */
	if (s->head_out != NULL) {
		evbuffer_free(s->head_out);
		s->head_out = NULL;
	}
	s->retried = 0;
	s->up_bytes = 0;
	s->up_eof = 0;
	s->resp = RESP_NONE;
	s->status = 0;
	s->resp_framing = HTTP1_BODY_NONE;
	s->resp_left = 0;
	s->out_chunked = 0;
	s->up_keep = 0;
	s->resp_started = 0;
	s->dev_keep = 0;
	s->bytes_in = 0;
	s->bytes_out = 0;
	s->tls = "-";
	s->server = NULL;
	s->wire_rx = s->wire_tx = 0;
	free(s->err);
	s->err = NULL;
	s->retry_after = 0;
}

/* The access-log line; the format is a contract with the tests. */
static void
session_txn_log(struct session *s)
{
	struct timespec now;
	char method[PROXY_MAX_METHOD * 4], path[512], err[UPSTREAM_ERRLEN * 4];
	long long ms, us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (long long)(now.tv_sec - s->t0.tv_sec) * 1000000 +
	    (now.tv_nsec - s->t0.tv_nsec) / 1000;
	if (us < 0)
		us = 0;
	ms = us / 1000;
	if (s->route != NULL)
		metrics_request(s->mroute, s->status, (uint64_t)us);
	else
		metrics_request_unrouted(s->status);
	log_escape(method, sizeof(method), s->method, strlen(s->method));
	if (s->path != NULL)
		log_escape(path, sizeof(path), s->path, strlen(s->path));
	else
		snprintf(path, sizeof(path), "-");
	log_escape(err, sizeof(err), s->err != NULL ? s->err : "-",
	    s->err != NULL ? strlen(s->err) : 1);
	/* What the exchange cost on a metered uplink (records, and the
	 * handshake for tls=new|resumed). */
	if (s->se_out != NULL)
		upstream_exchange_bytes(s->se_out, &s->wire_rx, &s->wire_tx);
	log_info("access client=%s route=%s method=%s path=%s status=%d "
	    "bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " duration_ms=%lld "
	    "upstream=%s tls=%s uplink_rx=%" PRIu64 " uplink_tx=%" PRIu64
	    " error=\"%s\"", s->client,
	    s->route != NULL ? s->route->name : "-", method, path, s->status,
	    s->bytes_in, s->bytes_out, ms,
	    s->server != NULL ? s->server : s->up != NULL ?
	    upstream_name(s->up) : "-", s->tls, s->wire_rx,
	    s->wire_tx, err);
	s->active = 0;
	s->px->nrequests++;
}

/* Both directions of the exchange are complete: log, then go on. */
static void
session_txn_finish(struct session *s)
{
	int keep = s->dev_keep && !s->px->stopping;

	session_txn_log(s);
	session_txn_reset(s);
	if (!keep) {
		session_flush_close(s);
		return;
	}
	session_next(s);
}

/* 1 when some route of cfg listens on addr. */
static int
proxy_has_listen(const struct config *cfg, const struct sockaddr *addr)
{
	size_t i;

	for (i = 0; i < cfg->nroutes; i++)
		if (proxy_addr_equal((const struct sockaddr *)
		    &cfg->routes[i].listen_addr, addr))
			return 1;
	return 0;
}

/*
 * After a reload, the next request on a kept connection uses the new
 * configuration, unless its listen address went away: then the connection
 * stays on the old one until the device closes it.  Only between
 * exchanges, when no uplink is attached.
 */
static void
session_take_reload(struct session *s)
{
	struct config *old = s->cfg;

	if (old == s->px->cfg || s->active || s->se_out != NULL ||
	    s->connecting != NULL || !proxy_has_listen(s->px->cfg,
	    (const struct sockaddr *)&s->listen))
		return;
	s->cfg = config_ref(s->px->cfg);
	s->ups = s->px->ups;
	/* A route of the new configuration may live where one of the old
	 * did: look its metrics entry up again. */
	s->mroute_of = NULL;
	s->mroute = NULL;
	config_unref(old);
	proxy_gc(s->px);
}

/* Ready for the next request on a kept connection. */
/*
 * Ends a session whose response was cut short after part of it went to
 * the device.  Only closing can tell the device that it is incomplete.
 * When the framing it got shows the cut (a Content-Length, or our chunking
 * without its last chunk), the bytes already relayed are flushed first and
 * a FIN follows, so a slow device still gets all of them; a
 * close-delimited body needs the reset of session_close().
 */
static void
session_cut(struct session *s, const char *why)
{
	if (s->resp != RESP_BODY || (!s->out_chunked &&
	    s->resp_framing != HTTP1_BODY_LENGTH)) {
		session_close(s, why);
		return;
	}
	session_set_err(s, why, 0);
	session_release_upstream(s, 0);
	upstream_close(s->connecting);
	s->connecting = NULL;
	session_timer_set(s, TIMER_NONE, 0);
	s->dev_keep = 0;
	session_txn_finish(s);
}

/* Between requests: the idle timeout, preceded by parking when it is
 * longer than PROXY_PARK_AFTER_MS. */
static void
session_idle_timer(struct session *s)
{
	if ((long)s->cfg->idle_timeout * 1000 > PROXY_PARK_AFTER_MS &&
	    !s->px->stopping)
		session_timer_set(s, TIMER_PARK, 0);
	else
		session_timer_set(s, TIMER_IDLE, s->cfg->idle_timeout);
}

/*
 * Parks an idle session: its socket goes to the park set with the rest of
 * the idle timeout, and the session is freed.  Anything in flight or
 * buffered keeps the session as it is.
 */
static void
session_park(struct session *s)
{
	struct proxy *px = s->px;
	struct timeval tv = { PROXY_TRIM_MS / 1000,
	    PROXY_TRIM_MS % 1000 * 1000 };
	evutil_socket_t fd = bufferevent_getfd(s->se_in);
	long left = ((long)s->cfg->idle_timeout * 1000 - PROXY_PARK_AFTER_MS +
	    999) / 1000;

	if (left < 1)
		left = 1;
	if (s->active || s->closing || s->req != REQ_HEAD ||
	    s->se_out != NULL || s->connecting != NULL || fd < 0 ||
	    evbuffer_get_length(bufferevent_get_input(s->se_in)) != 0 ||
	    evbuffer_get_length(bufferevent_get_output(s->se_in)) != 0) {
		session_timer_set(s, TIMER_IDLE, (int)left);
		return;
	}
	/* The bufferevent lets go of the socket (and will not close it);
	 * session_free() deletes our read event. */
	if (bufferevent_setfd(s->se_in, -1) == -1) {
		session_timer_set(s, TIMER_IDLE, (int)left);
		return;
	}
	if (park_add(px->parked, fd, (int)left) == -1) {
		log_warnx("session %s: cannot park: out of memory", s->client);
		(void)bufferevent_setfd(s->se_in, fd);
		session_timer_set(s, TIMER_IDLE, (int)left);
		return;
	}
	log_debug("session %s: parked", s->client);
	session_free(s, 1);
	proxy_gc(px);
	if (!evtimer_pending(px->trim, NULL))
		evtimer_add(px->trim, &tv);
}

/*
 * The configured listen address that a connection whose local end is
 * `local` came in on: the same address, or the wildcard of its family
 * and port (the configuration never has both).  NULL when the
 * configuration has neither (a reload removed it).
 */
static const struct route *
proxy_listen_for(const struct config *cfg, const struct sockaddr *local)
{
	const struct route *r;
	size_t i;

	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		if (proxy_addr_equal((const struct sockaddr *)&r->listen_addr,
		    local))
			return r;
	}
	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		if (r->listen_addr.ss_family != local->sa_family)
			continue;
		if (local->sa_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)
			    &r->listen_addr, *b = (const void *)local;

			if (a->sin_port == b->sin_port &&
			    a->sin_addr.s_addr == htonl(INADDR_ANY))
				return r;
		} else if (local->sa_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const void *)
			    &r->listen_addr, *b = (const void *)local;

			if (a->sin6_port == b->sin6_port &&
			    IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
				return r;
		}
	}
	return NULL;
}

/* A parked socket is readable (the next request, or EOF), timed out, or
 * is closed by a shutdown. */
static void
proxy_unpark(evutil_socket_t fd, int readable, int closing, void *arg)
{
	struct proxy *px = arg;
	struct sockaddr_storage peer, local;
	socklen_t peerlen = sizeof(peer), locallen = sizeof(local);
	const struct route *r = NULL;
	const char *why = closing ? "shutdown" : "idle timeout";

	if (readable && !px->stopping) {
		why = "gone";
		if (getpeername(fd, (struct sockaddr *)&peer, &peerlen) == 0 &&
		    getsockname(fd, (struct sockaddr *)&local,
		    &locallen) == 0) {
			why = "its listen address was removed by a reload";
			r = proxy_listen_for(px->cfg,
			    (const struct sockaddr *)&local);
		}
		if (r != NULL) {
			(void)proxy_session_start(px, fd,
			    (const struct sockaddr *)&peer, peerlen,
			    (const struct sockaddr *)&r->listen_addr,
			    r->listen_addrlen, 1);
			return;
		}
	}
	log_debug("parked connection closed: %s", why);
	evutil_closesocket(fd);
	metrics_device_closed();
	if (px->close_cb != NULL)
		px->close_cb(px->close_arg);
}

/* Gives the memory freed by parking back to the kernel. */
static void
proxy_trim(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	(void)malloc_trim(0);
}

static void
session_next(struct session *s)
{
	session_take_reload(s);
	session_in_timeouts(s, 0);
	dev_rd_enable(s);
	if (evbuffer_get_length(bufferevent_get_input(s->se_in)) == 0) {
		session_idle_timer(s);
		return;
	}
	/* Pipelined bytes wait in the buffer.  Parse them from the event
	 * loop rather than recursively, so that a long pipeline cannot
	 * deepen the stack. */
	session_timer_set(s, TIMER_HEAD, s->cfg->header_timeout);
	clock_gettime(CLOCK_MONOTONIC, &s->t0);
	bufferevent_trigger(s->se_in, EV_READ,
	    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/*
 * Inactivity limits on the device connection, both idle_timeout: writing
 * (a device that stops reading our output; libevent only counts while
 * output is pending), and reading while `body` (a device that stops
 * sending the body it announced).  The head has header_timeout instead.
 */
static void
session_in_timeouts(struct session *s, int body)
{
	struct timeval tv = { s->cfg->idle_timeout, 0 };

	/* Each call re-adds the events (timer queue work) and it comes up
	 * several times per request: only a change is passed on.  Activity
	 * restarts a running timeout anyway (the events are persistent). */
	if (s->in_to_mode == body + 1 && s->in_to_secs == s->cfg->idle_timeout)
		return;
	s->in_to_mode = body + 1;
	s->in_to_secs = s->cfg->idle_timeout;
	bufferevent_set_timeouts(s->se_in, NULL, &tv);
	s->rd_to = body ? s->cfg->idle_timeout : 0;
	if (s->rd_to != 0)
		dev_rd_arm(s);
	else if (s->rd != NULL)
		(void)event_remove_timer(s->rd);
}

static void
session_timer_set(struct session *s, enum timer_mode mode, int seconds)
{
	struct timeval tv = { seconds, 0 };

	/* The one timer shorter than a second. */
	if (mode == TIMER_PARK) {
		tv.tv_sec = PROXY_PARK_AFTER_MS / 1000;
		tv.tv_usec = PROXY_PARK_AFTER_MS % 1000 * 1000;
	}

	s->tmode = mode;
	if (mode == TIMER_NONE)
		evtimer_del(s->timer);
	else
		evtimer_add(s->timer, &tv);
}

static void
session_timer(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	switch (s->tmode) {
	case TIMER_HEAD:
		s->active = 1;
		s->bytes_in = evbuffer_get_length(
		    bufferevent_get_input(s->se_in));
		session_error(s, 408, NULL, 1);
		break;
	case TIMER_IDLE:
		session_close(s, NULL);
		break;
	case TIMER_PARK:
		session_park(s);
		break;
	case TIMER_LINGER:
		session_close(s, NULL);
		break;
	case TIMER_NONE:
		break;
	}
}

/*
 * Ends the device connection once what we wrote has left: then half-close
 * and keep reading (and dropping) for PROXY_LINGER seconds, so that bytes
 * the device is still sending do not make the kernel reset the
 * connection before the device has read our answer.
 */
static void
session_flush_close(struct session *s)
{
	s->closing = 1;
	session_release_upstream(s, 0);
	upstream_close(s->connecting);
	s->connecting = NULL;
	session_timer_set(s, TIMER_LINGER, PROXY_LINGER + s->cfg->idle_timeout);
	bufferevent_setwatermark(s->se_in, EV_WRITE, 0, 0);
	if (evbuffer_get_length(bufferevent_get_output(s->se_in)) == 0)
		session_linger(s);
}

static void
session_linger(struct session *s)
{
	(void)shutdown(bufferevent_getfd(s->se_in), SHUT_WR);
	session_in_timeouts(s, 0);
	dev_rd_enable(s);
	evbuffer_drain(bufferevent_get_input(s->se_in),
	    evbuffer_get_length(bufferevent_get_input(s->se_in)));
	session_timer_set(s, TIMER_LINGER, PROXY_LINGER);
}

/* Adds to the device's output, counted for the access log. */
static int
out_add(struct session *s, const void *p, size_t len)
{
	s->bytes_out += len;
	return evbuffer_add(bufferevent_get_output(s->se_in), p, len);
}

static int
out_printf(struct session *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = evbuffer_add_vprintf(bufferevent_get_output(s->se_in), fmt, ap);
	va_end(ap);
	if (n > 0)
		s->bytes_out += (uint64_t)n;
	return n < 0 ? -1 : 0;
}

/*
 * Answers the request ourselves.  `close_conn`: the stream cannot go on
 * (unparsed or unread bytes), so the answer says Connection: close.
 */
static void
session_error(struct session *s, int status, const char *why,
    int close_conn)
{
	char body[UPSTREAM_ERRLEN + 64];
	int n;

	if (session_offline_fallback(s, status, why))
		return;
	session_set_err(s, why, 0);
	if (s->resp_started) {
		/* Part of a response went out: only closing can tell the
		 * device that it is incomplete. */
		session_cut(s, why);
		return;
	}
	session_timer_set(s, TIMER_NONE, 0);
	s->status = status;
	s->resp_started = 1;
	s->resp = RESP_DONE;
	/* The uplink exchange is incomplete: never pool it. */
	session_release_upstream(s, 0);
	upstream_close(s->connecting);
	s->connecting = NULL;
	if (!s->keep_alive || s->px->stopping ||
	    (s->req != REQ_DONE && !s->discard))
		close_conn = 1;
	s->dev_keep = !close_conn;
	if (why != NULL)
		n = snprintf(body, sizeof(body), "%d %s: %s\n", status,
		    http1_reason(status), why);
	else
		n = snprintf(body, sizeof(body), "%d %s\n", status,
		    http1_reason(status));
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(body)) {
		n = sizeof(body) - 1;
		body[n - 1] = '\n';
	}
	out_printf(s, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
	    "Content-Length: %d\r\n%s", status, http1_reason(status), n,
	    close_conn ? "Connection: close\r\n" :
	    (s->minor == 0 ? "Connection: keep-alive\r\n" : ""));
	/* RFC 9110 §10.2.3: when a 503 is expected to end. */
	if (s->retry_after > 0)
		out_printf(s, "Retry-After: %d\r\n", s->retry_after);
	out_add(s, "\r\n", 2);
	if (!s->head_req)
		out_add(s, body, (size_t)n);
	if (close_conn) {
		if (s->req == REQ_BODY)
			s->req = REQ_DONE;
		session_txn_finish(s);
		return;
	}
	/* A body being skipped (no route): finish when it is read. */
	if (s->req == REQ_DONE)
		session_txn_finish(s);
	else
		session_pump_request(s);
}

/*
 * Detaches the uplink connection: back to the pool when `reuse` says the
 * exchange was complete, closed otherwise.
 */
static void
session_release_upstream(struct session *s, int reuse)
{
	if (s->se_out == NULL)
		return;
	upstream_exchange_bytes(s->se_out, &s->wire_rx, &s->wire_tx);
	metrics_uplink_bytes(s->mroute, s->wire_rx, s->wire_tx);
	bufferevent_setcb(upstream_bev(s->se_out), NULL, NULL, NULL, NULL);
	if (reuse && !s->px->stopping)
		upstream_release(s->se_out);
	else
		upstream_close(s->se_out);
	s->se_out = NULL;
}

/* 1 when s->route's `allow` list admits the device.  The address is
 * asked of the socket only for a route that has a list, so that an idle
 * session does not carry it. */
static int
session_allowed(const struct session *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (s->route->nallow == 0)
		return 1;
	if (getpeername(bufferevent_getfd(s->se_in), (struct sockaddr *)&ss,
	    &len) == -1)
		return 0;
	return config_allowed(s->route, (const struct sockaddr *)&ss);
}

/* headers_credentials() for the request being parsed; the device's
 * address is asked of the socket only for a route that maps devices. */
static int
session_credentials(const struct session *s, const struct http1_request *req,
    char *basic, size_t basiclen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const struct sockaddr *peer = NULL;

	if (s->route->device_credentials_dir != NULL &&
	    getpeername(bufferevent_getfd(s->se_in), (struct sockaddr *)&ss,
	    &len) == 0)
		peer = (const struct sockaddr *)&ss;
	return headers_credentials(s->route, req, peer, basic, basiclen);
}

static void
session_parse_head(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->se_in);
	struct http1_request req;
	char ip[INET6_ADDRSTRLEN], basic[HEADERS_MAX_BASIC];
	size_t len, n, max;
	const char *p, *q;
	long rc;
	int auth;

	if ((len = evbuffer_get_length(in)) == 0)
		return;
	session_take_reload(s);
	max = (size_t)s->cfg->max_header_size;
	if (s->tmode != TIMER_HEAD) {
		/* The first byte of a new request: idle_timeout no longer
		 * applies, header_timeout does. */
		session_timer_set(s, TIMER_HEAD, s->cfg->header_timeout);
		clock_gettime(CLOCK_MONOTONIC, &s->t0);
	}
	n = len > max + 1 ? max + 1 : len;
	if ((p = (const char *)evbuffer_pullup(in, (ssize_t)n)) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	rc = http1_parse_request(p, n, max, &req);
	if (rc == 0 && n > max)
		rc = -431;
	if (rc == 0)
		return;
	s->active = 1;
	if (rc < 0) {
		s->bytes_in = n;
		session_error(s, (int)-rc, NULL, 1);
		return;
	}
	session_timer_set(s, TIMER_NONE, 0);
	s->bytes_in = (uint64_t)rc;
	n = req.method.len < sizeof(s->method) ? req.method.len :
	    sizeof(s->method) - 1;
	memcpy(s->method, req.method.p, n);
	s->method[n] = '\0';
	/* The query may carry tokens: it is not logged. */
	q = memchr(req.path.p, '?', req.path.len);
	n = q != NULL ? (size_t)(q - req.path.p) : req.path.len;
	if ((s->path = strndup(req.path.p, n)) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	s->minor = req.minor;
	s->keep_alive = req.keep_alive;
	s->head_req = strcmp(s->method, "HEAD") == 0;
	s->expect = req.expect_continue;
	s->req_framing = req.framing;
	s->req_left = req.content_length;
	http1_chunked_init(&s->req_chunk);
	s->req = req.framing == HTTP1_BODY_NONE ? REQ_DONE : REQ_BODY;

	s->route = config_match(s->cfg, (const struct sockaddr *)&s->listen,
	    sizeof(s->listen), req.host.p, req.host.len, req.path.p, n);
	if (s->route != NULL) {
		s->up = s->ups[s->route - s->cfg->routes];
		if (s->mroute_of != s->route) {
			s->mroute = metrics_route(s->route->name);
			s->mroute_of = s->route;
		}
	} else {
		/* Without a route the body is read and dropped, so that the
		 * connection can go on; unless it is too large or the
		 * device waits for 100 Continue (RFC 9110 §10.1.1). */
		evbuffer_drain(in, (size_t)rc);
		s->discard = 1;
		session_error(s, 404, NULL, s->expect ||
		    (req.framing == HTTP1_BODY_LENGTH &&
		    s->cfg->max_body_size != 0 &&
		    req.content_length > s->cfg->max_body_size));
		return;
	}
	if (!session_allowed(s)) {
		/* The listener let the source in for another route on this
		 * address; this one does not serve it.  Nothing of the body
		 * is read, so the connection cannot go on. */
		evbuffer_drain(in, (size_t)rc);
		session_error(s, 403, "source address not allowed", 1);
		return;
	}
	if (req.framing == HTTP1_BODY_LENGTH && s->cfg->max_body_size != 0 &&
	    req.content_length > s->cfg->max_body_size) {
		/* Refused before a byte of the body is read or sent. */
		evbuffer_drain(in, (size_t)rc);
		session_error(s, 413, NULL, 1);
		return;
	}
	if ((auth = session_credentials(s, &req, basic, sizeof(basic))) ==
	    -1) {
		/* Our own file is broken: not the device's fault, nor the
		 * cloud's.  Nothing of the body is read. */
		evbuffer_drain(in, (size_t)rc);
		session_error(s, 500, "device credentials unusable", 1);
		return;
	}
	session_client_ip(s, ip, sizeof(ip));
	if ((s->head_out == NULL && (s->head_out = evbuffer_new()) == NULL) ||
	    proxy_rewrite_request_head(&req, s->route, ip,
	    auth == HEADERS_AUTH_SET ? basic : NULL, s->head_out) == -1) {
		OPENSSL_cleanse(basic, sizeof(basic));
		session_close(s, "out of memory");
		return;
	}
	OPENSSL_cleanse(basic, sizeof(basic));
	session_offline_check(s, &req);
	/* The slices of `req` point into `in`: drain only now. */
	evbuffer_drain(in, (size_t)rc);
	if (s->offline != SESSION_OFFLINE_NONE) {
		session_offline_begin(s);
		return;
	}
	if (s->req == REQ_BODY)
		s->req = REQ_WAIT_UP;
	session_start_upstream(s);
}

/* Every request, even a device's first, tries the shared pool first. */
static void
session_start_upstream(struct session *s)
{
	struct upconn *c;
	char err[UPSTREAM_ERRLEN];

	if (upstream_healthy(s->up) == 0) {
		/* RFC 9110 §15.6.4: the health checks say when to come
		 * back; nothing is tried meanwhile. */
		s->retry_after = s->route->health_interval;
		session_error(s, 503, "all servers down", 0);
		return;
	}
	if (!s->retried && (c = upstream_get(s->up)) != NULL) {
		session_attach(s, c);
		return;
	}
	s->connecting = upstream_connect(s->up, session_connected, s, err,
	    sizeof(err));
	if (s->connecting == NULL) {
		log_warnx("route %s: %s: %s", s->route->name,
		    upstream_name(s->up), err);
		metrics_upstream_error(s->mroute, proxy_uperr_kind(err, 1));
		session_error(s, 502, err, 0);
	}
}

static void
session_connected(struct upconn *c, const char *err, void *arg)
{
	struct session *s = arg;

	s->connecting = NULL;
	if (c == NULL) {
		log_warnx("route %s: %s: %s", s->route->name,
		    upstream_name(s->up), err);
		session_upstream_failed(s, err, 0);
		return;
	}
	session_attach(s, c);
}

static void
session_attach(struct session *s, struct upconn *c)
{
	struct bufferevent *bev = upstream_bev(c);
	struct timeval ut = { s->route->upstream_timeout, 0 };
	size_t len, high;

	s->se_out = c;
	s->tls = upstream_tls_mode(c);
	s->server = upstream_conn_server(c);
	if (!upstream_reused(c))
		metrics_handshake(s->mroute, strcmp(s->tls, "resumed") == 0);
	bufferevent_setcb(bev, up_read, up_write, up_event, s);
	/* A pooled connection usually has this watermark already, and
	 * setting it re-adds the read event. */
	if (bufferevent_getwatermark(bev, EV_READ, NULL, &high) == -1 ||
	    high != proxy_read_high(s->cfg))
		bufferevent_setwatermark(bev, EV_READ, 0,
		    proxy_read_high(s->cfg));
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	/* Each enable re-adds the event (and the OpenSSL bufferevent
	 * watches for writability even with nothing to write). */
	if ((bufferevent_get_enabled(bev) & (EV_READ | EV_WRITE)) !=
	    (EV_READ | EV_WRITE))
		bufferevent_enable(bev, EV_READ | EV_WRITE);
	session_coalesce_body(s);
	len = evbuffer_get_length(s->head_out);
	/* A copy: the head is kept until the first response byte, for a
	 * retry on a fresh connection. */
	if (upstream_send(c, evbuffer_pullup(s->head_out, (ssize_t)len),
	    len) == -1) {
		session_close(s, "out of memory");
		return;
	}
	/* Until the request is sent, only a stalled write is a timeout;
	 * a long upload is not.  A request that session_request_done()
	 * completes below (at once, or in the pump: all its body is here
	 * and the uplink takes it) gets its timeouts there: each setting
	 * re-adds the events. */
	if (s->req != REQ_DONE && !(s->req_framing == HTTP1_BODY_LENGTH &&
	    s->req_left == 0 && evbuffer_get_length(
	    bufferevent_get_output(bev)) < PROXY_BUF_HIGH))
		bufferevent_set_timeouts(bev, NULL, &ut);
	s->resp = RESP_HEAD;
	if (s->req == REQ_DONE) {
		session_request_done(s);
		return;
	}
	if (s->req == REQ_WAIT_UP) {
		s->req = REQ_BODY;
		/* RFC 9110 §10.1.1: we are ready for the body; the Expect
		 * itself was not forwarded. */
		if (s->expect)
			out_printf(s, "HTTP/1.1 100 Continue\r\n\r\n");
	}
	session_pump_request(s);
}

/*
 * A small Content-Length body that has already arrived (a device usually
 * sends head and body in one packet) is appended to the rewritten head,
 * so that a single buffer write carries the whole request: one TLS record
 * and one write() instead of two of each (a transport seals or writes
 * each piece added to its output separately).  Only a body that cannot
 * be retried is joined: retries are for requests without one.
 */
static void
session_coalesce_body(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->se_in);
	size_t n = evbuffer_get_length(in);
	unsigned char *p;

	if (s->req != REQ_WAIT_UP || s->req_framing != HTTP1_BODY_LENGTH ||
	    s->discard)
		return;
	if (n > s->req_left)
		n = (size_t)s->req_left;
	if (n == 0 || n > PROXY_COALESCE_MAX)
		return;
	/* On failure the body simply goes the usual way. */
	if ((p = evbuffer_pullup(in, (ssize_t)n)) == NULL ||
	    evbuffer_add(s->head_out, p, n) == -1)
		return;
	evbuffer_drain(in, n);
	s->req_left -= n;
	s->req_body += n;
	s->bytes_in += n;
}

/*
 * Moves request body bytes from the device to the uplink (or drops them
 * when s->discard), re-encoding chunked bodies, until the body ends, the
 * input is empty, or the uplink's buffer is full.
 */
static void
session_pump_request(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->se_in);
	struct evbuffer *out = NULL;
	struct evbuffer_iovec v;
	enum http1_chunk_status st;
	size_t n, used, off, dlen;
	uint64_t max = s->cfg->max_body_size;

	if (s->offline == SESSION_OFFLINE_COLLECT) {
		session_offline_collect(s);
		return;
	}
	if (!s->discard) {
		if (s->se_out == NULL)
			return;
		out = bufferevent_get_output(upstream_bev(s->se_out));
	}
	while (s->req == REQ_BODY) {
		if (out != NULL && evbuffer_get_length(out) >= PROXY_BUF_HIGH) {
			/* le-proxy: stop reading until the uplink drains. */
			dev_rd_disable(s);
			bufferevent_setwatermark(upstream_bev(s->se_out),
			    EV_WRITE, PROXY_BUF_HIGH / 2, 0);
			return;
		}
		if (s->req_framing == HTTP1_BODY_LENGTH && s->req_left == 0) {
			/* Content-Length: 0 has nothing to wait for. */
			session_request_done(s);
			continue;
		}
		if ((n = evbuffer_get_length(in)) == 0)
			break;
		if (s->req_framing == HTTP1_BODY_LENGTH) {
			if (n > s->req_left)
				n = (size_t)s->req_left;
			if (out != NULL)
				evbuffer_remove_buffer(in, out, n);
			else
				evbuffer_drain(in, n);
			s->req_left -= n;
			s->req_body += n;
			s->bytes_in += n;
			if (s->req_left == 0)
				session_request_done(s);
			continue;
		}
		/* Chunked: decode from the first contiguous piece. */
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		st = http1_chunked_feed(&s->req_chunk, v.iov_base, v.iov_len,
		    &used, &off, &dlen);
		if (st == HTTP1_CHUNK_ERROR) {
			session_error(s, 400, NULL, 1);
			return;
		}
		if (st == HTTP1_CHUNK_DATA) {
			s->req_body += dlen;
			if (max != 0 && s->req_body > max) {
				/* Counted while streaming: refuse even if part
				 * went upstream (that exchange is dropped). */
				session_error(s, 413, NULL, 1);
				return;
			}
			if (out != NULL && (evbuffer_add_printf(out,
			    "%zx\r\n", dlen) < 0 || evbuffer_add(out,
			    (char *)v.iov_base + off, dlen) == -1 ||
			    evbuffer_add(out, "\r\n", 2) == -1)) {
				session_close(s, "out of memory");
				return;
			}
		}
		evbuffer_drain(in, used);
		s->bytes_in += used;
		if (st == HTTP1_CHUNK_DONE) {
			/* Trailers were checked and dropped by the decoder. */
			if (out != NULL)
				evbuffer_add(out, "0\r\n\r\n", 5);
			session_request_done(s);
		}
	}
	/* Still waiting for body bytes: a device that stops sending them
	 * times out (set here, not when the body was already whole). */
	if (s->req == REQ_BODY)
		session_in_timeouts(s, 1);
}

static void
session_request_done(struct session *s)
{
	struct timeval ut;

	s->req = REQ_DONE;
	session_in_timeouts(s, 0);
	if (s->resp == RESP_DONE) {
		session_txn_finish(s);
		return;
	}
	/* upstream_timeout: from the request being sent until the response
	 * head, and then between response bytes. */
	if (s->se_out != NULL) {
		ut.tv_sec = s->route->upstream_timeout;
		ut.tv_usec = 0;
		bufferevent_set_timeouts(upstream_bev(s->se_out), &ut, &ut);
	}
}

/*
 * An uplink failure.  A reused connection that fails before any response
 * byte may have been closed by the server while idle; the request is sent
 * again on a fresh connection if that is safe: idempotent (RFC 9110
 * §9.2.2) and without a body, which we do not keep.  Otherwise 502 (or
 * 504 for a timeout) when no response byte reached the device yet, and a
 * plain close when one did.
 */
static void
session_upstream_failed(struct session *s, const char *why, int timeout)
{
	int retry, connecting = s->se_out == NULL;

	retry = s->se_out != NULL && upstream_reused(s->se_out) &&
	    !s->retried && !s->up_bytes && !timeout &&
	    s->req_framing == HTTP1_BODY_NONE && s->req == REQ_DONE &&
	    proxy_idempotent(s->method);
	/* A pooled connection the server closed while idle is expected,
	 * and the retry hides it: not a failure. */
	if (!retry)
		metrics_upstream_error(s->mroute, timeout ?
		    METRICS_UPERR_TIMEOUT : proxy_uperr_kind(why, connecting));
	session_release_upstream(s, 0);
	if (retry) {
		log_debug("session %s: reused connection failed (%s), "
		    "retrying on a new one", s->client, why);
		s->retried = 1;
		s->up_eof = 0;
		s->resp = RESP_NONE;
		session_start_upstream(s);
		return;
	}
	session_set_err(s, why, 1);
	session_error(s, timeout ? 504 : 502, why, 0);
}

static void
session_parse_response(struct session *s)
{
	struct bufferevent *bev = upstream_bev(s->se_out);
	struct evbuffer *in = bufferevent_get_input(bev), *out;
	struct http1_response resp;
	size_t len, n, max = (size_t)s->cfg->max_header_size;
	const char *p;
	unsigned flags;
	long rc;

	while (s->resp == RESP_HEAD) {
		if ((len = evbuffer_get_length(in)) == 0)
			return;
		n = len > max + 1 ? max + 1 : len;
		if ((p = (const char *)evbuffer_pullup(in, (ssize_t)n)) ==
		    NULL) {
			session_close(s, "out of memory");
			return;
		}
		rc = http1_parse_response(p, n, max, s->head_req, &resp);
		if (rc == 0 && n > max)
			rc = -502;
		if (rc == 0)
			return;
		if (rc < 0) {
			log_warnx("route %s: malformed response from %s",
			    s->route->name, upstream_name(s->up));
			metrics_upstream_error(s->mroute,
			    METRICS_UPERR_PROTOCOL);
			session_release_upstream(s, 0);
			session_error(s, 502, "malformed response", 0);
			return;
		}
		if (resp.status < 200) {
			if (resp.status == 101) {
				/* We never forward Upgrade. */
				metrics_upstream_error(s->mroute,
				    METRICS_UPERR_PROTOCOL);
				session_release_upstream(s, 0);
				session_error(s, 502, "unexpected 101", 0);
				return;
			}
			/* 100 answers an Expect we handled ourselves; other
			 * interim responses only make sense to 1.1 devices
			 * (RFC 9110 §15.2). */
			if (resp.status != 100 && s->minor == 1) {
				size_t before = evbuffer_get_length(
				    bufferevent_get_output(s->se_in));

				proxy_rewrite_response_head(&resp,
				    PROXY_RESP_INTERIM,
				    bufferevent_get_output(s->se_in));
				s->bytes_out += evbuffer_get_length(
				    bufferevent_get_output(s->se_in)) - before;
			}
			evbuffer_drain(in, (size_t)rc);
			continue;
		}
		if (session_offline_response(s, resp.status))
			return;
		s->status = resp.status;
		s->resp_framing = resp.framing;
		s->resp_left = resp.content_length;
		http1_chunked_init(&s->resp_chunk);
		s->out_chunked = s->minor == 1 &&
		    (resp.framing == HTTP1_BODY_CHUNKED ||
		    resp.framing == HTTP1_BODY_CLOSE);
		/* A 1.0 device cannot take chunked: the body ends with the
		 * connection instead (RFC 9112 §7.1: HTTP/1.1 only). */
		s->dev_keep = s->keep_alive && !s->px->stopping &&
		    s->req == REQ_DONE && (s->minor == 1 ||
		    resp.framing == HTTP1_BODY_LENGTH ||
		    resp.framing == HTTP1_BODY_NONE);
		s->up_keep = resp.keep_alive &&
		    resp.framing != HTTP1_BODY_CLOSE;
		flags = (s->out_chunked ? PROXY_RESP_CHUNKED : 0) |
		    (s->dev_keep ? PROXY_RESP_KEEP : 0) |
		    (s->minor == 0 ? PROXY_RESP_DEV10 : 0);
		/* The request head is no longer needed for a retry. */
		if (s->head_out != NULL)
			evbuffer_drain(s->head_out,
			    evbuffer_get_length(s->head_out));
		out = session_dev_stage(s);
		len = evbuffer_get_length(out);
		if (proxy_rewrite_response_head(&resp, flags, out) == -1) {
			session_close(s, "out of memory");
			return;
		}
		s->bytes_out += evbuffer_get_length(out) - len;
		evbuffer_drain(in, (size_t)rc);
		s->resp_started = 1;
		s->resp = RESP_BODY;
		if (resp.framing == HTTP1_BODY_NONE ||
		    (resp.framing == HTTP1_BODY_LENGTH && s->resp_left == 0)) {
			session_response_done(s);
			return;
		}
	}
	session_pump_response(s);
}

/*
 * The response for the device is staged in head_out (free once the
 * response head arrived) and handed over by session_dev_flush() before
 * each return to the event loop.  Adding to the device's output makes
 * libevent schedule a write: epoll_ctl() to watch for writability, an
 * epoll_wait() round, epoll_ctl() to stop; a response that finds nothing
 * queued is written at once instead.
 */
static struct evbuffer *
session_dev_stage(struct session *s)
{
	if (s->head_out != NULL)
		return s->head_out;
	return bufferevent_get_output(s->se_in);
}

/* Moves what session_dev_stage() holds to the device. */
static void
session_dev_flush(struct session *s)
{
	struct evbuffer *dev = bufferevent_get_output(s->se_in);
	struct evbuffer *st = s->head_out;

	if (st == NULL || evbuffer_get_length(st) == 0)
		return;
	/* What the socket does not take now goes the usual way, and so
	 * does an error, which libevent's own write then reports. */
	if (evbuffer_get_length(dev) == 0)
		(void)evbuffer_write(st, bufferevent_getfd(s->se_in));
	if (evbuffer_add_buffer(dev, st) == -1)
		evbuffer_drain(st, evbuffer_get_length(st));
}

/* Appends "<size in hex>\r\n" (RFC 9112 §7.1); returns its length. */
static size_t
proxy_add_chunk_size(struct evbuffer *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char d[sizeof(size_t) * 2 + 2];
	size_t i = sizeof(d) - 2;

	d[sizeof(d) - 2] = '\r';
	d[sizeof(d) - 1] = '\n';
	do {
		d[--i] = hex[n & 0xf];
		n >>= 4;
	} while (n != 0);
	(void)evbuffer_add(out, d + i, sizeof(d) - i);
	return sizeof(d) - i;
}

/* Moves response body bytes to the device, with the device's framing. */
static void
session_pump_response(struct session *s)
{
	struct bufferevent *bev;
	struct evbuffer *in, *out, *dev = bufferevent_get_output(s->se_in);
	struct evbuffer_iovec v;
	enum http1_chunk_status st;
	size_t n, used, off, dlen;

	if (s->se_out == NULL)
		return;
	bev = upstream_bev(s->se_out);
	in = bufferevent_get_input(bev);
	out = session_dev_stage(s);
	while (s->resp == RESP_BODY) {
		if (evbuffer_get_length(dev) + (out != dev ?
		    evbuffer_get_length(out) : 0) >= PROXY_BUF_HIGH) {
			session_dev_flush(s);
			bufferevent_disable(bev, EV_READ);
			bufferevent_setwatermark(s->se_in, EV_WRITE,
			    PROXY_BUF_HIGH / 2, 0);
			return;
		}
		if ((n = evbuffer_get_length(in)) == 0) {
			/* What this pump staged goes first, whatever
			 * follows (session_cut() keeps the device's output). */
			session_dev_flush(s);
			if (!s->up_eof)
				return;
			/* RFC 9112 §6.3 (8): the close ends this body; any
			 * other body is truncated, and the device must not
			 * take it as complete: no final chunk, a close. */
			if (s->resp_framing == HTTP1_BODY_CLOSE) {
				session_response_done(s);
				return;
			}
			log_warnx("route %s: %s: upstream closed connection "
			    "during the response", s->route->name,
			    upstream_name(s->up));
			metrics_upstream_error(s->mroute, METRICS_UPERR_RESET);
			session_set_err(s, "upstream closed connection", 1);
			session_cut(s, "upstream closed connection");
			return;
		}
		switch (s->resp_framing) {
		case HTTP1_BODY_LENGTH:
			if (n > s->resp_left)
				n = (size_t)s->resp_left;
			s->bytes_out += n;
			evbuffer_remove_buffer(in, out, n);
			s->resp_left -= n;
			if (s->resp_left == 0) {
				session_response_done(s);
				return;
			}
			break;
		case HTTP1_BODY_CLOSE:
			if (s->out_chunked)
				s->bytes_out += proxy_add_chunk_size(out, n);
			s->bytes_out += n;
			evbuffer_remove_buffer(in, out, n);
			if (s->out_chunked) {
				s->bytes_out += 2;
				evbuffer_add(out, "\r\n", 2);
			}
			break;
		case HTTP1_BODY_CHUNKED:
			if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
				session_dev_flush(s);
				return;
			}
			st = http1_chunked_feed(&s->resp_chunk, v.iov_base,
			    v.iov_len, &used, &off, &dlen);
			if (st == HTTP1_CHUNK_ERROR) {
				/* The device must not see an end: close. */
				metrics_upstream_error(s->mroute,
				    METRICS_UPERR_PROTOCOL);
				session_close(s, "malformed chunked response");
				return;
			}
			if (st == HTTP1_CHUNK_DATA) {
				if (s->out_chunked)
					s->bytes_out += proxy_add_chunk_size(
					    out, dlen);
				s->bytes_out += dlen;
				evbuffer_add(out, (char *)v.iov_base + off,
				    dlen);
				if (s->out_chunked) {
					s->bytes_out += 2;
					evbuffer_add(out, "\r\n", 2);
				}
			}
			evbuffer_drain(in, used);
			if (st == HTTP1_CHUNK_DONE) {
				session_response_done(s);
				return;
			}
			break;
		case HTTP1_BODY_NONE:
			session_response_done(s);
			return;
		}
	}
	session_dev_flush(s);
}

static void
session_response_done(struct session *s)
{
	if (s->out_chunked) {
		s->bytes_out += 5;
		evbuffer_add(session_dev_stage(s), "0\r\n\r\n", 5);
	}
	/* Before the exchange ends: the stage goes with it. */
	session_dev_flush(s);
	s->resp = RESP_DONE;
	/* Reusable only after a complete exchange on both sides. */
	session_release_upstream(s, s->up_keep && s->req == REQ_DONE);
	if (s->req != REQ_DONE) {
		/* The server answered before the request body ended; the
		 * rest of it cannot be delimited any more. */
		s->dev_keep = 0;
		s->req = REQ_DONE;
	}
	session_txn_finish(s);
}

/* ---- store-and-forward (offline_queue) ---- */

/* Marks a request the offline queue may take (offline_eligible()); only
 * while the slices of `req` are valid. */
static void
session_offline_check(struct session *s, const struct http1_request *req)
{
	if (s->route->offline_queue && offline_enabled(s->route) &&
	    offline_eligible(s->route, req->method.p, req->method.len,
	    req->path.p, req->path.len, req->framing, req->content_length,
	    s->cfg->max_body_size))
		s->offline = SESSION_OFFLINE_COLLECT;
}

/* Starts reading the held body; nothing goes upstream meanwhile. */
static void
session_offline_begin(struct session *s)
{
	if ((s->obody = evbuffer_new()) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	/* RFC 9110 §10.1.1: the body is ours to read now, whatever the
	 * upstream will say; the Expect itself is not forwarded. */
	if (s->expect)
		out_printf(s, "HTTP/1.1 100 Continue\r\n\r\n");
	session_pump_request(s);
}

/*
 * Reads the body into obody, up to offline_max_body(): a larger chunked
 * body gets 413 (one with a larger Content-Length is not held at all).
 */
static void
session_offline_collect(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->se_in);
	struct evbuffer_iovec v;
	enum http1_chunk_status st;
	size_t n, used, off, dlen;
	uint64_t max = offline_max_body(s->cfg->max_body_size);

	session_in_timeouts(s, 1);
	while (s->req == REQ_BODY) {
		if (s->req_framing == HTTP1_BODY_LENGTH) {
			if (s->req_left == 0) {
				session_offline_held(s);
				return;
			}
			if ((n = evbuffer_get_length(in)) == 0)
				return;
			if (n > s->req_left)
				n = (size_t)s->req_left;
			if (evbuffer_remove_buffer(in, s->obody, n) != (int)n) {
				session_close(s, "out of memory");
				return;
			}
			s->req_left -= n;
			s->req_body += n;
			s->bytes_in += n;
			continue;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		st = http1_chunked_feed(&s->req_chunk, v.iov_base, v.iov_len,
		    &used, &off, &dlen);
		if (st == HTTP1_CHUNK_ERROR) {
			s->offline = SESSION_OFFLINE_DONE;
			session_error(s, 400, NULL, 1);
			return;
		}
		if (st == HTTP1_CHUNK_DATA) {
			s->req_body += dlen;
			if (s->req_body > max) {
				s->offline = SESSION_OFFLINE_DONE;
				session_error(s, 413, NULL, 1);
				return;
			}
			if (evbuffer_add(s->obody, (char *)v.iov_base + off,
			    dlen) == -1) {
				session_close(s, "out of memory");
				return;
			}
		}
		evbuffer_drain(in, used);
		s->bytes_in += used;
		if (st == HTTP1_CHUNK_DONE) {
			session_offline_held(s);
			return;
		}
	}
}

/*
 * The whole body is here.  While entries wait, a new one queues behind
 * them (arrival order); otherwise it goes upstream with its body, and a
 * failure to reach the upstream queues it (session_offline_fallback(),
 * session_offline_response()).
 */
static void
session_offline_held(struct session *s)
{
	size_t len = evbuffer_get_length(s->obody);
	int rc = 0;

	s->req = REQ_DONE;
	s->offline = SESSION_OFFLINE_HELD;
	session_in_timeouts(s, 0);
	if (offline_backlog(s->route)) {
		session_offline_queue(s, "queue not empty");
		return;
	}
	/* The head says how the body is framed; send it the same way. */
	if (s->req_framing == HTTP1_BODY_CHUNKED) {
		if (len > 0)
			rc |= evbuffer_add_printf(s->head_out, "%zx\r\n", len) <
			    0 || evbuffer_add(s->head_out, evbuffer_pullup(
			    s->obody, (ssize_t)len), len) == -1 ||
			    evbuffer_add(s->head_out, "\r\n", 2) == -1;
		rc |= evbuffer_add(s->head_out, "0\r\n\r\n", 5) == -1;
	} else if (len > 0)
		rc |= evbuffer_add(s->head_out, evbuffer_pullup(s->obody,
		    (ssize_t)len), len) == -1;
	if (rc) {
		session_close(s, "out of memory");
		return;
	}
	session_start_upstream(s);
}

/*
 * Queues the held request and answers 202 with its id, or 503 when the
 * spool is full (Retry-After: offline_full_retry_after()) or failed.
 * The spool keeps the head as rewritten for the upstream, minus the
 * request line and the framing, which the sender writes itself.
 */
static void
session_offline_queue(struct session *s, const char *why)
{
	struct spool_entry_in e;
	struct evbuffer_ptr end;
	struct evbuffer *hdrs = NULL;
	const char *h, *p, *eol, *sp1, *sp2;
	char id[SPOOL_ID_SIZE], msg[UPSTREAM_ERRLEN];
	size_t hlen, n;
	int rc = -1, keep;

	s->offline = SESSION_OFFLINE_DONE;
	memset(&e, 0, sizeof(e));
	/* The head ends at the first empty line; the body may follow. */
	end = evbuffer_search(s->head_out, "\r\n\r\n", 4, NULL);
	if (end.pos < 0 || (hdrs = evbuffer_new()) == NULL ||
	    (h = (const char *)evbuffer_pullup(s->head_out,
	    end.pos + 4)) == NULL)
		goto out;
	hlen = (size_t)end.pos + 2;
	/* "METHOD SP path SP HTTP/1.1 CRLF", as we wrote it. */
	if ((eol = memchr(h, '\n', hlen)) == NULL ||
	    (sp1 = memchr(h, ' ', (size_t)(eol - h))) == NULL ||
	    (sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1))) == NULL)
		goto out;
	for (p = eol + 1; p < h + hlen; p += n) {
		eol = memchr(p, '\n', (size_t)(h + hlen - p));
		n = eol != NULL ? (size_t)(eol - p) + 1 : (size_t)(h + hlen - p);
		/* RFC 9112 §6.1: framing is per hop; the sender sets it. */
		if ((n >= 15 && strncasecmp(p, "Content-Length:", 15) == 0) ||
		    (n >= 18 && strncasecmp(p, "Transfer-Encoding:", 18) == 0))
			continue;
		if (evbuffer_add(hdrs, p, n) == -1)
			goto out;
	}
	e.method = h;
	e.method_len = (size_t)(sp1 - h);
	e.path = sp1 + 1;
	e.path_len = (size_t)(sp2 - sp1 - 1);
	e.headers_len = evbuffer_get_length(hdrs);
	e.headers = (const char *)evbuffer_pullup(hdrs, -1);
	e.body_len = evbuffer_get_length(s->obody);
	e.body = evbuffer_pullup(s->obody, -1);
	rc = offline_put(s->route, &e, id);
out:
	if (hdrs != NULL)
		evbuffer_free(hdrs);
	if (rc != 0) {
		if (rc == SPOOL_FULL)
			s->retry_after = offline_full_retry_after(s->route);
		session_error(s, 503, rc == SPOOL_FULL ?
		    "offline queue full" : "offline queue failed", 0);
		return;
	}
	snprintf(msg, sizeof(msg), "queued %s (%s)", id, why);
	session_set_err(s, msg, 1);
	session_timer_set(s, TIMER_NONE, 0);
	s->status = 202;
	s->resp_started = 1;
	s->resp = RESP_DONE;
	session_release_upstream(s, 0);
	upstream_close(s->connecting);
	s->connecting = NULL;
	keep = s->keep_alive && !s->px->stopping;
	s->dev_keep = keep;
	/* RFC 9110 §15.3.3: accepted for processing, not yet processed;
	 * the id is the one the upstream will see (OFFLINE_ID_HEADER). */
	out_printf(s, "HTTP/1.1 202 Accepted\r\n" OFFLINE_ID_HEADER ": %s\r\n"
	    "Content-Length: 0\r\n%s\r\n", id, !keep ? "Connection: close\r\n" :
	    (s->minor == 0 ? "Connection: keep-alive\r\n" : ""));
	session_txn_finish(s);
}

/*
 * From session_error(): a held request that could not reach the upstream
 * (502: connect, TLS, reset or a broken response; 503: all servers down)
 * is queued instead.  A 504 (no answer within upstream_timeout) is not:
 * the upstream may have taken it, and the device decides.
 * Returns 1 when the request was taken over.
 */
static int
session_offline_fallback(struct session *s, int status, const char *why)
{
	char msg[UPSTREAM_ERRLEN];

	if (s->offline != SESSION_OFFLINE_HELD || s->resp_started ||
	    (status != 502 && status != 503))
		return 0;
	snprintf(msg, sizeof(msg), "%s", why != NULL ? why : "upstream "
	    "failed");
	session_offline_queue(s, msg);
	return 1;
}

/*
 * A final response head arrived for s: the upstream is reachable (the
 * sender may stop waiting), or, for a held request answered 502, 503 or
 * 504, the request is queued and the response dropped with its
 * connection.  Returns 1 when the request was taken over.
 */
static int
session_offline_response(struct session *s, int status)
{
	char why[32];

	if (status < 500)
		offline_kick(s->route);
	if (s->offline != SESSION_OFFLINE_HELD ||
	    !offline_status_queues(status))
		return 0;
	session_release_upstream(s, 0);
	snprintf(why, sizeof(why), "upstream answered %d", status);
	session_offline_queue(s, why);
	return 1;
}

/* Drops what a request held; between exchanges and at close. */
static void
session_offline_reset(struct session *s)
{
	if (s->obody != NULL)
		evbuffer_free(s->obody);
	s->obody = NULL;
	s->offline = SESSION_OFFLINE_NONE;
}

/* ---- device side callbacks ---- */

/*
 * The device's socket is read here, not by its bufferevent: libevent's
 * read asks the kernel how many bytes wait (ioctl FIONREAD) before every
 * read, a system call per request.  The rest is what the bufferevent did:
 * reading is on or off (dev_rd_enable/disable), stops at the read
 * watermark proxy_read_high() until the input drains, has a timeout that
 * activity restarts (session_in_timeouts), and reports an EOF, an error or
 * a timeout to dev_event() after turning itself off; a later
 * dev_rd_enable() reads again, and sees the same EOF again.
 */
static void
dev_rd_arm(struct session *s)
{
	struct timeval tv = { s->rd_to, 0 };

	if (s->rd != NULL && s->rd_on && !s->rd_full)
		(void)event_add(s->rd, s->rd_to != 0 ? &tv : NULL);
}

/* Turns reading on (again), restarting the read timeout. */
static void
dev_rd_enable(struct session *s)
{
	s->rd_on = 1;
	dev_rd_arm(s);
}

static void
dev_rd_disable(struct session *s)
{
	s->rd_on = 0;
	if (s->rd != NULL)
		(void)event_del(s->rd);
}

/* The input went under the watermark: read again. */
static void
dev_input_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct session *s = arg;

	if (s->rd_full && info->n_deleted > 0 &&
	    evbuffer_get_length(buf) < proxy_read_high(s->cfg)) {
		s->rd_full = 0;
		dev_rd_arm(s);
	}
}

static void
dev_sock_read(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		dev_rd_disable(s);
		dev_event(s->se_in, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, s);
		return;
	}
	if ((n = sockread(fd, bufferevent_get_input(s->se_in),
	    proxy_read_high(s->cfg))) > 0) {
		dev_read(s->se_in, s);
		return;
	}
	if (n == -1 && errno == ENOBUFS) {
		/* dev_input_changed() reads again once it drained. */
		s->rd_full = 1;
		(void)event_del(s->rd);
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	dev_rd_disable(s);
	if (n == 0)
		errno = 0;
	dev_event(s->se_in, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF :
	    BEV_EVENT_ERROR), s);
}

static void
dev_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->closing) {
		evbuffer_drain(bufferevent_get_input(bev),
		    evbuffer_get_length(bufferevent_get_input(bev)));
		return;
	}
	switch (s->req) {
	case REQ_HEAD:
		session_parse_head(s);
		break;
	case REQ_BODY:
		session_pump_request(s);
		break;
	case REQ_WAIT_UP:
	case REQ_DONE:
		/* Pipelined or early bytes wait, bounded by the watermark. */
		break;
	}
}

static void
dev_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			session_linger(s);
		return;
	}
	if (s->resp == RESP_BODY && s->se_out != NULL) {
		/* The device drained: read from the uplink again. */
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		upstream_resume(s->se_out);
		session_pump_response(s);
	}
}

static void
dev_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->closing) {
		session_close(s, NULL);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		/* A body that stopped arriving: the request is incomplete
		 * (RFC 9110 §15.5.9), and so is the uplink exchange. */
		if ((what & BEV_EVENT_READING) && s->req == REQ_BODY &&
		    !s->resp_started) {
			session_error(s, 408, "device timeout", 1);
			return;
		}
		session_close(s, "device timeout");
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		session_close(s, "device connection error");
		return;
	}
	/* EOF.  A device may half-close after its request: answer it. */
	if (s->req == REQ_DONE && s->resp != RESP_DONE && s->active) {
		s->keep_alive = 0;
		s->dev_keep = 0;
		return;
	}
	session_close(s, s->active ? "device closed connection" : NULL);
}

/* ---- uplink side callbacks ---- */

static void
up_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	s->up_bytes = 1;
	if (s->resp == RESP_HEAD)
		session_parse_response(s);
	else if (s->resp == RESP_BODY)
		session_pump_response(s);
}

static void
up_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->req == REQ_BODY) {
		/* The uplink drained: read the device again. */
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		dev_rd_enable(s);
		session_pump_request(s);
	}
}

static void
up_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	char err[UPSTREAM_ERRLEN];

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT) {
		log_warnx("route %s: %s: upstream timeout", s->route->name,
		    upstream_name(s->up));
		session_upstream_failed(s, "upstream timeout", 1);
		return;
	}
	if ((what & BEV_EVENT_EOF) && s->resp == RESP_BODY) {
		/* Relay what is buffered first (it may be waiting for the
		 * device to drain); the pump then ends or aborts. */
		s->up_eof = 1;
		s->up_keep = 0;
		session_pump_response(s);
		return;
	}
	if (what & BEV_EVENT_EOF)
		snprintf(err, sizeof(err), "upstream closed connection");
	else
		upstream_error(s->se_out, err, sizeof(err));
	if (s->resp == RESP_BODY) {
		/* The device must not take a truncated body as complete:
		 * no final chunk, no more bytes; it sees the close. */
		log_warnx("route %s: %s: %s during the response",
		    s->route->name, upstream_name(s->up), err);
		metrics_upstream_error(s->mroute, proxy_uperr_kind(err, 0));
		session_set_err(s, err, 1);
		session_cut(s, err);
		return;
	}
	if (!upstream_reused(s->se_out))
		log_warnx("route %s: %s: %s", s->route->name,
		    upstream_name(s->up), err);
	session_upstream_failed(s, err, 0);
}
