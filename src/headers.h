/*
 * headers: a route's header rules (`set_header`, `remove_header`) and the
 * credentials the gateway sends upstream in place of the device's
 * (`credentials_file`, `device_credentials_dir`).  proxy.c calls these
 * while it writes the request head; nothing here does network I/O.
 *
 * Credentials are secrets: no function here logs a password, a file's
 * content or an Authorization value, and every buffer that held one is
 * wiped before it is released.
 */
#ifndef TLSGATE_HEADERS_H
#define TLSGATE_HEADERS_H

#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

struct evbuffer;
struct http1_request;

/* Longest device user name looked up in device_credentials_dir; a longer
   one is not used as a file name (the source address is tried instead). */
#define HEADERS_MAX_USER 64
/* Largest device credentials file, the same bound as credentials_file. */
#define HEADERS_MAX_FILE CONFIG_MAX_CREDENTIALS
/* Room for base64("user:password") of the largest file, with its NUL. */
#define HEADERS_MAX_BASIC (((HEADERS_MAX_FILE + 2) / 3) * 4 + 1)

/* Results of headers_credentials(). */
#define HEADERS_AUTH_KEEP 0   /* the device's Authorization (if any) passes */
#define HEADERS_AUTH_SET  1   /* the gateway's credentials replace it */

/**
 * 0 when a field called name[len] must not be forwarded on route `r`
 * because a `remove_header` line names it, or a `set_header` line does
 * (its value replaces the device's); 1 otherwise.  Names compare
 * case-insensitively (RFC 9110 §5.1).
 */
int headers_pass(const struct route *r, const char *name, size_t len);

/**
 * Appends "Name: value\r\n" to `out` for each `set_header` line of `r`,
 * in file order, except a line whose name is `except` (NULL: none).
 * Returns 0, or -1 when out of memory.
 */
int headers_append(const struct route *r, const char *except,
    struct evbuffer *out);

/**
 * Decides the Authorization sent upstream for request `req` from the
 * device at `peer` (NULL: unknown) on route `r`:
 *
 *  1. with `device_credentials_dir`: the file named by the user name of
 *     the device's "Authorization: Basic" field (when that name is a safe
 *     file name, see headers_device_user()), else the file named by the
 *     source address (headers_peer_name());
 *  2. else, or when neither file exists: the route's credentials_file;
 *  3. else the device's own field passes (HEADERS_AUTH_KEEP).
 *
 * A device file is opened relative to the directory with O_NOFOLLOW (a
 * symbolic link is refused, so nothing outside the directory is read) and
 * must be a regular file of at most HEADERS_MAX_FILE bytes holding one
 * line "user:password" (a final "\n" or "\r\n" allowed, no other control
 * characters, a non-empty user).
 *
 * Returns HEADERS_AUTH_SET with the NUL-terminated base64 of
 * "user:password" in basic[basiclen] (a secret: the caller wipes it),
 * HEADERS_AUTH_KEEP, or -1 after logging one line (naming the file, never
 * its content) when the directory cannot be opened or a device file
 * exists but cannot be used: the request is answered 500.
 */
int headers_credentials(const struct route *r,
    const struct http1_request *req, const struct sockaddr *peer,
    char *basic, size_t basiclen);

/**
 * Copies into user[userlen] the user name of the device's
 * "Authorization: Basic" field (RFC 7617 §2: the part of the decoded
 * user-pass before the first ':').  Returns 0 when there is exactly one
 * Authorization field, its scheme is Basic, its credentials decode, and
 * the user name is usable as a file name: 1 to HEADERS_MAX_USER printable
 * ASCII characters without '/', and not "." or "..".  Returns -1
 * otherwise (user[0] is then '\0').  The decoded password is wiped.
 */
int headers_device_user(const struct http1_request *req, char *user,
    size_t userlen);

/**
 * Writes the address of `peer` (AF_INET or AF_INET6) as text into
 * buf[len]: "192.0.2.7", "2001:db8::1"; an IPv4-mapped IPv6 address
 * (from a dual-stack socket) is written as the IPv4 address.  Returns 0,
 * or -1 for another family or a buffer too small.
 */
int headers_peer_name(const struct sockaddr *peer, char *buf, size_t len);

/**
 * Checks the content of a credentials file in[0..len) and writes the
 * base64 of its "user:password" line into out[outlen] (NUL-terminated).
 * Returns 0, or -1 with a short reason (no secret in it) in *why when the
 * content is not one line "user:password" (rules at
 * headers_credentials()) or out is too small.
 */
int headers_encode_credentials(const char *in, size_t len, char *out,
    size_t outlen, const char **why);

#endif
