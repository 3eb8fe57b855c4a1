/*
 * transport: the security layer of an uplink connection, as a table of
 * functions (in the manner of redis' ConnectionType), so that upstream.c
 * and proxy.c work on plain bufferevents whatever carries the bytes.
 *
 * upstream.c resolves the name and opens the TCP connection itself; a
 * transport only turns that connected socket into a bufferevent of
 * plaintext and reports how the handshake went.  The OpenSSL transport
 * replaces the socket bufferevent by an OpenSSL one; the built-in TLS 1.3
 * engine (transport_tls13.c) is a bufferevent filter stacked on it.
 */
#ifndef TLSGATE_TRANSPORT_H
#define TLSGATE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

struct bufferevent;
struct route;

struct transport_ops {
	/** Short name for logs ("openssl"). */
	const char *name;

	/**
	 * Builds the per-route state (context, trust store, session kept
	 * for resumption) from `r`, which must outlive it.  Returns NULL
	 * after writing a one-line reason to err[errlen].
	 */
	void *(*ctx_new)(const struct route *r, char *err, size_t errlen);

	/** Frees what ctx_new returned; NULL is a no-op. */
	void (*ctx_free)(void *ctx);

	/**
	 * Starts the client handshake on `tcp`, a socket bufferevent whose
	 * connection is established, and takes ownership of it (also on
	 * failure).  Returns the bufferevent that carries plaintext: its
	 * event callback gets BEV_EVENT_CONNECTED once the handshake and
	 * the peer verification succeed, and BEV_EVENT_ERROR or
	 * BEV_EVENT_EOF otherwise.  The caller sets its callbacks and frees
	 * it with bufferevent_free(), which also closes the socket.  Returns
	 * NULL with a reason in err[errlen] when nothing could be started.
	 */
	struct bufferevent *(*start)(void *ctx, struct bufferevent *tcp,
	    char *err, size_t errlen);

	/** After BEV_EVENT_CONNECTED: 1 when the session was resumed. */
	int (*resumed)(struct bufferevent *bev);

	/**
	 * After an error or EOF on `bev`: writes why, prefixed with "TLS: ",
	 * to err[errlen] (for a failed verification, the X.509 reason such
	 * as "certificate verify failed: hostname mismatch").  Never
	 * includes key material.
	 */
	void (*error)(struct bufferevent *bev, char *err, size_t errlen);

	/**
	 * Bytes received and sent on the wire so far by `bev` (records,
	 * handshake included): what a metered uplink is billed for.
	 */
	void (*wire_bytes)(struct bufferevent *bev, uint64_t *rx,
	    uint64_t *tx);

	/**
	 * Optional (NULL: nothing to do).  `bev` goes into the idle pool:
	 * the transport may give back memory it can rebuild on the next
	 * record.
	 */
	void (*park)(struct bufferevent *bev);

	/**
	 * Optional (NULL: nothing to do).  Reading was enabled again on
	 * `bev` after a pause: a transport that holds received data of its
	 * own hands it over (later, from the event loop, through the read
	 * callback).
	 */
	void (*resume)(struct bufferevent *bev);

	/**
	 * Optional (NULL: evbuffer_add() to the output).  Appends len bytes
	 * to bev's output, writing them to the connection at once when
	 * nothing is queued ahead of them, where the bufferevent would
	 * watch for writability, wait for it, write, and stop watching (two
	 * epoll_ctl calls and a wake-up per request).  What the connection
	 * does not take now is queued as usual.  Returns 0, or -1 when out
	 * of memory.
	 */
	int (*send)(struct bufferevent *bev, const void *p, size_t len);
};

/** The OpenSSL transport (transport_openssl.c). */
extern const struct transport_ops transport_openssl;

/**
 * The built-in TLS 1.3 client (transport_tls13.c, engine in src/tls13),
 * for routes with `tls = builtin`.
 */
extern const struct transport_ops transport_tls13;

#endif
