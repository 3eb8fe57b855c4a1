/*
 * service: systemd notifications, watchdog, socket activation, journal.
 */
#include <sys/stat.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "service.h"

struct service {
	struct event *watchdog;
	unsigned long long watchdog_usec;
	struct event *status_ev;
	service_status_fn *status_fn;
	void *status_arg;
	char last_status[SERVICE_STATUS_MAX];

	int fds_read;
	struct service_socket socks[SERVICE_MAX_FDS];
	size_t nsocks;
};

static struct service service;

static int service_notify(const char *);
static void service_watchdog_cb(evutil_socket_t, short, void *);
static void service_status_cb(evutil_socket_t, short, void *);
static int service_addr_equal(const struct sockaddr *, socklen_t,
    const struct sockaddr *, socklen_t);

/*
 * sd_notify(3) returns 0 when NOTIFY_SOCKET is unset, which is the normal
 * case outside systemd and not worth a log line.
 */
static int
service_notify(const char *msg)
{
	int rc;

	if ((rc = sd_notify(0, msg)) < 0) {
		errno = -rc;
		log_warn("sd_notify");
		return -1;
	}
	return rc > 0 ? 1 : 0;
}

static void
service_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	service_notify("WATCHDOG=1");
}

static void
service_status_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[SERVICE_STATUS_MAX];

	(void)fd;
	(void)what;
	(void)arg;
	buf[0] = '\0';
	service.status_fn(buf, sizeof(buf), service.status_arg);
	buf[sizeof(buf) - 1] = '\0';
	/* Only changes: the manager keeps the last STATUS= anyway. */
	if (buf[0] == '\0' || strcmp(buf, service.last_status) == 0)
		return;
	if (service_status("%s", buf) >= 0)
		memcpy(service.last_status, buf, sizeof(buf));
}

int
service_init(struct event_base *base, service_status_fn *status, void *arg)
{
	uint64_t usec = 0;
	struct timeval tv;
	int rc;

	service_free();
	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us:
	 * a watchdog meant for our parent must not be answered by us. */
	if ((rc = sd_watchdog_enabled(0, &usec)) < 0) {
		errno = -rc;
		log_warn("WATCHDOG_USEC");
		return -1;
	}
	if (rc > 0 && usec > 0) {
		/* Half the interval, as sd_watchdog_enabled(3) recommends, so
		 * that one late turn of the loop does not cost a restart. */
		usec /= 2;
		tv.tv_sec = (time_t)(usec / 1000000);
		tv.tv_usec = (suseconds_t)(usec % 1000000);
		service.watchdog = event_new(base, -1, EV_PERSIST,
		    service_watchdog_cb, NULL);
		if (service.watchdog == NULL ||
		    event_add(service.watchdog, &tv) == -1) {
			log_warnx("cannot start the watchdog timer");
			service_free();
			return -1;
		}
		service.watchdog_usec = usec * 2;
		log_info("watchdog: pinging every %llu ms",
		    (unsigned long long)usec / 1000);
		/* The first ping at once: the interval runs from start-up. */
		service_notify("WATCHDOG=1");
	}
	if (status != NULL && getenv("NOTIFY_SOCKET") != NULL) {
		tv.tv_sec = SERVICE_STATUS_INTERVAL_MS / 1000;
		tv.tv_usec = (SERVICE_STATUS_INTERVAL_MS % 1000) * 1000;
		service.status_fn = status;
		service.status_arg = arg;
		service.last_status[0] = '\0';
		service.status_ev = event_new(base, -1, EV_PERSIST,
		    service_status_cb, NULL);
		if (service.status_ev == NULL ||
		    event_add(service.status_ev, &tv) == -1) {
			log_warnx("cannot start the status timer");
			service_free();
			return -1;
		}
	}
	return 0;
}

void
service_free(void)
{
	if (service.watchdog != NULL)
		event_free(service.watchdog);
	if (service.status_ev != NULL)
		event_free(service.status_ev);
	service.watchdog = NULL;
	service.status_ev = NULL;
	service.watchdog_usec = 0;
	service.status_fn = NULL;
}

unsigned long long
service_watchdog_usec(void)
{
	return service.watchdog_usec;
}

int
service_ready(const char *status)
{
	char msg[SERVICE_STATUS_MAX + 32];

	if (status == NULL)
		return service_notify("READY=1");
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	return service_notify(msg);
}

