/*
 * metrics: the registry, its Prometheus text rendering, and the endpoint.
 *
 * The text format is "text/plain; version=0.0.4": one "# HELP" and one
 * "# TYPE" line per family, then its samples "name{label="value",...} v",
 * all lines of a family together.  Label values escape '\\', '"' and
 * newline as \\, \" and \n; HELP texts here contain none of them.
 *
 * The endpoint is read-only and meant for a local scraper, but it shares
 * the event loop with the proxy, so it reuses the strict http1 parser and
 * bounds connections, head size and idle time like the device side does.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <openssl/crypto.h>

#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "now.h"

#ifndef TLSGATE_VERSION
#define TLSGATE_VERSION "unknown"
#endif

#define METRICS_NCLASSES       6       /* none, 1xx .. 5xx */
#define METRICS_BACKLOG        16
#define METRICS_PATH           "/metrics"
#define METRICS_CONTENT_TYPE   "text/plain; version=0.0.4; charset=utf-8"
/* A label value escapes to at most twice its length. */
#define METRICS_MAX_LABEL      (2 * METRICS_MAX_ROUTE_NAME)
#define METRICS_MAX_INFO       128     /* bytes of one build-info value */

/* One server of a route, as the last collection saw it. */
struct metrics_server {
	char name[METRICS_MAX_SERVER_NAME + 1];
	char label[2 * METRICS_MAX_SERVER_NAME + 1];  /* name, escaped */
	int up;
};

struct metrics_route {
	char name[METRICS_MAX_ROUTE_NAME + 1];
	char label[METRICS_MAX_LABEL + 1];  /* name, escaped */
	int current;                /* in the configuration in force */
	uint64_t requests[METRICS_NCLASSES];
	uint64_t buckets[METRICS_NBUCKETS + 1];  /* per bucket, +Inf last;
						    made cumulative when
						    rendered */
	uint64_t duration_sum_us;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t handshakes_full;
	uint64_t handshakes_resumed;
	uint64_t uperr[METRICS_UPERR_COUNT];
	int64_t up_open;
	int64_t up_idle;
	uint64_t spool_entries;
	uint64_t spool_bytes;
	int64_t spool_oldest_ms;
	uint64_t spool_events[METRICS_SPOOL_EV_COUNT];
	struct metrics_server *servers;  /* set by the collector */
	size_t nservers, cap;
};

static const uint64_t metrics_bounds_us[METRICS_NBUCKETS] = {
	METRICS_DURATION_BOUNDS_US
};
/* The same bounds in seconds, as the le= label shows them. */
static const char *const metrics_bounds_le[METRICS_NBUCKETS] = {
	"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
	"2.5", "5", "10", "30", "60", "120"
};
static const char *const metrics_class_names[METRICS_NCLASSES] = {
	"none", "1xx", "2xx", "3xx", "4xx", "5xx"
};
static const char *const metrics_uperr_names[METRICS_UPERR_COUNT] = {
	"dns", "connect", "tls", "verify", "timeout", "protocol", "reset"
};
static const char *const metrics_spool_ev_names[METRICS_SPOOL_EV_COUNT] = {
	"queued", "full", "replayed", "dead", "corrupt"
};

/* The registry: one per process, event-loop thread only. */
static struct {
	struct metrics_route **routes;  /* registration order */
	size_t nroutes;
	int64_t start_ms;
	char version[METRICS_MAX_INFO];
	char openssl[METRICS_MAX_INFO];
	char libevent[METRICS_MAX_INFO];
	uint64_t device_open;
	uint64_t device_total;
	uint64_t unrouted[METRICS_NCLASSES];
	void (*collect)(void *);    /* metrics_set_collector() */
	void *collect_arg;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	int last_reload_ok;
	int64_t last_reload_ms;     /* 0: no reload yet (start time shown) */
} reg = { .last_reload_ok = 1 };

