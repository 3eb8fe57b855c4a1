/*
 * handshake.c: the TLS 1.3 client engine (RFC 9846): connection API, record
 * input, the handshake as a table of (state, message) -> handler, the
 * ClientHello and extension code, application data, alerts.
 */
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "tls13/buf.h"
#include "tls13/crypto.h"
#include "tls13/handshake.h"
#include "tls13/keysched.h"
#include "tls13/record.h"
#include "tls13/tls13.h"
#include "tls13/x509.h"

/* Handshake message types (RFC 9846 §4). */
#define HT_CLIENT_HELLO   1
#define HT_SERVER_HELLO   2
#define HT_NEW_TICKET     4
#define HT_ENCRYPTED_EXT  8
#define HT_CERTIFICATE   11
#define HT_CERT_REQUEST  13
#define HT_CERT_VERIFY   15
#define HT_FINISHED      20
#define HT_KEY_UPDATE    24
#define HT_MESSAGE_HASH 254

/* Extension types (RFC 9846 §4.2, RFC 6066, RFC 7301, RFC 8449). */
#define EXT_SERVER_NAME       0
#define EXT_MAX_FRAGMENT      1
#define EXT_SUPPORTED_GROUPS 10
#define EXT_SIG_ALGS         13
#define EXT_ALPN             16
#define EXT_RECORD_LIMIT     28
#define EXT_PSK              41
#define EXT_EARLY_DATA       42
#define EXT_VERSIONS         43
#define EXT_COOKIE           44
#define EXT_PSK_MODES        45
#define EXT_KEY_SHARE        51

#define F_HRR        0x0001
#define F_RESUMED    0x0002
#define F_PSK        0x0004 /* a PSK is offered */
#define F_CLOSE_SENT 0x0008
#define F_CLOSE_RCVD 0x0010
#define F_RD_KEYS    0x0020 /* records from the server are protected */
#define F_WR_KEYS    0x0040
#define F_CCS_SENT   0x0080
#define F_KEYCHANGE  0x0100 /* read key changed: must be at a record boundary */
#define F_LIMIT_NEG  0x0200 /* max_fragment_length or record_size_limit agreed */
#define F_SNI        0x0400 /* server_name was sent */
#define F_PSK_SUITE  0x0800 /* only the ticket's suite is offered */

static const uint16_t default_suites[] = { TLS13_AES_128_GCM_SHA256,
	TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_256_GCM_SHA384 };
static const uint16_t default_groups[] = { TLS13_GROUP_X25519,
	TLS13_GROUP_SECP256R1 };
static const uint16_t default_sigalgs[] = { TLS13_SIG_ECDSA_SECP256R1_SHA256,
	TLS13_SIG_RSA_PSS_RSAE_SHA256, TLS13_SIG_ED25519,
	TLS13_SIG_ECDSA_SECP384R1_SHA384, TLS13_SIG_RSA_PSS_RSAE_SHA384,
	TLS13_SIG_RSA_PSS_RSAE_SHA512 };

/* §4.1.3: the special ServerHello.random of a HelloRetryRequest. */
static const uint8_t hrr_random[32] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02,
	0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
	0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c };

#define LIST(c, f, d, n) \
	((c)->cfg->n ? (c)->cfg->f : (d))
#define NLIST(c, d, n) \
	((c)->cfg->n ? (c)->cfg->n : sizeof(d) / sizeof((d)[0]))

static int send_flight(tls13_conn *c);
static int send_key_update(tls13_conn *c, int request);

/* ---------------------------------------------------------------- helpers */

static int
in_list(const uint16_t *l, size_t n, uint16_t v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (l[i] == v)
			return 1;
	return 0;
}

static int
suite_offered(const tls13_conn *c, uint16_t s)
{
	if (c->flags & F_PSK_SUITE)
		return s == c->ticket->suite;
	return in_list(LIST(c, suites, default_suites, nsuites),
	    NLIST(c, default_suites, nsuites), s);
}

static int
rand_bytes(const tls13_conn *c, uint8_t *p, size_t n)
{
	if (c->cfg->random != NULL)
		return c->cfg->random(c->cfg->random_arg, p, n);
	return RAND_bytes(p, (int)n) == 1 ? 0 : -1;
}

