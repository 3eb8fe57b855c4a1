/*
 * tls13.h: the built-in minimal TLS 1.3 client (RFC 9846).
 *
 * This is the whole public API of src/tls13.  The engine does no I/O and
 * never calls malloc itself: the caller owns the connection state
 * (struct tls13_conn), the configuration and both record buffers; it feeds
 * received bytes in with tls13_feed() and drains bytes to send with
 * tls13_out()/tls13_out_consume().  Input may be cut anywhere and output may
 * be drained partially, so a libevent bufferevent filter can drive it.
 * OpenSSL libcrypto does allocate inside EVP calls; see docs/tls13.md for how
 * that memory is accounted for.
 *
 * Return values: every call returns an int.  0 is success.  1..255 is the
 * TLS alert we detected and sent (RFC 9846 §6), TLS13_ERR_PEER_ALERT(a) the
 * alert the peer sent us, and TLS13_WANT_* / TLS13_ERR_* (>= 0x200) the
 * local conditions below.  tls13_strerror() names each of them.
 */
#ifndef TLSGATE_TLS13_H
#define TLSGATE_TLS13_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* --- alert descriptions (RFC 9846 §6), which double as error values --- */
#define TLS13_ALERT_CLOSE_NOTIFY              0
#define TLS13_ALERT_UNEXPECTED_MESSAGE       10
#define TLS13_ALERT_BAD_RECORD_MAC           20
#define TLS13_ALERT_RECORD_OVERFLOW          22
#define TLS13_ALERT_HANDSHAKE_FAILURE        40
#define TLS13_ALERT_BAD_CERTIFICATE          42
#define TLS13_ALERT_UNSUPPORTED_CERTIFICATE  43
#define TLS13_ALERT_CERTIFICATE_REVOKED      44
#define TLS13_ALERT_CERTIFICATE_EXPIRED      45
#define TLS13_ALERT_CERTIFICATE_UNKNOWN      46
#define TLS13_ALERT_ILLEGAL_PARAMETER        47
#define TLS13_ALERT_UNKNOWN_CA               48
#define TLS13_ALERT_ACCESS_DENIED            49
#define TLS13_ALERT_DECODE_ERROR             50
#define TLS13_ALERT_DECRYPT_ERROR            51
#define TLS13_ALERT_PROTOCOL_VERSION         70
#define TLS13_ALERT_INSUFFICIENT_SECURITY    71
#define TLS13_ALERT_INTERNAL_ERROR           80
#define TLS13_ALERT_INAPPROPRIATE_FALLBACK   86
#define TLS13_ALERT_USER_CANCELED            90
#define TLS13_ALERT_MISSING_EXTENSION       109
#define TLS13_ALERT_UNSUPPORTED_EXTENSION   110
#define TLS13_ALERT_UNRECOGNIZED_NAME       112
#define TLS13_ALERT_BAD_CERTIFICATE_STATUS  113
#define TLS13_ALERT_UNKNOWN_PSK_IDENTITY    115
#define TLS13_ALERT_CERTIFICATE_REQUIRED    116
#define TLS13_ALERT_NO_APPLICATION_PROTOCOL 120

/** The peer sent alert @a a (0x100 + description; close_notify is 0x100). */
#define TLS13_ERR_PEER_ALERT(a) (0x100 + (a))
/** The peer closed the connection cleanly (close_notify received). */
#define TLS13_ERR_CLOSED        TLS13_ERR_PEER_ALERT(TLS13_ALERT_CLOSE_NOTIFY)
/** More input is needed: feed more received bytes. Not an error. */
#define TLS13_WANT_READ         0x201
/** The output buffer is full: drain tls13_out() and retry. Not an error. */
#define TLS13_WANT_WRITE        0x202
/** A caller buffer is too small for what the peer sent. */
#define TLS13_ERR_BUFFER        0x203
/** The call is not allowed in the connection's current state. */
#define TLS13_ERR_STATE         0x204
/** The configuration is invalid (unsupported suite/group, bad sizes...). */
#define TLS13_ERR_CONFIG        0x205
/** The server ignored max_fragment_length/record_size_limit and the
 *  configuration refuses full-size records. */
