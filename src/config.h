/*
 * config: the INI file (read with inih) turned into a validated, immutable
 * struct config.  Reload builds a new one; sessions in flight keep a
 * reference to the one they started with.
 */
#ifndef TLSGATE_CONFIG_H
#define TLSGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_DEFAULT_PATH "/etc/tlsgate/tlsgate.conf"
/* inih's line buffer; a longer line is rejected, never split. */
#define CONFIG_MAX_LINE 4096
#define CONFIG_MAX_ROUTES 256
/* A larger configuration file is rejected before it is parsed. */
#define CONFIG_MAX_FILE (1024 * 1024)

/* Longest `groups` / `ciphers` list of a builtin route. */
#define CONFIG_MAX_TLS_LIST 8

/* Most entries of one route's `allow` list. */
#define CONFIG_MAX_ALLOW 64

/* Most servers in one route's `upstream` list. */
#define CONFIG_MAX_SERVERS 16

/* Most `set_header` and `remove_header` lines of one route, each. */
#define CONFIG_MAX_HEADER_RULES 32

/* Longest `credentials_file`: one line "user:password". */
#define CONFIG_MAX_CREDENTIALS 1024

/** One server of a route's `upstream` list. */
struct config_server {
	char *host;           /* DNS name, IPv4 address or IPv6 address
				 (without brackets) */
	uint16_t port;        /* default 443 */
};

/** One `set_header = Name: value` line. */
struct config_header {
	char *name;           /* a field-name token, as written */
	char *value;          /* field-value without surrounding blanks;
				 may be empty */
};

/**
 * One `allow` entry: the addresses whose first `prefix` bits equal those
 * of `addr`.  An IPv4-mapped IPv6 entry (::ffff:a.b.c.d/96+n) is stored as
 * the IPv4 entry a.b.c.d/n, so that it matches like the peers it names.
 */
struct config_cidr {
	sa_family_t family;   /* AF_INET or AF_INET6 */
	uint8_t prefix;       /* 0..32 or 0..128; host bits of addr are 0 */
	uint8_t addr[16];     /* network order; the first 4 for AF_INET */
};

/* `tls`: which client carries a route's uplink. */
enum config_tls {
	CONFIG_TLS_OPENSSL = 0,  /* libssl (transport_openssl.c) */
	CONFIG_TLS_BUILTIN,      /* src/tls13 (transport_tls13.c) */
};

enum config_log_level {
	CONFIG_LOG_ERROR = 0,
	CONFIG_LOG_WARNING,
	CONFIG_LOG_INFO,
	CONFIG_LOG_DEBUG,
};

/** One `[route NAME]` section.  Every string is owned by the config. */
struct route {
	char *name;           /* NAME of `[route NAME]` */
	int line;             /* line of the section header, for messages */

	/* `listen`: the address devices connect to, as written and parsed. */
	char *listen;
	struct sockaddr_storage listen_addr;
	socklen_t listen_addrlen;

	/* `upstream = host:port [host:port ...]` (host may be a name, an
	 * IPv4 address or [IPv6]; port defaults to 443; separated by blanks
	 * and/or commas): requests are spread round-robin over the healthy
	 * servers.  upstream_host/upstream_port are servers[0]. */
	struct config_server servers[CONFIG_MAX_SERVERS];
	size_t nservers;      /* at least 1 */
	char *upstream_host;
	uint16_t upstream_port;

	/* Active health checks: `health_check = METHOD /path` (NULL when
	 * unset: only passive checks on connect failures).  A server is
	 * marked down after health_fall failed checks in a row and up again
	 * after health_rise good ones; a good check is a complete response
	 * with a status below 500 within health_timeout. */
	char *health_method;
	char *health_path;
	int health_interval;  /* seconds, default 5 */
	int health_timeout;   /* seconds, default 2 */
	int health_rise;      /* default 2 */
	int health_fall;      /* default 3 */

	/* Header rules, applied to every request forwarded upstream after
	 * the gateway's own rewriting: every field named in remove_headers
	 * is dropped, then every set_headers field replaces any field of
	 * that name (case-insensitive).  Names that carry framing or
	 * routing (Host, Content-Length, Transfer-Encoding, Connection, TE,
	 * Upgrade, Keep-Alive, Proxy-Connection, Trailer) are refused. */
	struct config_header set_headers[CONFIG_MAX_HEADER_RULES];
	size_t nset_headers;
	char *remove_headers[CONFIG_MAX_HEADER_RULES];
	size_t nremove_headers;

	/* `credentials_file`: the path as written, and the file's
	 * "user:password" read at load time, base64-encoded for an
	 * `Authorization: Basic` field (a secret: never logged).  A path
	 * starting with "%d/" is taken relative to $CREDENTIALS_DIRECTORY
	 * (systemd's LoadCredential=).  NULL when unset. */
	char *credentials_file;
	char *credentials_basic;
	/* `device_credentials_dir`: a directory of files, one per device,
	 * named by the user name the device sends in Authorization: Basic,
	 * or by its source address; each holds "user:password" for the
	 * cloud.  NULL when unset.  Read per request. */
	char *device_credentials_dir;

