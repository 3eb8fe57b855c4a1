/*
 * test_tls13.c: known-answer tests for the built-in TLS 1.3 client from the
 * example traces (key schedule, traffic keys, record protection, a replay
 * of the server's flight checked byte for byte), the handshake table, and
 * negative cases built from crafted server flights.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls13/crypto.h"
#include "tls13/handshake.h"
#include "tls13/keysched.h"
#include "tls13/record.h"
#include "tls13/tls13.h"

#include "tls13_vectors.h"

static size_t
unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = strlen(h) / 2, i;
	unsigned v;

	assert_true(n <= cap);
	for (i = 0; i < n; i++) {
		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

#define HEX(name, var) \
	uint8_t var[2048]; \
	size_t var##_len = unhex(name, var, sizeof(var))

static void
assert_hex(const uint8_t *got, size_t len, const char *want)
{
	uint8_t w[2048];
	size_t n = unhex(want, w, sizeof(w));

	assert_int_equal(len, n);
	assert_memory_equal(got, w, n);
}

/* ------------------------------------------------------------ key schedule */

static void
test_keysched_s3(void **state)
{
	uint8_t s[48], t[48], key[32], iv[12];
	HEX(S3_DHE, dhe);
	HEX(S3_HS_HASH, hh);
	HEX(S3_AP_HASH, ah);
	HEX(S3_RES_HASH, rh);
	uint8_t nonce[2] = { 0, 0 };

	(void)state;
	(void)dhe_len;
	(void)hh_len;
	(void)ah_len;
	(void)rh_len;
	assert_int_equal(tls13_early_secret(32, NULL, s), 0);
	assert_int_equal(tls13_next_secret(32, s, dhe, 32), 0);
	assert_hex(s, 32, S3_HS_SECRET);
	assert_int_equal(tls13_derive_secret(32, s, "c hs traffic", hh, t), 0);
	assert_hex(t, 32, S3_C_HS);
	assert_int_equal(tls13_derive_secret(32, s, "s hs traffic", hh, t), 0);
	assert_hex(t, 32, S3_S_HS);
	assert_int_equal(tls13_traffic_keys(32, t, 16, key, iv), 0);
	assert_hex(key, 16, S3_S_HS_KEY);
	assert_hex(iv, 12, S3_S_HS_IV);
	assert_int_equal(tls13_next_secret(32, s, NULL, 0), 0);
	assert_hex(s, 32, S3_MASTER);
	assert_int_equal(tls13_derive_secret(32, s, "c ap traffic", ah, t), 0);
	assert_hex(t, 32, S3_C_AP);
	assert_int_equal(tls13_derive_secret(32, s, "s ap traffic", ah, t), 0);
	assert_hex(t, 32, S3_S_AP);
	assert_int_equal(tls13_traffic_keys(32, t, 16, key, iv), 0);
	assert_hex(key, 16, S3_S_AP_KEY);
	assert_hex(iv, 12, S3_S_AP_IV);
	assert_int_equal(tls13_derive_secret(32, s, "res master", rh, t), 0);
	assert_hex(t, 32, S3_RES_MASTER);
	assert_int_equal(tls13_expand_label(32, t, "resumption", nonce, 2, s,
	    32), 0);
	assert_hex(s, 32, S3_PSK);
}

static void
test_keysched_s4(void **state)
{
	uint8_t s[48], t[48], bk[48];
	HEX(S3_PSK, psk);
	HEX(S4_DHE, dhe);
	HEX(S4_HS_HASH, hh);
	HEX(S4_BINDER_HASH, bh);

	(void)state;
	(void)psk_len;
	(void)dhe_len;
	(void)hh_len;
	(void)bh_len;
	assert_int_equal(tls13_early_secret(32, psk, s), 0);
	assert_hex(s, 32, S4_EARLY_SECRET);
	/* §4.2.11.2 binder over the truncated ClientHello. */
	assert_int_equal(tls13_derive_secret(32, s, "res binder", NULL, bk), 0);
	assert_int_equal(tls13_finished(32, bk, bh, t), 0);
	assert_hex(t, 32, S4_BINDER);
	assert_int_equal(tls13_next_secret(32, s, dhe, 32), 0);
	assert_hex(s, 32, S4_HS_SECRET);
	assert_int_equal(tls13_derive_secret(32, s, "c hs traffic", hh, t), 0);
	assert_hex(t, 32, S4_C_HS);
	assert_int_equal(tls13_derive_secret(32, s, "s hs traffic", hh, t), 0);
	assert_hex(t, 32, S4_S_HS);
	assert_int_equal(tls13_next_secret(32, s, NULL, 0), 0);
	assert_hex(s, 32, S4_MASTER);
}

/* --------------------------------------------------------- record layer */

static void
test_record_s3(void **state)
{
	struct tls13_dir d;
	uint8_t rec[128], type, pt[50];
	size_t ptlen, reclen, i;
	HEX(S3_S_AP, sap);
	HEX(S3_C_AP, cap);
	HEX(S3_SERVER_APP_RECORD, srec);
	HEX(S3_NST_RECORD, nst);

	(void)state;
	(void)sap_len;
	(void)cap_len;
	for (i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)i;
	memset(&d, 0, sizeof(d));
	/* Under s ap the server first sent NewSessionTicket (seq 0), then
	 * its application data (seq 1). */
	assert_int_equal(tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32, sap, 0), 0);
	assert_int_equal(tls13_record_open(&d, nst, nst_len, &type, &ptlen), 0);
	assert_int_equal(type, TLS13_CT_HANDSHAKE);
	assert_hex(nst + 5, ptlen, S3_NST);
	assert_int_equal(tls13_record_open(&d, srec, srec_len, &type, &ptlen), 0);
	assert_int_equal(type, TLS13_CT_APP);
	assert_int_equal(ptlen, 50);
	assert_memory_equal(srec + 5, pt, 50);
	/* A replay of the same record fails: the sequence moved on. */
	unhex(S3_SERVER_APP_RECORD, srec, sizeof(srec));
	assert_int_equal(tls13_record_open(&d, srec, srec_len, &type, &ptlen),
	    TLS13_ALERT_BAD_RECORD_MAC);
	tls13_dir_clear(&d);
	/* The client's record (seq 0) under c ap. */
	assert_int_equal(tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32, cap, 1), 0);
	memcpy(rec + 5, pt, 50);
	assert_int_equal(tls13_record_seal(&d, TLS13_CT_APP, rec, 50, 0,
	    &reclen), 0);
	assert_hex(rec, reclen, S3_CLIENT_APP_RECORD);
	tls13_dir_clear(&d);
}

