/*
 * listener: listening sockets and admission.  A socket comes from socket
 * activation when the service manager passed one bound to the route's
 * address (service_find_fd), and is bound here otherwise.  Reload keeps
 * the sockets whose address stays, so nothing queued on them is lost.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "service.h"

/* At most one "refused by allow" line per socket in this many ms; the
 * next line counts the ones left out. */
#define LISTENER_REFUSED_LOG_MS 1000

struct listen_sock {
	struct listener *l;
	struct evconnlistener *lev;
	const struct route *route;      /* first route on this address */
	int inherited;                  /* passed by the service manager */
	/* "refused by allow" lines: when the last was written, and how
	 * many refusals were not logged since. */
	struct timespec refused_at;
	int refused_logged;
	unsigned long refused_quiet;
};

struct listener {
	struct event_base *base;
	const struct config *cfg;
	struct proxy *px;
	struct listen_sock **socks;     /* stable: each is a callback arg */
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
static struct listen_sock *listener_open(struct listener *,
    const struct route *);
static void listener_sock_free(struct listen_sock *);
static struct listen_sock *listener_find(struct listen_sock **, size_t,
    const struct route *);
static void listener_unused_fds(const struct config *);
static int listener_allowed(const struct config *, const struct route *,
    const struct sockaddr *);
static void listener_refused(struct listen_sock *, const struct sockaddr *);

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

/* Opens the socket of r's address: the inherited one, or a new one. */
static struct listen_sock *
listener_open(struct listener *l, const struct route *r)
{
	struct listen_sock *ls;
	evutil_socket_t fd;
	int inherited = 0;

	if ((ls = calloc(1, sizeof(*ls))) == NULL) {
		log_warnx("listener: out of memory");
		return NULL;
	}
	fd = service_find_fd((const struct sockaddr *)&r->listen_addr,
	    r->listen_addrlen);
	if (fd != -1)
		inherited = 1;
	else if ((fd = listener_bind(r)) == -1) {
		free(ls);
		return NULL;
	}
	ls->l = l;
	ls->route = r;
	ls->inherited = inherited;
	/* An inherited socket stays open when its route goes away: the
	 * socket unit still owns it, and a later reload may want it back. */
	ls->lev = evconnlistener_new(l->base, listener_accept, ls,
	    inherited ? 0 : LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (ls->lev == NULL) {
		log_warnx("route %s: cannot listen on %s", r->name, r->listen);
		if (!inherited)
			evutil_closesocket(fd);
		free(ls);
		return NULL;
	}
	evconnlistener_set_error_cb(ls->lev, listener_error);
	if (l->paused || l->closed)
		evconnlistener_disable(ls->lev);
	log_info("listening on %s%s", r->listen,
	    inherited ? " (socket from the service manager)" : "");
	return ls;
}

static void
listener_sock_free(struct listen_sock *ls)
{
	if (ls == NULL)
		return;
	if (ls->lev != NULL)
		evconnlistener_free(ls->lev);
	free(ls);
}

/* The socket in socks[0..n) on r's address, or NULL. */
static struct listen_sock *
listener_find(struct listen_sock **socks, size_t n, const struct route *r)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (socks[i] != NULL && proxy_addr_equal(
		    (const struct sockaddr *)&socks[i]->route->listen_addr,
		    (const struct sockaddr *)&r->listen_addr))
			return socks[i];
	return NULL;
}

/* A passed socket no route listens on is a mismatch between the socket
 * unit and the configuration: worth a line, not worth failing for. */
static void
listener_unused_fds(const struct config *cfg)
{
	const struct service_socket *ss;
	char host[INET6_ADDRSTRLEN] = "?";
	size_t n, i, j;
	unsigned port = 0;

	if (service_listen_fds(&ss, &n) == -1)
		return;
	for (i = 0; i < n; i++) {
		for (j = 0; j < cfg->nroutes; j++)
			if (proxy_addr_equal((const struct sockaddr *)
			    &ss[i].addr, (const struct sockaddr *)
			    &cfg->routes[j].listen_addr))
				break;
		if (j < cfg->nroutes)
			continue;
		if (ss[i].addr.ss_family == AF_INET) {
			const struct sockaddr_in *sin =
			    (const void *)&ss[i].addr;

			inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
			port = ntohs(sin->sin_port);
			log_warnx("socket %s:%u from the service manager: no "
			    "route listens there, unused", host, port);
		} else if (ss[i].addr.ss_family == AF_INET6) {
			const struct sockaddr_in6 *sin6 =
			    (const void *)&ss[i].addr;

			inet_ntop(AF_INET6, &sin6->sin6_addr, host,
			    sizeof(host));
			port = ntohs(sin6->sin6_port);
			log_warnx("socket [%s]:%u from the service manager: "
			    "no route listens there, unused", host, port);
		} else
			log_warnx("socket %d from the service manager: not "
			    "TCP, unused", ss[i].fd);
	}
}

struct listener *
listener_new(struct event_base *base, const struct config *cfg,
    struct proxy *px)
{
	struct listener *l;
	const struct service_socket *ss;
	size_t i, n;

