/*
 * Unit tests of src/config.c: every key's default and happy path, every
 * error class with its exact FILE:LINE message, the line-length limit,
 * and a check that the manual documents every key of the table.
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

#include <cmocka.h>

#include "config.h"

#define NAME "tlsgate.conf"
#define ROUTE "[route r]\nlisten = 127.0.0.1:8080\nupstream = up.example\n"

static char err[1024];

static struct config *
parse(const char *text)
{
	return config_parse(NAME, text, strlen(text), err, sizeof(err));
}

/* text must fail with exactly `want`. */
static void
expect_error(const char *text, const char *want)
{
	struct config *cfg = parse(text);

	if (cfg != NULL)
		config_unref(cfg);
	assert_null(cfg);
	assert_string_equal(err, want);
}

static struct config *
expect_ok(const char *text)
{
	struct config *cfg = parse(text);

	if (cfg == NULL)
		fail_msg("unexpected error: %s", err);
	return cfg;
}

/* A file text with one line of `n` bytes: "match_path = /aaa...". */
static char *
long_line(size_t n)
{
	const char *head = ROUTE "match_path = /";
	size_t hl = strlen(head), key = strlen("match_path = ");
	char *s = malloc(hl + n + 16);

	assert_non_null(s);
	assert_true(n > key + 1);
	memcpy(s, head, hl);
	memset(s + hl, 'a', n - key - 1);
	strcpy(s + hl + n - key - 1, "\n");
	return s;
}

static void
test_defaults(void **state)
{
	struct config *cfg = expect_ok(ROUTE);
	const struct route *r;

	(void)state;
	assert_string_equal(cfg->path, NAME);
	assert_int_equal(cfg->log_level, CONFIG_LOG_INFO);
	assert_int_equal(cfg->max_clients, 4096);
	assert_int_equal(cfg->header_timeout, 10);
	assert_int_equal(cfg->idle_timeout, 60);
	assert_int_equal(cfg->max_header_size, 16384);
	assert_int_equal(cfg->max_body_size, 65536);
	assert_int_equal(cfg->shutdown_timeout, 30);
	assert_int_equal(cfg->nroutes, 1);
	assert_int_equal(cfg->refcnt, 1);
	r = config_route(cfg, "r");
	assert_non_null(r);
	assert_null(config_route(cfg, "x"));
	assert_int_equal(r->line, 1);
	assert_string_equal(r->listen, "127.0.0.1:8080");
	assert_string_equal(r->upstream_host, "up.example");
	assert_int_equal(r->upstream_port, 443);
	assert_string_equal(r->host, "up.example");
	assert_string_equal(r->sni, "up.example");
	assert_int_equal(r->verify, 1);
	assert_string_equal(r->ca_file, "/etc/ssl/certs/ca-certificates.crt");
	assert_null(r->client_cert);
	assert_null(r->client_key);
	assert_int_equal(r->connect_timeout, 10);
	assert_int_equal(r->upstream_timeout, 90);
	assert_null(r->match_host);
	assert_null(r->match_path);
	config_unref(cfg);
}

static void
test_every_key(void **state)
{
	struct config *cfg;
	const struct route *r;
	const struct sockaddr_in *sin;

	(void)state;
	cfg = expect_ok(
	    "[gateway]\n"
	    "log_level = debug\n"
	    "max_clients = 1000000\n"
	    "header_timeout = 1\n"
	    "idle_timeout = 86400\n"
	    "max_header_size = 1k\n"
	    "max_body_size = 0\n"
	    "shutdown_timeout = 0\n"
	    "[route a-b_c.1]\n"
	    "listen = 127.0.0.1:8081\n"
	    "upstream = Cloud.Example.com:8443\n"
	    "host = api.example.com\n"
	    "sni = tls.example.com\n"
	    "verify = off\n"
	    "ca_file = /etc/ssl/certs/ca-certificates.crt\n"
	    "client_cert = /etc/hostname\n"
	    "client_key = /etc/hostname\n"
	    "connect_timeout = 2\n"
	    "upstream_timeout = 300\n"
	    "match_host = *.Example.COM\n"
	    "match_path = /v1/\n");
	assert_int_equal(cfg->log_level, CONFIG_LOG_DEBUG);
	assert_int_equal(cfg->max_clients, 1000000);
	assert_int_equal(cfg->header_timeout, 1);
	assert_int_equal(cfg->idle_timeout, 86400);
	assert_int_equal(cfg->max_header_size, 1024);
	assert_int_equal(cfg->max_body_size, 0);
	assert_int_equal(cfg->shutdown_timeout, 0);
	r = config_route(cfg, "a-b_c.1");
	assert_non_null(r);
	assert_int_equal(r->line, 9);
	sin = (const struct sockaddr_in *)&r->listen_addr;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 8081);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(r->listen_addrlen, sizeof(struct sockaddr_in));
	assert_string_equal(r->upstream_host, "Cloud.Example.com");
	assert_int_equal(r->upstream_port, 8443);
	assert_string_equal(r->host, "api.example.com");
	assert_string_equal(r->sni, "tls.example.com");
	assert_int_equal(r->verify, 0);
	assert_string_equal(r->client_cert, "/etc/hostname");
	assert_string_equal(r->client_key, "/etc/hostname");
	assert_int_equal(r->connect_timeout, 2);
	assert_int_equal(r->upstream_timeout, 300);
	assert_string_equal(r->match_host, "*.example.com");
	assert_string_equal(r->match_path, "/v1/");
	config_unref(cfg);
}

static void
test_bools_enums_sizes(void **state)
{
	static const char *const yes[] = { "yes", "true", "on", "1", "YES" };
	static const char *const no[] = { "no", "false", "off", "0", "Off" };
	static const char *const levels[] = { "error", "warning", "info",
	    "debug" };
	char text[256];
	struct config *cfg;
	size_t i;

	(void)state;
	for (i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), ROUTE "verify = %s\n", yes[i]);
		cfg = expect_ok(text);
		assert_int_equal(cfg->routes[0].verify, 1);
		config_unref(cfg);
		snprintf(text, sizeof(text), ROUTE "verify = %s\n", no[i]);
		cfg = expect_ok(text);
		assert_int_equal(cfg->routes[0].verify, 0);
		config_unref(cfg);
	}
	for (i = 0; i < 4; i++) {
		snprintf(text, sizeof(text), "[gateway]\nlog_level = %s\n"
		    ROUTE, levels[i]);
		cfg = expect_ok(text);
		assert_int_equal(cfg->log_level, (int)i);
		assert_string_equal(config_log_level_name(cfg->log_level),
		    levels[i]);
		config_unref(cfg);
	}
	assert_string_equal(config_log_level_name(7), "unknown");
	cfg = expect_ok("[gateway]\nmax_body_size = 1g\nmax_header_size = "
	    "1M\n" ROUTE);
	assert_int_equal(cfg->max_body_size, 1ULL << 30);
	assert_int_equal(cfg->max_header_size, 1 << 20);
	config_unref(cfg);
	cfg = expect_ok("[gateway]\nmax_body_size = 1099511627776\n" ROUTE);
	assert_int_equal(cfg->max_body_size, 1ULL << 40);
	config_unref(cfg);

	expect_error(ROUTE "verify = maybe\n",
	    NAME ":4: verify: \"maybe\" is not yes or no");
	expect_error("[gateway]\nlog_level = warn\n",
	    NAME ":2: log_level: \"warn\" is not one of error, warning, "
	    "info, debug");
}