/* The endpoint. */
struct metrics_conn {
	struct bufferevent *bev;
	struct metrics_conn *prev;
	struct metrics_conn *next;
	int answered;               /* response queued: drain input, then
				       close */
	int eof;                    /* the client half-closed */
	int64_t phase_ms;           /* monotonic start of the current phase:
				       reading the head, or lingering */
};

static struct {
	struct event_base *base;
	struct evconnlistener *lev;
	struct metrics_conn *conns;
	int nconns;
	int port;
	int paused;
} ep = { .port = -1 };

/* The request being parsed: large (HTTP1_MAX_HEADERS fields), and one
   connection is parsed at a time on this thread. */
static struct http1_request metrics_req;

static void metrics_escape(char *, size_t, const char *);
static int metrics_family(struct evbuffer *, const char *, const char *,
    const char *);
static int metrics_render_routes(struct evbuffer *, int64_t);
static void metrics_accept(struct evconnlistener *, evutil_socket_t,
    struct sockaddr *, int, void *);
static void metrics_accept_error(struct evconnlistener *, void *);
static void metrics_conn_close(struct metrics_conn *);
static void metrics_conn_read(struct bufferevent *, void *);
static void metrics_conn_write(struct bufferevent *, void *);
static void metrics_conn_event(struct bufferevent *, short, void *);
static void metrics_conn_respond(struct metrics_conn *, int, int);
static int metrics_parse_addr(const char *, struct sockaddr_storage *,
    int *);

/* ---- registry ---- */

/* Text exposition format 0.0.4: in a label value, '\\', '"' and line feed
   are written \\, \" and \n; other bytes pass as they are.  dst holds
   2 * strlen(src) + 1 bytes. */
static void
metrics_escape(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;

	for (; *src != '\0' && o + 2 < dstlen; src++) {
		if (*src == '\\' || *src == '"') {
			dst[o++] = '\\';
			dst[o++] = *src;
		} else if (*src == '\n') {
			dst[o++] = '\\';
			dst[o++] = 'n';
		} else
			dst[o++] = *src;
	}
	dst[o] = '\0';
}

void
metrics_free(void)
{
	size_t i;

	for (i = 0; i < reg.nroutes; i++) {
		free(reg.routes[i]->servers);
		free(reg.routes[i]);
	}
	free(reg.routes);
	reg.routes = NULL;
	reg.nroutes = 0;
}

void
metrics_init(int64_t start_ms)
{
	metrics_free();
	memset(&reg, 0, sizeof(reg));
	reg.last_reload_ok = 1;
	reg.start_ms = start_ms != 0 ? start_ms : now_wall_ms();
	metrics_escape(reg.version, sizeof(reg.version), TLSGATE_VERSION);
	metrics_escape(reg.openssl, sizeof(reg.openssl),
	    OpenSSL_version(OPENSSL_VERSION_STRING));
	metrics_escape(reg.libevent, sizeof(reg.libevent),
	    event_get_version());
}

struct metrics_route *
metrics_route(const char *name)
{
	size_t i;

	for (i = 0; i < reg.nroutes; i++)
		if (strcmp(reg.routes[i]->name, name) == 0)
			return reg.routes[i];
	return NULL;
}

int
metrics_routes_set(const char *const *names, size_t n)
{
	struct metrics_route *r, **grown;
	size_t i, len;
	int rc = 0;

	for (i = 0; i < reg.nroutes; i++)
		reg.routes[i]->current = 0;
	for (i = 0; i < n; i++) {
		if ((r = metrics_route(names[i])) != NULL) {
			r->current = 1;
			continue;
		}
		len = strlen(names[i]);
		if (len == 0 || len > METRICS_MAX_ROUTE_NAME) {
			log_warnx("metrics: route name of %zu bytes not "
			    "registered (1 to %d)", len,
			    METRICS_MAX_ROUTE_NAME);
			rc = -1;
			continue;
		}
		/* Entries are never dropped while the process runs (their
		   pointers may be cached), so the names are bounded. */
		if (reg.nroutes == METRICS_MAX_ROUTES) {
			log_warnx("metrics: route %s not registered: %d route "
			    "names already seen", names[i],
			    METRICS_MAX_ROUTES);
			rc = -1;
			continue;
		}
		grown = realloc(reg.routes,
		    (reg.nroutes + 1) * sizeof(*reg.routes));
		if (grown == NULL || (r = calloc(1, sizeof(*r))) == NULL) {
			if (grown != NULL)
				reg.routes = grown;
			log_warnx("metrics: route %s not registered: out of "
			    "memory", names[i]);
			rc = -1;
			continue;
		}
		reg.routes = grown;
		memcpy(r->name, names[i], len + 1);
		metrics_escape(r->label, sizeof(r->label), r->name);
		r->current = 1;
		reg.routes[reg.nroutes++] = r;
	}
	return rc;
}