	/* Read LISTEN_FDS before anything binds. */
	if (service_listen_fds(&ss, &n) == -1)
		return NULL;
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
		if (listener_find(l->socks, l->nsocks, &cfg->routes[i]))
			continue;
		if ((l->socks[l->nsocks] = listener_open(l,
		    &cfg->routes[i])) == NULL)
			goto fail;
		l->nsocks++;
	}
	listener_unused_fds(cfg);
	proxy_set_close_cb(px, listener_session_closed, l);
	return l;
fail:
	listener_free(l);
	return NULL;
}

int
listener_reload(struct listener *l, const struct config *cfg)
{
	struct listen_sock **socks, *ls;
	size_t i, j, n = 0;

	if ((socks = calloc(cfg->nroutes, sizeof(*socks))) == NULL) {
		log_warnx("listener: out of memory");
		return -1;
	}
	/* First pass: kept sockets move over (their routes are re-pointed
	 * only once nothing can fail), new ones are opened. */
	for (i = 0; i < cfg->nroutes; i++) {
		if (listener_find(socks, n, &cfg->routes[i]) != NULL)
			continue;
		ls = listener_find(l->socks, l->nsocks, &cfg->routes[i]);
		if (ls == NULL && (ls = listener_open(l,
		    &cfg->routes[i])) == NULL)
			goto fail;
		socks[n++] = ls;
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < cfg->nroutes; j++)
			if (proxy_addr_equal((const struct sockaddr *)
			    &cfg->routes[j].listen_addr,
			    (const struct sockaddr *)&socks[i]->route->
			    listen_addr))
				break;
		socks[i]->route = &cfg->routes[j];
	}
	/* Removed addresses are closed: new connections are refused. */
	for (i = 0; i < l->nsocks; i++) {
		for (j = 0; j < n; j++)
			if (socks[j] == l->socks[i])
				break;
		if (j == n) {
			log_info("no longer listening on %s",
			    l->socks[i]->route->listen);
			listener_sock_free(l->socks[i]);
		}
	}
	free(l->socks);
	l->socks = socks;
	l->nsocks = n;
	l->cfg = cfg;
	listener_unused_fds(cfg);
	/* max_clients may have changed either way. */
	if (!l->closed)
		listener_session_closed(l);
	return 0;
fail:
	/* Only the sockets opened by this call are closed. */
	for (i = 0; i < n; i++) {
		for (j = 0; j < l->nsocks; j++)
			if (socks[i] == l->socks[j])
				break;
		if (j == l->nsocks)
			listener_sock_free(socks[i]);
	}
	free(socks);
	return -1;
}

static void
listener_enable(struct listener *l, int on)
{
	size_t i;

	if (l->closed)
		return;
	for (i = 0; i < l->nsocks; i++) {
		if (on)
			evconnlistener_enable(l->socks[i]->lev);
		else
			evconnlistener_disable(l->socks[i]->lev);
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
	if (!listener_allowed(l->cfg, r, sa)) {
		listener_refused(ls, sa);
		evutil_closesocket(fd);
		return;
	}
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

/*
 * The route is known only once the request head is parsed, so before
 * reading anything the source must be allowed by at least one route on
 * r's address; the route finally chosen checks its own list again (403).
 */
static int
listener_allowed(const struct config *cfg, const struct route *r,
    const struct sockaddr *peer)
{
	size_t i;

	for (i = 0; i < cfg->nroutes; i++)
		if (proxy_addr_equal((const struct sockaddr *)
		    &cfg->routes[i].listen_addr,
		    (const struct sockaddr *)&r->listen_addr) &&
		    config_allowed(&cfg->routes[i], peer))
			return 1;
	return 0;
}

/* One line per LISTENER_REFUSED_LOG_MS at most: a refused source that
 * keeps reconnecting must not flood the log. */
static void
listener_refused(struct listen_sock *ls, const struct sockaddr *peer)
{
	char host[INET6_ADDRSTRLEN] = "?";
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(now.tv_sec - ls->refused_at.tv_sec) * 1000 +
	    (now.tv_nsec - ls->refused_at.tv_nsec) / 1000000;
	if (ls->refused_logged && ms < LISTENER_REFUSED_LOG_MS) {
		ls->refused_quiet++;
		return;
	}
	if (peer->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)
		    peer)->sin_addr, host, sizeof(host));
	else if (peer->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)
		    (const void *)peer)->sin6_addr, host, sizeof(host));
	if (ls->refused_quiet > 0)
		log_warnx("listen %s: connection from %s refused by allow "
		    "(and %lu more not logged)", ls->route->listen, host,
		    ls->refused_quiet);
	else
		log_warnx("listen %s: connection from %s refused by allow",
		    ls->route->listen, host);
	ls->refused_at = now;
	ls->refused_logged = 1;
	ls->refused_quiet = 0;
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
		listener_sock_free(l->socks[i]);
		l->socks[i] = NULL;
	}
	l->nsocks = 0;
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