int
service_reloading(void)
{
	char msg[64];
	struct timespec ts;

	/* systemd 253+ (Type=notify-reload) wants the CLOCK_MONOTONIC time
	 * of the reload in the same message; older managers ignore it. */
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1) {
		log_warn("clock_gettime");
		return service_notify("RELOADING=1");
	}
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	return service_notify(msg);
}

int
service_stopping(void)
{
	return service_notify("STOPPING=1");
}

int
service_status(const char *fmt, ...)
{
	char msg[sizeof("STATUS=") - 1 + SERVICE_STATUS_MAX];
	char *p;
	va_list ap;

	memcpy(msg, "STATUS=", sizeof("STATUS=") - 1);
	va_start(ap, fmt);
	vsnprintf(msg + sizeof("STATUS=") - 1,
	    sizeof(msg) - (sizeof("STATUS=") - 1), fmt, ap);
	va_end(ap);
	/* A newline would start another assignment of the protocol. */
	for (p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return service_notify(msg);
}

int
service_listen_fds(const struct service_socket **socks, size_t *n)
{
	struct service_socket *s;
	int i, nfds, fd, flags;

	if (!service.fds_read) {
		/* unset_environment=1: the variables describe this process
		 * only; sd_listen_fds also sets FD_CLOEXEC on each fd. */
		if ((nfds = sd_listen_fds(1)) < 0) {
			errno = -nfds;
			log_warn("LISTEN_FDS");
			return -1;
		}
		service.fds_read = 1;
		for (i = 0; i < nfds; i++) {
			fd = SD_LISTEN_FDS_START + i;
			if (service.nsocks == SERVICE_MAX_FDS) {
				log_warnx("inherited socket %d: more than %d "
				    "passed, ignored", fd, SERVICE_MAX_FDS);
				close(fd);
				continue;
			}
			if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
				log_warnx("inherited descriptor %d is not a "
				    "listening stream socket: closed", fd);
				close(fd);
				continue;
			}
			s = &service.socks[service.nsocks];
			s->fd = fd;
			s->addrlen = sizeof(s->addr);
			if (getsockname(fd, (struct sockaddr *)&s->addr,
			    &s->addrlen) == -1) {
				log_warn("inherited socket %d: getsockname",
				    fd);
				close(fd);
				continue;
			}
			/* libevent accepts until EAGAIN: a blocking listening
			 * socket would hang the loop. */
			if ((flags = fcntl(fd, F_GETFL)) == -1 ||
			    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
				log_warn("inherited socket %d: O_NONBLOCK", fd);
				close(fd);
				continue;
			}
			service.nsocks++;
		}
	}
	*socks = service.socks;
	*n = service.nsocks;
	return 0;
}

static int
service_addr_equal(const struct sockaddr *a, socklen_t alen,
    const struct sockaddr *b, socklen_t blen)
{
	const struct sockaddr_in *a4, *b4;
	const struct sockaddr_in6 *a6, *b6;

	if (a->sa_family != b->sa_family)
		return 0;
	switch (a->sa_family) {
	case AF_INET:
		if (alen < sizeof(*a4) || blen < sizeof(*b4))
			return 0;
		a4 = (const struct sockaddr_in *)a;
		b4 = (const struct sockaddr_in *)b;
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	case AF_INET6:
		if (alen < sizeof(*a6) || blen < sizeof(*b6))
			return 0;
		a6 = (const struct sockaddr_in6 *)a;
		b6 = (const struct sockaddr_in6 *)b;
		return a6->sin6_port == b6->sin6_port &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr,
		    sizeof(a6->sin6_addr)) == 0;
	default:
		return 0;
	}
}

int
service_find_fd(const struct sockaddr *addr, socklen_t addrlen)
{
	size_t i;

	for (i = 0; i < service.nsocks; i++)
		if (service_addr_equal(addr, addrlen,
		    (const struct sockaddr *)&service.socks[i].addr,
		    service.socks[i].addrlen))
			return service.socks[i].fd;
	return -1;
}

int
service_is_inherited(int fd)
{
	size_t i;

	for (i = 0; i < service.nsocks; i++)
		if (service.socks[i].fd == fd)
			return 1;
	return 0;
}

int
service_under_journal(void)
{
	const char *v;
	unsigned long long dev, ino;
	struct stat st;
	char tail;

	/* systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the stream
	 * it connected to stdout/stderr; a match means nobody redirected
	 * stderr since. */
	if ((v = getenv("JOURNAL_STREAM")) == NULL ||
	    sscanf(v, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}
