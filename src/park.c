/*
 * park: idle keep-alive sockets in a few bytes each.
 *
 * A set watches its sockets with an epoll instance of its own, whose
 * descriptor is the one event the set has in libevent; a parked socket
 * costs no struct event and no heap allocation.  Its bookkeeping is one
 * slot in an array indexed by descriptor, mapped (not malloc'd) and
 * touched page by page as descriptors are used, so that parked sockets
 * never sit between the pages of the sessions they replaced: when those
 * are freed, the allocator can give their pages back.
 *
 * Timeouts: a slot is linked into the FIFO queue of its timeout value.
 * Every socket of a set usually has the same timeout (idle_timeout, or
 * two values across a reload), so appending keeps a queue in deadline
 * order and the earliest deadline is at a queue's head.  A value with no
 * queue of its own goes into the queue of the nearest value, inserted in
 * order from the tail.  One timer runs for the earliest head.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <event2/event.h>

#include "now.h"
#include "park.h"

/* Timeout queues per set. */
#define PARK_QUEUES 4
/* Slots mapped at first: the descriptor limit, within these bounds (the
 * mapping grows when a higher descriptor comes; address space is scarce
 * on 32-bit gateways). */
#define PARK_MIN_SLOTS 1024
#define PARK_MAX_SLOTS 65536
/* Sockets taken from the epoll instance per event-loop turn. */
#define PARK_BATCH 64

struct park_slot {
	int64_t deadline;       /* monotonic ms; 0: not parked */
	int32_t prev, next;     /* descriptors in the queue; -1 ends it */
	int8_t q;               /* the queue */
};

struct park_queue {
	int secs;               /* 0: unused */
	int32_t head, tail;
};

struct parkset {
	struct event_base *base;
	park_cb cb;
	void *arg;
	int epfd;
	struct event *ready;    /* epfd readable */
	struct event *timer;    /* the earliest deadline */
	int64_t armed;          /* deadline the timer is set for; 0: none */
	struct park_slot *slot; /* mapped, indexed by descriptor */
	size_t nslots;
	size_t n;
	struct park_queue queue[PARK_QUEUES];
};

size_t
park_entry_size(void)
{
	return sizeof(struct park_slot);
}

static void park_ready(evutil_socket_t, short, void *);
static void park_expire(evutil_socket_t, short, void *);

