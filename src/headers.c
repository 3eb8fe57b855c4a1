/*
 * headers: header rules and gateway credentials (see headers.h).
 *
 * The device credentials directory is read per request, so that an
 * operator can add or change a device's file without a reload.  The
 * files are tiny and on local storage; reading one costs less than the
 * TLS record that carries the request.
 */
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config.h"
#include "headers.h"
#include "http1.h"
#include "log.h"

/* Longest "Basic <token68>" credentials decoded to find a user name: the
   base64 of a HEADERS_MAX_FILE "user:password", which is more than any
   device sends. */
#define HEADERS_MAX_TOKEN (HEADERS_MAX_BASIC - 1)

static int headers_name_is(const char *, const char *, size_t);
static int headers_safe_name(const char *, size_t);
static int headers_read_file(const struct route *, int, const char *,
    char *, size_t);

static int
headers_name_is(const char *rule, const char *name, size_t len)
{
	return strlen(rule) == len && strncasecmp(rule, name, len) == 0;
}

int
headers_pass(const struct route *r, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < r->nremove_headers; i++)
		if (headers_name_is(r->remove_headers[i], name, len))
			return 0;
	for (i = 0; i < r->nset_headers; i++)
		if (headers_name_is(r->set_headers[i].name, name, len))
			return 0;
	return 1;
}

int
headers_append(const struct route *r, const char *except,
    struct evbuffer *out)
{
	size_t i;

	for (i = 0; i < r->nset_headers; i++) {
		if (except != NULL && strcasecmp(r->set_headers[i].name,
		    except) == 0)
			continue;
		if (evbuffer_add_printf(out, "%s: %s\r\n",
		    r->set_headers[i].name, r->set_headers[i].value) < 0)
			return -1;
	}
	return 0;
}

/*
 * A device's user name becomes a file name in a directory the operator
 * controls: printable ASCII only, no '/', not "." or "..", so that it
 * names an entry of that directory and nothing else.
 */
static int
headers_safe_name(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > HEADERS_MAX_USER)
		return 0;
	if ((len == 1 && s[0] == '.') ||
	    (len == 2 && s[0] == '.' && s[1] == '.'))
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] > '~' || s[i] == '/')
			return 0;
	return 1;
}

int
headers_device_user(const struct http1_request *req, char *user,
    size_t userlen)
{
	unsigned char dec[HEADERS_MAX_TOKEN];
	const char *v, *colon;
	size_t len, i, pad = 0;
	int at, n, rc = -1;

	if (userlen > 0)
		user[0] = '\0';
	/* RFC 9110 §11.6.2: one Authorization field; with several we
	   cannot tell which one the device meant. */
	if ((at = http1_find_header(req->headers, req->nheaders, 0,
	    "Authorization")) == -1 || http1_find_header(req->headers,
	    req->nheaders, (size_t)at + 1, "Authorization") != -1)
		goto out;
	v = req->headers[at].value.p;
	len = req->headers[at].value.len;
	/* RFC 9110 §11.1: the scheme is case-insensitive; RFC 7617 §2:
	   "Basic" 1*SP token68. */
	if (len < 6 || strncasecmp(v, "Basic ", 6) != 0)
		goto out;
	for (i = 6; i < len && v[i] == ' '; i++)
		;
	v += i;
	len -= i;
	/* EVP_DecodeBlock takes whole 4-character groups only and counts
	   the padding as decoded zero bytes. */
	if (len == 0 || len % 4 != 0 || len > sizeof(dec))
		goto out;
	/* RFC 4648 §4 alphabet; '=' only as the last one or two. */
	for (i = 0; i < len; i++) {
		if (v[i] == '=') {
			if (i < len - 2 || v[len - 1] != '=')
				goto out;
			continue;
		}
		if (!(v[i] == '+' || v[i] == '/' ||
		    (v[i] >= '0' && v[i] <= '9') ||
		    (v[i] >= 'a' && v[i] <= 'z') ||
		    (v[i] >= 'A' && v[i] <= 'Z')))
			goto out;
	}
	if ((n = EVP_DecodeBlock(dec, (const unsigned char *)v, (int)len)) ==
	    -1)
		goto out;
	pad = (v[len - 1] == '=') + (v[len - 2] == '=');
	n -= (int)pad;
	if (n <= 0)
		goto out;
	/* RFC 7617 §2: the user-id cannot contain a colon. */
	if ((colon = memchr(dec, ':', (size_t)n)) == NULL)
		goto out;
	len = (size_t)(colon - (const char *)dec);
	if (!headers_safe_name((const char *)dec, len) || len >= userlen)
		goto out;
	memcpy(user, dec, len);
	user[len] = '\0';
	rc = 0;
out:
	/* The device's password was in there. */
	OPENSSL_cleanse(dec, sizeof(dec));
	return rc;
}

