/*
 * listener: listening sockets and admission.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"

struct listen_sock {
	struct listener *l;
	struct evconnlistener *lev;
	const struct route *route;      /* first route on this address */
};

struct listener {
	struct event_base *base;
	const struct config *cfg;
	struct proxy *px;
	struct listen_sock *socks;
	size_t nsocks;
	int paused;                     /* at max_clients or EMFILE */
	struct event *resume;           /* EMFILE back-off */
	int closed;
};

static void listener_accept(struct evconnlistener *, evutil_socket_t,
    struct sockaddr *, int, void *);
static void listener_error(struct evconnlistener *, void *);
static void listener_session_closed(void *);
static void listener_resume(evutil_socket_t, short, void *);
static void listener_enable(struct listener *, int);
static evutil_socket_t listener_bind(const struct route *);

/*
 * Sockets are made here rather than by evconnlistener_new_bind() because
 * IPV6_V6ONLY must be set before bind(2).
 */
static evutil_socket_t
listener_bind(const struct route *r)
{
	const struct sockaddr *sa = (const struct sockaddr *)&r->listen_addr;
	evutil_socket_t fd;
	int on = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		log_warn("route %s: socket for %s", r->name, r->listen);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &on, sizeof(on)) == -1)) {
		log_warn("route %s: setsockopt on %s", r->name, r->listen);
		goto fail;
	}
	if (bind(fd, sa, r->listen_addrlen) == -1) {
		log_warn("route %s: bind %s", r->name, r->listen);
		goto fail;
	}
	if (listen(fd, LISTENER_BACKLOG) == -1) {
		log_warn("route %s: listen on %s", r->name, r->listen);
		goto fail;
	}
	return fd;
fail:
	evutil_closesocket(fd);
	return -1;
}

struct listener *
listener_new(struct event_base *base, const struct config *cfg,
    struct proxy *px)
{
	struct listener *l;
	const struct route *r;
	evutil_socket_t fd;
	size_t i, j;

	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->socks = calloc(cfg->nroutes, sizeof(*l->socks))) == NULL) {
		log_warnx("listener: out of memory");
		free(l);
		return NULL;
	}
	l->base = base;
	l->cfg = cfg;
	l->px = px;
	if ((l->resume = evtimer_new(base, listener_resume, l)) == NULL) {
		log_warnx("listener: out of memory");
		goto fail;
	}
	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		for (j = 0; j < l->nsocks; j++)
			if (proxy_addr_equal(
			    (const struct sockaddr *)&l->socks[j].route->
			    listen_addr, (const struct sockaddr *)&r->
			    listen_addr))
				break;
		if (j < l->nsocks)
			continue;
		if ((fd = listener_bind(r)) == -1)
			goto fail;
		l->socks[l->nsocks].l = l;
		l->socks[l->nsocks].route = r;
		l->socks[l->nsocks].lev = evconnlistener_new(base,
		    listener_accept, &l->socks[l->nsocks],
		    LEV_OPT_CLOSE_ON_FREE, -1, fd);
		if (l->socks[l->nsocks].lev == NULL) {
			log_warnx("route %s: cannot listen on %s", r->name,
			    r->listen);
			evutil_closesocket(fd);
			goto fail;
		}
		evconnlistener_set_error_cb(l->socks[l->nsocks].lev,
		    listener_error);
		l->nsocks++;
		log_info("listening on %s", r->listen);
	}
	proxy_set_close_cb(px, listener_session_closed, l);
	return l;
fail:
	listener_free(l);
	return NULL;
}

static void
listener_enable(struct listener *l, int on)
{
	size_t i;

	if (l->closed)
		return;
	for (i = 0; i < l->nsocks; i++) {
		if (on)
			evconnlistener_enable(l->socks[i].lev);
		else
			evconnlistener_disable(l->socks[i].lev);
	}
	l->paused = !on;
}

static void
listener_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listen_sock *ls = arg;
	struct listener *l = ls->l;
	const struct route *r = ls->route;

	(void)lev;
	if (proxy_accept(l->px, fd, sa, (socklen_t)salen,
	    (const struct sockaddr *)&r->listen_addr, r->listen_addrlen) == -1)
		return;
	/* Stop before the limit is passed: the callback runs once per
	 * accepted socket, and a disabled listener accepts no more. */
	if (proxy_sessions(l->px) >= (size_t)l->cfg->max_clients &&
	    !l->paused) {
		log_warnx("max_clients (%d) reached: not accepting",
		    l->cfg->max_clients);
		listener_enable(l, 0);
	}
}

static void
listener_error(struct evconnlistener *lev, void *arg)
{
	struct listen_sock *ls = arg;
	struct listener *l = ls->l;
	struct timeval tv = { LISTENER_EMFILE_PAUSE_MS / 1000,
	    (LISTENER_EMFILE_PAUSE_MS % 1000) * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	(void)lev;
	errno = err;
	log_warn("accept on %s", ls->route->listen);
	/* Out of descriptors: retrying at once would spin. */
	if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM) {
		listener_enable(l, 0);
		evtimer_add(l->resume, &tv);
	}
}

static void
listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	if (proxy_sessions(l->px) < (size_t)l->cfg->max_clients)
		listener_enable(l, 1);
}

static void
listener_session_closed(void *arg)
{
	struct listener *l = arg;

	if (l->paused && !evtimer_pending(l->resume, NULL) &&
	    proxy_sessions(l->px) < (size_t)l->cfg->max_clients)
		listener_enable(l, 1);
}

void
listener_close(struct listener *l)
{
	size_t i;

	if (l->closed)
		return;
	for (i = 0; i < l->nsocks; i++) {
		evconnlistener_free(l->socks[i].lev);
		l->socks[i].lev = NULL;
	}
	l->closed = 1;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	proxy_set_close_cb(l->px, NULL, NULL);
	listener_close(l);
	if (l->resume != NULL)
		event_free(l->resume);
	free(l->socks);
	free(l);
}

size_t
listener_count(const struct listener *l)
{
	return l->nsocks;
}
