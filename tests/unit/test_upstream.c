/*
 * Unit tests of upstream.c: connection set-up errors, connect_timeout,
 * the pool bound (UPSTREAM_POOL_MAX), most-recent-first reuse, the
 * removal of pooled connections the server closes and reading kept on
 * across the hand-off from the pool; with several servers,
 * round-robin selection, passive failure detection (health_fall, the
 * trial connection after health_interval, "all servers down"), active
 * health checks (health_rise, health_fall, health_timeout,
 * UPSTREAM_CHECK_MAX_HEAD, the request sent) and the log lines of every
 * state change.  A stub transport (plain TCP, optionally never finishing
 * its "handshake") stands in for OpenSSL, which is exactly what the
 * transport table allows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "log.h"
#include "transport.h"
#include "upstream.h"

#define MAX_SERVER_CONNS (UPSTREAM_POOL_MAX + 16)

struct world {
	struct event_base *base;
	struct evdns_base *dns;
	struct evconnlistener *lev;
	int port;
	evutil_socket_t server_fds[MAX_SERVER_CONNS];
	int nserver;
	struct config *cfg;
	struct upstream *up;
};

/* ---- the stub transport ---- */

static int stub_stall;          /* 1: never report the handshake done */

static void *
stub_ctx_new(const struct route *r, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return (void *)r;
}

static void
stub_ctx_free(void *ctx)
{
	(void)ctx;
}

static void
stub_connected(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	bufferevent_trigger_event(arg, BEV_EVENT_CONNECTED, 0);
}

static struct bufferevent *
stub_start(void *ctx, struct bufferevent *tcp, char *err, size_t errlen)
{
	struct event_base *base = bufferevent_get_base(tcp);
	evutil_socket_t fd = bufferevent_getfd(tcp);
	struct bufferevent *bev;

	(void)ctx;
	(void)err;
	(void)errlen;
	bufferevent_free(tcp);
	bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	/* Report "handshake done" from the loop, once upstream.c has set
	 * its callbacks (libevent drops events for a bufferevent that has
	 * none). */
	if (!stub_stall)
		event_base_once(base, -1, EV_TIMEOUT, stub_connected, bev,
		    NULL);
	return bev;
}

static int
stub_resumed(struct bufferevent *bev)
{
	(void)bev;
	return 0;
}

static void
stub_error(struct bufferevent *bev, char *err, size_t errlen)
{
	(void)bev;
	snprintf(err, errlen, "stub: error");
}

static void
stub_wire_bytes(struct bufferevent *bev, uint64_t *rx, uint64_t *tx)
{
	(void)bev;
	*rx = 1;
	*tx = 2;
}

static const struct transport_ops stub_transport = {
	.name = "stub",
	.ctx_new = stub_ctx_new,
	.ctx_free = stub_ctx_free,
	.start = stub_start,
	.resumed = stub_resumed,
	.error = stub_error,
	.wire_bytes = stub_wire_bytes,
};

/* ---- a local server that accepts and holds connections ---- */

static void
server_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct world *w = arg;

	(void)lev;
	(void)sa;
	(void)salen;
	assert_true(w->nserver < MAX_SERVER_CONNS);
	w->server_fds[w->nserver++] = fd;
}

