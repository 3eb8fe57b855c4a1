/*
 * Unit tests of src/spool.c: arrival order over 1,000 entries and across
 * reopen, the caps, every field limit, recovery (every truncation length
 * of an entry, every flipped byte, wrong magic, renamed files, leftover
 * temporary files, odd file types), dead letters, set-aside, the lock,
 * and a crash test that SIGKILLs a writer at random moments.
 * Everything happens in a directory under $TMPDIR, removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <openssl/sha.h>

#include "log.h"
#include "spool.h"

#define ROUTE      "drogue"
#define BIG        (1ULL << 40)
#define ENTRY_FILE 256    /* an upper bound on one test entry's file */

static char root[4096];   /* the temporary directory of this run */
static int ndirs;
static char err[512];

/* ---- helpers --------------------------------------------------------- */

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh spool directory path (not created). */
static const char *
new_dir(void)
{
	static char dir[4200];

	snprintf(dir, sizeof(dir), "%s/s%d", root, ++ndirs);
	return dir;
}

static struct spool *
open_ok(const char *dir, uint64_t max_bytes, size_t max_entries)
{
	struct spool *sp = spool_open(dir, max_bytes, max_entries, err,
	    sizeof(err));

	if (sp == NULL)
		fail_msg("spool_open: %s", err);
	return sp;
}

/* Entry number i: equal sizes for every i < 10^6. */
struct gen {
	char path[64];
	char headers[96];
	char body[64];
	struct spool_entry_in in;
};

static const struct spool_entry_in *
gen_entry(struct gen *g, int i)
{
	snprintf(g->path, sizeof(g->path), "/v1/telemetry?n=%06d", i);
	snprintf(g->headers, sizeof(g->headers),
	    "Host: http.example\r\nX-N: %06d\r\nContent-Length: 14\r\n", i);
	snprintf(g->body, sizeof(g->body), "reading %06d", i);
	memset(&g->in, 0, sizeof(g->in));
	g->in.route = ROUTE;
	g->in.method = "POST";
	g->in.method_len = 4;
	g->in.path = g->path;
	g->in.path_len = strlen(g->path);
	g->in.headers = g->headers;
	g->in.headers_len = strlen(g->headers);
	g->in.body = g->body;
	g->in.body_len = strlen(g->body);
	return &g->in;
}

static void
put_ok(struct spool *sp, int i, char id[SPOOL_ID_SIZE])
{
	struct gen g;

	assert_int_equal(spool_put(sp, gen_entry(&g, i), id), 0);
}

/* The entry loaded matches entry number i exactly. */
static void
check_entry(const struct spool_entry *e, int i)
{
	struct gen g;

	gen_entry(&g, i);
	assert_string_equal(e->route, ROUTE);
	assert_int_equal(e->route_len, strlen(ROUTE));
	assert_string_equal(e->method, "POST");
	assert_int_equal(e->path_len, strlen(g.path));
	assert_string_equal(e->path, g.path);
	assert_int_equal(e->headers_len, strlen(g.headers));
	assert_string_equal(e->headers, g.headers);
	assert_int_equal(e->body_len, strlen(g.body));
	assert_memory_equal(e->body, g.body, e->body_len);
}

/* Peeks, checks it is entry i with id `id` (when not NULL), acks. */
static void
take(struct spool *sp, int i, const char *id)
{
	struct spool_entry e;

	memset(&e, 0, sizeof(e));
	assert_int_equal(spool_peek_oldest(sp, &e), 0);
	check_entry(&e, i);
	if (id != NULL)
		assert_string_equal(e.id, id);
	assert_int_equal(spool_ack(sp, e.id), 0);
	spool_entry_free(&e);
}

static void
expect_empty(struct spool *sp)
{
	struct spool_entry e;
	size_t depth;
	uint64_t bytes;

	memset(&e, 0, sizeof(e));
	assert_int_equal(spool_peek_oldest(sp, &e), SPOOL_EMPTY);
	spool_stats(sp, &depth, &bytes, NULL);
	assert_int_equal(depth, 0);
	assert_int_equal(bytes, 0);
}

static char *
entry_path(const char *dir, const char *sub, const char *id,
    const char *suffix)
{
	static char p[4400];

	snprintf(p, sizeof(p), "%s/%s%s%s%s", dir, sub, *sub ? "/" : "", id,
	    suffix);
	return p;
}

