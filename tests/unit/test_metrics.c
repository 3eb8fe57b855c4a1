/*
 * Unit tests of src/metrics.c: the exact samples and families rendered for
 * a small registry (the expected text is built here from the increments
 * made, never taken from the code under test), label escaping, histogram
 * buckets, carry-over across reloads, every limit (route names, name
 * length, endpoint connections, head size, idle timeout), and the endpoint
 * fetched with a raw socket from inside the test's event loop.  Every text
 * rendered or served goes through a strict checker of the text exposition
 * format 0.0.4 (check_exposition() below).
 *
 * METRICS_DUMP=path: the body served by the endpoint in test_endpoint_get
 * is also written there (tests/e2e/80-promparse-selftest.py uses it);
 * METRICS_TEST_FILTER=pattern runs only the matching tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "log.h"
#include "metrics.h"

#define T0        INT64_C(1700000000123)   /* start time, ms */
#define RESP_MAX  (256 * 1024)
/* A string literal and its length. */
#define LIT(s)    s, sizeof(s) - 1
#define ABS(x)    ((x) < 0 ? -(x) : (x))

static struct event_base *base;
static char err[256];

/* ---- strict checker of the text exposition format 0.0.4 ---------------- */

static int
is_name_start(int c, int colon)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	    (colon && c == ':');
}

static int
is_name_char(int c, int colon)
{
	return is_name_start(c, colon) || (c >= '0' && c <= '9');
}

/* Length of a metric (colon 1) or label (colon 0) name at p, 0 if none. */
static size_t
name_len(const char *p, const char *end, int colon)
{
	size_t n = 0;

	if (p >= end || !is_name_start((unsigned char)*p, colon))
		return 0;
	while (p + n < end && is_name_char((unsigned char)p[n], colon))
		n++;
	return n;
}

/* A sample value: a float as Go's ParseFloat takes it, or +Inf/-Inf/NaN. */
static int
value_ok(const char *p, size_t len)
{
	char buf[64], *end;

	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, p, len);
	buf[len] = '\0';
	if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "-Inf") == 0 ||
	    strcmp(buf, "NaN") == 0)
		return 1;
	if (strchr(buf, 'x') || strchr(buf, 'X') || strchr(buf, 'n') ||
	    strchr(buf, 'N') || buf[0] == ' ')
		return 0;
	errno = 0;
	(void)strtod(buf, &end);
	return *end == '\0' && errno == 0;
}

/* Does sample name s (len n) belong to family f of type t? */
static int
in_family(const char *s, size_t n, const char *f, const char *t)
{
	size_t fl = strlen(f);
	static const char *const hist[] = { "_bucket", "_sum", "_count" };
	size_t i;

	if (n == fl && memcmp(s, f, n) == 0)
		return strcmp(t, "histogram") != 0;
	if (strcmp(t, "histogram") != 0 || n <= fl || memcmp(s, f, fl) != 0)
		return 0;
	for (i = 0; i < 3; i++)
		if (n - fl == strlen(hist[i]) && memcmp(s + fl, hist[i],
		    n - fl) == 0)
			return 1;
	return 0;
}

/* A sample's name and labels, within the text checked. */
struct series {
	const char *p;
	size_t len;
};

static int
series_cmp(const void *a, const void *b)
{
	const struct series *x = a, *y = b;
	int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);

	if (c != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/*
 * Checks text[0..len) line by line; fails the test at the first fault.
 * Rules: every line ends with \n; "# HELP name text" then "# TYPE name
 * type" open a family (each name once); every sample belongs to the open
 * family (histograms: _bucket with an le label, _sum, _count), counter
 * names end in _total; label names are valid and not repeated, values are
 * quoted with only \\, \" and \n escapes; then one space and a value; no
 * timestamp; no duplicate series.  Returns NULL with the number of
 * samples in *nsamples_out, or a description of the first fault.
 */
#define FAULT(...) do { snprintf(fault, sizeof(fault), __VA_ARGS__); \
	free(series); return fault; } while (0)