/* Every numeric bound, hit from both sides. */
static void
test_bounds(void **state)
{
	(void)state;
	expect_error("[gateway]\nmax_clients = 0\n",
	    NAME ":2: max_clients: 0 is below the minimum 1");
	expect_error("[gateway]\nmax_clients = 1000001\n",
	    NAME ":2: max_clients: 1000001 is above the maximum 1000000");
	expect_error("[gateway]\nheader_timeout = 0\n",
	    NAME ":2: header_timeout: 0 is below the minimum 1");
	expect_error("[gateway]\nidle_timeout = 86401\n",
	    NAME ":2: idle_timeout: 86401 is above the maximum 86400");
	expect_error("[gateway]\nshutdown_timeout = -1\n",
	    NAME ":2: shutdown_timeout: \"-1\" is not a number");
	expect_error("[gateway]\nshutdown_timeout = 86401\n",
	    NAME ":2: shutdown_timeout: 86401 is above the maximum 86400");
	expect_error("[gateway]\nmax_header_size = 1023\n",
	    NAME ":2: max_header_size: 1023 is below the minimum 1024");
	expect_error("[gateway]\nmax_header_size = 1048577\n",
	    NAME ":2: max_header_size: 1048577 is above the maximum 1048576");
	expect_error("[gateway]\nmax_body_size = 1099511627777\n",
	    NAME ":2: max_body_size: 1099511627777 is above the maximum "
	    "1099511627776");
	expect_error("[gateway]\nmax_body_size = 2048g\n",
	    NAME ":2: max_body_size: 2048g is above the maximum "
	    "1099511627776");
	expect_error("[gateway]\nmax_body_size = 99999999999999999999999\n",
	    NAME ":2: max_body_size: 99999999999999999999999 is above the "
	    "maximum 1099511627776");
	expect_error(ROUTE "connect_timeout = 0\n",
	    NAME ":4: connect_timeout: 0 is below the minimum 1");
	expect_error(ROUTE "upstream_timeout = 86401\n",
	    NAME ":4: upstream_timeout: 86401 is above the maximum 86400");
	expect_error("[gateway]\nmax_clients = -1\n",
	    NAME ":2: max_clients: \"-1\" is not a number");
	expect_error("[gateway]\nmax_clients = 0x10\n",
	    NAME ":2: max_clients: \"0x10\" is not a number");
	expect_error("[gateway]\nmax_clients = 1k\n",
	    NAME ":2: max_clients: \"1k\" is not a number");
	expect_error("[gateway]\nmax_clients =\n",
	    NAME ":2: max_clients: missing value");
}

static void
test_listen_forms(void **state)
{
	struct config *cfg;
	const struct sockaddr_in6 *sin6;
	struct in6_addr lo = IN6ADDR_LOOPBACK_INIT;

	(void)state;
	cfg = expect_ok("[route r]\nlisten = [::1]:8080\nupstream = u.example\n");
	sin6 = (const struct sockaddr_in6 *)&cfg->routes[0].listen_addr;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 8080);
	assert_memory_equal(&sin6->sin6_addr, &lo, sizeof(lo));
	assert_int_equal(cfg->routes[0].listen_addrlen, sizeof(*sin6));
	config_unref(cfg);
	cfg = expect_ok("[route r]\nlisten = 0.0.0.0:65535\nupstream = u.example\n");
	config_unref(cfg);

#define BAD_LISTEN(v, msg) expect_error("[route r]\nlisten = " v "\n", \
	    NAME ":2: listen: " msg)
	BAD_LISTEN("localhost:8080",
	    "\"localhost\" is not a numeric IPv4 address");
	BAD_LISTEN("127.0.0.1", "\"127.0.0.1\" needs a port of 1-65535 after "
	    "the address");
	BAD_LISTEN("127.0.0.1:0", "\"127.0.0.1:0\" needs a port of 1-65535 "
	    "after the address");
	BAD_LISTEN("127.0.0.1:65536", "\"127.0.0.1:65536\" needs a port of "
	    "1-65535 after the address");
	BAD_LISTEN("127.0.0.1:http", "\"127.0.0.1:http\" needs a port of "
	    "1-65535 after the address");
	BAD_LISTEN("::1:8080", "\"::1:8080\": an IPv6 address must be "
	    "written in brackets: [ADDR]:PORT");
	BAD_LISTEN("[::1]8080", "\"[::1]8080\" is not [IPV6]:PORT");
	BAD_LISTEN("[::1:8080", "\"[::1:8080\" is not [IPV6]:PORT");
	BAD_LISTEN("[127.0.0.1]:80", "\"127.0.0.1\" is not a numeric IPv6 "
	    "address");
	BAD_LISTEN("256.1.1.1:80", "\"256.1.1.1:80\": not a host name or "
	    "IPv4 address");
	BAD_LISTEN(":8080", "\":8080\": not a host name or IPv4 address");
#undef BAD_LISTEN
}

static void
test_upstream_forms(void **state)
{
	static const struct {
		const char *v, *host, *hosthdr, *sni;
		unsigned port;
	} ok[] = {
		{ "up.example", "up.example", "up.example", "up.example", 443 },
		{ "up.example:443", "up.example", "up.example", "up.example",
		    443 },
		{ "up.example:8443", "up.example", "up.example:8443",
		    "up.example", 8443 },
		{ "192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.1", 443 },
		{ "[2001:db8::1]", "2001:db8::1", "[2001:db8::1]",
		    "2001:db8::1", 443 },
		{ "[::1]:1", "::1", "[::1]:1", "::1", 1 },
	};
	char text[256];
	struct config *cfg;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(text, sizeof(text), "[route r]\nlisten = 127.0.0.1:1\n"
		    "upstream = %s\n", ok[i].v);
		cfg = expect_ok(text);
		assert_string_equal(cfg->routes[0].upstream_host, ok[i].host);
		assert_int_equal(cfg->routes[0].upstream_port, ok[i].port);
		assert_string_equal(cfg->routes[0].host, ok[i].hosthdr);
		assert_string_equal(cfg->routes[0].sni, ok[i].sni);
		config_unref(cfg);
	}
	/* sni defaults to host without its port */
	cfg = expect_ok(ROUTE "host = h.example:8080\n");
	assert_string_equal(cfg->routes[0].host, "h.example:8080");
	assert_string_equal(cfg->routes[0].sni, "h.example");
	config_unref(cfg);

#define BAD_UP(v, msg) expect_error("[route r]\nupstream = " v "\n", \
	    NAME ":2: upstream: " msg)
	BAD_UP("up.example:0", "\"0\" is not a port of 1-65535");
	BAD_UP("up.example:", "\"\" is not a port of 1-65535");
	BAD_UP("up.example:99999", "\"99999\" is not a port of 1-65535");
	BAD_UP("2001:db8::1", "\"2001:db8::1\": an IPv6 address must be "
	    "written in brackets: [ADDR]:PORT");
	BAD_UP("[2001:db8::1", "\"[2001:db8::1\": missing ']' after the IPv6 "
	    "address");
	BAD_UP("[up.example]:443", "\"[up.example]:443\": not an IPv6 "
	    "address between [ and ]");
	BAD_UP("up_example", "\"up_example\": not a host name or IPv4 "
	    "address");
	BAD_UP("-up.example", "\"-up.example\": not a host name or IPv4 "
	    "address");
	BAD_UP("up..example", "\"up..example\": not a host name or IPv4 "
	    "address");
	BAD_UP("https://up.example", "\"https://up.example\": write "
	    "HOST[:PORT], not a URL");
#undef BAD_UP
	expect_error(ROUTE "host = a b\n", NAME ":4: host: \"a b\": not a "
	    "host name or IPv4 address");
	expect_error(ROUTE "sni = 1.2.3.4:443\n", NAME ":4: sni: "
	    "\"1.2.3.4:443\" is not a host name or IP address");
}