static uint64_t
now_ms(const tls13_conn *c)
{
	struct timespec ts;

	if (c->cfg->now_ms != NULL)
		return c->cfg->now_ms(c->cfg->now_arg);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static EVP_MD_CTX *
th_ctx(const tls13_conn *c)
{
	return c->th[c->hashlen == 48 ? 1 : 0];
}

/* Absorb a handshake message into every running transcript hash. */
static int
th_add(tls13_conn *c, const uint8_t *p, size_t n)
{
	int i;

	for (i = 0; i < 2; i++)
		if (c->th[i] != NULL && tls13_hash_update(c->th[i], p, n) != 0)
			return -1;
	return 0;
}

static int
th_hash(tls13_conn *c, uint8_t *out)
{
	return tls13_hash_peek(th_ctx(c), NULL, 0, out);
}

/* Once the suite is known only its hash runs (§4.4.1). */
static void
th_select(tls13_conn *c)
{
	tls13_hash_free(&c->th[c->hashlen == 48 ? 0 : 1]);
}

/* Free what only the handshake needed. */
static void
hs_release(tls13_conn *c)
{
	EVP_PKEY_free(c->kex[0]);
	EVP_PKEY_free(c->kex[1]);
	EVP_PKEY_free(c->peer_key);
	c->kex[0] = c->kex[1] = c->peer_key = NULL;
	tls13_hash_free(&c->th[0]);
	tls13_hash_free(&c->th[1]);
}

/* --------------------------------------------------------------- output */

/* Room for @a need bytes at tx_end, compacting if needed; NULL if none. */
static uint8_t *
tx_reserve(tls13_conn *c, size_t need)
{
	/* The caller may have taken the buffer away (tls13_conn_set_txbuf). */
	if (c->tx == NULL)
		return NULL;
	if (c->tx_pos == c->tx_end)
		c->tx_pos = c->tx_end = 0;
	if (c->txcap - c->tx_end < need && c->tx_pos > 0) {
		memmove(c->tx, c->tx + c->tx_pos, c->tx_end - c->tx_pos);
		c->tx_end -= c->tx_pos;
		c->tx_pos = 0;
	}
	if (c->txcap - c->tx_end < need)
		return NULL;
	return c->tx + c->tx_end;
}

/* No room for output: draining helps if records are pending, else only a
 * bigger send buffer does (tls13_conn_set_txbuf). */
static int
tx_full(const tls13_conn *c)
{
	return c->tx_pos != c->tx_end ? TLS13_WANT_WRITE : TLS13_ERR_BUFFER;
}

static void
tx_commit(tls13_conn *c, size_t n)
{
	c->tx_end += n;
	if (c->state != TLS13_ST_CONNECTED)
		c->bytes_sent += n;
}

/*
 * Send @a len bytes of @a type content that sit at c->tx + @a stage
 * (stage >= tx_end + enough room for the record overheads), split into
 * records of at most tx_limit plaintext bytes, protected when write keys
 * are set.  See docs/tls13.md "Output".
 */
static int
tx_records(tls13_conn *c, uint8_t type, size_t stage, size_t len)
{
	size_t off = 0, chunk, reclen;
	uint8_t *rec;
	int err;

	do {
		chunk = len - off < c->tx_limit ? len - off : c->tx_limit;
		rec = c->tx + c->tx_end;
		memmove(rec + TLS13_HDR, c->tx + stage + off, chunk);
		if (c->flags & F_WR_KEYS) {
			if ((err = tls13_record_seal(&c->wr, type, rec, chunk, 0,
			    &reclen)) != 0)
				return err;
		} else {
			rec[0] = type;
			rec[1] = 3;
			rec[2] = 3;
			rec[3] = (uint8_t)(chunk >> 8);
			rec[4] = (uint8_t)chunk;
			reclen = TLS13_HDR + chunk;
		}
		tx_commit(c, reclen);
		off += chunk;
	} while (off < len);
	return 0;
}

/* Start staging messages of up to the room left in tx; returns the stage
 * offset and points @a w at it. */
static size_t
stage_begin(tls13_conn *c, tls13_wbuf *w)
{
	size_t avail, k, stage;

	(void)tx_reserve(c, c->txcap);
	avail = c->txcap - c->tx_end;
	k = avail / c->tx_limit + 1;
	stage = c->tx_end + k * TLS13_SEAL_OVERHEAD;
	if (stage > c->txcap)
		stage = c->txcap;
	tls13_wbuf_init(w, c->tx + stage, c->txcap - stage);
	return stage;
}

static int
send_alert(tls13_conn *c, uint8_t level, uint8_t desc)
{
	uint8_t *p;
	size_t stage;

	if ((p = tx_reserve(c, 2 + TLS13_SEAL_OVERHEAD + 2)) == NULL)
		return TLS13_WANT_WRITE;
	stage = c->tx_end + TLS13_SEAL_OVERHEAD;
	c->tx[stage] = level;
	c->tx[stage + 1] = desc;
	return tx_records(c, TLS13_CT_ALERT, stage, 2);
}

/* Record error @a err as sticky, send its alert (§6.2) best effort. */
static int
fail(tls13_conn *c, int err)
{
	uint8_t desc;

	if (c->err != 0)
		return c->err;
	c->err = err;
	c->state = TLS13_ST_ERROR;
	if (err < 256)
		desc = (uint8_t)err;
	else if (err == TLS13_ERR_RECORD_LIMIT)
		desc = TLS13_ALERT_HANDSHAKE_FAILURE;
	else if (err >= 0x200)
		desc = TLS13_ALERT_INTERNAL_ERROR;
	else
		return err; /* the peer's alert: nothing to answer */
	(void)send_alert(c, 2, desc);
	return err;
}

/* --------------------------------------------------------- ClientHello */

static int
put_ext_begin(tls13_wbuf *w, uint16_t type)
{
	tls13_put_u16(w, type);
	return (int)tls13_put_begin(w, 2);
}

static int
psk_usable(tls13_conn *c)
{
	const tls13_ticket *t = c->ticket;
	uint64_t age;

	if (t == NULL || t->len == 0 || t->psk_len != tls13_suite_hashlen(t->suite))
		return 0;
	if (!suite_offered(c, t->suite))
		return 0;
	age = now_ms(c) - t->issued_ms;
	return age <= (uint64_t)t->lifetime_s * 1000;
}

/*
 * §4.2.11.2: binder = HMAC(finished_key(binder_key), Transcript-Hash(
 * earlier messages + ClientHello truncated before the binders list)).
 */
static int
psk_binder(tls13_conn *c, const uint8_t *msg, size_t trunc, uint8_t *out)
{
	const tls13_ticket *t = c->ticket;
	size_t hl = t->psk_len;
	uint8_t es[TLS13_MAX_HASH], bk[TLS13_MAX_HASH], th[TLS13_MAX_HASH];
	int ret = -1;

	if (tls13_early_secret(hl, t->psk, es) != 0 ||
	    tls13_derive_secret(hl, es, "res binder", NULL, bk) != 0)
		goto out;
	if (c->flags & F_HRR) {
		if (tls13_hash_peek(th_ctx(c), msg, trunc, th) != 0)
			goto out;
	} else if (tls13_hash(hl, msg, trunc, th) != 0)
		goto out;
	if (tls13_finished(hl, bk, th, out) != 0)
		goto out;
	ret = 0;
out:
	OPENSSL_cleanse(es, sizeof(es));
	OPENSSL_cleanse(bk, sizeof(bk));
	return ret;
}

/* Build and queue the ClientHello (§4.1.2); after a HelloRetryRequest with
 * @a cookie when the server sent one. */
static int
send_client_hello(tls13_conn *c, const uint8_t *cookie, size_t cookielen)
{
	const tls13_config *cfg = c->cfg;
	const uint16_t *l;
	uint8_t *rec, pub[65];
	tls13_wbuf w;
	size_t n, i, at, list, ext, msg, body, binders = 0, nshares, hl = 0;
	uint32_t age;
	int err = TLS13_ALERT_INTERNAL_ERROR;

	/* §D.4: the dummy CCS goes before the second ClientHello. */
	if (cfg->compat_mode && (c->flags & F_HRR) &&
	    !(c->flags & F_CCS_SENT)) {
		if ((rec = tx_reserve(c, 6)) == NULL)
			return TLS13_ERR_BUFFER;
		memcpy(rec, "\x14\x03\x03\x00\x01\x01", 6);
		tx_commit(c, 6);
		c->flags |= F_CCS_SENT;
	}
	/* The builder below stops at the end of the buffer (w.err): what
	 * is left of it, however small, is all the ClientHello may take. */
	if ((rec = tx_reserve(c, TLS13_HDR + 4)) == NULL)
		return TLS13_ERR_BUFFER;
	tls13_wbuf_init(&w, rec, c->txcap - c->tx_end);
	tls13_put_u8(&w, TLS13_CT_HANDSHAKE);
	/* §5.1: legacy_record_version 0x0301 for the first ClientHello. */
	tls13_put_u16(&w, (c->flags & F_HRR) ? 0x0303 : 0x0301);
	at = tls13_put_begin(&w, 2);
	msg = w.len;

	if (cfg->test != NULL && ((!(c->flags & F_HRR) &&
	    cfg->test->client_hello != NULL) || ((c->flags & F_HRR) &&
	    cfg->test->client_hello2 != NULL))) {
		/* Known-answer tests: a ClientHello taken from a trace. */
		const uint8_t *ch = (c->flags & F_HRR) ?
		    cfg->test->client_hello2 : cfg->test->client_hello;
		size_t chlen = (c->flags & F_HRR) ?
		    cfg->test->client_hello2_len : cfg->test->client_hello_len;
		uint16_t g;

		tls13_put_bytes(&w, ch, chlen);
		if (w.err || chlen < 4 + 2 + 32 + 1)
			return TLS13_ERR_CONFIG;
		memcpy(c->random, w.base + msg + 6, 32);
		if (w.base[msg + 38] == 32 && chlen > 71)
			memcpy(c->session_id, w.base + msg + 39, 32);
		/* The trace's share must come from the fixed key. */
		g = (c->flags & F_HRR) ? c->group :
		    LIST(c, groups, default_groups, ngroups)[0];
		EVP_PKEY_free(c->kex[0]);
		if (tls13_kex_keygen(g, g == TLS13_GROUP_X25519 ?
		    cfg->test->x25519_private : cfg->test->p256_private,
		    &c->kex[0], pub) != 0)
			return TLS13_ALERT_INTERNAL_ERROR;
		if (c->flags & F_PSK) {
			hl = c->ticket->psk_len;
			binders = w.len - (2 + 1 + hl);
		}
		goto finish;
	}

	tls13_put_u8(&w, HT_CLIENT_HELLO);
	body = tls13_put_begin(&w, 3);
	tls13_put_u16(&w, 0x0303);               /* legacy_version */
	tls13_put_bytes(&w, c->random, 32);
	tls13_put_u8(&w, cfg->compat_mode ? 32 : 0);
	if (cfg->compat_mode)
		tls13_put_bytes(&w, c->session_id, 32);
	list = tls13_put_begin(&w, 2);
	l = LIST(c, suites, default_suites, nsuites);
	if (c->flags & F_PSK_SUITE)
		tls13_put_u16(&w, c->ticket->suite);
	else
		for (i = 0; i < NLIST(c, default_suites, nsuites); i++)
			tls13_put_u16(&w, l[i]);
	tls13_put_end(&w, list, 2);
	tls13_put_u8(&w, 1);                     /* legacy_compression */
	tls13_put_u8(&w, 0);
	ext = tls13_put_begin(&w, 2);

	if (c->flags & F_SNI) {
		/* RFC 6066 §3 */
		n = strlen(cfg->server_name);
		at = (size_t)put_ext_begin(&w, EXT_SERVER_NAME);
		tls13_put_u16(&w, (uint16_t)(n + 3));
		tls13_put_u8(&w, 0);             /* host_name */
		tls13_put_u16(&w, (uint16_t)n);
		tls13_put_bytes(&w, cfg->server_name, n);
		tls13_put_end(&w, at, 2);
	}
	at = (size_t)put_ext_begin(&w, EXT_SUPPORTED_GROUPS);
	list = tls13_put_begin(&w, 2);
	l = LIST(c, groups, default_groups, ngroups);
	for (i = 0; i < NLIST(c, default_groups, ngroups); i++)
		tls13_put_u16(&w, l[i]);
	tls13_put_end(&w, list, 2);
	tls13_put_end(&w, at, 2);

	at = (size_t)put_ext_begin(&w, EXT_KEY_SHARE);
	list = tls13_put_begin(&w, 2);
	nshares = (c->flags & F_HRR) ? 1 :
	    (cfg->nkeyshares ? cfg->nkeyshares : 1);
	for (i = 0; i < nshares; i++) {
		uint16_t g = (c->flags & F_HRR) ? c->group : l[i];
		const uint8_t *fixed = (cfg->test && i == 0 &&
		    g == TLS13_GROUP_X25519) ? cfg->test->x25519_private : NULL;

		EVP_PKEY_free(c->kex[i]);
		if (tls13_kex_keygen(g, fixed, &c->kex[i], pub) != 0)
			return TLS13_ALERT_INTERNAL_ERROR;
		tls13_put_u16(&w, g);
		tls13_put_u16(&w, (uint16_t)tls13_kex_publen(g));
		tls13_put_bytes(&w, pub, tls13_kex_publen(g));
	}
	tls13_put_end(&w, list, 2);
	tls13_put_end(&w, at, 2);

	at = (size_t)put_ext_begin(&w, EXT_VERSIONS);
	tls13_put_u8(&w, 2);
	tls13_put_u16(&w, 0x0304);
	tls13_put_end(&w, at, 2);

	at = (size_t)put_ext_begin(&w, EXT_SIG_ALGS);
	list = tls13_put_begin(&w, 2);
	l = LIST(c, sigalgs, default_sigalgs, nsigalgs);
	for (i = 0; i < NLIST(c, default_sigalgs, nsigalgs); i++)
		tls13_put_u16(&w, l[i]);
	tls13_put_end(&w, list, 2);
	tls13_put_end(&w, at, 2);

	if (cfg->max_fragment) {
		/* RFC 6066 §4: 2^9 -> 1 ... 2^12 -> 4 */
		at = (size_t)put_ext_begin(&w, EXT_MAX_FRAGMENT);
		tls13_put_u8(&w, cfg->max_fragment == 512 ? 1 :
		    cfg->max_fragment == 1024 ? 2 :
		    cfg->max_fragment == 2048 ? 3 : 4);
		tls13_put_end(&w, at, 2);
	}
	if (cfg->record_size_limit) {
		/* RFC 8449 §4: in TLS 1.3 the limit counts the inner content
		 * type, hence + 1. */
		at = (size_t)put_ext_begin(&w, EXT_RECORD_LIMIT);
		tls13_put_u16(&w, (uint16_t)(cfg->record_size_limit + 1));
		tls13_put_end(&w, at, 2);
	}
	if (cfg->alpn != NULL) {
		at = (size_t)put_ext_begin(&w, EXT_ALPN);
		tls13_put_u16(&w, (uint16_t)cfg->alpn_len);
		tls13_put_bytes(&w, cfg->alpn, cfg->alpn_len);
		tls13_put_end(&w, at, 2);
	}
	if (cookie != NULL) {
		at = (size_t)put_ext_begin(&w, EXT_COOKIE);
		tls13_put_u16(&w, (uint16_t)cookielen);
		tls13_put_bytes(&w, cookie, cookielen);
		tls13_put_end(&w, at, 2);
	}
	if (cfg->on_ticket != NULL || (c->flags & F_PSK)) {
		/* §4.2.9: without it the server sends no tickets. */
		at = (size_t)put_ext_begin(&w, EXT_PSK_MODES);
		tls13_put_u8(&w, 1);
		tls13_put_u8(&w, 1);             /* psk_dhe_ke */
		tls13_put_end(&w, at, 2);
	}
	if (c->flags & F_PSK) {
		/* §4.2.11: pre_shared_key MUST be the last extension. */
		const tls13_ticket *t = c->ticket;

		hl = t->psk_len;
		age = (uint32_t)(now_ms(c) - t->issued_ms) + t->age_add;
		at = (size_t)put_ext_begin(&w, EXT_PSK);
		list = tls13_put_begin(&w, 2);
		tls13_put_u16(&w, t->len);
		tls13_put_bytes(&w, t->ticket, t->len);
		tls13_put_u32(&w, age);
		tls13_put_end(&w, list, 2);
		binders = w.len;
		tls13_put_u16(&w, (uint16_t)(hl + 1));
		tls13_put_u8(&w, (uint8_t)hl);
		tls13_put_bytes(&w, c->random, hl); /* placeholder */
		tls13_put_end(&w, at, 2);
	}
	tls13_put_end(&w, ext, 2);
	tls13_put_end(&w, body, 3);
finish:
	tls13_put_end(&w, 3, 2);
	if (w.err)
		return TLS13_ERR_BUFFER;
	if (binders != 0 &&
	    psk_binder(c, w.base + msg, binders - msg,
	    w.base + w.len - hl) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	if (th_add(c, w.base + msg, w.len - msg) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	tx_commit(c, w.len);
	err = 0;
	return err;
}

/* ------------------------------------------------------ message handlers */

/* Reject duplicate extensions (§4.2) among the types we know (< 64). */
static int
ext_seen(uint64_t *seen, uint16_t type)
{
	if (type >= 64)
		return 0;
	if (*seen & ((uint64_t)1 << type))
		return 1;
	*seen |= (uint64_t)1 << type;
	return 0;
}

static int
on_server_hello(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg, size_t len)
{
	tls13_rbuf sid, exts, data;
	const uint8_t *random, *share = NULL, *cookie = NULL;
	uint16_t version, suite, type, version_ext = 0, share_group = 0;
	uint16_t selected = 0xffff;
	uint8_t comp, shared[32], th[TLS13_MAX_HASH], secret[TLS13_MAX_HASH];
	uint8_t mh[4 + TLS13_MAX_HASH];
	size_t share_len = 0, cookie_len = 0, i, hl;
	uint64_t seen = 0;
	int hrr, idx = -1, ret = TLS13_ALERT_DECODE_ERROR;

	if (tls13_get_u16(b, &version) != 0 ||
	    tls13_get_bytes(b, 32, &random) != 0 ||
	    tls13_get_block8(b, &sid) != 0 ||
	    tls13_get_u16(b, &suite) != 0 ||
	    tls13_get_u8(b, &comp) != 0 ||
	    tls13_get_block16(b, &exts) != 0 || tls13_rbuf_left(b) != 0)
		goto out;
	hrr = memcmp(random, hrr_random, 32) == 0;
	while (tls13_rbuf_left(&exts) > 0) {
		if (tls13_get_u16(&exts, &type) != 0 ||
		    tls13_get_block16(&exts, &data) != 0)
			goto out;
		if (ext_seen(&seen, type)) {
			ret = TLS13_ALERT_ILLEGAL_PARAMETER;
			goto out;
		}
		switch (type) {
		case EXT_VERSIONS:
			if (tls13_get_u16(&data, &version_ext) != 0)
				goto out;
			break;
		case EXT_KEY_SHARE:
			if (tls13_get_u16(&data, &share_group) != 0)
				goto out;
			if (!hrr) {
				tls13_rbuf ks;

				if (tls13_get_block16(&data, &ks) != 0)
					goto out;
				share = ks.base;
				share_len = ks.len;
			}
			break;
		case EXT_PSK:
			if (hrr || !(c->flags & F_PSK)) {
				ret = TLS13_ALERT_UNSUPPORTED_EXTENSION;
				goto out;
			}
			if (tls13_get_u16(&data, &selected) != 0)
				goto out;
			break;
		case EXT_COOKIE:
			if (!hrr) {
				ret = TLS13_ALERT_UNSUPPORTED_EXTENSION;
				goto out;
			}
			{
				tls13_rbuf ck;

				if (tls13_get_block16(&data, &ck) != 0 ||
				    ck.len == 0)
					goto out;
				cookie = ck.base;
				cookie_len = ck.len;
			}
			break;
		default:
			/* §4.2: a response to something never offered. */
			ret = TLS13_ALERT_UNSUPPORTED_EXTENSION;
			goto out;
		}
		if (tls13_rbuf_left(&data) != 0)
			goto out;
	}
	/* §4.2.1: no supported_versions means TLS 1.2 or older. */
	if (version_ext == 0) {
		ret = TLS13_ALERT_PROTOCOL_VERSION;
		goto out;
	}
	ret = TLS13_ALERT_ILLEGAL_PARAMETER;
	if (version_ext != 0x0304 || version != 0x0303)
		goto out;
	/* §4.1.3: downgrade sentinels "DOWNGRD\x01" / "DOWNGRD\x00". */
	if (memcmp(random + 24, "DOWNGRD", 7) == 0 &&
	    (random[31] == 0 || random[31] == 1))
		goto out;
	/* §4.1.3: legacy_session_id_echo must match what we sent. */
	if (sid.len != (c->cfg->compat_mode ? 32u : 0u) ||
	    (sid.len && CRYPTO_memcmp(sid.base, c->session_id, 32) != 0))
		goto out;
	if (comp != 0 || !suite_offered(c, suite))
		goto out;
	if ((c->flags & F_HRR) && suite != c->suite)
		goto out;
	c->suite = suite;
	c->hashlen = (uint8_t)(hl = tls13_suite_hashlen(suite));

	if (hrr) {
		/* §4.1.4: one HelloRetryRequest only. */
		if (c->flags & F_HRR) {
			ret = TLS13_ALERT_UNEXPECTED_MESSAGE;
			goto out;
		}
		if (share_group == 0 && cookie == NULL)
			goto out;
		if (share_group != 0) {
			const uint16_t *g = LIST(c, groups, default_groups,
			    ngroups);
			size_t ng = NLIST(c, default_groups, ngroups);
			size_t ns = c->cfg->nkeyshares ? c->cfg->nkeyshares : 1;

			/* §4.2.8: offered, and not already shared. */
			if (!in_list(g, ng, share_group) ||
			    in_list(g, ns, share_group))
				goto out;
			c->group = share_group;
		} else {
			c->group = LIST(c, groups, default_groups, ngroups)[0];
		}
		/* §4.4.1: ClientHello1 is replaced by message_hash. */
		mh[0] = HT_MESSAGE_HASH;
		mh[1] = 0;
		mh[2] = 0;
		mh[3] = (uint8_t)hl;
		th_select(c);
		if (th_hash(c, mh + 4) != 0)
			goto internal;
		tls13_hash_free(&c->th[hl == 48 ? 1 : 0]);
		if (tls13_hash_new(&c->th[hl == 48 ? 1 : 0], hl) != 0 ||
		    th_add(c, mh, 4 + hl) != 0 || th_add(c, msg, len) != 0)
			goto internal;
		c->flags |= F_HRR;
		/* §4.1.4: drop a PSK whose hash does not fit the suite. */
		if ((c->flags & F_PSK) && c->ticket->psk_len != hl)
			c->flags &= ~F_PSK;
		EVP_PKEY_free(c->kex[1]);
		c->kex[1] = NULL;
		ret = send_client_hello(c, cookie, cookie_len);
		goto out;
	}

	/* A real ServerHello. */
	if (share == NULL) {
		ret = TLS13_ALERT_MISSING_EXTENSION;
		goto out;
	}
	for (i = 0; i < 2; i++)
		if (c->kex[i] != NULL &&
		    share_group == ((c->flags & F_HRR) ? c->group :
		    LIST(c, groups, default_groups, ngroups)[i]))
			idx = (int)i;
	if (idx < 0)
		goto out;
	c->group = share_group;
	if (selected != 0xffff) {
		/* §4.2.11: one identity offered; hash must match. */
		if (selected != 0 || c->ticket->psk_len != hl)
			goto out;
		c->flags |= F_RESUMED;
	}
	if (tls13_kex_derive(c->kex[idx], share_group, share, share_len,
	    shared) != 0)
		goto out;
	th_select(c);
	if (th_add(c, msg, len) != 0 || th_hash(c, th) != 0)
		goto internal;
	/* §7.1: Early Secret -> Handshake Secret -> traffic secrets. */
	if (tls13_early_secret(hl, (c->flags & F_RESUMED) ? c->ticket->psk :
	    NULL, c->master) != 0 ||
	    tls13_next_secret(hl, c->master, shared, 32) != 0 ||
	    tls13_derive_secret(hl, c->master, "c hs traffic", th,
	    secret) != 0 ||
	    tls13_dir_set(&c->wr, suite, hl, secret, 1) != 0 ||
	    tls13_derive_secret(hl, c->master, "s hs traffic", th,
	    secret) != 0 ||
	    tls13_dir_set(&c->rd, suite, hl, secret, 0) != 0 ||
	    tls13_next_secret(hl, c->master, NULL, 0) != 0)
		goto internal;
	EVP_PKEY_free(c->kex[0]);
	EVP_PKEY_free(c->kex[1]);
	c->kex[0] = c->kex[1] = NULL;
	c->flags |= F_RD_KEYS | F_WR_KEYS | F_KEYCHANGE;
	c->state = TLS13_ST_WAIT_EE;
	ret = 0;
	goto out;
internal:
	ret = TLS13_ALERT_INTERNAL_ERROR;
out:
	OPENSSL_cleanse(shared, sizeof(shared));
	OPENSSL_cleanse(secret, sizeof(secret));
	return ret;
}

/* 1 if @a p/@a n is one of the protocols in the configured ALPN list. */
static int
alpn_offered(const tls13_config *cfg, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (cfg->alpn != NULL && i < cfg->alpn_len) {
		if (cfg->alpn[i] == n && i + 1 + n <= cfg->alpn_len &&
		    memcmp(cfg->alpn + i + 1, p, n) == 0)
			return 1;
		i += 1 + cfg->alpn[i];
	}
	return 0;
}

static int
on_encrypted_extensions(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg,
    size_t len)
{
	const tls13_config *cfg = c->cfg;
	tls13_rbuf exts, data, names, name;
	uint16_t type, v;
	uint8_t code;
	uint64_t seen = 0;
	int mfl = 0, rsl = 0;

	if (tls13_get_block16(b, &exts) != 0 || tls13_rbuf_left(b) != 0)
		return TLS13_ALERT_DECODE_ERROR;
	while (tls13_rbuf_left(&exts) > 0) {
		if (tls13_get_u16(&exts, &type) != 0 ||
		    tls13_get_block16(&exts, &data) != 0)
			return TLS13_ALERT_DECODE_ERROR;
		if (ext_seen(&seen, type))
			return TLS13_ALERT_ILLEGAL_PARAMETER;
		switch (type) {
		case EXT_SERVER_NAME:
			/* RFC 6066 §3: an empty acknowledgement. */
			if (!(c->flags & F_SNI))
				return TLS13_ALERT_UNSUPPORTED_EXTENSION;
			if (data.len != 0)
				return TLS13_ALERT_DECODE_ERROR;
			break;
		case EXT_SUPPORTED_GROUPS:
			/* §4.2.7: the server's preference, informational. */
			if (tls13_get_block16(&data, &names) != 0 ||
			    tls13_rbuf_left(&data) != 0)
				return TLS13_ALERT_DECODE_ERROR;
			break;
		case EXT_MAX_FRAGMENT:
			if (!cfg->max_fragment)
				return TLS13_ALERT_UNSUPPORTED_EXTENSION;
			/* RFC 6066 §4: the same value, else illegal_parameter. */
			if (tls13_get_u8(&data, &code) != 0 ||
			    tls13_rbuf_left(&data) != 0)
				return TLS13_ALERT_DECODE_ERROR;
			if (code < 1 || code > 4 ||
			    (512u << (code - 1)) != cfg->max_fragment)
				return TLS13_ALERT_ILLEGAL_PARAMETER;
			mfl = 1;
			break;
		case EXT_RECORD_LIMIT:
			if (!cfg->record_size_limit)
				return TLS13_ALERT_UNSUPPORTED_EXTENSION;
			if (tls13_get_u16(&data, &v) != 0 ||
			    tls13_rbuf_left(&data) != 0)
				return TLS13_ALERT_DECODE_ERROR;
			/* RFC 8449 §4: below 64 is illegal_parameter; TLS 1.3
			 * values count the content type byte. */
			if (v < 64)
				return TLS13_ALERT_ILLEGAL_PARAMETER;
			c->tx_limit = v - 1 < TLS13_MAX_PLAINTEXT ? v - 1 :
			    TLS13_MAX_PLAINTEXT;
			rsl = 1;
			break;
		case EXT_ALPN:
			/* RFC 7301 §3.1: exactly one name we offered. */
			if (cfg->alpn == NULL)
				return TLS13_ALERT_UNSUPPORTED_EXTENSION;
			if (tls13_get_block16(&data, &names) != 0 ||
			    tls13_get_block8(&names, &name) != 0 ||
			    name.len == 0 || tls13_rbuf_left(&names) != 0 ||
			    tls13_rbuf_left(&data) != 0)
				return TLS13_ALERT_DECODE_ERROR;
			if (!alpn_offered(cfg, name.base, name.len) ||
			    name.len >= sizeof(c->alpn))
				return TLS13_ALERT_ILLEGAL_PARAMETER;
			memcpy(c->alpn, name.base, name.len);
			c->alpn[name.len] = 0;
			break;
		case EXT_KEY_SHARE:
		case EXT_VERSIONS:
		case EXT_PSK:
		case EXT_PSK_MODES:
		case EXT_COOKIE:
		case EXT_SIG_ALGS:
			/* §4.2: known, but not allowed in this message. */
			return TLS13_ALERT_ILLEGAL_PARAMETER;
		default:
			/* early_data and all else: never offered (§4.2). */
			return TLS13_ALERT_UNSUPPORTED_EXTENSION;
		}
	}
	/* RFC 8449 §5: record_size_limit wins over max_fragment_length. */
	if (rsl) {
		c->rx_limit = cfg->record_size_limit;
		/* RFC 8449 §4: the server's value is an upper bound for our
		 * records.  A client that asked for small records sends no
		 * larger ones either, so one small send buffer suffices
		 * (tls13_tx_needed). */
		if (c->tx_limit > c->rx_limit)
			c->tx_limit = c->rx_limit;
		c->flags |= F_LIMIT_NEG;
	} else if (mfl) {
		c->rx_limit = c->tx_limit = cfg->max_fragment;
		c->flags |= F_LIMIT_NEG;
	} else if ((cfg->max_fragment || cfg->record_size_limit) &&
	    cfg->record_fallback == TLS13_FALLBACK_REFUSE) {
		return TLS13_ERR_RECORD_LIMIT;
	}
	/* Small records: a keyed AEAD context (about 1 KB with OpenSSL 3)
	 * would outweigh the record buffers, so it lives for one record.
	 * Costs a key derivation and setup per record (docs/tls13.md). */
	c->rd.per_record = !c->cfg->keep_aead &&
	    c->rx_limit <= TLS13_SMALL_RECORD;
	c->wr.per_record = !c->cfg->keep_aead &&
	    c->tx_limit <= TLS13_SMALL_RECORD;
	if (th_add(c, msg, len) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	c->state = (c->flags & F_RESUMED) ? TLS13_ST_WAIT_FIN :
	    TLS13_ST_WAIT_CERT_CR;
	return 0;
}

static int
on_cert_request(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg, size_t len)
{
	const tls13_config *cfg = c->cfg;
	tls13_rbuf ctx, exts, data, algs;
	uint16_t type, alg;
	int have_algs = 0;

	if (tls13_get_block8(b, &ctx) != 0 ||
	    tls13_get_block16(b, &exts) != 0 || tls13_rbuf_left(b) != 0)
		return TLS13_ALERT_DECODE_ERROR;
	/* §4.3.2: empty context during the handshake. */
	if (ctx.len != 0)
		return TLS13_ALERT_ILLEGAL_PARAMETER;
	c->client_sigalg = 0;
	while (tls13_rbuf_left(&exts) > 0) {
		if (tls13_get_u16(&exts, &type) != 0 ||
		    tls13_get_block16(&exts, &data) != 0)
			return TLS13_ALERT_DECODE_ERROR;
		if (type != EXT_SIG_ALGS)
			continue;
		if (have_algs || tls13_get_block16(&data, &algs) != 0 ||
		    algs.len == 0)
			return TLS13_ALERT_DECODE_ERROR;
		have_algs = 1;
		while (tls13_get_u16(&algs, &alg) == 0) {
			if (c->client_sigalg == 0 && cfg->client_key != NULL &&
			    tls13_sig_supported(alg) &&
			    tls13_sig_key_matches(cfg->client_key, alg))
				c->client_sigalg = alg;
		}
	}
	/* §4.3.2: signature_algorithms MUST be present. */
	if (!have_algs)
		return TLS13_ALERT_MISSING_EXTENSION;
	if (th_add(c, msg, len) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	c->cert_req = 1;
	c->state = TLS13_ST_WAIT_CERT;
	return 0;
}

static int
on_certificate(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg, size_t len)
{
	tls13_rbuf ctx, list;
	int err;

	if (tls13_get_block8(b, &ctx) != 0 ||
	    tls13_get_block24(b, &list) != 0 || tls13_rbuf_left(b) != 0)
		return TLS13_ALERT_DECODE_ERROR;
	if (ctx.len != 0)
		return TLS13_ALERT_ILLEGAL_PARAMETER;
	/* Chain validation is the handshake's memory peak: the read context
	 * (about 1 KB) is rebuilt for the next record instead of held
	 * across it. */
	tls13_dir_idle(&c->rd);
	if ((err = tls13_x509_verify(c->cfg, list.base, list.len,
	    &c->peer_key, &c->x509_error)) != 0)
		return err;
	if (th_add(c, msg, len) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	c->state = TLS13_ST_WAIT_CV;
	return 0;
}

/* §4.4.3: 64 spaces, the context string, a zero byte, the hash. */
static size_t
cv_content(tls13_conn *c, int server, uint8_t *out)
{
	static const char s[] = "TLS 1.3, server CertificateVerify";
	static const char cl[] = "TLS 1.3, client CertificateVerify";

	memset(out, 0x20, 64);
	memcpy(out + 64, server ? s : cl, sizeof(s));
	if (th_hash(c, out + 64 + sizeof(s)) != 0)
		return 0;
	return 64 + sizeof(s) + c->hashlen;
}

static int
on_cert_verify(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg, size_t len)
{
	uint8_t content[64 + 34 + TLS13_MAX_HASH];
	tls13_rbuf sig;
	uint16_t alg;
	size_t n;

	if (tls13_get_u16(b, &alg) != 0 || tls13_get_block16(b, &sig) != 0 ||
	    tls13_rbuf_left(b) != 0)
		return TLS13_ALERT_DECODE_ERROR;
	/* §4.4.3: a scheme we offered, matching the key. */
	if (!in_list(LIST(c, sigalgs, default_sigalgs, nsigalgs),
	    NLIST(c, default_sigalgs, nsigalgs), alg) ||
	    !tls13_sig_key_matches(c->peer_key, alg))
		return TLS13_ALERT_ILLEGAL_PARAMETER;
	if ((n = cv_content(c, 1, content)) == 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	if (tls13_sig_verify(c->peer_key, alg, content, n, sig.base,
	    sig.len) != 0)
		return TLS13_ALERT_DECRYPT_ERROR;
	EVP_PKEY_free(c->peer_key);
	c->peer_key = NULL;
	if (th_add(c, msg, len) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	c->state = TLS13_ST_WAIT_FIN;
	return 0;
}

static int
on_finished(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg, size_t len)
{
	uint8_t th[TLS13_MAX_HASH], expect[TLS13_MAX_HASH];
	uint8_t cs[TLS13_MAX_HASH], ss[TLS13_MAX_HASH];
	size_t hl = c->hashlen;
	int ret = TLS13_ALERT_INTERNAL_ERROR;

	if (tls13_rbuf_left(b) != hl) {
		ret = TLS13_ALERT_DECODE_ERROR;
		goto out;
	}
	if (th_hash(c, th) != 0 ||
	    tls13_finished(hl, c->rd.secret, th, expect) != 0)
		goto out;
	/* §4.4.4: constant-time comparison, decrypt_error on mismatch. */
	if (CRYPTO_memcmp(expect, b->base, hl) != 0) {
		ret = TLS13_ALERT_DECRYPT_ERROR;
		goto out;
	}
	if (th_add(c, msg, len) != 0 || th_hash(c, th) != 0 ||
	    tls13_derive_secret(hl, c->master, "c ap traffic", th, cs) != 0 ||
	    tls13_derive_secret(hl, c->master, "s ap traffic", th, ss) != 0 ||
	    tls13_dir_set(&c->rd, c->suite, hl, ss, 0) != 0)
		goto out;
	c->flags |= F_KEYCHANGE;
	if ((ret = send_flight(c)) != 0)
		goto out;
	ret = TLS13_ALERT_INTERNAL_ERROR;
	if (c->cfg->on_ticket != NULL) {
		if (th_hash(c, th) != 0 ||
		    tls13_derive_secret(hl, c->master, "res master", th,
		    c->res_master) != 0)
			goto out;
	}
	if (tls13_dir_set(&c->wr, c->suite, hl, cs, 1) != 0)
		goto out;
	OPENSSL_cleanse(c->master, sizeof(c->master));
	hs_release(c);
	c->state = TLS13_ST_CONNECTED;
	c->ticket = NULL;
	ret = 0;
out:
	OPENSSL_cleanse(cs, sizeof(cs));
	OPENSSL_cleanse(ss, sizeof(ss));
	OPENSSL_cleanse(expect, sizeof(expect));
	return ret;
}

/* The client's second flight (§4.4): [CCS] [Certificate CertificateVerify]
 * Finished, under the client handshake traffic key. */
static int
send_flight(tls13_conn *c)
{
	const tls13_config *cfg = c->cfg;
	uint8_t content[64 + 34 + TLS13_MAX_HASH], th[TLS13_MAX_HASH];
	uint8_t *p, *rec;
	tls13_wbuf w;
	size_t stage, m, at, list, i, n, siglen;
	X509 *x;
	int ret = TLS13_ERR_BUFFER, nchain;

	if (cfg->compat_mode && !(c->flags & F_CCS_SENT)) {
		if ((rec = tx_reserve(c, 6)) == NULL)
			return TLS13_ERR_BUFFER;
		memcpy(rec, "\x14\x03\x03\x00\x01\x01", 6);
		tx_commit(c, 6);
		c->flags |= F_CCS_SENT;
	}
	stage = stage_begin(c, &w);
	if (c->cert_req) {
		int send = cfg->client_cert != NULL && c->client_sigalg != 0;

		m = w.len;
		tls13_put_u8(&w, HT_CERTIFICATE);
		at = tls13_put_begin(&w, 3);
		tls13_put_u8(&w, 0);             /* request context */
		list = tls13_put_begin(&w, 3);
		nchain = cfg->client_chain ? sk_X509_num(cfg->client_chain) : 0;
		for (i = 0; send && i <= (size_t)nchain; i++) {
			x = i == 0 ? cfg->client_cert :
			    sk_X509_value(cfg->client_chain, (int)i - 1);
			n = (size_t)i2d_X509(x, NULL);
			tls13_put_u24(&w, (uint32_t)n);
			if (w.err || w.cap - w.len < n + 2)
				return TLS13_ERR_BUFFER;
			p = w.base + w.len;
			i2d_X509(x, &p);
			w.len += n;
			tls13_put_u16(&w, 0);    /* extensions */
		}
		tls13_put_end(&w, list, 3);
		tls13_put_end(&w, at, 3);
		if (w.err || th_add(c, w.base + m, w.len - m) != 0)
			return TLS13_ERR_BUFFER;
		if (send) {
			if ((n = cv_content(c, 0, content)) == 0)
				return TLS13_ALERT_INTERNAL_ERROR;
			m = w.len;
			tls13_put_u8(&w, HT_CERT_VERIFY);
			at = tls13_put_begin(&w, 3);
			tls13_put_u16(&w, c->client_sigalg);
			list = tls13_put_begin(&w, 2);
			if (w.err || tls13_sig_sign(cfg->client_key,
			    c->client_sigalg, content, n, w.base + w.len,
			    w.cap - w.len, &siglen) != 0)
				return TLS13_ALERT_INTERNAL_ERROR;
			w.len += siglen;
			tls13_put_end(&w, list, 2);
			tls13_put_end(&w, at, 3);
			if (w.err || th_add(c, w.base + m, w.len - m) != 0)
				return TLS13_ERR_BUFFER;
		}
	}
	m = w.len;
	tls13_put_u8(&w, HT_FINISHED);
	tls13_put_u24(&w, c->hashlen);
	if (w.err || w.cap - w.len < c->hashlen || th_hash(c, th) != 0 ||
	    tls13_finished(c->hashlen, c->wr.secret, th, w.base + w.len) != 0)
		goto out;
	w.len += c->hashlen;
	if (th_add(c, w.base + m, w.len - m) != 0)
		goto out;
	/* Enough room for the records in front of the stage? */
	if ((w.len / c->tx_limit + 1) * TLS13_SEAL_OVERHEAD >
	    stage - c->tx_end)
		goto out;
	ret = tx_records(c, TLS13_CT_HANDSHAKE, stage, w.len);
out:
	return ret;
}

static int
on_new_ticket(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg, size_t len)
{
	tls13_rbuf nonce, ticket, exts;
	tls13_ticket t;
	uint32_t lifetime, age_add;
	int ret = TLS13_ALERT_DECODE_ERROR;

	(void)msg;
	(void)len;
	if (tls13_get_u32(b, &lifetime) != 0 ||
	    tls13_get_u32(b, &age_add) != 0 ||
	    tls13_get_block8(b, &nonce) != 0 ||
	    tls13_get_block16(b, &ticket) != 0 || ticket.len == 0 ||
	    tls13_get_block16(b, &exts) != 0 || tls13_rbuf_left(b) != 0)
		return ret;
	/* §4.6.1: at most seven days. */
	if (lifetime > 604800)
		return TLS13_ALERT_ILLEGAL_PARAMETER;
	if (c->cfg->on_ticket == NULL || ticket.len > TLS13_TICKET_MAX ||
	    lifetime == 0)
		return 0;
	memset(&t, 0, sizeof(t));
	t.suite = c->suite;
	t.psk_len = c->hashlen;
	t.lifetime_s = lifetime;
	t.age_add = age_add;
	t.issued_ms = now_ms(c);
	t.len = (uint16_t)ticket.len;
	memcpy(t.ticket, ticket.base, ticket.len);
	/* §4.6.1: PSK = HKDF-Expand-Label(resumption_master_secret,
	 * "resumption", ticket_nonce, Hash.length) */
	if (tls13_expand_label(c->hashlen, c->res_master, "resumption",
	    nonce.base, nonce.len, t.psk, c->hashlen) != 0) {
		ret = TLS13_ALERT_INTERNAL_ERROR;
		goto out;
	}
	c->cfg->on_ticket(c->cfg->ticket_arg, &t);
	ret = 0;
out:
	OPENSSL_cleanse(&t, sizeof(t));
	return ret;
}

static int
on_key_update(tls13_conn *c, tls13_rbuf *b, const uint8_t *msg, size_t len)
{
	uint8_t req;

	(void)msg;
	(void)len;
	if (tls13_get_u8(b, &req) != 0 || tls13_rbuf_left(b) != 0)
		return TLS13_ALERT_DECODE_ERROR;
	/* §4.6.3 */
	if (req > 1)
		return TLS13_ALERT_ILLEGAL_PARAMETER;
	if (tls13_update_secret(c->hashlen, c->rd.secret) != 0 ||
	    tls13_dir_set(&c->rd, c->suite, c->hashlen, c->rd.secret, 0) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	c->flags |= F_KEYCHANGE;
	if (req == 1 && !(c->flags & F_CLOSE_SENT)) {
		c->ku_pending = 1;
		if (send_key_update(c, 0) == TLS13_ALERT_INTERNAL_ERROR)
			return TLS13_ALERT_INTERNAL_ERROR;
	}
	return 0;
}

/*
 * The handshake as a table (s2n style): in each state, the messages that
 * may arrive and their handler.  Anything else is unexpected_message.
 */
const struct tls13_hs_rule tls13_hs_table[] = {
	{ TLS13_ST_WAIT_SH,      HT_SERVER_HELLO,  on_server_hello },
	{ TLS13_ST_WAIT_EE,      HT_ENCRYPTED_EXT, on_encrypted_extensions },
	{ TLS13_ST_WAIT_CERT_CR, HT_CERT_REQUEST,  on_cert_request },
	{ TLS13_ST_WAIT_CERT_CR, HT_CERTIFICATE,   on_certificate },
	{ TLS13_ST_WAIT_CERT,    HT_CERTIFICATE,   on_certificate },
	{ TLS13_ST_WAIT_CV,      HT_CERT_VERIFY,   on_cert_verify },
	{ TLS13_ST_WAIT_FIN,     HT_FINISHED,      on_finished },
	{ TLS13_ST_CONNECTED,    HT_NEW_TICKET,    on_new_ticket },
	{ TLS13_ST_CONNECTED,    HT_KEY_UPDATE,    on_key_update },
	{ 0, 0, NULL },
};

const struct tls13_hs_rule *
tls13_hs_lookup(uint8_t state, uint8_t type)
{
	const struct tls13_hs_rule *r;

	for (r = tls13_hs_table; r->handler != NULL; r++)
		if (r->state == state && r->type == type)
			return r;
	return NULL;
}

/* Handle every complete message in the reassembly area rx[0..rx_hs). */
static int
hs_process(tls13_conn *c)
{
	const struct tls13_hs_rule *r;
	tls13_rbuf body;
	size_t off = 0, len;
	int err = 0;

	while (c->rx_hs - off >= 4 && c->state != TLS13_ST_ERROR) {
		len = (size_t)c->rx[off + 1] << 16 | (size_t)c->rx[off + 2] << 8 |
		    c->rx[off + 3];
		if (c->rx_hs - off - 4 < len) {
			/* The rest must fit beside a full record. */
			if (4 + len + TLS13_RECORD_SIZE(c->rx_limit) > c->rxcap)
				err = TLS13_ERR_BUFFER;
			break;
		}
		if ((r = tls13_hs_lookup(c->state, c->rx[off])) == NULL) {
			err = TLS13_ALERT_UNEXPECTED_MESSAGE;
			break;
		}
		tls13_rbuf_init(&body, c->rx + off + 4, len);
		c->flags &= ~F_KEYCHANGE;
		if ((err = r->handler(c, &body, c->rx + off, 4 + len)) != 0)
			break;
		off += 4 + len;
		/* §5.1: handshake messages MUST NOT span key changes. */
		if ((c->flags & F_KEYCHANGE) && off != c->rx_hs) {
			err = TLS13_ALERT_UNEXPECTED_MESSAGE;
			break;
		}
	}
	memmove(c->rx, c->rx + off, c->rx_hs - off);
	/* Raw input follows the reassembly area: slide it down too. */
	memmove(c->rx + c->rx_hs - off, c->rx + c->rx_pos,
	    c->rx_end - c->rx_pos);
	c->rx_end = c->rx_hs - off + (c->rx_end - c->rx_pos);
	c->rx_hs -= off;
	c->rx_pos = c->rx_hs;
	return err;
}

/* ---------------------------------------------------------- record input */

/* Process complete records until input runs out or application data is
 * pending.  Returns 0 or an error (not yet passed to fail()). */
static int
rx_process(tls13_conn *c)
{
	uint8_t *rec, type, inner;
	size_t len, ptlen;
	int err;

	while (c->app_len == 0 && c->err == 0 && c->rx_end - c->rx_pos >= 5) {
		rec = c->rx + c->rx_pos;
		type = rec[0];
		len = (size_t)rec[3] << 8 | rec[4];
		/* §5.1/§5.2: length limits before waiting for the body. */
		if (len > TLS13_MAX_PLAINTEXT + 256 ||
		    (!(c->flags & F_RD_KEYS) && len > TLS13_MAX_PLAINTEXT) ||
		    ((c->flags & F_RD_KEYS) && type == TLS13_CT_APP &&
		    len > (size_t)c->rx_limit + 256))
			return TLS13_ALERT_RECORD_OVERFLOW;
		if (c->rx_end - c->rx_pos < 5 + len) {
			if (c->rx_pos + 5 + len > c->rxcap)
				return TLS13_ERR_BUFFER;
			break;
		}
		if (c->state != TLS13_ST_CONNECTED)
			c->bytes_received += 5 + len;
		/* §5: a dummy change_cipher_spec may arrive until the
		 * server's Finished; it is dropped. */
		if (type == TLS13_CT_CCS) {
			if (len != 1 || rec[5] != 1 ||
			    c->state == TLS13_ST_CONNECTED || c->rx_hs != 0)
				return TLS13_ALERT_UNEXPECTED_MESSAGE;
			inner = TLS13_CT_CCS;
			ptlen = 0;
		} else if (c->flags & F_RD_KEYS) {
			if (type != TLS13_CT_APP)
				return TLS13_ALERT_UNEXPECTED_MESSAGE;
			if ((err = tls13_record_open(&c->rd, rec, 5 + len,
			    &inner, &ptlen)) != 0)
				return err;
			if (ptlen > c->rx_limit)
				return TLS13_ALERT_RECORD_OVERFLOW;
		} else {
			if (type != TLS13_CT_HANDSHAKE && type != TLS13_CT_ALERT)
				return TLS13_ALERT_UNEXPECTED_MESSAGE;
			inner = type;
			ptlen = len;
		}
		/* §5.1: no other record type inside a handshake message. */
		if (inner != TLS13_CT_HANDSHAKE && inner != TLS13_CT_CCS &&
		    c->rx_hs != 0)
			return TLS13_ALERT_UNEXPECTED_MESSAGE;
		switch (inner) {
		case TLS13_CT_CCS:
			c->rx_pos += 5 + len;
			break;
		case TLS13_CT_HANDSHAKE:
			if (ptlen == 0)
				return TLS13_ALERT_UNEXPECTED_MESSAGE;
			memmove(c->rx + c->rx_hs, rec + 5, ptlen);
			c->rx_hs += ptlen;
			c->rx_pos += 5 + len;
			if ((err = hs_process(c)) != 0)
				return err;
			continue;
		case TLS13_CT_ALERT:
			if (ptlen != 2)
				return TLS13_ALERT_DECODE_ERROR;
			c->rx_pos += 5 + len;
			/* §6.1: close_notify ends the read side;
			 * user_canceled is followed by it.  §6.2: every
			 * other alert is fatal. */
			if (rec[6] == TLS13_ALERT_CLOSE_NOTIFY) {
				c->flags |= F_CLOSE_RCVD;
				return 0;
			}
			if (rec[6] == TLS13_ALERT_USER_CANCELED)
				break;
			c->err = TLS13_ERR_PEER_ALERT(rec[6]);
			c->state = TLS13_ST_ERROR;
			return c->err;
		case TLS13_CT_APP:
			if (c->state != TLS13_ST_CONNECTED)
				return TLS13_ALERT_UNEXPECTED_MESSAGE;
			c->app_pos = c->rx_pos + 5;
			c->app_len = ptlen;
			c->rx_pos += 5 + len;
			break;
		default:
			return TLS13_ALERT_UNEXPECTED_MESSAGE;
		}
		if (c->app_len == 0) {
			memmove(c->rx + c->rx_hs, c->rx + c->rx_pos,
			    c->rx_end - c->rx_pos);
			c->rx_end -= c->rx_pos - c->rx_hs;
			c->rx_pos = c->rx_hs;
		}
		if (c->flags & F_CLOSE_RCVD)
			break;
	}
	return 0;
}

/* ------------------------------------------------------------ public API */

int
tls13_global_init(void)
{
	int ret = tls13_crypto_warmup();

	if (tls13_x509_global_init() != 0)
		ret = -1;
	return ret;
}

int
tls13_conn_init(tls13_conn *c, const tls13_config *cfg, uint8_t *rx,
    size_t rxcap, uint8_t *tx, size_t txcap)
{
	size_t i, n;
	const uint16_t *l;

	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->state = TLS13_ST_ERROR;
	c->err = TLS13_ERR_CONFIG;
	if (cfg->nsuites > TLS13_MAX_LIST || cfg->ngroups > TLS13_MAX_LIST ||
	    cfg->nsigalgs > TLS13_MAX_LIST || rxcap < 512 || txcap < 512 ||
	    rx == NULL || tx == NULL)
		return TLS13_ERR_CONFIG;
	for (i = 0; i < cfg->nsuites; i++)
		if (tls13_suite_hashlen(cfg->suites[i]) == 0)
			return TLS13_ERR_CONFIG;
	for (i = 0; i < cfg->ngroups; i++)
		if (tls13_kex_publen(cfg->groups[i]) == 0)
			return TLS13_ERR_CONFIG;
	for (i = 0; i < cfg->nsigalgs; i++)
		if (!tls13_sig_supported(cfg->sigalgs[i]))
			return TLS13_ERR_CONFIG;
	n = NLIST(c, default_groups, ngroups);
	if (cfg->nkeyshares > 2 || cfg->nkeyshares > n)
		return TLS13_ERR_CONFIG;
	if (cfg->max_fragment != 0 && cfg->max_fragment != 512 &&
	    cfg->max_fragment != 1024 && cfg->max_fragment != 2048 &&
	    cfg->max_fragment != 4096)
		return TLS13_ERR_CONFIG;
	if (cfg->record_size_limit != 0 && (cfg->record_size_limit < 64 ||
	    cfg->record_size_limit > TLS13_MAX_PLAINTEXT))
		return TLS13_ERR_CONFIG;
	if (cfg->store == NULL && !cfg->insecure_no_verify)
		return TLS13_ERR_CONFIG;
	for (i = 0; cfg->alpn != NULL && i < cfg->alpn_len;
	    i += 1 + cfg->alpn[i])
		if (cfg->alpn[i] == 0 || cfg->alpn[i] >= sizeof(c->alpn) ||
		    i + 1 + cfg->alpn[i] > cfg->alpn_len)
			return TLS13_ERR_CONFIG;
	if (cfg->alpn != NULL && (cfg->alpn_len == 0 || cfg->alpn_len > 255))
		return TLS13_ERR_CONFIG;
	if (cfg->server_name != NULL && strlen(cfg->server_name) > 255)
		return TLS13_ERR_CONFIG;
	c->rx = rx;
	c->rxcap = rxcap;
	c->tx = tx;
	c->txcap = txcap;
	c->rx_limit = c->tx_limit = TLS13_MAX_PLAINTEXT;
	l = LIST(c, suites, default_suites, nsuites);
	for (i = 0; i < NLIST(c, default_suites, nsuites); i++) {
		int k = tls13_suite_hashlen(l[i]) == 48;

		if (c->th[k] == NULL &&
		    tls13_hash_new(&c->th[k], k ? 48 : 32) != 0) {
			hs_release(c);
			return TLS13_ERR_CONFIG;
		}
	}
	/* RFC 6066 §3: literal IP addresses are not sent as SNI. */
	if (cfg->server_name != NULL && cfg->server_name[0] != 0 &&
	    strspn(cfg->server_name, "0123456789.") !=
	    strlen(cfg->server_name) && strchr(cfg->server_name, ':') == NULL)
		c->flags |= F_SNI;
	c->state = TLS13_ST_START;
	c->err = 0;
	return 0;
}

int
tls13_conn_set_ticket(tls13_conn *c, const tls13_ticket *t)
{
	if (c->state != TLS13_ST_START)
		return TLS13_ERR_STATE;
	c->ticket = t;
	return 0;
}

void
tls13_conn_idle(tls13_conn *c)
{
	tls13_dir_idle(&c->rd);
	tls13_dir_idle(&c->wr);
}

void
tls13_conn_free(tls13_conn *c)
{
	hs_release(c);
	tls13_dir_clear(&c->rd);
	tls13_dir_clear(&c->wr);
	OPENSSL_cleanse(c->master, sizeof(c->master));
	OPENSSL_cleanse(c->res_master, sizeof(c->res_master));
}

int
tls13_conn_set_rxbuf(tls13_conn *c, uint8_t *rx, size_t rxcap)
{
	if (rxcap < c->rx_end)
		return TLS13_ERR_BUFFER;
	if (rx != c->rx)
		memcpy(rx, c->rx, c->rx_end);
	c->rx = rx;
	c->rxcap = rxcap;
	return 0;
}

int
tls13_conn_set_txbuf(tls13_conn *c, uint8_t *tx, size_t txcap)
{
	size_t pending = c->tx_end - c->tx_pos;

	if (txcap < pending || (tx == NULL && txcap != 0))
		return TLS13_ERR_BUFFER;
	/* Pending records move to the front of the new buffer. */
	if (pending > 0)
		memmove(tx, c->tx + c->tx_pos, pending);
	c->tx = tx;
	c->txcap = txcap;
	c->tx_pos = 0;
	c->tx_end = pending;
	return 0;
}

int
tls13_feed(tls13_conn *c, const uint8_t *in, size_t *inlen)
{
	size_t n = *inlen;
	int err;

	*inlen = 0;
	if (c->err != 0)
		return c->err;
	if (c->state == TLS13_ST_START)
		return TLS13_ERR_STATE;
	if (n > c->rxcap - c->rx_end)
		n = c->rxcap - c->rx_end;
	if (n > 0)
		memcpy(c->rx + c->rx_end, in, n);
	c->rx_end += n;
	*inlen = n;
	err = rx_process(c);
	if (err == TLS13_ERR_BUFFER)
		return err;
	if (err != 0)
		return fail(c, err);
	return 0;
}

int
tls13_handshake(tls13_conn *c, const uint8_t *in, size_t *inlen)
{
	int err;

	if (c->err != 0)
		return c->err;
	if (c->state == TLS13_ST_START) {
		if (rand_bytes(c, c->random, 32) != 0 ||
		    rand_bytes(c, c->session_id, 32) != 0)
			return fail(c, TLS13_ALERT_INTERNAL_ERROR);
		if (psk_usable(c)) {
			/* A resumed handshake needs only the ticket's suite;
			 * a server that refuses the PSK falls back to a full
			 * handshake with it (it chose it before), and only
			 * its hash runs over the transcript. */
			c->flags |= F_PSK | F_PSK_SUITE;
			tls13_hash_free(&c->th[c->ticket->psk_len == 48 ?
			    0 : 1]);
		}
		if ((err = send_client_hello(c, NULL, 0)) != 0)
			return fail(c, err);
		c->state = TLS13_ST_WAIT_SH;
	}
	if (in != NULL && inlen != NULL && *inlen > 0) {
		err = tls13_feed(c, in, inlen);
		if (err != 0)
			return err;
	}
	if (c->state == TLS13_ST_CONNECTED)
		return 0;
	return c->err ? c->err : TLS13_WANT_READ;
}

const uint8_t *
tls13_out(tls13_conn *c, size_t *len)
{
	*len = c->tx_end - c->tx_pos;
	return *len > 0 ? c->tx + c->tx_pos : c->tx;
}

void
tls13_out_consume(tls13_conn *c, size_t n)
{
	if (n > c->tx_end - c->tx_pos)
		n = c->tx_end - c->tx_pos;
	c->tx_pos += n;
	if (c->tx_pos == c->tx_end)
		c->tx_pos = c->tx_end = 0;
}

static int
send_key_update(tls13_conn *c, int request)
{
	size_t stage;
	int err;

	if (tx_reserve(c, 5 + TLS13_SEAL_OVERHEAD * 2) == NULL)
		return TLS13_WANT_WRITE;
	stage = c->tx_end + TLS13_SEAL_OVERHEAD;
	memcpy(c->tx + stage, "\x18\x00\x00\x01", 4);
	c->tx[stage + 4] = (uint8_t)(request ? 1 : 0);
	if ((err = tx_records(c, TLS13_CT_HANDSHAKE, stage, 5)) != 0)
		return err;
	c->ku_pending = 0;
	/* §4.6.3: switch the sending key right after the KeyUpdate. */
	if (tls13_update_secret(c->hashlen, c->wr.secret) != 0 ||
	    tls13_dir_set(&c->wr, c->suite, c->hashlen, c->wr.secret, 1) != 0)
		return TLS13_ALERT_INTERNAL_ERROR;
	return 0;
}

int
tls13_key_update(tls13_conn *c, int request_peer)
{
	int err;

	if (c->err != 0)
		return c->err;
	if (c->state != TLS13_ST_CONNECTED || (c->flags & F_CLOSE_SENT))
		return TLS13_ERR_STATE;
	err = send_key_update(c, request_peer);
	if (err == TLS13_ALERT_INTERNAL_ERROR)
		return fail(c, err);
	return err == TLS13_WANT_WRITE ? tx_full(c) : err;
}

int
tls13_write_app(tls13_conn *c, const uint8_t *data, size_t len,
    size_t *written)
{
	size_t done = 0, chunk, pad, room, reclen, blk = c->cfg->pad_block;
	uint8_t *rec;
	int err;

	*written = 0;
	if (c->err != 0)
		return c->err;
	if (c->state != TLS13_ST_CONNECTED || (c->flags & F_CLOSE_SENT))
		return TLS13_ERR_STATE;
	if (c->ku_pending && (err = send_key_update(c, 0)) != 0)
		return err == TLS13_WANT_WRITE ? tx_full(c) : fail(c, err);
	while (done < len) {
		(void)tx_reserve(c, c->txcap);
		room = c->txcap - c->tx_end;
		if (room <= TLS13_SEAL_OVERHEAD)
			break;
		chunk = len - done;
		if (chunk > c->tx_limit)
			chunk = c->tx_limit;
		if (chunk > room - TLS13_SEAL_OVERHEAD)
			chunk = room - TLS13_SEAL_OVERHEAD;
		/* §5.4: pad the inner plaintext to a multiple of pad_block,
		 * within the record limit and the room left. */
		pad = blk ? (blk - (chunk + 1) % blk) % blk : 0;
		if (chunk + pad > c->tx_limit)
			pad = c->tx_limit - chunk;
		if (chunk + pad > room - TLS13_SEAL_OVERHEAD)
			pad = room - TLS13_SEAL_OVERHEAD - chunk;
		rec = c->tx + c->tx_end;
		memcpy(rec + TLS13_HDR, data + done, chunk);
		if ((err = tls13_record_seal(&c->wr, TLS13_CT_APP, rec, chunk,
		    pad, &reclen)) != 0)
			return fail(c, err);
		tx_commit(c, reclen);
		done += chunk;
	}
	*written = done;
	return done > 0 || len == 0 ? 0 : tx_full(c);
}

int
tls13_read_app(tls13_conn *c, uint8_t *out, size_t cap, size_t *outlen)
{
	size_t n;
	int err;

	*outlen = 0;
	if (c->app_len == 0) {
		if (c->err != 0)
			return c->err;
		if (c->flags & F_CLOSE_RCVD)
			return TLS13_ERR_CLOSED;
		return TLS13_WANT_READ;
	}
	n = c->app_len < cap ? c->app_len : cap;
	memcpy(out, c->rx + c->app_pos, n);
	c->app_pos += n;
	c->app_len -= n;
	*outlen = n;
	if (c->app_len == 0) {
		/* Slide the remaining raw input down and go on. */
		memmove(c->rx + c->rx_hs, c->rx + c->rx_pos,
		    c->rx_end - c->rx_pos);
		c->rx_end -= c->rx_pos - c->rx_hs;
		c->rx_pos = c->rx_hs;
		if ((err = rx_process(c)) != 0 && err != TLS13_ERR_BUFFER)
			(void)fail(c, err);
	}
	return 0;
}

int
tls13_close(tls13_conn *c)
{
	int err;

	if (c->flags & F_CLOSE_SENT)
		return 0;
	if (c->state == TLS13_ST_START || c->state == TLS13_ST_ERROR)
		return TLS13_ERR_STATE;
	if ((err = send_alert(c, 1, TLS13_ALERT_CLOSE_NOTIFY)) != 0)
		return err == TLS13_WANT_WRITE ? tx_full(c) : err;
	c->flags |= F_CLOSE_SENT;
	return 0;
}

/* ------------------------------------------------------------ accessors */

int
tls13_is_connected(const tls13_conn *c)
{
	return c->state == TLS13_ST_CONNECTED;
}

uint16_t
tls13_cipher(const tls13_conn *c)
{
	return c->suite;
}

const char *
tls13_cipher_name(uint16_t suite)
{
	switch (suite) {
	case TLS13_AES_128_GCM_SHA256:
		return "TLS_AES_128_GCM_SHA256";
	case TLS13_AES_256_GCM_SHA384:
		return "TLS_AES_256_GCM_SHA384";
	case TLS13_CHACHA20_POLY1305_SHA256:
		return "TLS_CHACHA20_POLY1305_SHA256";
	default:
		return "none";
	}
}

uint16_t
tls13_group(const tls13_conn *c)
{
	return c->group;
}

const char *
tls13_group_name(uint16_t group)
{
	switch (group) {
	case TLS13_GROUP_X25519:
		return "x25519";
	case TLS13_GROUP_SECP256R1:
		return "secp256r1";
	default:
		return "none";
	}
}

int
tls13_hrr(const tls13_conn *c)
{
	return (c->flags & F_HRR) != 0;
}

int
tls13_resumed(const tls13_conn *c)
{
	return (c->flags & F_RESUMED) != 0;
}

size_t
tls13_record_limit(const tls13_conn *c)
{
	return c->rx_limit;
}

size_t
tls13_send_limit(const tls13_conn *c)
{
	return c->tx_limit;
}

const char *
tls13_alpn(const tls13_conn *c)
{
	return c->alpn;
}

uint64_t
tls13_bytes_sent(const tls13_conn *c)
{
	return c->bytes_sent;
}

uint64_t
tls13_bytes_received(const tls13_conn *c)
{
	return c->bytes_received;
}

size_t
tls13_rx_needed(const tls13_conn *c)
{
	return TLS13_RECORD_SIZE(c->rx_limit);
}

size_t
tls13_tx_needed(const tls13_conn *c)
{
	/* One record of tx_limit plaintext: header, inner type, tag.  Our
	 * padding stays within tx_limit (§5.4). */
	return c->tx_limit + TLS13_SEAL_OVERHEAD;
}

const char *
tls13_verify_error(const tls13_conn *c)
{
	return c->x509_error ?
	    X509_verify_cert_error_string((long)c->x509_error) : NULL;
}

static const char *
alert_name(int a)
{
	switch (a) {
	case 0: return "close_notify";
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 22: return "record_overflow";
	case 40: return "handshake_failure";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 49: return "access_denied";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 70: return "protocol_version";
	case 71: return "insufficient_security";
	case 80: return "internal_error";
	case 86: return "inappropriate_fallback";
	case 90: return "user_canceled";
	case 109: return "missing_extension";
	case 110: return "unsupported_extension";
	case 112: return "unrecognized_name";
	case 113: return "bad_certificate_status_response";
	case 115: return "unknown_psk_identity";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	default: return NULL;
	}
}

const char *
tls13_strerror(int err)
{
	static const char *const peer[] = {
		[10] = "peer alert: unexpected_message",
		[20] = "peer alert: bad_record_mac",
		[22] = "peer alert: record_overflow",
		[40] = "peer alert: handshake_failure",
		[42] = "peer alert: bad_certificate",
		[43] = "peer alert: unsupported_certificate",
		[44] = "peer alert: certificate_revoked",
		[45] = "peer alert: certificate_expired",
		[46] = "peer alert: certificate_unknown",
		[47] = "peer alert: illegal_parameter",
		[48] = "peer alert: unknown_ca",
		[49] = "peer alert: access_denied",
		[50] = "peer alert: decode_error",
		[51] = "peer alert: decrypt_error",
		[70] = "peer alert: protocol_version",
		[71] = "peer alert: insufficient_security",
		[80] = "peer alert: internal_error",
		[86] = "peer alert: inappropriate_fallback",
		[109] = "peer alert: missing_extension",
		[110] = "peer alert: unsupported_extension",
		[112] = "peer alert: unrecognized_name",
		[113] = "peer alert: bad_certificate_status_response",
		[115] = "peer alert: unknown_psk_identity",
		[116] = "peer alert: certificate_required",
		[120] = "peer alert: no_application_protocol",
	};
	const char *s;

	switch (err) {
	case 0:
		return "success";
	case TLS13_ERR_CLOSED:
		return "closed by peer (close_notify)";
	case TLS13_WANT_READ:
		return "want read";
	case TLS13_WANT_WRITE:
		return "want write";
	case TLS13_ERR_BUFFER:
		return "buffer too small";
	case TLS13_ERR_STATE:
		return "call not allowed in this state";
	case TLS13_ERR_CONFIG:
		return "invalid configuration";
	case TLS13_ERR_RECORD_LIMIT:
		return "server ignored max_fragment_length/record_size_limit";
	}
	if (err > 0 && err < 256 && (s = alert_name(err)) != NULL)
		return s;
	if (err > 0x100 && err < 0x100 + (int)(sizeof(peer) / sizeof(peer[0]))
	    && peer[err - 0x100] != NULL)
		return peer[err - 0x100];
	if (err > 0x100 && err < 0x200)
		return "peer alert: unknown";
	return "unknown error";
}