void
metrics_request(struct metrics_route *r, int status, uint64_t duration_us)
{
	size_t b;

	if (r == NULL)
		return;
	r->requests[status >= 100 && status <= 599 ? status / 100 : 0]++;
	/* Bucket b counts durations in (bound[b-1], bound[b]]: "le". */
	for (b = 0; b < METRICS_NBUCKETS; b++)
		if (duration_us <= metrics_bounds_us[b])
			break;
	r->buckets[b]++;
	r->duration_sum_us += duration_us;
}

void
metrics_request_unrouted(int status)
{
	reg.unrouted[status >= 100 && status <= 599 ? status / 100 : 0]++;
}

void
metrics_uplink_bytes(struct metrics_route *r, uint64_t in, uint64_t out)
{
	if (r == NULL)
		return;
	r->bytes_in += in;
	r->bytes_out += out;
}

void
metrics_handshake(struct metrics_route *r, int resumed)
{
	if (r == NULL)
		return;
	if (resumed)
		r->handshakes_resumed++;
	else
		r->handshakes_full++;
}

void
metrics_upstream_error(struct metrics_route *r, enum metrics_uperr kind)
{
	if (r == NULL || (unsigned)kind >= METRICS_UPERR_COUNT)
		return;
	r->uperr[kind]++;
}

void
metrics_upstream_conns(struct metrics_route *r, int open, int idle)
{
	if (r == NULL)
		return;
	r->up_open += open;
	r->up_idle += idle;
}

void
metrics_upstream_server(struct metrics_route *r, const char *name, int up)
{
	struct metrics_server *s;
	size_t i, len;

	if (r == NULL)
		return;
	len = strlen(name);
	if (len > METRICS_MAX_SERVER_NAME)
		len = METRICS_MAX_SERVER_NAME;
	for (i = 0; i < r->nservers; i++)
		if (strncmp(r->servers[i].name, name, len) == 0 &&
		    r->servers[i].name[len] == '\0')
			return;
	if (r->nservers == r->cap) {
		/* A route has a handful of servers (CONFIG_MAX_SERVERS). */
		s = realloc(r->servers, (r->cap + 4) * sizeof(*s));
		if (s == NULL) {
			log_warnx("metrics: out of memory for a server");
			return;
		}
		r->servers = s;
		r->cap += 4;
	}
	s = &r->servers[r->nservers++];
	memcpy(s->name, name, len);
	s->name[len] = '\0';
	metrics_escape(s->label, sizeof(s->label), s->name);
	s->up = up != 0;
}

void
metrics_set_collector(void (*cb)(void *), void *arg)
{
	reg.collect = cb;
	reg.collect_arg = arg;
}

void
metrics_spool_set(struct metrics_route *r, uint64_t entries,
    uint64_t bytes, int64_t oldest_ms)
{
	if (r == NULL)
		return;
	r->spool_entries = entries;
	r->spool_bytes = bytes;
	r->spool_oldest_ms = entries != 0 ? oldest_ms : 0;
}

void
metrics_spool_event(struct metrics_route *r, enum metrics_spool_ev ev)
{
	if (r == NULL || (unsigned)ev >= METRICS_SPOOL_EV_COUNT)
		return;
	r->spool_events[ev]++;
}

void
metrics_device_opened(void)
{
	reg.device_open++;
	reg.device_total++;
}

