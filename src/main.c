/*
 * tlsgate: plain HTTP/1.x from devices in, verified TLS to the cloud out.
 *
 * Start-up order: command line, configuration, logging, resource limits,
 * OpenSSL, event loop and DNS, uplinks (the proxy), listeners, signals,
 * the metrics endpoint, then READY=1 to systemd (Type=notify).  Runs in
 * the foreground.
 *
 * Signals: SIGHUP reloads the configuration (RELOADING=1 ... READY=1; an
 * invalid file is logged and the running configuration kept); SIGTERM and
 * SIGINT stop accepting, give the requests in flight shutdown_timeout
 * seconds (STOPPING=1), then exit 0.
 */
#include <sys/resource.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "evmem.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "offline.h"
#include "proxy.h"
#include "service.h"

#ifndef TLSGATE_VERSION
#define TLSGATE_VERSION "unknown"
#endif

/* Exit status for a configuration error (-t and start-up). */
#define MAIN_EXIT_CONFIG 2

struct main_state {
	struct event_base *base;
	struct config *cfg;             /* the running one (reference) */
	const char *path;
	int debug;                      /* -d: keep debug whatever the file */
	struct proxy *px;
	struct listener *lst;
	struct event *grace;
	int stopping;
	char *metrics_addr;             /* where the endpoint runs, or NULL */
};

static void main_usage(FILE *);
static void main_raise_nofile(void);
static void main_signal(evutil_socket_t, short, void *);
static void main_grace(evutil_socket_t, short, void *);
static void main_check_done(evutil_socket_t, short, void *);
static void main_sighup(evutil_socket_t, short, void *);
static void main_reload(struct main_state *);
static void main_status(char *, size_t, void *);
static void main_metrics_routes(const struct config *);
static int main_metrics_listen(struct main_state *, const char *, char *,
    size_t);

static void
main_usage(FILE *f)
{
	fprintf(f, "usage: tlsgate [-c file] [-t] [-d] [-V] [-h]\n"
	    "  -c file  configuration (default %s)\n"
	    "  -t       check the configuration and exit\n"
	    "  -d       debug logging\n"
	    "  -V       print the version and exit\n"
	    "  -h       this help\n", CONFIG_DEFAULT_PATH);
}

/* Each session holds two sockets: use every descriptor we may have. */
static void
main_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit");
		return;
	}
	if (rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_NOFILE)");
}

/* STATUS= for systemctl status: what the gateway is doing right now. */
static void
main_status(char *buf, size_t len, void *arg)
{
	struct main_state *m = arg;
	struct proxy_counts c;

	proxy_counts(m->px, &c);
	snprintf(buf, len, "%s%zu device connections, %zu upstream (%zu "
	    "idle), %llu requests", m->stopping ? "stopping: " : "",
	    c.sessions, c.upstream_busy + c.upstream_idle, c.upstream_idle,
	    (unsigned long long)c.requests);
}

/* The configuration's routes become the current metrics entries. */
static void
main_metrics_routes(const struct config *cfg)
{
	const char *names[CONFIG_MAX_ROUTES];
	size_t i;

	for (i = 0; i < cfg->nroutes && i < CONFIG_MAX_ROUTES; i++)
		names[i] = cfg->routes[i].name;
	(void)metrics_routes_set(names, i);
}

/*
 * Runs the metrics endpoint on `addr` (NULL: none).  Unchanged: nothing
 * to do.  Otherwise the old endpoint is closed first (the new address
 * may use the same port), and when the new one cannot be bound the old
 * one is opened again.  Returns 0, or -1 with the reason in err[errlen].
 */
static int
main_metrics_listen(struct main_state *m, const char *addr, char *err,
    size_t errlen)
{
	char *copy = NULL, again[256];
	int rc = -1;

	if ((addr == NULL && m->metrics_addr == NULL) || (addr != NULL &&
	    m->metrics_addr != NULL && strcmp(addr, m->metrics_addr) == 0))
		return 0;
	if (addr != NULL && (copy = strdup(addr)) == NULL) {
		snprintf(err, errlen, "metrics_listen: out of memory");
		goto out;
	}
	metrics_listen_stop();
	if (addr != NULL && metrics_listen_start(m->base, addr, err,
	    errlen) == -1) {
		if (m->metrics_addr != NULL && metrics_listen_start(m->base,
		    m->metrics_addr, again, sizeof(again)) == -1) {
			log_warnx("%s; the metrics endpoint is closed", again);
			free(m->metrics_addr);
			m->metrics_addr = NULL;
		}
		goto out;
	}
	free(m->metrics_addr);
	m->metrics_addr = copy;
	copy = NULL;
	if (addr != NULL)
		log_info("metrics on %s (port %d)", addr,
		    metrics_listen_port());
	rc = 0;
out:
	free(copy);
	return rc;
}