static const char *
exposition_fault(const char *text, size_t len, int *nsamples_out)
{
	static char fault[256];
	char families[128][128], type[32] = "", family[128] = "";
	struct series *series = NULL, *grown;
	const char *p = text, *end = text + len, *eol, *q;
	size_t nfam = 0, nseries = 0, n, i;
	int help_seen = 0, nsamples = 0, lineno = 0, has_le, nlabels;
	int is_bucket;
	char labels[16][64];

	while (p < end) {
		lineno++;
		if ((eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
			FAULT("line %d: no final newline", lineno);
		if (memchr(p, '\0', (size_t)(eol - p)) != NULL)
			FAULT("line %d: NUL byte", lineno);
		if (eol - p >= 7 && memcmp(p, "# HELP ", 7) == 0) {
			q = p + 7;
			n = name_len(q, eol, 1);
			if (n == 0 || n >= sizeof(family) || q[n] != ' ')
				FAULT("line %d: bad HELP", lineno);
			for (i = 0; i < nfam; i++)
				if (strlen(families[i]) == n &&
				    memcmp(families[i], q, n) == 0)
					FAULT("line %d: family repeated",
					    lineno);
			if (nfam == 128)
				FAULT("too many families");
			memcpy(family, q, n);
			family[n] = '\0';
			snprintf(families[nfam++], sizeof(families[0]), "%s",
			    family);
			/* HELP text: \\ and \n are the only escapes. */
			for (q += n + 1; q < eol; q++)
				if (*q == '\\' && (q + 1 >= eol ||
				    (q[1] != '\\' && q[1] != 'n')))
					FAULT("line %d: bad escape in HELP",
					    lineno);
				else if (*q == '\\')
					q++;
			help_seen = 1;
			type[0] = '\0';
		} else if (eol - p >= 7 && memcmp(p, "# TYPE ", 7) == 0) {
			q = p + 7;
			n = name_len(q, eol, 1);
			if (!help_seen || n != strlen(family) ||
			    memcmp(q, family, n) != 0 || q[n] != ' ' ||
			    type[0] != '\0')
				FAULT("line %d: TYPE not after its HELP",
				    lineno);
			q += n + 1;
			if ((size_t)(eol - q) >= sizeof(type))
				FAULT("line %d: bad type", lineno);
			memcpy(type, q, (size_t)(eol - q));
			type[eol - q] = '\0';
			if (strcmp(type, "counter") && strcmp(type, "gauge") &&
			    strcmp(type, "histogram") &&
			    strcmp(type, "summary") && strcmp(type, "untyped"))
				FAULT("line %d: unknown type %s", lineno,
				    type);
			if (strcmp(type, "counter") == 0 && (strlen(family) < 6 ||
			    strcmp(family + strlen(family) - 6, "_total")))
				FAULT("line %d: counter %s without _total",
				    lineno, family);
		} else if (p < eol && *p == '#') {
			FAULT("line %d: comment of unknown kind", lineno);
		} else {
			q = p;
			n = name_len(q, eol, 1);
			if (n == 0)
				FAULT("line %d: no metric name", lineno);
			if (type[0] == '\0' || !in_family(q, n, family, type))
				FAULT("line %d: sample outside its family",
				    lineno);
			is_bucket = n == strlen(family) + 7 &&
			    memcmp(q + n - 7, "_bucket", 7) == 0;
			q += n;
			has_le = 0;
			nlabels = 0;
			if (q < eol && *q == '{') {
				q++;
				while (q < eol && *q != '}') {
					n = name_len(q, eol, 0);
					if (n == 0 || n >= sizeof(labels[0]) ||
					    q + n + 1 >= eol || q[n] != '=' ||
					    q[n + 1] != '"')
						FAULT("line %d: bad label",
						    lineno);
					for (i = 0; i < (size_t)nlabels; i++)
						if (strlen(labels[i]) == n &&
						    memcmp(labels[i], q, n) == 0)
							FAULT("line %d: label"
							    " repeated", lineno);
					if (nlabels == 16)
						FAULT("line %d: labels",
						    lineno);
					memcpy(labels[nlabels], q, n);
					labels[nlabels++][n] = '\0';
					if (n == 2 && memcmp(q, "le", 2) == 0)
						has_le = 1;
					for (q += n + 2; q < eol && *q != '"';
					    q++)
						if (*q == '\\') {
							if (q + 1 >= eol ||
							    (q[1] != '\\' &&
							    q[1] != '"' &&
							    q[1] != 'n'))
								FAULT("line "
								    "%d: bad "
								    "escape",
								    lineno);
							q++;
						}
					if (q >= eol)
						FAULT("line %d: unterminated"
						    " value", lineno);
					q++;
					if (q < eol && *q == ',')
						q++;
					else if (q < eol && *q != '}')
						FAULT("line %d: bad label "
						    "list", lineno);
				}
				if (q >= eol)
					FAULT("line %d: no }", lineno);
				q++;
			}
			if (strcmp(type, "histogram") == 0 && is_bucket != has_le)
				FAULT("line %d: le and _bucket", lineno);
			if (q >= eol || *q != ' ')
				FAULT("line %d: no space before the value",
				    lineno);
			if (!value_ok(q + 1, (size_t)(eol - q - 1)))
				FAULT("line %d: bad value (or a timestamp)",
				    lineno);
			grown = realloc(series, (nseries + 1) *
			    sizeof(*series));
			if (grown == NULL)
				FAULT("out of memory");
			series = grown;
			series[nseries].p = p;
			series[nseries++].len = (size_t)(q - p);
			nsamples++;
		}
		p = eol + 1;
	}
	if (nseries > 0)
		qsort(series, nseries, sizeof(*series), series_cmp);
	for (i = 1; i < nseries; i++)
		if (series_cmp(&series[i - 1], &series[i]) == 0)
			FAULT("duplicate series %.*s", (int)series[i].len,
			    series[i].p);
	free(series);
	*nsamples_out = nsamples;
	return NULL;
}
#undef FAULT

/* exposition_fault() as a test assertion; returns the number of samples. */
static int
check_exposition(const char *text, size_t len)
{
	const char *fault;
	int n = 0;

	if ((fault = exposition_fault(text, len, &n)) != NULL)
		fail_msg("%s", fault);
	return n;
}

/* ---- helpers --------------------------------------------------------- */

/* The registry rendered at now_ms, as a NUL-terminated string (freed by
   the caller), checked for syntax. */
static char *
render(int64_t now_ms)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	assert_non_null(b);
	assert_int_equal(metrics_render(b, now_ms), 0);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	assert_non_null(s);
	assert_int_equal(evbuffer_remove(b, s, len), (int)len);
	s[len] = '\0';
	evbuffer_free(b);
	check_exposition(s, len);
	return s;
}

/* The sample lines of text (no comments), concatenated. */
static char *
samples_of(const char *text)
{
	char *out = malloc(strlen(text) + 1), *o = out;
	const char *p = text, *eol;

	assert_non_null(out);
	for (; *p != '\0'; p = eol + 1) {
		eol = strchr(p, '\n');
		assert_non_null(eol);
		if (*p != '#') {
			memcpy(o, p, (size_t)(eol - p + 1));
			o += eol - p + 1;
		}
	}
	*o = '\0';
	return out;
}

/* Appends a printf'd line to the growing string *s. */
static void
add(char **s, size_t *len, const char *fmt, ...)
{
	va_list ap;
	char line[1024];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(line));
	*s = realloc(*s, *len + (size_t)n + 1);
	assert_non_null(*s);
	memcpy(*s + *len, line, (size_t)n + 1);
	*len += (size_t)n;
}

/* The value of the sample whose line starts with `series` + " ". */
static double
sample(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	fail_msg("no sample %s", series);
	return -1;
}

/* The checker itself: each text breaks one rule and must be refused. */
static void
test_checker(void **state)
{
#define FAM "# HELP x_total X.\n# TYPE x_total counter\n"
#define HIST "# HELP h H.\n# TYPE h histogram\n"
	static const char *const bad[] = {
		FAM "x_total 1",                        /* no final newline */
		FAM "x_total 1 1700000000\n",           /* timestamp */
		FAM "x_total abc\n",                    /* value */
		FAM "x_total  1\n",                     /* two spaces */
		FAM "x_total{a=\"1\"} 1\nx_total{a=\"1\"} 2\n",  /* dup */
		FAM "x_total{a=\"1\",a=\"2\"} 1\n",     /* label twice */
		FAM "x_total{a=\"\\x\"} 1\n",           /* bad escape */
		FAM "x_total{a=\"1} 1\n",               /* unterminated */
		FAM "x_total{1a=\"1\"} 1\n",            /* label name */
		FAM "x_total{a=1} 1\n",                 /* unquoted */
		FAM "y_total 1\n",                      /* other family */
		FAM FAM,                                /* family twice */
		"x_total 1\n",                          /* no HELP/TYPE */
		"# TYPE x_total counter\nx_total 1\n",  /* TYPE without HELP */
		"# HELP x X.\n# TYPE x counter\nx 1\n",  /* no _total */
		"# HELP x X.\n# TYPE x meter\nx 1\n",    /* unknown type */
		"# HELP x X \\q.\n# TYPE x gauge\nx 1\n", /* HELP escape */
		"# comment\n",                          /* unknown comment */
		HIST "h_bucket 1\n",                    /* bucket without le */
		HIST "h_sum{le=\"1\"} 1\n",             /* le on _sum */
		HIST "h 1\n",                           /* bare histogram */
		FAM "x_total 0x10\n",                   /* hex value */
	};
	static const char good[] = FAM "x_total{a=\"\\\"\\n\\\\\"} 1\n"
	    "x_total 2.5e3\n" HIST "h_bucket{le=\"+Inf\"} 1\nh_sum 0.5\n"
	    "h_count 1\n# HELP g G.\n# TYPE g gauge\ng -Inf\ng{a=\"\"} NaN\n";
	size_t i;
	int n = 0;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (exposition_fault(bad[i], strlen(bad[i]), &n) == NULL)
			fail_msg("bad text %zu accepted", i);
	assert_null(exposition_fault(good, strlen(good), &n));
	assert_int_equal(n, 7);
#undef FAM
#undef HIST
}