static void
test_match_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok(ROUTE "match_host = *.Example.com\nmatch_path = /v1\n");
	assert_string_equal(cfg->routes[0].match_host, "*.example.com");
	assert_string_equal(cfg->routes[0].match_path, "/v1");
	config_unref(cfg);
	cfg = expect_ok(ROUTE "match_host = Dev.Example\n");
	assert_string_equal(cfg->routes[0].match_host, "dev.example");
	config_unref(cfg);
	expect_error(ROUTE "match_host = *example.com\n", NAME ":4: "
	    "match_host: \"*example.com\" is not a host name or *.suffix");
	expect_error(ROUTE "match_host = *.\n", NAME ":4: "
	    "match_host: \"*.\" is not a host name or *.suffix");
	expect_error(ROUTE "match_host = a.*.com\n", NAME ":4: "
	    "match_host: \"a.*.com\" is not a host name or *.suffix");
	expect_error(ROUTE "match_path = v1\n", NAME ":4: match_path: \"v1\" "
	    "does not start with '/'");
	expect_error(ROUTE "match_path = /v1?x\n", NAME ":4: match_path: "
	    "\"/v1?x\" contains white space, '?' or '#'");
}

static void
test_routing(void **state)
{
	struct config *cfg;
	struct sockaddr_in a;
	const struct route *r;

	(void)state;
	cfg = expect_ok(
	    "[route any]\nlisten = 127.0.0.1:8080\nupstream = any.example\n"
	    "[route wild]\nlisten = 127.0.0.1:8080\nupstream = w.example\n"
	    "match_host = *.example.com\n"
	    "[route deep]\nlisten = 127.0.0.1:8080\nupstream = d.example\n"
	    "match_host = *.b.example.com\n"
	    "[route exact]\nlisten = 127.0.0.1:8080\nupstream = e.example\n"
	    "match_host = a.example.com\n"
	    "[route path]\nlisten = 127.0.0.1:8080\nupstream = p.example\n"
	    "match_path = /v1/\n"
	    "[route other]\nlisten = 127.0.0.1:9090\nupstream = o.example\n"
	    "match_host = only.example\n");
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(8080);
	a.sin_addr.s_addr = htonl(0x7f000001);
#define M(h, p) config_match(cfg, (struct sockaddr *)&a, sizeof(a), h, \
	    strlen(h), p, strlen(p))
	assert_string_equal(M("x.example.org", "/")->name, "any");
	assert_string_equal(M("x.example.org", "/v1/telemetry?ct=30")->name,
	    "path");
	assert_string_equal(M("x.example.org", "/v1?x=/v1/")->name, "any");
	assert_string_equal(M("x.example.com", "/v1/t")->name, "wild");
	assert_string_equal(M("X.B.Example.COM:8080", "/")->name, "deep");
	assert_string_equal(M("a.example.com.", "/")->name, "exact");
	assert_string_equal(M("example.com", "/")->name, "any");
	assert_string_equal(M("[::1]:8080", "/")->name, "any");
	r = config_match(cfg, (struct sockaddr *)&a, sizeof(a), NULL, 0,
	    NULL, 0);
	assert_string_equal(r->name, "any");
	a.sin_port = htons(9090);
	assert_null(M("x.example.org", "/"));
	assert_string_equal(M("only.example", "/")->name, "other");
	a.sin_port = htons(1);
	assert_null(M("only.example", "/"));
#undef M
	config_unref(cfg);
}

static void
test_allow_parse(void **state)
{
	struct config *cfg;
	const struct route *r;
	char *text;
	size_t i, n;
	static const uint8_t net6[16] = { 0xfd };

	(void)state;
	cfg = expect_ok(ROUTE);
	assert_int_equal(cfg->routes[0].nallow, 0);
	config_unref(cfg);

	cfg = expect_ok(ROUTE "allow = 192.168.1.0/24 10.0.0.5, fd00::/8 ::1 "
	    "0.0.0.0/0 ::ffff:10.1.0.0/112\n");
	r = &cfg->routes[0];
	assert_int_equal(r->nallow, 6);
	assert_int_equal(r->allow[0].family, AF_INET);
	assert_int_equal(r->allow[0].prefix, 24);
	assert_memory_equal(r->allow[0].addr, "\xc0\xa8\x01\x00", 4);
	assert_int_equal(r->allow[1].family, AF_INET);
	assert_int_equal(r->allow[1].prefix, 32);
	assert_memory_equal(r->allow[1].addr, "\x0a\x00\x00\x05", 4);
	assert_int_equal(r->allow[2].family, AF_INET6);
	assert_int_equal(r->allow[2].prefix, 8);
	assert_memory_equal(r->allow[2].addr, net6, 16);
	assert_int_equal(r->allow[3].family, AF_INET6);
	assert_int_equal(r->allow[3].prefix, 128);
	assert_int_equal(r->allow[4].prefix, 0);
	/* an IPv4-mapped entry is kept as IPv4 */
	assert_int_equal(r->allow[5].family, AF_INET);
	assert_int_equal(r->allow[5].prefix, 16);
	assert_memory_equal(r->allow[5].addr, "\x0a\x01\x00\x00", 4);
	config_unref(cfg);

	expect_error(ROUTE "allow =\n", NAME ":4: allow: missing value");
	expect_error(ROUTE "allow = , ,\n", NAME ":4: allow: missing value");
	expect_error(ROUTE "allow = 10.0.0.0/8\nallow = ::1\n",
	    NAME ":5: duplicate key \"allow\"");
	expect_error(ROUTE "allow = 10.0.0.256\n", NAME ":4: allow: "
	    "\"10.0.0.256\" is not an IPv4 or IPv6 address");
	expect_error(ROUTE "allow = 10.0.0.1 lan.example\n", NAME ":4: allow: "
	    "\"lan.example\" is not an IPv4 or IPv6 address");
	expect_error(ROUTE "allow = [::1]\n", NAME ":4: allow: "
	    "\"[::1]\" is not an IPv4 or IPv6 address");
	expect_error(ROUTE "allow = /8\n", NAME ":4: allow: "
	    "\"/8\" is not an IPv4 or IPv6 address");
	expect_error(ROUTE "allow = 10.0.0.0/33\n", NAME ":4: allow: "
	    "\"10.0.0.0/33\": the prefix length must be 0-32");
	expect_error(ROUTE "allow = ::/129\n", NAME ":4: allow: "
	    "\"::/129\": the prefix length must be 0-128");
	expect_error(ROUTE "allow = 10.0.0.0/\n", NAME ":4: allow: "
	    "\"10.0.0.0/\": the prefix length must be 0-32");
	expect_error(ROUTE "allow = 10.0.0.0/-8\n", NAME ":4: allow: "
	    "\"10.0.0.0/-8\": the prefix length must be 0-32");
	expect_error(ROUTE "allow = 10.0.0.0/8/8\n", NAME ":4: allow: "
	    "\"10.0.0.0/8/8\": the prefix length must be 0-32");
	expect_error(ROUTE "allow = 192.168.1.1/24\n", NAME ":4: allow: "
	    "\"192.168.1.1/24\" has bits set after the prefix; the network "
	    "is 192.168.1.0/24");
	expect_error(ROUTE "allow = 10.0.0.1/0\n", NAME ":4: allow: "
	    "\"10.0.0.1/0\" has bits set after the prefix; the network is "
	    "0.0.0.0/0");
	expect_error(ROUTE "allow = fd00::1/64\n", NAME ":4: allow: "
	    "\"fd00::1/64\" has bits set after the prefix; the network is "
	    "fd00::/64");
	expect_error(ROUTE "allow = 10.0.0.128/25 10.0.0.64/25\n", NAME ":4: "
	    "allow: \"10.0.0.64/25\" has bits set after the prefix; the "
	    "network is 10.0.0.0/25");

	/* CONFIG_MAX_ALLOW entries are fine, one more is not. */
	for (n = CONFIG_MAX_ALLOW; n <= CONFIG_MAX_ALLOW + 1; n++) {
		text = malloc(strlen(ROUTE) + 16 + n * 16);
		assert_non_null(text);
		strcpy(text, ROUTE "allow =");
		for (i = 0; i < n; i++)
			sprintf(text + strlen(text), " 10.0.%zu.0/24", i);
		strcat(text, "\n");
		if (n == CONFIG_MAX_ALLOW) {
			cfg = expect_ok(text);
			assert_int_equal(cfg->routes[0].nallow, CONFIG_MAX_ALLOW);
			config_unref(cfg);
		} else
			expect_error(text, NAME ":4: allow: more than 64 "
			    "entries");
		free(text);
	}
}