/* ------------------------------------------------------------ replay */

struct kat {
	tls13_config cfg;
	tls13_test_hooks hooks;
	tls13_conn c;
	uint8_t priv[32];
	uint8_t ch[600];
	uint8_t rx[TLS13_RECORD_SIZE(16384) + 4096];
	uint8_t tx[2048];
	tls13_ticket ticket;
	int nticket;
};

static struct kat *kat_cur;
static int feed_one(struct kat *k, const uint8_t *p, size_t len);

static void
kat_on_ticket(void *arg, const tls13_ticket *t)
{
	struct kat *k = arg;

	k->ticket = *t;
	k->nticket++;
}

static uint64_t
kat_now(void *arg)
{
	(void)arg;
	return 1000000;
}

static void
kat_setup(struct kat *k, const char *priv, const char *ch)
{
	memset(k, 0, sizeof(*k));
	k->cfg.suites[0] = TLS13_AES_128_GCM_SHA256;
	k->cfg.suites[1] = TLS13_CHACHA20_POLY1305_SHA256;
	k->cfg.suites[2] = TLS13_AES_256_GCM_SHA384;
	k->cfg.nsuites = 3;
	k->cfg.groups[0] = TLS13_GROUP_X25519;
	k->cfg.groups[1] = TLS13_GROUP_SECP256R1;
	k->cfg.ngroups = 2;
	k->cfg.server_name = "server";
	k->cfg.record_size_limit = 16384;
	/* The trace's certificate expired in 2026 and is self-signed:
	 * chain validation is covered by the probe tests. */
	k->cfg.insecure_no_verify = 1;
	k->cfg.on_ticket = kat_on_ticket;
	k->cfg.ticket_arg = k;
	k->cfg.now_ms = kat_now;
	unhex(priv, k->priv, sizeof(k->priv));
	k->hooks.x25519_private = k->priv;
	k->hooks.client_hello = k->ch;
	k->hooks.client_hello_len = unhex(ch, k->ch, sizeof(k->ch));
	k->cfg.test = &k->hooks;
	kat_cur = k;
}

static void
take_out(tls13_conn *c, uint8_t *buf, size_t *len)
{
	const uint8_t *p = tls13_out(c, len);

	memcpy(buf, p, *len);
	tls13_out_consume(c, *len);
}

/* Feed @a len bytes in chunks of @a step; return the last result. */
static int
feed_chunks(tls13_conn *c, const uint8_t *p, size_t len, size_t step)
{
	size_t off = 0, n;
	int err = 0;

	while (off < len) {
		n = len - off < step ? len - off : step;
		err = tls13_handshake(c, p + off, &n);
		if (TLS13_IS_ERROR(err))
			return err;
		assert_true(n > 0);
		off += n;
	}
	return err;
}

/* The server's encrypted flight as plaintext (EE Cert CV Finished). */
static size_t
server_flight_plain(uint8_t *pt)
{
	struct tls13_dir d;
	uint8_t type;
	size_t ptlen;
	HEX(S3_S_HS, shs);
	HEX(S3_SERVER_FLIGHT, fl);

	(void)shs_len;
	memset(&d, 0, sizeof(d));
	assert_int_equal(tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32, shs, 0), 0);
	assert_int_equal(tls13_record_open(&d, fl, fl_len, &type, &ptlen), 0);
	assert_int_equal(type, TLS13_CT_HANDSHAKE);
	memcpy(pt, fl + 5, ptlen);
	tls13_dir_clear(&d);
	return ptlen;
}

/* Protect @a pt as handshake records of @a chunk bytes under the server
 * handshake key, as the trace's server would. */
static size_t
server_flight_seal(const uint8_t *pt, size_t len, size_t chunk, uint8_t *out)
{
	struct tls13_dir d;
	size_t off = 0, n, reclen, total = 0;
	HEX(S3_S_HS, shs);

	(void)shs_len;
	memset(&d, 0, sizeof(d));
	assert_int_equal(tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32, shs, 1), 0);
	while (off < len) {
		n = len - off < chunk ? len - off : chunk;
		memcpy(out + total + 5, pt + off, n);
		assert_int_equal(tls13_record_seal(&d, TLS13_CT_HANDSHAKE,
		    out + total, n, 0, &reclen), 0);
		total += reclen;
		off += n;
	}
	tls13_dir_clear(&d);
	return total;
}

static void
replay_s3(size_t step, size_t chunk)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048], app[64], pt[1024], flight[20000], data[50];
	size_t n, i, ptlen, flen;
	HEX(S3_SH_RECORD, sh);
	HEX(S3_NST_RECORD, nst);
	HEX(S3_SERVER_APP_RECORD, sapp);

	assert_non_null(k);
	kat_setup(k, S3_CLIENT_PRIV, S3_CLIENT_HELLO);
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S3_CH_RECORD);

	ptlen = server_flight_plain(pt);
	flen = server_flight_seal(pt, ptlen, chunk, flight);
	assert_int_equal(feed_chunks(&k->c, sh, sh_len, step), TLS13_WANT_READ);
	assert_int_equal(feed_chunks(&k->c, flight, flen, step), 0);
	assert_true(tls13_is_connected(&k->c));
	take_out(&k->c, out, &n);
	/* The client's Finished, byte for byte. */
	assert_hex(out, n, S3_CLIENT_FIN_RECORD);
	assert_int_equal(tls13_cipher(&k->c), TLS13_AES_128_GCM_SHA256);
	assert_int_equal(tls13_group(&k->c), TLS13_GROUP_X25519);
	assert_int_equal(tls13_hrr(&k->c), 0);
	assert_int_equal(tls13_resumed(&k->c), 0);
	assert_int_equal(tls13_record_limit(&k->c), 16384);

	/* NewSessionTicket -> PSK of the trace. */
	assert_int_equal(feed_chunks(&k->c, nst, nst_len, step), 0);
	assert_int_equal(k->nticket, 1);
	assert_hex(k->ticket.psk, k->ticket.psk_len, S3_PSK);
	assert_int_equal(k->ticket.len, 0xb2);

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	assert_int_equal(tls13_write_app(&k->c, data, sizeof(data), &n), 0);
	assert_int_equal(n, sizeof(data));
	take_out(&k->c, out, &n);
	assert_hex(out, n, S3_CLIENT_APP_RECORD);

	n = sapp_len;
	assert_int_equal(tls13_feed(&k->c, sapp, &n), 0);
	assert_int_equal(n, sapp_len);
	assert_int_equal(tls13_read_app(&k->c, app, sizeof(app), &n), 0);
	assert_int_equal(n, 50);
	assert_memory_equal(app, data, 50);
	assert_int_equal(tls13_read_app(&k->c, app, sizeof(app), &n),
	    TLS13_WANT_READ);

	assert_int_equal(tls13_close(&k->c), 0);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S3_CLIENT_ALERT_RECORD);
	tls13_conn_free(&k->c);
	free(k);
}

