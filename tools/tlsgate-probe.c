/*
 * tlsgate-probe: connect to HOST[:PORT] with the built-in TLS 1.3 client,
 * verify the server, send "GET / HTTP/1.1", print the status line and one
 * key=value line per negotiated fact.  Exit 0 on success, else non-zero
 * with the reason on stderr.  See docs/tls13.md.
 */
#include <errno.h>
#include <execinfo.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls13/tls13.h"

/* ---- libcrypto allocation accounting (CRYPTO_set_mem_functions) ---- */

#define HDR 16
static size_t live_bytes, peak_live;
/* --trace-alloc FILE: every libcrypto allocation and free with its source
 * line and call stack, for tools/... analysis of what the peak holds. */
static FILE *trace;
#define TRACE_DEPTH 12

static void
trace_alloc(void *p, size_t n, const char *file, int line)
{
	void *bt[TRACE_DEPTH];
	int nbt;

	if (trace == NULL)
		return;
	fprintf(trace, "+ %p %zu %s:%d\n", p, n, file ? file : "?", line);
	fflush(trace);
	nbt = backtrace(bt, TRACE_DEPTH);
	backtrace_symbols_fd(bt, nbt, fileno(trace));
	fprintf(trace, ".\n");
}

static void *
count_malloc(size_t n, const char *file, int line)
{
	unsigned char *p;

	(void)file;
	(void)line;
	if ((p = malloc(n + HDR)) == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	live_bytes += n;
	if (live_bytes > peak_live)
		peak_live = live_bytes;
	trace_alloc(p + HDR, n, file, line);
	return p + HDR;
}

static void
count_free(void *q, const char *file, int line)
{
	unsigned char *p = q;
	size_t n;

	(void)file;
	(void)line;
	if (p == NULL)
		return;
	memcpy(&n, p - HDR, sizeof(n));
	live_bytes -= n;
	if (trace != NULL)
		fprintf(trace, "- %p\n", (void *)p);
	free(p - HDR);
}

static void *
count_realloc(void *q, size_t n, const char *file, int line)
{
	unsigned char *p = q, *r;
	size_t old;

	if (p == NULL)
		return count_malloc(n, file, line);
	if (n == 0) {
		count_free(q, file, line);
		return NULL;
	}
	memcpy(&old, p - HDR, sizeof(old));
	if ((r = realloc(p - HDR, n + HDR)) == NULL)
		return NULL;
	memcpy(r, &n, sizeof(n));
	live_bytes = live_bytes - old + n;
	if (live_bytes > peak_live)
		peak_live = live_bytes;
	if (trace != NULL)
		fprintf(trace, "- %p\n", (void *)p);
	trace_alloc(r + HDR, n, file, line);
	return r + HDR;
}

static void
trace_mark(const char *what)
{
	if (trace != NULL)
		fprintf(trace, "@ %s %zu\n", what, live_bytes);
}

/* ---- options ---- */

struct opts {
	const char *host, *port, *sni, *ca, *cert, *key;
	const char *resume_port;        /* --resume-port: second connection */
	uint16_t suite, group;
	int max_fragment, rsl, resume, compat;
	uint8_t alpn[256];
	size_t alpn_len;
};

static tls13_ticket saved_ticket;
static int have_ticket;

static void
on_ticket(void *arg, const tls13_ticket *t)
{
	(void)arg;
	saved_ticket = *t;
	have_ticket = 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: tlsgate-probe [--sni NAME] [--ca FILE] "
	    "[--cert FILE --key FILE] [--suite NAME] [--group NAME]\n"
	    "       [--max-fragment N] [--record-size-limit N] "
	    "[--alpn PROTO] [--resume] [--resume-port PORT] [--compat]\n"
	    "       [--trace-alloc FILE] HOST[:PORT]\n");
	exit(2);
}

static void
die(const char *what)
{
	fprintf(stderr, "tlsgate-probe: %s\n", what);
	exit(1);
}

