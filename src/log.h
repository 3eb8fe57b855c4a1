/*
 * log: one line per message on stderr, prefixed with its level: a word
 * ("warning: ") normally, a journal priority ("<4>", sd-daemon(3)) when
 * stderr is the journal (service_under_journal()), decided by log_init().
 */
#ifndef TLSGATE_LOG_H
#define TLSGATE_LOG_H

#include <stdarg.h>

/* Levels; the same numbers as enum config_log_level. */
#define LOG_LEVEL_ERROR   0
#define LOG_LEVEL_WARNING 1
#define LOG_LEVEL_INFO    2
#define LOG_LEVEL_DEBUG   3

/** Longest line written; longer messages are truncated, never split. */
#define LOG_MAX_LINE 2048

/**
 * Sets the level (messages above it are dropped) and the program name used
 * by fatal(), and picks the prefixes: journal priorities when stderr is
 * the journal, level words otherwise.  `ident` must outlive the process
 * (a literal or argv[0]).
 */
void log_init(int level, const char *ident);

/** Changes the level; values outside ERROR..DEBUG are clamped. */
void log_setlevel(int level);

/** The current level. */
int log_getlevel(void);

/** A warning followed by ": " and strerror(errno). */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** A warning, without errno. */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** An informational line (the access log uses this level). */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** A debugging line, shown only with -d or log_level = debug. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** An error line, with ": " and strerror(errno) appended, then exit(1). */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/** An error line, then exit(1). */
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/**
 * Copies src[0..len) into dst[dstlen] (always NUL-terminated) with '"',
 * '\\' and every byte outside printable ASCII escaped (\" \\ \xNN), so
 * that a value from the network cannot forge or split a log line.
 * Truncates to fit.  Returns dst.
 */
char *log_escape(char *dst, size_t dstlen, const char *src, size_t len);

#endif