/* ---- registry and rendering ---------------------------------------- */

struct route_exp {
	const char *label;        /* escaped */
	int configured;
	uint64_t classes[6];      /* none, 1xx..5xx */
	uint64_t cum[15];         /* cumulative, +Inf last */
	const char *sum;
	uint64_t in, out, full, resumed, errs[7];
	int64_t open, idle;
	uint64_t spool, spool_bytes;
	const char *age;
	uint64_t spool_ev[METRICS_SPOOL_EV_COUNT];
};

static void
expect_route_samples(char **s, size_t *len, const struct route_exp *e,
    size_t n)
{
	static const char *const cls[] = { "none", "1xx", "2xx", "3xx", "4xx",
	    "5xx" };
	static const char *const le[] = { "0.005", "0.01", "0.025", "0.05",
	    "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120",
	    "+Inf" };
	static const char *const kinds[] = { "dns", "connect", "tls",
	    "verify", "timeout", "protocol", "reset" };
	static const char *const spool_ev[METRICS_SPOOL_EV_COUNT] = {
	    "queued", "full", "replayed", "dead", "corrupt" };
	size_t i, k;

	for (i = 0; i < n; i++)
		add(s, len, "tlsgate_route_configured{route=\"%s\"} %d\n",
		    e[i].label, e[i].configured);
	for (i = 0; i < n; i++)
		for (k = 0; k < 6; k++)
			add(s, len, "tlsgate_requests_total{route=\"%s\","
			    "class=\"%s\"} %" PRIu64 "\n", e[i].label, cls[k],
			    e[i].classes[k]);
	for (i = 0; i < n; i++) {
		for (k = 0; k < 15; k++)
			add(s, len, "tlsgate_request_duration_seconds_bucket{"
			    "route=\"%s\",le=\"%s\"} %" PRIu64 "\n",
			    e[i].label, le[k], e[i].cum[k]);
		add(s, len, "tlsgate_request_duration_seconds_sum{route="
		    "\"%s\"} %s\n", e[i].label, e[i].sum);
		add(s, len, "tlsgate_request_duration_seconds_count{route="
		    "\"%s\"} %" PRIu64 "\n", e[i].label, e[i].cum[14]);
	}
	for (i = 0; i < n; i++) {
		add(s, len, "tlsgate_uplink_bytes_total{route=\"%s\","
		    "direction=\"in\"} %" PRIu64 "\n", e[i].label, e[i].in);
		add(s, len, "tlsgate_uplink_bytes_total{route=\"%s\","
		    "direction=\"out\"} %" PRIu64 "\n", e[i].label, e[i].out);
	}
	for (i = 0; i < n; i++) {
		add(s, len, "tlsgate_uplink_handshakes_total{route=\"%s\","
		    "kind=\"full\"} %" PRIu64 "\n", e[i].label, e[i].full);
		add(s, len, "tlsgate_uplink_handshakes_total{route=\"%s\","
		    "kind=\"resumed\"} %" PRIu64 "\n", e[i].label,
		    e[i].resumed);
	}
	for (i = 0; i < n; i++)
		for (k = 0; k < 7; k++)
			add(s, len, "tlsgate_upstream_errors_total{route=\"%s\""
			    ",kind=\"%s\"} %" PRIu64 "\n", e[i].label, kinds[k],
			    e[i].errs[k]);
	for (i = 0; i < n; i++)
		add(s, len, "tlsgate_upstream_connections_open{route=\"%s\"} "
		    "%" PRId64 "\n", e[i].label, e[i].open);
	for (i = 0; i < n; i++)
		add(s, len, "tlsgate_upstream_connections_idle{route=\"%s\"} "
		    "%" PRId64 "\n", e[i].label, e[i].idle);
	for (i = 0; i < n; i++)
		add(s, len, "tlsgate_spool_entries{route=\"%s\"} %" PRIu64
		    "\n", e[i].label, e[i].spool);
	for (i = 0; i < n; i++)
		add(s, len, "tlsgate_spool_bytes{route=\"%s\"} %" PRIu64 "\n",
		    e[i].label, e[i].spool_bytes);
	for (i = 0; i < n; i++)
		add(s, len, "tlsgate_spool_oldest_age_seconds{route=\"%s\"} "
		    "%s\n", e[i].label, e[i].age);
	for (i = 0; i < n; i++)
		for (k = 0; k < METRICS_SPOOL_EV_COUNT; k++)
			add(s, len, "tlsgate_spool_events_total{route=\"%s\","
			    "event=\"%s\"} %" PRIu64 "\n", e[i].label,
			    spool_ev[k], e[i].spool_ev[k]);
}

