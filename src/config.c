/*
 * config: the INI file turned into a validated, immutable struct config.
 *
 * inih does the key = value splitting, trimming and comment stripping; a
 * line reader of our own feeds it one physical line at a time so that we
 * can (a) reject a line longer than the buffer instead of letting inih
 * split it, (b) count lines ourselves, (c) own the section headers (inih
 * truncates section names to 49 bytes) and (d) reject indented lines,
 * which the packaged inih (INI_ALLOW_MULTILINE) would silently append to
 * the previous value.  Every key is one row of config_table; the handler
 * walks the table and never names a key in code.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <ini.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config.h"

/* Longest route NAME in `[route NAME]`. */
#define CONFIG_MAX_ROUTE_NAME 64
/* RFC 1035 §2.3.4: 255 octets on the wire, 253 characters as text. */
#define CONFIG_MAX_DNS_NAME 253
#define CONFIG_MAX_DNS_LABEL 63
/* Longest piece of user text quoted back in a message. */
#define CONFIG_QUOTE_MAX 64
#define CONFIG_DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
/* spool_dir of an offline route that sets none: this plus its name.  The
 * packaged unit's StateDirectory= makes /var/lib/tlsgate writable. */
#define CONFIG_DEFAULT_SPOOL_PARENT "/var/lib/tlsgate/spool"
/* A numeric constant as a string literal, for messages. */
#define CONFIG_STR_(x) #x
#define CONFIG_STR(x) CONFIG_STR_(x)
/* Longest `spool_dir`. */
#define CONFIG_MAX_SPOOL_DIR 1024
/* Longest `set_header` line value and `health_check` path. */
#define CONFIG_MAX_FIELD 1024
/* Longest header field name in `set_header` / `remove_header`. */
#define CONFIG_MAX_FIELD_NAME 64
/* Longest `health_check` method. */
#define CONFIG_MAX_METHOD 16

enum config_section {
	CONFIG_SEC_NONE = 0,
	CONFIG_SEC_GATEWAY,
	CONFIG_SEC_ROUTE,
};

enum config_type {
	CONFIG_T_BOOL,        /* int: yes/no/true/false/on/off/1/0 */
	CONFIG_T_INT,         /* int in [min, max] */
	CONFIG_T_SIZE,        /* uint64_t in [min, max], optional k/m/g suffix */
	CONFIG_T_LOG_LEVEL,   /* int: enum config_log_level by name */
	CONFIG_T_LISTEN,      /* route: listen, listen_addr, listen_addrlen */
	CONFIG_T_UPSTREAM,    /* route: upstream_host, upstream_port */
	CONFIG_T_AUTHORITY,   /* char *: uri-host [":" port] */
	CONFIG_T_SERVER_NAME, /* char *: DNS name or IP address */
	CONFIG_T_MATCH_HOST,  /* char *: name or "*.suffix", lower-cased */
	CONFIG_T_MATCH_PATH,  /* char *: "/" prefix */
	CONFIG_T_PATH,        /* char *: a readable regular file */
	CONFIG_T_TLS,         /* int: enum config_tls by name */
	CONFIG_T_FRAGMENT,    /* int: 0 or a max_fragment_length size */
	CONFIG_T_RECORD_LIMIT, /* int: 0 or [min, max] */
	CONFIG_T_FALLBACK,    /* int: full (0) or refuse (1) */
	CONFIG_T_GROUPS,      /* route: groups, ngroups */
	CONFIG_T_CIPHERS,     /* route: ciphers, nciphers */
	CONFIG_T_ALPN,        /* char *: protocol names */
	CONFIG_T_ALLOW,       /* route: allow, nallow */
	CONFIG_T_METRICS,     /* char *: numeric IP:PORT */
	CONFIG_T_HEALTH,      /* route: health_method, health_path */
	CONFIG_T_SET_HEADER,  /* route: set_headers, nset_headers */
	CONFIG_T_REMOVE_HEADER, /* route: remove_headers, nremove_headers */
	CONFIG_T_CREDENTIALS, /* route: credentials_file, credentials_basic */
	CONFIG_T_DIR,         /* char *: an existing, searchable directory */
	CONFIG_T_SPOOL_DIR,   /* char *: an absolute path, created on use */
};

/* What a key needs from other keys of its route to make sense. */
enum config_needs {
	CONFIG_NEEDS_NONE = 0,
	CONFIG_NEEDS_BUILTIN,     /* tls = builtin */
	CONFIG_NEEDS_OFFLINE,     /* offline_queue = yes */
	CONFIG_NEEDS_HEALTH,      /* health_check */
	CONFIG_NEEDS_N
};

/* One configuration key.  `def` is the default as it would be written in
 * the file and goes through the same parser; NULL means "unset" (or a
 * default computed from other keys after parsing). */
struct config_key {
	enum config_section section;
	const char *name;
	enum config_type type;
	long long min;
	long long max;
	const char *def;
	size_t offset;
	enum config_needs needs;
	int repeat;           /* may be given several times in a section */
};

#define GW(n, t, lo, hi, d, f) \
	{ CONFIG_SEC_GATEWAY, n, t, lo, hi, d, offsetof(struct config, f), \
	  CONFIG_NEEDS_NONE, 0 }
#define RT(n, t, lo, hi, d, f) \
	{ CONFIG_SEC_ROUTE, n, t, lo, hi, d, offsetof(struct route, f), \
	  CONFIG_NEEDS_NONE, 0 }
#define RTN(n, t, lo, hi, d, f, needs) \
	{ CONFIG_SEC_ROUTE, n, t, lo, hi, d, offsetof(struct route, f), \
	  needs, 0 }
#define RTB(n, t, lo, hi, d, f) RTN(n, t, lo, hi, d, f, CONFIG_NEEDS_BUILTIN)
#define RTR(n, t, f) \
	{ CONFIG_SEC_ROUTE, n, t, 0, 0, NULL, offsetof(struct route, f), \
	  CONFIG_NEEDS_NONE, 1 }

static const struct config_key config_table[] = {
	GW("log_level", CONFIG_T_LOG_LEVEL, 0, 0, "info", log_level),
	GW("max_clients", CONFIG_T_INT, 1, 1000000, "4096", max_clients),
	GW("header_timeout", CONFIG_T_INT, 1, 86400, "10", header_timeout),
	GW("idle_timeout", CONFIG_T_INT, 1, 86400, "60", idle_timeout),
	GW("max_header_size", CONFIG_T_SIZE, 1024, 1048576, "16384",
	    max_header_size),
	GW("max_body_size", CONFIG_T_SIZE, 0, 1LL << 40, "65536",
	    max_body_size),
	GW("shutdown_timeout", CONFIG_T_INT, 0, 86400, "30",
	    shutdown_timeout),
	GW("metrics_listen", CONFIG_T_METRICS, 0, 0, NULL, metrics_listen),

	RT("listen", CONFIG_T_LISTEN, 0, 0, NULL, listen),
	RT("upstream", CONFIG_T_UPSTREAM, 0, 0, NULL, upstream_host),
	RT("host", CONFIG_T_AUTHORITY, 0, 0, NULL, host),
	RT("sni", CONFIG_T_SERVER_NAME, 0, 0, NULL, sni),
	RT("verify", CONFIG_T_BOOL, 0, 1, "yes", verify),
	RT("ca_file", CONFIG_T_PATH, 0, 0, CONFIG_DEFAULT_CA_FILE, ca_file),
	RT("client_cert", CONFIG_T_PATH, 0, 0, NULL, client_cert),
	RT("client_key", CONFIG_T_PATH, 0, 0, NULL, client_key),
	RT("connect_timeout", CONFIG_T_INT, 1, 86400, "10", connect_timeout),
	RT("upstream_timeout", CONFIG_T_INT, 1, 86400, "90",
	    upstream_timeout),
	RT("match_host", CONFIG_T_MATCH_HOST, 0, 0, NULL, match_host),
	RT("match_path", CONFIG_T_MATCH_PATH, 0, 0, NULL, match_path),
	RT("allow", CONFIG_T_ALLOW, 0, 0, NULL, allow),
	RT("health_check", CONFIG_T_HEALTH, 0, 0, NULL, health_method),
	RT("health_interval", CONFIG_T_INT, 1, 3600, "5", health_interval),
	RTN("health_timeout", CONFIG_T_INT, 1, 3600, "2", health_timeout,
	    CONFIG_NEEDS_HEALTH),
	RTN("health_rise", CONFIG_T_INT, 1, 100, "2", health_rise,
	    CONFIG_NEEDS_HEALTH),
	RT("health_fall", CONFIG_T_INT, 1, 100, "3", health_fall),
	RTR("set_header", CONFIG_T_SET_HEADER, set_headers),
	RTR("remove_header", CONFIG_T_REMOVE_HEADER, remove_headers),
	RT("credentials_file", CONFIG_T_CREDENTIALS, 0, 0, NULL,
	    credentials_file),
	RT("device_credentials_dir", CONFIG_T_DIR, 0, 0, NULL,
	    device_credentials_dir),
	RT("offline_queue", CONFIG_T_BOOL, 0, 1, "no", offline_queue),
	RTN("spool_dir", CONFIG_T_SPOOL_DIR, 0, 0, NULL, spool_dir,
	    CONFIG_NEEDS_OFFLINE),
	RTN("spool_max_bytes", CONFIG_T_SIZE, 65536, 1LL << 40, "64m",
	    spool_max_bytes, CONFIG_NEEDS_OFFLINE),
	RTN("spool_rate", CONFIG_T_INT, 1, 10000, "20", spool_rate,
	    CONFIG_NEEDS_OFFLINE),
	RT("tls", CONFIG_T_TLS, 0, 0, "openssl", tls),
	/* RFC 6066 §4: 2^9..2^12 only. */
	RTB("max_fragment", CONFIG_T_FRAGMENT, 0, 0, "0", max_fragment),
	/* RFC 8449 §4: at least 64; 2^14 is TLS 1.3's plaintext limit. */
	RTB("record_size_limit", CONFIG_T_RECORD_LIMIT, 64, 16384, "0",
	    record_size_limit),
	RTB("record_fallback", CONFIG_T_FALLBACK, 0, 0, "full",
	    record_fallback),
	RTB("groups", CONFIG_T_GROUPS, 0, 0, NULL, groups),
	RTB("ciphers", CONFIG_T_CIPHERS, 0, 0, NULL, ciphers),
	RTB("resumption", CONFIG_T_BOOL, 0, 1, "yes", resumption),
	RTB("alpn", CONFIG_T_ALPN, 0, 0, NULL, alpn),
};

