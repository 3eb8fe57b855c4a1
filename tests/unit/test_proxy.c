/*
 * Unit tests of the pure parts of proxy.c (route matching, head rewriting
 * and how many buffer adds it costs, retry policy) and of log_escape(),
 * which guards the access log.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "config.h"
#include "http1.h"
#include "log.h"
#include "proxy.h"

static const char routes_conf[] =
    "[gateway]\n"
    "log_level = error\n"
    "\n"
    "[route plain]\n"
    "listen = 127.0.0.1:18080\n"
    "upstream = cloud.test:443\n"
    "\n"
    "[route exact]\n"
    "listen = 127.0.0.1:18081\n"
    "upstream = a.test:443\n"
    "match_host = a.example\n"
    "\n"
    "[route wild]\n"
    "listen = 127.0.0.1:18081\n"
    "upstream = b.test:443\n"
    "match_host = *.example\n"
    "\n"
    "[route wildapi]\n"
    "listen = 127.0.0.1:18081\n"
    "upstream = c.test:443\n"
    "match_host = *.example\n"
    "match_path = /api/\n"
    "\n"
    "[route wildapiv2]\n"
    "listen = 127.0.0.1:18081\n"
    "upstream = d.test:443\n"
    "match_host = *.example\n"
    "match_path = /api/v2/\n"
    "\n"
    "[route anyhost]\n"
    "listen = 127.0.0.1:18082\n"
    "upstream = e.test:443\n"
    "match_path = /v1/\n"
    "\n"
    "[route rules]\n"
    "listen = 127.0.0.1:18084\n"
    "upstream = cloud.test:443\n"
    "remove_header = x-forwarded-for\n"
    "remove_header = X-Secret\n"
    "set_header = X-Site: greenhouse 1\n"
    "set_header = user-agent: tlsgate\n"
    "set_header = Authorization: Bearer site-token\n";

static struct config *
load_routes(void)
{
	char err[256];
	struct config *cfg;

	cfg = config_parse("test.conf", routes_conf, strlen(routes_conf), err,
	    sizeof(err));
	if (cfg == NULL)
		fail_msg("config_parse: %s", err);
	return cfg;
}

static struct sockaddr_in
addr4(const char *ip, unsigned port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

static const char *
match(const struct config *cfg, unsigned port, const char *host,
    const char *path)
{
	struct sockaddr_in sin = addr4("127.0.0.1", port);
	const struct route *r;

	r = config_match(cfg, (const struct sockaddr *)&sin, sizeof(sin),
	    host, strlen(host), path, strlen(path));
	return r != NULL ? r->name : "-";
}

static void
test_route_single(void **state)
{
	struct config *cfg = load_routes();

	(void)state;
	assert_string_equal(match(cfg, 18080, "whatever", "/"), "plain");
	assert_string_equal(match(cfg, 18080, "", "/x"), "plain");
	/* Another address: no route at all. */
	assert_string_equal(match(cfg, 18083, "a.example", "/"), "-");
	config_unref(cfg);
}

static void
test_route_host(void **state)
{
	struct config *cfg = load_routes();

	(void)state;
	/* Exact beats wildcard; port and case do not matter. */
	assert_string_equal(match(cfg, 18081, "a.example", "/"), "exact");
	assert_string_equal(match(cfg, 18081, "A.Example:8080", "/"),
	    "exact");
	assert_string_equal(match(cfg, 18081, "a.example.", "/"), "exact");
	assert_string_equal(match(cfg, 18081, "b.example", "/"), "wild");
	assert_string_equal(match(cfg, 18081, "x.b.example", "/"), "wild");
	/* "*.example" does not take "example" nor "xexample". */
	assert_string_equal(match(cfg, 18081, "example", "/"), "-");
	assert_string_equal(match(cfg, 18081, "xexample", "/"), "-");
	assert_string_equal(match(cfg, 18081, "", "/"), "-");
	assert_string_equal(match(cfg, 18081, "[::1]:80", "/"), "-");
	config_unref(cfg);
}

