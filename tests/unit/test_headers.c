/*
 * Unit tests of headers.c: header rules, the device's Basic user name,
 * source address names, credentials files (limits, symbolic links, other
 * file types) and the order in which credentials are chosen.  Messages
 * go to a temporary file, which is searched for the secrets afterwards.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "config.h"
#include "headers.h"
#include "http1.h"
#include "log.h"

/* Passwords of the files below: none may reach a log line. */
#define SECRET_DEV  "dev-pass-7731"
#define SECRET_IP   "ip-pass-5120"
#define SECRET_BAD  "bad-pass-9046"
#define SECRET_SENT "device-sent-3388"

static char tmpdir[64];
static char logpath[96];
static int saved_stderr = -1;

static void
write_file(const char *name, const char *content)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fwrite(content, 1, strlen(content), f),
	    strlen(content));
	assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
	char path[256];

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_headers.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	/* Everything logged from here on lands in a file we can search. */
	snprintf(logpath, sizeof(logpath), "%s.log", tmpdir);
	fflush(stderr);
	assert_true((saved_stderr = dup(STDERR_FILENO)) != -1);
	assert_non_null(freopen(logpath, "w", stderr));
	log_init(LOG_LEVEL_DEBUG, "test_headers");
	write_file("dev1", "dev1@app:" SECRET_DEV "\n");
	write_file("127.0.0.1", "ip@app:" SECRET_IP "\r\n");
	write_file("::1", "ip6@app:" SECRET_IP);
	write_file("broken", "broken@app:" SECRET_BAD "\nsecond line\n");
	write_file("nocolon", SECRET_BAD "\n");
	snprintf(path, sizeof(path), "%s/sub", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/link", tmpdir);
	assert_int_equal(symlink("dev1", path), 0);
	return 0;
}

static int
teardown(void **state)
{
	static const char *const names[] = {
		"dev1", "127.0.0.1", "::1", "broken", "nocolon", "fifo",
		"link", "big", "big1",
	};
	char path[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		(void)unlink(path);
	}
	snprintf(path, sizeof(path), "%s/sub", tmpdir);
	(void)rmdir(path);
	(void)rmdir(tmpdir);
	/* Back to the terminal, with what was logged (and cmocka's
	 * messages about a failure) shown there. */
	fflush(stderr);
	if (saved_stderr != -1) {
		FILE *f = fopen(logpath, "r");
		char ln[512];

		dup2(saved_stderr, STDERR_FILENO);
		close(saved_stderr);
		while (f != NULL && fgets(ln, sizeof(ln), f) != NULL)
			fprintf(stderr, "  | %s", ln);
		if (f != NULL)
			fclose(f);
	}
	(void)unlink(logpath);
	return 0;
}

/* Parses a request whose only field of interest is `auth_lines`. */
static void
parse(struct http1_request *req, char *buf, size_t buflen,
    const char *auth_lines)
{
	long rc;

	snprintf(buf, buflen, "POST /v1/t HTTP/1.1\r\nHost: gw\r\n%s"
	    "Content-Length: 0\r\n\r\n", auth_lines);
	rc = http1_parse_request(buf, strlen(buf), 16384, req);
	assert_int_equal(rc, (long)strlen(buf));
}

static int
user_of(const char *auth_lines, char *user, size_t userlen)
{
	static struct http1_request req;
	char buf[4096];

	parse(&req, buf, sizeof(buf), auth_lines);
	return headers_device_user(&req, user, userlen);
}

static void
test_pass_append(void **state)
{
	struct route r;
	struct evbuffer *out = evbuffer_new();
	char *rm[] = { "X-Secret", "via" };
	char text[256];
	size_t len;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.name = "t";
	r.remove_headers[0] = rm[0];
	r.remove_headers[1] = rm[1];
	r.nremove_headers = 2;
	r.set_headers[0].name = "X-Site";
	r.set_headers[0].value = "greenhouse 1";
	r.set_headers[1].name = "Authorization";
	r.set_headers[1].value = "Bearer t";
	r.set_headers[2].name = "X-Empty";
	r.set_headers[2].value = "";
	r.nset_headers = 3;
	assert_int_equal(headers_pass(&r, "x-secret", 8), 0);
	assert_int_equal(headers_pass(&r, "VIA", 3), 0);
	assert_int_equal(headers_pass(&r, "x-site", 6), 0);
	assert_int_equal(headers_pass(&r, "X-Secre", 7), 1);
	assert_int_equal(headers_pass(&r, "X-Secrets", 9), 1);
	assert_int_equal(headers_pass(&r, "Accept", 6), 1);
	assert_non_null(out);
	assert_int_equal(headers_append(&r, NULL, out), 0);
	assert_int_equal(headers_append(&r, "authorization", out), 0);
	len = evbuffer_get_length(out);
	assert_true(len < sizeof(text));
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	assert_string_equal(text,
	    "X-Site: greenhouse 1\r\nAuthorization: Bearer t\r\nX-Empty: \r\n"
	    "X-Site: greenhouse 1\r\nX-Empty: \r\n");
	evbuffer_free(out);
}