void
metrics_device_closed(void)
{
	if (reg.device_open > 0)
		reg.device_open--;
}

void
metrics_reload(int ok, int64_t when_ms)
{
	if (ok)
		reg.reloads_ok++;
	else
		reg.reloads_failed++;
	reg.last_reload_ok = ok != 0;
	reg.last_reload_ms = when_ms != 0 ? when_ms : now_wall_ms();
}

/* ---- rendering ---- */

static int
metrics_family(struct evbuffer *out, const char *name, const char *type,
    const char *help)
{
	return evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
	    name, help, name, type) < 0 ? -1 : 0;
}

/* Seconds with millisecond precision, from a signed count of ms. */
#define MS_FMT      "%s%" PRId64 ".%03" PRId64
#define MS_ARG(ms)  (ms) < 0 ? "-" : "", \
	((ms) < 0 ? -(ms) : (ms)) / 1000, ((ms) < 0 ? -(ms) : (ms)) % 1000

static int
metrics_render_routes(struct evbuffer *out, int64_t now_ms)
{
	struct metrics_route *r;
	uint64_t cum;
	int64_t age;
	size_t i, k;
	int bad = 0;

#define EACH_ROUTE \
	for (i = 0; i < reg.nroutes && (r = reg.routes[i]) != NULL; i++)
#define LINE(...) do { if (evbuffer_add_printf(out, __VA_ARGS__) < 0) \
	bad = 1; } while (0)

	bad |= metrics_family(out, "tlsgate_route_configured", "gauge",
	    "1 when the route is in the configuration in force, 0 when a "
	    "reload removed it (its counters are kept).");
	EACH_ROUTE
		LINE("tlsgate_route_configured{route=\"%s\"} %d\n", r->label,
		    r->current);

	bad |= metrics_family(out, "tlsgate_requests_total", "counter",
	    "Requests finished, by route and response status class (none: "
	    "no response was sent).");
	EACH_ROUTE
		for (k = 0; k < METRICS_NCLASSES; k++)
			LINE("tlsgate_requests_total{route=\"%s\",class=\"%s\"}"
			    " %" PRIu64 "\n", r->label, metrics_class_names[k],
			    r->requests[k]);

	bad |= metrics_family(out, "tlsgate_request_duration_seconds",
	    "histogram", "Time from the first byte of a request to the last "
	    "byte of its response.");
	EACH_ROUTE {
		cum = 0;
		for (k = 0; k < METRICS_NBUCKETS; k++) {
			cum += r->buckets[k];
			LINE("tlsgate_request_duration_seconds_bucket{route="
			    "\"%s\",le=\"%s\"} %" PRIu64 "\n", r->label,
			    metrics_bounds_le[k], cum);
		}
		cum += r->buckets[METRICS_NBUCKETS];
		LINE("tlsgate_request_duration_seconds_bucket{route=\"%s\","
		    "le=\"+Inf\"} %" PRIu64 "\n", r->label, cum);
		LINE("tlsgate_request_duration_seconds_sum{route=\"%s\"} %"
		    PRIu64 ".%06" PRIu64 "\n", r->label,
		    r->duration_sum_us / 1000000, r->duration_sum_us % 1000000);
		LINE("tlsgate_request_duration_seconds_count{route=\"%s\"} %"
		    PRIu64 "\n", r->label, cum);
	}

	bad |= metrics_family(out, "tlsgate_uplink_bytes_total", "counter",
	    "Bytes received from (in) and sent to (out) the upstream, TLS "
	    "records and handshakes included.");
	EACH_ROUTE {
		LINE("tlsgate_uplink_bytes_total{route=\"%s\",direction=\"in\"}"
		    " %" PRIu64 "\n", r->label, r->bytes_in);
		LINE("tlsgate_uplink_bytes_total{route=\"%s\",direction="
		    "\"out\"} %" PRIu64 "\n", r->label, r->bytes_out);
	}

	bad |= metrics_family(out, "tlsgate_uplink_handshakes_total",
	    "counter", "Uplink TLS handshakes completed: full, or resumed "
	    "from a session ticket.");
	EACH_ROUTE {
		LINE("tlsgate_uplink_handshakes_total{route=\"%s\",kind="
		    "\"full\"} %" PRIu64 "\n", r->label, r->handshakes_full);
		LINE("tlsgate_uplink_handshakes_total{route=\"%s\",kind="
		    "\"resumed\"} %" PRIu64 "\n", r->label,
		    r->handshakes_resumed);
	}

	bad |= metrics_family(out, "tlsgate_upstream_errors_total", "counter",
	    "Upstream failures, by kind.");
	EACH_ROUTE
		for (k = 0; k < METRICS_UPERR_COUNT; k++)
			LINE("tlsgate_upstream_errors_total{route=\"%s\",kind="
			    "\"%s\"} %" PRIu64 "\n", r->label,
			    metrics_uperr_names[k], r->uperr[k]);

	bad |= metrics_family(out, "tlsgate_upstream_connections_open",
	    "gauge", "Upstream connections open: connecting, busy or idle.");
	EACH_ROUTE
		LINE("tlsgate_upstream_connections_open{route=\"%s\"} %"
		    PRId64 "\n", r->label, r->up_open);

	bad |= metrics_family(out, "tlsgate_upstream_connections_idle",
	    "gauge", "Upstream connections idle in the pool.");
	EACH_ROUTE
		LINE("tlsgate_upstream_connections_idle{route=\"%s\"} %"
		    PRId64 "\n", r->label, r->up_idle);

	bad |= metrics_family(out, "tlsgate_upstream_server_up", "gauge",
	    "1 when the server may take new connections, 0 while it is "
	    "marked down by failed connections or health checks.");
	EACH_ROUTE
		for (k = 0; k < r->nservers; k++)
			LINE("tlsgate_upstream_server_up{route=\"%s\",server="
			    "\"%s\"} %d\n", r->label, r->servers[k].label,
			    r->servers[k].up);

	bad |= metrics_family(out, "tlsgate_spool_entries", "gauge",
	    "Requests queued for store-and-forward.");
	EACH_ROUTE
		LINE("tlsgate_spool_entries{route=\"%s\"} %" PRIu64 "\n",
		    r->label, r->spool_entries);

	bad |= metrics_family(out, "tlsgate_spool_bytes", "gauge",
	    "Bytes on disk of the requests queued for store-and-forward.");
	EACH_ROUTE
		LINE("tlsgate_spool_bytes{route=\"%s\"} %" PRIu64 "\n",
		    r->label, r->spool_bytes);

	bad |= metrics_family(out, "tlsgate_spool_oldest_age_seconds",
	    "gauge", "Age of the oldest queued request (0 when none).");
	EACH_ROUTE {
		/* A wall clock stepped back must not show a negative age. */
		age = r->spool_entries == 0 ? 0 : now_ms - r->spool_oldest_ms;
		if (age < 0)
			age = 0;
		LINE("tlsgate_spool_oldest_age_seconds{route=\"%s\"} " MS_FMT
		    "\n", r->label, MS_ARG(age));
	}

	bad |= metrics_family(out, "tlsgate_spool_events_total", "counter",
	    "Store-and-forward events: requests queued, refused because the "
	    "spool was full, replayed (delivered), moved to dead/ and "
	    "damaged files set aside.");
	EACH_ROUTE
		for (k = 0; k < METRICS_SPOOL_EV_COUNT; k++)
			LINE("tlsgate_spool_events_total{route=\"%s\",event="
			    "\"%s\"} %" PRIu64 "\n", r->label,
			    metrics_spool_ev_names[k], r->spool_events[k]);