static size_t
read_whole(const char *path, unsigned char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static void
write_whole(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Number of names in dir/sub other than "." and ".."; -1 if no such dir. */
static int
count_files(const char *dir, const char *sub)
{
	char p[4400];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	if ((d = opendir(p)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static uint64_t
seq_of(const char *id)
{
	return strtoull(id, NULL, 10);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ---- order, reopen, ids ------------------------------------------------ */

/* 1,000 puts, then peek/ack returns them in arrival order, exactly. */
static void
test_order_1000(void **state)
{
	static char ids[1000][SPOOL_ID_SIZE];
	static double lat[1000];
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 0);
	struct spool_counters c;
	uint64_t bytes;
	size_t depth;
	double t;
	int i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		t = now_s();
		put_ok(sp, i, ids[i]);
		lat[i] = now_s() - t;
		if (i > 0)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	}
	qsort(lat, 1000, sizeof(lat[0]), cmp_double);
	print_message("spool_put latency (fsync file + dir): median %.3f ms, "
	    "p90 %.3f ms, max %.3f ms\n", lat[500] * 1e3, lat[900] * 1e3,
	    lat[999] * 1e3);
	spool_stats(sp, &depth, &bytes, NULL);
	assert_int_equal(depth, 1000);
	assert_true(bytes > 1000 * 100);
	assert_int_equal(count_files(dir, ""), 1000 + 3);
	for (i = 0; i < 1000; i++)
		take(sp, i, ids[i]);
	expect_empty(sp);
	spool_counters(sp, &c);
	assert_int_equal(c.puts, 1000);
	assert_int_equal(c.acks, 1000);
	assert_int_equal(c.corrupt, 0);
	spool_close(sp);
	/* Nothing left but the three subdirectories, all empty. */
	assert_int_equal(count_files(dir, ""), 3);
	assert_int_equal(count_files(dir, "tmp"), 0);
	assert_int_equal(count_files(dir, "dead"), 0);
	assert_int_equal(count_files(dir, "corrupt"), 0);
}

/* Reopen keeps order and continues the sequence; ids never repeat. */
static void
test_reopen(void **state)
{
	char ids[60][SPOOL_ID_SIZE], extra[SPOOL_ID_SIZE];
	const char *dir = new_dir();
	struct spool *sp;
	size_t depth;
	int i, j, n = 0;

	(void)state;
	for (j = 0; j < 3; j++) {
		sp = open_ok(dir, BIG, 0);
		spool_stats(sp, &depth, NULL, NULL);
		assert_int_equal(depth, (size_t)n);
		for (i = 0; i < 20; i++, n++)
			put_ok(sp, n, ids[n]);
		spool_close(sp);
	}
	for (i = 1; i < n; i++) {
		assert_true(seq_of(ids[i]) == seq_of(ids[i - 1]) + 1);
		for (j = 0; j < i; j++)
			assert_string_not_equal(ids[i], ids[j]);
	}
	/* Half delivered, reopen, the rest in order. */
	sp = open_ok(dir, BIG, 0);
	for (i = 0; i < 30; i++)
		take(sp, i, ids[i]);
	spool_close(sp);
	sp = open_ok(dir, BIG, 0);
	for (i = 30; i < n; i++)
		take(sp, i, ids[i]);
	expect_empty(sp);
	spool_close(sp);
	/* Emptied spool: the random part still keeps ids unique. */
	sp = open_ok(dir, BIG, 0);
	put_ok(sp, 0, extra);
	for (i = 0; i < n; i++)
		assert_string_not_equal(extra, ids[i]);
	spool_close(sp);
}

/* A second opener of the same directory is refused until the first closes. */
static void
test_lock(void **state)
{
	const char *dir = new_dir();
	struct spool *a = open_ok(dir, BIG, 0), *b;

	(void)state;
	b = spool_open(dir, BIG, 0, err, sizeof(err));
	assert_null(b);
	assert_non_null(strstr(err, "in use"));
	spool_close(a);
	spool_close(open_ok(dir, BIG, 0));
}

static void
test_bad_open_args(void **state)
{
	const char *dir = new_dir();

	(void)state;
	assert_null(spool_open(dir, 0, 0, err, sizeof(err)));
	assert_null(spool_open(dir, BIG, SPOOL_MAX_ENTRIES + 1, err,
	    sizeof(err)));
	spool_close(open_ok(dir, BIG, SPOOL_MAX_ENTRIES));
	/* The parent must exist. */
	assert_null(spool_open(entry_path(root, "no", "such", ""), BIG, 0, err,
	    sizeof(err)));
}

/* ---- caps and limits ---------------------------------------------------- */

static void
test_cap_bytes(void **state)
{
	char id[SPOOL_ID_SIZE], first[SPOOL_ID_SIZE];
	const char *dir = new_dir();
	struct spool_counters c;
	struct spool *sp;
	struct gen g;
	uint64_t one;

	(void)state;
	sp = open_ok(dir, BIG, 0);
	put_ok(sp, 0, id);
	spool_stats(sp, NULL, &one, NULL);
	spool_close(sp);
	rm_rf(dir);
	/* Room for exactly three entries. */
	sp = open_ok(dir, 3 * one, 0);
	put_ok(sp, 0, first);
	put_ok(sp, 1, id);
	put_ok(sp, 2, id);
	assert_int_equal(spool_put(sp, gen_entry(&g, 3), id), SPOOL_FULL);
	assert_int_equal(spool_put(sp, gen_entry(&g, 3), id), SPOOL_FULL);
	spool_counters(sp, &c);
	assert_int_equal(c.full, 2);
	assert_int_equal(c.puts, 3);
	assert_int_equal(count_files(dir, "tmp"), 0);
	/* Delivering one makes room for one. */
	take(sp, 0, first);
	put_ok(sp, 3, id);
	assert_int_equal(spool_put(sp, gen_entry(&g, 4), id), SPOOL_FULL);
	spool_close(sp);
	/* A lower cap on reopen keeps what is queued, refuses more. */
	sp = open_ok(dir, one, 0);
	assert_int_equal(spool_put(sp, gen_entry(&g, 5), id), SPOOL_FULL);
	take(sp, 1, NULL);
	take(sp, 2, NULL);
	take(sp, 3, NULL);
	put_ok(sp, 6, id);
	spool_close(sp);
}

static void
test_cap_entries(void **state)
{
	char id[SPOOL_ID_SIZE];
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 2);
	struct gen g;

	(void)state;
	put_ok(sp, 0, id);
	put_ok(sp, 1, id);
	assert_int_equal(spool_put(sp, gen_entry(&g, 2), id), SPOOL_FULL);
	take(sp, 0, NULL);
	put_ok(sp, 2, id);
	spool_close(sp);
}

/* Header lines of exactly `len` bytes ("X:aaaa...\r\n" lines). */
static char *
make_headers(size_t len)
{
	char *h = malloc(len + 1);
	size_t pos = 0, n;

	assert_non_null(h);
	while (pos < len) {
		n = len - pos > 1000 ? 1000 : len - pos;
		if (len - pos - n < 5 && len - pos > 1000)
			n -= 5;    /* leave a whole line for the tail */
		assert_true(n >= 5);
		memcpy(h + pos, "X:", 2);
		memset(h + pos + 2, 'a', n - 4);
		memcpy(h + pos + n - 2, "\r\n", 2);
		pos += n;
	}
	h[len] = '\0';
	return h;
}

/* One put with field `which` of `len` bytes; returns spool_put's result. */
static int
put_sized(struct spool *sp, int which, size_t len)
{
	char id[SPOOL_ID_SIZE], *buf = NULL;
	struct spool_entry_in in;
	struct gen g;
	int rc;

	in = *gen_entry(&g, 0);
	if (which == 3) {
		buf = make_headers(len);
	} else {
		assert_non_null(buf = malloc(len + 1));
		memset(buf, which == 1 ? 'M' : 'a', len);
		if (which == 2)
			buf[0] = '/';
		buf[len] = '\0';
	}
	switch (which) {
	case 0: in.route = buf; break;
	case 1: in.method = buf; in.method_len = len; break;
	case 2: in.path = buf; in.path_len = len; break;
	case 3: in.headers = buf; in.headers_len = len; break;
	default: in.body = buf; in.body_len = len; break;
	}
	rc = spool_put(sp, &in, id);
	free(buf);
	return rc;
}

/* Every field limit: the maximum is queued and read back, one more is not. */
static void
test_field_limits(void **state)
{
	static const size_t max[] = { SPOOL_MAX_ROUTE, SPOOL_MAX_METHOD,
	    SPOOL_MAX_PATH, SPOOL_MAX_HEADERS, SPOOL_MAX_BODY };
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 0);
	struct spool_entry e;
	size_t depth;
	int w;

	(void)state;
	for (w = 0; w < 5; w++) {
		assert_int_equal(put_sized(sp, w, max[w]), 0);
		assert_int_equal(put_sized(sp, w, max[w] + 1), -1);
	}
	spool_close(sp);
	/* Reopen reads each maximal file back intact. */
	sp = open_ok(dir, BIG, 0);
	spool_stats(sp, &depth, NULL, NULL);
	assert_int_equal(depth, 5);
	for (w = 0; w < 5; w++) {
		memset(&e, 0, sizeof(e));
		assert_int_equal(spool_peek_oldest(sp, &e), 0);
		assert_int_equal(w == 0 ? e.route_len : w == 1 ? e.method_len :
		    w == 2 ? e.path_len : w == 3 ? e.headers_len : e.body_len,
		    max[w]);
		assert_int_equal(spool_ack(sp, e.id), 0);
		spool_entry_free(&e);
	}
	expect_empty(sp);
	spool_close(sp);
}

/* What spool_put refuses: it would be refused again at read time. */
static void
test_bad_input(void **state)
{
	static const char *bad_headers[] = {
		"Host: a\n",             /* bare LF */
		"Host: a\r\n\r\nGET / HTTP/1.1\r\n",  /* empty line */
		"Host: a",               /* no CRLF */
		"Host a\r\n",            /* no colon */
		": a\r\n",               /* empty name */
		"Ho st: a\r\n",          /* not a token */
		"Host: a\rb\r\n",        /* bare CR */
		"Host: \x01\r\n",        /* CTL */
	};
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 0);
	struct spool_entry_in in;
	char id[SPOOL_ID_SIZE];
	struct gen g;
	size_t i, depth;

	(void)state;
	for (i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
		in = *gen_entry(&g, 0);
		in.headers = bad_headers[i];
		in.headers_len = strlen(bad_headers[i]);
		assert_int_equal(spool_put(sp, &in, id), -1);
	}
	in = *gen_entry(&g, 0);
	in.headers = "Host: a\0b\r\n";
	in.headers_len = 11;
	assert_int_equal(spool_put(sp, &in, id), -1);
	in = *gen_entry(&g, 0);
	in.path = "v1/x";                  /* not origin-form */
	in.path_len = 4;
	assert_int_equal(spool_put(sp, &in, id), -1);
	in = *gen_entry(&g, 0);
	in.path = "/v1/a b";
	in.path_len = 7;
	assert_int_equal(spool_put(sp, &in, id), -1);
	in = *gen_entry(&g, 0);
	in.method = "PO ST";
	in.method_len = 5;
	assert_int_equal(spool_put(sp, &in, id), -1);
	in = *gen_entry(&g, 0);
	in.route = "";
	assert_int_equal(spool_put(sp, &in, id), -1);
	in = *gen_entry(&g, 0);
	in.headers = NULL;                 /* no header lines is fine */
	in.headers_len = 0;
	in.body_len = 0;
	assert_int_equal(spool_put(sp, &in, id), 0);
	spool_stats(sp, &depth, NULL, NULL);
	assert_int_equal(depth, 1);
	assert_int_equal(count_files(dir, "tmp"), 0);
	spool_close(sp);
}

/* ---- recovery ------------------------------------------------------------ */

struct three {
	const char *dir;
	char id[3][SPOOL_ID_SIZE];
	unsigned char file[3][ENTRY_FILE];
	size_t len[3];
};

/* Queues entries 0, 1, 2 and keeps a copy of each file. */
static void
three_make(struct three *t)
{
	struct spool *sp;
	int i;

	t->dir = strdup(new_dir());
	sp = open_ok(t->dir, BIG, 0);
	for (i = 0; i < 3; i++)
		put_ok(sp, i, t->id[i]);
	spool_close(sp);
	for (i = 0; i < 3; i++) {
		t->len[i] = read_whole(entry_path(t->dir, "", t->id[i], ".req"),
		    t->file[i], sizeof(t->file[i]));
		assert_true(t->len[i] > 100 && t->len[i] < ENTRY_FILE);
	}
}

/* Restores the three files, with entry 1 replaced by buf[len]. */
static void
three_reset(struct three *t, const void *buf, size_t len)
{
	char p[4400];

	snprintf(p, sizeof(p), "%s/corrupt", t->dir);
	rm_rf(p);
	assert_int_equal(mkdir(p, 0700), 0);
	write_whole(entry_path(t->dir, "", t->id[0], ".req"), t->file[0],
	    t->len[0]);
	write_whole(entry_path(t->dir, "", t->id[1], ".req"), buf, len);
	write_whole(entry_path(t->dir, "", t->id[2], ".req"), t->file[2],
	    t->len[2]);
}

/* Opens: entry 1 must have been set aside, 0 and 2 still delivered. */
static void
three_expect_1_aside(struct three *t)
{
	struct spool *sp = open_ok(t->dir, BIG, 0);
	struct spool_counters c;
	size_t depth;

	spool_counters(sp, &c);
	spool_stats(sp, &depth, NULL, NULL);
	assert_int_equal(c.corrupt, 1);
	assert_int_equal(depth, 2);
	take(sp, 0, t->id[0]);
	take(sp, 2, t->id[2]);
	expect_empty(sp);
	spool_close(sp);
	assert_int_equal(count_files(t->dir, "corrupt"), 1);
	assert_int_equal(access(entry_path(t->dir, "corrupt", t->id[1],
	    ".req"), F_OK), 0);
}

/* Every truncation length of an entry, found at open. */
static void
test_truncated_at_open(void **state)
{
	struct three t;
	size_t l;

	(void)state;
	three_make(&t);
	for (l = 0; l < t.len[1]; l++) {
		three_reset(&t, t.file[1], l);
		three_expect_1_aside(&t);
	}
	/* The untouched file is accepted (the loop is not vacuous). */
	three_reset(&t, t.file[1], t.len[1]);
	{
		struct spool *sp = open_ok(t.dir, BIG, 0);

		take(sp, 0, t.id[0]);
		take(sp, 1, t.id[1]);
		take(sp, 2, t.id[2]);
		spool_close(sp);
	}
	free((void *)t.dir);
}

/* Every truncation length, done behind an open spool's back. */
static void
test_truncated_at_read(void **state)
{
	struct spool_counters c;
	struct spool *sp;
	struct three t;
	size_t l;

	(void)state;
	three_make(&t);
	for (l = 0; l < t.len[1]; l++) {
		three_reset(&t, t.file[1], t.len[1]);
		sp = open_ok(t.dir, BIG, 0);
		assert_int_equal(truncate(entry_path(t.dir, "", t.id[1],
		    ".req"), (off_t)l), 0);
		take(sp, 0, t.id[0]);
		take(sp, 2, t.id[2]);
		expect_empty(sp);
		spool_counters(sp, &c);
		assert_int_equal(c.corrupt, 1);
		spool_close(sp);
	}
	free((void *)t.dir);
}

/* Every byte of an entry, flipped in turn. */
static void
test_flipped_byte(void **state)
{
	unsigned char buf[ENTRY_FILE];
	struct three t;
	size_t i;

	(void)state;
	three_make(&t);
	for (i = 0; i < t.len[1]; i++) {
		memcpy(buf, t.file[1], t.len[1]);
		buf[i] ^= (i & 1) ? 0x01 : 0x80;
		three_reset(&t, buf, t.len[1]);
		three_expect_1_aside(&t);
	}
	/* One byte appended. */
	memcpy(buf, t.file[1], t.len[1]);
	buf[t.len[1]] = 0;
	three_reset(&t, buf, t.len[1] + 1);
	three_expect_1_aside(&t);
	free((void *)t.dir);
}

static void
test_wrong_magic_version(void **state)
{
	unsigned char buf[ENTRY_FILE];
	struct three t;

	(void)state;
	three_make(&t);
	memcpy(buf, t.file[1], t.len[1]);
	memcpy(buf, "XXXXXXXX", 8);
	three_reset(&t, buf, t.len[1]);
	three_expect_1_aside(&t);
	memcpy(buf, t.file[1], t.len[1]);
	buf[9] = 2;                        /* version 2 */
	three_reset(&t, buf, t.len[1]);
	three_expect_1_aside(&t);
	/* A valid file under another entry's name. */
	three_reset(&t, t.file[0], t.len[0]);
	three_expect_1_aside(&t);
	free((void *)t.dir);
}

/*
 * A valid entry (digest recomputed) numbered UINT64_MAX: open still
 * succeeds and delivers it, and spool_put() refuses from then on.
 */
static void
test_seq_exhausted(void **state)
{
	unsigned char buf[ENTRY_FILE];
	char id[SPOOL_ID_SIZE], maxid[SPOOL_ID_SIZE];
	struct spool_entry e;
	struct spool *sp;
	struct three t;
	struct gen g;
	int i;

	(void)state;
	three_make(&t);
	memcpy(buf, t.file[0], t.len[0]);
	memcpy(maxid, t.id[0], SPOOL_ID_SIZE);
	memcpy(maxid, "18446744073709551615", 20);    /* UINT64_MAX */
	memcpy(buf + 48, maxid, SPOOL_ID_SIZE - 1);
	for (i = 0; i < 8; i++)
		buf[32 + i] = 0xff;
	SHA256(buf, t.len[0] - 32, buf + t.len[0] - 32);
	assert_int_equal(unlink(entry_path(t.dir, "", t.id[0], ".req")), 0);
	write_whole(entry_path(t.dir, "", maxid, ".req"), buf, t.len[0]);
	sp = open_ok(t.dir, BIG, 0);
	assert_int_equal(spool_put(sp, gen_entry(&g, 9), id), -1);
	take(sp, 1, t.id[1]);
	take(sp, 2, t.id[2]);
	memset(&e, 0, sizeof(e));
	assert_int_equal(spool_peek_oldest(sp, &e), 0);
	check_entry(&e, 0);
	assert_string_equal(e.id, maxid);
	spool_entry_free(&e);
	spool_close(sp);
	free((void *)t.dir);
}

/* Leftover temporary files, junk names, a FIFO and a symlink. */
static void
test_leftovers(void **state)
{
	char p[4400], fifo_id[SPOOL_ID_SIZE];
	struct spool_counters c;
	struct spool *sp;
	struct three t;
	size_t depth;

	(void)state;
	three_make(&t);
	snprintf(p, sizeof(p), "%s/tmp/%s.req", t.dir, t.id[1]);
	write_whole(p, t.file[1], t.len[1] / 2);
	snprintf(p, sizeof(p), "%s/tmp/other", t.dir);
	write_whole(p, "x", 1);
	snprintf(p, sizeof(p), "%s/notes.txt", t.dir);
	write_whole(p, "x", 1);
	snprintf(fifo_id, sizeof(fifo_id), "%s", t.id[2]);
	fifo_id[SPOOL_ID_SIZE - 2] = fifo_id[SPOOL_ID_SIZE - 2] == '0' ? '1' :
	    '0';
	assert_int_equal(mkfifo(entry_path(t.dir, "", fifo_id, ".req"), 0600),
	    0);
	fifo_id[SPOOL_ID_SIZE - 3] = fifo_id[SPOOL_ID_SIZE - 3] == '0' ? '1' :
	    '0';
	snprintf(p, sizeof(p), "%s", entry_path(t.dir, "", t.id[0], ".req"));
	assert_int_equal(symlink(p, entry_path(t.dir, "", fifo_id, ".req")),
	    0);
	snprintf(p, sizeof(p), "%s/subdir", t.dir);
	assert_int_equal(mkdir(p, 0700), 0);

	sp = open_ok(t.dir, BIG, 0);
	spool_counters(sp, &c);
	spool_stats(sp, &depth, NULL, NULL);
	assert_int_equal(c.tmp_removed, 2);
	assert_int_equal(c.corrupt, 3);    /* notes.txt, FIFO, symlink */
	assert_int_equal(depth, 3);
	take(sp, 0, t.id[0]);
	take(sp, 1, t.id[1]);
	take(sp, 2, t.id[2]);
	expect_empty(sp);
	spool_close(sp);
	assert_int_equal(count_files(t.dir, "tmp"), 0);
	assert_int_equal(count_files(t.dir, "corrupt"), 3);
	free((void *)t.dir);
}

/*
 * A file longer than the largest valid entry (sparse, so cheap) is set
 * aside without being read.
 */
static void
test_too_large(void **state)
{
	struct spool_counters c;
	struct spool *sp;
	struct three t;
	int fd;

	(void)state;
	three_make(&t);
	fd = open(entry_path(t.dir, "", t.id[1], ".req"), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(SPOOL_MAX_HEADERS +
	    SPOOL_MAX_BODY + SPOOL_MAX_PATH + 1024)), 0);
	close(fd);
	sp = open_ok(t.dir, BIG, 0);
	spool_counters(sp, &c);
	assert_int_equal(c.corrupt, 1);
	take(sp, 0, t.id[0]);
	take(sp, 2, t.id[2]);
	expect_empty(sp);
	spool_close(sp);
	free((void *)t.dir);
}

