/*
 * fuzz_tls13_client.c: libFuzzer target over arbitrary server flights into
 * the built-in TLS 1.3 client.  The low two bits of the first input byte
 * pick the stage the fuzzed bytes reach (3 counts as 0):
 *
 *   mode 0: raw bytes from the server (record layer, ServerHello, HRR);
 *   mode 1: after the trace's ServerHello, the input is the plaintext of the
 *           server's encrypted flight, sealed here under the trace's server
 *           handshake key (EncryptedExtensions, Certificate, x509,
 *           CertificateVerify, Finished parsers);
 *   mode 2: after the trace's whole handshake, the input is sealed under the
 *           server application key (NewSessionTicket, KeyUpdate, alerts,
 *           application data).
 *
 * Bit 2 of the first byte offers max_fragment_length(512) instead of
 * record_size_limit.  In mode 2, bit 3 takes the send buffer away
 * (tls13_conn_set_txbuf) while the records are fed (KeyUpdate requests and
 * alerts then meet no buffer) and bit 4 gives back only 40 bytes for the
 * final writes.  The second byte is the chunk size for feeding and sealing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tls13/record.h"
#include "tls13/tls13.h"

#include "../unit/tls13_vectors.h"

static size_t
unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = strlen(h) / 2, i;
	unsigned v;

	if (n > cap)
		n = cap;
	for (i = 0; i < n; i++) {
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return 0;
		out[i] = (uint8_t)v;
	}
	return n;
}

static void
on_ticket(void *arg, const tls13_ticket *t)
{
	(void)arg;
	(void)t;
}

static uint8_t rx[TLS13_RECORD_SIZE(16384) + 4096], tx[4096];
static uint8_t sealed[1 << 17], buf[4096];

/* Feed @a p in chunks of @a step, draining output and reading app data. */
static int
feed(tls13_conn *c, const uint8_t *p, size_t len, size_t step)
{
	uint8_t app[512];
	size_t n, got;
	int err = 0;

	while (len > 0) {
		n = len < step ? len : step;
		err = tls13_handshake(c, p, &n);
		if (err == TLS13_ERR_BUFFER || TLS13_IS_ERROR(err))
			return err;
		while (tls13_read_app(c, app, sizeof(app), &got) == 0 &&
		    got > 0)
			;
		(void)tls13_out(c, &got);
		tls13_out_consume(c, got);
		if (n == 0)
			return err;
		p += n;
		len -= n;
	}
	return err;
}

/* Seal @a p as records of @a chunk bytes under @a secret, starting at
 * sequence number @a seq. */
static size_t
seal(const char *secret, uint64_t seq, uint8_t type, const uint8_t *p,
    size_t len, size_t chunk)
{
	struct tls13_dir d;
	uint8_t s[32];
	size_t off = 0, n, out = 0, reclen;

	memset(&d, 0, sizeof(d));
	unhex(secret, s, sizeof(s));
	if (tls13_dir_set(&d, TLS13_AES_128_GCM_SHA256, 32, s, 1) != 0)
		return 0;
	d.seq = seq;
	while (off < len && out + chunk + 64 < sizeof(sealed)) {
		n = len - off < chunk ? len - off : chunk;
		memcpy(sealed + out + 5, p + off, n);
		if (tls13_record_seal(&d, type, sealed + out, n, 0, &reclen) != 0)
			break;
		out += reclen;
		off += n;
	}
	tls13_dir_clear(&d);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t priv[32], ch[256];
	tls13_test_hooks hooks;
	tls13_config cfg;
	tls13_conn c;
	size_t step, n, len;
	uint8_t mode, flags;

	if (size < 2)
		return 0;
	flags = data[0];
	mode = (flags & 3) % 3;
	step = data[1] ? data[1] : 16384;
	data += 2;
	size -= 2;

	memset(&cfg, 0, sizeof(cfg));
	memset(&hooks, 0, sizeof(hooks));
	cfg.suites[0] = TLS13_AES_128_GCM_SHA256;
	cfg.suites[1] = TLS13_CHACHA20_POLY1305_SHA256;
	cfg.suites[2] = TLS13_AES_256_GCM_SHA384;
	cfg.nsuites = 3;
	cfg.server_name = "server";
	/* Bit 2 of the first byte offers max_fragment_length instead. */
	if (flags & 4)
		cfg.max_fragment = 512;
	else
		cfg.record_size_limit = 16384;
	cfg.alpn = (const uint8_t *)"\x02h2\x08http/1.1";
	cfg.alpn_len = 12;
	cfg.insecure_no_verify = 1;
	cfg.on_ticket = on_ticket;
	unhex(S3_CLIENT_PRIV, priv, sizeof(priv));
	hooks.x25519_private = priv;
	hooks.client_hello = ch;
	hooks.client_hello_len = unhex(S3_CLIENT_HELLO, ch, sizeof(ch));
	cfg.test = &hooks;
	if (tls13_conn_init(&c, &cfg, rx, sizeof(rx), tx, sizeof(tx)) != 0)
		return 0;
	(void)tls13_handshake(&c, NULL, NULL);
	(void)tls13_out(&c, &n);
	tls13_out_consume(&c, n);

	if (mode == 0) {
		(void)feed(&c, data, size, step);
		goto out;
	}
	len = unhex(S3_SH_RECORD, buf, sizeof(buf));
	if (feed(&c, buf, len, len) != TLS13_WANT_READ)
		goto out;
	if (mode == 1) {
		len = seal(S3_S_HS, 0, TLS13_CT_HANDSHAKE, data, size, step);
		(void)feed(&c, sealed, len, 4096);
		goto out;
	}
	len = unhex(S3_SERVER_FLIGHT, buf, sizeof(buf));
	if (feed(&c, buf, len, len) != 0)
		goto out;
	/* Input: records of [type byte][len byte][bytes...] under s ap. */
	{
		uint64_t seq = 0;
		static uint8_t small[40];

		if (flags & 8)
			(void)tls13_conn_set_txbuf(&c, NULL, 0);

		while (size >= 2) {
			uint8_t type = data[0];
			size_t l = data[1] < size - 2 ? data[1] : size - 2;

			len = seal(S3_S_AP, seq++, type, data + 2, l, 16384);
			if (feed(&c, sealed, len, step) != 0)
				break;
			data += 2 + l;
			size -= 2 + l;
		}
		if (flags & 16)
			(void)tls13_conn_set_txbuf(&c, small, sizeof(small));
		else
			(void)tls13_conn_set_txbuf(&c, tx, sizeof(tx));
		(void)tls13_key_update(&c, 1);
		(void)tls13_write_app(&c, (const uint8_t *)"x", 1, &n);
		(void)tls13_close(&c);
	}
out:
	tls13_conn_free(&c);
	return 0;
}