static void
main_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *m = arg;
	struct timeval tv = { m->cfg->shutdown_timeout, 0 };

	(void)what;
	if (m->stopping) {
		log_info("signal %d again: exiting now", (int)sig);
		event_base_loopexit(m->base, NULL);
		return;
	}
	m->stopping = 1;
	service_stopping();
	log_info("signal %d: stopping (%zu sessions, up to %d s)", (int)sig,
	    proxy_sessions(m->px), m->cfg->shutdown_timeout);
	listener_close(m->lst);
	proxy_shutdown(m->px);
	evtimer_add(m->grace, &tv);
	main_check_done(-1, 0, m);
}

static void
main_grace(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *m = arg;

	(void)fd;
	(void)what;
	log_warnx("%zu sessions still open after shutdown_timeout (%d s): "
	    "closing them", proxy_sessions(m->px), m->cfg->shutdown_timeout);
	event_base_loopexit(m->base, NULL);
}

static void
main_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *m = arg;

	(void)sig;
	(void)what;
	if (m->stopping) {
		log_info("SIGHUP while stopping: ignored");
		return;
	}
	main_reload(m);
}

/*
 * Builds everything the new configuration needs before anything of the
 * old one goes, so that any failure leaves the daemon serving exactly as
 * before: the file, then the uplinks, then the listeners.
 */
static void
main_reload(struct main_state *m)
{
	struct config *cfg;
	char err[512], status[SERVICE_STATUS_MAX];
	int ok = 0;

	service_reloading();
	log_info("SIGHUP: reloading %s", m->path);
	if ((cfg = config_load(m->path, err, sizeof(err))) == NULL) {
		log_warnx("reload failed, keeping the running configuration: "
		    "%s", err);
		goto out;
	}
	if (offline_reload(cfg, err, sizeof(err)) == -1) {
		log_warnx("reload failed, keeping the running configuration: "
		    "%s", err);
		goto out;
	}
	if (proxy_reload(m->px, cfg, err, sizeof(err)) == -1) {
		log_warnx("reload failed, keeping the running configuration: "
		    "%s", err);
		if (offline_reload(m->cfg, err, sizeof(err)) == -1)
			log_warnx("reload: cannot restore the offline "
			    "queues: %s", err);
		goto out;
	}
	if (listener_reload(m->lst, cfg) == -1) {
		/* Back to uplinks for the configuration still listening. */
		if (proxy_reload(m->px, m->cfg, err, sizeof(err)) == -1)
			log_warnx("reload: cannot restore the uplinks: %s",
			    err);
		if (offline_reload(m->cfg, err, sizeof(err)) == -1)
			log_warnx("reload: cannot restore the offline "
			    "queues: %s", err);
		log_warnx("reload failed, keeping the running configuration");
		goto out;
	}
	config_unref(m->cfg);
	m->cfg = cfg;
	cfg = NULL;
	if (!m->debug)
		log_setlevel(m->cfg->log_level);
	main_metrics_routes(m->cfg);
	/* The endpoint is not worth refusing a reload for: a scrape that
	 * fails is noticed (up == 0), a gateway that stops forwarding is
	 * worse. */
	if (main_metrics_listen(m, m->cfg->metrics_listen, err,
	    sizeof(err)) == -1)
		log_warnx("reload: %s; the metrics endpoint stays as it was",
		    err);
	log_info("reloaded %s: %zu routes, %zu listening sockets", m->path,
	    m->cfg->nroutes, listener_count(m->lst));
	ok = 1;
out:
	metrics_reload(ok, 0);
	config_unref(cfg);
	/* READY=1 also after a failed reload: the service is up, on the
	 * configuration it had. */
	main_status(status, sizeof(status), m);
	service_ready(status);
}

/* Polled while stopping: exit as soon as the last session ends. */
static void
main_check_done(evutil_socket_t fd, short what, void *arg)
{
	struct main_state *m = arg;
	struct timeval tv = { 0, 50 * 1000 };

	(void)fd;
	(void)what;
	if (proxy_sessions(m->px) == 0) {
		event_base_loopexit(m->base, NULL);
		return;
	}
	event_base_once(m->base, -1, EV_TIMEOUT, main_check_done, m, &tv);
}