static void
test_device_user(void **state)
{
	char user[HEADERS_MAX_USER + 1], line[512], name[80];

	(void)state;
	/* base64("dev1:pw") */
	assert_int_equal(user_of("Authorization: Basic ZGV2MTpwdw==\r\n",
	    user, sizeof(user)), 0);
	assert_string_equal(user, "dev1");
	/* Scheme in any case, several spaces, an empty password. */
	assert_int_equal(user_of("authorization: bAsIc   ZGV2MTo=\r\n",
	    user, sizeof(user)), 0);
	assert_string_equal(user, "dev1");
	/* base64("ab:c"), two padding characters. */
	assert_int_equal(user_of("Authorization: Basic YWI6Yw==\r\n", user,
	    sizeof(user)), 0);
	assert_string_equal(user, "ab");
	/* Refused: no field, two fields, another scheme, bad base64,
	 * padding in the middle, a length not a multiple of 4, no colon. */
	assert_int_equal(user_of("", user, sizeof(user)), -1);
	assert_string_equal(user, "");
	assert_int_equal(user_of("Authorization: Basic ZGV2MTpwdw==\r\n"
	    "Authorization: Basic ZGV2MTpwdw==\r\n", user, sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Bearer ZGV2MTpwdw==\r\n",
	    user, sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic\r\n", user,
	    sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic ZGV2MTpwd*==\r\n",
	    user, sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic ZG=2MTpwdw==\r\n",
	    user, sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic ZGV2MTpwdw=\r\n",
	    user, sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic ZGV2MXB3\r\n", user,
	    sizeof(user)), -1);
	/* Unsafe as a file name: ".", "..", "a/b", a space, empty. */
	assert_int_equal(user_of("Authorization: Basic LjpwdA==\r\n", user,
	    sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic Li46cHQ=\r\n", user,
	    sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic YS9iOnB0\r\n", user,
	    sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic YSBiOnB0\r\n", user,
	    sizeof(user)), -1);
	assert_int_equal(user_of("Authorization: Basic OnB0\r\n", user,
	    sizeof(user)), -1);
	/* "..." is a name like any other. */
	assert_int_equal(user_of("Authorization: Basic Li4uOnB0\r\n", user,
	    sizeof(user)), 0);
	assert_string_equal(user, "...");
	/* HEADERS_MAX_USER characters pass, one more does not. */
	memset(name, 'u', HEADERS_MAX_USER);
	memcpy(name + HEADERS_MAX_USER, ":p", 3);
	{
		char b64[128];

		EVP_EncodeBlock((unsigned char *)b64,
		    (const unsigned char *)name, (int)strlen(name));
		snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
		    b64);
		assert_int_equal(user_of(line, user, sizeof(user)), 0);
		assert_int_equal(strlen(user), HEADERS_MAX_USER);
		memset(name, 'u', HEADERS_MAX_USER + 1);
		memcpy(name + HEADERS_MAX_USER + 1, ":p", 3);
		EVP_EncodeBlock((unsigned char *)b64,
		    (const unsigned char *)name, (int)strlen(name));
		snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
		    b64);
		assert_int_equal(user_of(line, user, sizeof(user)), -1);
	}
	/* A credentials token longer than HEADERS_MAX_BASIC - 1. */
	memset(line, 0, sizeof(line));
	{
		char *big = malloc(HEADERS_MAX_BASIC + 64);

		assert_non_null(big);
		memcpy(big, "Authorization: Basic ", 21);
		memset(big + 21, 'A', HEADERS_MAX_BASIC + 3);
		memcpy(big + 21 + HEADERS_MAX_BASIC + 3, "\r\n", 3);
		assert_int_equal(user_of(big, user, sizeof(user)), -1);
		free(big);
	}
}

static void
test_peer_name(void **state)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr sa;
	char buf[INET6_ADDRSTRLEN];

	(void)state;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr), 1);
	assert_int_equal(headers_peer_name((void *)&sin, buf, sizeof(buf)),
	    0);
	assert_string_equal(buf, "192.0.2.7");
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::1",
	    &sin6.sin6_addr), 1);
	assert_int_equal(headers_peer_name((void *)&sin6, buf, sizeof(buf)),
	    0);
	assert_string_equal(buf, "2001:db8::1");
	assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1",
	    &sin6.sin6_addr), 1);
	assert_int_equal(headers_peer_name((void *)&sin6, buf, sizeof(buf)),
	    0);
	assert_string_equal(buf, "127.0.0.1");
	assert_int_equal(headers_peer_name((void *)&sin, buf, 4), -1);
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	assert_int_equal(headers_peer_name(&sa, buf, sizeof(buf)), -1);
	assert_int_equal(headers_peer_name(NULL, buf, sizeof(buf)), -1);
}