#define CONFIG_NKEYS (sizeof(config_table) / sizeof(config_table[0]))

/* `groups` and `ciphers`: names to IANA code points (RFC 9846 §4.2.7,
 * §B.4).  The curve is also accepted under its NIST name. */
struct config_name {
	const char *name;
	uint16_t code;
};

static const struct config_name config_groups[] = {
	{ "x25519", 0x001d },
	{ "secp256r1", 0x0017 },
	{ "P-256", 0x0017 },
	{ "prime256v1", 0x0017 },
};

static const struct config_name config_ciphers[] = {
	{ "TLS_AES_128_GCM_SHA256", 0x1301 },
	{ "TLS_AES_256_GCM_SHA384", 0x1302 },
	{ "TLS_CHACHA20_POLY1305_SHA256", 0x1303 },
};

/* Longest ALPN protocol name the built-in client keeps. */
#define CONFIG_MAX_ALPN_NAME 31

static const char *const config_log_levels[] = {
	[CONFIG_LOG_ERROR] = "error",
	[CONFIG_LOG_WARNING] = "warning",
	[CONFIG_LOG_INFO] = "info",
	[CONFIG_LOG_DEBUG] = "debug",
};

/* State of one parse. */
struct config_parser {
	const char *name;        /* file name for messages */
	const char *text;
	size_t len;
	size_t pos;
	int line;                /* line last handed to inih */

	struct config *cfg;
	enum config_section section;
	size_t route;            /* index of the current route */
	int gateway_line;        /* 0 until [gateway] is seen */
	uint64_t gateway_seen;   /* bit i: config_table[i] was set */
	uint64_t route_seen[CONFIG_MAX_ROUTES];
	/* First key of each route that needs another key (indexed by enum
	 * config_needs), checked once the whole section is read. */
	int needs_line[CONFIG_MAX_ROUTES][CONFIG_NEEDS_N];
	const char *needs_key[CONFIG_MAX_ROUTES][CONFIG_NEEDS_N];

	char *err;
	size_t errlen;
	int err_line;            /* line of the first error, -1 for none */
};

/* Bits of gateway_seen / route_seen. */
_Static_assert(sizeof(config_table) / sizeof(config_table[0]) <= 64,
    "config_table has more keys than a uint64_t has bits");

/* Records the first error only: later ones are consequences. */
static void __attribute__((format(printf, 3, 4)))
config_error(struct config_parser *p, int line, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (p->err_line >= 0)
		return;
	p->err_line = line;
	if (p->err == NULL || p->errlen == 0)
		return;
	if (line > 0)
		n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, line);
	else
		n = snprintf(p->err, p->errlen, "%s: ", p->name);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - n, fmt, ap);
	va_end(ap);
}

static int
config_failed(const struct config_parser *p)
{
	return p->err_line >= 0;
}

/* ---- value parsers ------------------------------------------------ */

static int
config_is_dns_char(int c)
{
	return isascii(c) && (isalnum(c) || c == '-');
}

/* A host name as RFC 1123 §2.1 allows it: dot-separated labels of
 * letters, digits and inner hyphens. */
static int
config_valid_dns_name(const char *s, size_t len)
{
	size_t i, label = 0;

	if (len == 0 || len > CONFIG_MAX_DNS_NAME)
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!config_is_dns_char((unsigned char)s[i]))
			return 0;
		if (label == 0 && s[i] == '-')
			return 0;
		if (++label > CONFIG_MAX_DNS_LABEL)
			return 0;
	}
	return label > 0 && s[len - 1] != '-';
}

/* A name whose last label is all digits must be a dotted IPv4 address
 * (RFC 1123 §2.1: a top-level label is never all-numeric). */
static int
config_valid_name_or_ipv4(const char *s, size_t len)
{
	struct in_addr a4;
	char buf[INET_ADDRSTRLEN];
	size_t i = len;

	if (!config_valid_dns_name(s, len))
		return 0;
	while (i > 0 && s[i - 1] != '.')
		i--;
	for (; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return 1;
	if (len >= sizeof(buf))
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, &a4) == 1;
}

static int
config_valid_ipv6(const char *s, size_t len)
{
	struct in6_addr a6;
	char buf[INET6_ADDRSTRLEN];

	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &a6) == 1;
}

/* Decimal digits only: no sign, no base prefix, no white space.  Returns
 * 0 and the value, or -1 when it is not a number; a number too large for
 * unsigned long long saturates so that it reads as "above the maximum". */