	/* Store-and-forward.  `offline_queue`: default no.  `spool_dir`:
	 * default /var/lib/tlsgate/spool/NAME; no two routes share one.
	 * `spool_max_bytes`: default 64m.  `spool_rate`: queued requests
	 * replayed per second at most, default 20. */
	int offline_queue;
	char *spool_dir;
	uint64_t spool_max_bytes;
	int spool_rate;

	char *host;            /* `host`, default upstream_host */
	char *sni;             /* `sni`, default host */
	int verify;            /* `verify`, default 1 */
	char *ca_file;         /* default /etc/ssl/certs/ca-certificates.crt */
	char *client_cert;     /* NULL when unset; set with client_key */
	char *client_key;
	int connect_timeout;   /* seconds, default 10 */
	int upstream_timeout;  /* seconds, default 90 */

	/* Routes sharing a listen address are told apart by these; NULL when
	 * unset.  match_host is an exact name or "*.suffix" (lower-cased);
	 * match_path is a prefix starting with '/'. */
	char *match_host;
	char *match_path;

	/* `tls`: enum config_tls, default openssl.  The keys below apply to
	 * builtin routes only (an error on an openssl route). */
	int tls;
	int max_fragment;      /* 0 (none), 512, 1024, 2048 or 4096 */
	int record_size_limit; /* RFC 8449: 0 (none) or 64..16384 */
	int resumption;        /* PSK resumption with tickets, default 1 */
	int record_fallback;   /* 0: accept full records, 1: refuse */
	/* IANA code points in preference order; 0 entries: the engine's
	 * defaults (x25519 secp256r1; the three TLS 1.3 suites). */
	uint16_t groups[CONFIG_MAX_TLS_LIST];
	size_t ngroups;
	uint16_t ciphers[CONFIG_MAX_TLS_LIST];
	size_t nciphers;
	char *alpn;            /* protocol names, comma-separated; NULL unset */

	/* `allow`: the source addresses this route serves; nallow 0 (the
	 * key unset) serves every source. */
	struct config_cidr allow[CONFIG_MAX_ALLOW];
	size_t nallow;
};

/** The whole validated configuration; immutable once loaded. */
struct config {
	char *path;              /* file it was read from */
	int log_level;           /* enum config_log_level, default INFO */
	int max_clients;         /* default 4096 */
	int header_timeout;      /* seconds, default 10 */
	int idle_timeout;        /* seconds, default 60 */
	uint64_t max_header_size; /* bytes, default 16384 */
	uint64_t max_body_size;   /* bytes, default 65536; 0 = unlimited */
	int shutdown_timeout;    /* seconds requests in flight get after
				    SIGTERM, default 30; 0 = close at once */
	/* `metrics_listen`: the Prometheus endpoint's address as written
	 * ("127.0.0.1:9180"), NULL when unset (no endpoint). */
	char *metrics_listen;

	struct route *routes;    /* in file order */
	size_t nroutes;          /* at least 1 */
	int refcnt;              /* owned by config_ref/config_unref */
};

/**
 * Reads and validates the file at `path`.  Returns a new config with a
 * reference count of 1, or NULL with a one-line message "FILE:LINE: what"
 * (or "FILE: what" when no line applies) written to err[errlen].
 */
struct config *config_load(const char *path, char *err, size_t errlen);

/**
 * Same as config_load, from text[len] in memory; `name` stands for the
 * file name in messages.  Used by the tests and the fuzz target.
 */
struct config *config_parse(const char *name, const char *text, size_t len,
    char *err, size_t errlen);

/** Takes one more reference; returns cfg. */
struct config *config_ref(struct config *cfg);

/** Drops one reference, freeing everything at zero.  NULL is a no-op. */
void config_unref(struct config *cfg);

/** The route called `name`, or NULL. */
const struct route *config_route(const struct config *cfg, const char *name);

/** "error", "warning", "info" or "debug" ("unknown" for any other value). */
const char *config_log_level_name(int level);

/**
 * The route for a request that arrived on the listen address addr
 * (addrlen bytes, as from getsockname) with Host field value
 * host[hostlen] and request-target path path[pathlen] (neither needs a
 * NUL; either may be NULL with length 0).  A port or trailing dot in host
 * and a "?query" in path are ignored.  Among the routes on that address
 * whose match_host and match_path both match (an unset key matches
 * anything): an exact match_host beats the longest "*.suffix", which
 * beats no match_host; then the longest match_path wins.  Returns a
 * route owned by cfg, or NULL when none matches (answer 404).
 */
const struct route *config_match(const struct config *cfg,
    const struct sockaddr *addr, socklen_t addrlen, const char *host,
    size_t hostlen, const char *path, size_t pathlen);

/**
 * 1 when route r serves a device connecting from `peer` (a sockaddr_in or
 * sockaddr_in6, as from accept or getpeername): r has no `allow` list, or
 * one of its entries contains the address.  An IPv4-mapped IPv6 peer
 * (::ffff:a.b.c.d, from a dual-stack socket) is matched as the IPv4
 * address a.b.c.d.  0 otherwise, also for any other address family.
 */
int config_allowed(const struct route *r, const struct sockaddr *peer);

/**
 * Name of the i-th key of the configuration table, or NULL when i is past
 * the end; *section (if not NULL) is set to "gateway" or "route".  Lets the
 * tests check that the manual documents every key.  Static strings.
 */
const char *config_key_name(size_t i, const char **section);

#endif