#define TLS13_ERR_RECORD_LIMIT  0x206

/** True if @a e is a hard error (not 0 and not a TLS13_WANT_*). */
#define TLS13_IS_ERROR(e) ((e) != 0 && (e) != TLS13_WANT_READ && (e) != TLS13_WANT_WRITE)

/* --- IANA code points --- */
#define TLS13_AES_128_GCM_SHA256        0x1301
#define TLS13_AES_256_GCM_SHA384        0x1302
#define TLS13_CHACHA20_POLY1305_SHA256  0x1303
#define TLS13_GROUP_SECP256R1           0x0017
#define TLS13_GROUP_X25519              0x001d
#define TLS13_SIG_RSA_PKCS1_SHA256      0x0401 /* only inside certificates */
#define TLS13_SIG_RSA_PKCS1_SHA384      0x0501
#define TLS13_SIG_RSA_PKCS1_SHA512      0x0601
#define TLS13_SIG_ECDSA_SECP256R1_SHA256 0x0403
#define TLS13_SIG_ECDSA_SECP384R1_SHA384 0x0503
#define TLS13_SIG_RSA_PSS_RSAE_SHA256   0x0804
#define TLS13_SIG_RSA_PSS_RSAE_SHA384   0x0805
#define TLS13_SIG_RSA_PSS_RSAE_SHA512   0x0806
#define TLS13_SIG_ED25519               0x0807

/* --- sizes --- */
/** Largest plaintext of a record (RFC 9846 §5.1). */
#define TLS13_MAX_PLAINTEXT      16384
/** Record header plus worst-case AEAD expansion we accept: 5 + 2^14 + 256. */
#define TLS13_MAX_RECORD         (5 + TLS13_MAX_PLAINTEXT + 256)
/** Record bytes needed for @a pt bytes of plaintext, as a receive buffer
 *  must hold them: header, plaintext, inner type, padding slack, tag. */
#define TLS13_RECORD_SIZE(pt)    (5 + (pt) + 256)
/** Extra receive-buffer room recommended for a handshake message that spans
 *  records (the Certificate message; see docs/tls13.md). */
#define TLS13_HS_RESERVE         8192
/** Largest session ticket kept for resumption. */
#define TLS13_TICKET_MAX         1024
/** Largest hash output (SHA-384). */
#define TLS13_MAX_HASH           48
/** A negotiated record limit at or below this many plaintext bytes makes
 *  the connection build its AEAD context for each record and free it
 *  right after, instead of keeping one per direction (docs/tls13.md,
 *  "Memory"). */
#define TLS13_SMALL_RECORD       1024
/** Largest number of cipher suites/groups/sigalgs in a configuration. */
#define TLS13_MAX_LIST           8

/**
 * A session ticket with everything needed for PSK-DHE resumption
 * (RFC 9846 §4.6.1).  Plain data: the caller may copy it, write it to disk
 * (it contains a secret: protect it) and hand it back with
 * tls13_conn_set_ticket().
 */
typedef struct tls13_ticket {
	uint16_t suite;          /* suite of the connection that got it */
	uint8_t  psk_len;        /* hash length of that suite */
	uint8_t  psk[TLS13_MAX_HASH];
	uint32_t lifetime_s;     /* ticket_lifetime, seconds */
	uint32_t age_add;        /* ticket_age_add */
	uint64_t issued_ms;      /* now_ms() when received */
	uint16_t len;            /* bytes used in ticket[] */
	uint8_t  ticket[TLS13_TICKET_MAX];
} tls13_ticket;

/** What to do when the server answers neither max_fragment_length nor
 *  record_size_limit. */
enum tls13_record_fallback {
	TLS13_FALLBACK_FULL = 0,    /* accept full 2^14-byte records */
	TLS13_FALLBACK_REFUSE = 1,  /* fail the handshake with TLS13_ERR_RECORD_LIMIT */
};