/* Seal @a len bytes of @a type under @a secret at sequence @a seq. */
static size_t
seal_with(const uint8_t *secret, uint64_t seq, uint8_t type,
    const uint8_t *p, size_t len, uint8_t *out)
{
	struct tls13_dir d;
	size_t reclen;

	memset(&d, 0, sizeof(d));
	assert_int_equal(tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32,
	    secret, 1), 0);
	d.seq = seq;
	memcpy(out + 5, p, len);
	assert_int_equal(tls13_record_seal(&d, type, out, len, 0, &reclen), 0);
	tls13_dir_clear(&d);
	return reclen;
}

/* Open the record in @a rec under @a secret at @a seq; return its length. */
static size_t
open_with(const uint8_t *secret, uint64_t seq, uint8_t *rec, size_t len,
    uint8_t want_type)
{
	struct tls13_dir d;
	uint8_t type;
	size_t ptlen;

	memset(&d, 0, sizeof(d));
	assert_int_equal(tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32,
	    secret, 0), 0);
	d.seq = seq;
	assert_int_equal(tls13_record_open(&d, rec, len, &type, &ptlen), 0);
	assert_int_equal(type, want_type);
	tls13_dir_clear(&d);
	return ptlen;
}

static void
test_key_update(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048], rec[256], app[64], cap[32], sap[32];
	size_t n, outlen;
	HEX(S3_SH_RECORD, sh);
	HEX(S3_SERVER_FLIGHT, fl);

	(void)state;
	unhex(S3_C_AP, cap, sizeof(cap));
	unhex(S3_S_AP, sap, sizeof(sap));
	kat_setup(k, S3_CLIENT_PRIV, S3_CLIENT_HELLO);
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	assert_int_equal(feed_one(k, fl, fl_len), 0);
	take_out(&k->c, out, &n);

	/* §4.6.3: the server updates and asks us to; we answer with
	 * update_not_requested under the old key, then switch. */
	n = seal_with(sap, 0, TLS13_CT_HANDSHAKE,
	    (const uint8_t *)"\x18\x00\x00\x01\x01", 5, rec);
	assert_int_equal(feed_one(k, rec, n), 0);
	take_out(&k->c, out, &outlen);
	assert_int_equal(open_with(cap, 0, out, outlen, TLS13_CT_HANDSHAKE), 5);
	assert_memory_equal(out + 5, "\x18\x00\x00\x01\x00", 5);
	assert_int_equal(tls13_update_secret(32, sap), 0);
	assert_int_equal(tls13_update_secret(32, cap), 0);
	/* Server data under its next key. */
	n = seal_with(sap, 0, TLS13_CT_APP, (const uint8_t *)"hello", 5, rec);
	assert_int_equal(tls13_feed(&k->c, rec, &n), 0);
	assert_int_equal(tls13_read_app(&k->c, app, sizeof(app), &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(app, "hello", 5);
	/* Our data under our next key. */
	assert_int_equal(tls13_write_app(&k->c, (const uint8_t *)"abc", 3, &n), 0);
	take_out(&k->c, out, &outlen);
	assert_int_equal(open_with(cap, 0, out, outlen, TLS13_CT_APP), 3);
	/* We initiate: KeyUpdate(update_requested) then the next key. */
	assert_int_equal(tls13_key_update(&k->c, 1), 0);
	assert_int_equal(tls13_write_app(&k->c, (const uint8_t *)"xyz", 3, &n), 0);
	take_out(&k->c, out, &outlen);
	assert_int_equal(outlen, 2 * 5 + 2 * 17 + 5 + 3);
	assert_int_equal(open_with(cap, 1, out, 5 + 5 + 17, TLS13_CT_HANDSHAKE), 5);
	assert_memory_equal(out + 5, "\x18\x00\x00\x01\x01", 5);
	assert_int_equal(tls13_update_secret(32, cap), 0);
	assert_int_equal(open_with(cap, 0, out + 27, outlen - 27, TLS13_CT_APP), 3);
	assert_memory_equal(out + 27 + 5, "xyz", 3);
	/* A KeyUpdate with a bad value is illegal_parameter. */
	n = seal_with(sap, 1, TLS13_CT_HANDSHAKE,
	    (const uint8_t *)"\x18\x00\x00\x01\x02", 5, rec);
	assert_int_equal(feed_one(k, rec, n), TLS13_ALERT_ILLEGAL_PARAMETER);
	/* Post-handshake CertificateRequest was never offered. */
	tls13_conn_free(&k->c);
	free(k);
}

static void
test_replay_s3(void **state)
{
	(void)state;
	replay_s3(100000, 16384);       /* as in the trace */
}

static void
test_replay_s3_bytewise(void **state)
{
	(void)state;
	replay_s3(1, 16384);            /* input cut into single bytes */
}

static void
test_replay_s3_split(void **state)
{
	(void)state;
	replay_s3(7, 61);               /* messages spanning many records */
	replay_s3(1000, 1);             /* one byte per record */
}

/* Section 5, HelloRetryRequest: x25519 offered, secp256r1 asked for with
 * a cookie; message_hash transcript; client Finished byte for byte. */
static void
test_replay_s5(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048], p256[32], ch2[600];
	size_t n;
	HEX(S5_HRR_RECORD, hrr);
	HEX(S5_SH_RECORD, sh);
	HEX(S5_SERVER_FLIGHT, fl);

	(void)state;
	assert_non_null(k);
	kat_setup(k, S5_CLIENT_PRIV, S5_CLIENT_HELLO1);
	unhex(S5_CLIENT_P256, p256, sizeof(p256));
	k->hooks.p256_private = p256;
	k->hooks.client_hello2 = ch2;
	k->hooks.client_hello2_len = unhex(S5_CLIENT_HELLO2, ch2, sizeof(ch2));
	k->cfg.on_ticket = NULL;
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S5_CH1_RECORD);
	assert_int_equal(feed_one(k, hrr, hrr_len), TLS13_WANT_READ);
	assert_int_equal(tls13_hrr(&k->c), 1);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S5_CH2_RECORD);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	assert_int_equal(feed_one(k, fl, fl_len), 0);
	assert_int_equal(tls13_group(&k->c), TLS13_GROUP_SECP256R1);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S5_CLIENT_FIN_RECORD);
	assert_int_equal(tls13_close(&k->c), 0);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S5_CLIENT_ALERT_RECORD);
	tls13_conn_free(&k->c);
	free(k);
}

