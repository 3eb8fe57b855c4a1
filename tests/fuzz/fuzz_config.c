/*
 * libFuzzer target: config_parse() on arbitrary bytes.  Besides memory
 * safety it checks what the loader promises: a config has 1 to
 * CONFIG_MAX_ROUTES routes, each with listen, upstream, host and sni set,
 * values within the table's bounds, and a failure always comes with a
 * "NAME:" message; and config_match never returns a route that listens
 * elsewhere.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const struct config *cfg)
{
	const struct route *r, *m;
	size_t i;

	if (cfg->nroutes < 1 || cfg->nroutes > CONFIG_MAX_ROUTES ||
	    cfg->refcnt != 1)
		abort();
	if (cfg->max_clients < 1 || cfg->max_clients > 1000000 ||
	    cfg->header_timeout < 1 || cfg->idle_timeout < 1 ||
	    cfg->max_header_size < 1024 || cfg->max_header_size > 1048576 ||
	    cfg->max_body_size > (1ULL << 40))
		abort();
	for (i = 0; i < cfg->nroutes; i++) {
		r = &cfg->routes[i];
		if (r->name == NULL || r->listen == NULL ||
		    r->upstream_host == NULL || r->host == NULL ||
		    r->sni == NULL || r->ca_file == NULL ||
		    r->upstream_port == 0 || r->listen_addrlen == 0 ||
		    (r->client_cert == NULL) != (r->client_key == NULL) ||
		    r->connect_timeout < 1 || r->upstream_timeout > 86400 ||
		    config_route(cfg, r->name) != r)
			abort();
		m = config_match(cfg, (const struct sockaddr *)&r->listen_addr,
		    r->listen_addrlen, r->host, strlen(r->host),
		    r->match_path ? r->match_path : "/",
		    r->match_path ? strlen(r->match_path) : 1);
		if (m != NULL && memcmp(&m->listen_addr, &r->listen_addr,
		    r->listen_addrlen) != 0)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg;
	char err[256];

	cfg = config_parse("f", (const char *)data, size, err, sizeof(err));
	if (cfg == NULL) {
		if (strncmp(err, "f:", 2) != 0)
			abort();
		return 0;
	}
	check(cfg);
	config_unref(config_ref(cfg));
	config_unref(cfg);
	return 0;
}