static int
allowed4(const struct route *r, const char *ip)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(40000);
	assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return config_allowed(r, (struct sockaddr *)&a);
}

static int
allowed6(const struct route *r, const char *ip)
{
	struct sockaddr_in6 a;

	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_port = htons(40000);
	assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return config_allowed(r, (struct sockaddr *)&a);
}

static void
test_allow_match(void **state)
{
	struct config *cfg;
	const struct route *r;
	struct sockaddr other;

	(void)state;
	cfg = expect_ok(
	    "[route open]\nlisten = 127.0.0.1:8080\nupstream = a.example\n"
	    "[route lan]\nlisten = 127.0.0.1:8081\nupstream = a.example\n"
	    "allow = 192.168.1.0/24 10.0.0.5/32 172.16.0.0/12 fd00::/8 ::1/128 "
	    "2001:db8::/33\n"
	    "[route all4]\nlisten = 127.0.0.1:8082\nupstream = a.example\n"
	    "allow = 0.0.0.0/0\n"
	    "[route all6]\nlisten = 127.0.0.1:8083\nupstream = a.example\n"
	    "allow = ::/0\n");

	r = config_route(cfg, "open");
	assert_true(allowed4(r, "203.0.113.9"));
	assert_true(allowed6(r, "2001:db8::1"));

	r = config_route(cfg, "lan");
	assert_true(allowed4(r, "192.168.1.0"));
	assert_true(allowed4(r, "192.168.1.255"));
	assert_false(allowed4(r, "192.168.2.1"));
	assert_false(allowed4(r, "192.168.0.255"));
	/* /32: that host only */
	assert_true(allowed4(r, "10.0.0.5"));
	assert_false(allowed4(r, "10.0.0.4"));
	assert_false(allowed4(r, "10.0.0.6"));
	/* a prefix that is not a multiple of 8 */
	assert_true(allowed4(r, "172.31.255.255"));
	assert_false(allowed4(r, "172.32.0.0"));
	assert_false(allowed4(r, "172.15.255.255"));
	assert_true(allowed6(r, "2001:db8:7fff::1"));
	assert_false(allowed6(r, "2001:db8:8000::1"));
	/* IPv6, /8 and /128 */
	assert_true(allowed6(r, "fd12:3456::1"));
	assert_false(allowed6(r, "fe80::1"));
	assert_true(allowed6(r, "::1"));
	assert_false(allowed6(r, "::2"));
	/* IPv4-mapped peers match the IPv4 entries, and only those */
	assert_true(allowed6(r, "::ffff:192.168.1.7"));
	assert_true(allowed6(r, "::ffff:10.0.0.5"));
	assert_false(allowed6(r, "::ffff:10.0.0.6"));
	/* a family never crosses over: ::c0a8:107 is not 192.168.1.7 */
	assert_false(allowed6(r, "::192.168.1.7"));
	memset(&other, 0, sizeof(other));
	other.sa_family = AF_UNIX;
	assert_false(config_allowed(r, &other));

	/* /0 admits its whole family and nothing else */
	r = config_route(cfg, "all4");
	assert_true(allowed4(r, "0.0.0.0"));
	assert_true(allowed4(r, "255.255.255.255"));
	assert_true(allowed6(r, "::ffff:1.2.3.4"));
	assert_false(allowed6(r, "::1"));
	r = config_route(cfg, "all6");
	assert_true(allowed6(r, "2001:db8::1"));
	assert_true(allowed6(r, "::"));
	assert_false(allowed4(r, "10.0.0.1"));
	config_unref(cfg);
}

static void
test_syntax(void **state)
{
	struct config *cfg;

	(void)state;
	/* comments, inline comments, blank lines, CRLF, indented comments */
	cfg = expect_ok(
	    "; comment\r\n"
	    "# comment\r\n"
	    "\r\n"
	    "   ; indented comment\r\n"
	    "[gateway]   ; section comment\r\n"
	    "max_clients = 12 ; inline\r\n"
	    "idle_timeout = 13 # inline too\r\n"
	    "[route  r ]\r\n"
	    "listen = 127.0.0.1:8080\r\n"
	    "upstream = up.example\r\n"
	    "match_path = /a;b\r\n"
	    "client_cert = ; empty is unset\r\n"
	    "client_key =\r\n"
	    "ca_file =\r\n");
	assert_int_equal(cfg->max_clients, 12);
	assert_int_equal(cfg->idle_timeout, 13);
	assert_non_null(config_route(cfg, "r"));
	assert_string_equal(cfg->routes[0].match_path, "/a;b");
	assert_null(cfg->routes[0].client_cert);
	assert_string_equal(cfg->routes[0].ca_file,
	    "/etc/ssl/certs/ca-certificates.crt");
	config_unref(cfg);

	/* a BOM at the start is skipped; anywhere else it is text */
	cfg = expect_ok("\xef\xbb\xbf" ROUTE);
	config_unref(cfg);
	expect_error(ROUTE "\xef\xbb\xbfverify = yes\n", NAME ":4: unknown "
	    "key \"\xef\xbb\xbfverify\" in [route r]");
	/* no final newline */
	cfg = expect_ok("[route r]\nlisten = 127.0.0.1:8080\nupstream = u.x");
	config_unref(cfg);
	/* inih's key: value form */
	cfg = expect_ok(ROUTE "connect_timeout: 7\n");
	assert_int_equal(cfg->routes[0].connect_timeout, 7);
	config_unref(cfg);

	expect_error(ROUTE "lisen = 1\n",
	    NAME ":4: unknown key \"lisen\" in [route r]");
	expect_error("[gateway]\nlisten = 1\n",
	    NAME ":2: unknown key \"listen\" in [gateway]");
	expect_error("[gateway]\nLog_Level = info\n",
	    NAME ":2: unknown key \"Log_Level\" in [gateway]");
	expect_error("max_clients = 1\n",
	    NAME ":1: key \"max_clients\" outside any section");
	expect_error(ROUTE "\nupstream = other.example\n",
	    NAME ":5: duplicate key \"upstream\"");
	expect_error(ROUTE "verify\n", NAME ":4: expected \"key = value\", a "
	    "[section] or a comment");
	expect_error(ROUTE "host = \"up.example\"\n",
	    NAME ":4: host: values are not quoted; remove the quotes");
	expect_error(ROUTE "ca_file = 'x'\n",
	    NAME ":4: ca_file: values are not quoted; remove the quotes");
	assert_null(config_parse(NAME, ROUTE "a\0b = 1\n",
	    sizeof(ROUTE "a\0b = 1\n") - 1, err, sizeof(err)));
	assert_string_equal(err, NAME ":4: control character 0x00");
	expect_error(ROUTE "verify = y\res\n",
	    NAME ":4: control character 0x0d");
	expect_error(ROUTE "verify = yes\x7f\n",
	    NAME ":4: control character 0x7f");
}