/* Section 7, middlebox-compatibility mode: 32-byte session id, the
 * server's dummy CCS dropped, ours sent before the Finished. */
static void
test_replay_s7(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048], want[128];
	size_t n, fin;
	HEX(S7_SH_RECORD, sh);
	HEX(S7_SERVER_FLIGHT, fl);

	(void)state;
	assert_non_null(k);
	kat_setup(k, S7_CLIENT_PRIV, S7_CLIENT_HELLO);
	k->cfg.compat_mode = 1;
	k->cfg.on_ticket = NULL;
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S7_CH_RECORD);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	assert_int_equal(feed_one(k, (const uint8_t *)"\x14\x03\x03\x00\x01\x01",
	    6), TLS13_WANT_READ);
	assert_int_equal(feed_one(k, fl, fl_len), 0);
	take_out(&k->c, out, &n);
	memcpy(want, "\x14\x03\x03\x00\x01\x01", 6);
	fin = unhex(S7_CLIENT_FIN_RECORD, want + 6, sizeof(want) - 6);
	assert_int_equal(n, 6 + fin);
	assert_memory_equal(out, want, n);
	assert_int_equal(tls13_close(&k->c), 0);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S7_CLIENT_ALERT_RECORD);
	tls13_conn_free(&k->c);
	free(k);
}

static void
test_resume_s4(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048];
	size_t n;
	tls13_ticket t;
	HEX(S3_PSK, psk);
	HEX(S3_NST, nstmsg);
	HEX(S4_SH_RECORD, sh);
	HEX(S4_C_HS, chs);
	HEX(S4_S_HS, shs);

	(void)state;
	(void)psk_len;
	(void)nstmsg_len;
	(void)chs_len;
	(void)shs_len;
	assert_non_null(k);
	kat_setup(k, S4_CLIENT_PRIV, S4_CH_PAYLOAD);
	/* Zero the binder so the engine must compute it. */
	memset(k->ch + k->hooks.client_hello_len - 32, 0, 32);
	memset(&t, 0, sizeof(t));
	t.suite = TLS13_AES_128_GCM_SHA256;
	t.psk_len = 32;
	memcpy(t.psk, psk, 32);
	t.lifetime_s = 30;
	t.issued_ms = 1000000;
	t.len = 0xb2;
	memcpy(t.ticket, nstmsg + 4 + 4 + 4 + 1 + 2 + 2, t.len);
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_conn_set_ticket(&k->c, &t), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	/* The binder recomputed by the engine matches the trace. */
	assert_hex(out, n, S4_CH_RECORD);
	n = sh_len;
	assert_int_equal(tls13_handshake(&k->c, sh, &n), TLS13_WANT_READ);
	assert_int_equal(tls13_resumed(&k->c), 1);
	assert_memory_equal(k->c.wr.secret, chs, 32);
	assert_memory_equal(k->c.rd.secret, shs, 32);
	tls13_conn_free(&k->c);
	free(k);
}

/* ------------------------------------------------------- handshake table */

static void
test_table(void **state)
{
	const struct tls13_hs_rule *r, *q;
	int st, found;

	(void)state;
	for (r = tls13_hs_table; r->handler != NULL; r++) {
		assert_true(r->state >= TLS13_ST_WAIT_SH &&
		    r->state <= TLS13_ST_CONNECTED);
		for (q = r + 1; q->handler != NULL; q++)
			assert_false(q->state == r->state && q->type == r->type);
		assert_ptr_equal(tls13_hs_lookup(r->state, r->type), r);
	}
	/* Every waiting state accepts something. */
	for (st = TLS13_ST_WAIT_SH; st <= TLS13_ST_CONNECTED; st++) {
		found = 0;
		for (r = tls13_hs_table; r->handler != NULL; r++)
			found |= r->state == st;
		assert_true(found);
	}
	assert_null(tls13_hs_lookup(TLS13_ST_WAIT_EE, 11));
	assert_null(tls13_hs_lookup(TLS13_ST_CONNECTED, 13));
}

/* ------------------------------------------------------ negative cases */

/* Run the S3 handshake with the server flight replaced by @a pt (plaintext
 * handshake messages) and return the error. */
static int
s3_with_flight(const uint8_t *pt, size_t ptlen, struct kat *k)
{
	uint8_t out[2048], flight[20000];
	size_t n, flen;
	HEX(S3_SH_RECORD, sh);

	kat_setup(k, S3_CLIENT_PRIV, S3_CLIENT_HELLO);
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	assert_int_equal(feed_chunks(&k->c, sh, sh_len, 4096), TLS13_WANT_READ);
	flen = server_flight_seal(pt, ptlen, 16384, flight);
	return feed_chunks(&k->c, flight, flen, 4096);
}

/* The alert the engine queued: decrypt it with the client hs key. */
static void
assert_alert_sent(struct kat *k, int alert)
{
	struct tls13_dir d;
	uint8_t out[256], type;
	size_t n, ptlen;
	HEX(S3_C_HS, chs);

	(void)chs_len;
	take_out(&k->c, out, &n);
	assert_true(n > 5);
	memset(&d, 0, sizeof(d));
	assert_int_equal(tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32, chs, 0), 0);
	assert_int_equal(tls13_record_open(&d, out, n, &type, &ptlen), 0);
	assert_int_equal(type, TLS13_CT_ALERT);
	assert_int_equal(ptlen, 2);
	assert_int_equal(out[5], 2);
	assert_int_equal(out[6], alert);
	tls13_dir_clear(&d);
}