static void
test_render_exact(void **state)
{
	const char *names[] = { "alpha", "beta" };
	struct metrics_route *a, *b;
	char *text, *got, *want = NULL;
	size_t len = 0;
	struct route_exp e[2] = {
		{
			.label = "alpha", .configured = 1,
			/* requests below: 0 (none), 101, 200, 204, 404, 503 */
			.classes = { 1, 1, 2, 0, 1, 1 },
			/* 0, 3000 and 5000 µs in le=0.005, 5001 in 0.01,
			   120 s in 120, 130 s only in +Inf */
			.cum = { 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 6 },
			.sum = "250.013001",
			.in = 1600, .out = 700, .full = 1, .resumed = 2,
			.errs = { 1, 0, 0, 2, 0, 0, 1 },
			.open = 1, .idle = 1,
			.spool = 3, .spool_bytes = 4096, .age = "60.500",
			.spool_ev = { 2, 0, 1, 0, 0 },
		},
		{
			.label = "beta", .configured = 1, .sum = "0.000000",
			.age = "0.000",
		},
	};
	static const char *const types[][2] = {
		{ "tlsgate_build_info", "gauge" },
		{ "tlsgate_start_time_seconds", "gauge" },
		{ "tlsgate_config_reloads_total", "counter" },
		{ "tlsgate_config_last_reload_success", "gauge" },
		{ "tlsgate_config_last_reload_timestamp_seconds", "gauge" },
		{ "tlsgate_device_connections_open", "gauge" },
		{ "tlsgate_device_connections_total", "counter" },
		{ "tlsgate_unrouted_requests_total", "counter" },
		{ "tlsgate_route_configured", "gauge" },
		{ "tlsgate_requests_total", "counter" },
		{ "tlsgate_request_duration_seconds", "histogram" },
		{ "tlsgate_uplink_bytes_total", "counter" },
		{ "tlsgate_uplink_handshakes_total", "counter" },
		{ "tlsgate_upstream_errors_total", "counter" },
		{ "tlsgate_upstream_connections_open", "gauge" },
		{ "tlsgate_upstream_connections_idle", "gauge" },
		{ "tlsgate_upstream_server_up", "gauge" },
		{ "tlsgate_spool_entries", "gauge" },
		{ "tlsgate_spool_bytes", "gauge" },
		{ "tlsgate_spool_oldest_age_seconds", "gauge" },
		{ "tlsgate_spool_events_total", "counter" },
	};
	char line[256];
	const char *p;
	size_t i;

	(void)state;
	metrics_init(T0);
	assert_int_equal(metrics_routes_set(names, 2), 0);
	assert_non_null(a = metrics_route("alpha"));
	assert_non_null(b = metrics_route("beta"));
	assert_ptr_not_equal(a, b);
	assert_null(metrics_route("gamma"));

	metrics_request(a, 0, 130000000);
	metrics_request(a, 101, 0);
	metrics_request(a, 200, 3000);
	metrics_request(a, 204, 5000);
	metrics_request(a, 404, 5001);
	metrics_request(a, 503, 120000000);
	metrics_uplink_bytes(a, 1500, 700);
	metrics_uplink_bytes(a, 100, 0);
	metrics_handshake(a, 0);
	metrics_handshake(a, 1);
	metrics_handshake(a, 1);
	metrics_upstream_error(a, METRICS_UPERR_DNS);
	metrics_upstream_error(a, METRICS_UPERR_VERIFY);
	metrics_upstream_error(a, METRICS_UPERR_VERIFY);
	metrics_upstream_error(a, METRICS_UPERR_RESET);
	metrics_upstream_error(a, METRICS_UPERR_COUNT);     /* ignored */
	metrics_upstream_error(a, (enum metrics_uperr)-1);  /* ignored */
	metrics_upstream_conns(a, 2, 1);
	metrics_upstream_conns(a, -1, 0);
	metrics_spool_set(a, 3, 4096, T0 + 1000);
	metrics_spool_event(a, METRICS_SPOOL_QUEUED);
	metrics_spool_event(a, METRICS_SPOOL_QUEUED);
	metrics_spool_event(a, METRICS_SPOOL_REPLAYED);
	metrics_spool_event(a, METRICS_SPOOL_EV_COUNT);     /* ignored */
	/* An oldest time without entries shows no age. */
	metrics_spool_set(b, 0, 0, T0);
	metrics_device_opened();
	metrics_device_opened();
	metrics_device_opened();
	metrics_device_closed();
	metrics_reload(0, T0 + 5000);
	metrics_reload(1, T0 + 7250);
	metrics_request_unrouted(404);
	metrics_request_unrouted(404);
	metrics_request_unrouted(400);
	metrics_request_unrouted(0);
	metrics_request_unrouted(700);

	text = render(T0 + 61500);

	add(&want, &len, "tlsgate_build_info{version=\"%s\",openssl=\"%s\","
	    "libevent=\"%s\"} 1\n", TLSGATE_VERSION,
	    OpenSSL_version(OPENSSL_VERSION_STRING), event_get_version());
	add(&want, &len, "tlsgate_start_time_seconds 1700000000.123\n");
	add(&want, &len, "tlsgate_config_reloads_total{result=\"ok\"} 1\n");
	add(&want, &len, "tlsgate_config_reloads_total{result=\"failed\"} "
	    "1\n");
	add(&want, &len, "tlsgate_config_last_reload_success 1\n");
	add(&want, &len, "tlsgate_config_last_reload_timestamp_seconds "
	    "1700000007.373\n");
	add(&want, &len, "tlsgate_device_connections_open 2\n");
	add(&want, &len, "tlsgate_device_connections_total 3\n");
	add(&want, &len, "tlsgate_unrouted_requests_total{class=\"none\"} "
	    "2\n");
	add(&want, &len, "tlsgate_unrouted_requests_total{class=\"1xx\"} "
	    "0\n");
	add(&want, &len, "tlsgate_unrouted_requests_total{class=\"2xx\"} "
	    "0\n");
	add(&want, &len, "tlsgate_unrouted_requests_total{class=\"3xx\"} "
	    "0\n");
	add(&want, &len, "tlsgate_unrouted_requests_total{class=\"4xx\"} "
	    "3\n");
	add(&want, &len, "tlsgate_unrouted_requests_total{class=\"5xx\"} "
	    "0\n");
	expect_route_samples(&want, &len, e, 2);
	got = samples_of(text);
	assert_string_equal(got, want);

	/* Each family once, with its type, in this order, HELP first. */
	p = text;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		snprintf(line, sizeof(line), "\n# TYPE %s %s\n", types[i][0],
		    types[i][1]);
		assert_non_null(p = strstr(p, line));
		snprintf(line, sizeof(line), "# HELP %s ", types[i][0]);
		assert_true(strstr(text, line) != NULL);
	}
	free(text);
	free(got);
	free(want);

	/* Fresh registry: no reload yet shows the start time and success;
	   a failed reload turns the gauge to 0. */
	metrics_init(T0);
	text = render(T0);
	assert_true(sample(text, "tlsgate_config_last_reload_success") == 1);
	assert_true(sample(text,
	    "tlsgate_config_last_reload_timestamp_seconds") == 1700000000.123);
	assert_null(strstr(text, "route=")); /* no route, no series */
	free(text);
	metrics_reload(0, T0 + 1);
	metrics_device_closed();             /* never below 0 */
	text = render(T0);
	assert_true(sample(text, "tlsgate_config_last_reload_success") == 0);
	assert_true(sample(text, "tlsgate_device_connections_open") == 0);
	assert_true(sample(text,
	    "tlsgate_config_reloads_total{result=\"failed\"}") == 1);
	free(text);
	metrics_free();
}

