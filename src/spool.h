/*
 * spool: the durable queue behind store-and-forward (offline_queue).
 *
 * One directory per route holds one file per queued request, named so
 * that names sort in arrival order.  Each file is written to tmp/, synced,
 * renamed into place and the directory synced, so a request is either
 * wholly queued or not at all, across kill -9 and power loss.  Every read
 * checks the file's structure and SHA-256; a file that fails is moved to
 * corrupt/ and never returned.  Delivery is at-least-once: a crash between
 * the upstream's 2xx and spool_ack() replays the entry with the same id.
 *
 * All I/O is synchronous: spool_put() costs one file fsync and one
 * directory fsync, spool_ack() one directory fsync.  The module keeps an
 * in-memory index (32 bytes per entry) so that no call scans the
 * directory after spool_open().  Not thread-safe; one process per
 * directory (spool_open() takes an exclusive lock).  The format, the
 * crash windows and the costs are described in docs/spool.md.
 */
#ifndef TLSGATE_SPOOL_H
#define TLSGATE_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_MAX_ROUTE    255          /* bytes of route name */
#define SPOOL_MAX_METHOD   32           /* bytes of method token */
#define SPOOL_MAX_PATH     8192         /* bytes of path + query (as
					   HTTP1_MAX_TARGET) */
#define SPOOL_MAX_HEADERS  (1024 * 1024)  /* bytes of header lines (the
					     largest max_header_size) */
#define SPOOL_MAX_BODY     (1024 * 1024)  /* bytes of body */
#define SPOOL_MAX_RESPONSE (64 * 1024)  /* bytes of response kept in dead/ */
#define SPOOL_MAX_ENTRIES  1000000      /* hard bound on max_entries */
#define SPOOL_DEFAULT_MAX_ENTRIES 100000  /* max_entries when 0 is given */

/* Size of an id with its NUL: "<20-digit sequence>-<16 hex digits>". */
#define SPOOL_ID_SIZE      38

/* spool_put(): the cap would be exceeded or the disk is full. */
#define SPOOL_FULL         (-2)
/* spool_peek_oldest(): nothing is queued. */
#define SPOOL_EMPTY        1

struct spool;

/**
 * A request to queue.  Nothing is retained after spool_put() returns.
 * `route` is NUL-terminated; the other fields are (pointer, length)
 * slices.  `headers` are the header lines to replay, already rewritten by
 * the proxy: zero or more "name:value\r\n" lines, without the request
 * line and without the empty line that ends the head.
 */
struct spool_entry_in {
	const char *route;
	const char *method;
	size_t method_len;
	const char *path;         /* origin-form: absolute-path [ "?" query ] */
	size_t path_len;
	const char *headers;
	size_t headers_len;
	const void *body;
	size_t body_len;
	int64_t arrival_ms;       /* wall clock, ms since the epoch; 0 = now */
};

/**
 * A queued request loaded by spool_peek_oldest().  Every pointer points
 * into one block owned by the entry and released by spool_entry_free();
 * route, method, path and headers are also NUL-terminated (the lengths
 * exclude the NUL).  The block is wiped when freed, because the header
 * lines may carry credentials.
 */
struct spool_entry {
	char id[SPOOL_ID_SIZE];   /* the X-Tlsgate-Queue-Id value */
	uint64_t seq;
	int64_t arrival_ms;
	const char *route;
	size_t route_len;
	const char *method;
	size_t method_len;
	const char *path;
	size_t path_len;
	const char *headers;
	size_t headers_len;
	const unsigned char *body;
	size_t body_len;
	size_t file_size;         /* bytes on disk */
	void *block;              /* private: the block and its size */
	size_t block_len;
};

/** Counters since spool_open(), for logs and metrics. */
struct spool_counters {
	uint64_t puts;            /* entries queued */
	uint64_t full;            /* spool_put() refused with SPOOL_FULL */
	uint64_t acks;            /* entries delivered and removed */
	uint64_t dead;            /* entries moved to dead/ */
	uint64_t corrupt;         /* files moved to corrupt/ (open + reads) */
	uint64_t tmp_removed;     /* leftover temporary files removed */
};

