/*
 * transport_openssl: the uplink over OpenSSL's libssl, through libevent's
 * bufferevent_openssl.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "transport.h"

struct tossl_ctx {
	const struct route *route;
	SSL_CTX *ssl_ctx;
	SSL_SESSION *session;   /* the newest session, for resumption */
	int sni_is_ip;          /* RFC 6066 §3: no IP literal in SNI */
};

static void *tossl_ctx_new(const struct route *, char *, size_t);
static void tossl_ctx_free(void *);
static struct bufferevent *tossl_start(void *, struct bufferevent *, char *,
    size_t);
static int tossl_resumed(struct bufferevent *);
static void tossl_error(struct bufferevent *, char *, size_t);
static void tossl_wire_bytes(struct bufferevent *, uint64_t *, uint64_t *);
static int tossl_send(struct bufferevent *, const void *, size_t);
static void tossl_resume(struct bufferevent *);
static void tossl_input_changed(struct evbuffer *,
    const struct evbuffer_cb_info *, void *);
static int tossl_new_session(SSL *, SSL_SESSION *);
static int tossl_is_ip(const char *);

/* The most tossl_send() hands to SSL_write() itself: what libevent's own
 * write passes in one call (MAX_TO_WRITE_EVER), so that a write it must
 * retry is retried with the same bytes. */
#define TOSSL_SEND_MAX 16384

const struct transport_ops transport_openssl = {
	.name = "openssl",
	.ctx_new = tossl_ctx_new,
	.ctx_free = tossl_ctx_free,
	.start = tossl_start,
	.resumed = tossl_resumed,
	.error = tossl_error,
	.wire_bytes = tossl_wire_bytes,
	.send = tossl_send,
	.resume = tossl_resume,
};

static int
tossl_is_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

/*
 * OpenSSL hands every new session here (with TLS 1.3, from the
 * NewSessionTicket messages after the handshake).  Keeping the newest
 * one is enough: the route has a single server name, and the next new
 * connection offers it.  We keep a copy: SSL_free() of a connection that
 * ends without close_notify (as pooled ones do) marks its own session
 * not resumable.  Returning 0: OpenSSL keeps no extra reference.
 */
static int
tossl_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tossl_ctx *t;
	SSL_SESSION *copy;

	t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	if (t == NULL || (copy = SSL_SESSION_dup(sess)) == NULL)
		return 0;
	if (t->session != NULL)
		SSL_SESSION_free(t->session);
	t->session = copy;
	return 0;
}