/* What a collector adds replaces the gauges' previous values. */
static int collect_calls;
static char long_server[METRICS_MAX_SERVER_NAME + 31];

static void
collect(void *arg)
{
	struct metrics_route *r = arg;

	collect_calls++;
	metrics_upstream_conns(r, 3, 2);
	metrics_upstream_conns(r, 1, 0);
	metrics_upstream_conns(NULL, 5, 5);
	metrics_upstream_server(r, "10.0.0.1:443", 1);
	metrics_upstream_server(r, "[2001:db8::1]:8443", 0);
	/* A second generation's view of a server: the first one stands. */
	metrics_upstream_server(r, "10.0.0.1:443", 0);
	metrics_upstream_server(NULL, "10.0.0.9:443", 1);
	metrics_upstream_server(r, long_server, 1);
}

static void
test_collector(void **state)
{
	const char *names[] = { "c", "d" };
	struct metrics_route *c;
	char *text;

	(void)state;
	metrics_init(T0);
	assert_int_equal(metrics_routes_set(names, 2), 0);
	assert_non_null(c = metrics_route("c"));
	metrics_upstream_conns(c, 7, 7);
	metrics_upstream_conns(metrics_route("d"), 9, 9);
	collect_calls = 0;
	memset(long_server, 'h', sizeof(long_server) - 1);
	metrics_set_collector(collect, c);
	text = render(T0);
	assert_int_equal(collect_calls, 1);
	assert_true(sample(text,
	    "tlsgate_upstream_connections_open{route=\"c\"}") == 4);
	assert_true(sample(text,
	    "tlsgate_upstream_connections_idle{route=\"c\"}") == 2);
	/* Not collected: zero, not the stale 9. */
	assert_true(sample(text,
	    "tlsgate_upstream_connections_open{route=\"d\"}") == 0);
	assert_true(sample(text, "tlsgate_upstream_server_up{route=\"c\","
	    "server=\"10.0.0.1:443\"}") == 1);
	assert_true(sample(text, "tlsgate_upstream_server_up{route=\"c\","
	    "server=\"[2001:db8::1]:8443\"}") == 0);
	assert_null(strstr(text, "route=\"d\",server="));
	assert_null(strstr(text, "10.0.0.9"));
	{
		/* A longer name is cut to METRICS_MAX_SERVER_NAME. */
		char series[METRICS_MAX_SERVER_NAME + 64];

		snprintf(series, sizeof(series), "tlsgate_upstream_server_up{"
		    "route=\"c\",server=\"%.*s\"}", METRICS_MAX_SERVER_NAME,
		    long_server);
		assert_true(sample(text, series) == 1);
	}
	free(text);
	/* Each render collects afresh: no accumulation. */
	text = render(T0);
	assert_int_equal(collect_calls, 2);
	assert_true(sample(text,
	    "tlsgate_upstream_connections_open{route=\"c\"}") == 4);
	{
		const char *p = strstr(text, "server=\"10.0.0.1:443\"");

		assert_non_null(p);
		assert_null(strstr(p + 1, "server=\"10.0.0.1:443\""));
	}
	free(text);
	/* Without a collector, the deltas stand. */
	metrics_set_collector(NULL, NULL);
	metrics_upstream_conns(c, 1, 0);
	text = render(T0);
	assert_int_equal(collect_calls, 2);
	assert_true(sample(text,
	    "tlsgate_upstream_connections_open{route=\"c\"}") == 5);
	free(text);
	metrics_free();
}

static void
test_label_escaping(void **state)
{
	const char *names[] = { "q\"uote", "back\\slash", "new\nline",
	    "all\\\"\n\\n" };
	const char *labels[] = { "q\\\"uote", "back\\\\slash", "new\\nline",
	    "all\\\\\\\"\\n\\\\n" };
	char series[256], *text;
	size_t i;

	(void)state;
	metrics_init(T0);
	assert_int_equal(metrics_routes_set(names, 4), 0);
	for (i = 0; i < 4; i++)
		metrics_request(metrics_route(names[i]), 200, (i + 1) * 1000);
	text = render(T0);
	for (i = 0; i < 4; i++) {
		snprintf(series, sizeof(series), "tlsgate_requests_total{"
		    "route=\"%s\",class=\"2xx\"}", labels[i]);
		assert_true(sample(text, series) == 1);
		snprintf(series, sizeof(series),
		    "tlsgate_request_duration_seconds_sum{route=\"%s\"}",
		    labels[i]);
		assert_true(ABS(sample(text, series) - (i + 1) / 1000.0) <
		    1e-9);
	}
	/* A raw newline inside a value would have split a line: the checker
	   passed, and no line starts with the tail of a name. */
	assert_null(strstr(text, "\nline"));
	free(text);
	metrics_free();
}

/* Every bucket boundary, each side, and a pseudo-random spread: buckets
   are cumulative, +Inf equals _count, _sum is exact. */
static void
test_histogram(void **state)
{
	static const uint64_t bounds[] = { METRICS_DURATION_BOUNDS_US };
	static const char *const le[] = { "0.005", "0.01", "0.025", "0.05",
	    "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120" };
	const char *names[] = { "h" };
	uint64_t per[METRICS_NBUCKETS + 1] = { 0 }, cum, sum = 0, d, x = 1;
	struct metrics_route *r;
	char series[128], want[64], *text, *p;
	size_t i, b;
	int n = 0;

	(void)state;
	assert_int_equal(sizeof(bounds) / sizeof(bounds[0]), METRICS_NBUCKETS);
	metrics_init(T0);
	assert_int_equal(metrics_routes_set(names, 1), 0);
	r = metrics_route("h");
	for (i = 0; i < 3 * METRICS_NBUCKETS + 500; i++) {
		if (i < 3 * METRICS_NBUCKETS)
			d = bounds[i / 3] + (i % 3) - 1;   /* b-1, b, b+1 */
		else {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			d = (x >> 33) % 200000000;          /* up to 200 s */
		}
		for (b = 0; b < METRICS_NBUCKETS && d > bounds[b]; b++)
			;
		per[b]++;
		sum += d;
		n++;
		metrics_request(r, 200, d);
	}
	text = render(T0);
	cum = 0;
	for (b = 0; b <= METRICS_NBUCKETS; b++) {
		cum += per[b];
		snprintf(series, sizeof(series),
		    "tlsgate_request_duration_seconds_bucket{route=\"h\","
		    "le=\"%s\"}", b < METRICS_NBUCKETS ? le[b] : "+Inf");
		assert_true(sample(text, series) == (double)cum);
		/* le values are the bounds in seconds. */
		if (b < METRICS_NBUCKETS)
			assert_true(ABS(strtod(le[b], NULL) - bounds[b] / 1e6) <
			    1e-12);
	}
	assert_int_equal(cum, (uint64_t)n);
	assert_true(sample(text, "tlsgate_request_duration_seconds_count{"
	    "route=\"h\"}") == n);
	snprintf(want, sizeof(want), " %" PRIu64 ".%06" PRIu64 "\n",
	    sum / 1000000, sum % 1000000);
	assert_non_null(p = strstr(text,
	    "tlsgate_request_duration_seconds_sum{route=\"h\"}"));
	assert_memory_equal(strchr(p, ' '), want, strlen(want));
	free(text);
	metrics_free();
}