/* A file removed behind the spool's back is dropped, not fatal. */
static void
test_vanished(void **state)
{
	struct spool *sp;
	struct three t;

	(void)state;
	three_make(&t);
	sp = open_ok(t.dir, BIG, 0);
	assert_int_equal(unlink(entry_path(t.dir, "", t.id[0], ".req")), 0);
	take(sp, 1, t.id[1]);
	take(sp, 2, t.id[2]);
	expect_empty(sp);
	assert_int_equal(spool_ack(sp, t.id[0]), -1);
	spool_close(sp);
	free((void *)t.dir);
}

/* ---- dead letters, set-aside, stats ------------------------------------- */

static void
test_dead_letter(void **state)
{
	static const char resp[] = "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Length: 3\r\n\r\nbad";
	unsigned char buf[SPOOL_MAX_RESPONSE + 256];
	char id[3][SPOOL_ID_SIZE], want[128], *big;
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 0);
	struct spool_counters c;
	size_t n;

	(void)state;
	put_ok(sp, 0, id[0]);
	put_ok(sp, 1, id[1]);
	put_ok(sp, 2, id[2]);
	assert_int_equal(spool_dead(sp, id[0], 400, resp, strlen(resp)), 0);
	assert_int_equal(spool_dead(sp, id[0], 400, resp, strlen(resp)), -1);
	assert_int_equal(access(entry_path(dir, "dead", id[0], ".req"), F_OK),
	    0);
	n = read_whole(entry_path(dir, "dead", id[0], ".resp"), buf,
	    sizeof(buf) - 1);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "status: 400\nlength: %zu\nkept: %zu\n\n"
	    "%s", strlen(resp), strlen(resp), resp);
	assert_string_equal((char *)buf, want);
	/* A response larger than SPOOL_MAX_RESPONSE is cut there. */
	assert_non_null(big = malloc(SPOOL_MAX_RESPONSE + 100));
	memset(big, 'r', SPOOL_MAX_RESPONSE + 100);
	assert_int_equal(spool_dead(sp, id[1], 404, big,
	    SPOOL_MAX_RESPONSE + 100), 0);
	free(big);
	n = read_whole(entry_path(dir, "dead", id[1], ".resp"), buf,
	    sizeof(buf));
	snprintf(want, sizeof(want), "status: 404\nlength: %d\nkept: %d\n\n",
	    SPOOL_MAX_RESPONSE + 100, SPOOL_MAX_RESPONSE);
	assert_int_equal(n, strlen(want) + SPOOL_MAX_RESPONSE);
	assert_memory_equal(buf, want, strlen(want));
	take(sp, 2, id[2]);
	expect_empty(sp);
	spool_counters(sp, &c);
	assert_int_equal(c.dead, 2);
	spool_close(sp);
	assert_int_equal(count_files(dir, "dead"), 4);
	assert_int_equal(count_files(dir, "tmp"), 0);
	/* After a drain, numbering continues past the dead letters (the
	   delivered id[2] left no trace; the random part differs). */
	sp = open_ok(dir, BIG, 0);
	put_ok(sp, 3, want);
	assert_true(seq_of(want) > seq_of(id[1]));
	assert_string_not_equal(want, id[2]);
	spool_close(sp);
}