static void
test_sections(void **state)
{
	char text[512];
	struct config *cfg;

	(void)state;
	expect_error("[rout x]\n", NAME ":1: unknown section [rout x]");
	expect_error("[Gateway]\n", NAME ":1: unknown section [Gateway]");
	expect_error("[]\n", NAME ":1: unknown section []");
	expect_error("[route]\n", NAME ":1: unknown section [route]");
	expect_error("[gateway\n", NAME ":1: section header without ']'");
	expect_error("[gateway] x\n",
	    NAME ":1: text after the section header");
	expect_error("[gateway]\n[gateway]\n",
	    NAME ":2: duplicate section [gateway] (first at line 1)");
	expect_error(ROUTE "[route r]\n",
	    NAME ":4: duplicate route \"r\" (first at line 1)");
	expect_error("[route a/b]\n", NAME ":1: route name \"a/b\" is not "
	    "1-64 of A-Z a-z 0-9 _ . -");
	/* 64 bytes is the longest name; inih alone would cut it at 49 */
	snprintf(text, sizeof(text), "[route %064d]\nlisten = 127.0.0.1:1\n"
	    "upstream = u.example\n", 7);
	cfg = expect_ok(text);
	assert_int_equal(strlen(cfg->routes[0].name), 64);
	config_unref(cfg);
	snprintf(text, sizeof(text), "[route %065d]\n", 7);
	expect_error(text, NAME ":1: route name \"0000000000000000000000000"
	    "000000000000000000000000000000000000000\" is not 1-64 of A-Z "
	    "a-z 0-9 _ . -");
}

static void
test_continuation(void **state)
{
	(void)state;
	expect_error(ROUTE "match_path = /a\n  /b\n", NAME ":5: line starts "
	    "with white space (continuation lines are not supported)");
	expect_error("[route r]\n\tlisten = 127.0.0.1:8080\n", NAME ":2: line "
	    "starts with white space (continuation lines are not supported)");
	expect_error(" [gateway]\n", NAME ":1: line starts with white space "
	    "(continuation lines are not supported)");
}

static void
test_line_length(void **state)
{
	struct config *cfg;
	char *s;

	(void)state;
	/* inih's default buffer would split these two; they come out whole */
	s = long_line(200);
	cfg = expect_ok(s);
	assert_int_equal(strlen(cfg->routes[0].match_path), 200 - 13);
	config_unref(cfg);
	free(s);
	s = long_line(CONFIG_MAX_LINE - 1);
	cfg = expect_ok(s);
	assert_int_equal(strlen(cfg->routes[0].match_path),
	    CONFIG_MAX_LINE - 1 - 13);
	config_unref(cfg);
	free(s);
	/* the same with CRLF: the terminator does not count */
	s = long_line(CONFIG_MAX_LINE - 1);
	strcpy(s + strlen(s) - 1, "\r\n");
	cfg = expect_ok(s);
	config_unref(cfg);
	free(s);
	s = long_line(CONFIG_MAX_LINE);
	expect_error(s, NAME ":4: line longer than 4095 bytes");
	free(s);
	s = long_line(5000);
	expect_error(s, NAME ":4: line longer than 4095 bytes");
	free(s);
}

static void
test_cross_checks(void **state)
{
	(void)state;
	expect_error("", NAME ": no [route NAME] section");
	expect_error("[gateway]\n; nothing else\n",
	    NAME ": no [route NAME] section");
	expect_error("[route r]\nupstream = u.example\n",
	    NAME ":1: route \"r\": missing listen");
	expect_error("[gateway]\n[route r]\nlisten = 127.0.0.1:1\n",
	    NAME ":2: route \"r\": missing upstream");
	expect_error(ROUTE "client_cert = /etc/hostname\n",
	    NAME ":1: route \"r\": client_cert is set without client_key");
	expect_error(ROUTE "client_key = /etc/hostname\n",
	    NAME ":1: route \"r\": client_key is set without client_cert");
	expect_error(ROUTE "ca_file = /nonexistent/ca.pem\n", NAME ":4: "
	    "ca_file: /nonexistent/ca.pem: No such file or directory");
	expect_error(ROUTE "client_key = /nonexistent/k.pem\n", NAME ":4: "
	    "client_key: /nonexistent/k.pem: No such file or directory");
	expect_error(ROUTE "client_cert = /etc\n", NAME ":4: "
	    "client_cert: /etc: not a regular file");
	expect_error(ROUTE "ca_file = /dev/null\n", NAME ":4: "
	    "ca_file: /dev/null: not a regular file");
	expect_error(ROUTE "[route s]\nlisten = 127.0.0.1:8080\n"
	    "upstream = v.example\n", NAME ":4: route \"s\": same listen, "
	    "match_host and match_path as route \"r\"");
	expect_error(ROUTE "match_path = /a\n[route s]\nlisten = "
	    "127.0.0.1:08080\nupstream = v.example\nmatch_path = /a\n",
	    NAME ":5: route \"s\": same listen, match_host and match_path as "
	    "route \"r\"");
	expect_error(ROUTE "[route s]\nlisten = 0.0.0.0:8080\n"
	    "upstream = v.example\n", NAME ":4: route \"s\": listen "
	    "0.0.0.0:8080 overlaps 127.0.0.1:8080 of route \"r\"; use the "
	    "same address");
}

static void
test_routes_limit(void **state)
{
	size_t cap = (CONFIG_MAX_ROUTES + 1) * 96, n = 0;
	char *s = malloc(cap);
	struct config *cfg;
	int i;

	(void)state;
	assert_non_null(s);
	for (i = 0; i < CONFIG_MAX_ROUTES; i++)
		n += (size_t)snprintf(s + n, cap - n, "[route r%d]\nlisten = "
		    "127.0.0.1:%d\nupstream = u.example\n", i, 1000 + i);
	cfg = expect_ok(s);
	assert_int_equal(cfg->nroutes, CONFIG_MAX_ROUTES);
	config_unref(cfg);
	snprintf(s + n, cap - n, "[route last]\n");
	expect_error(s, NAME ":769: more than 256 routes");
	free(s);
}

static void
test_verify_no(void **state)
{
	struct config *cfg;

	(void)state;
	/* the default CA file is only required when verifying */
	cfg = expect_ok(ROUTE "verify = no\n");
	assert_int_equal(cfg->routes[0].verify, 0);
	config_unref(cfg);
}

static void
test_ref(void **state)
{
	struct config *cfg = expect_ok(ROUTE);

	(void)state;
	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(cfg->refcnt, 2);
	config_unref(cfg);
	assert_int_equal(cfg->refcnt, 1);
	config_unref(cfg);
	config_unref(NULL);
}

static void
test_load(void **state)
{
	char path[] = "/tmp/test_config.XXXXXX";
	struct config *cfg;
	FILE *f;
	int fd;
	size_t i;

	(void)state;
	cfg = config_load("conf/tlsgate.conf", err, sizeof(err));
	if (cfg == NULL)
		fail_msg("conf/tlsgate.conf: %s", err);
	assert_non_null(config_route(cfg, "drogue"));
	assert_string_equal(config_route(cfg, "drogue")->upstream_host,
	    "http.sandbox.drogue.cloud");
	assert_int_equal(config_route(cfg, "drogue")->verify, 1);
	config_unref(cfg);

	assert_null(config_load("/nonexistent/tlsgate.conf", err,
	    sizeof(err)));
	assert_string_equal(err, "/nonexistent/tlsgate.conf: No such file "
	    "or directory");
	assert_null(config_load("/", err, sizeof(err)));
	assert_string_equal(err, "/: Is a directory");

	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(ROUTE "lisen = 1\n", f);
	fflush(f);
	assert_null(config_load(path, err, sizeof(err)));
	assert_true(strncmp(err, path, strlen(path)) == 0);
	assert_string_equal(err + strlen(path),
	    ":4: unknown key \"lisen\" in [route r]");
	/* CONFIG_MAX_FILE bytes of comments */
	rewind(f);
	assert_int_equal(ftruncate(fd, 0), 0);
	fputs(ROUTE, f);
	for (i = strlen(ROUTE); i + 10 <= CONFIG_MAX_FILE; i += 10)
		fputs("#23456789\n", f);
	fflush(f);
	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("%s", err);
	config_unref(cfg);
	fputs("#2345678901\n", f);
	fflush(f);
	assert_null(config_load(path, err, sizeof(err)));
	assert_string_equal(err + strlen(path), ": larger than 1048576 bytes");
	fclose(f);
	unlink(path);
}