int
headers_peer_name(const struct sockaddr *peer, char *buf, size_t len)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

	if (peer == NULL)
		return -1;
	if (peer->sa_family == AF_INET) {
		sin = (const void *)peer;
		return inet_ntop(AF_INET, &sin->sin_addr, buf,
		    (socklen_t)len) != NULL ? 0 : -1;
	}
	if (peer->sa_family != AF_INET6)
		return -1;
	sin6 = (const void *)peer;
	/* A dual-stack socket shows IPv4 devices as ::ffff:a.b.c.d; the
	   operator names their files a.b.c.d, as the allow list does. */
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		return inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], buf,
		    (socklen_t)len) != NULL ? 0 : -1;
	return inet_ntop(AF_INET6, &sin6->sin6_addr, buf,
	    (socklen_t)len) != NULL ? 0 : -1;
}

int
headers_encode_credentials(const char *in, size_t len, char *out,
    size_t outlen, const char **why)
{
	const char *colon;
	size_t i;

	if (len > 0 && in[len - 1] == '\n') {
		len--;
		if (len > 0 && in[len - 1] == '\r')
			len--;
	}
	if (len == 0) {
		*why = "empty";
		return -1;
	}
	if (len > HEADERS_MAX_FILE) {
		*why = "too large";
		return -1;
	}
	/* One line: a control character would end or split the header
	   field it goes into.  Bytes >= 0x80 pass (RFC 7617 §2.1: UTF-8). */
	for (i = 0; i < len; i++)
		if ((unsigned char)in[i] < ' ' || in[i] == 0x7f) {
			*why = "not one line of printable characters";
			return -1;
		}
	if ((colon = memchr(in, ':', len)) == NULL || colon == in) {
		*why = "not \"user:password\"";
		return -1;
	}
	if (outlen < ((len + 2) / 3) * 4 + 1) {
		*why = "too large";
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in,
	    (int)len);
	return 0;
}

/*
 * Reads the device file `name` of the directory open at dfd.  Returns
 * HEADERS_AUTH_SET with basic filled, HEADERS_AUTH_KEEP when there is no
 * such file, or -1 after logging.
 */
static int
headers_read_file(const struct route *r, int dfd, const char *name,
    char *basic, size_t basiclen)
{
	char buf[HEADERS_MAX_FILE + 1], esc[HEADERS_MAX_USER * 4 + 1];
	const char *why = NULL;
	struct stat st;
	size_t len = 0;
	ssize_t n;
	int fd, rc = -1;

	log_escape(esc, sizeof(esc), name, strlen(name));
	/* O_NOFOLLOW: a symbolic link could lead out of the directory.
	   O_NONBLOCK: a FIFO planted there must not stall the loop. */
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		if (errno == ENOENT) {
			rc = HEADERS_AUTH_KEEP;
			goto out;
		}
		if (errno == ELOOP) {
			why = "a symbolic link (refused)";
			goto out;
		}
		log_warn("route %s: device credentials %s/%s", r->name,
		    r->device_credentials_dir, esc);
		goto out;
	}
	if (fstat(fd, &st) == -1) {
		log_warn("route %s: device credentials %s/%s", r->name,
		    r->device_credentials_dir, esc);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		why = "not a regular file";
		goto out;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			log_warn("route %s: device credentials %s/%s",
			    r->name, r->device_credentials_dir, esc);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	/* A file of HEADERS_MAX_FILE bytes plus a newline is still one
	   line; more is refused by the encoder. */
	if (headers_encode_credentials(buf, len, basic, basiclen, &why) == 0)
		rc = HEADERS_AUTH_SET;
out:
	if (rc == -1 && why != NULL)
		log_warnx("route %s: device credentials %s/%s: %s", r->name,
		    r->device_credentials_dir, esc, why);
	if (fd != -1)
		close(fd);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

int
headers_credentials(const struct route *r, const struct http1_request *req,
    const struct sockaddr *peer, char *basic, size_t basiclen)
{
	char name[INET6_ADDRSTRLEN > HEADERS_MAX_USER + 1 ?
	    INET6_ADDRSTRLEN : HEADERS_MAX_USER + 1];
	int dfd = -1, rc = HEADERS_AUTH_KEEP;

	if (r->device_credentials_dir != NULL) {
		dfd = open(r->device_credentials_dir, O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC);
		if (dfd == -1) {
			log_warn("route %s: device_credentials_dir %s",
			    r->name, r->device_credentials_dir);
			rc = -1;
			goto out;
		}
		if (headers_device_user(req, name, sizeof(name)) == 0 &&
		    (rc = headers_read_file(r, dfd, name, basic, basiclen)) !=
		    HEADERS_AUTH_KEEP)
			goto out;
		if (headers_peer_name(peer, name, sizeof(name)) == 0 &&
		    (rc = headers_read_file(r, dfd, name, basic, basiclen)) !=
		    HEADERS_AUTH_KEEP)
			goto out;
	}
	if (r->credentials_basic != NULL) {
		if (strlen(r->credentials_basic) >= basiclen) {
			log_warnx("route %s: credentials_file: too large",
			    r->name);
			rc = -1;
			goto out;
		}
		memcpy(basic, r->credentials_basic,
		    strlen(r->credentials_basic) + 1);
		rc = HEADERS_AUTH_SET;
	}
out:
	if (dfd != -1)
		close(dfd);
	return rc;
}
