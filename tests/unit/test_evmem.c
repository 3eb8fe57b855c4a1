/*
 * Unit tests of src/evmem.c: small blocks come from the region and are
 * reused, larger ones and foreign pointers go to malloc, realloc moves a
 * block between sizes with its bytes, libevent's per-descriptor record
 * lands in the region once evmem is installed, and a class whose part of
 * the region is used up hands out blocks from malloc.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/event.h>

#include "evmem.h"

static void
nop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static size_t
in_use(void)
{
	struct evmem_stats st;

	evmem_get_stats(&st);
	return st.in_use;
}

static int
setup(void **state)
{
	(void)state;
	return evmem_init();
}

static void
test_small_blocks(void **state)
{
	size_t n0 = in_use();
	char *a, *b, *c, *big;

	(void)state;
	a = evmem_malloc(16);
	b = evmem_malloc(17);
	c = evmem_malloc(1);
	big = evmem_malloc(EVMEM_SMALL + 1);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(big);
	assert_int_equal(in_use(), n0 + 3);
	/* Aligned, writable to the end of their class, apart. */
	assert_int_equal((uintptr_t)a % 16, 0);
	assert_int_equal((uintptr_t)b % 16, 0);
	memset(a, 0xa5, 16);
	memset(b, 0x5a, 32);
	memset(c, 0x11, 16);
	memset(big, 0, EVMEM_SMALL + 1);
	assert_true(a + 16 <= c || c + 16 <= a);
	/* A freed block is the next one of its size. */
	evmem_free(a);
	assert_int_equal(in_use(), n0 + 2);
	assert_ptr_equal(evmem_malloc(8), a);
	evmem_free(a);
	evmem_free(b);
	evmem_free(c);
	evmem_free(big);
	evmem_free(NULL);
	assert_int_equal(in_use(), n0);
}

static void
test_resize(void **state)
{
	size_t n0 = in_use();
	char *p, *q, *f;
	int i;

	(void)state;
	p = evmem_realloc(NULL, 10);
	assert_non_null(p);
	assert_int_equal(in_use(), n0 + 1);
	memcpy(p, "0123456789", 10);
	/* Within its class: the same block. */
	assert_ptr_equal(evmem_realloc(p, 16), p);
	/* Into the 32-byte class, then out to malloc: the bytes follow. */
	q = evmem_realloc(p, 30);
	assert_non_null(q);
	assert_memory_equal(q, "0123456789", 10);
	for (i = 10; i < 30; i++)
		q[i] = (char)i;
	p = evmem_realloc(q, 4000);
	assert_non_null(p);
	assert_memory_equal(p, "0123456789", 10);
	for (i = 10; i < 30; i++)
		assert_int_equal(p[i], (char)i);
	assert_int_equal(in_use(), n0);
	p = evmem_realloc(p, 8000);     /* malloc's own realloc */
	assert_non_null(p);
	assert_memory_equal(p, "0123456789", 10);
	evmem_free(p);
	/* A block from malloc, freed and resized here. */
	f = malloc(8);
	assert_non_null(f);
	f = evmem_realloc(f, 64);
	assert_non_null(f);
	evmem_free(f);
	/* Resizing to 0 frees. */
	p = evmem_malloc(4);
	assert_null(evmem_realloc(p, 0));
	assert_int_equal(in_use(), n0);
}

/* libevent's record for each watched descriptor lives in the region:
 * the blocks the session heap would otherwise have between its pages. */
static void
test_libevent_records(void **state)
{
	struct event_base *base;
	struct event *ev[8];
	int sp[8][2], i;
	size_t before, after;

	(void)state;
	base = event_base_new();
	assert_non_null(base);
	before = in_use();
	for (i = 0; i < 8; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp[i]), 0);
		ev[i] = event_new(base, sp[i][0], EV_READ, nop, NULL);
		assert_non_null(ev[i]);
		assert_int_equal(event_add(ev[i], NULL), 0);
	}
	after = in_use();
	assert_true(after >= before + 8);
	for (i = 0; i < 8; i++) {
		event_free(ev[i]);
		close(sp[i][0]);
		close(sp[i][1]);
	}
	event_base_free(base);
	assert_true(in_use() <= before);
}

/* Every 16-byte block of the region taken (16 MiB, touched here once):
 * the next comes from malloc, counted, and is freed there. */
static void
test_region_full(void **state)
{
	struct evmem_stats st0, st;
	size_t cap = ((size_t)16 << 20) / 16 + 1, n = 0, i;
	void **p = calloc(cap, sizeof(*p));

	(void)state;
	assert_non_null(p);
	evmem_get_stats(&st0);
	for (;;) {
		assert_true(n < cap);
		p[n] = evmem_malloc(16);
		assert_non_null(p[n]);
		n++;
		evmem_get_stats(&st);
		if (st.fallback > st0.fallback)
			break;
	}
	assert_int_equal(st.fallback, st0.fallback + 1);
	/* The fallback block is ordinary heap: writable, freed by free(). */
	memset(p[n - 1], 0x33, 16);
	for (i = 0; i < n; i++)
		evmem_free(p[i]);
	evmem_get_stats(&st);
	assert_int_equal(st.in_use, st0.in_use);
	/* Freed blocks are handed out again. */
	p[0] = evmem_malloc(16);
	evmem_get_stats(&st);
	assert_int_equal(st.fallback, st0.fallback + 1);
	evmem_free(p[0]);
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_blocks),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_libevent_records),
		cmocka_unit_test(test_region_full),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