static void
test_encode(void **state)
{
	char out[HEADERS_MAX_BASIC], *big;
	const char *why = NULL;

	(void)state;
	assert_int_equal(headers_encode_credentials("a:b", 3, out,
	    sizeof(out), &why), 0);
	assert_string_equal(out, "YTpi");
	assert_int_equal(headers_encode_credentials("a:b\n", 4, out,
	    sizeof(out), &why), 0);
	assert_string_equal(out, "YTpi");
	assert_int_equal(headers_encode_credentials("a:b\r\n", 5, out,
	    sizeof(out), &why), 0);
	assert_string_equal(out, "YTpi");
	/* UTF-8 passwords pass (RFC 7617 §2.1). */
	assert_int_equal(headers_encode_credentials("a:\xc3\xa9", 4, out,
	    sizeof(out), &why), 0);
	assert_string_equal(out, "YTrDqQ==");
	assert_int_equal(headers_encode_credentials("", 0, out, sizeof(out),
	    &why), -1);
	assert_int_equal(headers_encode_credentials("\n", 1, out,
	    sizeof(out), &why), -1);
	assert_int_equal(headers_encode_credentials("a:b\n\n", 5, out,
	    sizeof(out), &why), -1);
	assert_int_equal(headers_encode_credentials("a:b\nc", 5, out,
	    sizeof(out), &why), -1);
	assert_int_equal(headers_encode_credentials("a:b\0c", 5, out,
	    sizeof(out), &why), -1);
	assert_int_equal(headers_encode_credentials("a:b\x7f", 4, out,
	    sizeof(out), &why), -1);
	assert_int_equal(headers_encode_credentials("ab", 2, out,
	    sizeof(out), &why), -1);
	assert_int_equal(headers_encode_credentials(":b", 2, out,
	    sizeof(out), &why), -1);
	assert_non_null(why);
	/* HEADERS_MAX_FILE bytes (and a newline) pass, one more does not. */
	assert_non_null(big = malloc(HEADERS_MAX_FILE + 2));
	memset(big, 'p', HEADERS_MAX_FILE + 1);
	big[0] = 'u';
	big[1] = ':';
	big[HEADERS_MAX_FILE] = '\n';
	assert_int_equal(headers_encode_credentials(big, HEADERS_MAX_FILE + 1,
	    out, sizeof(out), &why), 0);
	assert_int_equal(strlen(out), ((HEADERS_MAX_FILE + 2) / 3) * 4);
	big[HEADERS_MAX_FILE] = 'p';
	assert_int_equal(headers_encode_credentials(big, HEADERS_MAX_FILE + 1,
	    out, sizeof(out), &why), -1);
	/* An output buffer too small. */
	assert_int_equal(headers_encode_credentials("a:b", 3, out, 4, &why),
	    -1);
	free(big);
}

/* headers_credentials() for a device with `auth_lines` from `peer`. */
static int
creds(const struct route *r, const char *auth_lines,
    const struct sockaddr *peer, char *basic, size_t basiclen)
{
	static struct http1_request req;
	char buf[4096];

	parse(&req, buf, sizeof(buf), auth_lines);
	basic[0] = '\0';
	return headers_credentials(r, &req, peer, basic, basiclen);
}

static char *
b64(const char *s)
{
	static char out[HEADERS_MAX_BASIC];

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s,
	    (int)strlen(s));
	return out;
}