#define EE_LEN   40
#define CERT_LEN 445
#define CV_LEN   136

static void
test_tampered_finished(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t pt[1024];
	size_t len = server_flight_plain(pt);

	(void)state;
	pt[len - 1] ^= 1;
	assert_int_equal(s3_with_flight(pt, len, k), TLS13_ALERT_DECRYPT_ERROR);
	assert_alert_sent(k, TLS13_ALERT_DECRYPT_ERROR);
	tls13_conn_free(&k->c);
	free(k);
}

static void
test_tampered_cert_verify(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t pt[1024];
	size_t len = server_flight_plain(pt);

	(void)state;
	pt[EE_LEN + CERT_LEN + 20] ^= 0x80;
	assert_int_equal(s3_with_flight(pt, len, k), TLS13_ALERT_DECRYPT_ERROR);
	assert_alert_sent(k, TLS13_ALERT_DECRYPT_ERROR);
	tls13_conn_free(&k->c);
	free(k);
}

static void
test_unexpected_order(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t pt[1024];
	size_t len = server_flight_plain(pt);

	(void)state;
	/* Certificate without EncryptedExtensions first. */
	assert_int_equal(s3_with_flight(pt + EE_LEN, len - EE_LEN, k),
	    TLS13_ALERT_UNEXPECTED_MESSAGE);
	assert_alert_sent(k, TLS13_ALERT_UNEXPECTED_MESSAGE);
	tls13_conn_free(&k->c);
	/* Finished right after EncryptedExtensions (skipping the chain). */
	memmove(pt + EE_LEN, pt + EE_LEN + CERT_LEN + CV_LEN,
	    len - EE_LEN - CERT_LEN - CV_LEN);
	assert_int_equal(s3_with_flight(pt, len - CERT_LEN - CV_LEN, k),
	    TLS13_ALERT_UNEXPECTED_MESSAGE);
	tls13_conn_free(&k->c);
	free(k);
}

static void
test_ee_unoffered_extension(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t pt[1024], ee[64];
	size_t len = server_flight_plain(pt);

	(void)state;
	/* EncryptedExtensions carrying early_data, which we never offered. */
	memcpy(ee, "\x08\x00\x00\x06\x00\x04\x00\x2a\x00\x00", 10);
	memmove(pt + 10, pt + EE_LEN, len - EE_LEN);
	memcpy(pt, ee, 10);
	assert_int_equal(s3_with_flight(pt, len - EE_LEN + 10, k),
	    TLS13_ALERT_UNSUPPORTED_EXTENSION);
	tls13_conn_free(&k->c);
	/* ALPN answered although not offered. */
	memcpy(pt, "\x08\x00\x00\x06\x00\x04\x00\x10\x00\x00", 10);
	assert_int_equal(s3_with_flight(pt, len - EE_LEN + 10, k),
	    TLS13_ALERT_UNSUPPORTED_EXTENSION);
	tls13_conn_free(&k->c);
	free(k);
}

/* A receive buffer too small for the flight: TLS13_ERR_BUFFER is not
 * fatal; after tls13_conn_set_rxbuf the handshake ends as in the trace. */
static void
test_rx_buffer_grow(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048], small[600];
	size_t n, off = 0;
	int err;
	HEX(S3_SH_RECORD, sh);
	HEX(S3_SERVER_FLIGHT, fl);

	(void)state;
	kat_setup(k, S3_CLIENT_PRIV, S3_CLIENT_HELLO);
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, small, sizeof(small),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	n = fl_len;
	err = tls13_feed(&k->c, fl, &n);
	assert_int_equal(err, TLS13_ERR_BUFFER);
	assert_int_equal(tls13_is_connected(&k->c), 0);
	off = n;
	assert_int_equal(tls13_conn_set_rxbuf(&k->c, k->rx, sizeof(k->rx)), 0);
	n = fl_len - off;
	assert_int_equal(tls13_handshake(&k->c, fl + off, &n), 0);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S3_CLIENT_FIN_RECORD);
	tls13_conn_free(&k->c);
	free(k);
}

/* The send buffer taken away while idle and given back: pending records
 * move with it, and without one the calls that write say
 * TLS13_ERR_BUFFER instead of asking to drain nothing. */
static void
test_tx_buffer_swap(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048], small[90], tx2[72], data[50];
	size_t n, i;
	HEX(S3_SH_RECORD, sh);
	HEX(S3_SERVER_FLIGHT, fl);

	(void)state;
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	kat_setup(k, S3_CLIENT_PRIV, S3_CLIENT_HELLO);
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	/* Before the handshake: room for a full-size record. */
	assert_int_equal(tls13_tx_needed(&k->c), 16384 + 22);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	/* The ClientHello is pending: it cannot be dropped or squeezed. */
	assert_int_equal(tls13_conn_set_txbuf(&k->c, NULL, 0), TLS13_ERR_BUFFER);
	assert_int_equal(tls13_conn_set_txbuf(&k->c, small, sizeof(small)),
	    TLS13_ERR_BUFFER);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S3_CH_RECORD);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	assert_int_equal(feed_one(k, fl, fl_len), 0);
	take_out(&k->c, out, &n);
	assert_hex(out, n, S3_CLIENT_FIN_RECORD);
	/* The trace's server answered record_size_limit 16385. */
	assert_int_equal(tls13_tx_needed(&k->c),
	    tls13_send_limit(&k->c) + 5 + 1 + 16);
	assert_int_equal(tls13_tx_needed(&k->c), 16406);

	/* Idle: take the buffer away; writing now needs one back. */
	assert_int_equal(tls13_conn_set_txbuf(&k->c, NULL, 0), 0);
	(void)tls13_out(&k->c, &n);
	assert_int_equal(n, 0);
	assert_int_equal(tls13_write_app(&k->c, data, sizeof(data), &n),
	    TLS13_ERR_BUFFER);
	assert_int_equal(n, 0);
	assert_int_equal(tls13_close(&k->c), TLS13_ERR_BUFFER);
	assert_int_equal(tls13_key_update(&k->c, 0), TLS13_ERR_BUFFER);
	assert_int_equal(tls13_is_connected(&k->c), 1);

	/* 90 bytes hold the 72-byte record; full, the buffer says drain. */
	assert_int_equal(tls13_conn_set_txbuf(&k->c, small, sizeof(small)), 0);
	assert_int_equal(tls13_write_app(&k->c, data, sizeof(data), &n), 0);
	assert_int_equal(n, sizeof(data));
	assert_int_equal(tls13_write_app(&k->c, data, sizeof(data), &n),
	    TLS13_WANT_WRITE);
	/* The pending record cannot be dropped, nor moved where it does
	 * not fit; it moves intact to a buffer that holds it exactly. */
	assert_int_equal(tls13_conn_set_txbuf(&k->c, NULL, 0), TLS13_ERR_BUFFER);
	assert_int_equal(tls13_conn_set_txbuf(&k->c, tx2, 71), TLS13_ERR_BUFFER);
	assert_int_equal(tls13_conn_set_txbuf(&k->c, tx2, sizeof(tx2)), 0);
	memset(small, 0, sizeof(small));
	take_out(&k->c, out, &n);
	assert_hex(out, n, S3_CLIENT_APP_RECORD);
	tls13_conn_free(&k->c);
	free(k);
}

