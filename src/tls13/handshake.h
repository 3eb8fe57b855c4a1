/*
 * handshake.h: internals of the tls13 engine shared with the unit tests:
 * the connection states and the handshake table.
 */
#ifndef TLSGATE_TLS13_HANDSHAKE_H
#define TLSGATE_TLS13_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "tls13/buf.h"
#include "tls13/tls13.h"

/** Client states (RFC 9846 Appendix A.1). */
enum tls13_state {
	TLS13_ST_START = 1,     /* ClientHello not sent yet */
	TLS13_ST_WAIT_SH,
	TLS13_ST_WAIT_EE,
	TLS13_ST_WAIT_CERT_CR,
	TLS13_ST_WAIT_CERT,
	TLS13_ST_WAIT_CV,
	TLS13_ST_WAIT_FIN,
	TLS13_ST_CONNECTED,
	TLS13_ST_ERROR,
};

/** One row of the handshake table: in @c state, message @c type is handled
 *  by @c handler(conn, body cursor, whole message, its length), which
 *  returns 0 or the alert to send. */
struct tls13_hs_rule {
	uint8_t state;
	uint8_t type;
	int (*handler)(tls13_conn *, tls13_rbuf *, const uint8_t *, size_t);
};

/** The table, terminated by a row with a NULL handler. */
extern const struct tls13_hs_rule tls13_hs_table[];

/** The rule for (@a state, @a type), or NULL: unexpected_message. */
const struct tls13_hs_rule *tls13_hs_lookup(uint8_t state, uint8_t type);

#endif
