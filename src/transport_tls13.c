/*
 * transport_tls13: the uplink over the built-in TLS 1.3 client (src/tls13),
 * for routes with `tls = builtin`.
 *
 * The engine does no I/O; this file is the adapter between it and
 * libevent.  The plaintext bufferevent handed to upstream.c is a
 * bufferevent_filter stacked on the socket bufferevent:
 *
 *   socket input  --tls13_feed--> engine --tls13_read_app--> filter input
 *   filter output --tls13_write_app--> engine --tls13_out--> socket output
 *
 * Handshake records never reach the filter's buffers: they go straight
 * between the engine and the socket bufferevent.
 *
 * Reading: the socket bufferevent only writes.  We read the socket
 * ourselves (tt_sock_read) into its input and run its read callback, the
 * filter's: libevent's own read asks the kernel how many bytes wait
 * (ioctl FIONREAD) before every read, a system call per response.
 *
 * Backpressure: we read at most TT_TCP_READ_HIGH bytes ahead, the engine
 * holds at most one record, and decrypted data is handed over only up to
 * the filter's read high watermark.  What the engine still
 * holds when the reader drains (or resumes after a pause) is handed over by
 * a "kick": the socket bufferevent's read callback, run again from the
 * event loop (a deferred callback, which costs no allocation), because
 * libevent only runs a filter when new bytes arrive from below.
 *
 * Memory: the engine never allocates its buffers; we malloc them per
 * connection.  Both are sized for the handshake and kept until it ends.
 * Then each is given back whenever it holds nothing (between responses,
 * in the pool) and allocated again when needed: the receive buffer at the
 * negotiated record size (tls13_rx_needed()) when bytes arrive, the send
 * buffer for one record of at most TT_TX_RECORD_MAX plaintext bytes when
 * there is something to seal (or a record to answer), and it is emptied
 * into the socket's evbuffer after every call.  A pooled connection then
 * holds only its state, the engine's (with the traffic secrets) and the two
 * bufferevents; docs/performance.md has the byte count.  Its idle-key timer
 * is the timeout of our read event.
 */
#include <sys/socket.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config.h"
#include "log.h"
#include "sockread.h"
#include "tls13/tls13.h"
#include "transport.h"

/* We stop reading the socket this far ahead of the engine (one full
 * record and a bit): TCP backpressure reaches the server. */
#define TT_TCP_READ_HIGH (TLS13_MAX_RECORD + 1024)
/* Sealed records queued on the socket beyond this stop the sealing: the
 * session's output then fills and proxy.c stops reading the device.  The
 * filter seals again once the socket drains to the low mark. */
#define TT_TCP_WRITE_HIGH (32 * 1024)
#define TT_TCP_WRITE_LOW (8 * 1024)
/* Largest plaintext per record we send.  The send buffer holds one such
 * record for the life of the connection (pooled ones included), so it is
 * kept small; the price is 22 bytes of record overhead per KB of a large
 * upload, nothing for a telemetry POST that fits one record.  Also room
 * for a ClientHello with a ticket. */
#define TT_TX_RECORD_MAX 1024
/* Send buffer with a client certificate: the Certificate message and its
 * CertificateVerify go out as one flight. */
#define TT_TX_CLIENT_CERT 16384
/* The receive buffer grows (on TLS13_ERR_BUFFER: a server that ignored
 * our record limit, or a handshake message longer than the reserve) up to
 * this; beyond it the handshake fails. */
#define TT_RX_MAX (TLS13_MAX_RECORD + 4 * TLS13_HS_RESERVE)
/* A pooled connection keeps its keyed AEAD contexts (about 2 KB of
 * libcrypto memory) this long after it was parked, so that a busy pool
 * does not rebuild them for every request; then they are dropped.  This
 * holds for small records too (tls13_config.keep_aead). */
#define TT_IDLE_KEYS_MS 1000
/* Tickets kept per route (one upstream server): each is used once
 * (RFC 9846 §C.4), and servers send one or two per connection. */
#define TT_TICKETS 4
/* A cached ticket keeps the fields of tls13_ticket before its ticket[]
 * array and only the bytes of ticket[] in use (nginx sends about 230 of
 * the TLS13_TICKET_MAX): the whole struct is rebuilt only for the one
 * handshake that offers it. */
#define TT_TICKET_HEAD offsetof(tls13_ticket, ticket)
/* A ClientHello without its PSK identity is at most this long plus the
 * server name and the ALPN list; the identity adds the ticket and this
 * much framing and binder (RFC 9846 §4.2.11). */
#define TT_CH_BASE 256
#define TT_CH_PSK_OVERHEAD 64
/* Longest ALPN list, wire format (RFC 7301 §3.1). */
#define TT_ALPN_MAX 255

