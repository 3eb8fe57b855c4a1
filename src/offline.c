/*
 * offline: the spools of store-and-forward routes and their senders.
 *
 * A sender is a small state machine driven by one timer and the callbacks
 * of one uplink connection at a time:
 *
 *   IDLE --put/kick--> WAIT --timer--> CONNECTING --> SENT --> (verdict)
 *                        ^                                       |
 *                        +------- paced (2xx, dead) or backoff --+
 *
 * The oldest entry is always the one replayed, and it is removed only
 * after its verdict, so a failure or a crash at any point replays the
 * same entry again (same id): delivery is at least once, never out of
 * order.
 */
#include <sys/stat.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "now.h"
#include "offline.h"
#include "upstream.h"

enum sender_state {
	SENDER_IDLE,          /* nothing queued (or not known yet) */
	SENDER_WAIT,          /* timer armed: pacing or backoff */
	SENDER_CONNECTING,    /* uplink being opened */
	SENDER_SENT,          /* request written, reading the response */
};

struct sender {
	char *dir;                      /* spool_dir: identifies the spool */
	struct spool *sp;
	const struct route *route;      /* of off.cfg */
	struct upstream *up;
	struct event *timer;
	enum sender_state state;
	struct upconn *conn;            /* CONNECTING or SENT */
	int fresh;                      /* this attempt must not reuse */

	/* The entry being replayed (CONNECTING, SENT). */
	struct spool_entry ent;
	int have_ent;

	/* The response being read (SENT). */
	int got_bytes;                  /* a response byte arrived */
	int head_done;
	int status;
	int keep;                       /* the server keeps the connection */
	enum http1_framing framing;
	uint64_t left;
	struct http1_chunked chunk;
	uint64_t body_read;
	long retry_after;               /* -1 when absent */
	struct evbuffer *resp;          /* first SPOOL_MAX_RESPONSE bytes */

	int64_t backoff_ms;             /* current wait after failures */
	int64_t last_start_ms;          /* monotonic: last attempt began */
	uint64_t run_replayed;          /* since the queue was last empty */
	uint64_t run_dead;
	int64_t run_start_ms;
	uint64_t corrupt_seen;          /* spool counter already reported */
};

/* The one instance (see offline.h). */
static struct {
	struct event_base *base;
	struct evdns_base *dns;
	struct config *cfg;             /* reference held */
	struct sender **senders;
	size_t nsenders;
} off;

static int offline_mkparents(const char *, char *, size_t);
static struct sender *offline_find(const struct route *);
static struct sender *sender_new(const struct route *, struct spool *,
    char *, size_t);
static void sender_free(struct sender *, int);
static void sender_cancel(struct sender *);
static void sender_schedule(struct sender *, int64_t);
static void sender_timer(evutil_socket_t, short, void *);
static void sender_start(struct sender *);
static void sender_connected(struct upconn *, const char *, void *);
static void sender_attach(struct sender *, struct upconn *);
static int sender_request(struct sender *, struct evbuffer *);
static void sender_read(struct bufferevent *, void *);
static void sender_event(struct bufferevent *, short, void *);
static void sender_body(struct sender *, struct evbuffer *);
static void sender_keep_resp(struct sender *, const void *, size_t);
static void sender_complete(struct sender *, int);
static void sender_failed(struct sender *, const char *);
static void sender_verdict(struct sender *);
static void sender_retry(struct sender *, const char *);
static void sender_next(struct sender *);
static void sender_metrics(struct sender *);
static void sender_release_conn(struct sender *, int);

/* ---- pure helpers ---- */

int
offline_longpoll(const char *path, size_t len)
{
	const char *q, *end = path + len, *p;

	if ((q = memchr(path, '?', len)) == NULL)
		return 0;
	/* RFC 3986 §3.4: the query is '&'-separated name=value pairs by
	 * the convention Drogue Cloud (and HTML forms) follow. */
	for (p = q + 1; p < end; ) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp != NULL ? amp : end;

		if (stop - p >= 2 && p[0] == 'c' && p[1] == 't' &&
		    (stop - p == 2 || p[2] == '='))
			return 1;
		p = stop + 1;
	}
	return 0;
}