/**
 * Test hooks, for known-answer tests only (NULL in production).  Every
 * pointer is borrowed for the life of the connection.
 */
typedef struct tls13_test_hooks {
	/** x25519 private key to use for the first key share (32 bytes). */
	const uint8_t *x25519_private;
	/** Send this ClientHello handshake message (type+length+body) instead
	 *  of the generated one.  The engine still believes it offered what the
	 *  configuration says; if a ticket is set, the trailing binder in the
	 *  message is recomputed and overwritten. */
	const uint8_t *client_hello;
	size_t client_hello_len;
	/** secp256r1 private scalar (32 bytes) for the share sent after a
	 *  HelloRetryRequest; only usable with client_hello2, as no public
	 *  key is computed from it. */
	const uint8_t *p256_private;
	/** The second ClientHello, sent verbatim after a HelloRetryRequest. */
	const uint8_t *client_hello2;
	size_t client_hello2_len;
} tls13_test_hooks;

/**
 * Client configuration.  Owned by the caller, read-only for the engine and
 * shared by any number of connections; it must outlive them.  Zero means
 * "default" for every field.
 */
typedef struct tls13_config {
	/** Cipher suites to offer, in preference order (default: the three). */
	uint16_t suites[TLS13_MAX_LIST];
	size_t nsuites;
	/** Groups to offer, in preference order (default: x25519, secp256r1). */
	uint16_t groups[TLS13_MAX_LIST];
	size_t ngroups;
	/** How many of the first groups get a key share (default 1, max 2). */
	size_t nkeyshares;
	/** Signature schemes for CertificateVerify (default: all six). */
	uint16_t sigalgs[TLS13_MAX_LIST];
	size_t nsigalgs;
	/** Server name sent in SNI (RFC 6066 §3) and checked against the
	 *  certificate; NUL-terminated; NULL sends no SNI. An IP literal is not
	 *  sent as SNI but checked with X509_check_ip_asc. */
	const char *server_name;
	/** Name to verify in the certificate instead of server_name, or NULL. */
	const char *verify_name;
	/** ALPN protocol list in wire format (RFC 7301: each name prefixed by
	 *  its length byte), or NULL. */
	const uint8_t *alpn;
	size_t alpn_len;
	/** max_fragment_length to offer: 0 (none), 512, 1024, 2048 or 4096. */
	uint16_t max_fragment;
	/** record_size_limit to offer (RFC 8449): 0 (none) or 64..16384 bytes
	 *  of plaintext. */
	uint16_t record_size_limit;
	/** enum tls13_record_fallback */
	int record_fallback;
	/** Middlebox compatibility mode (RFC 9846 §D.4): non-empty
	 *  legacy_session_id and a dummy change_cipher_spec. */
	int compat_mode;
	/** Keep the keyed AEAD contexts between records even when the
	 *  negotiated record limit is at most TLS13_SMALL_RECORD.  0 (the
	 *  default): with small records each context lives for one record,
	 *  the least memory per connection.  1: faster (no key setup per
	 *  record); the caller drops them with tls13_conn_idle() when the
	 *  connection goes idle. */
	int keep_aead;
	/** Pad application data records up to a multiple of this (0: none). */
	uint16_t pad_block;
	/** Trust anchors; borrowed.  Required unless insecure_no_verify. */
	X509_STORE *store;
	/** Skip certificate chain and name validation (tests only). */
	int insecure_no_verify;
	/** Client certificate chain (leaf first) and key, used when the server
	 *  sends CertificateRequest; borrowed.  NULL: answer with an empty
	 *  Certificate. */
	X509 *client_cert;
	STACK_OF(X509) *client_chain;
	EVP_PKEY *client_key;
	/** Random source (default RAND_bytes).  Returns 0 on success. */
	int (*random)(void *arg, uint8_t *out, size_t len);
	void *random_arg;
	/** Milliseconds clock for ticket ages (default CLOCK_REALTIME). */
	uint64_t (*now_ms)(void *arg);
	void *now_arg;
	/** Called for each NewSessionTicket; @a t is valid during the call only.
	 *  NULL: tickets are ignored and the resumption secret is not kept. */
	void (*on_ticket)(void *arg, const tls13_ticket *t);
	void *ticket_arg;
	/** Known-answer test hooks, NULL otherwise. */
	const tls13_test_hooks *test;
} tls13_config;

