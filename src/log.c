/*
 * log: leveled one-line messages on stderr; under systemd with stderr
 * connected to the journal, the level becomes a "<N>" priority prefix
 * (sd-daemon(3)) that journald strips and stores as PRIORITY=.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "service.h"

static int log_level = LOG_LEVEL_INFO;
static const char *log_ident = "tlsgate";

/* The one place that knows how a level is shown: a word on a terminal or
 * in a file, a syslog priority for the journal. */
static const char *const log_prefix_plain[] = {
	[LOG_LEVEL_ERROR] = "error: ",
	[LOG_LEVEL_WARNING] = "warning: ",
	[LOG_LEVEL_INFO] = "info: ",
	[LOG_LEVEL_DEBUG] = "debug: ",
};
static const char *const log_prefix_journal[] = {
	[LOG_LEVEL_ERROR] = SD_ERR,
	[LOG_LEVEL_WARNING] = SD_WARNING,
	[LOG_LEVEL_INFO] = SD_INFO,
	[LOG_LEVEL_DEBUG] = SD_DEBUG,
};
static const char *const *log_prefix = log_prefix_plain;

static void log_vemit(int, int, const char *, va_list)
    __attribute__((format(printf, 3, 0)));

void
log_init(int level, const char *ident)
{
	log_setlevel(level);
	if (ident != NULL)
		log_ident = ident;
	log_prefix = service_under_journal() ? log_prefix_journal :
	    log_prefix_plain;
}

void
log_setlevel(int level)
{
	if (level < LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	log_level = level;
}

int
log_getlevel(void)
{
	return log_level;
}

/*
 * Formats the whole line into one buffer and writes it with one call, so
 * that lines never interleave.  `err` is an errno to append, or 0.
 */
static void
log_vemit(int level, int err, const char *fmt, va_list ap)
{
	char line[LOG_MAX_LINE];
	size_t len;
	int n;

	if (level > log_level)
		return;
	len = strlen(log_prefix[level]);
	memcpy(line, log_prefix[level], len);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	if (n < 0)
		n = 0;
	len += (size_t)n;
	if (len > sizeof(line) - 1)
		len = sizeof(line) - 1;
	if (err != 0) {
		n = snprintf(line + len, sizeof(line) - len, ": %s",
		    strerror(err));
		if (n > 0)
			len += (size_t)n;
		if (len > sizeof(line) - 1)
			len = sizeof(line) - 1;
	}
	/* Reserve room for the newline even when truncated. */
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
	fflush(stderr);
}

void
log_warn(const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_WARNING, err, fmt, ap);
	va_end(ap);
	errno = err;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_WARNING, 0, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_INFO, 0, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, err, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

char *
log_escape(char *dst, size_t dstlen, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;
	unsigned char c;

	if (dstlen == 0)
		return dst;
	for (i = 0; i < len; i++) {
		c = (unsigned char)src[i];
		if (c == '"' || c == '\\') {
			if (o + 2 >= dstlen)
				break;
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c < 0x20 || c > 0x7e) {
			if (o + 4 >= dstlen)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		} else {
			if (o + 1 >= dstlen)
				break;
			dst[o++] = (char)c;
		}
	}
	dst[o] = '\0';
	return dst;
}
