/*
 * Unit tests of src/offline.c: which requests may be queued (the `ct`
 * long-poll detection, method, framing, size), which live responses queue
 * a request, the sender's verdict on a replay's status, its backoff and
 * Retry-After parsing, and the life of the spools: opened at start-up
 * with missing parents created 0700, entries kept across a reload that
 * keeps spool_dir, a reload that cannot open a new spool changing nothing,
 * a start-up that cannot open one failing with the route named.  Replays
 * over the network are tested end to end (tests/e2e/82-offline.py,
 * 83-offline-limits.py).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>

#include <cmocka.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "offline.h"
#include "spool.h"

static char root[4096];

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* ---- pure decisions ---- */

static void
test_longpoll(void **state)
{
	static const struct {
		const char *path;
		int want;
	} t[] = {
		{ "/v1/telemetry", 0 },
		{ "/v1/telemetry?ct=30", 1 },
		{ "/v1/telemetry?a=1&ct=5", 1 },
		{ "/v1/telemetry?ct", 1 },
		{ "/v1/telemetry?ct=", 1 },
		{ "/v1/telemetry?&ct=1", 1 },
		{ "/v1/telemetry?ct=1&a=2", 1 },
		{ "/v1/telemetry?act=1", 0 },
		{ "/v1/telemetry?ctx=1", 0 },
		{ "/v1/telemetry?a=ct=1", 0 },
		{ "/v1/telemetry?a=1&c=t", 0 },
		{ "/v1/telemetry?CT=1", 0 },
		{ "/v1/ct=1", 0 },
		{ "/v1/telemetry?", 0 },
		{ "/?c", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (offline_longpoll(t[i].path, strlen(t[i].path)) !=
		    t[i].want)
			fail_msg("offline_longpoll(%s) != %d", t[i].path,
			    t[i].want);
	/* Only the given length is read: "?ct" cut to "?c". */
	assert_int_equal(offline_longpoll("/v1?ct=1", 5), 0);
	assert_int_equal(offline_longpoll("/v1?ct=1", 6), 1);
}

static void
test_max_body(void **state)
{
	(void)state;
	assert_int_equal(offline_max_body(0), SPOOL_MAX_BODY);
	assert_int_equal(offline_max_body(65536), 65536);
	assert_int_equal(offline_max_body(SPOOL_MAX_BODY), SPOOL_MAX_BODY);
	assert_int_equal(offline_max_body((uint64_t)SPOOL_MAX_BODY + 1),
	    SPOOL_MAX_BODY);
}

static int
eligible(const struct route *r, const char *method, const char *path,
    enum http1_framing f, uint64_t len, uint64_t max)
{
	return offline_eligible(r, method, strlen(method), path,
	    strlen(path), f, len, max);
}

static void
test_eligible(void **state)
{
	struct route r, plain;

	(void)state;
	memset(&r, 0, sizeof(r));
	memset(&plain, 0, sizeof(plain));
	r.offline_queue = 1;
	assert_int_equal(eligible(&r, "POST", "/v1/t", HTTP1_BODY_LENGTH, 10,
	    65536), 1);
	assert_int_equal(eligible(&r, "POST", "/v1/t", HTTP1_BODY_CHUNKED, 0,
	    65536), 1);
	/* The limit: min(max_body_size, SPOOL_MAX_BODY), inclusive. */
	assert_int_equal(eligible(&r, "POST", "/v1/t", HTTP1_BODY_LENGTH,
	    65536, 65536), 1);
	assert_int_equal(eligible(&r, "POST", "/v1/t", HTTP1_BODY_LENGTH,
	    65537, 65536), 0);
	assert_int_equal(eligible(&r, "POST", "/v1/t", HTTP1_BODY_LENGTH,
	    SPOOL_MAX_BODY, 0), 1);
	assert_int_equal(eligible(&r, "POST", "/v1/t", HTTP1_BODY_LENGTH,
	    (uint64_t)SPOOL_MAX_BODY + 1, 0), 0);
	/* Never queued. */
	assert_int_equal(eligible(&plain, "POST", "/v1/t", HTTP1_BODY_LENGTH,
	    10, 65536), 0);
	assert_int_equal(eligible(NULL, "POST", "/v1/t", HTTP1_BODY_LENGTH,
	    10, 65536), 0);
	assert_int_equal(eligible(&r, "POST", "/v1/t?ct=30",
	    HTTP1_BODY_LENGTH, 10, 65536), 0);
	assert_int_equal(eligible(&r, "POST", "/v1/t?x=1&ct=30",
	    HTTP1_BODY_CHUNKED, 0, 65536), 0);
	assert_int_equal(eligible(&r, "POST", "/v1/t", HTTP1_BODY_NONE, 0,
	    65536), 0);
	assert_int_equal(eligible(&r, "GET", "/v1/t", HTTP1_BODY_LENGTH, 10,
	    65536), 0);
	assert_int_equal(eligible(&r, "PUT", "/v1/t", HTTP1_BODY_LENGTH, 10,
	    65536), 0);
	assert_int_equal(eligible(&r, "post", "/v1/t", HTTP1_BODY_LENGTH, 10,
	    65536), 0);
	assert_int_equal(eligible(&r, "POSTX", "/v1/t", HTTP1_BODY_LENGTH,
	    10, 65536), 0);
}

static void
test_status_queues(void **state)
{
	int st;

	(void)state;
	for (st = 100; st < 600; st++)
		assert_int_equal(offline_status_queues(st),
		    st == 502 || st == 503 || st == 504);
}

static void
test_verdict(void **state)
{
	int st;
	enum offline_verdict want;

	(void)state;
	for (st = 0; st < 1000; st++) {
		if (st >= 200 && st < 300)
			want = OFFLINE_ACK;
		else if (st >= 400 && st < 500 && st != 408 && st != 429)
			want = OFFLINE_DEAD;
		else
			want = OFFLINE_RETRY;
		if (offline_verdict(st) != want)
			fail_msg("offline_verdict(%d) != %d", st, (int)want);
	}
}

static void
test_backoff(void **state)
{
	static const int64_t seq[] = {
		1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000
	};
	int64_t ms = 0;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		ms = offline_backoff(ms, -1);
		assert_int_equal(ms, seq[i]);
	}
	assert_int_equal(offline_backoff(0, -1), OFFLINE_BACKOFF_MIN_MS);
	assert_int_equal(offline_backoff(OFFLINE_BACKOFF_MAX_MS, -1),
	    OFFLINE_BACKOFF_MAX_MS);
	/* Retry-After replaces the doubling, within its bounds. */
	assert_int_equal(offline_backoff(30000, 5), 5000);
	assert_int_equal(offline_backoff(0, 0), OFFLINE_BACKOFF_MIN_MS);
	assert_int_equal(offline_backoff(0, 120), 120000);
	assert_int_equal(offline_backoff(0, OFFLINE_RETRY_AFTER_MAX),
	    OFFLINE_RETRY_AFTER_MAX * 1000);
	assert_int_equal(offline_backoff(0, 100000),
	    OFFLINE_RETRY_AFTER_MAX * 1000);
}

static void
test_parse_retry_after(void **state)
{
	static const struct {
		const char *v;
		long want;
	} t[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "120", 120 },
		{ "300", 300 },
		{ "301", OFFLINE_RETRY_AFTER_MAX },
		{ "99999999999999999999999999", OFFLINE_RETRY_AFTER_MAX },
		{ "", -1 },
		{ "-1", -1 },
		{ "+5", -1 },
		{ " 5", -1 },
		{ "5 ", -1 },
		{ "1.5", -1 },
		{ "5s", -1 },
		{ "Fri, 31 Dec 1999 23:59:59 GMT", -1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (offline_parse_retry_after(t[i].v, strlen(t[i].v)) !=
		    t[i].want)
			fail_msg("offline_parse_retry_after(\"%s\") != %ld",
			    t[i].v, t[i].want);
	/* Only the given length: "12" of "123". */
	assert_int_equal(offline_parse_retry_after("123", 2), 12);
}

/* ---- spools ---- */

/* A port on 127.0.0.1 where nothing listens (bound, never listened). */
static int
dead_port(int *fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	*fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(*fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(*fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(*fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

static struct config *
conf(const char *spool, int port, int rate)
{
	char text[8192], err[512];
	struct config *cfg;

	snprintf(text, sizeof(text),
	    "[route r]\n"
	    "listen = 127.0.0.1:18099\n"
	    "upstream = 127.0.0.1:%d\n"
	    "host = cloud.test\n"
	    "connect_timeout = 1\n"
	    "offline_queue = yes\n"
	    "spool_dir = %s\n"
	    "spool_rate = %d\n"
	    "\n"
	    "[route plain]\n"
	    "listen = 127.0.0.1:18098\n"
	    "upstream = 127.0.0.1:%d\n", port, spool, rate, port);
	if ((cfg = config_parse("t.conf", text, strlen(text), err,
	    sizeof(err))) == NULL)
		fail_msg("config_parse: %s", err);
	return cfg;
}

static void
put(const struct route *r, int i, char id[SPOOL_ID_SIZE])
{
	struct spool_entry_in e;
	char body[32];

	memset(&e, 0, sizeof(e));
	snprintf(body, sizeof(body), "reading %d", i);
	e.method = "POST";
	e.method_len = 4;
	e.path = "/v1/t";
	e.path_len = 5;
	e.headers = "Host: cloud.test\r\n";
	e.headers_len = strlen(e.headers);
	e.body = body;
	e.body_len = strlen(body);
	assert_int_equal(offline_put(r, &e, id), 0);
}

static size_t
count_entries(const char *dir)
{
	char cmd[4200];
	FILE *f;
	size_t n = 0;
	int c;

	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -c '\\.req$'", dir);
	assert_non_null(f = popen(cmd, "r"));
	while ((c = fgetc(f)) >= '0' && c <= '9')
		n = n * 10 + (size_t)(c - '0');
	pclose(f);
	return n;
}

static void
test_spool_life(void **state)
{
	struct event_base *base;
	struct evdns_base *dns;
	struct config *cfg, *cfg2, *bad;
	struct timeval tv = { 0, 300 * 1000 };
	char dir[4200], dir2[4200], parent[4200], err[512];
	char id[3][SPOOL_ID_SIZE];
	struct stat st;
	int fd, port, i;
	FILE *f;

	(void)state;
	port = dead_port(&fd);
	snprintf(parent, sizeof(parent), "%s/var/lib", root);
	snprintf(dir, sizeof(dir), "%s/var/lib/spool/r", root);
	snprintf(dir2, sizeof(dir2), "%s/other", root);
	assert_non_null(base = event_base_new());
	assert_non_null(dns = evdns_base_new(base, 0));
	cfg = conf(dir, port, 50);

	assert_int_equal(offline_enabled(&cfg->routes[0]), 0);
	assert_int_equal(offline_init(base, dns, cfg, err, sizeof(err)), 0);
	/* Missing parents created, private. */
	assert_int_equal(stat(parent, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(offline_enabled(&cfg->routes[0]), 1);
	assert_int_equal(offline_enabled(&cfg->routes[1]), 0);
	assert_int_equal(offline_backlog(&cfg->routes[0]), 0);
	assert_int_equal(offline_full_retry_after(&cfg->routes[0]),
	    OFFLINE_FULL_RETRY_AFTER);

	for (i = 0; i < 3; i++)
		put(&cfg->routes[0], i, id[i]);
	assert_true(strcmp(id[0], id[1]) < 0 && strcmp(id[1], id[2]) < 0);
	assert_int_equal(offline_backlog(&cfg->routes[0]), 1);
	assert_int_equal(count_entries(dir), 3);
	/* The sender tries, the upstream refuses: nothing is lost. */
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_int_equal(count_entries(dir), 3);
	assert_int_equal(offline_backlog(&cfg->routes[0]), 1);

	/* Reload, same spool_dir: kept open (a second open would fail on
	 * the lock), entries still there. */
	cfg2 = conf(dir, port, 50);
	assert_int_equal(offline_reload(cfg2, err, sizeof(err)), 0);
	assert_int_equal(offline_enabled(&cfg2->routes[0]), 1);
	assert_int_equal(offline_backlog(&cfg2->routes[0]), 1);
	/* A route of the old generation finds the same spool. */
	assert_int_equal(offline_enabled(&cfg->routes[0]), 1);
	config_unref(cfg);

	/* A reload whose spool cannot be opened changes nothing. */
	snprintf(parent, sizeof(parent), "%s/file", root);
	assert_non_null(f = fopen(parent, "w"));
	fclose(f);
	snprintf(dir2, sizeof(dir2), "%s/file/spool", root);
	bad = conf(dir2, port, 50);
	assert_int_equal(offline_reload(bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "route r"));
	assert_int_equal(offline_enabled(&bad->routes[0]), 0);
	assert_int_equal(offline_enabled(&cfg2->routes[0]), 1);
	put(&cfg2->routes[0], 3, id[0]);
	assert_int_equal(count_entries(dir), 4);
	config_unref(bad);

	/* A reload to another directory closes the old spool (its entries
	 * stay on disk) and opens the new one. */
	snprintf(dir2, sizeof(dir2), "%s/other", root);
	cfg = conf(dir2, port, 1);
	assert_int_equal(offline_reload(cfg, err, sizeof(err)), 0);
	assert_int_equal(offline_enabled(&cfg2->routes[0]), 0);
	assert_int_equal(offline_enabled(&cfg->routes[0]), 1);
	assert_int_equal(offline_backlog(&cfg->routes[0]), 0);
	assert_int_equal(count_entries(dir), 4);
	config_unref(cfg2);
	/* Retry-After when full: the time to replay the queue at
	 * spool_rate (1/s here) once it passes the floor. */
	for (i = 0; i < OFFLINE_FULL_RETRY_AFTER + 5; i++)
		put(&cfg->routes[0], i, id[0]);
	assert_int_equal(offline_full_retry_after(&cfg->routes[0]),
	    OFFLINE_FULL_RETRY_AFTER + 5);

	offline_free();
	assert_int_equal(offline_enabled(&cfg->routes[0]), 0);
	config_unref(cfg);
	evdns_base_free(dns, 0);
	event_base_free(base);
	close(fd);
}

static void
test_init_fails(void **state)
{
	struct event_base *base;
	struct config *cfg;
	char dir[4200], err[512];
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/plainfile", root);
	assert_non_null(f = fopen(dir, "w"));
	fclose(f);
	snprintf(dir, sizeof(dir), "%s/plainfile/sub/spool", root);
	assert_non_null(base = event_base_new());
	cfg = conf(dir, 9, 20);
	assert_int_equal(offline_init(base, NULL, cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "route r"));
	assert_non_null(strstr(err, "plainfile"));
	assert_int_equal(offline_enabled(&cfg->routes[0]), 0);
	offline_free();
	config_unref(cfg);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_longpoll),
		cmocka_unit_test(test_max_body),
		cmocka_unit_test(test_eligible),
		cmocka_unit_test(test_status_queues),
		cmocka_unit_test(test_verdict),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_parse_retry_after),
		cmocka_unit_test(test_spool_life),
		cmocka_unit_test(test_init_fails),
	};
	const char *tmp = getenv("TMPDIR");
	int rc;

	log_init(LOG_LEVEL_WARNING, "test_offline");
	snprintf(root, sizeof(root), "%s/test_offline.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