static void
test_reload_carry_over(void **state)
{
	const char *v1[] = { "a", "b" }, *v2[] = { "b", "c", "c" },
	    *v3[] = { "a" };
	struct metrics_route *a, *b, *c;
	char *text;

	(void)state;
	metrics_init(T0);
	assert_int_equal(metrics_routes_set(v1, 2), 0);
	a = metrics_route("a");
	b = metrics_route("b");
	metrics_request(a, 200, 1);
	metrics_request(b, 500, 1);
	metrics_request(b, 500, 1);
	metrics_upstream_conns(a, 1, 0);

	/* "a" removed, "c" added (listed twice: once). */
	assert_int_equal(metrics_routes_set(v2, 3), 0);
	assert_ptr_equal(metrics_route("a"), a);
	assert_ptr_equal(metrics_route("b"), b);
	assert_non_null(c = metrics_route("c"));
	/* A session that started before the reload still counts on "a". */
	metrics_request(a, 200, 1);
	metrics_upstream_conns(a, -1, 0);
	text = render(T0);
	assert_true(sample(text, "tlsgate_route_configured{route=\"a\"}") ==
	    0);
	assert_true(sample(text, "tlsgate_route_configured{route=\"b\"}") ==
	    1);
	assert_true(sample(text, "tlsgate_route_configured{route=\"c\"}") ==
	    1);
	assert_true(sample(text, "tlsgate_requests_total{route=\"a\","
	    "class=\"2xx\"}") == 2);
	assert_true(sample(text, "tlsgate_requests_total{route=\"b\","
	    "class=\"5xx\"}") == 2);
	assert_true(sample(text, "tlsgate_requests_total{route=\"c\","
	    "class=\"5xx\"}") == 0);
	assert_true(sample(text, "tlsgate_upstream_connections_open{"
	    "route=\"a\"}") == 0);
	/* Registration order: a, b, c. */
	assert_true(strstr(text, "configured{route=\"a\"}") <
	    strstr(text, "configured{route=\"b\"}"));
	assert_true(strstr(text, "configured{route=\"b\"}") <
	    strstr(text, "configured{route=\"c\"}"));
	free(text);

	/* "a" comes back with its counters; "b" and "c" retire. */
	assert_int_equal(metrics_routes_set(v3, 1), 0);
	assert_ptr_equal(metrics_route("a"), a);
	text = render(T0);
	assert_true(sample(text, "tlsgate_route_configured{route=\"a\"}") ==
	    1);
	assert_true(sample(text, "tlsgate_route_configured{route=\"b\"}") ==
	    0);
	assert_true(sample(text, "tlsgate_requests_total{route=\"a\","
	    "class=\"2xx\"}") == 2);
	free(text);

	/* An empty configuration retires everything, keeps the entries. */
	assert_int_equal(metrics_routes_set(NULL, 0), 0);
	assert_ptr_equal(metrics_route("b"), b);
	metrics_free();
	assert_null(metrics_route("a"));
}

/* METRICS_MAX_ROUTES and METRICS_MAX_ROUTE_NAME; NULL routes. */
static void
test_limits(void **state)
{
	static char names[METRICS_MAX_ROUTES + 1][16];
	const char *ptrs[METRICS_MAX_ROUTES + 1];
	char longname[METRICS_MAX_ROUTE_NAME + 2];
	const char *one[1];
	char *text;
	size_t i;

	(void)state;
	metrics_init(T0);
	for (i = 0; i <= METRICS_MAX_ROUTES; i++) {
		snprintf(names[i], sizeof(names[i]), "r%zu", i);
		ptrs[i] = names[i];
	}
	/* Retired names count too: register half, then the rest. */
	assert_int_equal(metrics_routes_set(ptrs, METRICS_MAX_ROUTES / 2), 0);
	assert_int_equal(metrics_routes_set(ptrs + METRICS_MAX_ROUTES / 2,
	    METRICS_MAX_ROUTES - METRICS_MAX_ROUTES / 2), 0);
	one[0] = names[METRICS_MAX_ROUTES];
	assert_int_equal(metrics_routes_set(one, 1), -1);
	assert_null(metrics_route(names[METRICS_MAX_ROUTES]));
	/* A known name is still fine at the limit. */
	one[0] = names[0];
	assert_int_equal(metrics_routes_set(one, 1), 0);
	text = render(T0);
	assert_true(sample(text, "tlsgate_route_configured{route=\"r0\"}") ==
	    1);
	assert_true(sample(text, "tlsgate_route_configured{route=\"r1\"}") ==
	    0);
	free(text);

	metrics_init(T0);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';          /* MAX + 1 bytes */
	one[0] = longname;
	assert_int_equal(metrics_routes_set(one, 1), -1);
	assert_null(metrics_route(longname));
	longname[METRICS_MAX_ROUTE_NAME] = '\0';        /* MAX bytes */
	assert_int_equal(metrics_routes_set(one, 1), 0);
	assert_non_null(metrics_route(longname));
	one[0] = "";
	assert_int_equal(metrics_routes_set(one, 1), -1);

	/* NULL routes are ignored by every update. */
	metrics_request(NULL, 200, 1);
	metrics_uplink_bytes(NULL, 1, 1);
	metrics_handshake(NULL, 1);
	metrics_upstream_error(NULL, METRICS_UPERR_DNS);
	metrics_upstream_conns(NULL, 1, 1);
	metrics_spool_set(NULL, 1, 1, 1);
	metrics_free();
}

/* ---- the endpoint ---------------------------------------------------- */