/* docs/tlsgate.conf.5 must document every key of the table. */
/* tls = builtin and the keys that only apply to it. */
static void
test_builtin_keys(void **state)
{
	struct config *cfg;
	const struct route *r;

	(void)state;
	cfg = expect_ok(ROUTE);
	r = config_route(cfg, "r");
	assert_int_equal(r->tls, CONFIG_TLS_OPENSSL);
	assert_int_equal(r->max_fragment, 0);
	assert_int_equal(r->record_size_limit, 0);
	assert_int_equal(r->record_fallback, 0);
	assert_int_equal(r->resumption, 1);
	assert_int_equal(r->ngroups, 0);
	assert_int_equal(r->nciphers, 0);
	assert_null(r->alpn);
	config_unref(cfg);

	cfg = expect_ok(ROUTE "tls = builtin\nmax_fragment = 512\n"
	    "record_size_limit = 16384\nrecord_fallback = refuse\n"
	    "groups = secp256r1, X25519\n"
	    "ciphers = TLS_CHACHA20_POLY1305_SHA256 TLS_AES_128_GCM_SHA256\n"
	    "resumption = no\nalpn = http/1.1\n");
	r = config_route(cfg, "r");
	assert_int_equal(r->tls, CONFIG_TLS_BUILTIN);
	assert_int_equal(r->max_fragment, 512);
	assert_int_equal(r->record_size_limit, 16384);
	assert_int_equal(r->record_fallback, 1);
	assert_int_equal(r->resumption, 0);
	assert_int_equal(r->ngroups, 2);
	assert_int_equal(r->groups[0], 0x0017);
	assert_int_equal(r->groups[1], 0x001d);
	assert_int_equal(r->nciphers, 2);
	assert_int_equal(r->ciphers[0], 0x1303);
	assert_int_equal(r->ciphers[1], 0x1301);
	assert_string_equal(r->alpn, "http/1.1");
	config_unref(cfg);

	/* The lower bound of record_size_limit (RFC 8449 §4: 64). */
	cfg = expect_ok(ROUTE "tls = builtin\nrecord_size_limit = 64\n"
	    "groups = P-256\n");
	r = config_route(cfg, "r");
	assert_int_equal(r->record_size_limit, 64);
	assert_int_equal(r->groups[0], 0x0017);
	config_unref(cfg);

	expect_error(ROUTE "tls = gnutls\n",
	    NAME ":4: tls: \"gnutls\" is not openssl or builtin");
	expect_error(ROUTE "tls = builtin\nmax_fragment = 8192\n",
	    NAME ":5: max_fragment: \"8192\" is not 0, 512, 1024, 2048 or "
	    "4096");
	expect_error(ROUTE "tls = builtin\nrecord_size_limit = 63\n",
	    NAME ":5: record_size_limit: \"63\" is not 0 or 64-16384");
	expect_error(ROUTE "tls = builtin\nrecord_size_limit = 16385\n",
	    NAME ":5: record_size_limit: \"16385\" is not 0 or 64-16384");
	expect_error(ROUTE "tls = builtin\nrecord_fallback = maybe\n",
	    NAME ":5: record_fallback: \"maybe\" is not full or refuse");
	expect_error(ROUTE "tls = builtin\ngroups = x448\n",
	    NAME ":5: groups: unknown name \"x448\"");
	expect_error(ROUTE "tls = builtin\ngroups = x25519 x25519\n",
	    NAME ":5: groups: \"x25519\" is listed twice");
	expect_error(ROUTE "tls = builtin\ngroups = ,\n",
	    NAME ":5: groups: missing value");
	expect_error(ROUTE "tls = builtin\nciphers = TLS_AES_128_CCM_SHA256\n",
	    NAME ":5: ciphers: unknown name \"TLS_AES_128_CCM_SHA256\"");
	expect_error(ROUTE "tls = builtin\nalpn = "
	    "a-protocol-name-of-32-bytes-long\n",
	    NAME ":5: alpn: \"a-protocol-name-of-32-bytes-long\" is longer "
	    "than 31 bytes");
	/* Builtin-only keys on an openssl route: an error at the key's line,
	 * also when `tls` comes after it. */
	expect_error(ROUTE "verify = yes\nmax_fragment = 512\n",
	    NAME ":5: route \"r\": max_fragment needs tls = builtin");
	expect_error(ROUTE "resumption = no\ntls = openssl\n",
	    NAME ":4: route \"r\": resumption needs tls = builtin");
	cfg = expect_ok("[route r]\nalpn = http/1.1\ntls = builtin\n"
	    "listen = 127.0.0.1:8080\nupstream = up.example\n");
	config_unref(cfg);
}

static void
test_upstream_list(void **state)
{
	struct config *cfg;
	const struct route *r;

	(void)state;
	cfg = expect_ok("[route r]\nlisten = 127.0.0.1:8080\n"
	    "upstream = a.example:8443, 192.0.2.1 [2001:db8::1]:444,b.example\n");
	r = config_route(cfg, "r");
	assert_int_equal(r->nservers, 4);
	assert_string_equal(r->servers[0].host, "a.example");
	assert_int_equal(r->servers[0].port, 8443);
	assert_string_equal(r->servers[1].host, "192.0.2.1");
	assert_int_equal(r->servers[1].port, 443);
	assert_string_equal(r->servers[2].host, "2001:db8::1");
	assert_int_equal(r->servers[2].port, 444);
	assert_string_equal(r->servers[3].host, "b.example");
	/* The first server stands for the route where one name is needed. */
	assert_string_equal(r->upstream_host, "a.example");
	assert_int_equal(r->upstream_port, 8443);
	assert_string_equal(r->host, "a.example:8443");
	assert_string_equal(r->sni, "a.example");
	config_unref(cfg);

	cfg = expect_ok(ROUTE);
	assert_int_equal(cfg->routes[0].nservers, 1);
	assert_string_equal(cfg->routes[0].servers[0].host, "up.example");
	assert_int_equal(cfg->routes[0].servers[0].port, 443);
	config_unref(cfg);

	expect_error("[route r]\nlisten = 127.0.0.1:8080\n"
	    "upstream = a.example, A.example:443\n",
	    NAME ":3: upstream: \"A.example:443\" is listed twice");
	expect_error("[route r]\nlisten = 127.0.0.1:8080\n"
	    "upstream = a.example b.example:0\n",
	    NAME ":3: upstream: \"0\" is not a port of 1-65535");
	expect_error("[route r]\nlisten = 127.0.0.1:8080\nupstream = , ,\n",
	    NAME ":3: upstream: missing value");
	expect_error("[route r]\nlisten = 127.0.0.1:8080\nupstream = "
	    "a:1 a:2 a:3 a:4 a:5 a:6 a:7 a:8 a:9 a:10 a:11 a:12 a:13 a:14 "
	    "a:15 a:16 a:17\n",
	    NAME ":3: upstream: more than 16 servers");
}