/* max_fragment_length offered, ignored by the server, fallback refused:
 * TLS13_ERR_RECORD_LIMIT and a handshake_failure alert. */
static void
test_record_limit_refused(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t out[2048], pt[1024];
	size_t len = server_flight_plain(pt), n;
	HEX(S3_SH_RECORD, sh);
	uint8_t flight[4096];

	(void)state;
	kat_setup(k, S3_CLIENT_PRIV, S3_CLIENT_HELLO);
	k->cfg.record_size_limit = 0;
	k->cfg.max_fragment = 512;
	k->cfg.record_fallback = TLS13_FALLBACK_REFUSE;
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	/* EncryptedExtensions with no extension at all. */
	memmove(pt + 6, pt + EE_LEN, len - EE_LEN);
	memcpy(pt, "\x08\x00\x00\x02\x00\x00", 6);
	n = server_flight_seal(pt, len - EE_LEN + 6, 16384, flight);
	assert_int_equal(feed_one(k, flight, n), TLS13_ERR_RECORD_LIMIT);
	assert_alert_sent(k, TLS13_ALERT_HANDSHAKE_FAILURE);
	tls13_conn_free(&k->c);
	free(k);
}

/* Start a connection and return it waiting for the ServerHello. */
static void
start(struct kat *k)
{
	uint8_t out[2048];
	size_t n;

	kat_setup(k, S3_CLIENT_PRIV, S3_CLIENT_HELLO);
	assert_int_equal(tls13_conn_init(&k->c, &k->cfg, k->rx, sizeof(k->rx),
	    k->tx, sizeof(k->tx)), 0);
	assert_int_equal(tls13_handshake(&k->c, NULL, NULL), TLS13_WANT_READ);
	take_out(&k->c, out, &n);
}

static int
feed_one(struct kat *k, const uint8_t *p, size_t len)
{
	return feed_chunks(&k->c, p, len, len);
}

static void
test_records_bad(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t rec[32], out[64];
	size_t n;
	HEX(S3_SH_RECORD, sh);

	(void)state;
	/* Plaintext record longer than 2^14: record_overflow. */
	start(k);
	memcpy(rec, "\x16\x03\x03\x40\x01", 5);
	assert_int_equal(feed_one(k, rec, 5), TLS13_ALERT_RECORD_OVERFLOW);
	take_out(&k->c, out, &n);
	assert_int_equal(n, 7);
	assert_memory_equal(out, "\x15\x03\x03\x00\x02\x02\x16", 7);
	tls13_conn_free(&k->c);
	/* Protected record longer than 2^14 + 256. */
	start(k);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	memcpy(rec, "\x17\x03\x03\x41\x01", 5);
	assert_int_equal(feed_one(k, rec, 5), TLS13_ALERT_RECORD_OVERFLOW);
	tls13_conn_free(&k->c);
	/* Truncated protected record (shorter than a tag). */
	start(k);
	assert_int_equal(feed_one(k, sh, sh_len), TLS13_WANT_READ);
	memcpy(rec, "\x17\x03\x03\x00\x05\x01\x02\x03\x04\x05", 10);
	assert_int_equal(feed_one(k, rec, 10), TLS13_ALERT_BAD_RECORD_MAC);
	assert_alert_sent(k, TLS13_ALERT_BAD_RECORD_MAC);
	tls13_conn_free(&k->c);
	/* Application data before the handshake: unexpected_message. */
	start(k);
	memcpy(rec, "\x17\x03\x03\x00\x01\x00", 6);
	assert_int_equal(feed_one(k, rec, 6), TLS13_ALERT_UNEXPECTED_MESSAGE);
	tls13_conn_free(&k->c);
	/* A ServerHello truncated inside its record: decode_error. */
	start(k);
	memcpy(rec, "\x16\x03\x03\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00", 13);
	assert_int_equal(feed_one(k, rec, 13), TLS13_ALERT_DECODE_ERROR);
	tls13_conn_free(&k->c);
	/* A fatal alert from the server is reported as such. */
	start(k);
	memcpy(rec, "\x15\x03\x03\x00\x02\x02\x28", 7);
	assert_int_equal(feed_one(k, rec, 7),
	    TLS13_ERR_PEER_ALERT(TLS13_ALERT_HANDSHAKE_FAILURE));
	assert_string_equal(tls13_strerror(TLS13_ERR_PEER_ALERT(40)),
	    "peer alert: handshake_failure");
	tls13_conn_free(&k->c);
	free(k);
}

/* Build a plaintext ServerHello record from the trace's, with extensions
 * replaced by @a ext. */
