/*
 * service: what running under systemd needs, over libsystemd.  The
 * notification protocol (READY=1, RELOADING=1, STOPPING=1, STATUS=,
 * WATCHDOG=1; sd_notify(3)), the watchdog timer, the sockets passed by
 * socket activation (sd_listen_fds(3)) and whether stderr is the journal.
 *
 * Every call is harmless outside systemd: without NOTIFY_SOCKET the
 * notifications go nowhere, without LISTEN_FDS there are no inherited
 * sockets, without WATCHDOG_USEC there is no timer.  The names use the
 * prefix service_ because sd_ belongs to libsystemd.
 */
#ifndef TLSGATE_SERVICE_H
#define TLSGATE_SERVICE_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;

/* Longest STATUS= text sent; a longer one is truncated. */
#define SERVICE_STATUS_MAX 256
/* How often (ms) the status callback is polled; STATUS= is sent only when
 * its text changed, so this is also the delay before a change shows. */
#define SERVICE_STATUS_INTERVAL_MS 1000
/* At most this many inherited sockets are considered (LISTEN_FDS). */
#define SERVICE_MAX_FDS 64

/** One socket passed by the service manager, with its bound address. */
struct service_socket {
	int fd;
	struct sockaddr_storage addr;   /* from getsockname(2) */
	socklen_t addrlen;
};

/**
 * Called every SERVICE_STATUS_INTERVAL_MS with a buffer of `len` bytes
 * to fill with a NUL-terminated one-line status ("3 device connections,
 * ..."); leaving buf[0] as NUL sends nothing.
 */
typedef void service_status_fn(char *buf, size_t len, void *arg);

/**
 * Starts the timers on `base`: the watchdog ping (WATCHDOG=1 every half of
 * WATCHDOG_USEC, when the manager asked for one for this process:
 * sd_watchdog_enabled(3)) and, when `status` is not NULL, the status poll
 * (only when NOTIFY_SOCKET is set).  Because the pings come from the
 * event loop, a loop that stops turning stops them and systemd restarts
 * the service.  Returns 0, or -1 after logging.  May be called once;
 * service_free() undoes it.
 */
int service_init(struct event_base *base, service_status_fn *status,
    void *arg);

/** Stops the timers of service_init() and frees them.  Safe to repeat. */
void service_free(void);

/** The watchdog interval in microseconds, or 0 when there is none. */
unsigned long long service_watchdog_usec(void);

/**
 * Sends READY=1 (start-up finished, or a reload finished), with a
 * STATUS= line when `status` is not NULL.  Returns 1 when a message was
 * sent, 0 when there is no NOTIFY_SOCKET, -1 on error (logged).
 */
int service_ready(const char *status);

/**
 * Sends RELOADING=1 with MONOTONIC_USEC= (systemd 253 uses it to match
 * the reload; 252 ignores it).  Returns as service_ready().
 */
int service_reloading(void);

/** Sends STOPPING=1.  Returns as service_ready(). */
int service_stopping(void);

/**
 * Sends STATUS= with the formatted text (truncated to
 * SERVICE_STATUS_MAX).  Returns as service_ready().
 */
int service_status(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/**
 * The listening stream sockets passed by the manager (LISTEN_FDS and
 * LISTEN_PID, read once: the variables are then removed from the
 * environment).  Each is made non-blocking and close-on-exec.  Passed
 * descriptors that are not listening stream sockets are logged and
 * closed.  Sets *socks (owned by this module, valid until the process
 * exits) and *n.  Returns 0, or -1 after logging when the variables are
 * malformed.
 */
int service_listen_fds(const struct service_socket **socks, size_t *n);

/**
 * The inherited listening socket bound to exactly addr (same family,
 * address and port), or -1.  The descriptor stays owned by this module:
 * callers must not close it, so that a route removed by one reload and
 * added back by the next gets the same socket again.
 */
int service_find_fd(const struct sockaddr *addr, socklen_t addrlen);

/**
 * 1 when the descriptor fd is one of the inherited sockets (its owner
 * must not close it), 0 otherwise.
 */
int service_is_inherited(int fd);

/**
 * 1 when stderr is connected to the journal: JOURNAL_STREAM names the
 * device and inode of our stderr (systemd.exec(5)), so log lines should
 * carry "<N>" priority prefixes (sd-daemon(3)); 0 otherwise (plain
 * stderr, or stderr was redirected after systemd set it up).
 */
int service_under_journal(void);

#endif