static void
test_health_keys(void **state)
{
	struct config *cfg;
	const struct route *r;

	(void)state;
	cfg = expect_ok(ROUTE);
	r = &cfg->routes[0];
	assert_null(r->health_method);
	assert_null(r->health_path);
	assert_int_equal(r->health_interval, 5);
	assert_int_equal(r->health_timeout, 2);
	assert_int_equal(r->health_rise, 2);
	assert_int_equal(r->health_fall, 3);
	config_unref(cfg);

	cfg = expect_ok(ROUTE "health_check = HEAD   /healthz?x=1\n"
	    "health_interval = 10\nhealth_timeout = 10\nhealth_rise = 1\n"
	    "health_fall = 100\n");
	r = &cfg->routes[0];
	assert_string_equal(r->health_method, "HEAD");
	assert_string_equal(r->health_path, "/healthz?x=1");
	assert_int_equal(r->health_interval, 10);
	assert_int_equal(r->health_timeout, 10);
	assert_int_equal(r->health_rise, 1);
	assert_int_equal(r->health_fall, 100);
	config_unref(cfg);

	/* Passive checks use these two without health_check. */
	cfg = expect_ok(ROUTE "health_interval = 1\nhealth_fall = 1\n");
	config_unref(cfg);

	expect_error(ROUTE "health_check = /x\n",
	    NAME ":4: health_check: \"/x\" does not start with a method "
	    "such as GET");
	expect_error(ROUTE "health_check = GET\n",
	    NAME ":4: health_check: \"GET\": write METHOD /PATH");
	expect_error(ROUTE "health_check = GET http://x/\n",
	    NAME ":4: health_check: \"GET http://x/\": write METHOD /PATH");
	expect_error(ROUTE "health_check = GET /a b\n",
	    NAME ":4: health_check: the path \"/a b\" holds white space, '#' "
	    "or a control character");
	/* CONFIG_MAX_METHOD (16) bytes of method; CONFIG_MAX_FIELD (1024)
	 * of path. */
	cfg = expect_ok(ROUTE "health_check = ABCDEFGHIJKLMNOP /\n");
	config_unref(cfg);
	expect_error(ROUTE "health_check = ABCDEFGHIJKLMNOPQ /\n",
	    NAME ":4: health_check: \"ABCDEFGHIJKLMNOPQ /\" does not start "
	    "with a method such as GET");
	{
		char text[1200 + sizeof(ROUTE)], want[200];

		snprintf(text, sizeof(text), ROUTE "health_check = GET /%0*d\n",
		    1023, 0);
		cfg = expect_ok(text);
		config_unref(cfg);
		snprintf(text, sizeof(text), ROUTE "health_check = GET /%0*d\n",
		    1024, 0);
		snprintf(want, sizeof(want), NAME ":4: health_check: \"GET /%0*d\": "
		    "write METHOD /PATH", 59, 0);
		expect_error(text, want);
	}
	expect_error(ROUTE "health_timeout = 3\n",
	    NAME ":4: route \"r\": health_timeout needs health_check");
	expect_error(ROUTE "health_rise = 3\n",
	    NAME ":4: route \"r\": health_rise needs health_check");
	expect_error(ROUTE "health_check = GET /\nhealth_interval = 2\n"
	    "health_timeout = 3\n",
	    NAME ":1: route \"r\": health_timeout (3 s) is longer than "
	    "health_interval (2 s)");
	expect_error(ROUTE "health_fall = 0\n",
	    NAME ":4: health_fall: 0 is below the minimum 1");
}

static void
test_header_rules(void **state)
{
	struct config *cfg;
	const struct route *r;
	char *text;
	size_t i, n;

	(void)state;
	cfg = expect_ok(ROUTE "set_header = X-Gateway:  gw-1 \n"
	    "set_header = X-Empty:\nremove_header = User-Agent\n"
	    "remove_header = Cookie\nset_header = X-Tab: a\tb\n");
	r = &cfg->routes[0];
	assert_int_equal(r->nset_headers, 3);
	assert_string_equal(r->set_headers[0].name, "X-Gateway");
	assert_string_equal(r->set_headers[0].value, "gw-1");
	assert_string_equal(r->set_headers[1].name, "X-Empty");
	assert_string_equal(r->set_headers[1].value, "");
	assert_string_equal(r->set_headers[2].value, "a\tb");
	assert_int_equal(r->nremove_headers, 2);
	assert_string_equal(r->remove_headers[0], "User-Agent");
	assert_string_equal(r->remove_headers[1], "Cookie");
	config_unref(cfg);

	expect_error(ROUTE "set_header = X-A\n",
	    NAME ":4: set_header: \"X-A\": write Name: value");
	expect_error(ROUTE "set_header = X A: 1\n",
	    NAME ":4: set_header: \"X A\" is not a header field name");
	/* CONFIG_MAX_FIELD_NAME (64) bytes of name, CONFIG_MAX_FIELD (1024)
	 * of value. */
	{
		char line[1200 + sizeof(ROUTE)];

		snprintf(line, sizeof(line), ROUTE "set_header = X%063d: %01024d\n",
		    0, 0);
		cfg = expect_ok(line);
		assert_int_equal(strlen(cfg->routes[0].set_headers[0].name), 64);
		assert_int_equal(strlen(cfg->routes[0].set_headers[0].value),
		    1024);
		config_unref(cfg);
		snprintf(line, sizeof(line), ROUTE "remove_header = X%064d\n", 0);
		assert_null(parse(line));
		assert_non_null(strstr(err, "is not a header field name"));
		snprintf(line, sizeof(line), ROUTE "set_header = X-A: %01025d\n",
		    0);
		expect_error(line, NAME ":4: set_header: the value of X-A is "
		    "longer than 1024 bytes");
	}
	expect_error(ROUTE "set_header = Host: x\n",
	    NAME ":4: set_header: Host is set by the gateway itself and "
	    "cannot be changed here");
	expect_error(ROUTE "remove_header = transfer-encoding\n",
	    NAME ":4: remove_header: transfer-encoding is set by the gateway "
	    "itself and cannot be changed here");
	expect_error(ROUTE "set_header = X-A: 1\nremove_header = x-a\n",
	    NAME ":5: remove_header: x-a already has a set_header or "
	    "remove_header rule in this route");
	expect_error(ROUTE "set_header = X-A: 1\nset_header = X-A: 2\n",
	    NAME ":5: set_header: X-A already has a set_header or "
	    "remove_header rule in this route");
	/* The limit on rules per route. */
	n = strlen(ROUTE) + 33 * 32 + 1;
	text = malloc(n);
	assert_non_null(text);
	strcpy(text, ROUTE);
	for (i = 0; i < 33; i++)
		snprintf(text + strlen(text), n - strlen(text),
		    "remove_header = X-%zu\n", i);
	expect_error(text, NAME ":36: remove_header: more than 32 in one "
	    "route");
	free(text);
}

