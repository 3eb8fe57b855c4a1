/*
 * Unit tests of upstream.c: connection set-up errors, connect_timeout,
 * the pool bound (UPSTREAM_POOL_MAX), most-recent-first reuse and the
 * removal of pooled connections the server closes.  A stub transport
 * (plain TCP, optionally never finishing its "handshake") stands in for
 * OpenSSL, which is exactly what the transport table allows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_pool),
		cmocka_unit_test(test_release_with_unread_bytes),
	};

	log_init(LOG_LEVEL_ERROR, "test_upstream");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