#undef EACH_ROUTE
#undef LINE
	return bad ? -1 : 0;
}

int
metrics_render(struct evbuffer *out, int64_t now_ms)
{
	int64_t last;
	size_t k;
	int bad = 0;

	if (now_ms == 0)
		now_ms = now_wall_ms();
	last = reg.last_reload_ms != 0 ? reg.last_reload_ms : reg.start_ms;
	if (reg.collect != NULL) {
		for (k = 0; k < reg.nroutes; k++) {
			reg.routes[k]->up_open = reg.routes[k]->up_idle = 0;
			reg.routes[k]->nservers = 0;
		}
		reg.collect(reg.collect_arg);
	}

	bad |= metrics_family(out, "tlsgate_build_info", "gauge",
	    "Always 1; the labels give the versions.");
	bad |= evbuffer_add_printf(out, "tlsgate_build_info{version=\"%s\","
	    "openssl=\"%s\",libevent=\"%s\"} 1\n", reg.version, reg.openssl,
	    reg.libevent) < 0;
	bad |= metrics_family(out, "tlsgate_start_time_seconds", "gauge",
	    "Start time of the process, in seconds since the epoch.");
	bad |= evbuffer_add_printf(out, "tlsgate_start_time_seconds " MS_FMT
	    "\n", MS_ARG(reg.start_ms)) < 0;
	bad |= metrics_family(out, "tlsgate_config_reloads_total", "counter",
	    "Configuration reloads, by result (failed: the old "
	    "configuration stayed in force).");
	bad |= evbuffer_add_printf(out, "tlsgate_config_reloads_total{result="
	    "\"ok\"} %" PRIu64 "\ntlsgate_config_reloads_total{result="
	    "\"failed\"} %" PRIu64 "\n", reg.reloads_ok,
	    reg.reloads_failed) < 0;
	bad |= metrics_family(out, "tlsgate_config_last_reload_success",
	    "gauge", "1 when the last reload succeeded (or none was tried).");
	bad |= evbuffer_add_printf(out, "tlsgate_config_last_reload_success "
	    "%d\n", reg.last_reload_ok) < 0;
	bad |= metrics_family(out,
	    "tlsgate_config_last_reload_timestamp_seconds", "gauge",
	    "Time of the last reload (the start time before any).");
	bad |= evbuffer_add_printf(out,
	    "tlsgate_config_last_reload_timestamp_seconds " MS_FMT "\n",
	    MS_ARG(last)) < 0;
	bad |= metrics_family(out, "tlsgate_device_connections_open", "gauge",
	    "Device connections open.");
	bad |= evbuffer_add_printf(out, "tlsgate_device_connections_open %"
	    PRIu64 "\n", reg.device_open) < 0;
	bad |= metrics_family(out, "tlsgate_device_connections_total",
	    "counter", "Device connections accepted.");
	bad |= evbuffer_add_printf(out, "tlsgate_device_connections_total %"
	    PRIu64 "\n", reg.device_total) < 0;
	bad |= metrics_family(out, "tlsgate_unrouted_requests_total",
	    "counter", "Requests no route took (no match, or refused before "
	    "one could be chosen), by response status class.");
	for (k = 0; k < METRICS_NCLASSES; k++)
		bad |= evbuffer_add_printf(out, "tlsgate_unrouted_requests_total"
		    "{class=\"%s\"} %" PRIu64 "\n", metrics_class_names[k],
		    reg.unrouted[k]) < 0;
	bad |= metrics_render_routes(out, now_ms);
	if (bad)
		log_warnx("metrics: out of memory while rendering");
	return bad ? -1 : 0;
}