struct tt_ctx {
	const struct route *route;
	tls13_config cfg;
	X509_STORE *store;
	X509 *client_cert;
	STACK_OF(X509) *client_chain;
	EVP_PKEY *client_key;
	uint8_t alpn[TT_ALPN_MAX];
	/* Newest first; used once each; TT_TICKET_HEAD + len bytes each. */
	uint8_t *tickets[TT_TICKETS];
	size_t ticketlen[TT_TICKETS];
	size_t ntickets;
};

struct tt_conn {
	struct tt_ctx *ctx;
	struct bufferevent *bev;        /* the filter: plaintext */
	struct bufferevent *tcp;        /* the socket, owned by bev */
	struct event *rd;               /* reads the socket: tt_sock_read */
	/* The filter's callbacks on the socket bufferevent, which ours
	 * wrap (so that an EOF waits for the data before it). */
	bufferevent_data_cb tcp_read, tcp_write;
	bufferevent_event_cb tcp_event;
	void *tcp_arg;
	tls13_conn c;
	tls13_ticket *ticket;           /* offered; freed after the handshake */
	uint8_t *rx, *tx;
	size_t rxcap, txcap;
	size_t txsize;                  /* tx allocated again at this size */
	/* Wire bytes: received ones taken from the socket's input (those
	 * still in it are added when asked), sent ones queued on its output
	 * or sent directly. */
	uint64_t wire_rx, wire_tx;
	int err;                        /* tls13 error that ended it, or 0 */
	short eof_what;                 /* an EOF held back, or 0 */
	unsigned connected:1;           /* handshake complete */
	unsigned failed:1;              /* an error event was raised */
	unsigned ended:1;               /* EOF or error reported: no more */
	unsigned pending:1;             /* the engine holds plaintext */
	unsigned parked:1;              /* in the pool, unused since */
	unsigned rd_full:1;             /* read TT_TCP_READ_HIGH ahead */
	unsigned rd_eof:1;              /* the socket said EOF or failed */
};

/* Stands in for every connection's receive buffer while it is given back:
 * with a capacity of 0 the engine never touches it, and it saves each
 * connection a byte with its padding (8 bytes of struct tt_conn, 16 of its
 * heap chunk). */
static uint8_t tt_rx_none[1];

static void *tt_ctx_new(const struct route *, char *, size_t);
static void tt_ctx_free(void *);
static struct bufferevent *tt_start(void *, struct bufferevent *, char *,
    size_t);
static int tt_resumed(struct bufferevent *);
static void tt_error(struct bufferevent *, char *, size_t);
static void tt_wire_bytes(struct bufferevent *, uint64_t *, uint64_t *);
static void tt_park(struct bufferevent *);
static void tt_resume(struct bufferevent *);
static void tt_tcp_read(struct bufferevent *, void *);
static void tt_tcp_event(struct bufferevent *, short, void *);

const struct transport_ops transport_tls13 = {
	.name = "builtin",
	.ctx_new = tt_ctx_new,
	.ctx_free = tt_ctx_free,
	.start = tt_start,
	.resumed = tt_resumed,
	.error = tt_error,
	.wire_bytes = tt_wire_bytes,
	.park = tt_park,
	.resume = tt_resume,
};

/* ---- per-route context ---------------------------------------------- */

/* RFC 9846 §4.6.1: called for each NewSessionTicket; the newest first. */
static void
tt_on_ticket(void *arg, const tls13_ticket *tk)
{
	struct tt_ctx *x = arg;
	uint8_t *copy;
	size_t len;

	if (tk->len > TLS13_TICKET_MAX)
		return;
	len = TT_TICKET_HEAD + tk->len;
	if ((copy = malloc(len)) == NULL)
		return;
	memcpy(copy, tk, len);
	if (x->ntickets == TT_TICKETS) {
		OPENSSL_cleanse(x->tickets[TT_TICKETS - 1],
		    x->ticketlen[TT_TICKETS - 1]);
		free(x->tickets[TT_TICKETS - 1]);
		x->ntickets--;
	}
	memmove(&x->tickets[1], &x->tickets[0],
	    x->ntickets * sizeof(x->tickets[0]));
	memmove(&x->ticketlen[1], &x->ticketlen[0],
	    x->ntickets * sizeof(x->ticketlen[0]));
	x->tickets[0] = copy;
	x->ticketlen[0] = len;
	x->ntickets++;
}

/* Takes the newest ticket out of the cache, as a whole tls13_ticket for
 * the engine: a ticket is offered once. */
static tls13_ticket *
tt_take_ticket(struct tt_ctx *x)
{
	tls13_ticket *tk;
	uint8_t *blob;
	size_t len;

	if (x->ntickets == 0)
		return NULL;
	blob = x->tickets[0];
	len = x->ticketlen[0];
	x->ntickets--;
	memmove(&x->tickets[0], &x->tickets[1],
	    x->ntickets * sizeof(x->tickets[0]));
	memmove(&x->ticketlen[0], &x->ticketlen[1],
	    x->ntickets * sizeof(x->ticketlen[0]));
	if ((tk = calloc(1, sizeof(*tk))) != NULL)
		memcpy(tk, blob, len);
	OPENSSL_cleanse(blob, len);
	free(blob);
	return tk;
}

