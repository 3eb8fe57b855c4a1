/*
 * libFuzzer target: an arbitrary file in a spool directory, then
 * spool_open() (recovery) and spool_peek_oldest().  Besides memory safety
 * it checks the promise of the module: an entry is returned only when the
 * file is intact, i.e. it starts with the magic, its SHA-256 matches, its
 * id is its file name, and each returned field is the bytes at its place
 * in the file.  Whatever is returned can be queued again by spool_put().
 *
 * Input: one mode byte, then the file.  Mode bit 0: replace the file's
 * last 32 bytes with the SHA-256 of the rest, so that the fuzzer reaches
 * the checks behind the digest.  Mode bit 1: name the file after the id
 * it carries at offset 48 (when that looks like an id), so that a
 * mutated file can still match its name.
 */
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "log.h"
#include "spool.h"

#define HEAD_LEN   48
#define DIGEST_LEN 32
#define ID_LEN     (SPOOL_ID_SIZE - 1)
#define DEFAULT_ID "00000000000000000001-0123456789abcdef"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[512];

static void
empty_dir(const char *sub)
{
	char p[1024];
	struct dirent *de;
	DIR *d;

	snprintf(p, sizeof(p), "%s%s%s", dir, *sub ? "/" : "", sub);
	if ((d = opendir(p)) == NULL)
		abort();
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (*sub == '\0' && (strcmp(de->d_name, "tmp") == 0 ||
		    strcmp(de->d_name, "dead") == 0 ||
		    strcmp(de->d_name, "corrupt") == 0))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == -1)
			abort();
	}
	closedir(d);
}

/* Removes the directory when libFuzzer exits normally. */
static void
cleanup(void)
{
	char p[1024];

	empty_dir("");
	empty_dir("corrupt");
	empty_dir("dead");
	empty_dir("tmp");
	snprintf(p, sizeof(p), "%s/corrupt", dir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/dead", dir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/tmp", dir);
	rmdir(p);
	rmdir(dir);
}

static void
init(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" :
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
	struct spool *sp;
	char err[256];

	log_init(LOG_LEVEL_ERROR, "fuzz_spool");
	snprintf(dir, sizeof(dir), "%s/fuzz_spool.%ld", base, (long)getpid());
	if ((sp = spool_open(dir, 1ULL << 40, 0, err, sizeof(err))) == NULL)
		abort();
	spool_close(sp);
	atexit(cleanup);
}

/* Whether p[0..ID_LEN) is "<20 digits>-<16 lower-case hex>". */
static int
looks_like_id(const uint8_t *p)
{
	int i;

	for (i = 0; i < ID_LEN; i++)
		if (i == 20 ? p[i] != '-' : i < 20 ? !(p[i] >= '0' &&
		    p[i] <= '9') : !((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

/* The field f[0..len) sits at file[*off] and is followed by a NUL. */
static void
check_field(const uint8_t *file, size_t size, size_t *off, const void *f,
    size_t len)
{
	if (len > size - *off || memcmp(file + *off, f, len) != 0 ||
	    ((const char *)f)[len] != '\0')
		abort();
	*off += len;
}

static void
check_entry(const struct spool_entry *e, const uint8_t *file, size_t size,
    const char *id)
{
	unsigned char md[DIGEST_LEN];
	size_t off = HEAD_LEN;

	if (size < HEAD_LEN + ID_LEN + DIGEST_LEN ||
	    memcmp(file, "TGSPOOL\n", 8) != 0 || e->file_size != size)
		abort();
	SHA256(file, size - DIGEST_LEN, md);
	if (memcmp(md, file + size - DIGEST_LEN, DIGEST_LEN) != 0)
		abort();
	if (strcmp(e->id, id) != 0 || memcmp(file + off, id, ID_LEN) != 0)
		abort();
	off += ID_LEN;
	check_field(file, size, &off, e->route, e->route_len);
	check_field(file, size, &off, e->method, e->method_len);
	check_field(file, size, &off, e->path, e->path_len);
	check_field(file, size, &off, e->headers, e->headers_len);
	check_field(file, size, &off, e->body, e->body_len);
	if (off + DIGEST_LEN != size)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	char id[SPOOL_ID_SIZE], newid[SPOOL_ID_SIZE], path[1024], err[256];
	struct spool_entry_in in;
	struct spool_entry e;
	struct spool *sp;
	uint8_t *file;
	size_t len;
	int mode, fd, rc;

	if (!ready) {
		init();
		ready = 1;
	}
	if (size < 1)
		return 0;
	mode = data[0];
	len = size - 1;
	if ((file = malloc(len + 1)) == NULL)
		abort();
	memcpy(file, data + 1, len);
	if ((mode & 1) && len >= DIGEST_LEN)
		SHA256(file, len - DIGEST_LEN, file + len - DIGEST_LEN);
	snprintf(id, sizeof(id), "%s", DEFAULT_ID);
	if ((mode & 2) && len >= HEAD_LEN + ID_LEN &&
	    looks_like_id(file + HEAD_LEN)) {
		memcpy(id, file + HEAD_LEN, ID_LEN);
		id[ID_LEN] = '\0';
	}
	snprintf(path, sizeof(path), "%s/%s.req", dir, id);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1 || (len > 0 && write(fd, file, len) != (ssize_t)len))
		abort();
	close(fd);

	if ((sp = spool_open(dir, 1ULL << 40, 0, err, sizeof(err))) == NULL)
		abort();
	memset(&e, 0, sizeof(e));
	rc = spool_peek_oldest(sp, &e);
	if (rc == 0) {
		check_entry(&e, file, len, id);
		/* Anything the spool returns, it can queue again. */
		memset(&in, 0, sizeof(in));
		in.route = e.route;
		in.method = e.method;
		in.method_len = e.method_len;
		in.path = e.path;
		in.path_len = e.path_len;
		in.headers = e.headers;
		in.headers_len = e.headers_len;
		in.body = e.body;
		in.body_len = e.body_len;
		in.arrival_ms = e.arrival_ms;
		if (spool_put(sp, &in, newid) != 0)
			abort();
		if (spool_ack(sp, e.id) != 0)
			abort();
		spool_entry_free(&e);
	} else if (rc != SPOOL_EMPTY) {
		abort();
	}
	spool_close(sp);
	empty_dir("");
	empty_dir("corrupt");
	empty_dir("tmp");
	free(file);
	return 0;
}
