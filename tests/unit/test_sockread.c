/*
 * Unit tests of sockread.c: one read from a socket into a socket
 * bufferevent's input, up to its watermark and no further, none at all
 * once the input holds that much, end of file and "nothing waits" told
 * apart, and the input's end left frozen as the bufferevent keeps it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "sockread.h"

static void
test_reads(void **state)
{
	struct event_base *base = event_base_new();
	struct bufferevent *bev;
	struct evbuffer *in;
	static char big[SOCKREAD_MAX + 100];
	char buf[16];
	int sv[2];

	(void)state;
	assert_non_null(base);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	in = bufferevent_get_input(bev);
	/* Nothing waits yet. */
	errno = 0;
	assert_int_equal(sockread(sv[0], in, 4), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(evbuffer_get_length(in), 0);
	assert_int_equal(write(sv[1], "0123456789", 10), 10);
	/* Up to the watermark ... */
	assert_int_equal(sockread(sv[0], in, 4), 4);
	assert_int_equal(evbuffer_get_length(in), 4);
	/* ... and not a byte once the input holds that much ... */
	errno = 0;
	assert_int_equal(sockread(sv[0], in, 4), -1);
	assert_int_equal(errno, ENOBUFS);
	assert_int_equal(evbuffer_get_length(in), 4);
	/* ... appended, and the rest the next time. */
	assert_int_equal(sockread(sv[0], in, 4096), 6);
	assert_int_equal(evbuffer_remove(in, buf, sizeof(buf)), 10);
	assert_memory_equal(buf, "0123456789", 10);
	/* The end is frozen again: only libevent's reads (and ours) add. */
	assert_int_equal(evbuffer_add(in, "x", 1), -1);
	/* At most SOCKREAD_MAX per read, however high the watermark. */
	assert_int_equal(write(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
	assert_int_equal(sockread(sv[0], in, 1 << 20), SOCKREAD_MAX);
	assert_int_equal(sockread(sv[0], in, 1 << 20),
	    (ssize_t)sizeof(big) - SOCKREAD_MAX);
	evbuffer_drain(in, sizeof(big));
	/* End of file. */
	close(sv[1]);
	assert_int_equal(sockread(sv[0], in, 4), 0);
	assert_int_equal(evbuffer_get_length(in), 0);
	bufferevent_free(bev);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