static void
test_route_path(void **state)
{
	struct config *cfg = load_routes();

	(void)state;
	/* Longest match_path wins among equal host matches. */
	assert_string_equal(match(cfg, 18081, "b.example", "/api/x"),
	    "wildapi");
	assert_string_equal(match(cfg, 18081, "b.example", "/api/v2/x"),
	    "wildapiv2");
	assert_string_equal(match(cfg, 18081, "b.example", "/api"), "wild");
	/* An exact host with no path beats a wildcard with one. */
	assert_string_equal(match(cfg, 18081, "a.example", "/api/v2/x"),
	    "exact");
	assert_string_equal(match(cfg, 18082, "any", "/v1/telemetry"),
	    "anyhost");
	assert_string_equal(match(cfg, 18082, "any", "/v2/telemetry"), "-");
	assert_string_equal(match(cfg, 18082, "any", "/v1"), "-");
	config_unref(cfg);
}

static char *
buf_string(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	assert_non_null(s);
	evbuffer_copyout(b, s, len);
	s[len] = '\0';
	return s;
}

static char *
rewrite_request_on(const char *route, const char *basic, const char *raw)
{
	static struct http1_request req;
	struct config *cfg = load_routes();
	struct evbuffer *out = evbuffer_new();
	char *s;
	long rc;

	rc = http1_parse_request(raw, strlen(raw), 16384, &req);
	assert_int_equal(rc, (long)strlen(raw));
	assert_non_null(config_route(cfg, route));
	assert_int_equal(proxy_rewrite_request_head(&req,
	    config_route(cfg, route), "192.0.2.7", basic, out), 0);
	s = buf_string(out);
	evbuffer_free(out);
	config_unref(cfg);
	return s;
}

static char *
rewrite_request(const char *raw)
{
	return rewrite_request_on("plain", NULL, raw);
}