static void
tt_free_ticket(tls13_ticket *tk)
{
	if (tk == NULL)
		return;
	OPENSSL_cleanse(tk, sizeof(*tk));
	free(tk);
}

/* `alpn` is a list of names separated by commas or blanks (checked by
 * config.c); RFC 7301 §3.1 wants each prefixed by its length. */
static size_t
tt_alpn_wire(const char *alpn, uint8_t *out, size_t cap)
{
	size_t len = 0, n;

	while (*alpn != '\0') {
		alpn += strspn(alpn, ", \t");
		n = strcspn(alpn, ", \t");
		if (n == 0)
			break;
		if (n > 255 || len + 1 + n > cap)
			return 0;
		out[len++] = (uint8_t)n;
		memcpy(out + len, alpn, n);
		len += n;
		alpn += n;
	}
	return len;
}

/* The client certificate chain (leaf first) and key, from PEM files. */
static int
tt_load_client_cert(struct tt_ctx *x, const struct route *r)
{
	FILE *f = NULL;
	X509 *c;
	int rc = -1;

	if ((f = fopen(r->client_cert, "r")) == NULL)
		goto out;
	if ((x->client_cert = PEM_read_X509(f, NULL, NULL, NULL)) == NULL)
		goto out;
	if ((x->client_chain = sk_X509_new_null()) == NULL)
		goto out;
	while ((c = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
		if (sk_X509_push(x->client_chain, c) == 0) {
			X509_free(c);
			goto out;
		}
	}
	fclose(f);
	if ((f = fopen(r->client_key, "r")) == NULL)
		goto out;
	if ((x->client_key = PEM_read_PrivateKey(f, NULL, NULL,
	    NULL)) == NULL)
		goto out;
	if (X509_check_private_key(x->client_cert, x->client_key) != 1)
		goto out;
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	ERR_clear_error();
	return rc;
}

static void *
tt_ctx_new(const struct route *r, char *err, size_t errlen)
{
	struct tt_ctx *x;
	tls13_config *cfg;
	size_t i;

	if ((x = calloc(1, sizeof(*x))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	x->route = r;
	cfg = &x->cfg;
	if (tls13_global_init() != 0) {
		snprintf(err, errlen, "route %s: tls = builtin: a TLS 1.3 "
		    "primitive is missing from libcrypto", r->name);
		goto fail;
	}
	for (i = 0; i < r->nciphers && i < TLS13_MAX_LIST; i++)
		cfg->suites[cfg->nsuites++] = r->ciphers[i];
	for (i = 0; i < r->ngroups && i < TLS13_MAX_LIST; i++)
		cfg->groups[cfg->ngroups++] = r->groups[i];
	/* A minimal ClientHello: one key share, for the first group; a
	 * server that prefers another answers with HelloRetryRequest. */
	cfg->nkeyshares = 1;
	cfg->server_name = r->sni;
	cfg->max_fragment = (uint16_t)r->max_fragment;
	cfg->record_size_limit = (uint16_t)r->record_size_limit;
	cfg->record_fallback = r->record_fallback;
	/* Pooled connections drop their AEAD contexts after TT_IDLE_KEYS_MS
	 * idle, so rebuilding them for every small record would cost CPU
	 * (measured 3-12 us per request with 512-byte records) and save
	 * nothing on a parked connection. */
	cfg->keep_aead = 1;
	if (r->alpn != NULL) {
		cfg->alpn_len = tt_alpn_wire(r->alpn, x->alpn,
		    sizeof(x->alpn));
		if (cfg->alpn_len == 0) {
			snprintf(err, errlen, "route %s: alpn: list too long",
			    r->name);
			goto fail;
		}
		cfg->alpn = x->alpn;
	}
	if (r->verify) {
		if ((x->store = X509_STORE_new()) == NULL ||
		    X509_STORE_load_file(x->store, r->ca_file) != 1) {
			snprintf(err, errlen, "route %s: cannot load ca_file "
			    "%s", r->name, r->ca_file);
			goto fail;
		}
		cfg->store = x->store;
	} else
		cfg->insecure_no_verify = 1;
	if (r->client_cert != NULL) {
		if (tt_load_client_cert(x, r) == -1) {
			snprintf(err, errlen, "route %s: cannot use "
			    "client_cert %s / client_key %s", r->name,
			    r->client_cert, r->client_key);
			goto fail;
		}
		cfg->client_cert = x->client_cert;
		cfg->client_chain = x->client_chain;
		cfg->client_key = x->client_key;
	}
	if (r->resumption) {
		cfg->on_ticket = tt_on_ticket;
		cfg->ticket_arg = x;
	}
	ERR_clear_error();
	return x;
fail:
	ERR_clear_error();
	tt_ctx_free(x);
	return NULL;
}

static void
tt_ctx_free(void *ctx)
{
	struct tt_ctx *x = ctx;
	size_t i;

	if (x == NULL)
		return;
	for (i = 0; i < x->ntickets; i++) {
		OPENSSL_cleanse(x->tickets[i], x->ticketlen[i]);
		free(x->tickets[i]);
	}
	X509_STORE_free(x->store);
	X509_free(x->client_cert);
	sk_X509_pop_free(x->client_chain, X509_free);
	EVP_PKEY_free(x->client_key);
	free(x);
}

/* ---- connection ------------------------------------------------------ */

/* Our callbacks on the socket bufferevent carry the connection; that is
 * how the transport_ops calls find it from the filter. */
static struct tt_conn *
tt_conn_of(struct bufferevent *bev)
{
	struct bufferevent *tcp = bufferevent_get_underlying(bev);
	void *arg = NULL;

	if (tcp == NULL)
		return NULL;
	bufferevent_getcb(tcp, NULL, NULL, NULL, &arg);
	return arg;
}

/*
 * Moves the records the engine wrote to the socket: at once when nothing
 * is queued ahead of them (a socket bufferevent would watch for
 * writability, wait, write and stop watching: two epoll_ctl calls and a
 * wake-up per request), the rest to the socket's output.  A write error
 * leaves the bytes queued: libevent's own write then reports it.
 */
static int
tt_flush(struct tt_conn *t)
{
	struct evbuffer *out = bufferevent_get_output(t->tcp);
	const uint8_t *p;
	size_t n, done = 0;
	ssize_t w;

	p = tls13_out(&t->c, &n);
	if (n == 0)
		return 0;
	if (evbuffer_get_length(out) == 0) {
		do
			w = send(bufferevent_getfd(t->tcp), p, n,
			    MSG_NOSIGNAL);
		while (w == -1 && errno == EINTR);
		if (w > 0)
			done = (size_t)w;
	}
	if (done < n && evbuffer_add(out, p + done, n - done) == -1)
		return -1;
	/* Counted when queued: the handshake's last flight is then in the
	 * count when BEV_EVENT_CONNECTED is reported. */
	t->wire_tx += n;
	tls13_out_consume(&t->c, n);
	return 0;
}

/* Raises the error event once; the reason stays in t->err. */
static void
tt_fail(struct tt_conn *t, int err)
{
	if (t->err == 0)
		t->err = err;
	/* The alert the engine queued goes out before the close. */
	(void)tt_flush(t);
	if (t->ended)
		return;
	t->failed = t->ended = 1;
	bufferevent_trigger_event(t->bev, BEV_EVENT_ERROR | BEV_EVENT_READING,
	    BEV_TRIG_DEFER_CALLBACKS);
}

/* Gives the receive buffer back while it holds nothing. */
static void
tt_rx_release(struct tt_conn *t)
{
	if (t->rx == NULL || !t->connected)
		return;
	if (tls13_conn_set_rxbuf(&t->c, tt_rx_none, 0) != 0)
		return;
	free(t->rx);
	t->rx = NULL;
	t->rxcap = 0;
}

/* (Re)allocates the receive buffer with room for `cap` bytes. */
static int
tt_rx_grow(struct tt_conn *t, size_t cap)
{
	uint8_t *n;

	if (cap > TT_RX_MAX || (n = malloc(cap)) == NULL)
		return -1;
	if (tls13_conn_set_rxbuf(&t->c, n, cap) != 0) {
		free(n);
		return -1;
	}
	free(t->rx);
	t->rx = n;
	t->rxcap = cap;
	return 0;
}

/* Gives the send buffer back while it holds nothing (tt_flush empties it
 * after every call, unless the socket's evbuffer could not take it). */
static void
tt_tx_release(struct tt_conn *t)
{
	size_t n;

	if (t->tx == NULL || !t->connected)
		return;
	(void)tls13_out(&t->c, &n);
	if (n != 0 || tls13_conn_set_txbuf(&t->c, NULL, 0) != 0)
		return;
	free(t->tx);
	t->tx = NULL;
	t->txcap = 0;
}

/* A send buffer again, before the engine may write: application data, a
 * KeyUpdate or an alert answering a record, a close_notify. */
static int
tt_tx_get(struct tt_conn *t)
{
	uint8_t *n;

	if (t->tx != NULL)
		return 0;
	if ((n = malloc(t->txsize)) == NULL)
		return -1;
	if (tls13_conn_set_txbuf(&t->c, n, t->txsize) != 0) {
		free(n);
		return -1;
	}
	t->tx = n;
	t->txcap = t->txsize;
	return 0;
}

/* Reads the socket again (after a pause for TT_TCP_READ_HIGH), with the
 * idle-key timer while parked.  event_add() on an added event only sets
 * its timer. */
static void
tt_rd_arm(struct tt_conn *t)
{
	struct timeval tv = { TT_IDLE_KEYS_MS / 1000,
	    (TT_IDLE_KEYS_MS % 1000) * 1000 };

	if (!t->rd_full && !t->rd_eof)
		(void)event_add(t->rd, t->parked ? &tv : NULL);
}

/* Out of the pool (a record in either direction): no idle-key timer. */
static void
tt_unpark(struct tt_conn *t)
{
	if (!t->parked)
		return;
	t->parked = 0;
	(void)event_remove_timer(t->rd);
}

/*
 * The socket is readable (or the idle-key timer ran out): what it holds
 * goes to the socket bufferevent's input, then through its read callback
 * into the filter, as if the bufferevent had read it; an EOF or an error
 * goes to its event callback.
 */
static void
tt_sock_read(evutil_socket_t fd, short what, void *arg)
{
	struct tt_conn *t = arg;
	bufferevent_data_cb rcb;
	ssize_t n;

	/* libevent frees the filter, and with it us, from the event loop
	 * after upstream.c let it go; its callbacks are gone already. */
	bufferevent_getcb(t->tcp, &rcb, NULL, NULL, NULL);
	if (rcb != tt_tcp_read) {
		(void)event_del(t->rd);
		return;
	}
	if (what & EV_TIMEOUT) {
		/* Parked and unused for TT_IDLE_KEYS_MS. */
		tt_unpark(t);
		tls13_conn_idle(&t->c);
		if (!(what & EV_READ))
			return;
	}
	if ((n = sockread(fd, bufferevent_get_input(t->tcp),
	    TT_TCP_READ_HIGH)) > 0) {
		tt_tcp_read(t->tcp, t);
		return;
	}
	if (n == -1 && errno == ENOBUFS) {
		/* tt_filter_in() reads again once the engine took some. */
		t->rd_full = 1;
		(void)event_del(t->rd);
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	t->rd_eof = 1;
	/* tt_error() reports errno. */
	if (n == 0)
		errno = 0;
	(void)event_del(t->rd);
	tt_tcp_event(t->tcp, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF :
	    BEV_EVENT_ERROR), t);
}

/* The handshake completed: verification passed inside the engine. */
static void
tt_connected(struct tt_conn *t)
{
	t->connected = 1;
	tt_free_ticket(t->ticket);
	t->ticket = NULL;
	/* From here on the send buffer holds one of our records at most:
	 * no larger than the negotiated limit needs (a client certificate
	 * made it larger for the handshake). */
	if (tls13_tx_needed(&t->c) < t->txsize)
		t->txsize = tls13_tx_needed(&t->c);
	log_debug("upstream %s:%u: TLS 1.3 %s %s%s, record limit %zu",
	    t->ctx->route->upstream_host, t->ctx->route->upstream_port,
	    tls13_cipher_name(tls13_cipher(&t->c)),
	    tls13_group_name(tls13_group(&t->c)),
	    tls13_resumed(&t->c) ? " resumed" : "",
	    tls13_record_limit(&t->c));
	bufferevent_trigger_event(t->bev, BEV_EVENT_CONNECTED,
	    BEV_TRIG_DEFER_CALLBACKS);
}

/*
 * Hands decrypted bytes to dst, at most `room` (-1: no limit).  Returns
 * the count, or -1 after an error was raised.  Sets t->pending when the
 * engine still holds some because of the limit.
 */
static ev_ssize_t
tt_read_app(struct tt_conn *t, struct evbuffer *dst, ev_ssize_t room)
{
	struct evbuffer_iovec v;
	ev_ssize_t added = 0;
	size_t want, n;
	int rc;

	t->pending = 0;
	for (;;) {
		want = TLS13_MAX_PLAINTEXT;
		if (room >= 0 && (size_t)(room - added) < want)
			want = (size_t)(room - added);
		if (want == 0) {
			t->pending = 1;
			return added;
		}
		if (evbuffer_reserve_space(dst, (ev_ssize_t)want, &v, 1) < 1)
			return added;
		if (v.iov_len > want)
			v.iov_len = want;
		rc = tls13_read_app(&t->c, v.iov_base, v.iov_len, &n);
		if (rc != 0 || n == 0) {
			v.iov_len = 0;
			evbuffer_commit_space(dst, &v, 1);
			break;
		}
		v.iov_len = n;
		evbuffer_commit_space(dst, &v, 1);
		added += (ev_ssize_t)n;
	}
	if (rc == TLS13_ERR_CLOSED) {
		/* RFC 9846 §6.1: close_notify, after the last data. */
		if (!t->ended) {
			t->ended = 1;
			bufferevent_trigger_event(t->bev, BEV_EVENT_EOF |
			    BEV_EVENT_READING, BEV_TRIG_DEFER_CALLBACKS);
		}
	} else if (rc != TLS13_WANT_READ && rc != 0) {
		tt_fail(t, rc);
		return -1;
	}
	return added;
}

/*
 * The filter's input side: records from the socket (src) through the
 * engine; application data to dst, within `limit` bytes.
 */
static enum bufferevent_filter_result
tt_filter_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	struct tt_conn *t = arg;
	struct evbuffer_iovec v;
	ev_ssize_t added = 0, got;
	size_t n;
	int rc;

	(void)mode;
	if (t->failed) {
		t->wire_rx += evbuffer_get_length(src);
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_ERROR;
	}
	tt_unpark(t);
	for (;;) {
		if (t->connected) {
			got = tt_read_app(t, dst, limit < 0 ? -1 :
			    limit - added);
			if (got < 0)
				return BEV_ERROR;
			added += got;
			if (t->pending)
				break;
		}
		if (evbuffer_get_length(src) == 0 || t->ended)
			break;
		if (t->rx == NULL && tt_rx_grow(t,
		    tls13_rx_needed(&t->c)) == -1) {
			tt_fail(t, TLS13_ERR_BUFFER);
			return BEV_ERROR;
		}
		/* A record may need an answer (a KeyUpdate, an alert). */
		if (tt_tx_get(t) == -1) {
			tt_fail(t, TLS13_ALERT_INTERNAL_ERROR);
			return BEV_ERROR;
		}
		if (evbuffer_peek(src, -1, NULL, &v, 1) < 1)
			break;
		n = v.iov_len;
		rc = tls13_feed(&t->c, v.iov_base, &n);
		evbuffer_drain(src, n);
		t->wire_rx += n;
		if (tt_flush(t) == -1) {
			tt_fail(t, TLS13_ALERT_INTERNAL_ERROR);
			return BEV_ERROR;
		}
		if (rc == TLS13_ERR_BUFFER) {
			/* A record or handshake message larger than the
			 * buffer: grow it, within TT_RX_MAX. */
			if (t->rxcap >= TT_RX_MAX || tt_rx_grow(t,
			    t->rxcap * 2 < TT_RX_MAX ? t->rxcap * 2 :
			    TT_RX_MAX) == -1) {
				tt_fail(t, rc);
				return BEV_ERROR;
			}
			continue;
		}
		if (rc != 0) {
			tt_fail(t, rc);
			return BEV_ERROR;
		}
		if (!t->connected) {
			rc = tls13_handshake(&t->c, NULL, NULL);
			(void)tt_flush(t);
			if (rc == 0)
				tt_connected(t);
			else if (rc != TLS13_WANT_READ) {
				tt_fail(t, rc);
				return BEV_ERROR;
			}
		}
		if (n == 0) {
			/* Nothing taken: the engine waits for its reader. */
			break;
		}
	}
	tt_rx_release(t);
	tt_tx_release(t);
	if (t->rd_full && evbuffer_get_length(src) < TT_TCP_READ_HIGH) {
		t->rd_full = 0;
		tt_rd_arm(t);
	}
	return added > 0 ? BEV_OK : BEV_NEED_MORE;
}

/*
 * The filter's output side: plaintext from the session (src) sealed into
 * records on the socket (dst).  Nothing moves before the handshake is
 * complete (upstream.c writes only after BEV_EVENT_CONNECTED anyway).
 */
static enum bufferevent_filter_result
tt_filter_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
    enum bufferevent_flush_mode mode, void *arg)
{
	struct tt_conn *t = arg;
	struct evbuffer_iovec v;
	size_t start = evbuffer_get_length(dst), n;
	int rc, moved = 0;

	(void)mode;
	if (t->failed || t->ended || !t->connected)
		return BEV_NEED_MORE;
	tt_unpark(t);
	if (evbuffer_get_length(src) == 0)
		return BEV_NEED_MORE;
	if (tt_tx_get(t) == -1) {
		tt_fail(t, TLS13_ALERT_INTERNAL_ERROR);
		return BEV_ERROR;
	}
	while (evbuffer_get_length(src) > 0 && (limit < 0 ||
	    evbuffer_get_length(dst) - start < (size_t)limit)) {
		if (evbuffer_peek(src, -1, NULL, &v, 1) < 1)
			break;
		rc = tls13_write_app(&t->c, v.iov_base, v.iov_len, &n);
		if (rc != 0 && rc != TLS13_WANT_WRITE) {
			tt_fail(t, rc);
			return BEV_ERROR;
		}
		evbuffer_drain(src, n);
		if (tt_flush(t) == -1) {
			tt_fail(t, TLS13_ALERT_INTERNAL_ERROR);
			return BEV_ERROR;
		}
		if (n == 0)
			break;
		moved = 1;
	}
	tt_tx_release(t);
	return moved ? BEV_OK : BEV_NEED_MORE;
}

/* Runs the socket's read callback again from the event loop (not inside
 * the caller, who may be the reader): tt_tcp_read. */
static void
tt_kick(struct tt_conn *t)
{
	bufferevent_trigger(t->tcp, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
	    BEV_TRIG_DEFER_CALLBACKS);
}

/* The reader took bytes out of the filter's input: if the engine holds
 * more, hand them over (from the event loop, not inside the reader). */
static void
tt_input_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct tt_conn *t = arg;

	(void)buf;
	if (info->n_deleted > 0 && (t->pending || t->eof_what != 0 ||
	    evbuffer_get_length(bufferevent_get_input(t->tcp)) > 0))
		tt_kick(t);
}