static void
test_credentials(void **state)
{
	struct route r;
	struct sockaddr_in lo, other;
	struct sockaddr_in6 lo6, mapped;
	char basic[HEADERS_MAX_BASIC], line[HEADERS_MAX_BASIC + 64];

	(void)state;
	memset(&r, 0, sizeof(r));
	r.name = "t";
	memset(&lo, 0, sizeof(lo));
	lo.sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &lo.sin_addr);
	other = lo;
	inet_pton(AF_INET, "127.0.0.9", &other.sin_addr);
	memset(&lo6, 0, sizeof(lo6));
	lo6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::1", &lo6.sin6_addr);
	mapped = lo6;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);

	/* Nothing configured: the device's own field passes. */
	assert_int_equal(creds(&r, "Authorization: Basic ZGV2MTpwdw==\r\n",
	    (void *)&lo, basic, sizeof(basic)), HEADERS_AUTH_KEEP);
	/* credentials_file only: it replaces whatever the device sent. */
	r.credentials_basic = "Y2xvdWQ6cHc=";
	assert_int_equal(creds(&r, "", (void *)&lo, basic, sizeof(basic)),
	    HEADERS_AUTH_SET);
	assert_string_equal(basic, "Y2xvdWQ6cHc=");
	/* A buffer too small for it is an error, not a truncation. */
	assert_int_equal(creds(&r, "", (void *)&lo, basic, 8), -1);

	r.device_credentials_dir = tmpdir;
	/* By user name first, even from an address that has a file. */
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("dev1:" SECRET_SENT));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    HEADERS_AUTH_SET);
	assert_string_equal(basic, b64("dev1@app:" SECRET_DEV));
	/* Unknown user: by address (IPv4, mapped IPv4, IPv6). */
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("nobody:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    HEADERS_AUTH_SET);
	assert_string_equal(basic, b64("ip@app:" SECRET_IP));
	assert_int_equal(creds(&r, "", (void *)&mapped, basic,
	    sizeof(basic)), HEADERS_AUTH_SET);
	assert_string_equal(basic, b64("ip@app:" SECRET_IP));
	assert_int_equal(creds(&r, "", (void *)&lo6, basic, sizeof(basic)),
	    HEADERS_AUTH_SET);
	assert_string_equal(basic, b64("ip6@app:" SECRET_IP));
	/* Neither file: credentials_file, then nothing. */
	assert_int_equal(creds(&r, line, (void *)&other, basic,
	    sizeof(basic)), HEADERS_AUTH_SET);
	assert_string_equal(basic, "Y2xvdWQ6cHc=");
	assert_int_equal(creds(&r, line, NULL, basic, sizeof(basic)),
	    HEADERS_AUTH_SET);
	r.credentials_basic = NULL;
	assert_int_equal(creds(&r, line, (void *)&other, basic,
	    sizeof(basic)), HEADERS_AUTH_KEEP);
	/* ".." as a user name is never a file name: the address decides. */
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("..:x"));
	assert_int_equal(creds(&r, line, (void *)&other, basic,
	    sizeof(basic)), HEADERS_AUTH_KEEP);
	/* Files that exist but cannot be used: -1 (the request gets 500). */
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("broken:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    -1);
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("nocolon:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    -1);
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("sub:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    -1);
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("fifo:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    -1);
	/* A symbolic link is refused even when it points inside. */
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("link:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    -1);
	/* The size bound, read from a file. */
	{
		char *big = malloc(HEADERS_MAX_FILE + 2);

		assert_non_null(big);
		memset(big, 'p', HEADERS_MAX_FILE + 1);
		big[0] = 'u';
		big[1] = ':';
		big[HEADERS_MAX_FILE] = '\n';
		big[HEADERS_MAX_FILE + 1] = '\0';
		write_file("big", big);
		big[HEADERS_MAX_FILE] = 'p';
		write_file("big1", big);
		free(big);
	}
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("big:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    HEADERS_AUTH_SET);
	snprintf(line, sizeof(line), "Authorization: Basic %s\r\n",
	    b64("big1:x"));
	assert_int_equal(creds(&r, line, (void *)&lo, basic, sizeof(basic)),
	    -1);
	/* A directory that cannot be opened. */
	r.device_credentials_dir = "/nonexistent/tlsgate-test";
	assert_int_equal(creds(&r, "", (void *)&lo, basic, sizeof(basic)),
	    -1);
}

/* Runs last: every message so far is in the log file; no secret is. */
static void
test_no_secret_logged(void **state)
{
	static const char *const secrets[] = {
		SECRET_DEV, SECRET_IP, SECRET_BAD, SECRET_SENT,
	};
	char *text;
	long len;
	size_t i;
	FILE *f;

	(void)state;
	fflush(stderr);
	assert_non_null(f = fopen(logpath, "r"));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	rewind(f);
	assert_non_null(text = calloc(1, (size_t)len + 1));
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	/* The failures above were logged (so the search means something),
	 * naming the files. */
	assert_non_null(strstr(text, "/broken"));
	assert_non_null(strstr(text, "/nocolon"));
	assert_non_null(strstr(text, "/link: a symbolic link"));
	assert_non_null(strstr(text, "not a regular file"));
	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		assert_null(strstr(text, secrets[i]));
	assert_null(strstr(text, b64("dev1@app:" SECRET_DEV)));
	assert_null(strstr(text, b64("ip@app:" SECRET_IP)));
	assert_null(strstr(text, b64("dev1:" SECRET_SENT)));
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pass_append),
		cmocka_unit_test(test_device_user),
		cmocka_unit_test(test_peer_name),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_credentials),
		cmocka_unit_test(test_no_secret_logged),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