static void
test_setaside(void **state)
{
	char id[2][SPOOL_ID_SIZE];
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 0);

	(void)state;
	put_ok(sp, 0, id[0]);
	put_ok(sp, 1, id[1]);
	assert_int_equal(spool_setaside(sp, id[0], "route no longer "
	    "configured"), 0);
	assert_int_equal(spool_setaside(sp, id[0], "again"), -1);
	assert_int_equal(spool_ack(sp, "not-an-id"), -1);
	assert_int_equal(access(entry_path(dir, "corrupt", id[0], ".req"),
	    F_OK), 0);
	take(sp, 1, id[1]);
	expect_empty(sp);
	spool_close(sp);
}

/* Ack out of order (a later entry first) keeps the rest in order. */
static void
test_ack_middle(void **state)
{
	char id[4][SPOOL_ID_SIZE];
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 0);
	int i;

	(void)state;
	for (i = 0; i < 4; i++)
		put_ok(sp, i, id[i]);
	assert_int_equal(spool_ack(sp, id[2]), 0);
	take(sp, 0, id[0]);
	take(sp, 1, id[1]);
	take(sp, 3, id[3]);
	expect_empty(sp);
	spool_close(sp);
}

static void
test_stats_age(void **state)
{
	char id[SPOOL_ID_SIZE];
	const char *dir = new_dir();
	struct spool *sp = open_ok(dir, BIG, 0);
	struct spool_entry_in in;
	struct timespec ts;
	uint64_t age, bytes;
	size_t depth;
	struct gen g;

	(void)state;
	spool_stats(sp, &depth, &bytes, &age);
	assert_int_equal(age, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	in = *gen_entry(&g, 0);
	in.arrival_ms = (int64_t)ts.tv_sec * 1000 - 5000;
	assert_int_equal(spool_put(sp, &in, id), 0);
	put_ok(sp, 1, id);
	spool_stats(sp, &depth, &bytes, &age);
	assert_int_equal(depth, 2);
	assert_true(age >= 5 && age < 60);
	spool_close(sp);
	/* The arrival time survives reopen. */
	sp = open_ok(dir, BIG, 0);
	spool_stats(sp, &depth, NULL, &age);
	assert_true(age >= 5 && age < 60);
	take(sp, 0, NULL);
	spool_stats(sp, &depth, NULL, &age);
	assert_true(age < 5);
	spool_close(sp);
}

/* ---- crash test ------------------------------------------------------------ */

#define CRASH_ROUNDS 25

/*
 * The writer: queues entries numbered from `base` as fast as it can and
 * reports each id on `fd` once spool_put() has returned 0.
 */
static void
crash_child(const char *dir, int base, int fd)
{
	char id[SPOOL_ID_SIZE], msg[64];
	struct spool *sp;
	struct gen g;
	int i, n;

	sp = spool_open(dir, BIG, 0, err, sizeof(err));
	if (sp == NULL)
		_exit(2);
	for (i = base;; i++) {
		if (spool_put(sp, gen_entry(&g, i), id) != 0)
			_exit(3);
		n = snprintf(msg, sizeof(msg), "%s %d\n", id, i);
		if (write(fd, msg, (size_t)n) != n)
			_exit(4);
	}
}

static char crash_ids[200000][SPOOL_ID_SIZE];
static int crash_nums[200000];
static int crash_n;

/* Reads reports from fd into crash_ids/crash_nums: once, or until EOF. */
static void
crash_collect(int fd, char *buf, size_t size, size_t *have, int once)
{
	char *line, *next;
	ssize_t r;

	do {
		r = read(fd, buf + *have, size - 1 - *have);
		if (r <= 0)
			break;
		*have += (size_t)r;
		buf[*have] = '\0';
		while ((line = strchr(buf, '\n')) != NULL) {
			*line = '\0';
			assert_true(crash_n < 200000);
			assert_int_equal(sscanf(buf, "%37s %d",
			    crash_ids[crash_n], &crash_nums[crash_n]), 2);
			crash_n++;
			next = line + 1;
			*have -= (size_t)(next - buf);
			memmove(buf, next, *have + 1);
		}
	} while (!once);
}

static void
test_crash(void **state)
{
	const char *dir = new_dir();
	char buf[64 * 1024];
	int fds[2], status, round, base = 0, got, i, extra = 0;
	struct spool_counters c;
	struct spool_entry e;
	struct spool *sp;
	size_t have;
	pid_t pid;

	(void)state;
	srand((unsigned)getpid());
	spool_close(open_ok(dir, BIG, 0));
	for (round = 0; round < CRASH_ROUNDS; round++) {
		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(dir, base, fds[1]);
		}
		close(fds[1]);
		/* Once the writer is in its loop, kill it at a random moment
		   (a put takes a few ms, so this lands in every step). */
		have = 0;
		crash_collect(fds[0], buf, sizeof(buf), &have, 1);
		usleep((useconds_t)(rand() % 30000));
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		/* The rest of what the writer reported as durably queued. */
		crash_collect(fds[0], buf, sizeof(buf), &have, 0);
		close(fds[0]);
		base = (crash_n > 0 ? crash_nums[crash_n - 1] : 0) + 1000;
		/* Reopen between kills: recovery must leave a clean spool. */
		sp = open_ok(dir, BIG, 0);
		spool_counters(sp, &c);
		assert_int_equal(c.corrupt, 0);
		spool_close(sp);
	}
	/* Every reported entry is there, intact, in order; only entries
	   whose report the kill cut off may be extra (one per round). */
	sp = open_ok(dir, BIG, 0);
	spool_counters(sp, &c);
	assert_int_equal(c.corrupt, 0);
	i = 0;
	for (;;) {
		memset(&e, 0, sizeof(e));
		got = spool_peek_oldest(sp, &e);
		if (got == SPOOL_EMPTY)
			break;
		assert_int_equal(got, 0);
		if (i < crash_n && strcmp(e.id, crash_ids[i]) == 0) {
			check_entry(&e, crash_nums[i]);
			i++;
		} else {
			/* Unreported: still an intact entry in order. */
			assert_true(i == crash_n || strcmp(e.id,
			    crash_ids[i]) < 0);
			check_entry(&e, atoi(strchr(e.path, '=') + 1));
			extra++;
		}
		assert_int_equal(spool_ack(sp, e.id), 0);
		spool_entry_free(&e);
	}
	assert_int_equal(i, crash_n);
	assert_true(extra <= CRASH_ROUNDS);
	spool_counters(sp, &c);
	assert_int_equal(c.corrupt, 0);
	spool_close(sp);
	print_message("crash test: %d kills, %d entries reported and "
	    "recovered, %d completed but unreported\n", CRASH_ROUNDS, crash_n,
	    extra);
	assert_true(crash_n >= CRASH_ROUNDS);
}

