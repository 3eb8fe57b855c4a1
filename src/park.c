/*
 * park: idle keep-alive sockets held by one event each.
 *
 * An entry is one allocation: the list link, the set pointer and, behind
 * them, the struct event, sized with event_get_struct_event_size() so
 * that nothing depends on libevent's private layout.  Timeouts go through
 * libevent's common-timeout queues: every parked socket of a set usually
 * has the same timeout (idle_timeout), and a common timeout is an O(1)
 * append instead of an O(log n) heap insertion.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "park.h"

/* Distinct timeouts whose common-timeout queue a set remembers; a set
 * sees one or two (idle_timeout before and after a reload). */
#define PARK_TIMEOUTS 4

struct park_entry {
	LIST_ENTRY(park_entry) link;
	struct parkset *ps;
	/* struct event follows, at the alignment of max_align_t */
};

LIST_HEAD(park_list, park_entry);

struct parkset {
	struct event_base *base;
	park_cb cb;
	void *arg;
	struct park_list parked;
	size_t n;
	struct {
		int secs;
		const struct timeval *tv;   /* from event_base_init_common_timeout */
	} timeouts[PARK_TIMEOUTS];
	size_t ntimeouts;
};

/* Offset of the struct event behind an entry. */
#define PARK_EV_OFFSET \
	((sizeof(struct park_entry) + alignof(max_align_t) - 1) & \
	~(alignof(max_align_t) - 1))

static struct event *
park_event(struct park_entry *e)
{
	return (struct event *)(void *)((char *)e + PARK_EV_OFFSET);
}

size_t
park_entry_size(void)
{
	return PARK_EV_OFFSET + event_get_struct_event_size();
}

struct parkset *
parkset_new(struct event_base *base, park_cb cb, void *arg)
{
	struct parkset *ps = calloc(1, sizeof(*ps));

	if (ps == NULL)
		return NULL;
	ps->base = base;
	ps->cb = cb;
	ps->arg = arg;
	LIST_INIT(&ps->parked);
	return ps;
}

/* Unlinks and frees e; returns its socket. */
static evutil_socket_t
park_remove(struct park_entry *e)
{
	struct event *ev = park_event(e);
	evutil_socket_t fd = event_get_fd(ev);

	event_del(ev);
	LIST_REMOVE(e, link);
	e->ps->n--;
	free(e);
	return fd;
}

static void
park_ready(evutil_socket_t fd, short what, void *arg)
{
	struct park_entry *e = arg;
	struct parkset *ps = e->ps;

	(void)fd;
	fd = park_remove(e);
	ps->cb(fd, (what & EV_READ) != 0, 0, ps->arg);
}

/* The common-timeout value for secs, or a plain one when the set already
 * knows PARK_TIMEOUTS others or libevent has no queue left. */
static const struct timeval *
park_timeout(struct parkset *ps, int secs, struct timeval *plain)
{
	struct timeval tv = { secs, 0 };
	const struct timeval *ct;
	size_t i;

	for (i = 0; i < ps->ntimeouts; i++)
		if (ps->timeouts[i].secs == secs)
			return ps->timeouts[i].tv;
	*plain = tv;
	if (ps->ntimeouts == PARK_TIMEOUTS ||
	    (ct = event_base_init_common_timeout(ps->base, &tv)) == NULL)
		return plain;
	ps->timeouts[ps->ntimeouts].secs = secs;
	ps->timeouts[ps->ntimeouts].tv = ct;
	ps->ntimeouts++;
	return ct;
}

int
park_add(struct parkset *ps, evutil_socket_t fd, int timeout_s)
{
	struct park_entry *e;
	struct timeval plain;
	const struct timeval *tv;

	if ((e = malloc(park_entry_size())) == NULL)
		return -1;
	e->ps = ps;
	if (event_assign(park_event(e), ps->base, fd, EV_READ, park_ready,
	    e) == -1) {
		free(e);
		return -1;
	}
	tv = park_timeout(ps, timeout_s, &plain);
	if (event_add(park_event(e), tv) == -1) {
		free(e);
		return -1;
	}
	LIST_INSERT_HEAD(&ps->parked, e, link);
	ps->n++;
	return 0;
}

size_t
park_count(const struct parkset *ps)
{
	return ps->n;
}

void
park_close_all(struct parkset *ps)
{
	struct park_entry *e;
	evutil_socket_t fd;

	while ((e = LIST_FIRST(&ps->parked)) != NULL) {
		fd = park_remove(e);
		ps->cb(fd, 0, 1, ps->arg);
	}
}

void
parkset_free(struct parkset *ps)
{
	struct park_entry *e;

	if (ps == NULL)
		return;
	while ((e = LIST_FIRST(&ps->parked)) != NULL)
		evutil_closesocket(park_remove(e));
	free(ps);
}