/* Records arrived, or a kick: through the filter into the engine, then
 * an EOF that waited for what the engine held. */
static void
tt_tcp_read(struct bufferevent *tcp, void *arg)
{
	struct tt_conn *t = arg;
	short eof = t->eof_what;

	t->tcp_read(tcp, t->tcp_arg);
	if (eof != 0 && !t->pending && !t->ended &&
	    evbuffer_get_length(bufferevent_get_input(tcp)) == 0) {
		t->eof_what = 0;
		t->ended = 1;
		t->tcp_event(tcp, eof, t->tcp_arg);
	}
}

static void
tt_tcp_write(struct bufferevent *tcp, void *arg)
{
	struct tt_conn *t = arg;

	t->tcp_write(tcp, t->tcp_arg);
}

/*
 * The socket reports EOF or an error.  libevent passes it on at once,
 * even when records read before it still wait in the engine or the
 * socket's input (the reader paused): such an EOF waits for them.
 */
static void
tt_tcp_event(struct bufferevent *tcp, short what, void *arg)
{
	struct tt_conn *t = arg;

	if (t->ended)
		return;
	if ((what & BEV_EVENT_EOF) && t->connected && (t->pending ||
	    evbuffer_get_length(bufferevent_get_input(tcp)) > 0)) {
		t->eof_what = what;
		tt_kick(t);
		return;
	}
	t->ended = 1;
	t->tcp_event(tcp, what, t->tcp_arg);
}