/* ---- endpoint ---- */

static void
metrics_accept_error(struct evconnlistener *lev, void *arg)
{
	(void)lev;
	(void)arg;
	log_warn("metrics: accept");
}

static void
metrics_accept(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct metrics_conn *c;
	struct timeval tv = {
		METRICS_IO_TIMEOUT_MS / 1000,
		(METRICS_IO_TIMEOUT_MS % 1000) * 1000
	};

	(void)sa;
	(void)salen;
	(void)arg;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warnx("metrics: out of memory for a connection");
		evutil_closesocket(fd);
		return;
	}
	c->bev = bufferevent_socket_new(ep.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		log_warnx("metrics: cannot set up a connection");
		evutil_closesocket(fd);
		free(c);
		return;
	}
	c->phase_ms = now_mono_ms();
	bufferevent_setcb(c->bev, metrics_conn_read, metrics_conn_write,
	    metrics_conn_event, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	/* Never buffer more than one head (plus what one read brings). */
	bufferevent_setwatermark(c->bev, EV_READ, 0, METRICS_MAX_HEAD + 1);
	bufferevent_enable(c->bev, EV_READ);
	c->next = ep.conns;
	if (ep.conns != NULL)
		ep.conns->prev = c;
	ep.conns = c;
	/* At the limit, stop accepting rather than accept and drop: the
	   kernel queues the next scrape until a connection ends. */
	if (++ep.nconns >= METRICS_MAX_CONNS) {
		evconnlistener_disable(lev);
		ep.paused = 1;
	}
}