static void
world_init(struct world *w, int listen_too, int connect_timeout)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char text[512], err[256];

	memset(w, 0, sizeof(*w));
	w->base = event_base_new();
	assert_non_null(w->base);
	w->dns = evdns_base_new(w->base, 0);
	assert_non_null(w->dns);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	w->lev = evconnlistener_new_bind(w->base, server_accept, w,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	    (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(w->lev);
	assert_int_equal(getsockname(evconnlistener_get_fd(w->lev),
	    (struct sockaddr *)&sin, &len), 0);
	w->port = ntohs(sin.sin_port);
	if (!listen_too) {
		/* Free the port: connecting to it is refused. */
		evconnlistener_free(w->lev);
		w->lev = NULL;
	}
	snprintf(text, sizeof(text),
	    "[gateway]\nlog_level = error\n\n[route t]\n"
	    "listen = 127.0.0.1:1\nupstream = 127.0.0.1:%d\n"
	    "connect_timeout = %d\n", w->port, connect_timeout);
	w->cfg = config_parse("t.conf", text, strlen(text), err, sizeof(err));
	if (w->cfg == NULL)
		fail_msg("config_parse: %s", err);
	w->up = upstream_new(&w->cfg->routes[0], w->base, w->dns,
	    &stub_transport, err, sizeof(err));
	assert_non_null(w->up);
}

static void
world_free(struct world *w)
{
	int i;

	upstream_free(w->up);
	config_unref(w->cfg);
	for (i = 0; i < w->nserver; i++)
		if (w->server_fds[i] >= 0)
			close(w->server_fds[i]);
	if (w->lev != NULL)
		evconnlistener_free(w->lev);
	evdns_base_free(w->dns, 0);
	event_base_free(w->base);
}

/* ---- connect results ---- */

struct result {
	int done;
	struct upconn *c;
	char err[UPSTREAM_ERRLEN];
};

static void
on_connected(struct upconn *c, const char *err, void *arg)
{
	struct result *r = arg;

	r->done = 1;
	r->c = c;
	snprintf(r->err, sizeof(r->err), "%s", err != NULL ? err : "");
}

static void
run_until(struct world *w, const int *flag, int seconds)
{
	struct timeval tv = { 0, 20 * 1000 };
	int i;

	for (i = 0; i < seconds * 50 && !*flag; i++) {
		event_base_loopexit(w->base, &tv);
		event_base_dispatch(w->base);
	}
}

static struct upconn *
connect_one(struct world *w)
{
	struct result r;
	char err[UPSTREAM_ERRLEN];

	memset(&r, 0, sizeof(r));
	assert_non_null(upstream_connect(w->up, on_connected, &r, err,
	    sizeof(err)));
	run_until(w, &r.done, 5);
	assert_true(r.done);
	if (r.c == NULL)
		fail_msg("connect failed: %s", r.err);
	return r.c;
}

static void
test_refused(void **state)
{
	struct world w;
	struct result r;
	char err[UPSTREAM_ERRLEN];

	(void)state;
	stub_stall = 0;
	world_init(&w, 0, 5);
	memset(&r, 0, sizeof(r));
	assert_non_null(upstream_connect(w.up, on_connected, &r, err,
	    sizeof(err)));
	run_until(&w, &r.done, 5);
	assert_true(r.done);
	assert_null(r.c);
	assert_string_equal(r.err, "connect: Connection refused");
	world_free(&w);
}

static void
test_connect_timeout(void **state)
{
	struct world w;
	struct result r;
	char err[UPSTREAM_ERRLEN];

	(void)state;
	stub_stall = 1;
	world_init(&w, 1, 1);
	memset(&r, 0, sizeof(r));
	assert_non_null(upstream_connect(w.up, on_connected, &r, err,
	    sizeof(err)));
	run_until(&w, &r.done, 4);
	assert_true(r.done);
	assert_null(r.c);
	assert_string_equal(r.err, "connect timeout");
	stub_stall = 0;
	world_free(&w);
}

static void
test_cancel(void **state)
{
	struct world w;
	struct result r;
	struct upconn *c;
	char err[UPSTREAM_ERRLEN];
	int never = 0;

	(void)state;
	stub_stall = 0;
	world_init(&w, 1, 5);
	memset(&r, 0, sizeof(r));
	c = upstream_connect(w.up, on_connected, &r, err, sizeof(err));
	assert_non_null(c);
	/* Cancelled before completion: the callback never runs. */
	upstream_close(c);
	run_until(&w, &never, 1);
	assert_false(r.done);
	world_free(&w);
}

static void
test_pool(void **state)
{
	struct world w;
	struct upconn *c[UPSTREAM_POOL_MAX + 2], *got;
	unsigned long full, resumed, reused;
	uint64_t rx, tx;
	int i, never = 0;

	(void)state;
	stub_stall = 0;
	world_init(&w, 1, 5);
	assert_null(upstream_get(w.up));
	for (i = 0; i < UPSTREAM_POOL_MAX + 2; i++) {
		c[i] = connect_one(&w);
		assert_string_equal(upstream_tls_mode(c[i]), "new");
	}
	/* The pool keeps at most UPSTREAM_POOL_MAX; more are closed. */
	for (i = 0; i < UPSTREAM_POOL_MAX + 2; i++)
		upstream_release(c[i]);
	assert_int_equal(upstream_idle(w.up), UPSTREAM_POOL_MAX);

	/* Most recently released first. */
	got = upstream_get(w.up);
	assert_ptr_equal(got, c[UPSTREAM_POOL_MAX - 1]);
	assert_string_equal(upstream_tls_mode(got), "reused");
	assert_int_equal(upstream_reused(got), 1);
	assert_int_equal(upstream_idle(w.up), UPSTREAM_POOL_MAX - 1);
	upstream_close(got);

	/* The server closes every connection: the pool notices. */
	run_until(&w, &never, 1);
	for (i = 0; i < w.nserver; i++) {
		close(w.server_fds[i]);
		w.server_fds[i] = -1;
	}
	run_until(&w, &never, 1);
	assert_int_equal(upstream_idle(w.up), 0);
	assert_null(upstream_get(w.up));

	upstream_stats(w.up, &full, &resumed, &reused);
	assert_int_equal(full, UPSTREAM_POOL_MAX + 2);
	assert_int_equal(resumed, 0);
	assert_int_equal(reused, 1);
	/* Every connection closed so far added its wire counts. */
	upstream_wire_bytes(w.up, &rx, &tx);
	assert_int_equal(rx, UPSTREAM_POOL_MAX + 2);
	assert_int_equal(tx, 2 * (UPSTREAM_POOL_MAX + 2));
	world_free(&w);
}

static void
test_release_with_unread_bytes(void **state)
{
	struct world w;
	struct upconn *c;
	int never = 0;

	(void)state;
	stub_stall = 0;
	world_init(&w, 1, 5);
	c = connect_one(&w);
	run_until(&w, &never, 1);
	assert_int_equal(w.nserver, 1);
	/* Bytes the server sent that nobody read: not reusable. */
	assert_int_equal(write(w.server_fds[0], "x", 1), 1);
	bufferevent_enable(upstream_bev(c), EV_READ);
	run_until(&w, &never, 1);
	upstream_release(c);
	assert_int_equal(upstream_idle(w.up), 0);
	world_free(&w);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	*(short *)arg = what;
}

/*
 * A connection taken from the pool keeps reading enabled (turning it off
 * and on again costs two epoll_ctl() per request), with no callbacks and
 * writing off: a server that closes it right away is noticed at once.
 */
static void
test_get_keeps_reading(void **state)
{
	struct world w;
	struct upconn *c;
	short what = 0;
	int never = 0, flag;

	(void)state;
	stub_stall = 0;
	world_init(&w, 1, 5);
	c = connect_one(&w);
	run_until(&w, &never, 1);
	assert_int_equal(w.nserver, 1);
	upstream_release(c);
	assert_int_equal(bufferevent_get_enabled(upstream_bev(c)), EV_READ);
	assert_ptr_equal(upstream_get(w.up), c);
	assert_int_equal(bufferevent_get_enabled(upstream_bev(c)), EV_READ);
	bufferevent_setcb(upstream_bev(c), NULL, NULL, on_event, &what);
	bufferevent_set_timeouts(upstream_bev(c), NULL, NULL);
	close(w.server_fds[0]);
	w.server_fds[0] = -1;
	flag = 0;
	run_until(&w, &flag, 1);
	assert_true(what & BEV_EVENT_EOF);
	upstream_close(c);
	world_free(&w);
}

/* ---- several servers ---- */

#define FARM_MAX 3
#define FARM_CONNS 256

enum srv_mode {
	SRV_HOLD,       /* accept and keep, never answer */
	SRV_HTTP,       /* answer every request head with `status` */
	SRV_INTERIM,    /* 100 Continue, then `status` */
	SRV_BIGHEAD,    /* a head larger than UPSTREAM_CHECK_MAX_HEAD */
	SRV_GARBAGE,    /* not HTTP */
};

struct farm;

struct srv {
	struct farm *f;
	struct evconnlistener *lev;
	int port;
	enum srv_mode mode;
	int status;
	int accepted;
	int nreq;
	char req[512];          /* the last request head received */
};

struct sconn {
	struct srv *srv;
	struct bufferevent *bev;
	char buf[512];
	size_t len;
};

struct farm {
	struct event_base *base;
	struct evdns_base *dns;
	struct srv srv[FARM_MAX];
	struct sconn *conns[FARM_CONNS];
	int nconns;
	struct config_server servers[FARM_MAX];
	char names[FARM_MAX][32];
	struct route route;
	struct upstream *up;
	int logfd, saved_stderr;
	char logpath[64];
};

static void
sconn_read(struct bufferevent *bev, void *arg)
{
	struct sconn *sc = arg;
	struct srv *v = sc->srv;
	struct evbuffer *in = bufferevent_get_input(bev);
	char big[UPSTREAM_CHECK_MAX_HEAD + 64];
	size_t n;

	n = evbuffer_remove(in, sc->buf + sc->len, sizeof(sc->buf) - 1 -
	    sc->len);
	sc->len += n;
	sc->buf[sc->len] = '\0';
	evbuffer_drain(in, evbuffer_get_length(in));
	if (strstr(sc->buf, "\r\n\r\n") == NULL)
		return;
	v->nreq++;
	snprintf(v->req, sizeof(v->req), "%s", sc->buf);
	sc->len = 0;
	switch (v->mode) {
	case SRV_HOLD:
		break;
	case SRV_INTERIM:
		bufferevent_write(bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		/* FALLTHROUGH */
	case SRV_HTTP:
		evbuffer_add_printf(bufferevent_get_output(bev),
		    "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", v->status);
		break;
	case SRV_BIGHEAD:
		memset(big, 'a', sizeof(big));
		evbuffer_add_printf(bufferevent_get_output(bev),
		    "HTTP/1.1 200 OK\r\nX-Big: %.*s\r\n\r\n",
		    UPSTREAM_CHECK_MAX_HEAD, big);
		break;
	case SRV_GARBAGE:
		bufferevent_write(bev, "SSH-2.0-x\r\n\r\n", 13);
		break;
	}
}

static void
sconn_event(struct bufferevent *bev, short what, void *arg)
{
	struct sconn *sc = arg;

	(void)what;
	/* The peer closed: free now, keep the slot. */
	bufferevent_free(bev);
	sc->bev = NULL;
}

static void
farm_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct srv *v = arg;
	struct farm *f = v->f;
	struct sconn *sc;

	(void)lev;
	(void)sa;
	(void)salen;
	v->accepted++;
	assert_true(f->nconns < FARM_CONNS);
	sc = calloc(1, sizeof(*sc));
	assert_non_null(sc);
	sc->srv = v;
	sc->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(sc->bev);
	bufferevent_setcb(sc->bev, sconn_read, NULL, sconn_event, sc);
	bufferevent_enable(sc->bev, EV_READ | EV_WRITE);
	f->conns[f->nconns++] = sc;
}

/* Listens on v->port (0: a new port). */
static void
srv_start(struct farm *f, struct srv *v)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)v->port);
	v->f = f;
	v->lev = evconnlistener_new_bind(f->base, farm_accept, v,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	    (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(v->lev);
	assert_int_equal(getsockname(evconnlistener_get_fd(v->lev),
	    (struct sockaddr *)&sin, &len), 0);
	v->port = ntohs(sin.sin_port);
}

/* Closes the listening socket: connecting to the port is refused. */
static void
srv_kill(struct srv *v)
{
	evconnlistener_free(v->lev);
	v->lev = NULL;
}

/*
 * FARM_MAX servers answering `status` (mode SRV_HTTP), a route over them
 * and its upstream.  health: "GET /health" style method and path, or
 * NULL for passive detection only.  stderr goes to a file (farm_log).
 */
static void
farm_init(struct farm *f, const char *hmethod, int interval, int timeout,
    int rise, int fall)
{
	char err[256];
	int i;

	memset(f, 0, sizeof(*f));
	f->base = event_base_new();
	assert_non_null(f->base);
	f->dns = evdns_base_new(f->base, 0);
	assert_non_null(f->dns);
	for (i = 0; i < FARM_MAX; i++) {
		f->srv[i].mode = SRV_HTTP;
		f->srv[i].status = 200;
		srv_start(f, &f->srv[i]);
		snprintf(f->names[i], sizeof(f->names[i]), "127.0.0.1:%d",
		    f->srv[i].port);
		f->servers[i].host = "127.0.0.1";
		f->servers[i].port = (uint16_t)f->srv[i].port;
	}
	f->route.name = "t";
	memcpy(f->route.servers, f->servers, sizeof(f->servers));
	f->route.nservers = FARM_MAX;
	f->route.upstream_host = "127.0.0.1";
	f->route.upstream_port = (uint16_t)f->srv[0].port;
	f->route.host = "cloud.test";
	f->route.sni = "cloud.test";
	f->route.connect_timeout = 5;
	f->route.health_method = (char *)hmethod;
	f->route.health_path = hmethod != NULL ? "/health" : NULL;
	f->route.health_interval = interval;
	f->route.health_timeout = timeout;
	f->route.health_rise = rise;
	f->route.health_fall = fall;

	snprintf(f->logpath, sizeof(f->logpath), "/tmp/test_upstream.%d.log",
	    (int)getpid());
	f->logfd = open(f->logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(f->logfd >= 0);
	fflush(stderr);
	f->saved_stderr = dup(2);
	assert_true(f->saved_stderr >= 0);
	assert_int_equal(dup2(f->logfd, 2), 2);
	log_setlevel(LOG_LEVEL_INFO);

	f->up = upstream_new(&f->route, f->base, f->dns, &stub_transport,
	    err, sizeof(err));
	assert_non_null(f->up);
}

static void
farm_free(struct farm *f)
{
	int i;

	upstream_free(f->up);
	for (i = 0; i < f->nconns; i++) {
		if (f->conns[i]->bev != NULL)
			bufferevent_free(f->conns[i]->bev);
		free(f->conns[i]);
	}
	for (i = 0; i < FARM_MAX; i++)
		if (f->srv[i].lev != NULL)
			srv_kill(&f->srv[i]);
	evdns_base_free(f->dns, 0);
	event_base_free(f->base);
	log_setlevel(LOG_LEVEL_ERROR);
	fflush(stderr);
	dup2(f->saved_stderr, 2);
	close(f->saved_stderr);
	close(f->logfd);
	unlink(f->logpath);
}

/* Number of log lines containing `what`. */
static int
farm_log_count(struct farm *f, const char *what)
{
	char buf[65536], *p, *line;
	ssize_t n;
	int count = 0;

	fflush(stderr);
	n = pread(f->logfd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &p); line != NULL;
	    line = strtok_r(NULL, "\n", &p))
		if (strstr(line, what) != NULL)
			count++;
	return count;
}

static void
farm_run(struct farm *f, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

/* Runs the loop until *flag, at most `ms`. */
static void
farm_until(struct farm *f, const int *flag, int ms)
{
	int i;

	for (i = 0; i < ms / 10 && !*flag; i++)
		farm_run(f, 10);
}

/* Opens one connection; returns it (NULL on failure, reason in r). */
static struct upconn *
farm_connect(struct farm *f, struct result *r)
{
	char err[UPSTREAM_ERRLEN];

	memset(r, 0, sizeof(*r));
	if (upstream_connect(f->up, on_connected, r, err, sizeof(err)) ==
	    NULL) {
		r->done = 1;
		snprintf(r->err, sizeof(r->err), "%s", err);
		return NULL;
	}
	farm_until(f, &r->done, 5000);
	assert_true(r->done);
	return r->c;
}

/* Index of the server c goes to. */
static int
farm_which(struct farm *f, struct upconn *c)
{
	int i;

	for (i = 0; i < FARM_MAX; i++)
		if (strcmp(upstream_conn_server(c), f->names[i]) == 0)
			return i;
	fail_msg("connection to unknown server %s", upstream_conn_server(c));
	return -1;
}

/* Polls upstream_healthy() until it is `want`, at most `ms`. */
static void
farm_wait_healthy(struct farm *f, size_t want, int ms)
{
	int i;

	for (i = 0; i < ms / 20 && upstream_healthy(f->up) != want; i++)
		farm_run(f, 20);
	assert_int_equal(upstream_healthy(f->up), want);
}

static void
test_round_robin(void **state)
{
	struct farm f;
	struct result r;
	struct upconn *c[2 * FARM_MAX];
	char want[128];
	int i, up_now;

	(void)state;
	stub_stall = 0;
	farm_init(&f, NULL, 1, 1, 2, 2);
	snprintf(want, sizeof(want), "%s,%s,%s", f.names[0], f.names[1],
	    f.names[2]);
	assert_string_equal(upstream_name(f.up), want);
	assert_int_equal(upstream_nservers(f.up), FARM_MAX);
	for (i = 0; i < FARM_MAX; i++) {
		assert_string_equal(upstream_server(f.up, (size_t)i, &up_now),
		    f.names[i]);
		assert_int_equal(up_now, 1);
	}
	assert_null(upstream_server(f.up, FARM_MAX, NULL));
	assert_int_equal(upstream_healthy(f.up), FARM_MAX);
	/* New connections go to each server in turn. */
	for (i = 0; i < 2 * FARM_MAX; i++) {
		c[i] = farm_connect(&f, &r);
		assert_non_null(c[i]);
		assert_int_equal(farm_which(&f, c[i]), i % FARM_MAX);
		assert_int_equal(upstream_open(f.up), (size_t)i + 1);
	}
	farm_run(&f, 50);
	for (i = 0; i < FARM_MAX; i++)
		assert_int_equal(f.srv[i].accepted, 2);
	/* Pooled connections are reused whatever their server. */
	for (i = 0; i < 2 * FARM_MAX; i++)
		upstream_release(c[i]);
	assert_int_equal(upstream_idle(f.up), 2 * FARM_MAX);
	assert_int_equal(upstream_open(f.up), 2 * FARM_MAX);
	c[0] = upstream_get(f.up);
	assert_int_equal(farm_which(&f, c[0]), FARM_MAX - 1);
	upstream_close(c[0]);
	assert_int_equal(upstream_open(f.up), 2 * FARM_MAX - 1);
	upstream_drain(f.up);
	assert_int_equal(upstream_open(f.up), 0);
	assert_int_equal(farm_log_count(&f, "down"), 0);
	farm_free(&f);
}

static void
test_passive_fall_and_trial(void **state)
{
	struct farm f;
	struct result r;
	struct upconn *c;
	char line[256];
	int i, seq[8], want[8] = { 0, 2, 0, 2, 0, 2, 0, 2 };
	int up_now = -1;

	(void)state;
	stub_stall = 0;
	/* health_fall 2, health_interval 1 s, no health_check. */
	farm_init(&f, NULL, 1, 1, 2, 2);
	srv_kill(&f.srv[1]);
	/* Server 1 refuses: each request moves on to server 2 and still
	 * succeeds; the second failure takes server 1 down. */
	for (i = 0; i < 8; i++) {
		c = farm_connect(&f, &r);
		if (c == NULL)
			fail_msg("connect %d: %s", i, r.err);
		seq[i] = farm_which(&f, c);
		upstream_close(c);
	}
	for (i = 0; i < 8; i++)
		assert_int_equal(seq[i], want[i]);
	snprintf(line, sizeof(line), "warning: route t: server %s down "
	    "(connect: Connection refused, 2 failures)", f.names[1]);
	assert_int_equal(farm_log_count(&f, line), 1);
	assert_int_equal(farm_log_count(&f, " down "), 1);
	assert_int_equal(farm_log_count(&f, "all servers down"), 0);
	assert_string_equal(upstream_server(f.up, 1, &up_now), f.names[1]);
	assert_int_equal(up_now, 0);
	assert_int_equal(upstream_healthy(f.up), 2);

	/* Back on the same port; tried again once health_interval has
	 * passed since the last failure, with one trial connection. */
	srv_start(&f, &f.srv[1]);
	farm_run(&f, 300);
	assert_int_equal(upstream_healthy(f.up), 2);
	assert_int_equal(f.srv[1].accepted, 0);
	farm_wait_healthy(&f, 3, 2000);
	for (i = 0; i < FARM_MAX; i++) {
		c = farm_connect(&f, &r);
		assert_non_null(c);
		seq[i] = farm_which(&f, c);
		upstream_close(c);
	}
	/* Round-robin goes on where it was: 0, then 1 (the trial), 2. */
	for (i = 0; i < FARM_MAX; i++)
		assert_int_equal(seq[i], i);
	assert_int_equal(f.srv[1].accepted, 1);
	snprintf(line, sizeof(line), "info: route t: server %s up (trial "
	    "connection succeeded)", f.names[1]);
	assert_int_equal(farm_log_count(&f, line), 1);
	assert_int_equal(upstream_healthy(f.up), 3);
	farm_free(&f);
}

static void
test_passive_trial_one_at_a_time(void **state)
{
	struct farm f;
	struct result r[FARM_MAX + 1];
	struct upconn *c[FARM_MAX + 1];
	char err[UPSTREAM_ERRLEN];
	int i;

	(void)state;
	stub_stall = 0;
	farm_init(&f, NULL, 1, 1, 2, 1);
	for (i = 0; i < FARM_MAX; i++)
		srv_kill(&f.srv[i]);
	(void)farm_connect(&f, &r[0]);
	assert_null(r[0].c);
	assert_int_equal(upstream_healthy(f.up), 0);
	for (i = 0; i < FARM_MAX; i++)
		srv_start(&f, &f.srv[i]);
	farm_wait_healthy(&f, FARM_MAX, 2000);
	/* The stub never finishes its handshake: trials stay in flight,
	 * and each down server lets one through, no second one. */
	stub_stall = 1;
	memset(r, 0, sizeof(r));
	for (i = 0; i < FARM_MAX; i++) {
		c[i] = upstream_connect(f.up, on_connected, &r[i], err,
		    sizeof(err));
		assert_non_null(c[i]);
		assert_int_equal(upstream_healthy(f.up),
		    (size_t)(FARM_MAX - i - 1));
	}
	c[FARM_MAX] = upstream_connect(f.up, on_connected, &r[FARM_MAX], err,
	    sizeof(err));
	assert_null(c[FARM_MAX]);
	assert_string_equal(err, "all servers down");
	/* A cancelled trial proves nothing: its server may be tried again
	 * at once. */
	upstream_close(c[0]);
	assert_int_equal(upstream_healthy(f.up), 1);
	upstream_close(c[1]);
	upstream_close(c[2]);
	assert_int_equal(upstream_healthy(f.up), FARM_MAX);
	for (i = 0; i <= FARM_MAX; i++)
		assert_false(r[i].done);
	stub_stall = 0;
	farm_free(&f);
}

static void
test_passive_all_down(void **state)
{
	struct farm f;
	struct result r;
	struct upconn *c;
	char err[UPSTREAM_ERRLEN], want[128];
	int i;

	(void)state;
	stub_stall = 0;
	farm_init(&f, NULL, 1, 1, 2, 1);
	for (i = 0; i < FARM_MAX; i++)
		srv_kill(&f.srv[i]);
	/* One request tries every server once, then fails with the last
	 * reason. */
	c = farm_connect(&f, &r);
	assert_null(c);
	snprintf(want, sizeof(want), "%s: connect: Connection refused",
	    f.names[2]);
	assert_string_equal(r.err, want);
	assert_int_equal(farm_log_count(&f, " down (connect: Connection "
	    "refused, 1 failures)"), FARM_MAX);
	assert_int_equal(farm_log_count(&f, "warning: route t: all servers "
	    "down"), 1);
	assert_int_equal(upstream_healthy(f.up), 0);
	/* Nothing is tried now. */
	assert_null(upstream_connect(f.up, on_connected, &r, err,
	    sizeof(err)));
	assert_string_equal(err, "all servers down");
	assert_int_equal(upstream_open(f.up), 0);
	/* After health_interval each may be tried again; only the last
	 * one is back. */
	srv_start(&f, &f.srv[2]);
	farm_wait_healthy(&f, FARM_MAX, 2000);
	c = farm_connect(&f, &r);
	assert_non_null(c);
	assert_int_equal(farm_which(&f, c), 2);
	upstream_close(c);
	assert_int_equal(upstream_healthy(f.up), 1);
	assert_int_equal(farm_log_count(&f, "all servers down"), 1);
	assert_int_equal(farm_log_count(&f, " up (trial connection "
	    "succeeded)"), 1);
	farm_free(&f);
}

/* A lone server without health_check is never taken down. */
static void
test_single_server_stays(void **state)
{
	struct world w;
	struct result r;
	char err[UPSTREAM_ERRLEN];
	int i;

	(void)state;
	stub_stall = 0;
	world_init(&w, 0, 5);
	for (i = 0; i < 5; i++) {
		memset(&r, 0, sizeof(r));
		assert_non_null(upstream_connect(w.up, on_connected, &r,
		    err, sizeof(err)));
		run_until(&w, &r.done, 5);
		assert_string_equal(r.err, "connect: Connection refused");
		assert_int_equal(upstream_healthy(w.up), 1);
	}
	world_free(&w);
}

/* Polls until server i's state is up_want, at most ms; returns the time
 * it took in ms. */
static int
farm_wait_state(struct farm *f, int i, int up_want, int ms)
{
	int t, up_now = -1;

	for (t = 0; t < ms; t += 20) {
		(void)upstream_server(f->up, (size_t)i, &up_now);
		if (up_now == up_want)
			return t;
		farm_run(f, 20);
	}
	fail_msg("server %d not %s after %d ms", i, up_want ? "up" : "down",
	    ms);
	return -1;
}

static void
test_active_checks(void **state)
{
	struct farm f;
	struct result r;
	struct upconn *c, *pooled;
	char line[256], want[256];
	int i;

	(void)state;
	stub_stall = 0;
	/* interval 1 s, timeout 1 s, rise 2, fall 2. */
	farm_init(&f, "GET", 1, 1, 2, 2);
	/* The first checks run at once; every server answers 200. */
	for (i = 0; i < 50 && (f.srv[0].nreq == 0 || f.srv[1].nreq == 0 ||
	    f.srv[2].nreq == 0); i++)
		farm_run(&f, 20);
	snprintf(want, sizeof(want), "GET /health HTTP/1.1\r\nHost: "
	    "cloud.test\r\nConnection: close\r\n\r\n");
	for (i = 0; i < FARM_MAX; i++)
		assert_string_equal(f.srv[i].req, want);
	assert_int_equal(upstream_healthy(f.up), FARM_MAX);
	/* Checks are not traffic. */
	assert_int_equal(upstream_open(f.up), 0);

	/* A pooled connection to server 1, then server 1 fails its
	 * checks (503 after an interim 100): down after two, its pooled
	 * connection closed. */
	c = farm_connect(&f, &r);
	assert_int_equal(farm_which(&f, c), 0);
	pooled = farm_connect(&f, &r);
	assert_int_equal(farm_which(&f, pooled), 1);
	upstream_release(pooled);
	upstream_release(c);
	assert_int_equal(upstream_idle(f.up), 2);
	f.srv[1].mode = SRV_INTERIM;
	f.srv[1].status = 503;
	(void)farm_wait_state(&f, 1, 0, 4000);
	snprintf(line, sizeof(line), "warning: route t: server %s down "
	    "(health check: status 503, 2 failures)", f.names[1]);
	assert_int_equal(farm_log_count(&f, line), 1);
	assert_int_equal(upstream_idle(f.up), 1);
	c = upstream_get(f.up);
	assert_non_null(c);
	assert_int_equal(farm_which(&f, c), 0);
	upstream_close(c);
	/* New connections skip it. */
	for (i = 0; i < 4; i++) {
		c = farm_connect(&f, &r);
		assert_non_null(c);
		assert_int_not_equal(farm_which(&f, c), 1);
		upstream_close(c);
	}
	/* A status below 500 is good: up after two good checks. */
	f.srv[1].mode = SRV_HTTP;
	f.srv[1].status = 404;
	(void)farm_wait_state(&f, 1, 1, 4000);
	snprintf(line, sizeof(line), "info: route t: server %s up (2 good "
	    "checks)", f.names[1]);
	assert_int_equal(farm_log_count(&f, line), 1);
	assert_int_equal(farm_log_count(&f, "all servers down"), 0);
	farm_free(&f);
}

static void
test_active_check_failures(void **state)
{
	struct farm f;
	struct result r;
	char line[256];
	int t;

	(void)state;
	stub_stall = 0;
	/* fall 1: each kind of failure takes its server down at once. */
	farm_init(&f, "HEAD", 1, 1, 1, 1);
	f.srv[0].mode = SRV_BIGHEAD;
	f.srv[1].mode = SRV_HOLD;
	f.srv[2].mode = SRV_GARBAGE;
	(void)farm_wait_state(&f, 0, 0, 1000);
	(void)farm_wait_state(&f, 2, 0, 1000);
	/* health_timeout (1 s) ends the silent one. */
	t = farm_wait_state(&f, 1, 0, 3000);
	assert_true(t >= 600);
	snprintf(line, sizeof(line), "server %s down (health check: "
	    "malformed or oversized response head, 1 failures)", f.names[0]);
	assert_int_equal(farm_log_count(&f, line), 1);
	snprintf(line, sizeof(line), "server %s down (health check: no "
	    "response within 1 s, 1 failures)", f.names[1]);
	assert_int_equal(farm_log_count(&f, line), 1);
	snprintf(line, sizeof(line), "server %s down (health check: "
	    "malformed or oversized response head, 1 failures)", f.names[2]);
	assert_int_equal(farm_log_count(&f, line), 1);
	assert_int_equal(farm_log_count(&f, "warning: route t: all servers "
	    "down"), 1);
	assert_int_equal(upstream_healthy(f.up), 0);
	assert_null(farm_connect(&f, &r));
	assert_string_equal(r.err, "all servers down");
	/* A refused check counts too; server 0 is killed while down: it
	 * stays down, and no second "all servers down" line. */
	srv_kill(&f.srv[0]);
	f.srv[2].mode = SRV_HTTP;
	(void)farm_wait_state(&f, 2, 1, 3000);
	assert_int_equal(upstream_healthy(f.up), 1);
	farm_run(&f, 1500);
	assert_int_equal(upstream_healthy(f.up), 1);
	assert_int_equal(farm_log_count(&f, "all servers down"), 1);
	farm_free(&f);
}

/*
 * upstream_drain stops the checks, also one in flight; upstream_free
 * with checks in flight and scheduled frees everything (the ASan build
 * reports a leak or a late callback).
 */
static void
test_checks_stopped(void **state)
{
	struct farm f;
	int i;

	(void)state;
	stub_stall = 0;
	farm_init(&f, "GET", 1, 5, 2, 2);
	for (i = 0; i < FARM_MAX; i++)
		f.srv[i].mode = SRV_HOLD;
	for (i = 0; i < 50 && f.srv[2].nreq == 0; i++)
		farm_run(&f, 20);
	assert_int_equal(f.srv[2].nreq, 1);
	upstream_drain(f.up);
	farm_run(&f, 1200);
	for (i = 0; i < FARM_MAX; i++)
		assert_int_equal(f.srv[i].accepted, 1);
	assert_int_equal(upstream_healthy(f.up), FARM_MAX);
	farm_free(&f);

	farm_init(&f, "GET", 1, 5, 2, 2);
	f.srv[0].mode = SRV_HOLD;
	for (i = 0; i < 50 && f.srv[0].nreq == 0; i++)
		farm_run(&f, 20);
	assert_int_equal(f.srv[0].nreq, 1);
	farm_free(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_pool),
		cmocka_unit_test(test_release_with_unread_bytes),
		cmocka_unit_test(test_get_keeps_reading),
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_passive_fall_and_trial),
		cmocka_unit_test(test_passive_trial_one_at_a_time),
		cmocka_unit_test(test_passive_all_down),
		cmocka_unit_test(test_single_server_stays),
		cmocka_unit_test(test_active_checks),
		cmocka_unit_test(test_active_check_failures),
		cmocka_unit_test(test_checks_stopped),
	};

	log_init(LOG_LEVEL_ERROR, "test_upstream");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
