/*
 * Unit tests of src/park.c with real sockets and a real event loop: a
 * parked socket comes back readable when its peer writes or closes, and
 * with readable 0 when its timeout passes; close_all hands every socket
 * back; parkset_free closes the rest.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/event.h>

#include "park.h"

#define MAXCALLS 8

struct calls {
	int n;
	evutil_socket_t fd[MAXCALLS];
	int readable[MAXCALLS];
	int closing[MAXCALLS];
};

static void
record(evutil_socket_t fd, int readable, int closing, void *arg)
{
	struct calls *c = arg;

	assert_true(c->n < MAXCALLS);
	c->fd[c->n] = fd;
	c->readable[c->n] = readable;
	c->closing[c->n] = closing;
	c->n++;
}

static int
is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
test_readable_and_eof(void **state)
{
	struct event_base *base = event_base_new();
	struct calls c = { 0 };
	struct parkset *ps = parkset_new(base, record, &c);
	int a[2], b[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	assert_int_equal(park_add(ps, a[0], 60), 0);
	assert_int_equal(park_add(ps, b[0], 60), 0);
	assert_int_equal(park_count(ps), 2);
	/* Nothing ready: the loop returns without calling back. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(c.n, 0);

	assert_int_equal(write(a[1], "x", 1), 1);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.fd[0], a[0]);
	assert_int_equal(c.readable[0], 1);
	assert_int_equal(c.closing[0], 0);
	assert_int_equal(park_count(ps), 1);
	/* The socket was handed back open, its byte unread. */
	assert_true(is_open(a[0]));

	close(b[1]);            /* EOF also wakes it */
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.fd[1], b[0]);
	assert_int_equal(c.readable[1], 1);
	assert_int_equal(park_count(ps), 0);

	close(a[0]);
	close(a[1]);
	close(b[0]);
	parkset_free(ps);
	event_base_free(base);
}

static void
test_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct calls c = { 0 };
	struct parkset *ps = parkset_new(base, record, &c);
	int a[2], b[2];
	double t0;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	t0 = now();
	assert_int_equal(park_add(ps, a[0], 1), 0);
	assert_int_equal(park_add(ps, b[0], 2), 0);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.fd[0], a[0]);
	assert_int_equal(c.readable[0], 0);
	assert_true(now() - t0 >= 0.9);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.fd[1], b[0]);
	assert_int_equal(c.readable[1], 0);
	assert_true(now() - t0 >= 1.9);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	parkset_free(ps);
	event_base_free(base);
}

static void
test_close_all_and_free(void **state)
{
	struct event_base *base = event_base_new();
	struct calls c = { 0 };
	struct parkset *ps = parkset_new(base, record, &c);
	int a[2], b[2], i;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	/* More distinct timeouts than the set caches: still correct. */
	for (i = 0; i < 2; i++)
		assert_int_equal(park_add(ps, i ? b[0] : a[0], 100 + i), 0);
	park_close_all(ps);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.closing[0], 1);
	assert_int_equal(c.closing[1], 1);
	assert_int_equal(c.readable[0], 0);
	assert_int_equal(park_count(ps), 0);
	assert_true(is_open(a[0]) && is_open(b[0]));

	/* parkset_free closes what is still parked. */
	assert_int_equal(park_add(ps, a[0], 7), 0);
	assert_int_equal(park_add(ps, b[0], 8), 0);
	parkset_free(ps);
	assert_false(is_open(a[0]));
	assert_false(is_open(b[0]));
	assert_int_equal(c.n, 2);
	close(a[1]);
	close(b[1]);
	event_base_free(base);
}

static void
test_many_timeouts(void **state)
{
	struct event_base *base = event_base_new();
	struct calls c = { 0 };
	struct parkset *ps = parkset_new(base, record, &c);
	int p[6][2], i;

	(void)state;
	for (i = 0; i < 6; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p[i]), 0);
		assert_int_equal(park_add(ps, p[i][0], 50 + i), 0);
	}
	assert_int_equal(park_count(ps), 6);
	assert_int_equal(write(p[5][1], "y", 1), 1);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.fd[0], p[5][0]);
	close(p[5][0]);
	close(p[5][1]);
	parkset_free(ps);
	for (i = 0; i < 5; i++)
		close(p[i][1]);
	event_base_free(base);
}

static void
test_entry_size(void **state)
{
	(void)state;
	/* What makes parking worth it: two orders of magnitude under the
	 * ~1.7 KB of an idle session. */
	assert_true(park_entry_size() <= 24);
}

/*
 * More distinct timeouts than the set has queues: the later values share
 * the nearest queue, in deadline order, and still expire in order.
 */
static void
test_timeouts_out_of_order(void **state)
{
	struct event_base *base = event_base_new();
	struct calls c = { 0 };
	struct parkset *ps = parkset_new(base, record, &c);
	static const int secs[6] = { 40, 30, 20, 10, 3, 1 };
	int p[6][2], i;
	double t0 = now();

	(void)state;
	for (i = 0; i < 6; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p[i]), 0);
		assert_int_equal(park_add(ps, p[i][0], secs[i]), 0);
	}
	/* 3 and 1 have no queue of their own: both go before 10's slot. */
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.fd[0], p[5][0]);
	assert_int_equal(c.readable[0], 0);
	assert_true(now() - t0 >= 0.9 && now() - t0 < 2.5);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.fd[1], p[4][0]);
	assert_true(now() - t0 >= 2.9 && now() - t0 < 4.5);
	assert_int_equal(park_count(ps), 4);
	/* The one parked first, in a queue of its own, is still readable. */
	assert_int_equal(write(p[0][1], "z", 1), 1);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.fd[2], p[0][0]);
	assert_int_equal(c.readable[2], 1);
	close(p[0][0]);
	close(p[4][0]);
	close(p[5][0]);
	parkset_free(ps);
	for (i = 0; i < 6; i++)
		close(p[i][1]);
	event_base_free(base);
}

/* A descriptor past the slots mapped at first (the descriptor limit
 * raised after the set was made): the mapping grows. */
static void
test_high_descriptor(void **state)
{
	struct event_base *base = event_base_new();
	struct calls c = { 0 };
	struct rlimit rl, low;
	struct parkset *ps;
	int a[2], hi;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_true(rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 3000);
	low = rl;
	low.rlim_cur = 1024;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	ps = parkset_new(base, record, &c);
	assert_non_null(ps);
	low.rlim_cur = 3001;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	hi = dup2(a[0], 3000);
	assert_int_equal(hi, 3000);
	close(a[0]);
	assert_int_equal(park_add(ps, hi, 60), 0);
	assert_int_equal(park_add(ps, hi, 60), -1);     /* already parked */
	assert_int_equal(park_count(ps), 1);
	assert_int_equal(write(a[1], "q", 1), 1);
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.fd[0], hi);
	assert_int_equal(c.readable[0], 1);
	close(hi);
	close(a[1]);
	parkset_free(ps);
	event_base_free(base);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_readable_and_eof),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_close_all_and_free),
		cmocka_unit_test(test_many_timeouts),
		cmocka_unit_test(test_entry_size),
		cmocka_unit_test(test_timeouts_out_of_order),
		cmocka_unit_test(test_high_descriptor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