static size_t
sh_with(uint8_t *rec, const uint8_t *random, const uint8_t *ext,
    size_t extlen)
{
	HEX(S3_SH_RECORD, sh);
	size_t body = 2 + 32 + 1 + 2 + 1 + 2 + extlen;

	(void)sh_len;
	memcpy(rec, "\x16\x03\x03", 3);
	rec[3] = (uint8_t)((body + 4) >> 8);
	rec[4] = (uint8_t)(body + 4);
	rec[5] = 2;
	rec[6] = 0;
	rec[7] = (uint8_t)(body >> 8);
	rec[8] = (uint8_t)body;
	memcpy(rec + 9, "\x03\x03", 2);
	memcpy(rec + 11, random ? random : sh + 11, 32);
	memcpy(rec + 43, "\x00\x13\x01\x00", 4);
	rec[47] = (uint8_t)(extlen >> 8);
	rec[48] = (uint8_t)extlen;
	memcpy(rec + 49, ext, extlen);
	return 49 + extlen;
}

static const uint8_t hrr_rnd[32] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02,
	0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
	0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c };

static void
test_server_hello_bad(void **state)
{
	struct kat *k = malloc(sizeof(*k));
	uint8_t rec[256], rnd[32], out[1024];
	size_t n;

	(void)state;
	/* No supported_versions: a TLS 1.2 server -> protocol_version. */
	start(k);
	n = sh_with(rec, NULL, (const uint8_t *)"", 0);
	assert_int_equal(feed_one(k, rec, n), TLS13_ALERT_PROTOCOL_VERSION);
	tls13_conn_free(&k->c);
	/* supported_versions says TLS 1.2 -> illegal_parameter. */
	start(k);
	n = sh_with(rec, NULL, (const uint8_t *)"\x00\x2b\x00\x02\x03\x03", 6);
	assert_int_equal(feed_one(k, rec, n), TLS13_ALERT_ILLEGAL_PARAMETER);
	tls13_conn_free(&k->c);
	/* Downgrade sentinel in the random -> illegal_parameter. */
	start(k);
	memset(rnd, 0x11, 32);
	memcpy(rnd + 24, "DOWNGRD\x01", 8);
	n = sh_with(rec, rnd, (const uint8_t *)"\x00\x2b\x00\x02\x03\x04", 6);
	assert_int_equal(feed_one(k, rec, n), TLS13_ALERT_ILLEGAL_PARAMETER);
	tls13_conn_free(&k->c);
	/* HelloRetryRequest for secp256r1: a second ClientHello with that
	 * share; a second HRR is unexpected_message. */
	start(k);
	n = sh_with(rec, hrr_rnd, (const uint8_t *)
	    "\x00\x2b\x00\x02\x03\x04\x00\x33\x00\x02\x00\x17", 12);
	assert_int_equal(feed_one(k, rec, n), TLS13_WANT_READ);
	assert_int_equal(tls13_hrr(&k->c), 1);
	take_out(&k->c, out, &n);
	assert_true(n > 5 + 4 + 65);
	assert_int_equal(out[0], 22);
	assert_non_null(memmem(out, n, "\x00\x33\x00\x47\x00\x45\x00\x17\x00\x41\x04", 11));
	n = sh_with(rec, hrr_rnd, (const uint8_t *)
	    "\x00\x2b\x00\x02\x03\x04\x00\x33\x00\x02\x00\x17", 12);
	assert_int_equal(feed_one(k, rec, n), TLS13_ALERT_UNEXPECTED_MESSAGE);
	tls13_conn_free(&k->c);
	/* HRR asking for the group we already sent: illegal_parameter. */
	start(k);
	n = sh_with(rec, hrr_rnd, (const uint8_t *)
	    "\x00\x2b\x00\x02\x03\x04\x00\x33\x00\x02\x00\x1d", 12);
	assert_int_equal(feed_one(k, rec, n), TLS13_ALERT_ILLEGAL_PARAMETER);
	tls13_conn_free(&k->c);
	/* Invalid x25519 share length -> illegal_parameter. */
	start(k);
	n = sh_with(rec, NULL, (const uint8_t *)
	    "\x00\x2b\x00\x02\x03\x04\x00\x33\x00\x06\x00\x1d\x00\x02\x01\x02", 16);
	assert_int_equal(feed_one(k, rec, n), TLS13_ALERT_ILLEGAL_PARAMETER);
	tls13_conn_free(&k->c);
	free(k);
}

static void
test_config_and_strings(void **state)
{
	tls13_config cfg;
	tls13_conn c;
	uint8_t rx[1024], tx[1024];

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	/* No trust store and not insecure: refused. */
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), TLS13_ERR_CONFIG);
	cfg.insecure_no_verify = 1;
	cfg.max_fragment = 700;
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), TLS13_ERR_CONFIG);
	cfg.max_fragment = 512;
	cfg.suites[0] = 0x1304;
	cfg.nsuites = 1;
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), TLS13_ERR_CONFIG);
	cfg.nsuites = 0;
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), 0);
	tls13_conn_free(&c);
	assert_string_equal(tls13_strerror(TLS13_ALERT_UNKNOWN_CA), "unknown_ca");
	assert_string_equal(tls13_strerror(TLS13_ALERT_CERTIFICATE_EXPIRED),
	    "certificate_expired");
	assert_string_equal(tls13_strerror(TLS13_ERR_CLOSED),
	    "closed by peer (close_notify)");
}

/* Target: a ClientHello of at most 150 bytes with one suite, one share
 * and SNI (docs/performance.md). */
static void
test_client_hello_size(void **state)
{
	tls13_config cfg;
	tls13_conn c;
	uint8_t rx[1024], tx[1024];
	const uint8_t *p;
	size_t n;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.insecure_no_verify = 1;
	cfg.suites[0] = TLS13_AES_128_GCM_SHA256;
	cfg.nsuites = 1;
	cfg.server_name = "example.com";
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), 0);
	assert_int_equal(tls13_handshake(&c, NULL, NULL), TLS13_WANT_READ);
	p = tls13_out(&c, &n);
	print_message("ClientHello: %zu bytes in a %zu-byte record\n", n - 5, n);
	assert_true(n - 5 <= 150);
	assert_int_equal(p[5], 1);
	tls13_conn_free(&c);
	/* With tickets wanted, psk_key_exchange_modes is added (6 bytes). */
	cfg.on_ticket = kat_on_ticket;
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), 0);
	assert_int_equal(tls13_handshake(&c, NULL, NULL), TLS13_WANT_READ);
	p = tls13_out(&c, &n);
	print_message("ClientHello with psk_key_exchange_modes: %zu bytes\n",
	    n - 5);
	tls13_conn_free(&c);
}

