/*
 * evmem: where libevent's memory comes from.
 *
 * libevent keeps a 16-byte record for every descriptor it has ever
 * watched (its evmap slot, freed only with the event base).  From the
 * heap, those records land between the sessions of the connections they
 * belong to, and when an idle connection is parked and its session freed,
 * every freed session is a hole smaller than a page, pinned by the two
 * records around it: the memory stays resident.  evmem gives libevent's
 * small blocks (up to 32 bytes) pages of their own and leaves the rest to
 * malloc.
 *
 * One thread: the daemon calls libevent from its main thread only.
 */
#ifndef TLSGATE_EVMEM_H
#define TLSGATE_EVMEM_H

#include <stddef.h>

/* The largest block evmem keeps; bigger ones go to malloc. */
#define EVMEM_SMALL 32

struct evmem_stats {
	size_t in_use;          /* small blocks allocated now */
	size_t peak;            /* the most at once */
	size_t mapped;          /* bytes of blocks ever handed out (touched) */
	size_t fallback;        /* small blocks that went to malloc: region full */
};

/**
 * Reserves the region for small blocks and hands evmem_malloc,
 * evmem_realloc and evmem_free to libevent.  Call before any other
 * libevent call.  Returns 0, or -1 when the region cannot be mapped
 * (libevent then uses malloc, which works, with more resident memory).
 */
int evmem_init(void);

void *evmem_malloc(size_t n);
void *evmem_realloc(void *p, size_t n);
void evmem_free(void *p);

/** Counters of the small blocks. */
void evmem_get_stats(struct evmem_stats *st);

#endif