uint64_t
offline_max_body(uint64_t max_body_size)
{
	if (max_body_size == 0 || max_body_size > SPOOL_MAX_BODY)
		return SPOOL_MAX_BODY;
	return max_body_size;
}

int
offline_eligible(const struct route *r, const char *method,
    size_t method_len, const char *path, size_t path_len,
    enum http1_framing framing, uint64_t content_length,
    uint64_t max_body_size)
{
	if (r == NULL || !r->offline_queue)
		return 0;
	/* Method names are case-sensitive (RFC 9110 §9.1).  Only POST:
	 * telemetry, and the one method whose retry by a device is not
	 * already safe (RFC 9110 §9.2.2). */
	if (method_len != 4 || memcmp(method, "POST", 4) != 0)
		return 0;
	if (offline_longpoll(path, path_len))
		return 0;
	if (framing == HTTP1_BODY_CHUNKED)
		return 1;
	return framing == HTTP1_BODY_LENGTH &&
	    content_length <= offline_max_body(max_body_size);
}

int
offline_status_queues(int status)
{
	/* RFC 9110 §15.6.3-5: the gateway's upstream failed, is
	 * unavailable, or timed out; the request was not processed. */
	return status == 502 || status == 503 || status == 504;
}

enum offline_verdict
offline_verdict(int status)
{
	if (status >= 200 && status <= 299)
		return OFFLINE_ACK;
	/* RFC 9110 §15.5.9 (408) and RFC 6585 §4 (429) invite a retry;
	 * every other 4xx says the request itself is wrong. */
	if (status >= 400 && status <= 499 && status != 408 && status != 429)
		return OFFLINE_DEAD;
	return OFFLINE_RETRY;
}

int64_t
offline_backoff(int64_t prev_ms, long retry_after)
{
	int64_t ms;

	if (retry_after >= 0) {
		ms = (int64_t)retry_after * 1000;
		if (ms < OFFLINE_BACKOFF_MIN_MS)
			ms = OFFLINE_BACKOFF_MIN_MS;
		if (ms > (int64_t)OFFLINE_RETRY_AFTER_MAX * 1000)
			ms = (int64_t)OFFLINE_RETRY_AFTER_MAX * 1000;
		return ms;
	}
	if (prev_ms < OFFLINE_BACKOFF_MIN_MS)
		return OFFLINE_BACKOFF_MIN_MS;
	ms = prev_ms * 2;
	return ms > OFFLINE_BACKOFF_MAX_MS ? OFFLINE_BACKOFF_MAX_MS : ms;
}

long
offline_parse_retry_after(const char *v, size_t len)
{
	long n = 0;
	size_t i;

	/* RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds, and
	 * delay-seconds = 1*DIGIT.  A date needs a clock we cannot trust
	 * on a Pi without RTC: the backoff applies instead. */
	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (n < OFFLINE_RETRY_AFTER_MAX)
			n = n * 10 + (v[i] - '0');
	}
	return n > OFFLINE_RETRY_AFTER_MAX ? OFFLINE_RETRY_AFTER_MAX : n;
}

/* ---- set-up, reload ---- */

/*
 * Creates the missing parents of `dir` with mode 0700 (spool_open()
 * creates the directory itself).  Existing ones are left as they are.
 */