/** AEAD state of one direction (private). */
struct tls13_dir {
	EVP_CIPHER_CTX *aead;           /* keyed context, owned; built lazily */
	uint8_t iv[12];
	uint64_t seq;
	uint8_t secret[TLS13_MAX_HASH]; /* current traffic secret */
	uint16_t suite;
	uint8_t hashlen;
	uint8_t enc;
	uint8_t per_record;             /* free the context after each record */
};

/**
 * Connection state.  The caller allocates it (stack, pool, anything) and
 * passes it to every call; the fields are private to the engine.
 */
typedef struct tls13_conn {
	const tls13_config *cfg;
	const tls13_ticket *ticket;     /* offered for resumption; borrowed */
	uint8_t *rx;                    /* receive buffer; borrowed */
	uint8_t *tx;                    /* send buffer; borrowed */
	size_t rxcap, txcap;
	size_t rx_hs;                   /* rx[0..rx_hs): handshake reassembly */
	size_t rx_pos, rx_end;          /* rx[rx_pos..rx_end): raw input */
	size_t app_pos, app_len;        /* decrypted application data pending */
	size_t tx_pos, tx_end;          /* tx[tx_pos..tx_end): to be sent */
	EVP_MD_CTX *th[2];              /* transcript hash (sha256, sha384) */
	EVP_PKEY *kex[2];               /* our ephemeral keys (handshake only) */
	EVP_PKEY *peer_key;             /* server leaf key until CertificateVerify */
	struct tls13_dir rd, wr;
	uint8_t master[TLS13_MAX_HASH]; /* handshake, then master secret */
	uint8_t res_master[TLS13_MAX_HASH];
	uint8_t random[32];
	uint8_t session_id[32];        /* compat mode legacy_session_id */
	uint64_t bytes_sent, bytes_received; /* during the handshake */
	uint32_t x509_error;            /* X509_V_ERR_* of a failed verification */
	int err;                        /* sticky error */
	uint16_t suite, group;          /* negotiated */
	uint16_t client_sigalg;         /* for our CertificateVerify */
	uint16_t rx_limit, tx_limit;    /* negotiated plaintext limits */
	uint8_t state;                  /* enum in handshake.c */
	uint8_t hashlen;
	uint16_t flags;                 /* F_* in handshake.c */
	uint8_t cert_req;               /* server asked for a client certificate */
	uint8_t ku_pending;             /* our KeyUpdate is owed to the peer */
	char alpn[32];                  /* negotiated protocol, NUL-terminated */
} tls13_conn;

/**
 * Once per process, before the first connection (else done lazily): fill
 * libcrypto's lazy process-wide caches (algorithm fetches) so they are not
 * charged to the first connection, and make the library context server
 * certificates are decoded in (docs/tls13.md, "Memory").  Returns 0, or -1
 * if a primitive or that context is unavailable.
 */
int tls13_global_init(void);

/**
 * Prepare @a c for a new handshake with @a cfg.  @a rx (capacity @a rxcap)
 * receives records: TLS13_RECORD_SIZE(limit) holds any record within the
 * limit; add room for a Certificate message spanning records (up to
 * TLS13_HS_RESERVE), or grow the buffer when TLS13_ERR_BUFFER says so.  @a tx (capacity @a txcap) holds
 * records to send: the ClientHello (with the ticket when resuming; the first
 * tls13_handshake fails with TLS13_ERR_BUFFER if it does not fit) and the
 * Finished; 512 bytes is enough without a ticket or client certificate.
 * After the handshake tls13_tx_needed() bytes hold any record we send.
 * Both buffers are borrowed until tls13_conn_free().
 * Returns 0, or TLS13_ERR_CONFIG if the configuration is unusable.
 */