int
main(int argc, char *argv[])
{
	struct main_state m;
	struct config *cfg;
	struct evdns_base *dns = NULL;
	struct event *sigint = NULL, *sigterm = NULL, *sighup = NULL;
	char status[SERVICE_STATUS_MAX];
	const char *path = CONFIG_DEFAULT_PATH;
	char err[512];
	int ch, check = 0, debug = 0, rc = 1;

	memset(&m, 0, sizeof(m));
	/* Before libevent allocates anything.  Failing only costs memory. */
	(void)evmem_init();
	while ((ch = getopt(argc, argv, "c:dhtV")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("tlsgate %s\n", TLSGATE_VERSION);
			return 0;
		case 'h':
			main_usage(stdout);
			return 0;
		default:
			main_usage(stderr);
			return MAIN_EXIT_CONFIG;
		}
	}
	if (optind != argc) {
		main_usage(stderr);
		return MAIN_EXIT_CONFIG;
	}

	if ((cfg = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return MAIN_EXIT_CONFIG;
	}
	if (check) {
		printf("configuration OK\n");
		config_unref(cfg);
		return 0;
	}
	m.cfg = cfg;
	m.path = path;
	m.debug = debug;
	log_init(debug ? LOG_LEVEL_DEBUG : cfg->log_level, "tlsgate");
	main_raise_nofile();
	/* A device or server that goes away must not kill us on write. */
	signal(SIGPIPE, SIG_IGN);
	if (OPENSSL_init_ssl(0, NULL) != 1)
		fatalx("cannot initialise OpenSSL");

	if ((m.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	metrics_init(0);
	main_metrics_routes(cfg);
	/* Asynchronous resolver from /etc/resolv.conf and /etc/hosts; no
	 * cache, so every new uplink connection resolves again. */
	if ((dns = evdns_base_new(m.base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL)
		fatalx("cannot create the DNS resolver");
	if ((m.px = proxy_new(m.base, dns, cfg, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		goto out;
	}
	/* A queue that cannot be opened would turn every outage into lost
	 * data: refuse to start rather than run without it. */
	if (offline_init(m.base, dns, cfg, err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		goto out;
	}
	if ((m.lst = listener_new(m.base, cfg, m.px)) == NULL)
		goto out;
	metrics_set_collector(proxy_metrics_collect, m.px);
	if (main_metrics_listen(&m, cfg->metrics_listen, err,
	    sizeof(err)) == -1) {
		log_warnx("cannot start the metrics endpoint: %s", err);
		goto out;
	}
	if ((m.grace = evtimer_new(m.base, main_grace, &m)) == NULL ||
	    (sigint = evsignal_new(m.base, SIGINT, main_signal, &m)) == NULL ||
	    (sigterm = evsignal_new(m.base, SIGTERM, main_signal, &m)) ==
	    NULL || (sighup = evsignal_new(m.base, SIGHUP, main_sighup,
	    &m)) == NULL || evsignal_add(sigint, NULL) == -1 ||
	    evsignal_add(sigterm, NULL) == -1 ||
	    evsignal_add(sighup, NULL) == -1) {
		log_warnx("cannot set up signal handling");
		goto out;
	}
	if (service_init(m.base, main_status, &m) == -1)
		goto out;
	log_info("tlsgate %s started: %zu routes, %zu listening sockets",
	    TLSGATE_VERSION, cfg->nroutes, listener_count(m.lst));
	/* Every listener is bound and the signals are handled: from here
	 * on a connection or a reload is served. */
	main_status(status, sizeof(status), &m);
	service_ready(status);
	if (event_base_dispatch(m.base) == -1) {
		log_warnx("event loop failed");
		goto out;
	}
	log_info("stopped");
	rc = 0;
out:
	service_free();
	metrics_listen_stop();
	metrics_set_collector(NULL, NULL);
	free(m.metrics_addr);
	listener_free(m.lst);
	proxy_free(m.px);
	offline_free();
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sighup != NULL)
		event_free(sighup);
	if (m.grace != NULL)
		event_free(m.grace);
	if (dns != NULL) {
		/* Fail lookups still pending and let their callbacks run, so
		 * that evdns releases the requests before the base goes. */
		evdns_base_free(dns, 1);
		if (m.base != NULL)
			event_base_loop(m.base, EVLOOP_NONBLOCK);
	}
	if (m.base != NULL)
		event_base_free(m.base);
	metrics_free();
	config_unref(m.cfg);
	return rc;
}