static void
test_credentials(void **state)
{
	char dir[] = "/tmp/tlsgate-test-cred-XXXXXX", path[128], text[512];
	struct config *cfg;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cloud", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	/* RFC 7617 §2's example. */
	fputs("Aladdin:open sesame\n", f);
	fclose(f);
	snprintf(text, sizeof(text), ROUTE "credentials_file = %s\n"
	    "device_credentials_dir = %s\n", path, dir);
	cfg = expect_ok(text);
	assert_string_equal(cfg->routes[0].credentials_file, path);
	assert_string_equal(cfg->routes[0].credentials_basic,
	    "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
	assert_string_equal(cfg->routes[0].device_credentials_dir, dir);
	config_unref(cfg);

	/* %d/ is systemd's credentials directory. */
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	cfg = expect_ok(ROUTE "credentials_file = %d/cloud\n");
	assert_string_equal(cfg->routes[0].credentials_basic,
	    "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
	config_unref(cfg);
	cfg = expect_ok(ROUTE "device_credentials_dir = %d\n");
	assert_string_equal(cfg->routes[0].device_credentials_dir, dir);
	config_unref(cfg);
	unsetenv("CREDENTIALS_DIRECTORY");
	expect_error(ROUTE "device_credentials_dir = %d/\n",
	    NAME ":4: device_credentials_dir: %d/: $CREDENTIALS_DIRECTORY is "
	    "not set (%d/ is for a service with LoadCredential=)");
	expect_error(ROUTE "credentials_file = %d/cloud\n",
	    NAME ":4: credentials_file: %d/cloud: $CREDENTIALS_DIRECTORY is "
	    "not set (%d/ is for a service with LoadCredential=)");

	/* Malformed content: the message never quotes it. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("no-colon-secret\n", f);
	fclose(f);
	snprintf(text, sizeof(text), ROUTE "credentials_file = %s\n", path);
	assert_null(parse(text));
	assert_non_null(strstr(err, "must hold \"user:password\""));
	assert_null(strstr(err, "no-colon-secret"));
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("user:pw\nsecond-line\n", f);
	fclose(f);
	assert_null(parse(text));
	assert_non_null(strstr(err, "must be one line"));
	assert_null(strstr(err, "second-line"));
	/* CONFIG_MAX_CREDENTIALS bytes and a newline fit; one more does not. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("u:", f);
	for (int i = 2; i < CONFIG_MAX_CREDENTIALS; i++)
		fputc('p', f);
	fputc('\n', f);
	fclose(f);
	cfg = expect_ok(text);
	config_unref(cfg);
	f = fopen(path, "a");
	assert_non_null(f);
	fputs("p", f);
	fclose(f);
	assert_null(parse(text));
	assert_non_null(strstr(err, "longer than 1024 bytes"));
	unlink(path);
	assert_null(parse(text));
	assert_non_null(strstr(err, "No such file or directory"));

	snprintf(text, sizeof(text), ROUTE "device_credentials_dir = %s/x\n",
	    dir);
	assert_null(parse(text));
	assert_non_null(strstr(err, "No such file or directory"));
	expect_error(ROUTE "device_credentials_dir = /etc/hostname\n",
	    NAME ":4: device_credentials_dir: /etc/hostname: not a directory");
	expect_error(ROUTE "device_credentials_dir = etc\n",
	    NAME ":4: device_credentials_dir: etc: not an absolute path");
	rmdir(dir);
}

static void
test_offline_keys(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok(ROUTE);
	assert_int_equal(cfg->routes[0].offline_queue, 0);
	assert_null(cfg->routes[0].spool_dir);
	config_unref(cfg);

	cfg = expect_ok(ROUTE "offline_queue = yes\n"
	    "[route s]\nlisten = 127.0.0.1:8081\nupstream = up.example\n"
	    "offline_queue = yes\nspool_dir = /srv/spool/s//\n"
	    "spool_max_bytes = 1g\nspool_rate = 10000\n");
	assert_int_equal(cfg->routes[0].offline_queue, 1);
	assert_string_equal(cfg->routes[0].spool_dir,
	    "/var/lib/tlsgate/spool/r");
	assert_int_equal(cfg->routes[0].spool_max_bytes, 64 << 20);
	assert_int_equal(cfg->routes[0].spool_rate, 20);
	assert_string_equal(cfg->routes[1].spool_dir, "/srv/spool/s");
	assert_int_equal(cfg->routes[1].spool_max_bytes, 1 << 30);
	assert_int_equal(cfg->routes[1].spool_rate, 10000);
	config_unref(cfg);

	expect_error(ROUTE "spool_rate = 5\n",
	    NAME ":4: route \"r\": spool_rate needs offline_queue = yes");
	expect_error(ROUTE "offline_queue = no\nspool_dir = /x\n",
	    NAME ":5: route \"r\": spool_dir needs offline_queue = yes");
	expect_error(ROUTE "offline_queue = yes\nspool_dir = spool\n",
	    NAME ":5: spool_dir: spool: write an absolute path of at most "
	    "1024 bytes");
	{
		/* CONFIG_MAX_SPOOL_DIR (1024) bytes. */
		char text[1200 + sizeof(ROUTE)];

		snprintf(text, sizeof(text), ROUTE "offline_queue = yes\n"
		    "spool_dir = /%01023d\n", 0);
		cfg = expect_ok(text);
		assert_int_equal(strlen(cfg->routes[0].spool_dir), 1024);
		config_unref(cfg);
		snprintf(text, sizeof(text), ROUTE "offline_queue = yes\n"
		    "spool_dir = /%01024d\n", 0);
		assert_null(parse(text));
		assert_non_null(strstr(err, "write an absolute path of at most "
		    "1024 bytes"));
	}
	expect_error(ROUTE "offline_queue = yes\nspool_max_bytes = 1k\n",
	    NAME ":5: spool_max_bytes: 1k is below the minimum 65536");
	expect_error(ROUTE "offline_queue = yes\nspool_dir = /q\n"
	    "[route s]\nlisten = 127.0.0.1:8081\nupstream = up.example\n"
	    "offline_queue = yes\nspool_dir = /q/\n",
	    NAME ":6: route \"s\": spool_dir /q is also route \"r\"'s");
}

static void
test_metrics_listen(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok(ROUTE);
	assert_null(cfg->metrics_listen);
	config_unref(cfg);
	cfg = expect_ok("[gateway]\nmetrics_listen = 127.0.0.1:9180\n" ROUTE);
	assert_string_equal(cfg->metrics_listen, "127.0.0.1:9180");
	config_unref(cfg);
	cfg = expect_ok("[gateway]\nmetrics_listen = [::1]:9180\n" ROUTE);
	assert_string_equal(cfg->metrics_listen, "[::1]:9180");
	config_unref(cfg);
	expect_error("[gateway]\nmetrics_listen = 127.0.0.1\n" ROUTE,
	    NAME ":2: metrics_listen: \"127.0.0.1\" needs a port of 1-65535 "
	    "after the address");
	expect_error("[gateway]\nmetrics_listen = localhost:9180\n" ROUTE,
	    NAME ":2: metrics_listen: \"localhost:9180\" is not a numeric IP "
	    "address and port");
}

static void
test_manual_has_every_key(void **state)
{
	char *man, needle[96];
	const char *name, *section;
	size_t n = 0, i;
	FILE *f;

	(void)state;
	f = fopen("docs/tlsgate.conf.5", "r");
	if (f == NULL)
		fail_msg("docs/tlsgate.conf.5: run from the repository root");
	man = malloc(1 << 20);
	assert_non_null(man);
	n = fread(man, 1, (1 << 20) - 1, f);
	man[n] = '\0';
	fclose(f);
	for (i = 0; (name = config_key_name(i, &section)) != NULL; i++) {
		/* an item of a key list: ".TP" then ".B name" */
		snprintf(needle, sizeof(needle), ".TP\n.B %s\n", name);
		if (strstr(man, needle) == NULL)
			fail_msg("docs/tlsgate.conf.5 lacks key %s of [%s]",
			    name, section);
	}
	assert_int_equal(i, 42);
	free(man);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_bools_enums_sizes),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_listen_forms),
		cmocka_unit_test(test_upstream_forms),
		cmocka_unit_test(test_match_keys),
		cmocka_unit_test(test_routing),
		cmocka_unit_test(test_allow_parse),
		cmocka_unit_test(test_allow_match),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_continuation),
		cmocka_unit_test(test_line_length),
		cmocka_unit_test(test_cross_checks),
		cmocka_unit_test(test_routes_limit),
		cmocka_unit_test(test_verify_no),
		cmocka_unit_test(test_ref),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_builtin_keys),
		cmocka_unit_test(test_upstream_list),
		cmocka_unit_test(test_health_keys),
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_credentials),
		cmocka_unit_test(test_offline_keys),
		cmocka_unit_test(test_metrics_listen),
		cmocka_unit_test(test_manual_has_every_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