static uint16_t
suite_code(const char *s)
{
	if (strcasecmp(s, "TLS_AES_128_GCM_SHA256") == 0)
		return TLS13_AES_128_GCM_SHA256;
	if (strcasecmp(s, "TLS_AES_256_GCM_SHA384") == 0)
		return TLS13_AES_256_GCM_SHA384;
	if (strcasecmp(s, "TLS_CHACHA20_POLY1305_SHA256") == 0)
		return TLS13_CHACHA20_POLY1305_SHA256;
	die("unknown suite (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "
	    "TLS_CHACHA20_POLY1305_SHA256)");
	return 0;
}

static uint16_t
group_code(const char *s)
{
	if (strcasecmp(s, "x25519") == 0)
		return TLS13_GROUP_X25519;
	if (strcasecmp(s, "secp256r1") == 0 || strcasecmp(s, "P-256") == 0 ||
	    strcasecmp(s, "prime256v1") == 0)
		return TLS13_GROUP_SECP256R1;
	die("unknown group (x25519, secp256r1)");
	return 0;
}

static int
tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints, *res, *ai;
	int fd = -1, e;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "tlsgate-probe: %s: %s\n", host,
		    gai_strerror(e));
		exit(1);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype, 0)) < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "tlsgate-probe: connect %s:%s: %s\n", host, port,
		    strerror(errno));
		exit(1);
	}
	return fd;
}

struct run {
	tls13_conn c;
	uint8_t *rx, *tx;
	size_t rxcap, txcap;
	int fd;
	size_t base, peak, peak_data;
	int data;                       /* the handshake loop has ended */
};

/* Everything the connection holds now: context, both buffers, live
 * libcrypto bytes (docs/tls13.md, "Memory: what is counted"). */
static size_t
conn_bytes(const struct run *r)
{
	return sizeof(r->c) + r->rxcap + r->txcap +
	    (live_bytes > r->base ? live_bytes - r->base : 0);
}

/* Sample the libcrypto peak since the last sample: into the handshake
 * peak until the handshake is done, then into the data-phase peak. */
static void
track_peak(struct run *r)
{
	size_t now = sizeof(r->c) + r->rxcap + r->txcap +
	    (peak_live > r->base ? peak_live - r->base : 0);
	size_t *p = r->data ? &r->peak_data : &r->peak;

	if (now > *p)
		*p = now;
	peak_live = live_bytes;
}

static void
flush_out(struct run *r)
{
	const uint8_t *p;
	size_t n;
	ssize_t w;

	for (;;) {
		p = tls13_out(&r->c, &n);
		if (n == 0)
			return;
		if ((w = send(r->fd, p, n, MSG_NOSIGNAL)) <= 0)
			die("send failed");
		tls13_out_consume(&r->c, (size_t)w);
	}
}

static void
fail_conn(struct run *r, int err)
{
	const char *v = tls13_verify_error(&r->c);

	flush_out(r);
	if (v != NULL)
		fprintf(stderr, "tlsgate-probe: %s: %s\n", tls13_strerror(err), v);
	else
		fprintf(stderr, "tlsgate-probe: %s\n", tls13_strerror(err));
	exit(1);
}

/* Grow the receive buffer after TLS13_ERR_BUFFER (server ignored our
 * record limit, or a handshake message larger than the reserve). */
static void
grow_rx(struct run *r)
{
	size_t ncap = r->rxcap * 2;
	uint8_t *n;

	if (ncap > TLS13_MAX_RECORD + (1 << 17))
		fail_conn(r, TLS13_ERR_BUFFER);
	if ((n = malloc(ncap)) == NULL ||
	    tls13_conn_set_rxbuf(&r->c, n, ncap) != 0)
		die("out of memory");
	free(r->rx);
	r->rx = n;
	r->rxcap = ncap;
}

/* Feed @a len bytes, reading out application data into @a app. */
static void
feed_all(struct run *r, const uint8_t *p, size_t len, char *app,
    size_t appcap, size_t *applen)
{
	size_t n, got;
	int err, again = 1;


	while (len > 0 || again) {
		again = 0;
		n = len;
		err = tls13_feed(&r->c, p, &n);
		p += n;
		len -= n;
		track_peak(r);
		if (err == TLS13_ERR_BUFFER) {
			grow_rx(r);
			again = 1;
			continue;
		}
		if (err != 0)
			fail_conn(r, err);
		while (tls13_read_app(&r->c, (uint8_t *)app + *applen,
		    appcap - *applen, &got) == 0 && got > 0)
			*applen += got;
		flush_out(r);
		if (n == 0 && *applen >= appcap)
			break;
	}
}