static int
config_parse_number(const char *s, size_t len, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		if (v > (ULLONG_MAX - 9) / 10)
			v = ULLONG_MAX;
		else
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* "PORT" of 1-65535. */
static int
config_parse_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long long v;

	if (config_parse_number(s, len, &v) == -1 || v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/*
 * Splits "host[:port]" and "[v6][:port]" (RFC 3986 §3.2.2 authority
 * without userinfo).  *host and *hostlen exclude the brackets; *v6 tells
 * whether they were there.  *portstr is NULL when no port was written.
 * Returns 0, or -1 with a message in why.
 */
static int
config_split_hostport(const char *v, const char **host, size_t *hostlen,
    int *v6, const char **portstr, const char **why)
{
	const char *colon, *end;

	*v6 = 0;
	*portstr = NULL;
	if (strstr(v, "://") != NULL) {
		*why = "write HOST[:PORT], not a URL";
		return -1;
	}
	if (v[0] == '[') {
		end = strchr(v, ']');
		if (end == NULL) {
			*why = "missing ']' after the IPv6 address";
			return -1;
		}
		*host = v + 1;
		*hostlen = (size_t)(end - v - 1);
		*v6 = 1;
		if (end[1] == ':')
			*portstr = end + 2;
		else if (end[1] != '\0') {
			*why = "expected ':PORT' after ']'";
			return -1;
		}
		if (!config_valid_ipv6(*host, *hostlen)) {
			*why = "not an IPv6 address between [ and ]";
			return -1;
		}
		return 0;
	}
	colon = strchr(v, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		*why = "an IPv6 address must be written in brackets: [ADDR]:PORT";
		return -1;
	}
	*host = v;
	*hostlen = colon != NULL ? (size_t)(colon - v) : strlen(v);
	if (colon != NULL)
		*portstr = colon + 1;
	if (!config_valid_name_or_ipv4(*host, *hostlen)) {
		*why = "not a host name or IPv4 address";
		return -1;
	}
	return 0;
}

static char *
config_strndup(const char *s, size_t len)
{
	char *d = malloc(len + 1);

	if (d != NULL) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* Replaces the string at *slot; an empty value means unset (NULL). */
static int
config_set_string(struct config_parser *p, char **slot, const char *v,
    size_t len)
{
	char *s = NULL;

	if (len > 0 && (s = config_strndup(v, len)) == NULL) {
		config_error(p, p->line, "out of memory");
		return -1;
	}
	free(*slot);
	*slot = s;
	return 0;
}

static int
config_set_listen(struct config_parser *p, const struct config_key *k,
    struct route *r, const char *v)
{
	struct addrinfo hints, *res = NULL;
	const char *host, *portstr, *why;
	char hostbuf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	size_t hostlen;
	uint16_t port;
	int v6, gai, rc = -1;

	/* The brackets may hold a zone ("[fe80::1%eth0]"): numeric parse by
	 * getaddrinfo below, not config_split_hostport. */
	if (v[0] == '[') {
		const char *end = strchr(v, ']');

		if (end == NULL || end[1] != ':') {
			config_error(p, p->line, "%s: \"%.*s\" is not "
			    "[IPV6]:PORT", k->name, CONFIG_QUOTE_MAX, v);
			goto out;
		}
		host = v + 1;
		hostlen = (size_t)(end - v - 1);
		portstr = end + 2;
		v6 = 1;
	} else if (config_split_hostport(v, &host, &hostlen, &v6, &portstr,
	    &why) == -1) {
		config_error(p, p->line, "%s: \"%.*s\": %s", k->name,
		    CONFIG_QUOTE_MAX, v, why);
		goto out;
	}
	if (portstr == NULL || config_parse_port(portstr, strlen(portstr),
	    &port) == -1) {
		config_error(p, p->line, "%s: \"%.*s\" needs a port of 1-65535 "
		    "after the address", k->name, CONFIG_QUOTE_MAX, v);
		goto out;
	}
	if (hostlen == 0 || hostlen >= sizeof(hostbuf)) {
		config_error(p, p->line, "%s: \"%.*s\" is not a numeric IP "
		    "address", k->name, CONFIG_QUOTE_MAX, v);
		goto out;
	}
	memcpy(hostbuf, host, hostlen);
	hostbuf[hostlen] = '\0';

	/* Devices connect to an address, not a name: resolving here would
	 * make start-up depend on DNS. */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = v6 ? AF_INET6 : AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	gai = getaddrinfo(hostbuf, portstr, &hints, &res);
	if (gai != 0 || res == NULL || res->ai_addrlen > sizeof(r->listen_addr)) {
		config_error(p, p->line, "%s: \"%.*s\" is not a numeric %s "
		    "address", k->name, CONFIG_QUOTE_MAX, hostbuf,
		    v6 ? "IPv6" : "IPv4");
		goto out;
	}
	if (config_set_string(p, &r->listen, v, strlen(v)) == -1)
		goto out;
	memset(&r->listen_addr, 0, sizeof(r->listen_addr));
	memcpy(&r->listen_addr, res->ai_addr, res->ai_addrlen);
	r->listen_addrlen = res->ai_addrlen;
	rc = 0;
out:
	if (res != NULL)
		freeaddrinfo(res);
	return rc;
}

/*
 * Splits `v` into a host and an optional port, reporting a bad one on the
 * key's line.  *port is left alone when `v` names none.
 */
static int
config_parse_hostport(struct config_parser *p, const struct config_key *k,
    const char *v, const char **host, size_t *hostlen, uint16_t *port)
{
	const char *portstr, *why;
	int v6;

	if (config_split_hostport(v, host, hostlen, &v6, &portstr,
	    &why) == -1) {
		config_error(p, p->line, "%s: \"%.*s\": %s", k->name,
		    CONFIG_QUOTE_MAX, v, why);
		return -1;
	}
	if (portstr != NULL && config_parse_port(portstr, strlen(portstr),
	    port) == -1) {
		config_error(p, p->line, "%s: \"%.*s\" is not a port of "
		    "1-65535", k->name, CONFIG_QUOTE_MAX, portstr);
		return -1;
	}
	return 0;
}

/* `upstream`: one or more HOST[:PORT], separated by blanks or commas. */
static int
config_set_upstream(struct config_parser *p, const struct config_key *k,
    struct route *r, const char *v)
{
	char tok[CONFIG_MAX_DNS_NAME + sizeof("[]:65535")];
	const char *host;
	size_t i, len, hostlen, n = 0;
	uint16_t port;

	while (*(v += strspn(v, ", \t")) != '\0') {
		len = strcspn(v, ", \t");
		if (n == CONFIG_MAX_SERVERS) {
			config_error(p, p->line, "%s: more than %d servers",
			    k->name, CONFIG_MAX_SERVERS);
			return -1;
		}
		if (len >= sizeof(tok)) {
			config_error(p, p->line, "%s: \"%.*s...\" is too long "
			    "for a HOST:PORT", k->name, CONFIG_QUOTE_MAX, v);
			return -1;
		}
		memcpy(tok, v, len);
		tok[len] = '\0';
		port = 443;  /* RFC 9110 §4.2.2: https defaults to 443. */
		if (config_parse_hostport(p, k, tok, &host, &hostlen,
		    &port) == -1)
			return -1;
		for (i = 0; i < n; i++) {
			if (r->servers[i].port == port &&
			    strlen(r->servers[i].host) == hostlen &&
			    strncasecmp(r->servers[i].host, host,
			    hostlen) == 0) {
				config_error(p, p->line, "%s: \"%s\" is listed "
				    "twice", k->name, tok);
				return -1;
			}
		}
		if (config_set_string(p, &r->servers[n].host, host,
		    hostlen) == -1)
			return -1;
		r->servers[n].port = port;
		n++;
		v += len;
	}
	if (n == 0) {
		config_error(p, p->line, "%s: missing value", k->name);
		return -1;
	}
	r->nservers = n;
	r->upstream_port = r->servers[0].port;
	return config_set_string(p, &r->upstream_host, r->servers[0].host,
	    strlen(r->servers[0].host));
}

/* RFC 9110 §7.2: Host = uri-host [ ":" port ]. */
static int
config_set_authority(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	const char *host;
	size_t hostlen;
	uint16_t port;

	if (config_parse_hostport(p, k, v, &host, &hostlen, &port) == -1)
		return -1;
	return config_set_string(p, slot, v, strlen(v));
}

/* The TLS server name: a DNS name, or an IP address (written without
 * brackets) for an upstream that has no name. */
static int
config_set_server_name(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	size_t len = strlen(v);

	if (!config_valid_name_or_ipv4(v, len) && !config_valid_ipv6(v, len)) {
		config_error(p, p->line, "%s: \"%.*s\" is not a host name or "
		    "IP address", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	return config_set_string(p, slot, v, len);
}

static int
config_set_match_host(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	size_t i, len = strlen(v);
	const char *name = v;

	if (len > 2 && v[0] == '*' && v[1] == '.')
		name = v + 2;
	if (!config_valid_dns_name(name, len - (size_t)(name - v))) {
		config_error(p, p->line, "%s: \"%.*s\" is not a host name or "
		    "*.suffix", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	if (config_set_string(p, slot, v, len) == -1)
		return -1;
	/* RFC 9110 §4.2.3: the host is compared case-insensitively. */
	for (i = 0; i < len; i++)
		(*slot)[i] = (char)tolower((unsigned char)(*slot)[i]);
	return 0;
}

static int
config_set_match_path(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	size_t len = strlen(v);

	if (v[0] != '/') {
		config_error(p, p->line, "%s: \"%.*s\" does not start with '/'",
		    k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	/* The prefix is compared with the path only (RFC 9112 §3.2.1
	 * origin-form: absolute-path [ "?" query ]). */
	if (strcspn(v, " \t?#") != len) {
		config_error(p, p->line, "%s: \"%.*s\" contains white space, "
		    "'?' or '#'", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	return config_set_string(p, slot, v, len);
}

static int
config_set_path(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	(void)k;
	return config_set_string(p, slot, v, strlen(v));
}

static int
config_set_bool(struct config_parser *p, const struct config_key *k,
    int *slot, const char *v)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*slot = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*slot = 0;
			return 0;
		}
	}
	config_error(p, p->line, "%s: \"%.*s\" is not yes or no", k->name,
	    CONFIG_QUOTE_MAX, v);
	return -1;
}

static int
config_set_log_level(struct config_parser *p, const struct config_key *k,
    int *slot, const char *v)
{
	size_t i;

	for (i = 0; i < sizeof(config_log_levels) / sizeof(config_log_levels[0]);
	    i++) {
		if (strcasecmp(v, config_log_levels[i]) == 0) {
			*slot = (int)i;
			return 0;
		}
	}
	config_error(p, p->line, "%s: \"%.*s\" is not one of error, warning, "
	    "info, debug", k->name, CONFIG_QUOTE_MAX, v);
	return -1;
}

/* An integer within the key's bounds; CONFIG_T_SIZE also takes a k, m or
 * g suffix (binary multiples, 1k = 1024). */
static int
config_set_number(struct config_parser *p, const struct config_key *k,
    void *slot, const char *v)
{
	unsigned long long n, mult = 1;
	size_t len = strlen(v);

	if (k->type == CONFIG_T_SIZE && len > 1) {
		switch (tolower((unsigned char)v[len - 1])) {
		case 'k': mult = 1ULL << 10; len--; break;
		case 'm': mult = 1ULL << 20; len--; break;
		case 'g': mult = 1ULL << 30; len--; break;
		default: break;
		}
	}
	if (config_parse_number(v, len, &n) == -1) {
		config_error(p, p->line, "%s: \"%.*s\" is not a number",
		    k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	n = n > ULLONG_MAX / mult ? ULLONG_MAX : n * mult;
	if (n < (unsigned long long)k->min) {
		config_error(p, p->line, "%s: %.*s is below the minimum %lld",
		    k->name, CONFIG_QUOTE_MAX, v, k->min);
		return -1;
	}
	if (n > (unsigned long long)k->max) {
		config_error(p, p->line, "%s: %.*s is above the maximum %lld",
		    k->name, CONFIG_QUOTE_MAX, v, k->max);
		return -1;
	}
	/* Sizes are 64-bit everywhere: 1 TiB must not wrap to 0 ("no
	 * limit") on a 32-bit gateway. */
	if (k->type == CONFIG_T_SIZE)
		*(uint64_t *)slot = (uint64_t)n;
	else
		*(int *)slot = (int)n;
	return 0;
}

static int
config_set_tls(struct config_parser *p, const struct config_key *k,
    int *slot, const char *v)
{
	if (strcmp(v, "openssl") == 0)
		*slot = CONFIG_TLS_OPENSSL;
	else if (strcmp(v, "builtin") == 0)
		*slot = CONFIG_TLS_BUILTIN;
	else {
		config_error(p, p->line, "%s: \"%.*s\" is not openssl or "
		    "builtin", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	return 0;
}

static int
config_set_fallback(struct config_parser *p, const struct config_key *k,
    int *slot, const char *v)
{
	if (strcmp(v, "full") == 0)
		*slot = 0;
	else if (strcmp(v, "refuse") == 0)
		*slot = 1;
	else {
		config_error(p, p->line, "%s: \"%.*s\" is not full or refuse",
		    k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	return 0;
}

/* max_fragment_length (RFC 6066 §4) takes four sizes; 0 asks nothing. */
static int
config_set_fragment(struct config_parser *p, const struct config_key *k,
    int *slot, const char *v)
{
	unsigned long long n;

	if (config_parse_number(v, strlen(v), &n) == -1 ||
	    (n != 0 && n != 512 && n != 1024 && n != 2048 && n != 4096)) {
		config_error(p, p->line, "%s: \"%.*s\" is not 0, 512, 1024, "
		    "2048 or 4096", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	*slot = (int)n;
	return 0;
}

/* 0 (not sent) or a number in the key's bounds. */
static int
config_set_record_limit(struct config_parser *p, const struct config_key *k,
    int *slot, const char *v)
{
	unsigned long long n;

	if (config_parse_number(v, strlen(v), &n) == -1 ||
	    (n != 0 && (n < (unsigned long long)k->min ||
	    n > (unsigned long long)k->max))) {
		config_error(p, p->line, "%s: \"%.*s\" is not 0 or %lld-%lld",
		    k->name, CONFIG_QUOTE_MAX, v, k->min, k->max);
		return -1;
	}
	*slot = (int)n;
	return 0;
}

/* A list of names separated by blanks or commas, each from `names`, no
 * duplicates, in preference order. */
static int
config_set_name_list(struct config_parser *p, const struct config_key *k,
    const struct config_name *names, size_t nnames, uint16_t *list,
    size_t *nlist, const char *v)
{
	size_t i, j, len, n = 0;

	while (*(v += strspn(v, ", \t")) != '\0') {
		len = strcspn(v, ", \t");
		for (i = 0; i < nnames; i++)
			if (strlen(names[i].name) == len &&
			    strncasecmp(names[i].name, v, len) == 0)
				break;
		if (i == nnames) {
			config_error(p, p->line, "%s: unknown name \"%.*s\"",
			    k->name, (int)(len > CONFIG_QUOTE_MAX ?
			    CONFIG_QUOTE_MAX : len), v);
			return -1;
		}
		for (j = 0; j < n; j++)
			if (list[j] == names[i].code)
				break;
		if (j < n) {
			config_error(p, p->line, "%s: \"%.*s\" is listed twice",
			    k->name, (int)len, v);
			return -1;
		}
		if (n == CONFIG_MAX_TLS_LIST) {
			config_error(p, p->line, "%s: more than %d names",
			    k->name, CONFIG_MAX_TLS_LIST);
			return -1;
		}
		list[n++] = names[i].code;
		v += len;
	}
	if (n == 0) {
		config_error(p, p->line, "%s: missing value", k->name);
		return -1;
	}
	*nlist = n;
	return 0;
}

/* RFC 7301 §3.1: non-empty names; ours are printable ASCII without
 * separators, at most CONFIG_MAX_ALPN_NAME bytes. */
static int
config_set_alpn(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	const char *s = v;
	size_t len;

	while (*(s += strspn(s, ", \t")) != '\0') {
		len = strcspn(s, ", \t");
		if (len > CONFIG_MAX_ALPN_NAME) {
			config_error(p, p->line, "%s: \"%.*s\" is longer than "
			    "%d bytes", k->name, CONFIG_QUOTE_MAX, s,
			    CONFIG_MAX_ALPN_NAME);
			return -1;
		}
		s += len;
	}
	if (strspn(v, ", \t") == strlen(v)) {
		config_error(p, p->line, "%s: missing value", k->name);
		return -1;
	}
	return config_set_string(p, slot, v, strlen(v));
}

/* RFC 4291 §2.5.5.2: ::ffff:0:0/96 holds IPv4-mapped addresses. */
static const uint8_t config_v4mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/*
 * One `allow` entry s[len]: an IPv4 or IPv6 address, optionally followed
 * by "/PREFIX" (default: the whole address).  Host bits set under the
 * prefix are refused rather than masked: "192.168.1.1/24" is more often
 * a typo for a host or a network than a deliberate network.  Returns 0,
 * or -1 after reporting the error.
 */
static int
config_parse_cidr(struct config_parser *p, const struct config_key *k,
    const char *s, size_t len, struct config_cidr *c)
{
	char buf[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN];
	uint8_t masked[sizeof(c->addr)];
	const char *slash = memchr(s, '/', len);
	size_t alen = slash != NULL ? (size_t)(slash - s) : len, i;
	unsigned long long prefix;
	unsigned max, bits;
	int qlen = (int)(len > CONFIG_QUOTE_MAX ? CONFIG_QUOTE_MAX : len);

	memset(c, 0, sizeof(*c));
	if (alen == 0 || alen >= sizeof(buf)) {
		config_error(p, p->line, "%s: \"%.*s\" is not an IPv4 or IPv6 "
		    "address", k->name, qlen, s);
		return -1;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else {
		config_error(p, p->line, "%s: \"%.*s\" is not an IPv4 or IPv6 "
		    "address", k->name, qlen, s);
		return -1;
	}
	prefix = max;
	if (slash != NULL && (config_parse_number(slash + 1, len - alen - 1,
	    &prefix) == -1 || prefix > max)) {
		config_error(p, p->line, "%s: \"%.*s\": the prefix length must "
		    "be 0-%u", k->name, qlen, s, max);
		return -1;
	}
	c->prefix = (uint8_t)prefix;
	for (i = 0; i < sizeof(masked); i++) {
		bits = prefix >= (i + 1) * 8 ? 8 : prefix > i * 8 ?
		    (unsigned)(prefix - i * 8) : 0;
		masked[i] = c->addr[i] & (uint8_t)(0xff00u >> bits);
	}
	if (memcmp(masked, c->addr, sizeof(masked)) != 0) {
		inet_ntop(c->family, masked, net, sizeof(net));
		config_error(p, p->line, "%s: \"%.*s\" has bits set after the "
		    "prefix; the network is %s/%u", k->name, qlen, s, net,
		    (unsigned)prefix);
		return -1;
	}
	/* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d, and
	 * config_allowed() matches those as IPv4: store the entry alike. */
	if (c->family == AF_INET6 && c->prefix >= 96 &&
	    memcmp(c->addr, config_v4mapped, sizeof(config_v4mapped)) == 0) {
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->prefix -= 96;
	}
	return 0;
}

/* `allow`: entries separated by blanks or commas. */
static int
config_set_allow(struct config_parser *p, const struct config_key *k,
    struct route *r, const char *v)
{
	size_t len, n = 0;

	while (*(v += strspn(v, ", \t")) != '\0') {
		len = strcspn(v, ", \t");
		if (n == CONFIG_MAX_ALLOW) {
			config_error(p, p->line, "%s: more than %d entries",
			    k->name, CONFIG_MAX_ALLOW);
			return -1;
		}
		if (config_parse_cidr(p, k, v, len, &r->allow[n]) == -1)
			return -1;
		n++;
		v += len;
	}
	/* An empty list would refuse everyone or no one, depending on
	 * the reader: neither is written down, so neither is guessed. */
	if (n == 0) {
		config_error(p, p->line, "%s: missing value", k->name);
		return -1;
	}
	r->nallow = n;
	return 0;
}

/* `metrics_listen`: a numeric IPv4 address or [IPv6], and a port; a
 * name would make start-up depend on DNS, as for `listen`. */
static int
config_set_metrics(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	struct in6_addr a6;
	struct in_addr a4;
	char buf[INET6_ADDRSTRLEN];
	const char *host, *portstr, *why;
	size_t hostlen;
	uint16_t port;
	int v6, ok;

	if (config_split_hostport(v, &host, &hostlen, &v6, &portstr,
	    &why) == -1) {
		config_error(p, p->line, "%s: \"%.*s\": %s", k->name,
		    CONFIG_QUOTE_MAX, v, why);
		return -1;
	}
	if (portstr == NULL || config_parse_port(portstr, strlen(portstr),
	    &port) == -1) {
		config_error(p, p->line, "%s: \"%.*s\" needs a port of 1-65535 "
		    "after the address", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	ok = hostlen > 0 && hostlen < sizeof(buf);
	if (ok) {
		memcpy(buf, host, hostlen);
		buf[hostlen] = '\0';
		ok = v6 ? inet_pton(AF_INET6, buf, &a6) == 1 :
		    inet_pton(AF_INET, buf, &a4) == 1;
	}
	if (!ok) {
		config_error(p, p->line, "%s: \"%.*s\" is not a numeric IP "
		    "address and port", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	return config_set_string(p, slot, v, strlen(v));
}

/* RFC 9110 §5.6.2: tchar. */
static int
config_is_tchar(int c)
{
	return c > 0x20 && c < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", c) == NULL;
}

static int
config_valid_token(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!config_is_tchar((unsigned char)s[i]))
			return 0;
	return 1;
}

/* `health_check = METHOD /path`. */
static int
config_set_health(struct config_parser *p, const struct config_key *k,
    struct route *r, const char *v)
{
	size_t mlen = strcspn(v, " \t"), i;
	const char *path = v + mlen;

	path += strspn(path, " \t");
	if (!config_valid_token(v, mlen) || mlen > CONFIG_MAX_METHOD) {
		config_error(p, p->line, "%s: \"%.*s\" does not start with a "
		    "method such as GET", k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	if (path[0] != '/' || strlen(path) > CONFIG_MAX_FIELD) {
		config_error(p, p->line, "%s: \"%.*s\": write METHOD /PATH",
		    k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	/* RFC 9112 §3.2: the request-target holds no white space or
	 * control characters. */
	for (i = 0; path[i] != '\0'; i++) {
		if ((unsigned char)path[i] <= 0x20 ||
		    (unsigned char)path[i] >= 0x7f || path[i] == '#') {
			config_error(p, p->line, "%s: the path \"%.*s\" holds "
			    "white space, '#' or a control character",
			    k->name, CONFIG_QUOTE_MAX, path);
			return -1;
		}
	}
	if (config_set_string(p, &r->health_method, v, mlen) == -1)
		return -1;
	return config_set_string(p, &r->health_path, path, strlen(path));
}

/*
 * Fields a header rule may not touch: the gateway sets them itself
 * (Host from `host`, framing per hop, RFC 9112 §6.1 and §7) or they are
 * hop-by-hop (RFC 9110 §7.6.1).  Authorization has its own keys but may
 * be set or removed by a rule too.
 */
static const char *const config_reserved_fields[] = {
	"host", "content-length", "transfer-encoding", "connection", "te",
	"upgrade", "keep-alive", "proxy-connection", "trailer",
};

static int
config_check_field_name(struct config_parser *p, const struct config_key *k,
    const char *name, size_t len)
{
	size_t i;

	if (!config_valid_token(name, len) || len > CONFIG_MAX_FIELD_NAME) {
		config_error(p, p->line, "%s: \"%.*s\" is not a header field "
		    "name", k->name, (int)(len > CONFIG_QUOTE_MAX ?
		    CONFIG_QUOTE_MAX : len), name);
		return -1;
	}
	for (i = 0; i < sizeof(config_reserved_fields) /
	    sizeof(config_reserved_fields[0]); i++) {
		if (strlen(config_reserved_fields[i]) == len &&
		    strncasecmp(config_reserved_fields[i], name, len) == 0) {
			config_error(p, p->line, "%s: %.*s is set by the "
			    "gateway itself and cannot be changed here",
			    k->name, (int)len, name);
			return -1;
		}
	}
	return 0;
}

/* 1 when the route already has a rule (of either kind) for name[len]. */
static int
config_has_rule(const struct route *r, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < r->nset_headers; i++)
		if (strlen(r->set_headers[i].name) == len &&
		    strncasecmp(r->set_headers[i].name, name, len) == 0)
			return 1;
	for (i = 0; i < r->nremove_headers; i++)
		if (strlen(r->remove_headers[i]) == len &&
		    strncasecmp(r->remove_headers[i], name, len) == 0)
			return 1;
	return 0;
}

/* `set_header = Name: value` (repeatable). */
static int
config_set_header(struct config_parser *p, const struct config_key *k,
    struct route *r, const char *v)
{
	const char *colon = strchr(v, ':'), *val, *end;
	struct config_header *h;
	size_t nlen;

	if (colon == NULL) {
		config_error(p, p->line, "%s: \"%.*s\": write Name: value",
		    k->name, CONFIG_QUOTE_MAX, v);
		return -1;
	}
	nlen = (size_t)(colon - v);
	if (config_check_field_name(p, k, v, nlen) == -1)
		return -1;
	/* RFC 9110 §5.5: optional white space around the value, which
	 * holds visible characters, SP and HTAB only. */
	val = colon + 1 + strspn(colon + 1, " \t");
	end = val + strlen(val);
	while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if ((size_t)(end - val) > CONFIG_MAX_FIELD) {
		config_error(p, p->line, "%s: the value of %.*s is longer "
		    "than %d bytes", k->name, (int)nlen, v, CONFIG_MAX_FIELD);
		return -1;
	}
	for (const char *c = val; c < end; c++) {
		if ((unsigned char)*c == 0x7f ||
		    ((unsigned char)*c < 0x20 && *c != '\t')) {
			config_error(p, p->line, "%s: the value of %.*s holds "
			    "a control character", k->name, (int)nlen, v);
			return -1;
		}
	}
	if (config_has_rule(r, v, nlen)) {
		config_error(p, p->line, "%s: %.*s already has a set_header or "
		    "remove_header rule in this route", k->name, (int)nlen, v);
		return -1;
	}
	if (r->nset_headers == CONFIG_MAX_HEADER_RULES) {
		config_error(p, p->line, "%s: more than %d in one route",
		    k->name, CONFIG_MAX_HEADER_RULES);
		return -1;
	}
	h = &r->set_headers[r->nset_headers];
	if (config_set_string(p, &h->name, v, nlen) == -1)
		return -1;
	if ((h->value = config_strndup(val, (size_t)(end - val))) == NULL) {
		free(h->name);
		h->name = NULL;
		config_error(p, p->line, "out of memory");
		return -1;
	}
	r->nset_headers++;
	return 0;
}

/* `remove_header = Name` (repeatable). */
static int
config_remove_header(struct config_parser *p, const struct config_key *k,
    struct route *r, const char *v)
{
	size_t len = strlen(v);

	if (config_check_field_name(p, k, v, len) == -1)
		return -1;
	if (config_has_rule(r, v, len)) {
		config_error(p, p->line, "%s: %s already has a set_header or "
		    "remove_header rule in this route", k->name, v);
		return -1;
	}
	if (r->nremove_headers == CONFIG_MAX_HEADER_RULES) {
		config_error(p, p->line, "%s: more than %d in one route",
		    k->name, CONFIG_MAX_HEADER_RULES);
		return -1;
	}
	if (config_set_string(p, &r->remove_headers[r->nremove_headers], v,
	    len) == -1)
		return -1;
	r->nremove_headers++;
	return 0;
}

/*
 * A path of a credentials key: "%d/NAME" is NAME in $CREDENTIALS_DIRECTORY,
 * where systemd puts what the unit's LoadCredential= names; any other
 * value is taken as written.  Returns 0, or -1 after reporting.
 */
static int
config_credentials_path(struct config_parser *p, const struct config_key *k,
    const char *v, char *path, size_t pathlen)
{
	const char *dir = NULL;
	int n;

	if (strcmp(v, "%d") == 0 || strncmp(v, "%d/", 3) == 0) {
		dir = getenv("CREDENTIALS_DIRECTORY");
		if (dir == NULL || dir[0] == '\0') {
			config_error(p, p->line, "%s: %.*s: $CREDENTIALS_"
			    "DIRECTORY is not set (%%d/ is for a service with "
			    "LoadCredential=)", k->name, CONFIG_QUOTE_MAX, v);
			return -1;
		}
		n = snprintf(path, pathlen, "%s%s", dir, v + 2);
	} else
		n = snprintf(path, pathlen, "%s", v);
	if (n < 0 || (size_t)n >= pathlen) {
		config_error(p, p->line, "%s: %.*s: path too long", k->name,
		    CONFIG_QUOTE_MAX, v);
		return -1;
	}
	return 0;
}

/*
 * `credentials_file`: reads "user:password" (one line; a final newline is
 * allowed) and keeps it base64-encoded for `Authorization: Basic`
 * (RFC 7617 §2).  Messages name the file, never a byte of its content.
 * "%d/NAME" is NAME in $CREDENTIALS_DIRECTORY, where systemd puts what
 * LoadCredential= names.
 */
static int
config_set_credentials(struct config_parser *p, const struct config_key *k,
    struct route *r, const char *v)
{
	/* The line, its "\r\n", one byte to see that it is too long, NUL. */
	char path[PATH_MAX], buf[CONFIG_MAX_CREDENTIALS + 4];
	const char *why = NULL;
	unsigned char *b64 = NULL;
	size_t len = 0, i;
	FILE *f = NULL;
	int rc = -1;

	if (config_credentials_path(p, k, v, path, sizeof(path)) == -1)
		return -1;
	if ((f = fopen(path, "re")) == NULL)
		why = strerror(errno);
	if (why == NULL) {
		len = fread(buf, 1, sizeof(buf) - 1, f);
		if (ferror(f))
			why = strerror(errno);
	}
	if (why == NULL) {
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
		buf[len] = '\0';
		if (len > CONFIG_MAX_CREDENTIALS)
			why = "longer than " CONFIG_STR(CONFIG_MAX_CREDENTIALS)
			    " bytes";
		for (i = 0; i < len && why == NULL; i++)
			if ((unsigned char)buf[i] < 0x20 ||
			    (unsigned char)buf[i] == 0x7f)
				why = "must be one line \"user:password\" "
				    "without control characters";
		if (why == NULL && (memchr(buf, ':', len) == NULL ||
		    buf[0] == ':'))
			why = "must hold \"user:password\"";
	}
	if (why != NULL) {
		config_error(p, p->line, "%s: %.*s: %s", k->name,
		    CONFIG_QUOTE_MAX, v, why);
		goto out;
	}
	/* 4 output bytes per 3 input bytes, and a NUL. */
	if ((b64 = malloc((len + 2) / 3 * 4 + 1)) == NULL) {
		config_error(p, p->line, "out of memory");
		goto out;
	}
	EVP_EncodeBlock(b64, (const unsigned char *)buf, (int)len);
	if (config_set_string(p, &r->credentials_file, v, strlen(v)) == -1)
		goto out;
	if (r->credentials_basic != NULL) {
		OPENSSL_cleanse(r->credentials_basic,
		    strlen(r->credentials_basic));
		free(r->credentials_basic);
	}
	r->credentials_basic = (char *)b64;
	b64 = NULL;
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (b64 != NULL) {
		OPENSSL_cleanse(b64, (len + 2) / 3 * 4 + 1);
		free(b64);
	}
	if (f != NULL)
		fclose(f);
	return rc;
}

/* A directory the daemon reads files from at run time; "%d" and "%d/..."
 * are resolved against $CREDENTIALS_DIRECTORY and stored resolved. */
static int
config_set_dir(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	char path[PATH_MAX];
	struct stat st;
	const char *why = NULL;

	if (config_credentials_path(p, k, v, path, sizeof(path)) == -1)
		return -1;
	if (path[0] != '/')
		why = "not an absolute path";
	else if (stat(path, &st) == -1 || access(path, R_OK | X_OK) == -1)
		why = strerror(errno);
	else if (!S_ISDIR(st.st_mode))
		why = "not a directory";
	if (why != NULL) {
		config_error(p, p->line, "%s: %.*s: %s", k->name,
		    CONFIG_QUOTE_MAX, v, why);
		return -1;
	}
	return config_set_string(p, slot, path, strlen(path));
}

/* `spool_dir`: created when the route starts; only its shape here. */
static int
config_set_spool_dir(struct config_parser *p, const struct config_key *k,
    char **slot, const char *v)
{
	size_t len = strlen(v);

	if (v[0] != '/' || len > CONFIG_MAX_SPOOL_DIR) {
		config_error(p, p->line, "%s: %.*s: write an absolute path of "
		    "at most %d bytes", k->name, CONFIG_QUOTE_MAX, v,
		    CONFIG_MAX_SPOOL_DIR);
		return -1;
	}
	while (len > 1 && v[len - 1] == '/')
		len--;
	return config_set_string(p, slot, v, len);
}

/* Stores value v of key k into the struct at base (a struct config for
 * [gateway], a struct route for [route]). */
static int
config_set(struct config_parser *p, const struct config_key *k, void *base,
    const char *v)
{
	void *slot = (char *)base + k->offset;

	/* An optional string key left empty is unset. */
	if (v[0] == '\0') {
		switch (k->type) {
		case CONFIG_T_AUTHORITY:
		case CONFIG_T_SERVER_NAME:
		case CONFIG_T_MATCH_HOST:
		case CONFIG_T_MATCH_PATH:
		case CONFIG_T_PATH:
		case CONFIG_T_ALPN:
		case CONFIG_T_METRICS:
		case CONFIG_T_DIR:
		case CONFIG_T_SPOOL_DIR:
			return config_set_string(p, slot, k->def ? k->def : "",
			    k->def ? strlen(k->def) : 0);
		default:
			config_error(p, p->line, "%s: missing value", k->name);
			return -1;
		}
	}
	/* Values are never quoted: a quote would end up in a path or name. */
	if (v[0] == '"' || v[0] == '\'') {
		config_error(p, p->line, "%s: values are not quoted; remove the "
		    "quotes", k->name);
		return -1;
	}
	switch (k->type) {
	case CONFIG_T_BOOL:
		return config_set_bool(p, k, slot, v);
	case CONFIG_T_INT:
	case CONFIG_T_SIZE:
		return config_set_number(p, k, slot, v);
	case CONFIG_T_LOG_LEVEL:
		return config_set_log_level(p, k, slot, v);
	case CONFIG_T_LISTEN:
		return config_set_listen(p, k, base, v);
	case CONFIG_T_UPSTREAM:
		return config_set_upstream(p, k, base, v);
	case CONFIG_T_AUTHORITY:
		return config_set_authority(p, k, slot, v);
	case CONFIG_T_SERVER_NAME:
		return config_set_server_name(p, k, slot, v);
	case CONFIG_T_MATCH_HOST:
		return config_set_match_host(p, k, slot, v);
	case CONFIG_T_MATCH_PATH:
		return config_set_match_path(p, k, slot, v);
	case CONFIG_T_PATH:
		return config_set_path(p, k, slot, v);
	case CONFIG_T_TLS:
		return config_set_tls(p, k, slot, v);
	case CONFIG_T_FRAGMENT:
		return config_set_fragment(p, k, slot, v);
	case CONFIG_T_RECORD_LIMIT:
		return config_set_record_limit(p, k, slot, v);
	case CONFIG_T_FALLBACK:
		return config_set_fallback(p, k, slot, v);
	case CONFIG_T_GROUPS:
		return config_set_name_list(p, k, config_groups,
		    sizeof(config_groups) / sizeof(config_groups[0]),
		    ((struct route *)base)->groups,
		    &((struct route *)base)->ngroups, v);
	case CONFIG_T_CIPHERS:
		return config_set_name_list(p, k, config_ciphers,
		    sizeof(config_ciphers) / sizeof(config_ciphers[0]),
		    ((struct route *)base)->ciphers,
		    &((struct route *)base)->nciphers, v);
	case CONFIG_T_ALPN:
		return config_set_alpn(p, k, slot, v);
	case CONFIG_T_ALLOW:
		return config_set_allow(p, k, base, v);
	case CONFIG_T_METRICS:
		return config_set_metrics(p, k, slot, v);
	case CONFIG_T_HEALTH:
		return config_set_health(p, k, base, v);
	case CONFIG_T_SET_HEADER:
		return config_set_header(p, k, base, v);
	case CONFIG_T_REMOVE_HEADER:
		return config_remove_header(p, k, base, v);
	case CONFIG_T_CREDENTIALS:
		return config_set_credentials(p, k, base, v);
	case CONFIG_T_DIR:
		return config_set_dir(p, k, slot, v);
	case CONFIG_T_SPOOL_DIR:
		return config_set_spool_dir(p, k, slot, v);
	}
	config_error(p, p->line, "%s: internal error: bad key type", k->name);
	return -1;
}

/* Sets every key of `section` that has a default. */
static int
config_set_defaults(struct config_parser *p, enum config_section section,
    void *base)
{
	size_t i;

	for (i = 0; i < CONFIG_NKEYS; i++) {
		if (config_table[i].section != section ||
		    config_table[i].def == NULL)
			continue;
		if (config_set(p, &config_table[i], base,
		    config_table[i].def) == -1)
			return -1;
	}
	return 0;
}

/* A key that names a file must name a readable one at load time, so that
 * `tlsgate -t` catches a missing CA bundle. */
static int
config_check_file(struct config_parser *p, int line, const char *key,
    const char *path, const char *route)
{
	struct stat st;
	const char *why = NULL;

	if (stat(path, &st) == -1 || access(path, R_OK) == -1)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	if (why == NULL)
		return 0;
	if (route != NULL)
		config_error(p, line, "route \"%s\": %s %.*s: %s", route, key,
		    CONFIG_QUOTE_MAX, path, why);
	else
		config_error(p, line, "%s: %.*s: %s", key, CONFIG_QUOTE_MAX,
		    path, why);
	return -1;
}

/* ---- sections ----------------------------------------------------- */

static int
config_valid_route_name(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > CONFIG_MAX_ROUTE_NAME)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(isascii(c) && isalnum(c)) && c != '_' && c != '.' &&
		    c != '-')
			return 0;
	}
	return 1;
}

static int
config_new_route(struct config_parser *p, const char *name, size_t len)
{
	struct config *cfg = p->cfg;
	struct route *routes, *r;
	size_t i;

	for (i = 0; i < cfg->nroutes; i++) {
		if (strlen(cfg->routes[i].name) == len &&
		    memcmp(cfg->routes[i].name, name, len) == 0) {
			config_error(p, p->line, "duplicate route \"%.*s\" "
			    "(first at line %d)", (int)len, name,
			    cfg->routes[i].line);
			return -1;
		}
	}
	if (cfg->nroutes == CONFIG_MAX_ROUTES) {
		config_error(p, p->line, "more than %d routes",
		    CONFIG_MAX_ROUTES);
		return -1;
	}
	routes = realloc(cfg->routes, (cfg->nroutes + 1) * sizeof(*routes));
	if (routes == NULL) {
		config_error(p, p->line, "out of memory");
		return -1;
	}
	cfg->routes = routes;
	r = &routes[cfg->nroutes];
	memset(r, 0, sizeof(*r));
	cfg->nroutes++;
	r->line = p->line;
	if ((r->name = config_strndup(name, len)) == NULL) {
		config_error(p, p->line, "out of memory");
		return -1;
	}
	p->section = CONFIG_SEC_ROUTE;
	p->route = cfg->nroutes - 1;
	p->route_seen[p->route] = 0;
	return config_set_defaults(p, CONFIG_SEC_ROUTE, r);
}

/* line is a whole "[...]" line with trailing blanks removed. */
static int
config_section_line(struct config_parser *p, const char *line)
{
	const char *end, *in, *rest;
	size_t inlen;

	end = strchr(line, ']');
	if (end == NULL) {
		config_error(p, p->line, "section header without ']'");
		return -1;
	}
	for (rest = end + 1; *rest == ' ' || *rest == '\t'; rest++)
		;
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		config_error(p, p->line, "text after the section header");
		return -1;
	}
	in = line + 1;
	inlen = (size_t)(end - in);
	if (inlen == 7 && memcmp(in, "gateway", 7) == 0) {
		if (p->gateway_line > 0) {
			config_error(p, p->line, "duplicate section [gateway] "
			    "(first at line %d)", p->gateway_line);
			return -1;
		}
		p->gateway_line = p->line;
		p->section = CONFIG_SEC_GATEWAY;
		return 0;
	}
	if (inlen > 6 && memcmp(in, "route", 5) == 0 &&
	    (in[5] == ' ' || in[5] == '\t')) {
		const char *name = in + 6;
		size_t namelen = inlen - 6;

		while (namelen > 0 && (*name == ' ' || *name == '\t')) {
			name++;
			namelen--;
		}
		while (namelen > 0 &&
		    (name[namelen - 1] == ' ' || name[namelen - 1] == '\t'))
			namelen--;
		if (!config_valid_route_name(name, namelen)) {
			config_error(p, p->line, "route name \"%.*s\" is not 1-%d "
			    "of A-Z a-z 0-9 _ . -", (int)(namelen >
			    CONFIG_QUOTE_MAX ? CONFIG_QUOTE_MAX : namelen), name,
			    CONFIG_MAX_ROUTE_NAME);
			return -1;
		}
		return config_new_route(p, name, namelen);
	}
	config_error(p, p->line, "unknown section [%.*s]", (int)(inlen >
	    CONFIG_QUOTE_MAX ? CONFIG_QUOTE_MAX : inlen), in);
	return -1;
}

/* ---- inih glue ---------------------------------------------------- */

/*
 * The ini_reader: copies the next physical line, without its "\n" or
 * "\r\n", into buf and appends "\n" so that inih never mistakes a full
 * buffer for a split line.  Returns NULL at the end or after an error,
 * which makes inih stop.  Lines inih must not interpret (section headers
 * and rejected lines) are handed over as blank lines.
 */
static char *
config_read_line(char *buf, int num, void *arg)
{
	struct config_parser *p = arg;
	const char *s, *nl, *c;
	size_t len, max;

	if (config_failed(p) || p->pos >= p->len || num < 2)
		return NULL;
	s = p->text + p->pos;
	nl = memchr(s, '\n', p->len - p->pos);
	len = nl != NULL ? (size_t)(nl - s) : p->len - p->pos;
	p->pos += len + (nl != NULL);
	p->line++;
	if (len > 0 && s[len - 1] == '\r')
		len--;
	/* A UTF-8 byte order mark, as some editors write: skip it. */
	if (p->line == 1 && len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
		s += 3;
		len -= 3;
	}
	max = (size_t)num - 2;
	if (len > max) {
		config_error(p, p->line, "line longer than %zu bytes", max);
		return NULL;
	}
	for (c = s; c < s + len; c++) {
		unsigned char ch = (unsigned char)*c;

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			config_error(p, p->line, "control character 0x%02x",
			    ch);
			return NULL;
		}
	}
	memcpy(buf, s, len);
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';

	for (c = buf; *c == ' ' || *c == '\t'; c++)
		;
	if (*c == '\0' || *c == ';' || *c == '#') {
		/* blank or comment: inih skips it */
	} else if (c != buf) {
		/* The packaged inih reads an indented line as more of the
		 * previous value (INI_ALLOW_MULTILINE): never do that
		 * silently. */
		config_error(p, p->line, "line starts with white space "
		    "(continuation lines are not supported)");
		return NULL;
	} else if (*c == '[') {
		if (config_section_line(p, buf) == -1)
			return NULL;
		len = 0;
	}
	buf[len] = '\n';
	buf[len + 1] = '\0';
	return buf;
}

static int
config_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct config_parser *p = user;
	const struct config_key *k = NULL;
	uint64_t *seen;
	void *base;
	size_t i;

	(void)section;	/* ours is p->section; inih's may be truncated */
	if (p->section == CONFIG_SEC_NONE) {
		config_error(p, p->line, "key \"%.*s\" outside any section",
		    CONFIG_QUOTE_MAX, name);
		return 0;
	}
	for (i = 0; i < CONFIG_NKEYS; i++) {
		if (config_table[i].section == p->section &&
		    strcmp(config_table[i].name, name) == 0) {
			k = &config_table[i];
			break;
		}
	}
	if (k == NULL) {
		if (p->section == CONFIG_SEC_GATEWAY)
			config_error(p, p->line, "unknown key \"%.*s\" in "
			    "[gateway]", CONFIG_QUOTE_MAX, name);
		else
			config_error(p, p->line, "unknown key \"%.*s\" in "
			    "[route %s]", CONFIG_QUOTE_MAX, name,
			    p->cfg->routes[p->route].name);
		return 0;
	}
	if (p->section == CONFIG_SEC_GATEWAY) {
		seen = &p->gateway_seen;
		base = p->cfg;
	} else {
		seen = &p->route_seen[p->route];
		base = &p->cfg->routes[p->route];
	}
	if ((*seen & (UINT64_C(1) << i)) && !k->repeat) {
		config_error(p, p->line, "duplicate key \"%s\"", k->name);
		return 0;
	}
	*seen |= UINT64_C(1) << i;
	if (config_set(p, k, base, value) == -1)
		return 0;
	if (k->type == CONFIG_T_PATH && value[0] != '\0' &&
	    config_check_file(p, p->line, k->name, value, NULL) == -1)
		return 0;
	if (k->needs != CONFIG_NEEDS_NONE &&
	    p->needs_line[p->route][k->needs] == 0) {
		p->needs_line[p->route][k->needs] = p->line;
		p->needs_key[p->route][k->needs] = k->name;
	}
	return 1;
}

/* ---- checks after parsing ----------------------------------------- */

static int
config_addr_equal(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    x->sin6_scope_id == y->sin6_scope_id &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
	return 0;
}

/* Two different addresses of one family and port, one of them the
 * wildcard: the second bind() would fail with EADDRINUSE. */
static int
config_addr_overlap(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family || config_addr_equal(a, b))
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		    (x->sin_addr.s_addr == htonl(INADDR_ANY) ||
		    y->sin_addr.s_addr == htonl(INADDR_ANY));
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		    (IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) ||
		    IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
	}
	return 0;
}

static int
config_same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Fills in the defaults that depend on other keys. */
static int
config_finish_route(struct config_parser *p, struct route *r)
{
	const char *host, *portstr, *why;
	size_t hostlen;
	int v6;
	char *s;

	if (r->listen == NULL) {
		config_error(p, r->line, "route \"%s\": missing listen",
		    r->name);
		return -1;
	}
	if (r->upstream_host == NULL) {
		config_error(p, r->line, "route \"%s\": missing upstream",
		    r->name);
		return -1;
	}
	if ((r->client_cert == NULL) != (r->client_key == NULL)) {
		config_error(p, r->line, "route \"%s\": %s is set without %s",
		    r->name, r->client_cert ? "client_cert" : "client_key",
		    r->client_cert ? "client_key" : "client_cert");
		return -1;
	}
	if (r->host == NULL) {
		/* RFC 9110 §7.2: Host carries the authority of the target
		 * URI; the port is left out only when it is the scheme's
		 * default (§4.2.2: 443 for https). */
		size_t n = strlen(r->upstream_host) + sizeof("[]:65535");

		if ((s = malloc(n)) == NULL) {
			config_error(p, r->line, "out of memory");
			return -1;
		}
		if (strchr(r->upstream_host, ':') != NULL)
			snprintf(s, n, "[%s]", r->upstream_host);
		else
			snprintf(s, n, "%s", r->upstream_host);
		if (r->upstream_port != 443)
			snprintf(s + strlen(s), n - strlen(s), ":%u",
			    (unsigned)r->upstream_port);
		r->host = s;
	}
	if (r->sni == NULL) {
		/* The name part of host: no port, no brackets. */
		if (config_split_hostport(r->host, &host, &hostlen, &v6,
		    &portstr, &why) == -1) {
			config_error(p, r->line, "route \"%s\": host: %s",
			    r->name, why);
			return -1;
		}
		if (config_set_string(p, &r->sni, host, hostlen) == -1)
			return -1;
	}
	if (r->health_method != NULL &&
	    r->health_timeout > r->health_interval) {
		config_error(p, r->line, "route \"%s\": health_timeout (%d s) "
		    "is longer than health_interval (%d s)", r->name,
		    r->health_timeout, r->health_interval);
		return -1;
	}
	if (r->offline_queue && r->spool_dir == NULL) {
		size_t n = sizeof(CONFIG_DEFAULT_SPOOL_PARENT "/") +
		    strlen(r->name);

		if ((r->spool_dir = malloc(n)) == NULL) {
			config_error(p, r->line, "out of memory");
			return -1;
		}
		snprintf(r->spool_dir, n, "%s/%s", CONFIG_DEFAULT_SPOOL_PARENT,
		    r->name);
	}
	/* An explicit ca_file was checked on its line already; this catches
	 * the default, which only matters when certificates are verified. */
	if (r->verify && config_check_file(p, r->line, "ca_file", r->ca_file,
	    r->name) == -1)
		return -1;
	return 0;
}

static int
config_finish(struct config_parser *p)
{
	struct config *cfg = p->cfg;
	size_t i, j;

	if (cfg->nroutes == 0) {
		config_error(p, 0, "no [route NAME] section");
		return -1;
	}
	for (i = 0; i < cfg->nroutes; i++) {
		struct route *r = &cfg->routes[i];

		if (config_finish_route(p, r) == -1)
			return -1;
		/* Fail rather than ignore: the key would not do what the
		 * file says. */
		if (r->tls != CONFIG_TLS_BUILTIN &&
		    p->needs_line[i][CONFIG_NEEDS_BUILTIN] != 0) {
			config_error(p, p->needs_line[i][CONFIG_NEEDS_BUILTIN],
			    "route \"%s\": %s needs tls = builtin", r->name,
			    p->needs_key[i][CONFIG_NEEDS_BUILTIN]);
			return -1;
		}
		if (!r->offline_queue &&
		    p->needs_line[i][CONFIG_NEEDS_OFFLINE] != 0) {
			config_error(p, p->needs_line[i][CONFIG_NEEDS_OFFLINE],
			    "route \"%s\": %s needs offline_queue = yes",
			    r->name, p->needs_key[i][CONFIG_NEEDS_OFFLINE]);
			return -1;
		}
		if (r->health_method == NULL &&
		    p->needs_line[i][CONFIG_NEEDS_HEALTH] != 0) {
			config_error(p, p->needs_line[i][CONFIG_NEEDS_HEALTH],
			    "route \"%s\": %s needs health_check", r->name,
			    p->needs_key[i][CONFIG_NEEDS_HEALTH]);
			return -1;
		}
		for (j = 0; j < i; j++) {
			const struct route *o = &cfg->routes[j];

			if (r->offline_queue && o->offline_queue &&
			    strcmp(r->spool_dir, o->spool_dir) == 0) {
				config_error(p, r->line, "route \"%s\": "
				    "spool_dir %s is also route \"%s\"'s",
				    r->name, r->spool_dir, o->name);
				return -1;
			}
			if (config_addr_overlap(&o->listen_addr,
			    &r->listen_addr)) {
				config_error(p, r->line, "route \"%s\": listen "
				    "%s overlaps %s of route \"%s\"; use the "
				    "same address", r->name, r->listen,
				    o->listen, o->name);
				return -1;
			}
			if (!config_addr_equal(&o->listen_addr,
			    &r->listen_addr))
				continue;
			if (config_same_string(o->match_host, r->match_host) &&
			    config_same_string(o->match_path, r->match_path)) {
				config_error(p, r->line, "route \"%s\": same "
				    "listen, match_host and match_path as route "
				    "\"%s\"", r->name, o->name);
				return -1;
			}
		}
	}
	return 0;
}

/* ---- public ------------------------------------------------------- */

static void
config_free_route(struct route *r)
{
	free(r->name);
	free(r->listen);
	free(r->upstream_host);
	free(r->host);
	free(r->sni);
	free(r->ca_file);
	free(r->client_cert);
	free(r->client_key);
	free(r->match_host);
	free(r->match_path);
	free(r->alpn);
	/* Every slot: a list that failed half-way set hosts past nservers. */
	for (size_t i = 0; i < CONFIG_MAX_SERVERS; i++)
		free(r->servers[i].host);
	free(r->health_method);
	free(r->health_path);
	for (size_t i = 0; i < r->nset_headers; i++) {
		free(r->set_headers[i].name);
		free(r->set_headers[i].value);
	}
	for (size_t i = 0; i < r->nremove_headers; i++)
		free(r->remove_headers[i]);
	free(r->credentials_file);
	if (r->credentials_basic != NULL) {
		OPENSSL_cleanse(r->credentials_basic,
		    strlen(r->credentials_basic));
		free(r->credentials_basic);
	}
	free(r->device_credentials_dir);
	free(r->spool_dir);
}

static void
config_free(struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nroutes; i++)
		config_free_route(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->metrics_listen);
	free(cfg->path);
	free(cfg);
}

struct config *
config_parse(const char *name, const char *text, size_t len, char *err,
    size_t errlen)
{
	static char comment_prefixes[] = ";#";
	struct config_parser *p = NULL;
	struct config *cfg = NULL;
	int saved_max_line, saved_multiline, saved_inline, saved_stop;
	char *saved_inline_prefixes, *saved_start_prefixes;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (cfg->path = strdup(name)) == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: out of memory", name);
		goto fail;
	}
	cfg->refcnt = 1;
	p->name = name;
	p->text = text;
	p->len = len;
	p->cfg = cfg;
	p->err = err;
	p->errlen = errlen;
	p->err_line = -1;
	if (config_set_defaults(p, CONFIG_SEC_GATEWAY, cfg) == -1)
		goto fail;

	/*
	 * Debian's libinih exports its compile-time options as variables
	 * and sizes its line buffer from ini_max_line at run time.  Room for
	 * CONFIG_MAX_LINE - 1 bytes of text plus the "\n" and NUL the
	 * reader adds; the reader checks against the size it is given, so a
	 * smaller buffer would shorten the limit, never split a line.
	 */
	saved_max_line = ini_max_line;
	saved_multiline = ini_allow_multiline;
	saved_inline = ini_allow_inline_comments;
	saved_stop = ini_stop_on_first_error;
	saved_inline_prefixes = ini_inline_comment_prefixes;
	saved_start_prefixes = ini_start_comment_prefixes;
	ini_max_line = CONFIG_MAX_LINE + 1;
	ini_allow_multiline = 0;
	ini_allow_inline_comments = 1;
	ini_inline_comment_prefixes = comment_prefixes;
	ini_start_comment_prefixes = comment_prefixes;
	ini_stop_on_first_error = 1;
	rc = ini_parse_stream(config_read_line, p, config_handler, p);
	ini_max_line = saved_max_line;
	ini_allow_multiline = saved_multiline;
	ini_allow_inline_comments = saved_inline;
	ini_stop_on_first_error = saved_stop;
	ini_inline_comment_prefixes = saved_inline_prefixes;
	ini_start_comment_prefixes = saved_start_prefixes;

	/* inih's own complaint (a line that is not "key = value") comes
	 * first when it is on an earlier line than ours. */
	if (rc > 0 && (!config_failed(p) || rc < p->err_line)) {
		p->err_line = -1;
		config_error(p, rc, "expected \"key = value\", a [section] or a "
		    "comment");
	} else if (rc < 0 && !config_failed(p))
		config_error(p, 0, "inih failed (%d)", rc);
	if (config_failed(p) || config_finish(p) == -1)
		goto fail;
	free(p);
	return cfg;
fail:
	if (cfg != NULL)
		config_free(cfg);
	free(p);
	return NULL;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config_parser p;
	struct config *cfg = NULL;
	FILE *f = NULL;
	char *text = NULL;
	size_t len = 0;

	/* Only for config_error's "FILE: what" messages. */
	memset(&p, 0, sizeof(p));
	p.name = path;
	p.err = err;
	p.errlen = errlen;
	p.err_line = -1;
	if ((f = fopen(path, "r")) == NULL) {
		config_error(&p, 0, "%s", strerror(errno));
		goto out;
	}
	if ((text = malloc(CONFIG_MAX_FILE + 1)) == NULL) {
		config_error(&p, 0, "out of memory");
		goto out;
	}
	/* One byte more than allowed tells an over-long file apart. */
	len = fread(text, 1, CONFIG_MAX_FILE + 1, f);
	if (ferror(f)) {
		config_error(&p, 0, "%s", strerror(errno));
		goto out;
	}
	if (len > CONFIG_MAX_FILE) {
		config_error(&p, 0, "larger than %d bytes", CONFIG_MAX_FILE);
		goto out;
	}
	cfg = config_parse(path, text, len, err, errlen);
out:
	if (f != NULL)
		fclose(f);
	free(text);
	return cfg;
}

struct config *
config_ref(struct config *cfg)
{
	cfg->refcnt++;
	return cfg;
}

void
config_unref(struct config *cfg)
{
	if (cfg == NULL || --cfg->refcnt > 0)
		return;
	config_free(cfg);
}

const struct route *
config_route(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nroutes; i++)
		if (strcmp(cfg->routes[i].name, name) == 0)
			return &cfg->routes[i];
	return NULL;
}

const char *
config_log_level_name(int level)
{
	if (level < 0 || (size_t)level >=
	    sizeof(config_log_levels) / sizeof(config_log_levels[0]))
		return "unknown";
	return config_log_levels[level];
}

const char *
config_key_name(size_t i, const char **section)
{
	if (i >= CONFIG_NKEYS)
		return NULL;
	if (section != NULL)
		*section = config_table[i].section == CONFIG_SEC_GATEWAY ?
		    "gateway" : "route";
	return config_table[i].name;
}

/* ---- routing ------------------------------------------------------ */

/*
 * How well route r matches host[hostlen] (port and trailing dot already
 * removed) and path[pathlen] (query removed): -1 for no match, else a
 * rank where an exact match_host beats a longer *.suffix beats a shorter
 * one beats none, and then a longer match_path beats a shorter one.
 */
static long
config_match_rank(const struct route *r, const char *host, size_t hostlen,
    const char *path, size_t pathlen)
{
	long hostrank = 0, pathrank = 0;
	size_t n;

	if (r->match_host != NULL) {
		n = strlen(r->match_host);
		if (r->match_host[0] == '*') {
			/* "*.example.com" needs at least one more label:
			 * n - 1 bytes of ".example.com" plus one before. */
			if (hostlen < n ||
			    strncasecmp(host + hostlen - (n - 1),
			    r->match_host + 1, n - 1) != 0)
				return -1;
			hostrank = (long)n;
		} else {
			if (hostlen != n ||
			    strncasecmp(host, r->match_host, n) != 0)
				return -1;
			/* above any "*." + name of at most 253 */
			hostrank = CONFIG_MAX_DNS_NAME + 3;
		}
	}
	if (r->match_path != NULL) {
		n = strlen(r->match_path);
		if (pathlen < n || memcmp(path, r->match_path, n) != 0)
			return -1;
		pathrank = (long)n;
	}
	return hostrank * (CONFIG_MAX_LINE + 1) + pathrank;
}

const struct route *
config_match(const struct config *cfg, const struct sockaddr *addr,
    socklen_t addrlen, const char *host, size_t hostlen, const char *path,
    size_t pathlen)
{
	struct sockaddr_storage ss;
	const struct route *best = NULL;
	const char *q;
	long rank, best_rank = -1;
	size_t i;

	if (addrlen > sizeof(ss))
		return NULL;
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, addr, addrlen);

	/* RFC 9110 §7.2: Host is uri-host [ ":" port ]. */
	if (host == NULL)
		hostlen = 0;
	if (hostlen > 0 && host[0] == '[') {
		q = memchr(host, ']', hostlen);
		hostlen = q != NULL ? (size_t)(q - host) + 1 : hostlen;
	} else if (hostlen > 0 && (q = memchr(host, ':', hostlen)) != NULL)
		hostlen = (size_t)(q - host);
	/* RFC 1034 §3.1: "example.com." is the same name. */
	if (hostlen > 0 && host[hostlen - 1] == '.')
		hostlen--;
	if (path == NULL)
		pathlen = 0;
	if (pathlen > 0 && (q = memchr(path, '?', pathlen)) != NULL)
		pathlen = (size_t)(q - path);

	for (i = 0; i < cfg->nroutes; i++) {
		const struct route *r = &cfg->routes[i];

		if (!config_addr_equal(&r->listen_addr, &ss))
			continue;
		rank = config_match_rank(r, host, hostlen, path, pathlen);
		if (rank > best_rank) {
			best = r;
			best_rank = rank;
		}
	}
	return best;
}

/* ---- access list -------------------------------------------------- */

/* 1 when the first `bits` bits of a and b are equal. */
static int
config_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	size_t whole = bits / 8;
	uint8_t mask;

	if (memcmp(a, b, whole) != 0)
		return 0;
	if (bits % 8 == 0)
		return 1;
	mask = (uint8_t)(0xff00u >> (bits % 8));
	return ((a[whole] ^ b[whole]) & mask) == 0;
}

int
config_allowed(const struct route *r, const struct sockaddr *peer)
{
	const uint8_t *a;
	int family;
	size_t i;

	if (r->nallow == 0)
		return 1;
	if (peer->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)peer;

		a = (const uint8_t *)&sin->sin_addr;
		family = AF_INET;
	} else if (peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)peer;

		a = sin6->sin6_addr.s6_addr;
		family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			a += 12;
			family = AF_INET;
		}
	} else
		return 0;
	for (i = 0; i < r->nallow; i++)
		if (r->allow[i].family == family &&
		    config_prefix_equal(a, r->allow[i].addr, r->allow[i].prefix))
			return 1;
	return 0;
}