int tls13_conn_init(tls13_conn *c, const tls13_config *cfg, uint8_t *rx,
    size_t rxcap, uint8_t *tx, size_t txcap);

/**
 * Offer @a t for PSK-DHE resumption (RFC 9846 §2.2).  Call after
 * tls13_conn_init and before the first tls13_handshake; @a t is borrowed
 * until the handshake completes.  An expired ticket is silently not used.
 * Returns 0 or TLS13_ERR_STATE.
 */
int tls13_conn_set_ticket(tls13_conn *c, const tls13_ticket *t);

/**
 * Drop the two keyed AEAD contexts (about 1 KB of libcrypto memory each
 * with OpenSSL 3) while the connection is idle, e.g. parked in a pool.
 * They are rebuilt from the traffic secrets on the next record, which
 * costs two HKDF-Expand-Label calls and a key setup.  Always safe.
 */
void tls13_conn_idle(tls13_conn *c);

/**
 * Release libcrypto objects held by @a c and wipe its secrets.  Does not
 * touch the caller's buffers beyond wiping nothing; safe to call twice.
 */
void tls13_conn_free(tls13_conn *c);

/**
 * Move the receive buffer to @a rx (capacity @a rxcap), copying what is
 * buffered; used to grow it after TLS13_ERR_BUFFER or to shrink it once
 * tls13_rx_needed() is known.  The old buffer is released to the caller.
 * Returns 0 or TLS13_ERR_BUFFER if @a rxcap cannot hold what is buffered.
 */
int tls13_conn_set_rxbuf(tls13_conn *c, uint8_t *rx, size_t rxcap);

/**
 * Move the send buffer to @a tx (capacity @a txcap), copying the records
 * still waiting to be sent to its front.  With @a txcap 0 (@a tx may then
 * be NULL) the buffer is taken away: do that only while nothing is pending
 * (tls13_out() gives 0 bytes), and give one back, at least
 * tls13_tx_needed() bytes, before the next tls13_write_app, tls13_close or
 * tls13_key_update.  Without a send buffer those return TLS13_ERR_BUFFER;
 * a KeyUpdate the server requests meanwhile is sent with the next write,
 * and an alert for a fatal error is dropped.  The old buffer is released
 * to the caller.  Returns 0 or TLS13_ERR_BUFFER if @a txcap cannot hold the
 * pending records (nothing is changed then).
 */
int tls13_conn_set_txbuf(tls13_conn *c, uint8_t *tx, size_t txcap);

/**
 * Copy up to *@a inlen received bytes from @a in into the receive buffer and
 * process every complete record (handshake, alerts, post-handshake messages).
 * On return *@a inlen is the number of bytes consumed; the caller keeps the
 * rest and feeds it again later (after reading pending application data).
 * Returns 0 (check *@a inlen: when application data is pending and the
 * buffer is full, fewer bytes are taken; read with tls13_read_app and feed
 * again), TLS13_ERR_BUFFER (not fatal: a record or handshake message does
 * not fit; grow the buffer with tls13_conn_set_rxbuf and feed again), or
 * an error.
 */
int tls13_feed(tls13_conn *c, const uint8_t *in, size_t *inlen);

/**
 * Drive the handshake: sends the ClientHello on the first call, then
 * processes what tls13_feed() buffered.  Convenience form: @a in/@a inlen
 * are fed first (may be NULL/0).  Returns 0 once the handshake is complete,
 * TLS13_WANT_READ when waiting for the server, or an error (the alert has
 * then been queued for sending: drain tls13_out()).
 */
int tls13_handshake(tls13_conn *c, const uint8_t *in, size_t *inlen);

/**
 * Bytes waiting to be sent: returns a pointer into the caller's tx buffer
 * and stores their count in *@a len (0 if none).  The pointer is valid
 * until the next call on @a c.
 */
const uint8_t *tls13_out(tls13_conn *c, size_t *len);

/** Mark @a n bytes returned by tls13_out() as sent. */
void tls13_out_consume(tls13_conn *c, size_t n);