static int
offline_mkparents(const char *dir, char *err, size_t errlen)
{
	char *p, *s, c;
	int rc = -1;

	if ((p = strdup(dir)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((s = strrchr(p, '/')) == NULL || s == p) {
		rc = 0;
		goto out;
	}
	*s = '\0';
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		c = *s;
		*s = '\0';
		if (mkdir(p, 0700) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "cannot create %s: %s", p,
			    strerror(errno));
			goto out;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	rc = 0;
out:
	free(p);
	return rc;
}

/* The sender of the spool of `r`, by spool_dir, or NULL. */
static struct sender *
offline_find(const struct route *r)
{
	size_t i;

	if (r == NULL || !r->offline_queue || r->spool_dir == NULL)
		return NULL;
	for (i = 0; i < off.nsenders; i++)
		if (strcmp(off.senders[i]->dir, r->spool_dir) == 0)
			return off.senders[i];
	return NULL;
}

/*
 * A sender for route `r` over spool `sp` (opened by the caller, or NULL
 * to open it here).  Returns NULL with err set; `sp` is then still the
 * caller's.
 */
static struct sender *
sender_new(const struct route *r, struct spool *sp, char *err,
    size_t errlen)
{
	struct sender *s;
	char e[256];

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->dir = strdup(r->spool_dir)) == NULL ||
	    (s->resp = evbuffer_new()) == NULL ||
	    (s->timer = evtimer_new(off.base, sender_timer, s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->route = r;
	s->retry_after = -1;
	if ((s->up = upstream_new(r, off.base, off.dns, NULL, err,
	    errlen)) == NULL)
		goto fail;
	/* The proxy's uplink of the route runs its health checks already;
	 * a second set would double them on a metered link.  The sender
	 * backs off on failures of its own. */
	upstream_passive(s->up);
	if (sp == NULL) {
		if (offline_mkparents(r->spool_dir, e, sizeof(e)) == -1) {
			snprintf(err, errlen, "route %s: spool_dir %s: %s",
			    r->name, r->spool_dir, e);
			goto fail;
		}
		if ((sp = spool_open(r->spool_dir, r->spool_max_bytes, 0, e,
		    sizeof(e))) == NULL) {
			snprintf(err, errlen, "route %s: cannot open the "
			    "spool: %s", r->name, e);
			goto fail;
		}
	}
	s->sp = sp;
	return s;
fail:
	if (s != NULL) {
		s->sp = NULL;
		sender_free(s, 0);
	}
	return NULL;
}

/* Frees `s`; closes its spool when `close_spool`. */
static void
sender_free(struct sender *s, int close_spool)
{
	if (s == NULL)
		return;
	sender_cancel(s);
	if (s->timer != NULL)
		event_free(s->timer);
	upstream_free(s->up);
	if (close_spool)
		spool_close(s->sp);
	if (s->resp != NULL)
		evbuffer_free(s->resp);
	free(s->dir);
	free(s);
}

/* Abandons the attempt in flight (the entry stays queued). */
static void
sender_cancel(struct sender *s)
{
	sender_release_conn(s, 0);
	if (s->have_ent) {
		spool_entry_free(&s->ent);
		s->have_ent = 0;
	}
	if (s->timer != NULL)
		evtimer_del(s->timer);
	s->state = SENDER_IDLE;
}

/*
 * Builds the senders of cfg's offline routes into *out, reusing the open
 * spool of `old` senders with the same directory (their sp is then moved:
 * set to NULL in `old`).  On failure, everything new is closed and `old`
 * is untouched.
 */
static int
offline_build(struct config *cfg, struct sender **old, size_t nold,
    struct sender ***out, size_t *nout, char *err, size_t errlen)
{
	struct sender **ss;
	struct spool **kept;
	size_t i, j, n = 0;

	if ((ss = calloc(cfg->nroutes + 1, sizeof(*ss))) == NULL ||
	    (kept = calloc(cfg->nroutes + 1, sizeof(*kept))) == NULL) {
		free(ss);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < cfg->nroutes; i++) {
		const struct route *r = &cfg->routes[i];
		struct spool *sp = NULL;
		uint64_t seen = 0;

		if (!r->offline_queue || r->spool_dir == NULL)
			continue;
		for (j = 0; j < nold; j++)
			if (old[j]->sp != NULL &&
			    strcmp(old[j]->dir, r->spool_dir) == 0) {
				sp = old[j]->sp;
				seen = old[j]->corrupt_seen;
			}
		if ((ss[n] = sender_new(r, sp, err, errlen)) == NULL)
			goto fail;
		/* Files set aside at the open count once, a kept spool's
		 * earlier ones not again. */
		ss[n]->corrupt_seen = seen;
		kept[n] = sp;
		n++;
	}
	/* Commit: the kept spools now belong to the new senders. */
	for (i = 0; i < n; i++)
		for (j = 0; j < nold; j++)
			if (kept[i] != NULL && old[j]->sp == kept[i])
				old[j]->sp = NULL;
	free(kept);
	*out = ss;
	*nout = n;
	return 0;
fail:
	for (i = 0; i < n; i++) {
		if (kept[i] != NULL)
			ss[i]->sp = NULL;
		sender_free(ss[i], 1);
	}
	free(kept);
	free(ss);
	return -1;
}

/* Publishes the gauges and starts the senders that have work. */
static void
offline_start_all(void)
{
	size_t i, depth;

	for (i = 0; i < off.nsenders; i++) {
		struct sender *s = off.senders[i];

		sender_metrics(s);
		spool_stats(s->sp, &depth, NULL, NULL);
		log_info("route %s: offline queue in %s: %zu queued, up to "
		    "%d replays/s", s->route->name, s->dir, depth,
		    s->route->spool_rate);
		if (depth > 0)
			sender_schedule(s, 0);
	}
}

int
offline_init(struct event_base *base, struct evdns_base *dns,
    struct config *cfg, char *err, size_t errlen)
{
	off.base = base;
	off.dns = dns;
	if (offline_build(cfg, NULL, 0, &off.senders, &off.nsenders, err,
	    errlen) == -1)
		return -1;
	off.cfg = config_ref(cfg);
	offline_start_all();
	return 0;
}

int
offline_reload(struct config *cfg, char *err, size_t errlen)
{
	struct sender **ss;
	size_t n, i;

	if (off.cfg == NULL) {
		snprintf(err, errlen, "offline queue not initialised");
		return -1;
	}
	if (offline_build(cfg, off.senders, off.nsenders, &ss, &n, err,
	    errlen) == -1)
		return -1;
	/* Senders whose spool moved on only lose their attempt in flight;
	 * the others close their spool. */
	for (i = 0; i < off.nsenders; i++) {
		if (off.senders[i]->sp == NULL)
			sender_free(off.senders[i], 0);
		else {
			log_info("route %s: offline queue in %s closed",
			    off.senders[i]->route->name,
			    off.senders[i]->dir);
			sender_free(off.senders[i], 1);
		}
	}
	free(off.senders);
	off.senders = ss;
	off.nsenders = n;
	config_unref(off.cfg);
	off.cfg = config_ref(cfg);
	offline_start_all();
	return 0;
}

void
offline_free(void)
{
	size_t i;

	for (i = 0; i < off.nsenders; i++)
		sender_free(off.senders[i], 1);
	free(off.senders);
	off.senders = NULL;
	off.nsenders = 0;
	config_unref(off.cfg);
	off.cfg = NULL;
}

/* ---- used by the proxy ---- */

int
offline_enabled(const struct route *r)
{
	return offline_find(r) != NULL;
}

int
offline_backlog(const struct route *r)
{
	struct sender *s;
	size_t depth;

	if ((s = offline_find(r)) == NULL)
		return 0;
	spool_stats(s->sp, &depth, NULL, NULL);
	return depth > 0 || s->state == SENDER_CONNECTING ||
	    s->state == SENDER_SENT;
}

int
offline_put(const struct route *r, const struct spool_entry_in *e,
    char id_out[SPOOL_ID_SIZE])
{
	struct spool_entry_in in;
	struct sender *s;
	int rc;

	if ((s = offline_find(r)) == NULL) {
		log_warnx("route %s: no offline queue open", r->name);
		return -1;
	}
	in = *e;
	in.route = s->route->name;
	rc = spool_put(s->sp, &in, id_out);
	if (rc == SPOOL_FULL) {
		metrics_spool_event(metrics_route(s->route->name),
		    METRICS_SPOOL_FULL);
		log_warnx("route %s: offline queue full (spool_max_bytes %"
		    PRIu64 "): request refused with 503", s->route->name,
		    s->route->spool_max_bytes);
		return SPOOL_FULL;
	}
	if (rc == -1)
		return -1;
	metrics_spool_event(metrics_route(s->route->name),
	    METRICS_SPOOL_QUEUED);
	sender_metrics(s);
	if (s->state == SENDER_IDLE)
		sender_schedule(s, 0);
	return 0;
}

int
offline_full_retry_after(const struct route *r)
{
	struct sender *s;
	size_t depth;
	uint64_t secs;

	if ((s = offline_find(r)) == NULL)
		return OFFLINE_FULL_RETRY_AFTER;
	spool_stats(s->sp, &depth, NULL, NULL);
	secs = depth / (uint64_t)(s->route->spool_rate > 0 ?
	    s->route->spool_rate : 1);
	if (secs < OFFLINE_FULL_RETRY_AFTER)
		return OFFLINE_FULL_RETRY_AFTER;
	return secs > OFFLINE_RETRY_AFTER_MAX ? OFFLINE_RETRY_AFTER_MAX :
	    (int)secs;
}

void
offline_kick(const struct route *r)
{
	struct sender *s;
	int64_t now, at;

	if ((s = offline_find(r)) == NULL || s->state != SENDER_WAIT ||
	    s->backoff_ms == 0)
		return;
	/* At most one early attempt a second, however busy live traffic
	 * is; a failure doubles the backoff as before. */
	now = now_mono_ms();
	at = s->last_start_ms + OFFLINE_BACKOFF_MIN_MS;
	sender_schedule(s, at > now ? at - now : 0);
}

/* ---- the sender ---- */

static void
sender_metrics(struct sender *s)
{
	struct metrics_route *m = metrics_route(s->route->name);
	struct spool_counters c;
	uint64_t bytes, age;
	size_t depth;

	spool_counters(s->sp, &c);
	for (; s->corrupt_seen < c.corrupt; s->corrupt_seen++)
		metrics_spool_event(m, METRICS_SPOOL_CORRUPT);
	spool_stats(s->sp, &depth, &bytes, &age);
	metrics_spool_set(m, depth, bytes,
	    now_wall_ms() - (int64_t)age * 1000);
}

static void
sender_schedule(struct sender *s, int64_t delay_ms)
{
	struct timeval tv;

	if (delay_ms < 0)
		delay_ms = 0;
	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000;
	s->state = SENDER_WAIT;
	evtimer_add(s->timer, &tv);
}

static void
sender_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sender *s = arg;

	(void)fd;
	(void)what;
	sender_start(s);
}

/* Loads the oldest entry and sends it on a pooled or new connection. */
static void
sender_start(struct sender *s)
{
	struct upconn *c;
	char err[UPSTREAM_ERRLEN];
	int rc;

	s->state = SENDER_IDLE;
	if (!s->have_ent) {
		rc = spool_peek_oldest(s->sp, &s->ent);
		sender_metrics(s);
		if (rc == SPOOL_EMPTY) {
			if (s->run_replayed + s->run_dead > 0)
				log_info("route %s: offline queue drained: %"
				    PRIu64 " replayed, %" PRIu64 " dead "
				    "letters in %" PRId64 " s",
				    s->route->name, s->run_replayed,
				    s->run_dead, (now_mono_ms() -
				    s->run_start_ms) / 1000);
			s->run_replayed = s->run_dead = 0;
			s->backoff_ms = 0;
			return;
		}
		if (rc == -1) {
			sender_retry(s, "spool read error");
			return;
		}
		s->have_ent = 1;
		if (s->run_replayed + s->run_dead == 0)
			s->run_start_ms = now_mono_ms();
	}
	s->last_start_ms = now_mono_ms();
	if (!s->fresh && (c = upstream_get(s->up)) != NULL) {
		sender_attach(s, c);
		return;
	}
	s->fresh = 0;
	s->state = SENDER_CONNECTING;
	s->conn = upstream_connect(s->up, sender_connected, s, err,
	    sizeof(err));
	if (s->conn == NULL)
		sender_retry(s, err);
}

static void
sender_connected(struct upconn *c, const char *err, void *arg)
{
	struct sender *s = arg;

	s->conn = NULL;
	if (c == NULL) {
		sender_retry(s, err);
		return;
	}
	sender_attach(s, c);
}

/*
 * The replay: "METHOD path HTTP/1.1", Host for the route as configured
 * now, the stored header lines (rewritten by the proxy when queued) but
 * any Host or id of their own, the id, Content-Length and the body.
 */
static int
sender_request(struct sender *s, struct evbuffer *out)
{
	const char *p = s->ent.headers, *end = p + s->ent.headers_len, *eol;
	size_t n;
	int rc = 0;

	rc |= evbuffer_add(out, s->ent.method, s->ent.method_len);
	rc |= evbuffer_add(out, " ", 1);
	rc |= evbuffer_add(out, s->ent.path, s->ent.path_len);
	rc |= evbuffer_add_printf(out, " HTTP/1.1\r\nHost: %s\r\n",
	    s->route->host) < 0;
	while (p < end) {
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			eol = end - 1;
		n = (size_t)(eol - p) + 1;
		if (!(n >= 5 && strncasecmp(p, "host:", 5) == 0) &&
		    !(n > sizeof(OFFLINE_ID_HEADER) && strncasecmp(p,
		    OFFLINE_ID_HEADER ":", sizeof(OFFLINE_ID_HEADER)) == 0))
			rc |= evbuffer_add(out, p, n);
		p += n;
	}
	rc |= evbuffer_add_printf(out, OFFLINE_ID_HEADER ": %s\r\n"
	    "Content-Length: %zu\r\n\r\n", s->ent.id, s->ent.body_len) < 0;
	rc |= evbuffer_add(out, s->ent.body, s->ent.body_len);
	return rc ? -1 : 0;
}

static void
sender_attach(struct sender *s, struct upconn *c)
{
	struct bufferevent *bev = upstream_bev(c);
	struct timeval ut = { s->route->upstream_timeout, 0 };

	s->conn = c;
	s->state = SENDER_SENT;
	s->got_bytes = 0;
	s->head_done = 0;
	s->status = 0;
	s->keep = 0;
	s->body_read = 0;
	s->retry_after = -1;
	evbuffer_drain(s->resp, evbuffer_get_length(s->resp));
	bufferevent_setcb(bev, sender_read, NULL, sender_event, s);
	bufferevent_setwatermark(bev, EV_READ, 0, 0);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	/* upstream_timeout: for the whole request, then between response
	 * bytes, as for live traffic. */
	bufferevent_set_timeouts(bev, &ut, &ut);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (sender_request(s, bufferevent_get_output(bev)) == -1) {
		sender_failed(s, "out of memory");
		return;
	}
	log_debug("route %s: replaying %s (%s connection)", s->route->name,
	    s->ent.id, upstream_tls_mode(c));
}

/* Keeps the first SPOOL_MAX_RESPONSE bytes of the response for dead/. */
static void
sender_keep_resp(struct sender *s, const void *p, size_t n)
{
	size_t have = evbuffer_get_length(s->resp);

	if (have >= SPOOL_MAX_RESPONSE)
		return;
	if (n > SPOOL_MAX_RESPONSE - have)
		n = SPOOL_MAX_RESPONSE - have;
	evbuffer_add(s->resp, p, n);
}

static void
sender_read(struct bufferevent *bev, void *arg)
{
	struct sender *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct http1_response resp;
	size_t len, n, max = (size_t)off.cfg->max_header_size;
	const char *p;
	long rc;
	int i;

	if (evbuffer_get_length(in) > 0)
		s->got_bytes = 1;
	while (!s->head_done) {
		if ((len = evbuffer_get_length(in)) == 0)
			return;
		n = len > max + 1 ? max + 1 : len;
		if ((p = (const char *)evbuffer_pullup(in, (ssize_t)n)) ==
		    NULL) {
			sender_failed(s, "out of memory");
			return;
		}
		rc = http1_parse_response(p, n, max, 0, &resp);
		if (rc == 0 && n > max)
			rc = -502;
		if (rc == 0)
			return;
		if (rc < 0) {
			sender_failed(s, "malformed response");
			return;
		}
		if (resp.status < 200) {
			/* RFC 9110 §15.2: interim, the final one follows. */
			evbuffer_drain(in, (size_t)rc);
			continue;
		}
		s->status = resp.status;
		s->framing = resp.framing;
		s->left = resp.content_length;
		s->keep = resp.keep_alive &&
		    resp.framing != HTTP1_BODY_CLOSE;
		http1_chunked_init(&s->chunk);
		if ((i = http1_find_header(resp.headers, resp.nheaders, 0,
		    "Retry-After")) >= 0)
			s->retry_after = offline_parse_retry_after(
			    resp.headers[i].value.p,
			    resp.headers[i].value.len);
		sender_keep_resp(s, p, (size_t)rc);
		evbuffer_drain(in, (size_t)rc);
		s->head_done = 1;
	}
	sender_body(s, in);
}

/* Reads (and keeps the start of) the response body until it ends. */
static void
sender_body(struct sender *s, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	enum http1_chunk_status st;
	size_t n, used, doff, dlen;

	for (;;) {
		if (s->framing == HTTP1_BODY_NONE ||
		    (s->framing == HTTP1_BODY_LENGTH && s->left == 0)) {
			sender_complete(s, s->keep);
			return;
		}
		if (s->body_read > OFFLINE_MAX_RESPONSE_BODY) {
			/* The verdict needs only the status. */
			sender_complete(s, 0);
			return;
		}
		if ((n = evbuffer_get_length(in)) == 0)
			return;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		n = v.iov_len;
		if (s->framing == HTTP1_BODY_LENGTH) {
			if (n > s->left)
				n = (size_t)s->left;
			s->left -= n;
		} else if (s->framing == HTTP1_BODY_CHUNKED) {
			st = http1_chunked_feed(&s->chunk, v.iov_base, n,
			    &used, &doff, &dlen);
			if (st == HTTP1_CHUNK_ERROR) {
				sender_failed(s, "malformed chunked response");
				return;
			}
			n = used;
			if (st == HTTP1_CHUNK_DONE) {
				sender_keep_resp(s, v.iov_base, n);
				evbuffer_drain(in, n);
				sender_complete(s, s->keep);
				return;
			}
		}
		/* HTTP1_BODY_CLOSE: everything until the close. */
		sender_keep_resp(s, v.iov_base, n);
		evbuffer_drain(in, n);
		s->body_read += n;
	}
}

static void
sender_event(struct bufferevent *bev, short what, void *arg)
{
	struct sender *s = arg;
	char err[UPSTREAM_ERRLEN];

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT) {
		sender_failed(s, "upstream timeout");
		return;
	}
	if ((what & BEV_EVENT_EOF) && s->head_done &&
	    s->framing == HTTP1_BODY_CLOSE) {
		/* RFC 9112 §6.3 (8): the close ends this body. */
		sender_complete(s, 0);
		return;
	}
	if ((what & BEV_EVENT_EOF) && s->head_done) {
		/* A truncated body: the status is known, keep it. */
		sender_complete(s, 0);
		return;
	}
	if (what & BEV_EVENT_EOF)
		snprintf(err, sizeof(err), "upstream closed connection");
	else
		upstream_error(s->conn, err, sizeof(err));
	/* A pooled connection the server had closed while idle: try once
	 * more at once on a new one. */
	if (upstream_reused(s->conn) && !s->got_bytes) {
		sender_release_conn(s, 0);
		s->fresh = 1;
		log_debug("route %s: reused connection failed (%s), replaying "
		    "on a new one", s->route->name, err);
		sender_start(s);
		return;
	}
	sender_failed(s, err);
}

static void
sender_release_conn(struct sender *s, int reuse)
{
	if (s->conn == NULL)
		return;
	if (s->state == SENDER_SENT) {
		bufferevent_setcb(upstream_bev(s->conn), NULL, NULL, NULL,
		    NULL);
		if (reuse)
			upstream_release(s->conn);
		else
			upstream_close(s->conn);
	} else
		upstream_close(s->conn);
	s->conn = NULL;
}

/* The response is complete (or enough of it was read). */
static void
sender_complete(struct sender *s, int reuse)
{
	sender_release_conn(s, reuse);
	sender_verdict(s);
}

static void
sender_failed(struct sender *s, const char *why)
{
	sender_release_conn(s, 0);
	sender_retry(s, why);
}

static void
sender_verdict(struct sender *s)
{
	struct evbuffer *r = s->resp;
	size_t depth, len = evbuffer_get_length(r);
	char why[64];

	switch (offline_verdict(s->status)) {
	case OFFLINE_ACK:
		if (spool_ack(s->sp, s->ent.id) == -1) {
			/* Still queued: replayed again, same id. */
			sender_retry(s, "cannot remove the entry");
			return;
		}
		s->run_replayed++;
		metrics_spool_event(metrics_route(s->route->name),
		    METRICS_SPOOL_REPLAYED);
		spool_stats(s->sp, &depth, NULL, NULL);
		log_info("route %s: replayed %s status %d, %zu left",
		    s->route->name, s->ent.id, s->status, depth);
		break;
	case OFFLINE_DEAD:
		if (spool_dead(s->sp, s->ent.id, s->status,
		    evbuffer_pullup(r, (ssize_t)len), len) == -1) {
			sender_retry(s, "cannot move the entry to dead/");
			return;
		}
		s->run_dead++;
		metrics_spool_event(metrics_route(s->route->name),
		    METRICS_SPOOL_DEAD);
		log_warnx("route %s: %s refused by the upstream with status "
		    "%d: moved to dead/", s->route->name, s->ent.id,
		    s->status);
		break;
	case OFFLINE_RETRY:
		snprintf(why, sizeof(why), "status %d", s->status);
		sender_retry(s, why);
		return;
	}
	spool_entry_free(&s->ent);
	s->have_ent = 0;
	s->backoff_ms = 0;
	sender_metrics(s);
	sender_next(s);
}

/* The entry stays (still loaded): try again after the backoff. */
static void
sender_retry(struct sender *s, const char *why)
{
	uint64_t bytes, age;
	size_t depth;

	s->backoff_ms = offline_backoff(s->backoff_ms, s->retry_after);
	s->retry_after = -1;
	spool_stats(s->sp, &depth, &bytes, &age);
	log_warnx("route %s: replay of %s failed (%s): %zu queued (%" PRIu64
	    " bytes, oldest %" PRIu64 " s), next attempt in %" PRId64 " ms",
	    s->route->name, s->have_ent ? s->ent.id : "-", why, depth, bytes,
	    age, s->backoff_ms);
	/* Unloaded meanwhile: a reload may change what is oldest. */
	if (s->have_ent) {
		spool_entry_free(&s->ent);
		s->have_ent = 0;
	}
	sender_schedule(s, s->backoff_ms);
}

/* After a verdict: the next entry, no sooner than spool_rate allows. */
static void
sender_next(struct sender *s)
{
	int64_t gap_us = 1000000 / (s->route->spool_rate > 0 ?
	    s->route->spool_rate : 1);
	int64_t due = s->last_start_ms + gap_us / 1000;

	sender_schedule(s, due - now_mono_ms());
}