/**
 * Opens (creating it and its dead/, corrupt/ and tmp/ subdirectories with
 * mode 0700 when missing; the parent must exist) the spool in `dir` and
 * recovers it: every file in tmp/ is an interrupted write and is removed;
 * every entry is read and checked, and a file that fails is moved to
 * corrupt/; each of these is logged.  The next sequence number is one more
 * than the highest of the valid entries and of the names in dead/ (after
 * the sequence number UINT64_MAX - 1, spool_put() refuses).
 * `max_bytes` (> 0) caps the sum of entry file sizes, `max_entries` their
 * number (0 = SPOOL_DEFAULT_MAX_ENTRIES; at most SPOOL_MAX_ENTRIES).
 * Takes an exclusive lock on `dir`: a second opener fails.  Reads every
 * entry once, so the time is linear in the bytes queued.
 * Returns the spool, or NULL with a message in err[errlen].
 */
struct spool *spool_open(const char *dir, uint64_t max_bytes,
    size_t max_entries, char *err, size_t errlen);

/**
 * Queues `e` durably: when this returns 0 the entry survives a crash or a
 * power loss, and its id (the X-Tlsgate-Queue-Id value) is in id_out.
 * Returns 0; SPOOL_FULL when the entry would pass max_bytes or max_entries
 * or the file system is full (answer 503 with Retry-After); -1 when `e`
 * is out of bounds or malformed, or on an I/O error (logged).
 */
int spool_put(struct spool *sp, const struct spool_entry_in *e,
    char id_out[SPOOL_ID_SIZE]);

/**
 * Loads the oldest entry into *out, which the caller releases with
 * spool_entry_free().  A file that fails its checks is moved to corrupt/
 * (logged) and the next one is tried; a file that vanished is dropped
 * from the index (logged).  Calling it again without spool_ack(),
 * spool_dead() or spool_setaside() returns the same entry.
 * Returns 0, SPOOL_EMPTY (out untouched) or -1 on an I/O error (logged).
 */
int spool_peek_oldest(struct spool *sp, struct spool_entry *out);

/** Wipes and frees what spool_peek_oldest() loaded; NULL-safe, idempotent. */
void spool_entry_free(struct spool_entry *e);

/**
 * Removes the entry `id` after the upstream answered 2xx, and syncs the
 * directory so that it is not replayed after a crash.
 * Returns 0, or -1 when `id` is not queued or on an I/O error (logged).
 */
int spool_ack(struct spool *sp, const char *id);

/**
 * Moves the entry `id` to dead/ after a final refusal (4xx other than 408
 * and 429), with dead/<id>.resp beside it holding "status: NNN" and the
 * first SPOOL_MAX_RESPONSE bytes of `resp` (may be NULL when resp_len is
 * 0).  Logs one warning.  Returns 0, or -1 when `id` is not queued or on
 * an I/O error (logged; the entry then stays queued).
 */
int spool_dead(struct spool *sp, const char *id, int status,
    const void *resp, size_t resp_len);

/**
 * Moves the entry `id` to corrupt/ because the caller found it unusable
 * (`why`, logged), e.g. its route no longer exists.
 * Returns 0, or -1 when `id` is not queued or on an I/O error (logged).
 */
int spool_setaside(struct spool *sp, const char *id, const char *why);

/**
 * The queue's depth (entries), bytes (sum of file sizes) and the age in
 * seconds of the oldest entry by the wall clock (0 when empty or when the
 * clock went backwards).  Any pointer may be NULL.
 */
void spool_stats(const struct spool *sp, size_t *depth, uint64_t *bytes,
    uint64_t *oldest_age_s);

/** Copies the counters since spool_open() into *out. */
void spool_counters(const struct spool *sp, struct spool_counters *out);

/** Releases the lock and everything; queued entries stay on disk. */
void spool_close(struct spool *sp);

#endif