static void *
tossl_ctx_new(const struct route *r, char *err, size_t errlen)
{
	struct tossl_ctx *t;
	unsigned long e;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->route = r;
	t->sni_is_ip = tossl_is_ip(r->sni);
	if ((t->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	SSL_CTX_set_app_data(t->ssl_ctx, t);
	/* TLS 1.2 is the floor; 1.3 is preferred by the protocol itself. */
	if (SSL_CTX_set_min_proto_version(t->ssl_ctx, TLS1_2_VERSION) != 1)
		goto fail;
	/* A close without close_notify is an end of stream, not an error
	 * (OpenSSL 3 reports it as one otherwise): many servers do it, and
	 * proxy.c only trusts a close to end a body that has no other
	 * framing (RFC 9112 §6.3 (8)); CL and chunked bodies are checked. */
	SSL_CTX_set_options(t->ssl_ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* The evbuffer behind a write may move between retries; idle pooled
	 * connections give their record buffers back. */
	SSL_CTX_set_mode(t->ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
	/* One read per response instead of two (a record's header, then
	 * the rest): see tossl_resume(). */
	SSL_CTX_set_read_ahead(t->ssl_ctx, 1);
	if (r->verify) {
		SSL_CTX_set_verify(t->ssl_ctx, SSL_VERIFY_PEER, NULL);
		if (SSL_CTX_load_verify_locations(t->ssl_ctx, r->ca_file,
		    NULL) != 1) {
			snprintf(err, errlen, "route %s: cannot load ca_file "
			    "%s", r->name, r->ca_file);
			goto out;
		}
	} else
		SSL_CTX_set_verify(t->ssl_ctx, SSL_VERIFY_NONE, NULL);
	if (r->client_cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(t->ssl_ctx,
		    r->client_cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(t->ssl_ctx, r->client_key,
		    SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(t->ssl_ctx) != 1) {
			snprintf(err, errlen, "route %s: cannot use "
			    "client_cert %s / client_key %s", r->name,
			    r->client_cert, r->client_key);
			goto out;
		}
	}
	/* Client-side cache only through our callback (one session kept). */
	SSL_CTX_set_session_cache_mode(t->ssl_ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(t->ssl_ctx, tossl_new_session);
	ERR_clear_error();
	return t;
fail:
	e = ERR_peek_last_error();
	snprintf(err, errlen, "route %s: TLS context: %s", r->name,
	    e ? ERR_reason_error_string(e) : "failed");
out:
	ERR_clear_error();
	tossl_ctx_free(t);
	return NULL;
}

static void
tossl_ctx_free(void *ctx)
{
	struct tossl_ctx *t = ctx;

	if (t == NULL)
		return;
	if (t->session != NULL)
		SSL_SESSION_free(t->session);
	SSL_CTX_free(t->ssl_ctx);
	free(t);
}

static struct bufferevent *
tossl_start(void *ctx, struct bufferevent *tcp, char *err, size_t errlen)
{
	struct tossl_ctx *t = ctx;
	struct event_base *base = bufferevent_get_base(tcp);
	struct bufferevent *bev = NULL;
	evutil_socket_t fd;
	SSL *ssl = NULL;

	/* The socket bufferevent does not own its fd (no CLOSE_ON_FREE):
	 * the OpenSSL bufferevent takes the socket over. */
	fd = bufferevent_getfd(tcp);
	bufferevent_free(tcp);
	if ((ssl = SSL_new(t->ssl_ctx)) == NULL)
		goto fail;
	if (t->route->verify) {
		/* The name checked is the route's, never the device's Host. */
		if (t->sni_is_ip) {
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
			    t->route->sni) != 1)
				goto fail;
		} else if (SSL_set1_host(ssl, t->route->sni) != 1)
			goto fail;
	}
	if (!t->sni_is_ip &&
	    SSL_set_tlsext_host_name(ssl, t->route->sni) != 1)
		goto fail;
	if (t->session != NULL)
		SSL_set_session(ssl, t->session);
	bev = bufferevent_openssl_socket_new(base, fd, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		goto fail;
	/* Many servers close without close_notify; that is an EOF. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	/* tossl_send() may leave a write for libevent to retry from another
	 * buffer with the same bytes. */
	SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (evbuffer_add_cb(bufferevent_get_input(bev), tossl_input_changed,
	    bev) == NULL) {
		bufferevent_free(bev);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return bev;
fail:
	snprintf(err, errlen, "TLS: cannot start handshake");
	ERR_clear_error();
	SSL_free(ssl);
	evutil_closesocket(fd);
	return NULL;
}

static int
tossl_resumed(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	return ssl != NULL && SSL_session_reused(ssl);
}

static void
tossl_error(struct bufferevent *bev, char *err, size_t errlen)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e, first = 0;
	long vr = X509_V_OK;
	int saved = errno;

	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (first == 0)
			first = e;
	if (ssl != NULL)
		vr = SSL_get_verify_result(ssl);
	if (vr != X509_V_OK)
		snprintf(err, errlen, "TLS: certificate verify failed: %s",
		    X509_verify_cert_error_string(vr));
	else if (first != 0 && ERR_reason_error_string(first) != NULL)
		snprintf(err, errlen, "TLS: %s",
		    ERR_reason_error_string(first));
	else if (saved != 0 && saved != EAGAIN)
		snprintf(err, errlen, "TLS: %s", strerror(saved));
	else
		snprintf(err, errlen, "TLS: connection closed by peer");
	ERR_clear_error();
}

/*
 * libevent's OpenSSL bufferevent writes only from its write event, even
 * into an idle connection; a request is written here at once instead.
 * SSL_write() without partial writes sends everything or fails; after a
 * failure (the socket is full: a record may be half sent) the same bytes
 * go to the empty output as one block, and libevent's write, which calls
 * SSL_write() with the output's first block, retries with them, or
 * reports the error.
 */
static int
tossl_send(struct bufferevent *bev, const void *p, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	/* Not while OpenSSL waits to finish a write of its own (a read
	 * that had to answer a KeyUpdate into a full socket): libevent
	 * completes that first. */
	if (ssl != NULL && len > 0 && len <= TOSSL_SEND_MAX &&
	    evbuffer_get_length(out) == 0 && SSL_is_init_finished(ssl) &&
	    !SSL_want_write(ssl)) {
		/* No SSL_get_error() here: a failure is libevent's to see
		 * and report, from its own retry. */
		if (SSL_write(ssl, p, (int)len) == (int)len)
			return 0;
		ERR_clear_error();
	}
	return evbuffer_add(out, p, len);
}

static void
tossl_wire_bytes(struct bufferevent *bev, uint64_t *rx, uint64_t *tx)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	*rx = *tx = 0;
	if (ssl == NULL)
		return;
	/* The socket BIOs count every byte of every record. */
	if (SSL_get_rbio(ssl) != NULL)
		*rx = BIO_number_read(SSL_get_rbio(ssl));
	if (SSL_get_wbio(ssl) != NULL)
		*tx = BIO_number_written(SSL_get_wbio(ssl));
}

/*
 * Read-ahead: OpenSSL reads all the socket holds, and records beyond the
 * one it decrypts wait in its buffer.  libevent 2.1's OpenSSL bufferevent
 * stops reading once no decrypted byte is pending (SSL_pending() == 0),
 * and it does not look at what OpenSSL holds when reading resumes after a
 * pause (its read high watermark, or proxy.c turning reading off): such
 * bytes would wait for the socket to become readable again, which may be
 * never (a server that sent a head and a body record and now waits).
 * Whenever some are left behind, the read event runs again from the event
 * loop.  Only added events run: nothing happens while reading is off.  A
 * record only partly read costs a read() that may find nothing more.
 */
static void
tossl_kick(struct bufferevent *bev)
{
	event_base_active_by_fd(bufferevent_get_base(bev),
	    bufferevent_getfd(bev), EV_READ);
}

static void
tossl_resume(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	if (ssl != NULL && SSL_has_pending(ssl))
		tossl_kick(bev);
}

/* The input changed.  After libevent added decrypted bytes, it goes on
 * by itself while some are pending; after the reader took some, reading
 * may have resumed. */
static void
tossl_input_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	SSL *ssl = bufferevent_openssl_get_ssl(arg);

	(void)buf;
	if (ssl == NULL || !SSL_has_pending(ssl))
		return;
	if (info->n_deleted > 0 || SSL_pending(ssl) == 0)
		tossl_kick(arg);
}