static void
test_rewrite_request(void **state)
{
	char *s;

	(void)state;
	s = rewrite_request("POST /v1/t?x=1 HTTP/1.1\r\n"
	    "Host: gw.local:8080\r\n"
	    "Connection: close, X-Drop\r\n"
	    "X-Drop: secret\r\n"
	    "Keep-Alive: timeout=5\r\n"
	    "Proxy-Connection: keep-alive\r\n"
	    "TE: trailers\r\n"
	    "Upgrade: h2c\r\n"
	    "Authorization: Basic ZDpw\r\n"
	    "Via: 1.0 fred\r\n"
	    "X-Forwarded-For: 10.0.0.1\r\n"
	    "Expect: 100-continue\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "\r\n");
	assert_string_equal(s, "POST /v1/t?x=1 HTTP/1.1\r\n"
	    "Host: cloud.test\r\n"
	    "Authorization: Basic ZDpw\r\n"
	    "Via: 1.0 fred, 1.1 tlsgate\r\n"
	    "X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "\r\n");
	free(s);

	/* 1.0 device, absolute form, Content-Length regenerated. */
	s = rewrite_request("PUT http://gw.local/a/b HTTP/1.0\r\n"
	    "Content-Length: 12\r\n"
	    "X-A: 1\r\n"
	    "\r\n");
	assert_string_equal(s, "PUT /a/b HTTP/1.1\r\n"
	    "Host: cloud.test\r\n"
	    "X-A: 1\r\n"
	    "Via: 1.0 tlsgate\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "Content-Length: 12\r\n"
	    "\r\n");
	free(s);
}

/* set_header / remove_header, and the gateway's credentials. */
static void
test_rewrite_rules(void **state)
{
	static const char raw[] = "POST /v1/t HTTP/1.1\r\n"
	    "Host: gw.local\r\n"
	    "User-Agent: esp8266\r\n"
	    "x-secret: 42\r\n"
	    "X-Forwarded-For: 10.0.0.1\r\n"
	    "X-Keep: yes\r\n"
	    "authorization: Basic ZDpw\r\n"
	    "Content-Length: 3\r\n"
	    "\r\n";
	char *s;

	(void)state;
	/* Removed fields go, our X-Forwarded-For too; set fields replace
	 * the device's of any case and follow Via. */
	s = rewrite_request_on("rules", NULL, raw);
	assert_string_equal(s, "POST /v1/t HTTP/1.1\r\n"
	    "Host: cloud.test\r\n"
	    "X-Keep: yes\r\n"
	    "Via: 1.1 tlsgate\r\n"
	    "X-Site: greenhouse 1\r\n"
	    "user-agent: tlsgate\r\n"
	    "Authorization: Bearer site-token\r\n"
	    "Content-Length: 3\r\n"
	    "\r\n");
	free(s);
	/* Gateway credentials win over the device's and over set_header. */
	s = rewrite_request_on("rules", "Y2xvdWQ6c2VjcmV0", raw);
	assert_string_equal(s, "POST /v1/t HTTP/1.1\r\n"
	    "Host: cloud.test\r\n"
	    "X-Keep: yes\r\n"
	    "Via: 1.1 tlsgate\r\n"
	    "X-Site: greenhouse 1\r\n"
	    "user-agent: tlsgate\r\n"
	    "Authorization: Basic Y2xvdWQ6c2VjcmV0\r\n"
	    "Content-Length: 3\r\n"
	    "\r\n");
	free(s);
	/* A route without rules: only the Authorization is replaced. */
	s = rewrite_request_on("plain", "Y2xvdWQ6c2VjcmV0", raw);
	assert_string_equal(s, "POST /v1/t HTTP/1.1\r\n"
	    "Host: cloud.test\r\n"
	    "User-Agent: esp8266\r\n"
	    "x-secret: 42\r\n"
	    "X-Keep: yes\r\n"
	    "Via: 1.1 tlsgate\r\n"
	    "X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"
	    "Authorization: Basic Y2xvdWQ6c2VjcmV0\r\n"
	    "Content-Length: 3\r\n"
	    "\r\n");
	free(s);
}

static void
test_uperr_kind(void **state)
{
	(void)state;
	assert_int_equal(proxy_uperr_kind("DNS: name does not resolve", 1),
	    METRICS_UPERR_DNS);
	assert_int_equal(proxy_uperr_kind("connect: Connection refused", 1),
	    METRICS_UPERR_CONNECT);
	assert_int_equal(proxy_uperr_kind("connect timeout", 1),
	    METRICS_UPERR_TIMEOUT);
	assert_int_equal(proxy_uperr_kind("TLS: certificate verify failed: "
	    "certificate has expired", 1), METRICS_UPERR_VERIFY);
	assert_int_equal(proxy_uperr_kind("TLS: alert handshake failure", 1),
	    METRICS_UPERR_TLS);
	/* After the handshake a TLS failure is a broken connection. */
	assert_int_equal(proxy_uperr_kind("TLS: Connection reset by peer", 0),
	    METRICS_UPERR_RESET);
	assert_int_equal(proxy_uperr_kind("upstream timeout", 0),
	    METRICS_UPERR_TIMEOUT);
	assert_int_equal(proxy_uperr_kind("upstream closed connection", 0),
	    METRICS_UPERR_RESET);
	assert_int_equal(proxy_uperr_kind("malformed response", 0),
	    METRICS_UPERR_PROTOCOL);
	/* Several servers: the reason names the server first. */
	assert_int_equal(proxy_uperr_kind("127.0.0.1:8443: connect: "
	    "Connection refused", 1), METRICS_UPERR_CONNECT);
	assert_int_equal(proxy_uperr_kind("[::1]:443: TLS: certificate "
	    "verify failed: x", 1), METRICS_UPERR_VERIFY);
	assert_int_equal(proxy_uperr_kind("cloud.test:443: DNS: x", 1),
	    METRICS_UPERR_DNS);
	/* Unknown reasons: by phase. */
	assert_int_equal(proxy_uperr_kind("out of memory", 1),
	    METRICS_UPERR_CONNECT);
	assert_int_equal(proxy_uperr_kind("", 0), METRICS_UPERR_RESET);
}

static char *
rewrite_response(const char *raw, int head_req, unsigned flags)
{
	static struct http1_response resp;
	struct evbuffer *out = evbuffer_new();
	char *s;
	long rc;

	rc = http1_parse_response(raw, strlen(raw), 16384, head_req, &resp);
	assert_int_equal(rc, (long)strlen(raw));
	assert_int_equal(proxy_rewrite_response_head(&resp, flags, out), 0);
	s = buf_string(out);
	evbuffer_free(out);
	return s;
}

static void
test_rewrite_response(void **state)
{
	char *s;

	(void)state;
	/* Chunked to a 1.1 device that keeps the connection. */
	s = rewrite_response("HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "Connection: keep-alive\r\n"
	    "Keep-Alive: timeout=5\r\n"
	    "Content-Type: text/plain\r\n"
	    "\r\n", 0, PROXY_RESP_CHUNKED | PROXY_RESP_KEEP);
	assert_string_equal(s, "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/plain\r\n"
	    "Via: 1.1 tlsgate\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "\r\n");
	free(s);

	/* Chunked to a 1.0 device: no framing header, close. */
	s = rewrite_response("HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "\r\n", 0, PROXY_RESP_DEV10);
	assert_string_equal(s, "HTTP/1.1 200 OK\r\n"
	    "Via: 1.1 tlsgate\r\n"
	    "Connection: close\r\n"
	    "\r\n");
	free(s);

	/* HEAD: the Content-Length of the GET is kept; 1.0 keep-alive. */
	s = rewrite_response("HTTP/1.0 200 OK\r\n"
	    "Content-Length: 1000\r\n"
	    "Via: 1.1 lb\r\n"
	    "Connection: keep-alive\r\n"
	    "\r\n", 1, PROXY_RESP_KEEP | PROXY_RESP_DEV10);
	assert_string_equal(s, "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 1000\r\n"
	    "Via: 1.1 lb, 1.0 tlsgate\r\n"
	    "Connection: keep-alive\r\n"
	    "\r\n");
	free(s);

	/* Interim: no framing and no Connection. */
	s = rewrite_response("HTTP/1.1 103 Early Hints\r\n"
	    "Link: </s.css>; rel=preload\r\n"
	    "\r\n", 0, PROXY_RESP_INTERIM);
	assert_string_equal(s, "HTTP/1.1 103 Early Hints\r\n"
	    "Link: </s.css>; rel=preload\r\n"
	    "Via: 1.1 tlsgate\r\n"
	    "\r\n");
	free(s);
}

/* Counts the evbuffer_add()s a head costs: each runs the callbacks. */
static void
count_adds(struct evbuffer *b, const struct evbuffer_cb_info *info,
    void *arg)
{
	(void)b;
	if (info->n_added > 0)
		(*(int *)arg)++;
}

/*
 * The head is assembled on the stack and added in few pieces: one add
 * for an ordinary head; a field larger than the stack buffer, or a head
 * that overflows it, still comes out byte for byte.
 */
static void
test_rewrite_pieces(void **state)
{
	static struct http1_response resp;
	static struct http1_request req;
	struct config *cfg = load_routes();
	struct evbuffer *out = evbuffer_new(), *want = evbuffer_new();
	char *big, *raw, *s, *w;
	size_t i;
	int adds = 0;

	(void)state;
	assert_non_null(evbuffer_add_cb(out, count_adds, &adds));
	raw = "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n";
	assert_int_equal(http1_parse_response(raw, strlen(raw), 16384, 0,
	    &resp), (long)strlen(raw));
	assert_int_equal(proxy_rewrite_response_head(&resp, PROXY_RESP_KEEP,
	    out), 0);
	assert_int_equal(adds, 1);
	s = buf_string(out);
	assert_string_equal(s, "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n"
	    "X-A: 1\r\nVia: 1.1 tlsgate\r\n\r\n");
	free(s);
	evbuffer_drain(out, evbuffer_get_length(out));

	/* A 3000-byte value and 60 fields: several adds, same bytes. */
	big = malloc(3001);
	assert_non_null(big);
	memset(big, 'v', 3000);
	big[3000] = '\0';
	evbuffer_add_printf(want, "POST /v1/t HTTP/1.1\r\nHost: gw\r\n"
	    "X-Big: %s\r\n", big);
	for (i = 0; i < 60; i++)
		evbuffer_add_printf(want, "X-Field-%zu: value number %zu\r\n",
		    i, i);
	evbuffer_add_printf(want, "Content-Length: 9223372036854775807"
	    "\r\n\r\n");
	raw = buf_string(want);
	evbuffer_drain(want, evbuffer_get_length(want));
	assert_int_equal(http1_parse_request(raw, strlen(raw), 16384, &req),
	    (long)strlen(raw));
	adds = 0;
	assert_int_equal(proxy_rewrite_request_head(&req,
	    config_route(cfg, "plain"), "192.0.2.7", NULL, out), 0);
	assert_true(adds >= 3 && adds <= 6);
	evbuffer_add_printf(want, "POST /v1/t HTTP/1.1\r\nHost: cloud.test\r\n"
	    "X-Big: %s\r\n", big);
	for (i = 0; i < 60; i++)
		evbuffer_add_printf(want, "X-Field-%zu: value number %zu\r\n",
		    i, i);
	evbuffer_add_printf(want, "Via: 1.1 tlsgate\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "Content-Length: 9223372036854775807\r\n\r\n");
	s = buf_string(out);
	w = buf_string(want);
	assert_string_equal(s, w);
	free(s);
	free(w);
	free(raw);
	free(big);
	evbuffer_free(out);
	evbuffer_free(want);
	config_unref(cfg);
}

static void
test_idempotent(void **state)
{
	(void)state;
	assert_true(proxy_idempotent("GET"));
	assert_true(proxy_idempotent("HEAD"));
	assert_true(proxy_idempotent("PUT"));
	assert_true(proxy_idempotent("DELETE"));
	assert_true(proxy_idempotent("OPTIONS"));
	assert_false(proxy_idempotent("POST"));
	assert_false(proxy_idempotent("PATCH"));
	assert_false(proxy_idempotent("get"));
}

static void
test_addr_equal(void **state)
{
	struct sockaddr_in a = addr4("127.0.0.1", 80);
	struct sockaddr_in b = addr4("127.0.0.1", 80);
	struct sockaddr_in c = addr4("127.0.0.1", 81);
	struct sockaddr_in d = addr4("127.0.0.2", 80);
	struct sockaddr_in6 e;

	(void)state;
	memset(&e, 0, sizeof(e));
	e.sin6_family = AF_INET6;
	e.sin6_port = htons(80);
	assert_true(proxy_addr_equal((void *)&a, (void *)&b));
	assert_false(proxy_addr_equal((void *)&a, (void *)&c));
	assert_false(proxy_addr_equal((void *)&a, (void *)&d));
	assert_false(proxy_addr_equal((void *)&a, (void *)&e));
	assert_true(proxy_addr_equal((void *)&e, (void *)&e));
}

static void
test_log_escape(void **state)
{
	char out[32];

	(void)state;
	assert_string_equal(log_escape(out, sizeof(out), "a\"b\\c\n\x01", 7),
	    "a\\\"b\\\\c\\x0a\\x01");
	/* Truncation never splits an escape and always terminates. */
	assert_string_equal(log_escape(out, 6, "ab\"cd", 5), "ab\\\"c");
	assert_string_equal(log_escape(out, 5, "ab\ncd", 5), "ab");
	assert_string_equal(log_escape(out, 1, "abc", 3), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_single),
		cmocka_unit_test(test_route_host),
		cmocka_unit_test(test_route_path),
		cmocka_unit_test(test_rewrite_request),
		cmocka_unit_test(test_rewrite_rules),
		cmocka_unit_test(test_uperr_kind),
		cmocka_unit_test(test_rewrite_response),
		cmocka_unit_test(test_rewrite_pieces),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_addr_equal),
		cmocka_unit_test(test_log_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