/* Offset of the cipher_suites vector in a ClientHello record. */
static size_t
ch_suites_at(const uint8_t *rec)
{
	/* header 5, type+length 4, legacy_version 2, random 32, session id */
	return 5 + 4 + 2 + 32 + 1 + rec[5 + 4 + 2 + 32];
}

/* A resumed ClientHello offers only the ticket's suite (and the full
 * configured list otherwise); a ClientHello that does not fit the send
 * buffer is TLS13_ERR_BUFFER, however small the buffer. */
static void
test_client_hello_resumed(void **state)
{
	tls13_config cfg;
	tls13_conn c;
	tls13_ticket t;
	uint8_t rx[1024], tx[1024];
	const uint8_t *p;
	size_t n, at, full;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	cfg.insecure_no_verify = 1;
	cfg.server_name = "example.com";
	cfg.on_ticket = kat_on_ticket;
	cfg.now_ms = kat_now;
	memset(&t, 0, sizeof(t));
	t.suite = TLS13_CHACHA20_POLY1305_SHA256;
	t.psk_len = 32;
	t.lifetime_s = 3600;
	t.issued_ms = kat_now(NULL) - 1000;
	t.len = 400;
	memset(t.ticket, 0xab, t.len);

	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), 0);
	assert_int_equal(tls13_handshake(&c, NULL, NULL), TLS13_WANT_READ);
	p = tls13_out(&c, &full);
	at = ch_suites_at(p);
	assert_int_equal(p[at] << 8 | p[at + 1], 6);   /* the three */
	tls13_conn_free(&c);

	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx,
	    sizeof(tx)), 0);
	assert_int_equal(tls13_conn_set_ticket(&c, &t), 0);
	assert_int_equal(tls13_handshake(&c, NULL, NULL), TLS13_WANT_READ);
	p = tls13_out(&c, &n);
	at = ch_suites_at(p);
	assert_int_equal(p[at] << 8 | p[at + 1], 2);
	assert_int_equal(p[at + 2] << 8 | p[at + 3],
	    TLS13_CHACHA20_POLY1305_SHA256);
	/* The ticket, its age, the binder: and 4 bytes fewer suites. */
	assert_true(n > full + t.len);
	tls13_conn_free(&c);

	/* The same ClientHello in a 512-byte send buffer does not fit. */
	assert_true(n > 512);
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx, 512), 0);
	assert_int_equal(tls13_conn_set_ticket(&c, &t), 0);
	assert_int_equal(tls13_handshake(&c, NULL, NULL), TLS13_ERR_BUFFER);
	tls13_conn_free(&c);
	/* An exact fit is enough. */
	assert_int_equal(tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx, n), 0);
	assert_int_equal(tls13_conn_set_ticket(&c, &t), 0);
	assert_int_equal(tls13_handshake(&c, NULL, NULL), TLS13_WANT_READ);
	tls13_conn_free(&c);
}

/* With per_record set (negotiated limit <= TLS13_SMALL_RECORD) no AEAD
 * context outlives a record, and the records are the same bytes. */
static void
test_record_per_record(void **state)
{
	struct tls13_dir a, b, r;
	uint8_t ra[128], rb[128], type;
	size_t la, lb, ptlen, i;
	HEX(S3_C_AP, cap);

	(void)state;
	(void)cap_len;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&r, 0, sizeof(r));
	b.per_record = 1;
	r.per_record = 1;
	assert_int_equal(tls13_dir_set(&a, TLS13_AES_128_GCM_SHA256, 32, cap, 1), 0);
	assert_int_equal(tls13_dir_set(&b, TLS13_AES_128_GCM_SHA256, 32, cap, 1), 0);
	assert_int_equal(tls13_dir_set(&r, TLS13_AES_128_GCM_SHA256, 32, cap, 0), 0);
	assert_int_equal(b.per_record, 1);
	for (i = 0; i < 3; i++) {
		memset(ra + 5, (int)i, 40);
		memset(rb + 5, (int)i, 40);
		assert_int_equal(tls13_record_seal(&a, TLS13_CT_APP, ra, 40, 0,
		    &la), 0);
		assert_int_equal(tls13_record_seal(&b, TLS13_CT_APP, rb, 40, 0,
		    &lb), 0);
		assert_non_null(a.aead);
		assert_null(b.aead);
		assert_int_equal(la, lb);
		assert_memory_equal(ra, rb, la);
		assert_int_equal(tls13_record_open(&r, rb, lb, &type, &ptlen), 0);
		assert_null(r.aead);
		assert_int_equal(ptlen, 40);
		assert_int_equal(rb[5], (uint8_t)i);
	}
	/* A forged record: rejected, and no context is left behind. */
	assert_int_equal(tls13_record_seal(&b, TLS13_CT_APP, rb, 40, 0, &lb), 0);
	rb[10] ^= 1;
	assert_int_equal(tls13_record_open(&r, rb, lb, &type, &ptlen),
	    TLS13_ALERT_BAD_RECORD_MAC);
	assert_null(r.aead);
	tls13_dir_clear(&a);
	tls13_dir_clear(&b);
	tls13_dir_clear(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keysched_s3),
		cmocka_unit_test(test_keysched_s4),
		cmocka_unit_test(test_record_s3),
		cmocka_unit_test(test_replay_s3),
		cmocka_unit_test(test_replay_s3_bytewise),
		cmocka_unit_test(test_replay_s3_split),
		cmocka_unit_test(test_replay_s5),
		cmocka_unit_test(test_replay_s7),
		cmocka_unit_test(test_resume_s4),
		cmocka_unit_test(test_key_update),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_tampered_finished),
		cmocka_unit_test(test_tampered_cert_verify),
		cmocka_unit_test(test_unexpected_order),
		cmocka_unit_test(test_ee_unoffered_extension),
		cmocka_unit_test(test_records_bad),
		cmocka_unit_test(test_rx_buffer_grow),
		cmocka_unit_test(test_tx_buffer_swap),
		cmocka_unit_test(test_record_limit_refused),
		cmocka_unit_test(test_server_hello_bad),
		cmocka_unit_test(test_config_and_strings),
		cmocka_unit_test(test_client_hello_size),
		cmocka_unit_test(test_client_hello_resumed),
		cmocka_unit_test(test_record_per_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