static void
metrics_conn_close(struct metrics_conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ep.conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	bufferevent_free(c->bev);
	free(c);
	ep.nconns--;
	if (ep.paused && ep.nconns < METRICS_MAX_CONNS && ep.lev != NULL) {
		evconnlistener_enable(ep.lev);
		ep.paused = 0;
	}
}

/* Queues a complete response with status `status` and Connection: close;
   `body` 0 for HEAD (RFC 9110 §9.3.2: the same header fields, no body). */
static void
metrics_conn_respond(struct metrics_conn *c, int status, int body)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer *text;
	const char *type = "text/plain; charset=utf-8";
	int bad = 0;

	if ((text = evbuffer_new()) == NULL) {
		log_warnx("metrics: out of memory for a response");
		metrics_conn_close(c);
		return;
	}
	if (status == 200) {
		type = METRICS_CONTENT_TYPE;
		if (metrics_render(text, 0) == -1) {
			status = 500;
			evbuffer_drain(text, evbuffer_get_length(text));
		}
	}
	if (status != 200)
		bad |= evbuffer_add_printf(text, "%s\n",
		    http1_reason(status)) < 0;
	bad |= evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\nContent-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n", status,
	    http1_reason(status), type, evbuffer_get_length(text),
	    status == 405 ? "Allow: GET, HEAD\r\n" : "") < 0;
	if (body)
		bad |= evbuffer_add_buffer(out, text);
	evbuffer_free(text);
	if (bad) {
		log_warnx("metrics: out of memory for a response");
		metrics_conn_close(c);
		return;
	}
	c->answered = 1;
	c->phase_ms = now_mono_ms();
	/* Bytes the client sent beyond the head are read and dropped until
	   it closes, so that closing never resets the connection under the
	   response it has not read yet. */
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
}

static void
metrics_conn_read(struct bufferevent *bev, void *arg)
{
	struct metrics_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct http1_request *req = &metrics_req;
	const char *head;
	size_t len, plen;
	long n;

	/* The idle timeouts reset on every byte: a client that trickles
	   bytes is bounded by this deadline on each phase instead. */
	if (now_mono_ms() - c->phase_ms > METRICS_IO_TIMEOUT_MS) {
		log_debug("metrics: connection too slow, closed");
		metrics_conn_close(c);
		return;
	}
	if (c->answered) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	len = evbuffer_get_length(in);
	if (len > METRICS_MAX_HEAD + 1)
		len = METRICS_MAX_HEAD + 1;
	if ((head = (const char *)evbuffer_pullup(in, len)) == NULL) {
		log_warnx("metrics: out of memory reading a request");
		metrics_conn_close(c);
		return;
	}
	n = http1_parse_request(head, len, METRICS_MAX_HEAD, req);
	if (n == 0 && len > METRICS_MAX_HEAD)
		n = -431;           /* the parser wants more than we allow */
	if (n == 0)
		return;
	if (n < 0) {
		log_debug("metrics: request refused with %ld", -n);
		metrics_conn_respond(c, (int)-n, 1);
		return;
	}
	/* RFC 9110 §9.1: method names are case-sensitive. */
	if (!(req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0) &&
	    !(req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0)) {
		metrics_conn_respond(c, 405, 1);
		return;
	}
	plen = 0;
	while (plen < req->path.len && req->path.p[plen] != '?')
		plen++;
	if (plen != strlen(METRICS_PATH) ||
	    memcmp(req->path.p, METRICS_PATH, plen) != 0) {
		metrics_conn_respond(c, 404, req->method.len == 3);
		return;
	}
	metrics_conn_respond(c, 200, req->method.len == 3);
}

