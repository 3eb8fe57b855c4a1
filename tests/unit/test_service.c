/*
 * Unit tests of src/service.c against a fake service manager: an AF_UNIX
 * datagram socket named by NOTIFY_SOCKET records the notifications, and
 * LISTEN_FDS/LISTEN_PID, WATCHDOG_USEC/WATCHDOG_PID and JOURNAL_STREAM
 * are set by hand.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <poll.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <cmocka.h>

#include "service.h"

struct fake {
	char dir[64];
	char path[96];
	int fd;
};

static void
fake_open(struct fake *f)
{
	struct sockaddr_un sun;

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_service.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/notify", f->dir);
	f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->path);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", f->path, 1), 0);
}

static void
fake_close(struct fake *f)
{
	close(f->fd);
	unlink(f->path);
	rmdir(f->dir);
	unsetenv("NOTIFY_SOCKET");
}

/* The next datagram, or "" when none arrives within ms. */
static const char *
fake_recv(struct fake *f, int ms)
{
	static char buf[1024];
	struct pollfd p = { f->fd, POLLIN, 0 };
	ssize_t n;

	buf[0] = '\0';
	if (poll(&p, 1, ms) != 1)
		return buf;
	n = recv(f->fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void
test_no_manager(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(service_ready(NULL), 0);
	assert_int_equal(service_reloading(), 0);
	assert_int_equal(service_stopping(), 0);
	assert_int_equal(service_status("x %d", 1), 0);
}

static void
test_messages(void **state)
{
	struct fake f;
	const char *m;
	char big[SERVICE_STATUS_MAX * 2];

	(void)state;
	fake_open(&f);
	assert_int_equal(service_ready(NULL), 1);
	assert_string_equal(fake_recv(&f, 1000), "READY=1");
	assert_int_equal(service_ready("2 routes"), 1);
	assert_string_equal(fake_recv(&f, 1000), "READY=1\nSTATUS=2 routes");
	assert_int_equal(service_reloading(), 1);
	m = fake_recv(&f, 1000);
	assert_memory_equal(m, "RELOADING=1\nMONOTONIC_USEC=", 27);
	assert_true(strtoull(m + 27, NULL, 10) > 0);
	assert_int_equal(service_stopping(), 1);
	assert_string_equal(fake_recv(&f, 1000), "STOPPING=1");
	/* A newline cannot smuggle another assignment in. */
	assert_int_equal(service_status("a\nREADY=%d", 1), 1);
	assert_string_equal(fake_recv(&f, 1000), "STATUS=a READY=1");
	/* SERVICE_STATUS_MAX: longer text is cut, not split. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(service_status("%s", big), 1);
	m = fake_recv(&f, 1000);
	assert_int_equal(strlen(m), strlen("STATUS=") + SERVICE_STATUS_MAX - 1);
	fake_close(&f);
}

static int status_calls;

static void
status_fn(char *buf, size_t len, void *arg)
{
	(void)arg;
	status_calls++;
	/* The same text twice, then a new one: only changes are sent. */
	snprintf(buf, len, "%d requests", status_calls < 3 ? 1 : 2);
}

struct counts {
	int pings, st1, st2, other;
};

/* Drains the fake manager from the loop itself: a datagram socket queues
 * only a few messages (net.unix.max_dgram_qlen) before senders block. */
static void
count_cb(evutil_socket_t fd, short what, void *arg)
{
	struct counts *c = arg;
	char buf[512];
	ssize_t n;

	(void)what;
	while ((n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = '\0';
		if (strcmp(buf, "WATCHDOG=1") == 0)
			c->pings++;
		else if (strcmp(buf, "STATUS=1 requests") == 0)
			c->st1++;
		else if (strcmp(buf, "STATUS=2 requests") == 0)
			c->st2++;
		else
			c->other++;
	}
}

static void
test_watchdog_and_status(void **state)
{
	struct event_base *base;
	struct event *ev;
	struct timeval tv = { 3, 500 * 1000 };
	struct counts c = { 0, 0, 0, 0 };
	struct fake f;
	char pid[32];

	(void)state;
	fake_open(&f);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_USEC", "400000", 1);
	setenv("WATCHDOG_PID", pid, 1);
	base = event_base_new();
	assert_non_null(base);
	ev = event_new(base, f.fd, EV_READ | EV_PERSIST, count_cb, &c);
	assert_non_null(ev);
	assert_int_equal(event_add(ev, NULL), 0);
	status_calls = 0;
	assert_int_equal(service_init(base, status_fn, NULL), 0);
	assert_int_equal(service_watchdog_usec(), 400000);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	count_cb(f.fd, EV_READ, &c);
	/* One at once, then every 200 ms for 3.5 s. */
	assert_in_range(c.pings, 14, 19);
	/* Polled at 1, 2 and 3 s: "1", "1" (not sent again), "2". */
	assert_int_equal(status_calls, 3);
	assert_int_equal(c.st1, 1);
	assert_int_equal(c.st2, 1);
	assert_int_equal(c.other, 0);
	service_free();
	assert_int_equal(service_watchdog_usec(), 0);
	event_free(ev);
	event_base_free(base);
	fake_close(&f);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

/* A watchdog meant for another process (our parent) is not ours. */
static void
test_watchdog_other_pid(void **state)
{
	struct event_base *base;
	struct timeval tv = { 0, 300 * 1000 };
	struct fake f;
	char pid[32];

	(void)state;
	fake_open(&f);
	snprintf(pid, sizeof(pid), "%d", (int)getppid());
	setenv("WATCHDOG_USEC", "100000", 1);
	setenv("WATCHDOG_PID", pid, 1);
	base = event_base_new();
	assert_int_equal(service_init(base, NULL, NULL), 0);
	assert_int_equal(service_watchdog_usec(), 0);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	assert_string_equal(fake_recv(&f, 0), "");
	service_free();
	event_base_free(base);
	fake_close(&f);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static int
listening_socket(uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/*
 * SERVICE_MAX_FDS + 1 listening sockets and one datagram socket passed as
 * fds 3 and up, the datagram one third: the first SERVICE_MAX_FDS
 * listening ones come back with their addresses, non-blocking; the
 * datagram socket and the one past the limit are refused and closed.
 */
#define NPASSED (SERVICE_MAX_FDS + 2)
#define HIGH_FD 300

static void
test_listen_fds(void **state)
{
	const struct service_socket *socks;
	struct sockaddr_in want;
	uint16_t ports[NPASSED];
	size_t n;
	int i, fd;
	char pid[32], nfds[16];

	(void)state;
	/* Descriptors from 3 up may have been inherited from whoever ran us
	 * (a shell's script fd): the earlier tests closed all of theirs, so
	 * anything there is not ours and goes. */
	for (fd = 3; fd < 3 + NPASSED; fd++)
		close(fd);
	/* Made up high, then moved down into place. */
	for (i = 0; i < NPASSED; i++) {
		fd = i == 2 ? socket(AF_INET, SOCK_DGRAM, 0) :
		    listening_socket(&ports[i]);
		assert_true(fd >= 0);
		assert_int_equal(dup2(fd, HIGH_FD + i), HIGH_FD + i);
		close(fd);
	}
	for (i = 0; i < NPASSED; i++) {
		assert_int_equal(dup2(HIGH_FD + i, 3 + i), 3 + i);
		close(HIGH_FD + i);
	}
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(nfds, sizeof(nfds), "%d", NPASSED);
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", nfds, 1);
	assert_int_equal(service_listen_fds(&socks, &n), 0);
	assert_int_equal(n, SERVICE_MAX_FDS);
	assert_null(getenv("LISTEN_FDS"));
	assert_int_equal(socks[0].fd, 3);
	assert_int_equal(socks[1].fd, 4);
	assert_int_equal(socks[2].fd, 6);
	assert_true(fcntl(3, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
	/* refused: the datagram socket, and the one past SERVICE_MAX_FDS */
	assert_int_equal(fcntl(5, F_GETFD), -1);
	assert_int_equal(fcntl(3 + NPASSED - 1, F_GETFD), -1);
	assert_true(fcntl(3 + NPASSED - 2, F_GETFD) != -1);
	memset(&want, 0, sizeof(want));
	want.sin_family = AF_INET;
	want.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	want.sin_port = htons(ports[1]);
	assert_int_equal(service_find_fd((struct sockaddr *)&want,
	    sizeof(want)), 4);
	want.sin_port = htons(ports[0]);
	assert_int_equal(service_find_fd((struct sockaddr *)&want,
	    sizeof(want)), 3);
	want.sin_port = htons(ports[NPASSED - 1]);
	assert_int_equal(service_find_fd((struct sockaddr *)&want,
	    sizeof(want)), -1);
	/* Another address, same port: not a match. */
	want.sin_port = htons(ports[0]);
	want.sin_addr.s_addr = htonl(INADDR_ANY);
	assert_int_equal(service_find_fd((struct sockaddr *)&want,
	    sizeof(want)), -1);
	assert_int_equal(service_is_inherited(3), 1);
	assert_int_equal(service_is_inherited(5), 0);
	/* Read once: a second call returns the same set. */
	assert_int_equal(service_listen_fds(&socks, &n), 0);
	assert_int_equal(n, SERVICE_MAX_FDS);
	for (fd = 3; fd < 3 + NPASSED; fd++)
		close(fd);
}

static void
test_journal(void **state)
{
	struct stat st;
	char v[64];

	(void)state;
	unsetenv("JOURNAL_STREAM");
	assert_int_equal(service_under_journal(), 0);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	assert_int_equal(service_under_journal(), 1);
	/* stderr redirected after systemd set it up: not the journal. */
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", v, 1);
	assert_int_equal(service_under_journal(), 0);
	setenv("JOURNAL_STREAM", "garbage", 1);
	assert_int_equal(service_under_journal(), 0);
	snprintf(v, sizeof(v), "%llu:%llux", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	assert_int_equal(service_under_journal(), 0);
	unsetenv("JOURNAL_STREAM");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_manager),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_watchdog_and_status),
		cmocka_unit_test(test_watchdog_other_pid),
		cmocka_unit_test(test_listen_fds),
		cmocka_unit_test(test_journal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