struct parkset *
parkset_new(struct event_base *base, park_cb cb, void *arg)
{
	struct parkset *ps = calloc(1, sizeof(*ps));
	struct rlimit rl;
	size_t n = PARK_MIN_SLOTS, i;
	void *m;

	if (ps == NULL)
		return NULL;
	ps->base = base;
	ps->cb = cb;
	ps->arg = arg;
	ps->epfd = -1;
	for (i = 0; i < PARK_QUEUES; i++)
		ps->queue[i].head = ps->queue[i].tail = -1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > n)
		n = rl.rlim_cur < PARK_MAX_SLOTS ? (size_t)rl.rlim_cur :
		    PARK_MAX_SLOTS;
	m = mmap(NULL, n * sizeof(struct park_slot), PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		goto fail;
	ps->slot = m;
	ps->nslots = n;
	if ((ps->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    (ps->ready = event_new(base, ps->epfd, EV_READ | EV_PERSIST,
	    park_ready, ps)) == NULL ||
	    (ps->timer = evtimer_new(base, park_expire, ps)) == NULL ||
	    event_add(ps->ready, NULL) == -1)
		goto fail;
	return ps;
fail:
	parkset_free(ps);
	return NULL;
}

/* Makes room for descriptor fd; -1 when the mapping cannot grow. */
static int
park_room(struct parkset *ps, evutil_socket_t fd)
{
	size_t n = ps->nslots;
	void *m;

	if ((size_t)fd < n)
		return 0;
	while (n <= (size_t)fd)
		n *= 2;
	m = mremap(ps->slot, ps->nslots * sizeof(struct park_slot),
	    n * sizeof(struct park_slot), MREMAP_MAYMOVE);
	if (m == MAP_FAILED)
		return -1;
	ps->slot = m;
	ps->nslots = n;
	return 0;
}

static void
park_arm(struct parkset *ps)
{
	int64_t first = 0, now, ms;
	struct timeval tv;
	size_t i;

	for (i = 0; i < PARK_QUEUES; i++) {
		int32_t h = ps->queue[i].head;

		if (h >= 0 && (first == 0 || ps->slot[h].deadline < first))
			first = ps->slot[h].deadline;
	}
	if (first == ps->armed)
		return;
	ps->armed = first;
	if (first == 0) {
		evtimer_del(ps->timer);
		return;
	}
	now = now_mono_ms();
	ms = first > now ? first - now : 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
	evtimer_add(ps->timer, &tv);
}

/* Takes fd out of its queue and the epoll instance.  Leaves the timer;
 * the callers re-arm it. */
static void
park_unlink(struct parkset *ps, evutil_socket_t fd)
{
	struct park_slot *s = &ps->slot[fd];
	struct park_queue *q = &ps->queue[s->q];

	if (s->prev >= 0)
		ps->slot[s->prev].next = s->next;
	else
		q->head = s->next;
	if (s->next >= 0)
		ps->slot[s->next].prev = s->prev;
	else
		q->tail = s->prev;
	memset(s, 0, sizeof(*s));
	(void)epoll_ctl(ps->epfd, EPOLL_CTL_DEL, fd, NULL);
	ps->n--;
}

/* The queue for secs: its own, an unused one, or the nearest value's. */
static int
park_queue_for(struct parkset *ps, int secs)
{
	int i, best = -1, free_q = -1;

	for (i = 0; i < PARK_QUEUES; i++) {
		struct park_queue *q = &ps->queue[i];

		if (q->secs == secs)
			return i;
		if (q->head < 0 && free_q < 0)
			free_q = i;
		if (q->head >= 0 && (best < 0 ||
		    abs(q->secs - secs) < abs(ps->queue[best].secs - secs)))
			best = i;
	}
	if (free_q >= 0) {
		ps->queue[free_q].secs = secs;
		return free_q;
	}
	return best;
}

int
park_add(struct parkset *ps, evutil_socket_t fd, int timeout_s)
{
	struct epoll_event ev;
	struct park_slot *s;
	struct park_queue *q;
	int32_t at;
	int qi;

	if (fd < 0 || park_room(ps, fd) == -1)
		return -1;
	s = &ps->slot[fd];
	if (s->deadline != 0) {
		errno = EEXIST;
		return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.fd = fd;
	if (epoll_ctl(ps->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		return -1;
	qi = park_queue_for(ps, timeout_s);
	q = &ps->queue[qi];
	s->deadline = now_mono_ms() + (int64_t)timeout_s * 1000;
	s->q = (int8_t)qi;
	/* After the last slot whose deadline is not later. */
	for (at = q->tail; at >= 0 && ps->slot[at].deadline > s->deadline;
	    at = ps->slot[at].prev)
		;
	s->prev = at;
	s->next = at >= 0 ? ps->slot[at].next : q->head;
	if (s->next >= 0)
		ps->slot[s->next].prev = fd;
	else
		q->tail = fd;
	if (at >= 0)
		ps->slot[at].next = fd;
	else
		q->head = fd;
	ps->n++;
	if (ps->armed == 0 || s->deadline < ps->armed)
		park_arm(ps);
	return 0;
}

static void
park_ready(evutil_socket_t epfd, short what, void *arg)
{
	struct parkset *ps = arg;
	struct epoll_event ev[PARK_BATCH];
	int n, i;

	(void)what;
	n = epoll_wait(epfd, ev, PARK_BATCH, 0);
	for (i = 0; i < n; i++) {
		evutil_socket_t fd = ev[i].data.fd;

		if ((size_t)fd >= ps->nslots || ps->slot[fd].deadline == 0)
			continue;
		park_unlink(ps, fd);
		ps->cb(fd, 1, 0, ps->arg);
	}
	park_arm(ps);
}

static void
park_expire(evutil_socket_t unused, short what, void *arg)
{
	struct parkset *ps = arg;
	int64_t now = now_mono_ms();
	size_t i;

	(void)unused;
	(void)what;
	ps->armed = 0;
	for (i = 0; i < PARK_QUEUES; i++) {
		int32_t h;

		while ((h = ps->queue[i].head) >= 0 &&
		    ps->slot[h].deadline <= now) {
			park_unlink(ps, h);
			ps->cb(h, 0, 0, ps->arg);
		}
	}
	park_arm(ps);
}

size_t
park_count(const struct parkset *ps)
{
	return ps->n;
}

/* The first parked descriptor of any queue, or -1. */
static int32_t
park_any(const struct parkset *ps)
{
	size_t i;

	for (i = 0; i < PARK_QUEUES; i++)
		if (ps->queue[i].head >= 0)
			return ps->queue[i].head;
	return -1;
}

void
park_close_all(struct parkset *ps)
{
	int32_t fd;

	while ((fd = park_any(ps)) >= 0) {
		park_unlink(ps, fd);
		ps->cb(fd, 0, 1, ps->arg);
	}
	park_arm(ps);
}

void
parkset_free(struct parkset *ps)
{
	int32_t fd;

	if (ps == NULL)
		return;
	if (ps->slot != NULL) {
		while ((fd = park_any(ps)) >= 0) {
			park_unlink(ps, fd);
			evutil_closesocket(fd);
		}
		munmap(ps->slot, ps->nslots * sizeof(struct park_slot));
	}
	if (ps->ready != NULL)
		event_free(ps->ready);
	if (ps->timer != NULL)
		event_free(ps->timer);
	if (ps->epfd >= 0)
		close(ps->epfd);
	free(ps);
}