/* ---- main ---------------------------------------------------------------- */

static int
setup(void **state)
{
	const char *t = getenv("TMPDIR");

	(void)state;
	snprintf(root, sizeof(root), "%s/test_spool.XXXXXX",
	    t != NULL && *t != '\0' ? t : "/tmp");
	if (mkdtemp(root) == NULL)
		return -1;
	/* Recovery logs one warning per file set aside: thousands here. */
	log_init(getenv("SPOOL_TEST_VERBOSE") ? LOG_LEVEL_DEBUG :
	    LOG_LEVEL_ERROR, "test_spool");
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	rm_rf(root);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_1000),
		cmocka_unit_test(test_reopen),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_bad_open_args),
		cmocka_unit_test(test_cap_bytes),
		cmocka_unit_test(test_cap_entries),
		cmocka_unit_test(test_field_limits),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_truncated_at_open),
		cmocka_unit_test(test_truncated_at_read),
		cmocka_unit_test(test_flipped_byte),
		cmocka_unit_test(test_wrong_magic_version),
		cmocka_unit_test(test_seq_exhausted),
		cmocka_unit_test(test_leftovers),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_vanished),
		cmocka_unit_test(test_dead_letter),
		cmocka_unit_test(test_setaside),
		cmocka_unit_test(test_ack_middle),
		cmocka_unit_test(test_stats_age),
		cmocka_unit_test(test_crash),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
