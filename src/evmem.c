/*
 * evmem: libevent's small blocks in a region of their own.
 *
 * The region is one anonymous mapping reserved at start (no memory is
 * committed until a page is touched), cut into two halves for blocks of
 * 16 and of 32 bytes.  Each half hands out blocks from a free list, else
 * from its untouched end.  Freed blocks go back to the list; their pages
 * stay, so the region holds at most as many blocks as were ever in use at
 * once.  An address inside the region is ours; anything else is malloc's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <event2/event.h>

#include "evmem.h"

#if defined(__SANITIZE_ADDRESS__)
#define EVMEM_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVMEM_LSAN 1
#endif
#endif
#ifdef EVMEM_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Bytes reserved per block size: 1 Mi blocks of 16 bytes. */
#define EVMEM_HALF ((size_t)16 << 20)

struct evmem_class {
	size_t size;
	char *next, *end;       /* untouched part */
	void *free;             /* freed blocks, linked through their start */
};

static struct {
	char *base;             /* NULL: not reserved, all goes to malloc */
	struct evmem_class cls[2];
	struct evmem_stats st;
} em;

int
evmem_init(void)
{
	void *m;
	int i;

	if (em.base != NULL)
		return 0;
	m = mmap(NULL, 2 * EVMEM_HALF, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	em.base = m;
#ifdef EVMEM_LSAN
	/* Blocks here point into the heap: the leak checker must see them. */
	__lsan_register_root_region(m, 2 * EVMEM_HALF);
#endif
	for (i = 0; i < 2; i++) {
		em.cls[i].size = (size_t)16 << i;
		em.cls[i].next = em.base + (size_t)i * EVMEM_HALF;
		em.cls[i].end = em.cls[i].next + EVMEM_HALF;
		em.cls[i].free = NULL;
	}
	event_set_mem_functions(evmem_malloc, evmem_realloc, evmem_free);
	return 0;
}

/* The class of a block inside the region, or NULL. */
static struct evmem_class *
evmem_owner(const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)em.base;

	if (em.base == NULL || a < b || a >= b + 2 * EVMEM_HALF)
		return NULL;
	return &em.cls[(a - b) / EVMEM_HALF];
}

void *
evmem_malloc(size_t n)
{
	struct evmem_class *c;
	void *p;

	if (em.base == NULL || n > EVMEM_SMALL)
		return malloc(n);
	c = &em.cls[n > 16];
	if ((p = c->free) != NULL) {
		memcpy(&c->free, p, sizeof(void *));
	} else if (c->next < c->end) {
		p = c->next;
		c->next += c->size;
		em.st.mapped += c->size;
	} else {
		em.st.fallback++;
		return malloc(n);
	}
	if (++em.st.in_use > em.st.peak)
		em.st.peak = em.st.in_use;
	return p;
}

void
evmem_free(void *p)
{
	struct evmem_class *c = evmem_owner(p);

	if (c == NULL) {
		free(p);
		return;
	}
	memcpy(p, &c->free, sizeof(void *));
	c->free = p;
	em.st.in_use--;
}

void *
evmem_realloc(void *p, size_t n)
{
	struct evmem_class *c = evmem_owner(p);
	void *q;

	if (c == NULL)
		return p == NULL ? evmem_malloc(n) : realloc(p, n);
	if (n == 0) {
		evmem_free(p);
		return NULL;
	}
	if (n <= c->size)
		return p;
	if ((q = evmem_malloc(n)) == NULL)
		return NULL;
	memcpy(q, p, c->size);
	evmem_free(p);
	return q;
}

void
evmem_get_stats(struct evmem_stats *st)
{
	*st = em.st;
}