/**
 * Encrypt up to @a len bytes of @a data into records in the tx buffer.
 * *@a written receives the count taken (possibly less than @a len when the
 * buffer fills).  Returns 0, TLS13_WANT_WRITE if nothing fitted (drain
 * tls13_out() and retry), TLS13_ERR_BUFFER if nothing fitted and nothing is
 * pending (the send buffer is missing or too small: see
 * tls13_conn_set_txbuf), or an error.
 */
int tls13_write_app(tls13_conn *c, const uint8_t *data, size_t len,
    size_t *written);

/**
 * Copy up to @a cap bytes of received application data into @a out;
 * *@a outlen receives the count.  Returns 0 if bytes were copied,
 * TLS13_WANT_READ if none are pending, TLS13_ERR_CLOSED after the peer's
 * close_notify, or an error.
 */
int tls13_read_app(tls13_conn *c, uint8_t *out, size_t cap, size_t *outlen);

/**
 * Send a KeyUpdate (RFC 9846 §4.6.3) and switch to the next write key;
 * @a request_peer asks the server to update its key too.  Returns 0,
 * TLS13_WANT_WRITE, TLS13_ERR_BUFFER (no send buffer, nothing pending),
 * or TLS13_ERR_STATE before the handshake is complete.
 */
int tls13_key_update(tls13_conn *c, int request_peer);

/**
 * Queue a close_notify alert (RFC 9846 §6.1).  Further writes fail with
 * TLS13_ERR_STATE.  Returns 0, TLS13_WANT_WRITE, or TLS13_ERR_BUFFER (no
 * send buffer, nothing pending).
 */
int tls13_close(tls13_conn *c);

/** A static string naming error value @a err (e.g. "unknown_ca",
 *  "peer alert: handshake_failure", "want read"). */
const char *tls13_strerror(int err);

/** Static text for the X509 verification failure behind the last
 *  certificate alert, or NULL if there was none. */
const char *tls13_verify_error(const tls13_conn *c);

/** 1 once the handshake has completed. */
int tls13_is_connected(const tls13_conn *c);

/* --- negotiated facts, valid after the handshake --- */

/** Negotiated suite code point, or 0. */
uint16_t tls13_cipher(const tls13_conn *c);
/** Name of suite @a suite ("TLS_AES_128_GCM_SHA256"), or "none". */
const char *tls13_cipher_name(uint16_t suite);
/** Key exchange group code point, or 0 (never 0 for PSK-DHE). */
uint16_t tls13_group(const tls13_conn *c);
/** Name of group @a group ("x25519", "secp256r1"), or "none". */
const char *tls13_group_name(uint16_t group);
/** 1 if the server sent a HelloRetryRequest. */
int tls13_hrr(const tls13_conn *c);
/** 1 if the handshake resumed a session with a ticket. */
int tls13_resumed(const tls13_conn *c);
/** Largest plaintext the server may send us (record limit). */
size_t tls13_record_limit(const tls13_conn *c);
/** Largest plaintext we send per record. */
size_t tls13_send_limit(const tls13_conn *c);
/** Negotiated ALPN protocol (NUL-terminated), or "" if none. */
const char *tls13_alpn(const tls13_conn *c);
/** Bytes sent on the wire during the handshake (record headers included). */
uint64_t tls13_bytes_sent(const tls13_conn *c);
/** Bytes received on the wire during the handshake (headers included). */
uint64_t tls13_bytes_received(const tls13_conn *c);
/** Receive-buffer size the negotiated record limit requires. */
size_t tls13_rx_needed(const tls13_conn *c);
/** Send-buffer capacity for one of our records at the negotiated send
 *  limit (tls13_send_limit() plaintext bytes plus header, inner content
 *  type and AEAD tag: 534 bytes with max_fragment_length 512).  Valid
 *  after the handshake; before it, the size for a full 2^14-byte record. */
size_t tls13_tx_needed(const tls13_conn *c);

#endif /* TLSGATE_TLS13_H */