static int
connect_to(int port)
{
	struct sockaddr_in sin;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the event loop while reading fd until EOF or `ms` pass; returns
   the bytes read into buf (NUL-terminated), or -1 on timeout (-2 when
   the connection was reset). */
static long
read_all(int fd, char *buf, size_t cap, int ms)
{
	int64_t deadline = mono_ms() + ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t len = 0;
	ssize_t n;

	while (mono_ms() < deadline) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (poll(&pfd, 1, 2) == 1) {
			n = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
			if (n == 0) {
				buf[len] = '\0';
				return (long)len;
			}
			if (n < 0 && errno == ECONNRESET)
				return -2;
			if (n > 0)
				len += (size_t)n;
			assert_true(len < cap - 1);
		}
	}
	buf[len] = '\0';
	return -1;
}

/* Runs the event loop for `ms`. */
static void
spin(int ms)
{
	int64_t deadline = mono_ms() + ms;

	while (mono_ms() < deadline) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

/* Sends req on a new connection and returns the whole response. */
static long
exchange(const char *req, size_t len, char *resp, int half_close)
{
	int fd = connect_to(metrics_listen_port());
	long n;

	assert_int_equal(send(fd, req, len, 0), (ssize_t)len);
	if (half_close)
		shutdown(fd, SHUT_WR);
	n = read_all(fd, resp, RESP_MAX, 3000);
	close(fd);
	return n;
}

static int
status_of(const char *resp)
{
	int status = 0;

	if (sscanf(resp, "HTTP/1.1 %d ", &status) != 1)
		return -1;
	return status;
}

static const char *
body_of(const char *resp)
{
	const char *p = strstr(resp, "\r\n\r\n");

	assert_non_null(p);
	return p + 4;
}

static int
setup_endpoint(void **state)
{
	const char *names[] = { "drogue", "w\"eird" };

	(void)state;
	base = event_base_new();
	assert_non_null(base);
	metrics_init(0);
	assert_int_equal(metrics_routes_set(names, 2), 0);
	if (metrics_listen_start(base, "127.0.0.1:0", err, sizeof(err)) != 0)
		fail_msg("metrics_listen_start: %s", err);
	assert_true(metrics_listen_port() > 0);
	return 0;
}

static int
teardown_endpoint(void **state)
{
	(void)state;
	metrics_listen_stop();
	assert_int_equal(metrics_listen_port(), -1);
	metrics_free();
	event_base_free(base);
	base = NULL;
	return 0;
}

static void
test_endpoint_get(void **state)
{
	static char resp[RESP_MAX];
	struct metrics_route *r = metrics_route("drogue");
	const char *body, *dump;
	size_t clen;
	long n;
	FILE *f;

	(void)state;
	metrics_request(r, 202, 42000);
	metrics_request(r, 502, 1000);
	metrics_handshake(r, 1);
	metrics_device_opened();
	n = exchange(LIT("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, 0);
	assert_true(n > 0);
	assert_int_equal(status_of(resp), 200);
	assert_non_null(strstr(resp, "\r\nContent-Type: text/plain; "
	    "version=0.0.4; charset=utf-8\r\n"));
	assert_non_null(strstr(resp, "\r\nConnection: close\r\n"));
	body = body_of(resp);
	assert_non_null(strstr(resp, "\r\nContent-Length: "));
	clen = strtoul(strstr(resp, "\r\nContent-Length: ") + 18, NULL, 10);
	assert_int_equal(clen, strlen(body));
	assert_true(check_exposition(body, strlen(body)) > 50);
	assert_true(sample(body, "tlsgate_requests_total{route=\"drogue\","
	    "class=\"2xx\"}") == 1);
	assert_true(sample(body, "tlsgate_requests_total{route=\"drogue\","
	    "class=\"5xx\"}") == 1);
	assert_true(sample(body, "tlsgate_request_duration_seconds_sum{"
	    "route=\"drogue\"}") == 0.043);
	assert_true(sample(body, "tlsgate_uplink_handshakes_total{route="
	    "\"drogue\",kind=\"resumed\"}") == 1);
	assert_true(sample(body, "tlsgate_device_connections_open") == 1);
	assert_true(sample(body, "tlsgate_route_configured{route="
	    "\"w\\\"eird\"}") == 1);
	if ((dump = getenv("METRICS_DUMP")) != NULL) {
		assert_non_null(f = fopen(dump, "w"));
		assert_int_equal(fwrite(body, 1, strlen(body), f),
		    strlen(body));
		assert_int_equal(fclose(f), 0);
	}

	/* A query is ignored; HTTP/1.0 is answered too; a client that
	   half-closes after its request still gets the whole response. */
	n = exchange(LIT("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), resp, 1);
	assert_true(n > 0);
	assert_int_equal(status_of(resp), 200);
	assert_true(check_exposition(body_of(resp),
	    strlen(body_of(resp))) > 50);
	/* Bytes after the head (a body) do not reset the connection. */
	n = exchange(LIT("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: "
	    "5\r\n\r\nhello"), resp, 0);
	assert_true(n > 0);
	assert_int_equal(status_of(resp), 200);
}

static void
test_endpoint_errors(void **state)
{
	static char resp[RESP_MAX];
	char *big;
	long n;
	size_t i;

	(void)state;
	/* HEAD: the GET's header fields, no body. */
	n = exchange(LIT("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, 0);
	assert_true(n > 0);
	assert_int_equal(status_of(resp), 200);
	assert_string_equal(body_of(resp), "");
	assert_true(strtoul(strstr(resp, "\r\nContent-Length: ") + 18, NULL,
	    10) > 1000);

	n = exchange(LIT("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 404);
	n = exchange(LIT("GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 404);
	n = exchange(LIT("GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 404);
	n = exchange(LIT("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0"
	    "\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 405);
	assert_non_null(strstr(resp, "\r\nAllow: GET, HEAD\r\n"));
	/* RFC 9110 §9.1: methods are case-sensitive. */
	n = exchange(LIT("get /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 405);
	n = exchange(LIT("GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header: "
	    "1\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 400);
	n = exchange(LIT("GET /metrics HTTP/2.0\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 505);
	assert_true(n > 0);

	/* METRICS_MAX_HEAD: a head one byte over is refused with 431; one
	   that fits is served. */
	big = malloc(METRICS_MAX_HEAD + 64);
	assert_non_null(big);
	for (i = 0; i < 2; i++) {
		size_t total = METRICS_MAX_HEAD + i;   /* head bytes */
		size_t fill = total - strlen("GET /metrics HTTP/1.1\r\nHost: "
		    "x\r\nX: ") - strlen("\r\n\r\n");

		snprintf(big, METRICS_MAX_HEAD + 64, "GET /metrics HTTP/1.1\r\n"
		    "Host: x\r\nX: %0*d\r\n\r\n", (int)fill, 0);
		assert_int_equal(strlen(big), total);
		n = exchange(big, total, resp, 0);
		assert_true(n > 0);
		assert_int_equal(status_of(resp), i == 0 ? 200 : 431);
	}
	/* An endless head without its empty line: 431 too. */
	memset(big, 'a', METRICS_MAX_HEAD + 64);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	n = exchange(big, METRICS_MAX_HEAD + 64, resp, 0);
	assert_int_equal(status_of(resp), 431);
	free(big);
}

/* METRICS_MAX_CONNS: while that many connections are open, the next one
   is not served; it is once one of them closes. */
static void
test_endpoint_max_conns(void **state)
{
	static char resp[RESP_MAX];
	int fds[METRICS_MAX_CONNS], extra, i;
	long n;

	(void)state;
	for (i = 0; i < METRICS_MAX_CONNS; i++)
		fds[i] = connect_to(metrics_listen_port());
	spin(100);
	extra = connect_to(metrics_listen_port());  /* queued by the kernel */
	assert_int_equal(send(extra, LIT("GET /metrics HTTP/1.1\r\nHost: "
	    "x\r\n\r\n"), 0), 34);
	assert_int_equal(read_all(extra, resp, RESP_MAX, 300), -1);
	assert_int_equal(strlen(resp), 0);
	close(fds[0]);
	n = read_all(extra, resp, RESP_MAX, 3000);
	assert_true(n > 0);
	assert_int_equal(status_of(resp), 200);
	close(extra);
	for (i = 1; i < METRICS_MAX_CONNS; i++)
		close(fds[i]);
	spin(50);
	/* All slots free again: a plain fetch works. */
	n = exchange(LIT("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, 0);
	assert_int_equal(status_of(resp), 200);
}

/* METRICS_IO_TIMEOUT_MS: a client that sends half a head, one byte a
   second (each within the idle timeout), is closed once the head has
   taken longer than the timeout. */
static void
test_endpoint_timeout(void **state)
{
	static char resp[RESP_MAX];
	static const char part[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
	int64_t t0, t;
	size_t i;
	long n = -1;
	int fd;

	(void)state;
	fd = connect_to(metrics_listen_port());
	t0 = mono_ms();
	for (i = 0; i < sizeof(part) - 1; i++) {
		if (send(fd, part + i, 1, MSG_NOSIGNAL) != 1)
			break;      /* closed under us: expected, once late */
		n = read_all(fd, resp, RESP_MAX, 1000);
		if (n != -1)
			break;
	}
	t = mono_ms() - t0;
	assert_true(n == 0 || n == -2);
	assert_true(t >= METRICS_IO_TIMEOUT_MS);
	assert_true(t < METRICS_IO_TIMEOUT_MS + 2500);
	assert_int_equal(strlen(resp), 0);
	close(fd);

	/* An idle client is closed by the same bound. */
	fd = connect_to(metrics_listen_port());
	assert_int_equal(send(fd, LIT("GET /metr"), 0), 9);
	t0 = mono_ms();
	n = read_all(fd, resp, RESP_MAX, METRICS_IO_TIMEOUT_MS + 2000);
	t = mono_ms() - t0;
	assert_true(n == 0 || n == -2);
	assert_true(t >= METRICS_IO_TIMEOUT_MS - 100);
	close(fd);
}

static void
test_listen_args(void **state)
{
	struct event_base *b2 = event_base_new();
	static const char *const bad[] = { "127.0.0.1", "127.0.0.1:",
	    "localhost:80", "::1:9180", "[::1]", "[::1:80", "1.2.3.4:65536",
	    "127.0.0.1:x", "" };
	static char resp[RESP_MAX];
	int fd, busy;
	long n;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(metrics_listen_start(b2, bad[i], err,
		    sizeof(err)), -1);
		assert_true(err[0] != '\0');
		assert_int_equal(metrics_listen_port(), -1);
	}
	/* Already running; then a port in use by another socket. */
	assert_int_equal(metrics_listen_start(b2, "127.0.0.1:0", err,
	    sizeof(err)), 0);
	assert_int_equal(metrics_listen_start(b2, "127.0.0.1:0", err,
	    sizeof(err)), -1);
	metrics_listen_stop();
	metrics_listen_stop();   /* twice is fine */
	{
		struct sockaddr_in sin;
		socklen_t slen = sizeof(sin);

		busy = socket(AF_INET, SOCK_STREAM, 0);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(bind(busy, (struct sockaddr *)&sin,
		    sizeof(sin)), 0);
		assert_int_equal(listen(busy, 1), 0);
		assert_int_equal(getsockname(busy, (struct sockaddr *)&sin,
		    &slen), 0);
		snprintf(resp, sizeof(resp), "127.0.0.1:%d",
		    ntohs(sin.sin_port));
		err[0] = '\0';
		assert_int_equal(metrics_listen_start(b2, resp, err,
		    sizeof(err)), -1);
		assert_non_null(strstr(err, "in use"));
		assert_int_equal(metrics_listen_port(), -1);
		close(busy);
	}
	/* IPv6 loopback, when the machine has it. */
	if (metrics_listen_start(b2, "[::1]:0", err, sizeof(err)) == 0) {
		struct sockaddr_in6 s6;

		memset(&s6, 0, sizeof(s6));
		s6.sin6_family = AF_INET6;
		s6.sin6_port = htons((uint16_t)metrics_listen_port());
		s6.sin6_addr = in6addr_loopback;
		fd = socket(AF_INET6, SOCK_STREAM, 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&s6,
		    sizeof(s6)), 0);
		assert_int_equal(send(fd, LIT("GET /metrics HTTP/1.1\r\n"
		    "Host: x\r\n\r\n"), 0), 34);
		base = b2;
		n = read_all(fd, resp, RESP_MAX, 3000);
		base = NULL;
		assert_true(n > 0);
		assert_int_equal(status_of(resp), 200);
		close(fd);
		metrics_listen_stop();
	}
	event_base_free(b2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checker),
		cmocka_unit_test(test_render_exact),
		cmocka_unit_test(test_collector),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_reload_carry_over),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_listen_args),
		cmocka_unit_test_setup_teardown(test_endpoint_get,
		    setup_endpoint, teardown_endpoint),
		cmocka_unit_test_setup_teardown(test_endpoint_errors,
		    setup_endpoint, teardown_endpoint),
		cmocka_unit_test_setup_teardown(test_endpoint_max_conns,
		    setup_endpoint, teardown_endpoint),
		cmocka_unit_test_setup_teardown(test_endpoint_timeout,
		    setup_endpoint, teardown_endpoint),
	};
	const char *filter = getenv("METRICS_TEST_FILTER");

	log_init(LOG_LEVEL_WARNING, "test_metrics");
	if (filter != NULL)
		cmocka_set_test_filter(filter);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