/* The response has left: half-close, then wait for the client's FIN (or
   the timeout) while dropping its bytes. */
static void
metrics_conn_write(struct bufferevent *bev, void *arg)
{
	struct metrics_conn *c = arg;

	if (!c->answered || evbuffer_get_length(bufferevent_get_output(bev)))
		return;
	if (c->eof || shutdown(bufferevent_getfd(bev), SHUT_WR) == -1) {
		metrics_conn_close(c);
		return;
	}
	bufferevent_disable(bev, EV_WRITE);
}

static void
metrics_conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct metrics_conn *c = arg;

	/* A client may half-close after its request (RFC 9112 §9.6): the
	   response still goes out. */
	if ((what & BEV_EVENT_EOF) && c->answered &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		c->eof = 1;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("metrics: connection timed out");
	metrics_conn_close(c);
}

/* "a.b.c.d:port" or "[v6]:port", port 0..65535 (0: any free port); the
   port is required.  libevent's parser refuses port 0, which the tests
   need. */
static int
metrics_parse_addr(const char *s, struct sockaddr_storage *ss, int *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char host[INET6_ADDRSTRLEN + 1], *end;
	const char *colon = strrchr(s, ':');
	size_t hlen;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (colon == NULL || colon[1] < '0' || colon[1] > '9')
		return -1;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || errno != 0 || port < 0 || port > 65535)
		return -1;
	if (s[0] == '[') {
		hlen = (size_t)(colon - s) - 2;
		if (colon - s < 2 || colon[-1] != ']' || hlen >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (evutil_inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = (int)sizeof(*sin6);
		return 0;
	}
	hlen = (size_t)(colon - s);
	if (hlen >= sizeof(host))
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (evutil_inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*len = (int)sizeof(*sin);
	return 0;
}

int
metrics_listen_start(struct event_base *base, const char *addr_port,
    char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int len;
	int rc = -1;

	if (ep.lev != NULL) {
		snprintf(err, errlen, "metrics endpoint already running");
		goto out;
	}
	if (metrics_parse_addr(addr_port, &ss, &len) == -1) {
		snprintf(err, errlen, "metrics_listen %s: expected "
		    "IPv4:port or [IPv6]:port", addr_port);
		goto out;
	}
	ep.base = base;
	ep.lev = evconnlistener_new_bind(base, metrics_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	    METRICS_BACKLOG, (struct sockaddr *)&ss, len);
	if (ep.lev == NULL) {
		snprintf(err, errlen, "metrics_listen %s: %s", addr_port,
		    strerror(errno));
		goto out;
	}
	evconnlistener_set_error_cb(ep.lev, metrics_accept_error);
	if (getsockname(evconnlistener_get_fd(ep.lev), (struct sockaddr *)&ss,
	    &sslen) == -1) {
		snprintf(err, errlen, "metrics_listen %s: getsockname: %s",
		    addr_port, strerror(errno));
		evconnlistener_free(ep.lev);
		ep.lev = NULL;
		goto out;
	}
	ep.port = ss.ss_family == AF_INET6 ?
	    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
	    ntohs(((struct sockaddr_in *)&ss)->sin_port);
	ep.paused = 0;
	rc = 0;
out:
	return rc;
}

int
metrics_listen_port(void)
{
	return ep.lev != NULL ? ep.port : -1;
}

void
metrics_listen_stop(void)
{
	if (ep.lev != NULL) {
		evconnlistener_free(ep.lev);
		ep.lev = NULL;
	}
	while (ep.conns != NULL)
		metrics_conn_close(ep.conns);
	ep.port = -1;
	ep.paused = 0;
}
