/*
 * libFuzzer target: the credential parsers of src/headers.c on arbitrary
 * bytes.  The first byte picks the function:
 *  - even: headers_encode_credentials() on the rest, as the content of a
 *    device file.  On success the output must be NUL-terminated base64
 *    that decodes back to the accepted line, which holds a ':' after a
 *    non-empty user and no control character.
 *  - odd: the rest becomes the value of an Authorization field of a
 *    parsed request, then headers_device_user().  On success the name
 *    must be what the header promises: 1..HEADERS_MAX_USER printable
 *    characters, no '/', not "." or "..".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "headers.h"
#include "http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_encode(const uint8_t *in, size_t len)
{
	char out[HEADERS_MAX_BASIC];
	unsigned char dec[HEADERS_MAX_BASIC];
	const char *why = NULL;
	size_t olen, line, i;
	int n;

	if (headers_encode_credentials((const char *)in, len, out,
	    sizeof(out), &why) != 0) {
		if (why == NULL)
			abort();
		return;
	}
	olen = strnlen(out, sizeof(out));
	if (olen == sizeof(out) || olen % 4 != 0)
		abort();
	n = EVP_DecodeBlock(dec, (const unsigned char *)out, (int)olen);
	if (n < 0)
		abort();
	/* EVP_DecodeBlock keeps the padding's zero bytes. */
	while (olen > 0 && out[olen - 1] == '=') {
		olen--;
		n--;
	}
	line = (size_t)n;
	if (line == 0 || line > len || memcmp(dec, in, line) != 0)
		abort();
	/* What follows the line may only be its end of line. */
	if (!(len == line || (len == line + 1 && in[line] == '\n') ||
	    (len == line + 2 && in[line] == '\r' && in[line + 1] == '\n')))
		abort();
	if (dec[0] == ':' || memchr(dec, ':', line) == NULL)
		abort();
	for (i = 0; i < line; i++)
		if (dec[i] < 0x20 || dec[i] == 0x7f)
			abort();
}

static void
check_user(const uint8_t *in, size_t len)
{
	static const char pre[] = "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: ";
	struct http1_request req;
	char buf[4096], user[HEADERS_MAX_USER + 1];
	size_t ulen, i, n;
	long rc;

	if (len > sizeof(buf) - sizeof(pre) - 4)
		len = sizeof(buf) - sizeof(pre) - 4;
	n = sizeof(pre) - 1;
	memcpy(buf, pre, n);
	memcpy(buf + n, in, len);
	n += len;
	memcpy(buf + n, "\r\n\r\n", 4);
	n += 4;
	memset(&req, 0, sizeof(req));
	rc = http1_parse_request(buf, n, sizeof(buf), &req);
	if (rc <= 0)
		return;
	if (headers_device_user(&req, user, sizeof(user)) != 0) {
		if (user[0] != '\0')
			abort();
		return;
	}
	ulen = strnlen(user, sizeof(user));
	if (ulen == 0 || ulen > HEADERS_MAX_USER || ulen == sizeof(user))
		abort();
	if (strcmp(user, ".") == 0 || strcmp(user, "..") == 0 ||
	    strchr(user, '/') != NULL)
		abort();
	for (i = 0; i < ulen; i++)
		if ((unsigned char)user[i] <= 0x20 ||
		    (unsigned char)user[i] >= 0x7f)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		check_user(data + 1, size - 1);
	else
		check_encode(data + 1, size - 1);
	return 0;
}
