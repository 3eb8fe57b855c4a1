/*
 * tlsgate: plain HTTP/1.x from devices in, verified TLS to the cloud out.
 *
 * Start-up order: command line, configuration, logging, resource limits,
 * OpenSSL, event loop and DNS, uplinks (the proxy), listeners, signals.
 * Runs in the foreground, as systemd expects.
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
#include "listener.h"
#include "log.h"
#include "proxy.h"

#ifndef TLSGATE_VERSION
#define TLSGATE_VERSION "unknown"
#endif

/* Seconds the sessions in flight get to finish after SIGTERM/SIGINT. */
#define MAIN_SHUTDOWN_GRACE 10

/* Exit status for a configuration error (-t and start-up). */
#define MAIN_EXIT_CONFIG 2

struct main_state {
	struct event_base *base;
	struct proxy *px;
	struct listener *lst;
	struct event *grace;
	int stopping;
};

static void main_usage(FILE *);
static void main_raise_nofile(void);
static void main_signal(evutil_socket_t, short, void *);
static void main_grace(evutil_socket_t, short, void *);
static void main_check_done(evutil_socket_t, short, void *);

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

static void
main_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_state *m = arg;
	struct timeval tv = { MAIN_SHUTDOWN_GRACE, 0 };

	(void)what;
	if (m->stopping) {
		log_info("signal %d again: exiting now", (int)sig);
		event_base_loopexit(m->base, NULL);
		return;
	}
	m->stopping = 1;
	log_info("signal %d: stopping (%zu sessions, up to %d s)", (int)sig,
	    proxy_sessions(m->px), MAIN_SHUTDOWN_GRACE);
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
	log_warnx("%zu sessions still open after %d s: closing them",
	    proxy_sessions(m->px), MAIN_SHUTDOWN_GRACE);
	event_base_loopexit(m->base, NULL);
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
	struct event *sigint = NULL, *sigterm = NULL;
	const char *path = CONFIG_DEFAULT_PATH;
	char err[512];
	int ch, check = 0, debug = 0, rc = 1;

	memset(&m, 0, sizeof(m));
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
	log_init(debug ? LOG_LEVEL_DEBUG : cfg->log_level, "tlsgate");
	main_raise_nofile();
	/* A device or server that goes away must not kill us on write. */
	signal(SIGPIPE, SIG_IGN);
	if (OPENSSL_init_ssl(0, NULL) != 1)
		fatalx("cannot initialise OpenSSL");

	if ((m.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	/* Asynchronous resolver from /etc/resolv.conf and /etc/hosts; no
	 * cache, so every new uplink connection resolves again. */
	if ((dns = evdns_base_new(m.base,
	    EVDNS_BASE_INITIALIZE_NAMESERVERS)) == NULL)
		fatalx("cannot create the DNS resolver");
	if ((m.px = proxy_new(m.base, dns, cfg, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		goto out;
	}
	if ((m.lst = listener_new(m.base, cfg, m.px)) == NULL)
		goto out;
	if ((m.grace = evtimer_new(m.base, main_grace, &m)) == NULL ||
	    (sigint = evsignal_new(m.base, SIGINT, main_signal, &m)) == NULL ||
	    (sigterm = evsignal_new(m.base, SIGTERM, main_signal, &m)) ==
	    NULL || evsignal_add(sigint, NULL) == -1 ||
	    evsignal_add(sigterm, NULL) == -1) {
		log_warnx("cannot set up signal handling");
		goto out;
	}
	log_info("tlsgate %s started: %zu routes, %zu listening sockets",
	    TLSGATE_VERSION, cfg->nroutes, listener_count(m.lst));
	if (event_base_dispatch(m.base) == -1) {
		log_warnx("event loop failed");
		goto out;
	}
	log_info("stopped");
	rc = 0;
out:
	listener_free(m.lst);
	proxy_free(m.px);
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	if (m.grace != NULL)
		event_free(m.grace);
	if (dns != NULL)
		evdns_base_free(dns, 0);
	if (m.base != NULL)
		event_base_free(m.base);
	config_unref(cfg);
	return rc;
}
