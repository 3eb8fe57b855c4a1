#!/usr/bin/env bash
# KeyUpdate (RFC 9846 §4.7.3) from openssl s_server, driven through its
# interactive stdin: a line "k" sends KeyUpdate(update_not_requested), "K"
# sends KeyUpdate(update_requested); other lines are sent as application
# data.  The updates go out after the probe's GET and before the response,
# so the probe can only read the status line if it installed the new
# traffic keys.  For "K" the probe owes a KeyUpdate of its own, but only
# "prior to sending its next Application Data record", and the probe sends
# none after its GET, so its answer is reported, not required; if it does
# answer (s_server -msg logs "<<< ... KeyUpdate"), every later record it
# sends must decrypt under its new key, which the server-log check catches.
. "$(dirname "$0")/lib.sh"
need_probe
pki_std p256

RESP='HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello, world'

# scenario NAME SUITE STEP...: see interactive() in lib.sh.
scenario()
{
	local name=$1 suite=$2
	shift 2
	SRV_ARGS=(-tls1_3 -msg -naccept 1 -ciphersuites "$suite")
	PROBE_ARGS=(--suite "$suite")
	interactive "$name" "$@"
}

server_sent_ku() { grep -c '^>>> .*KeyUpdate' "$T/$1.log"; }
client_sent_ku() { grep -c '^<<< .*KeyUpdate' "$T/$1.log"; }

note_answer()
{
	if [ "$(client_sent_ku "$1")" -ge 1 ]; then
		say "  note: $1: the probe answered update_requested with its own KeyUpdate"
	else
		say "  note: $1: the probe sent no KeyUpdate (allowed: it sent no application data afterwards)"
	fi
}

# Errors in the server's log that point at wrong keys or a broken record
# stream.  A connection closed without close_notify makes s_server log
# "unexpected eof" and send decode_error: not a KeyUpdate problem, so only
# noted.
check_no_server_errors()
{
	local log=$T/$1.log errs
	errs=$(grep -iE 'bad record mac|decryption failed|unexpected message|alert.*fatal|error:' "$log" |
		grep -v 'unexpected eof while reading')
	if grep -q 'unexpected eof while reading' "$log"; then
		say "  note: $1: the probe closed without close_notify"
		errs=$(printf '%s\n' "$errs" | grep -v '^>>> .*Alert.*decode_error')
	fi
	if [ -n "$errs" ]; then
		fail "$1: s_server reported an error: $(printf '%s' "$errs" | tr '\n' ' ' | head -c 300)"
	else
		pass "$1: no error in the server's log"
	fi
}

# 1. One KeyUpdate, no update requested: the probe updates its read keys.
scenario ku-one TLS_AES_128_GCM_SHA256 k "data:$RESP"
assert_ok "KeyUpdate(not requested) before the response"
if [ "$(server_sent_ku ku-one)" -ge 1 ]; then pass "ku-one: s_server sent a KeyUpdate"; else fail "ku-one: s_server did not log sending a KeyUpdate (test set-up)"; fi
check_no_server_errors ku-one

# 2. update_requested: the probe must send its own KeyUpdate and switch its
#    write keys (any later record it sends is under the new key).
scenario ku-requested TLS_AES_256_GCM_SHA384 K "data:$RESP"
assert_ok "KeyUpdate(requested) before the response"
note_answer ku-requested
check_no_server_errors ku-requested

# 3. Several updates in a row (the read key goes three generations ahead),
#    with ChaCha20-Poly1305.
scenario ku-many TLS_CHACHA20_POLY1305_SHA256 k K k "data:$RESP"
assert_ok "three KeyUpdates before the response"
if [ "$(server_sent_ku ku-many)" -ge 3 ]; then pass "ku-many: s_server sent 3 KeyUpdates"; else fail "ku-many: s_server logged only $(server_sent_ku ku-many) KeyUpdates sent (test set-up)"; fi
note_answer ku-many
check_no_server_errors ku-many

# 4. KeyUpdates between records of one response (status line, then update,
#    headers, update, body).
scenario ku-mid TLS_AES_128_GCM_SHA256 'data:HTTP/1.1 200 OK\r\n' k \
	'data:Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n' K \
	'data:hello, world'
assert_ok "KeyUpdates in the middle of the response"
check_no_server_errors ku-mid
finish