static int
connect_once(struct opts *o, const tls13_config *cfg, int use_ticket,
    int report)
{
	static char app[16384];
	struct run r;
	uint8_t buf[4096];
	size_t applen = 0, n, written;
	ssize_t got;
	char req[512], *eol;
	int err, closed = 0;
	size_t limit = TLS13_MAX_PLAINTEXT;

	memset(&r, 0, sizeof(r));
	if (o->max_fragment)
		limit = (size_t)o->max_fragment;
	if (o->rsl && (size_t)o->rsl < limit)
		limit = (size_t)o->rsl;
	/* Sized for the record limit we ask for; grown on TLS13_ERR_BUFFER
	 * (server ignored the limit, or a message spans records). */
	r.rxcap = TLS13_RECORD_SIZE(limit) +
	    (limit < 4096 && !(use_ticket && have_ticket) ? 2048 : 0);
	/* The send buffer holds the ClientHello, then one record at the
	 * limit (tls13_tx_needed()); 1 KB for full-size records, which are
	 * then cut to fit. */
	r.txcap = limit < 1024 ? limit + 22 : 1024;
	if (r.txcap < 512)
		r.txcap = 512;          /* tls13_conn_init's minimum */
	if (use_ticket && have_ticket && r.txcap < 256 + saved_ticket.len +
	    strlen(cfg->server_name) + o->alpn_len)
		r.txcap = 256 + saved_ticket.len + strlen(cfg->server_name) +
		    o->alpn_len;
	if (o->cert)
		r.txcap = 8192;
	r.rx = malloc(r.rxcap);
	r.tx = malloc(r.txcap);
	if (r.rx == NULL || r.tx == NULL)
		die("out of memory");
	r.fd = tcp_connect(o->host, use_ticket && o->resume_port ?
	    o->resume_port : o->port);
	r.base = live_bytes;
	peak_live = live_bytes;
	trace_mark(report ? "conn" : "conn-ticket");
	if ((err = tls13_conn_init(&r.c, cfg, r.rx, r.rxcap, r.tx,
	    r.txcap)) != 0)
		fail_conn(&r, err);
	if (use_ticket && have_ticket)
		tls13_conn_set_ticket(&r.c, &saved_ticket);
	err = tls13_handshake(&r.c, NULL, NULL);
	for (;;) {
		track_peak(&r);
		flush_out(&r);
		if (err == 0)
			break;
		if (err != TLS13_WANT_READ)
			fail_conn(&r, err);
		if ((got = recv(r.fd, buf, sizeof(buf), 0)) <= 0)
			die("connection closed by server during handshake");
		feed_all(&r, buf, (size_t)got, app, sizeof(app) - 1, &applen);
		err = tls13_handshake(&r.c, NULL, NULL);
	}
	track_peak(&r);
	trace_mark("connected");
	if (r.txcap > tls13_tx_needed(&r.c) && !o->cert) {
		/* One record at the negotiated limit is all it needs now. */
		uint8_t *ntx = malloc(tls13_tx_needed(&r.c));

		if (ntx == NULL || tls13_conn_set_txbuf(&r.c, ntx,
		    tls13_tx_needed(&r.c)) != 0)
			die("cannot move the send buffer");
		free(r.tx);
		r.tx = ntx;
		r.txcap = tls13_tx_needed(&r.c);
	}
	if (r.rxcap > tls13_rx_needed(&r.c)) {
		/* The Certificate reserve is no longer needed. */
		uint8_t *nrx = malloc(tls13_rx_needed(&r.c));

		if (nrx != NULL && tls13_conn_set_rxbuf(&r.c, nrx,
		    tls13_rx_needed(&r.c)) == 0) {
			free(r.rx);
			r.rx = nrx;
			r.rxcap = tls13_rx_needed(&r.c);
		} else
			free(nrx);
	}
	/* State held after the handshake: context + live libcrypto bytes. */
	size_t state = sizeof(r.c) + (live_bytes > r.base ?
	    live_bytes - r.base : 0);
	size_t conn_idle = conn_bytes(&r);
	peak_live = live_bytes;
	r.peak_data = conn_idle;
	r.data = 1;

	n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n"
	    "Connection: close\r\nUser-Agent: tlsgate-probe\r\n\r\n",
	    o->sni ? o->sni : o->host);
	for (written = 0; written < n; ) {
		size_t w;

		if ((err = tls13_write_app(&r.c, (const uint8_t *)req +
		    written, n - written, &w)) != 0 && err != TLS13_WANT_WRITE)
			fail_conn(&r, err);
		track_peak(&r);
		written += w;
		flush_out(&r);
	}
	while ((eol = memchr(app, '\n', applen)) == NULL && !closed) {
		if ((got = recv(r.fd, buf, sizeof(buf), 0)) <= 0)
			break;
		feed_all(&r, buf, (size_t)got, app, sizeof(app) - 1, &applen);
		if (tls13_read_app(&r.c, (uint8_t *)app, 0, &n) ==
		    TLS13_ERR_CLOSED)
			closed = 1;
	}
	if (eol == NULL)
		die("no HTTP status line in the response");
	/* With data having flowed both ways both AEAD contexts exist. */
	size_t active = sizeof(r.c) + (live_bytes > r.base ?
	    live_bytes - r.base : 0);
	/* Keep reading briefly so NewSessionTickets sent after the
	 * response are seen (servers usually send them first). */
	(void)tls13_close(&r.c);
	flush_out(&r);
	if (report) {
		*eol = 0;
		if (eol > app && eol[-1] == '\r')
			eol[-1] = 0;
		printf("%s\n", app);
		printf("protocol=TLSv1.3\n");
		printf("cipher=%s\n", tls13_cipher_name(tls13_cipher(&r.c)));
		printf("group=%s\n", tls13_group_name(tls13_group(&r.c)));
		printf("hrr=%s\n", tls13_hrr(&r.c) ? "yes" : "no");
		printf("resumed=%s\n", tls13_resumed(&r.c) ? "yes" : "no");
		printf("record_limit=%zu\n", tls13_record_limit(&r.c));
		printf("send_limit=%zu\n", tls13_send_limit(&r.c));
		if (tls13_alpn(&r.c)[0])
			printf("alpn=%s\n", tls13_alpn(&r.c));
		printf("handshake_bytes_sent=%llu\n",
		    (unsigned long long)tls13_bytes_sent(&r.c));
		printf("handshake_bytes_received=%llu\n",
		    (unsigned long long)tls13_bytes_received(&r.c));
		printf("state_bytes=%zu\n", state);
		printf("state_bytes_active=%zu\n", active);
		printf("peak_bytes=%zu\n", r.peak);
		printf("rx_bytes=%zu\n", r.rxcap);
		printf("tx_bytes=%zu\n", r.txcap);
		printf("conn_bytes_idle=%zu\n", conn_idle);
		printf("conn_peak_data=%zu\n", r.peak_data);
	}
	trace_mark("closing");
	tls13_conn_free(&r.c);
	close(r.fd);
	free(r.rx);
	free(r.tx);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "sni", required_argument, NULL, 's' },
		{ "ca", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "suite", required_argument, NULL, 'u' },
		{ "group", required_argument, NULL, 'g' },
		{ "max-fragment", required_argument, NULL, 'm' },
		{ "record-size-limit", required_argument, NULL, 'r' },
		{ "alpn", required_argument, NULL, 'p' },
		{ "resume", no_argument, NULL, 'R' },
		{ "trace-alloc", required_argument, NULL, 'T' },
		{ "resume-port", required_argument, NULL, 'P' },
		{ "compat", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o;
	tls13_config cfg;
	X509_STORE *store;
	FILE *f;
	char *colon, *hostcopy;
	size_t l;
	int ch;

	CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
	memset(&o, 0, sizeof(o));
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': o.sni = optarg; break;
		case 'a': o.ca = optarg; break;
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'u': o.suite = suite_code(optarg); break;
		case 'g': o.group = group_code(optarg); break;
		case 'm': o.max_fragment = atoi(optarg); break;
		case 'r': o.rsl = atoi(optarg); break;
		case 'p':
			l = strlen(optarg);
			if (l == 0 || l > 31 || o.alpn_len + 1 + l > sizeof(o.alpn))
				die("bad --alpn");
			o.alpn[o.alpn_len++] = (uint8_t)l;
			memcpy(o.alpn + o.alpn_len, optarg, l);
			o.alpn_len += l;
			break;
		case 'R': o.resume = 1; break;
		case 'P': o.resume_port = optarg; o.resume = 1; break;
		case 'C': o.compat = 1; break;
		case 'T':
			if ((trace = fopen(optarg, "w")) == NULL)
				die("cannot open --trace-alloc file");
			break;
		default: usage();
		}
	}
	if (optind != argc - 1 || (o.cert == NULL) != (o.key == NULL))
		usage();
	hostcopy = strdup(argv[optind]);
	o.port = "443";
	if (hostcopy[0] == '[' && (colon = strchr(hostcopy, ']')) != NULL) {
		*colon = 0;
		o.host = hostcopy + 1;
		if (colon[1] == ':')
			o.port = colon + 2;
	} else if ((colon = strrchr(hostcopy, ':')) != NULL &&
	    strchr(hostcopy, ':') == colon) {
		*colon = 0;
		o.host = hostcopy;
		o.port = colon + 1;
	} else
		o.host = hostcopy;

	memset(&cfg, 0, sizeof(cfg));
	if (o.suite) {
		cfg.suites[0] = o.suite;
		cfg.nsuites = 1;
	}
	if (o.group) {
		cfg.groups[0] = o.group;
		cfg.ngroups = 1;
	}
	cfg.server_name = o.sni ? o.sni : o.host;
	cfg.max_fragment = (uint16_t)o.max_fragment;
	cfg.record_size_limit = (uint16_t)o.rsl;
	cfg.compat_mode = o.compat;
	if (o.alpn_len) {
		cfg.alpn = o.alpn;
		cfg.alpn_len = o.alpn_len;
	}
	if ((store = X509_STORE_new()) == NULL)
		die("out of memory");
	if (o.ca != NULL) {
		if (X509_STORE_load_file(store, o.ca) != 1)
			die("cannot load --ca file");
	} else if (X509_STORE_set_default_paths(store) != 1)
		die("cannot load the default trust store");
	cfg.store = store;
	/* Also verifies the CA itself once, to warm the X509 code paths. */
	if (tls13_global_init() != 0)
		die("libcrypto lacks a required algorithm");
	{
		STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
		X509_STORE_CTX *sctx = X509_STORE_CTX_new();
		X509 *x = NULL;
		int i;

		for (i = 0; objs != NULL && i < sk_X509_OBJECT_num(objs) &&
		    x == NULL; i++)
			x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
		if (x != NULL && sctx != NULL &&
		    X509_STORE_CTX_init(sctx, store, x, NULL) == 1) {
			(void)X509_STORE_CTX_set_default(sctx, "ssl_server");
			(void)X509_verify_cert(sctx);
			(void)X509_check_host(x, "localhost", 0, 0, NULL);
			/* Caches the CA key's Montgomery context, which
			 * belongs to the store, not to a connection. */
			(void)X509_verify(x, X509_get0_pubkey(x));
		}
		X509_STORE_CTX_free(sctx);
	}
	if (o.cert != NULL) {
		if ((f = fopen(o.cert, "r")) == NULL ||
		    (cfg.client_cert = PEM_read_X509(f, NULL, NULL, NULL)) ==
		    NULL)
			die("cannot read --cert");
		fclose(f);
		if ((f = fopen(o.key, "r")) == NULL ||
		    (cfg.client_key = PEM_read_PrivateKey(f, NULL, NULL,
		    NULL)) == NULL)
			die("cannot read --key");
		fclose(f);
	}
	if (o.resume) {
		cfg.on_ticket = on_ticket;
		connect_once(&o, &cfg, 0, 0);
		if (!have_ticket)
			die("the server sent no session ticket");
	}
	connect_once(&o, &cfg, o.resume, 1);
	X509_free(cfg.client_cert);
	EVP_PKEY_free(cfg.client_key);
	X509_STORE_free(store);
	free(hostcopy);
	return 0;
}