/* Called by libevent when the filter is freed (after upstream.c's
 * bufferevent_free): a close_notify if it can go out at once, then the
 * engine and the buffers. */
static void
tt_conn_free(void *arg)
{
	struct tt_conn *t = arg;
	const uint8_t *p;
	size_t n;
	evutil_socket_t fd;

	/* RFC 9846 §6.1: tell the server we are done, best effort: the
	 * socket is still open here, and a pooled connection has nothing
	 * queued before the alert. */
	fd = bufferevent_getfd(t->tcp);
	if (t->connected && !t->ended && fd >= 0 &&
	    evbuffer_get_length(bufferevent_get_output(t->tcp)) == 0 &&
	    tt_tx_get(t) == 0 && tls13_close(&t->c) == 0) {
		p = tls13_out(&t->c, &n);
		if (n > 0 && send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
			t->wire_tx += n;
	}
	/* The evbuffers outlive us by a little (libevent frees them after
	 * this callback): nothing of theirs may point here any more. */
	evbuffer_remove_cb(bufferevent_get_input(t->bev), tt_input_drained, t);
	event_free(t->rd);
	tls13_conn_free(&t->c);
	tt_free_ticket(t->ticket);
	free(t->rx);
	free(t->tx);
	free(t);
}

static struct bufferevent *
tt_start(void *ctx, struct bufferevent *tcp, char *err, size_t errlen)
{
	struct tt_ctx *x = ctx;
	const struct route *r = x->route;
	struct event_base *base = bufferevent_get_base(tcp);
	struct tt_conn *t = NULL;
	struct bufferevent *sock = NULL;
	evutil_socket_t fd;
	size_t limit = TLS13_MAX_PLAINTEXT;
	int rc;

	/* upstream.c's socket bufferevent does not own its fd: ours does,
	 * and the filter owns ours. */
	fd = bufferevent_getfd(tcp);
	bufferevent_free(tcp);
	if ((t = calloc(1, sizeof(*t))) == NULL)
		goto oom;
	t->ctx = x;
	if ((sock = bufferevent_socket_new(base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		goto oom;
	t->tcp = sock;
	if ((t->rd = event_new(base, fd, EV_READ | EV_PERSIST, tt_sock_read,
	    t)) == NULL)
		goto oom;
	fd = -1;
	/* During the handshake: one record at the limit we ask for (the
	 * server may ignore it: the buffer grows then) plus room for a
	 * handshake message that spans records (docs/tls13.md). */
	if (r->max_fragment != 0)
		limit = (size_t)r->max_fragment;
	if (r->record_size_limit != 0 && (size_t)r->record_size_limit < limit)
		limit = (size_t)r->record_size_limit;
	t->rxcap = TLS13_RECORD_SIZE(limit) + TLS13_HS_RESERVE;
	t->txcap = TLS13_RECORD_SIZE(limit < TT_TX_RECORD_MAX ? limit :
	    TT_TX_RECORD_MAX);
	if (r->client_cert != NULL && t->txcap < TT_TX_CLIENT_CERT)
		t->txcap = TT_TX_CLIENT_CERT;
	t->txsize = t->txcap;
	if ((t->rx = malloc(t->rxcap)) == NULL ||
	    (t->tx = malloc(t->txcap)) == NULL)
		goto oom;
	if ((rc = tls13_conn_init(&t->c, &x->cfg, t->rx, t->rxcap, t->tx,
	    t->txcap)) != 0) {
		snprintf(err, errlen, "TLS: %s", tls13_strerror(rc));
		goto fail;
	}
	/* A ticket too large for the send buffer (a small record limit and
	 * a server with big tickets) is not offered: a full handshake
	 * instead of a ClientHello that cannot be written. */
	if (r->resumption && (t->ticket = tt_take_ticket(x)) != NULL) {
		if (TT_CH_BASE + strlen(r->sni) + x->cfg.alpn_len +
		    t->ticket->len + TT_CH_PSK_OVERHEAD <= t->txcap)
			(void)tls13_conn_set_ticket(&t->c, t->ticket);
		else {
			tt_free_ticket(t->ticket);
			t->ticket = NULL;
		}
	}
	/* Deferred callbacks: a filter otherwise runs the write callback
	 * from inside the caller's evbuffer_add(), re-entering proxy.c in
	 * the middle of a pump; a socket or OpenSSL bufferevent never does. */
	t->bev = bufferevent_filter_new(sock, tt_filter_in, tt_filter_out,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, tt_conn_free, t);
	if (t->bev == NULL)
		goto oom;
	/* From here on, freeing t->bev frees t and the socket. */
	sock = NULL;
	bufferevent_getcb(t->tcp, &t->tcp_read, &t->tcp_write, &t->tcp_event,
	    &t->tcp_arg);
	bufferevent_setcb(t->tcp, tt_tcp_read, tt_tcp_write, tt_tcp_event, t);
	/* The filter turned reading on: we read (tt_sock_read). */
	bufferevent_disable(t->tcp, EV_READ);
	(void)event_add(t->rd, NULL);
	bufferevent_setwatermark(t->tcp, EV_WRITE, TT_TCP_WRITE_LOW,
	    TT_TCP_WRITE_HIGH);
	if (evbuffer_add_cb(bufferevent_get_input(t->bev), tt_input_drained,
	    t) == NULL) {
		bufferevent_free(t->bev);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* The ClientHello goes out now, without waiting for any byte. */
	rc = tls13_handshake(&t->c, NULL, NULL);
	if ((rc != TLS13_WANT_READ && rc != 0) || tt_flush(t) == -1) {
		snprintf(err, errlen, "TLS: %s", tls13_strerror(rc));
		bufferevent_free(t->bev);
		return NULL;
	}
	return t->bev;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	if (sock != NULL)
		bufferevent_free(sock);
	else if (fd >= 0)
		evutil_closesocket(fd);
	if (t != NULL) {
		if (t->rd != NULL)
			event_free(t->rd);
		if (t->rx != NULL && t->tx != NULL)
			tls13_conn_free(&t->c);
		tt_free_ticket(t->ticket);
		free(t->rx);
		free(t->tx);
		free(t);
	}
	return NULL;
}

static int
tt_resumed(struct bufferevent *bev)
{
	struct tt_conn *t = tt_conn_of(bev);

	return t != NULL && tls13_resumed(&t->c);
}

static void
tt_error(struct bufferevent *bev, char *err, size_t errlen)
{
	struct tt_conn *t = tt_conn_of(bev);
	const char *v;
	int saved = EVUTIL_SOCKET_ERROR();

	if (t != NULL && t->err != 0) {
		if ((v = tls13_verify_error(&t->c)) != NULL)
			snprintf(err, errlen, "TLS: certificate verify "
			    "failed: %s", v);
		else
			snprintf(err, errlen, "TLS: %s",
			    tls13_strerror(t->err));
	} else if (saved != 0 && saved != EAGAIN)
		snprintf(err, errlen, "TLS: %s",
		    evutil_socket_error_to_string(saved));
	else
		snprintf(err, errlen, "TLS: connection closed by peer");
}

static void
tt_wire_bytes(struct bufferevent *bev, uint64_t *rx, uint64_t *tx)
{
	struct tt_conn *t = tt_conn_of(bev);

	*rx = t != NULL ? t->wire_rx +
	    evbuffer_get_length(bufferevent_get_input(t->tcp)) : 0;
	*tx = t != NULL ? t->wire_tx : 0;
}

/* Into the pool: give back both record buffers now, and the AEAD
 * contexts if the connection stays unused. */
static void
tt_park(struct bufferevent *bev)
{
	struct tt_conn *t = tt_conn_of(bev);

	if (t == NULL || !t->connected)
		return;
	tt_rx_release(t);
	tt_tx_release(t);
	t->parked = 1;
	tt_rd_arm(t);
}

static void
tt_resume(struct bufferevent *bev)
{
	struct tt_conn *t = tt_conn_of(bev);

	if (t != NULL && (t->pending || t->eof_what != 0 ||
	    evbuffer_get_length(bufferevent_get_input(t->tcp)) > 0))
		tt_kick(t);
}
