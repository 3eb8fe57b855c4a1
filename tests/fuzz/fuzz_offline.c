/*
 * libFuzzer target: the parsers of src/offline.c that see bytes from the
 * network, each checked against a plain reference written here:
 *  - offline_longpoll() on a request target: 1 exactly when the query
 *    has a parameter named "ct" (a long-poll is never queued);
 *  - offline_parse_retry_after() on an upstream's Retry-After value:
 *    delay-seconds only, saturated at OFFLINE_RETRY_AFTER_MAX;
 *  - offline_backoff() from that value: always within its bounds.
 * The first byte picks the function; the rest is the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "offline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The query's parameters, split one at a time. */
static int
ref_longpoll(const char *s, size_t len)
{
	size_t i = 0, start;

	while (i < len && s[i] != '?')
		i++;
	if (i == len)
		return 0;
	for (start = ++i; i <= len; i++) {
		if (i == len || s[i] == '&') {
			size_t n = i - start, name = 0;

			while (name < n && s[start + name] != '=')
				name++;
			if (name == 2 && s[start] == 'c' && s[start + 1] == 't')
				return 1;
			start = i + 1;
		}
	}
	return 0;
}

static long
ref_retry_after(const char *s, size_t len)
{
	unsigned long long n = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (n <= OFFLINE_RETRY_AFTER_MAX)
			n = n * 10 + (unsigned)(s[i] - '0');
	}
	return n > OFFLINE_RETRY_AFTER_MAX ? OFFLINE_RETRY_AFTER_MAX : (long)n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;
	size_t len;
	int64_t prev, w;
	long ra;

	if (size == 0)
		return 0;
	len = size - 1;
	switch (data[0] % 3) {
	case 0:
		if (offline_longpoll(s, len) != ref_longpoll(s, len))
			abort();
		break;
	case 1:
		ra = offline_parse_retry_after(s, len);
		if (ra != ref_retry_after(s, len))
			abort();
		break;
	default:
		/* A previous wait from the input, then the next one. */
		prev = 0;
		if (len >= 4)
			memcpy(&prev, s, 4);
		prev = prev < 0 ? -prev : prev;
		ra = len > 4 ? offline_parse_retry_after(s + 4, len - 4) : -1;
		w = offline_backoff(prev, ra);
		if (w < OFFLINE_BACKOFF_MIN_MS ||
		    w > (int64_t)OFFLINE_RETRY_AFTER_MAX * 1000 ||
		    (ra < 0 && w > OFFLINE_BACKOFF_MAX_MS))
			abort();
		break;
	}
	return 0;
}
