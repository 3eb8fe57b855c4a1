/*
 * spool: the durable queue behind store-and-forward.
 *
 * Layout of a spool directory (docs/spool.md has the details):
 *
 *   <dir>/<id>.req        queued entries; ids sort in arrival order
 *   <dir>/tmp/            entries being written (leftovers: crashed writes)
 *   <dir>/dead/           refused entries, with <id>.resp beside each
 *   <dir>/corrupt/        files that failed their checks
 *
 * An entry file is a 48-byte header, six variable fields and a SHA-256 of
 * everything before it.  The header and every field are checked through
 * one bounded cursor before the digest, so that a damaged length can never
 * make a read run past the bytes loaded.
 */
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "log.h"
#include "spool.h"

#define SPOOL_MAGIC       "TGSPOOL\n"
#define SPOOL_MAGIC_LEN   8
#define SPOOL_VERSION     1
#define SPOOL_HEAD_LEN    48
#define SPOOL_DIGEST_LEN  32            /* SHA-256 */
#define SPOOL_ID_LEN      (SPOOL_ID_SIZE - 1)
#define SPOOL_SEQ_DIGITS  20            /* UINT64_MAX has 20 digits */
#define SPOOL_SUFFIX      ".req"
#define SPOOL_RESP_SUFFIX ".resp"
#define SPOOL_NAME_SIZE   (SPOOL_ID_LEN + 5 + 1)  /* id, suffix, NUL */
/* The largest file a valid entry can make; larger files are not read. */
#define SPOOL_MAX_FILE    ((uint64_t)SPOOL_HEAD_LEN + SPOOL_ID_LEN + \
    SPOOL_MAX_ROUTE + SPOOL_MAX_METHOD + SPOOL_MAX_PATH + \
    SPOOL_MAX_HEADERS + SPOOL_MAX_BODY + SPOOL_DIGEST_LEN)
#define SPOOL_DIR_MODE    0700
#define SPOOL_FILE_MODE   0600

/* One queued entry in memory: enough to name its file and keep stats. */
struct spool_idx {
	uint64_t seq;
	uint64_t rnd;
	int64_t arrival_ms;
	uint64_t size;
};

struct spool {
	char *path;
	int dfd;                  /* the spool directory, locked */
	int tmpfd;
	int deadfd;
	int corruptfd;
	uint64_t max_bytes;
	size_t max_entries;
	uint64_t rnd;             /* random part of this instance's ids */
	uint64_t next_seq;
	struct spool_idx *idx;    /* idx[head..tail) sorted by (seq, rnd) */
	size_t head;
	size_t tail;
	size_t cap;
	uint64_t bytes;
	int full_logged;          /* a "full" warning was logged since the
				     last successful put */
	EVP_MD *sha256;
	EVP_MD_CTX *md;
	struct spool_counters ctr;
};

/* The fields of a decoded entry, as slices of the loaded file. */
struct spool_view {
	uint64_t seq;
	int64_t arrival_ms;
	const unsigned char *id, *route, *method, *path, *headers, *body;
	size_t id_len, route_len, method_len, path_len, headers_len, body_len;
};

/* Outcomes of spool_read_file(). */
#define SPOOL_READ_OK    0
#define SPOOL_READ_BAD   1   /* not an acceptable file: set it aside */
#define SPOOL_READ_GONE  2   /* vanished */
#define SPOOL_READ_ERR   (-1)

/* ---- bounded cursor ----------------------------------------------- */

/* Reads past the end fail and leave the cursor where it was. */
struct spool_cur {
	const unsigned char *p;
	size_t len;
	size_t pos;
};

static int
spool_cur_bytes(struct spool_cur *c, size_t n, const unsigned char **out)
{
	if (n > c->len - c->pos)
		return -1;
	*out = c->p + c->pos;
	c->pos += n;
	return 0;
}

static int
spool_cur_u16(struct spool_cur *c, size_t *v)
{
	const unsigned char *b;

	if (spool_cur_bytes(c, 2, &b) == -1)
		return -1;
	*v = (size_t)b[0] << 8 | b[1];
	return 0;
}

static int
spool_cur_u32(struct spool_cur *c, size_t *v)
{
	const unsigned char *b;

	if (spool_cur_bytes(c, 4, &b) == -1)
		return -1;
	*v = (size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | b[3];
	return 0;
}

static int
spool_cur_u64(struct spool_cur *c, uint64_t *v)
{
	const unsigned char *b;
	int i;

	if (spool_cur_bytes(c, 8, &b) == -1)
		return -1;
	*v = 0;
	for (i = 0; i < 8; i++)
		*v = *v << 8 | b[i];
	return 0;
}

static void
spool_put_be(unsigned char *p, uint64_t v, int n)
{
	while (n-- > 0) {
		p[n] = (unsigned char)v;
		v >>= 8;
	}
}

/* ---- field checks, shared by spool_put() and every read ------------ */

/* tchar (RFC 9110 §5.6.2). */
static int
spool_is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
spool_is_visible(const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] <= 0x20 || p[i] >= 0x7f)
			return 0;
	return 1;
}

/*
 * Header lines as RFC 9110 §5 allows them once rewritten: a token, ':',
 * then field-value bytes (no CTL but HTAB; RFC 9110 §5.5), then CRLF.  No
 * empty line: replayed, it would end the head early and turn the rest
 * into a second request.
 */
static int
spool_headers_valid(const unsigned char *p, size_t len)
{
	size_t i = 0, start;

	while (i < len) {
		start = i;
		while (i < len && spool_is_tchar(p[i]))
			i++;
		if (i == start || i == len || p[i] != ':')
			return 0;
		i++;
		while (i < len && (p[i] == '\t' || (p[i] >= 0x20 &&
		    p[i] != 0x7f)))
			i++;
		if (len - i < 2 || p[i] != '\r' || p[i + 1] != '\n')
			return 0;
		i += 2;
	}
	return 1;
}

/* Returns NULL when the fields may be queued and replayed, else why not. */
static const char *
spool_fields_invalid(const unsigned char *route, size_t route_len,
    const unsigned char *method, size_t method_len,
    const unsigned char *path, size_t path_len,
    const unsigned char *headers, size_t headers_len, size_t body_len)
{
	size_t i;

	if (route_len < 1 || route_len > SPOOL_MAX_ROUTE ||
	    !spool_is_visible(route, route_len))
		return "bad route name";
	if (method_len < 1 || method_len > SPOOL_MAX_METHOD)
		return "bad method";
	for (i = 0; i < method_len; i++)
		if (!spool_is_tchar(method[i]))
			return "bad method";
	/* The http1 parser accepts visible ASCII in a request-target. */
	if (path_len < 1 || path_len > SPOOL_MAX_PATH || path[0] != '/' ||
	    !spool_is_visible(path, path_len))
		return "bad path";
	if (headers_len > SPOOL_MAX_HEADERS ||
	    !spool_headers_valid(headers, headers_len))
		return "bad header lines";
	if (body_len > SPOOL_MAX_BODY)
		return "body too large";
	return NULL;
}

/* ---- ids and names -------------------------------------------------- */

static void
spool_format_id(char id[SPOOL_ID_SIZE], uint64_t seq, uint64_t rnd)
{
	snprintf(id, SPOOL_ID_SIZE, "%020" PRIu64 "-%016" PRIx64, seq, rnd);
}

static void
spool_format_name(char name[SPOOL_NAME_SIZE], uint64_t seq, uint64_t rnd,
    const char *suffix)
{
	char id[SPOOL_ID_SIZE];

	spool_format_id(id, seq, rnd);
	snprintf(name, SPOOL_NAME_SIZE, "%s%s", id, suffix);
}

/*
 * Parses exactly SPOOL_ID_LEN bytes "<20 digits>-<16 lower-case hex>";
 * the canonical spelling only, so that one entry has one name.
 */
static int
spool_parse_id(const char *s, size_t len, uint64_t *seq, uint64_t *rnd)
{
	uint64_t v = 0;
	size_t i;
	int d;

	if (len != SPOOL_ID_LEN || s[SPOOL_SEQ_DIGITS] != '-')
		return -1;
	for (i = 0; i < SPOOL_SEQ_DIGITS; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = s[i] - '0';
		if (v > (UINT64_MAX - (uint64_t)d) / 10)
			return -1;
		v = v * 10 + (uint64_t)d;
	}
	*seq = v;
	v = 0;
	for (i = SPOOL_SEQ_DIGITS + 1; i < SPOOL_ID_LEN; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			d = s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			d = s[i] - 'a' + 10;
		else
			return -1;
		v = v << 4 | (uint64_t)d;
	}
	*rnd = v;
	return 0;
}

/* Whether `name` is "<id><suffix>"; fills seq and rnd. */
static int
spool_parse_name(const char *name, const char *suffix, uint64_t *seq,
    uint64_t *rnd)
{
	size_t len = strlen(name), sl = strlen(suffix);

	if (len != SPOOL_ID_LEN + sl || strcmp(name + SPOOL_ID_LEN, suffix) != 0)
		return 0;
	return spool_parse_id(name, SPOOL_ID_LEN, seq, rnd) == 0;
}

/* ---- decoding -------------------------------------------------------- */

/*
 * Checks buf[len] as an entry file called `id`.  Structure first, digest
 * last: every length is bounded before use, and the fuzz target can reach
 * each structural check without forging a digest.  Returns NULL and fills
 * *v, or the reason the file is refused.
 */
static const char *
spool_decode(EVP_MD_CTX *md, const EVP_MD *sha256,
    const unsigned char *buf, size_t len, const char *id,
    struct spool_view *v)
{
	struct spool_cur c = { buf, len, 0 };
	unsigned char digest[SPOOL_DIGEST_LEN];
	const unsigned char *magic, *want;
	size_t version, reserved;
	uint64_t arrival, seq, rnd;
	unsigned int dlen = 0;
	const char *why;

	memset(v, 0, sizeof(*v));
	if (len < SPOOL_HEAD_LEN + SPOOL_DIGEST_LEN)
		return "truncated header";
	if (len > SPOOL_MAX_FILE)
		return "too large";
	if (spool_cur_bytes(&c, SPOOL_MAGIC_LEN, &magic) == -1 ||
	    memcmp(magic, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0)
		return "bad magic";
	if (spool_cur_u16(&c, &version) == -1 || version != SPOOL_VERSION)
		return "unknown version";
	if (spool_cur_u16(&c, &v->id_len) == -1 ||
	    spool_cur_u16(&c, &v->route_len) == -1 ||
	    spool_cur_u16(&c, &v->method_len) == -1 ||
	    spool_cur_u32(&c, &v->path_len) == -1 ||
	    spool_cur_u32(&c, &v->headers_len) == -1 ||
	    spool_cur_u32(&c, &v->body_len) == -1 ||
	    spool_cur_u32(&c, &reserved) == -1 ||
	    spool_cur_u64(&c, &v->seq) == -1 ||
	    spool_cur_u64(&c, &arrival) == -1)
		return "truncated header";
	v->arrival_ms = (int64_t)arrival;
	if (reserved != 0)
		return "reserved field set";
	if (v->id_len != SPOOL_ID_LEN || v->route_len > SPOOL_MAX_ROUTE ||
	    v->method_len > SPOOL_MAX_METHOD || v->path_len > SPOOL_MAX_PATH ||
	    v->headers_len > SPOOL_MAX_HEADERS || v->body_len > SPOOL_MAX_BODY)
		return "field length out of bounds";
	if (spool_cur_bytes(&c, v->id_len, &v->id) == -1 ||
	    spool_cur_bytes(&c, v->route_len, &v->route) == -1 ||
	    spool_cur_bytes(&c, v->method_len, &v->method) == -1 ||
	    spool_cur_bytes(&c, v->path_len, &v->path) == -1 ||
	    spool_cur_bytes(&c, v->headers_len, &v->headers) == -1 ||
	    spool_cur_bytes(&c, v->body_len, &v->body) == -1 ||
	    spool_cur_bytes(&c, SPOOL_DIGEST_LEN, &want) == -1)
		return "truncated";
	if (c.pos != len)
		return "trailing bytes";
	/* A file copied or renamed onto another name is not that entry. */
	if (id != NULL && memcmp(v->id, id, SPOOL_ID_LEN) != 0)
		return "id does not match the file name";
	if (spool_parse_id((const char *)v->id, v->id_len, &seq, &rnd) == -1 ||
	    seq != v->seq)
		return "bad id";
	why = spool_fields_invalid(v->route, v->route_len, v->method,
	    v->method_len, v->path, v->path_len, v->headers, v->headers_len,
	    v->body_len);
	if (why != NULL)
		return why;
	if (EVP_DigestInit_ex(md, sha256, NULL) != 1 ||
	    EVP_DigestUpdate(md, buf, len - SPOOL_DIGEST_LEN) != 1 ||
	    EVP_DigestFinal_ex(md, digest, &dlen) != 1 ||
	    dlen != SPOOL_DIGEST_LEN)
		return "cannot compute SHA-256";
	if (CRYPTO_memcmp(digest, want, SPOOL_DIGEST_LEN) != 0)
		return "checksum mismatch";
	return NULL;
}

/* ---- file helpers ---------------------------------------------------- */

static int64_t
spool_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
spool_write_all(int fd, struct iovec *iov, int iovcnt)
{
	ssize_t n;

	while (iovcnt > 0) {
		n = writev(fd, iov, iovcnt);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/*
 * Loads the regular file dfd/name into a malloc'd *buf (size *len).
 * Never opens anything but a regular file, and never reads more than
 * SPOOL_MAX_FILE bytes.
 */
static int
spool_read_file(int dfd, const char *name, unsigned char **buf, size_t *len,
    const char **why)
{
	struct stat st;
	unsigned char *b = NULL;
	size_t got = 0;
	ssize_t n;
	int fd, rc = SPOOL_READ_ERR;

	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO planted in the directory must not hang us. */
	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd == -1) {
		if (errno == ENOENT)
			return SPOOL_READ_GONE;
		if (errno == ELOOP) {
			*why = "symbolic link";
			return SPOOL_READ_BAD;
		}
		return SPOOL_READ_ERR;
	}
	if (fstat(fd, &st) == -1)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		rc = SPOOL_READ_BAD;
		goto out;
	}
	if ((uint64_t)st.st_size > SPOOL_MAX_FILE) {
		*why = "too large";
		rc = SPOOL_READ_BAD;
		goto out;
	}
	if ((b = malloc((size_t)st.st_size + 1)) == NULL)
		goto out;
	while (got < (size_t)st.st_size) {
		n = read(fd, b + got, (size_t)st.st_size - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EIO) {
			/* A bad block: retrying would block the queue. */
			*why = "I/O error while reading";
			rc = SPOOL_READ_BAD;
			goto out;
		}
		if (n == -1)
			goto out;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*buf = b;
	*len = got;
	b = NULL;
	rc = SPOOL_READ_OK;
out:
	free(b);
	close(fd);
	return rc;
}

/*
 * Creates dfd/name as a directory unless it exists; *created tells the
 * caller to sync dfd.  Returns an O_DIRECTORY descriptor, or -1.
 */
static int
spool_subdir(int dfd, const char *name, int *created)
{
	if (mkdirat(dfd, name, SPOOL_DIR_MODE) == 0)
		*created = 1;
	else if (errno != EEXIST)
		return -1;
	return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
	    O_NOFOLLOW);
}

/* ---- the index ------------------------------------------------------ */

static int
spool_idx_cmp(const void *a, const void *b)
{
	const struct spool_idx *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	if (x->rnd != y->rnd)
		return x->rnd < y->rnd ? -1 : 1;
	return 0;
}

static int
spool_idx_append(struct spool *sp, const struct spool_idx *x)
{
	struct spool_idx *n;
	size_t cap;

	if (sp->tail == sp->cap && sp->head > 0) {
		memmove(sp->idx, sp->idx + sp->head,
		    (sp->tail - sp->head) * sizeof(*sp->idx));
		sp->tail -= sp->head;
		sp->head = 0;
	}
	if (sp->tail == sp->cap) {
		cap = sp->cap ? sp->cap * 2 : 64;
		if ((n = reallocarray(sp->idx, cap, sizeof(*n))) == NULL)
			return -1;
		sp->idx = n;
		sp->cap = cap;
	}
	sp->idx[sp->tail++] = *x;
	sp->bytes += x->size;
	return 0;
}

static void
spool_idx_remove(struct spool *sp, size_t i)
{
	sp->bytes -= sp->idx[i].size;
	if (i == sp->head)
		sp->head++;
	else {
		memmove(sp->idx + i, sp->idx + i + 1,
		    (sp->tail - i - 1) * sizeof(*sp->idx));
		sp->tail--;
	}
	if (sp->head == sp->tail)
		sp->head = sp->tail = 0;
}

/* The position of `id` in the index, or -1 (logged). */
static ssize_t
spool_idx_find(const struct spool *sp, const char *id)
{
	struct spool_idx key;
	size_t lo = sp->head, hi = sp->tail, mid;
	int c;

	if (id == NULL ||
	    spool_parse_id(id, strnlen(id, SPOOL_ID_SIZE), &key.seq,
	    &key.rnd) == -1) {
		log_warnx("spool %s: malformed id", sp->path);
		return -1;
	}
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = spool_idx_cmp(&key, &sp->idx[mid]);
		if (c == 0)
			return (ssize_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	log_warnx("spool %s: %s is not queued", sp->path, id);
	return -1;
}

/* ---- moves ------------------------------------------------------------ */

/*
 * Moves dfd/name to corrupt/ and logs why.  `sync`: fsync both
 * directories now (at run time); spool_open() syncs once at the end.
 */
static int
spool_move_corrupt(struct spool *sp, const char *name, const char *why,
    int sync)
{
	char esc[128];

	log_escape(esc, sizeof(esc), name, strlen(name));
	if (renameat(sp->dfd, name, sp->corruptfd, name) == -1) {
		log_warn("spool %s: cannot set \"%s\" aside (%s)", sp->path,
		    esc, why);
		return -1;
	}
	sp->ctr.corrupt++;
	log_warnx("spool %s: \"%s\" set aside in corrupt/: %s", sp->path, esc,
	    why);
	if (sync && (fsync(sp->corruptfd) == -1 || fsync(sp->dfd) == -1)) {
		log_warn("spool %s: fsync after setting \"%s\" aside",
		    sp->path, esc);
		return -1;
	}
	return 0;
}

/* ---- open and recovery ----------------------------------------------- */

static void
spool_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
spool_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	errno = e;
}

/* A DIR * over a duplicate of fd (closedir() then leaves fd open). */
static DIR *
spool_opendir(int fd)
{
	DIR *d;
	int dup_fd;

	if ((dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1)
		return NULL;
	if ((d = fdopendir(dup_fd)) == NULL) {
		close(dup_fd);
		return NULL;
	}
	rewinddir(d);
	return d;
}

/* Removes every file in tmp/: each is a write that never completed. */
static int
spool_clean_tmp(struct spool *sp)
{
	struct dirent *de;
	char esc[128];
	DIR *d;

	if ((d = spool_opendir(sp->tmpfd)) == NULL)
		return -1;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		log_escape(esc, sizeof(esc), de->d_name, strlen(de->d_name));
		if (unlinkat(sp->tmpfd, de->d_name, 0) == -1) {
			log_warn("spool %s: cannot remove tmp/\"%s\"", sp->path,
			    esc);
			continue;
		}
		sp->ctr.tmp_removed++;
		log_warnx("spool %s: removed tmp/\"%s\", an interrupted write",
		    sp->path, esc);
	}
	closedir(d);
	return errno == 0 ? 0 : -1;
}

/* Raises *max to the highest sequence number named in directory fd. */
static int
spool_scan_seq(int fd, uint64_t *max)
{
	struct dirent *de;
	uint64_t seq, rnd;
	DIR *d;

	if ((d = spool_opendir(fd)) == NULL)
		return -1;
	while ((errno = 0, de = readdir(d)) != NULL)
		if (strlen(de->d_name) >= SPOOL_ID_LEN &&
		    spool_parse_id(de->d_name, SPOOL_ID_LEN, &seq, &rnd) == 0 &&
		    seq > *max)
			*max = seq;
	closedir(d);
	return errno == 0 ? 0 : -1;
}

/*
 * Indexes one name found in the spool directory: a valid entry is added,
 * anything else but our subdirectories is set aside.  Returns 1 when
 * something was set aside, 0, or -1 on an error that stops the open.
 */
static int
spool_scan_one(struct spool *sp, const char *name, uint64_t *max_seq)
{
	struct spool_view v;
	struct spool_idx x;
	struct stat st;
	unsigned char *buf = NULL;
	const char *why = NULL;
	size_t len = 0;
	int rc = -1, r;

	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	if (fstatat(sp->dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode)) {
		if (strcmp(name, "tmp") != 0 && strcmp(name, "dead") != 0 &&
		    strcmp(name, "corrupt") != 0)
			log_warnx("spool %s: ignoring a directory that is not "
			    "the spool's", sp->path);
		return 0;
	}
	if (!spool_parse_name(name, SPOOL_SUFFIX, &x.seq, &x.rnd))
		return spool_move_corrupt(sp, name, "not an entry name", 0) ==
		    0 ? 1 : -1;
	r = spool_read_file(sp->dfd, name, &buf, &len, &why);
	if (r == SPOOL_READ_GONE)
		return 0;
	if (r == SPOOL_READ_ERR)
		goto out;
	if (r == SPOOL_READ_OK)
		why = spool_decode(sp->md, sp->sha256, buf, len, name, &v);
	if (why != NULL) {
		rc = spool_move_corrupt(sp, name, why, 0) == 0 ? 1 : -1;
		goto out;
	}
	if (sp->tail - sp->head >= SPOOL_MAX_ENTRIES) {
		errno = EOVERFLOW;
		goto out;
	}
	/* Only valid entries count: a damaged name must not push the
	   numbering to its end. */
	if (x.seq > *max_seq)
		*max_seq = x.seq;
	x.arrival_ms = v.arrival_ms;
	x.size = len;
	if (spool_idx_append(sp, &x) == -1)
		goto out;
	rc = 0;
out:
	if (buf != NULL)
		OPENSSL_clear_free(buf, len);
	return rc;
}

static int
spool_scan(struct spool *sp, uint64_t *max_seq)
{
	struct dirent *de;
	int moved = 0, r, saved;
	DIR *d;

	if ((d = spool_opendir(sp->dfd)) == NULL)
		return -1;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if ((r = spool_scan_one(sp, de->d_name, max_seq)) == -1) {
			if (errno == 0)
				errno = EIO;
			break;
		}
		moved |= r;
	}
	saved = errno;
	closedir(d);
	if (saved != 0) {
		errno = saved;
		return -1;
	}
	if (sp->tail > sp->head)
		qsort(sp->idx + sp->head, sp->tail - sp->head,
		    sizeof(*sp->idx), spool_idx_cmp);
	/* One sync for every file set aside during the scan. */
	if (moved && (fsync(sp->corruptfd) == -1 || fsync(sp->dfd) == -1))
		return -1;
	return 0;
}

struct spool *
spool_open(const char *dir, uint64_t max_bytes, size_t max_entries,
    char *err, size_t errlen)
{
	struct spool *sp = NULL;
	uint64_t max_seq = 0, age;
	int created = 0, pfd;
	char *slash, *parent = NULL;
	struct stat st;
	size_t depth;
	ssize_t n;

	if (max_entries == 0)
		max_entries = SPOOL_DEFAULT_MAX_ENTRIES;
	if (dir == NULL || *dir == '\0' || max_bytes == 0 ||
	    max_entries > SPOOL_MAX_ENTRIES) {
		spool_errf(err, errlen, "spool: bad arguments (max_bytes > 0, "
		    "max_entries <= %d)", SPOOL_MAX_ENTRIES);
		return NULL;
	}
	if ((sp = calloc(1, sizeof(*sp))) == NULL) {
		spool_errf(err, errlen, "spool %s: out of memory", dir);
		return NULL;
	}
	sp->dfd = sp->tmpfd = sp->deadfd = sp->corruptfd = -1;
	if ((sp->path = strdup(dir)) == NULL) {
		spool_errf(err, errlen, "spool %s: out of memory", dir);
		goto out;
	}
	sp->max_bytes = max_bytes;
	sp->max_entries = max_entries;
	if ((sp->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL ||
	    (sp->md = EVP_MD_CTX_new()) == NULL) {
		spool_errf(err, errlen, "spool %s: SHA-256 unavailable", dir);
		goto out;
	}
	if (mkdir(dir, SPOOL_DIR_MODE) == 0)
		created = 1;
	else if (errno != EEXIST) {
		spool_errf(err, errlen, "spool %s: mkdir: %s", dir,
		    strerror(errno));
		goto out;
	}
	if (created) {
		/* The new directory's own name must be durable too. */
		if ((parent = strdup(dir)) == NULL) {
			spool_errf(err, errlen, "spool %s: out of memory", dir);
			goto out;
		}
		slash = strrchr(parent, '/');
		if (slash == parent)
			slash[1] = '\0';
		else if (slash != NULL)
			*slash = '\0';
		pfd = open(slash != NULL ? parent : ".",
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd == -1 || fsync(pfd) == -1) {
			spool_errf(err, errlen, "spool %s: fsync parent: %s",
			    dir, strerror(errno));
			if (pfd != -1)
				close(pfd);
			goto out;
		}
		close(pfd);
	}
	if ((sp->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		spool_errf(err, errlen, "spool %s: %s", dir, strerror(errno));
		goto out;
	}
	/* Two writers would hand out the same sequence numbers. */
	if (flock(sp->dfd, LOCK_EX | LOCK_NB) == -1) {
		spool_errf(err, errlen, "spool %s: %s", dir,
		    errno == EWOULDBLOCK ? "in use by another process" :
		    strerror(errno));
		goto out;
	}
	if (fstat(sp->dfd, &st) == 0 && (st.st_mode & 077) != 0)
		log_warnx("spool %s: directory is accessible to other users "
		    "(queued requests may carry credentials)", dir);
	created = 0;
	if ((sp->tmpfd = spool_subdir(sp->dfd, "tmp", &created)) == -1 ||
	    (sp->deadfd = spool_subdir(sp->dfd, "dead", &created)) == -1 ||
	    (sp->corruptfd = spool_subdir(sp->dfd, "corrupt", &created)) ==
	    -1 || (created && fsync(sp->dfd) == -1)) {
		spool_errf(err, errlen, "spool %s: subdirectories: %s", dir,
		    strerror(errno));
		goto out;
	}
	/* Not corrupt/: its names are not known to be ours. */
	if (spool_clean_tmp(sp) == -1 ||
	    spool_scan_seq(sp->deadfd, &max_seq) == -1) {
		spool_errf(err, errlen, "spool %s: scan: %s", dir,
		    strerror(errno));
		goto out;
	}
	if (spool_scan(sp, &max_seq) == -1) {
		spool_errf(err, errlen, "spool %s: scan: %s", dir,
		    errno == EOVERFLOW ? "more entries than the hard limit" :
		    strerror(errno));
		goto out;
	}
	/* At UINT64_MAX spool_put() refuses, but what is queued is still
	   delivered. */
	sp->next_seq = max_seq == UINT64_MAX ? max_seq : max_seq + 1;
	do
		n = getrandom(&sp->rnd, sizeof(sp->rnd), 0);
	while (n == -1 && errno == EINTR);
	if (n != (ssize_t)sizeof(sp->rnd)) {
		spool_errf(err, errlen, "spool %s: getrandom: %s", dir,
		    strerror(errno));
		goto out;
	}
	spool_stats(sp, &depth, NULL, &age);
	log_info("spool %s: %zu entries, %" PRIu64 " bytes, oldest %" PRIu64
	    " s, next sequence %" PRIu64, dir, depth, sp->bytes, age,
	    sp->next_seq);
	free(parent);
	return sp;
out:
	free(parent);
	spool_close(sp);
	return NULL;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->corruptfd != -1)
		close(sp->corruptfd);
	if (sp->deadfd != -1)
		close(sp->deadfd);
	if (sp->tmpfd != -1)
		close(sp->tmpfd);
	if (sp->dfd != -1)
		close(sp->dfd);   /* releases the flock */
	EVP_MD_CTX_free(sp->md);
	EVP_MD_free(sp->sha256);
	free(sp->idx);
	free(sp->path);
	free(sp);
}

/* ---- queueing -------------------------------------------------------- */

/* Logs the first refusal of a run of them, not every 503. */
static int
spool_full(struct spool *sp, const char *what)
{
	sp->ctr.full++;
	if (!sp->full_logged)
		log_warnx("spool %s: full (%s); refusing new entries",
		    sp->path, what);
	sp->full_logged = 1;
	return SPOOL_FULL;
}

/*
 * Writes iov[0..iovcnt) as tmp/name, syncs it, renames it to name in the
 * spool directory and syncs that: once the rename is durable the file is
 * complete, and before it the name does not exist (leftovers in tmp/ are
 * removed by spool_open()).  Returns 0, or -1 with errno set and nothing
 * left behind.
 */
static int
spool_write_entry(struct spool *sp, const char *name, struct iovec *iov,
    int iovcnt)
{
	int fd, rc = -1, saved, in_tmp = 0, in_dir = 0;

	fd = openat(sp->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, SPOOL_FILE_MODE);
	if (fd == -1)
		return -1;
	in_tmp = 1;
	if (spool_write_all(fd, iov, iovcnt) == -1 || fsync(fd) == -1)
		goto out;
	rc = close(fd);
	fd = -1;
	if (rc == -1)
		goto out;
	rc = -1;
	if (renameat(sp->tmpfd, name, sp->dfd, name) == -1)
		goto out;
	in_tmp = 0;
	in_dir = 1;
	/* Not known to be durable otherwise: withdraw it rather than answer
	   202 for an entry that might vanish. */
	if (fsync(sp->dfd) == -1)
		goto out;
	in_dir = 0;
	rc = 0;
out:
	saved = errno;
	if (fd != -1)
		close(fd);
	if (in_tmp)
		unlinkat(sp->tmpfd, name, 0);
	if (in_dir)
		unlinkat(sp->dfd, name, 0);
	errno = saved;
	return rc;
}

int
spool_put(struct spool *sp, const struct spool_entry_in *e,
    char id_out[SPOOL_ID_SIZE])
{
	unsigned char head[SPOOL_HEAD_LEN], digest[SPOOL_DIGEST_LEN];
	char id[SPOOL_ID_SIZE], name[SPOOL_NAME_SIZE];
	struct iovec iov[8];
	struct spool_idx x;
	size_t route_len, i;
	unsigned int dlen = 0;
	const char *why;
	int ok;

	route_len = e->route != NULL ? strnlen(e->route, SPOOL_MAX_ROUTE + 1) :
	    0;
	why = spool_fields_invalid((const unsigned char *)e->route, route_len,
	    (const unsigned char *)e->method, e->method_len,
	    (const unsigned char *)e->path, e->path_len,
	    (const unsigned char *)e->headers, e->headers_len, e->body_len);
	if (why != NULL) {
		log_warnx("spool %s: not queued: %s", sp->path, why);
		return -1;
	}
	x.size = (uint64_t)SPOOL_HEAD_LEN + SPOOL_ID_LEN + route_len +
	    e->method_len + e->path_len + e->headers_len + e->body_len +
	    SPOOL_DIGEST_LEN;
	if (sp->tail - sp->head >= sp->max_entries)
		return spool_full(sp, "max_entries");
	if (x.size > sp->max_bytes || sp->bytes > sp->max_bytes - x.size)
		return spool_full(sp, "max_bytes");
	if (sp->next_seq == UINT64_MAX) {
		log_warnx("spool %s: sequence numbers exhausted", sp->path);
		return -1;
	}
	/* Consumed even on failure: a number is never given out twice. */
	x.seq = sp->next_seq++;
	x.rnd = sp->rnd;
	x.arrival_ms = e->arrival_ms != 0 ? e->arrival_ms : spool_now_ms();
	spool_format_id(id, x.seq, x.rnd);
	spool_format_name(name, x.seq, x.rnd, SPOOL_SUFFIX);

	memcpy(head, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
	spool_put_be(head + 8, SPOOL_VERSION, 2);
	spool_put_be(head + 10, SPOOL_ID_LEN, 2);
	spool_put_be(head + 12, route_len, 2);
	spool_put_be(head + 14, e->method_len, 2);
	spool_put_be(head + 16, e->path_len, 4);
	spool_put_be(head + 20, e->headers_len, 4);
	spool_put_be(head + 24, e->body_len, 4);
	spool_put_be(head + 28, 0, 4);
	spool_put_be(head + 32, x.seq, 8);
	spool_put_be(head + 40, (uint64_t)x.arrival_ms, 8);
	iov[0] = (struct iovec){ head, sizeof(head) };
	iov[1] = (struct iovec){ id, SPOOL_ID_LEN };
	iov[2] = (struct iovec){ (void *)e->route, route_len };
	iov[3] = (struct iovec){ (void *)e->method, e->method_len };
	iov[4] = (struct iovec){ (void *)e->path, e->path_len };
	iov[5] = (struct iovec){ (void *)e->headers, e->headers_len };
	iov[6] = (struct iovec){ (void *)e->body, e->body_len };
	ok = EVP_DigestInit_ex(sp->md, sp->sha256, NULL) == 1;
	for (i = 0; ok && i < 7; i++)
		ok = iov[i].iov_len == 0 || EVP_DigestUpdate(sp->md,
		    iov[i].iov_base, iov[i].iov_len) == 1;
	if (!ok || EVP_DigestFinal_ex(sp->md, digest, &dlen) != 1 ||
	    dlen != SPOOL_DIGEST_LEN) {
		log_warnx("spool %s: SHA-256 failed", sp->path);
		return -1;
	}
	iov[7] = (struct iovec){ digest, sizeof(digest) };

	if (spool_write_entry(sp, name, iov, 8) == -1) {
		if (errno == ENOSPC || errno == EDQUOT)
			return spool_full(sp, "file system full");
		log_warn("spool %s: cannot queue %s", sp->path, id);
		return -1;
	}
	if (spool_idx_append(sp, &x) == -1) {
		/* On disk all the same: the next spool_open() finds it. */
		log_warnx("spool %s: %s queued but not indexed: out of memory",
		    sp->path, id);
		return -1;
	}
	sp->ctr.puts++;
	sp->full_logged = 0;
	memcpy(id_out, id, SPOOL_ID_SIZE);
	log_debug("spool %s: queued %s (%" PRIu64 " bytes)", sp->path, id,
	    x.size);
	return 0;
}

/* ---- delivery ---------------------------------------------------------- */

/*
 * Loads and checks entry x into *out.  Returns SPOOL_READ_OK,
 * SPOOL_READ_BAD with *why, SPOOL_READ_GONE or SPOOL_READ_ERR.
 */
static int
spool_load(struct spool *sp, const struct spool_idx *x,
    struct spool_entry *out, const char **why)
{
	char name[SPOOL_NAME_SIZE];
	struct spool_view v;
	unsigned char *buf = NULL, *b;
	size_t len = 0, blen;
	int rc;

	spool_format_name(name, x->seq, x->rnd, SPOOL_SUFFIX);
	rc = spool_read_file(sp->dfd, name, &buf, &len, why);
	if (rc != SPOOL_READ_OK)
		goto out;
	if ((*why = spool_decode(sp->md, sp->sha256, buf, len, name,
	    &v)) != NULL) {
		rc = SPOOL_READ_BAD;
		goto out;
	}
	/* Each field NUL-terminated: +1 for each of the five. */
	blen = v.route_len + v.method_len + v.path_len + v.headers_len +
	    v.body_len + 5;
	if ((b = calloc(1, blen)) == NULL) {
		rc = SPOOL_READ_ERR;
		goto out;
	}
	memset(out, 0, sizeof(*out));
	out->block = b;
	out->block_len = blen;
	memcpy(out->id, v.id, SPOOL_ID_LEN);
	out->id[SPOOL_ID_LEN] = '\0';
	out->seq = v.seq;
	out->arrival_ms = v.arrival_ms;
	out->file_size = len;
#define SPOOL_TAKE(f, type) do {					\
	memcpy(b, v.f, v.f##_len);					\
	out->f = (type)b;						\
	out->f##_len = v.f##_len;					\
	b += v.f##_len + 1;						\
} while (0)
	SPOOL_TAKE(route, const char *);
	SPOOL_TAKE(method, const char *);
	SPOOL_TAKE(path, const char *);
	SPOOL_TAKE(headers, const char *);
	SPOOL_TAKE(body, const unsigned char *);
#undef SPOOL_TAKE
	rc = SPOOL_READ_OK;
out:
	if (buf != NULL)
		OPENSSL_clear_free(buf, len);
	return rc;
}

int
spool_peek_oldest(struct spool *sp, struct spool_entry *out)
{
	char name[SPOOL_NAME_SIZE];
	const char *why = NULL;
	struct spool_idx *x;
	int r;

	while (sp->head < sp->tail) {
		x = &sp->idx[sp->head];
		r = spool_load(sp, x, out, &why);
		if (r == SPOOL_READ_OK)
			return 0;
		spool_format_name(name, x->seq, x->rnd, SPOOL_SUFFIX);
		if (r == SPOOL_READ_ERR) {
			log_warn("spool %s: cannot read %s", sp->path, name);
			return -1;
		}
		if (r == SPOOL_READ_GONE)
			log_warnx("spool %s: %s vanished; dropped from the "
			    "queue", sp->path, name);
		else
			/* Dropped from the queue even when it cannot be
			   moved (logged): the next spool_open() retries. */
			(void)spool_move_corrupt(sp, name, why, 1);
		spool_idx_remove(sp, sp->head);
	}
	return SPOOL_EMPTY;
}

void
spool_entry_free(struct spool_entry *e)
{
	if (e == NULL || e->block == NULL)
		return;
	OPENSSL_clear_free(e->block, e->block_len);
	memset(e, 0, sizeof(*e));
}

int
spool_ack(struct spool *sp, const char *id)
{
	char name[SPOOL_NAME_SIZE];
	ssize_t i;

	if ((i = spool_idx_find(sp, id)) == -1)
		return -1;
	spool_format_name(name, sp->idx[i].seq, sp->idx[i].rnd, SPOOL_SUFFIX);
	if (unlinkat(sp->dfd, name, 0) == -1 && errno != ENOENT) {
		log_warn("spool %s: cannot remove %s", sp->path, name);
		return -1;
	}
	spool_idx_remove(sp, (size_t)i);
	sp->ctr.acks++;
	/* Without it a crash could bring the entry back: a duplicate. */
	if (fsync(sp->dfd) == -1) {
		log_warn("spool %s: fsync after removing %s", sp->path, name);
		return -1;
	}
	log_debug("spool %s: delivered %s", sp->path, name);
	return 0;
}

int
spool_dead(struct spool *sp, const char *id, int status, const void *resp,
    size_t resp_len)
{
	char name[SPOOL_NAME_SIZE], rname[SPOOL_NAME_SIZE], line[96];
	struct iovec iov[2];
	size_t keep;
	ssize_t i;
	int fd = -1, rc = -1, n;

	if ((i = spool_idx_find(sp, id)) == -1)
		return -1;
	if (status < 100 || status > 999 || (resp == NULL && resp_len > 0)) {
		log_warnx("spool %s: dead-letter %s: bad arguments", sp->path,
		    id);
		return -1;
	}
	spool_format_name(name, sp->idx[i].seq, sp->idx[i].rnd, SPOOL_SUFFIX);
	spool_format_name(rname, sp->idx[i].seq, sp->idx[i].rnd,
	    SPOOL_RESP_SUFFIX);
	keep = resp_len < SPOOL_MAX_RESPONSE ? resp_len : SPOOL_MAX_RESPONSE;
	n = snprintf(line, sizeof(line), "status: %d\nlength: %zu\nkept: "
	    "%zu\n\n", status, resp_len, keep);
	iov[0] = (struct iovec){ line, (size_t)n };
	iov[1] = (struct iovec){ (void *)resp, keep };
	/* The response first: a dead entry always has it beside it. */
	fd = openat(sp->tmpfd, rname, O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC | O_NOFOLLOW, SPOOL_FILE_MODE);
	if (fd == -1 || spool_write_all(fd, iov, 2) == -1 || fsync(fd) == -1 ||
	    renameat(sp->tmpfd, rname, sp->deadfd, rname) == -1 ||
	    renameat(sp->dfd, name, sp->deadfd, name) == -1) {
		log_warn("spool %s: cannot move %s to dead/", sp->path, id);
		unlinkat(sp->tmpfd, rname, 0);
		goto out;
	}
	/* Moved: whatever the syncs say, it is no longer queued. */
	spool_idx_remove(sp, (size_t)i);
	sp->ctr.dead++;
	if (fsync(sp->deadfd) == -1 || fsync(sp->dfd) == -1) {
		log_warn("spool %s: fsync after moving %s to dead/", sp->path,
		    id);
		goto out;
	}
	log_warnx("spool %s: %s refused by the upstream with status %d; moved "
	    "to dead/", sp->path, id, status);
	rc = 0;
out:
	if (fd != -1)
		close(fd);
	return rc;
}

int
spool_setaside(struct spool *sp, const char *id, const char *why)
{
	char name[SPOOL_NAME_SIZE];
	ssize_t i;

	if ((i = spool_idx_find(sp, id)) == -1)
		return -1;
	spool_format_name(name, sp->idx[i].seq, sp->idx[i].rnd, SPOOL_SUFFIX);
	if (spool_move_corrupt(sp, name, why != NULL ? why : "set aside", 1) ==
	    -1)
		return -1;
	spool_idx_remove(sp, (size_t)i);
	return 0;
}

void
spool_stats(const struct spool *sp, size_t *depth, uint64_t *bytes,
    uint64_t *oldest_age_s)
{
	int64_t now;

	if (depth != NULL)
		*depth = sp->tail - sp->head;
	if (bytes != NULL)
		*bytes = sp->bytes;
	if (oldest_age_s == NULL)
		return;
	*oldest_age_s = 0;
	if (sp->head < sp->tail) {
		now = spool_now_ms();
		/* The wall clock may step back (no RTC before NTP). */
		if (now > sp->idx[sp->head].arrival_ms)
			*oldest_age_s = (uint64_t)(now -
			    sp->idx[sp->head].arrival_ms) / 1000;
	}
}

void
spool_counters(const struct spool *sp, struct spool_counters *out)
{
	*out = sp->ctr;
}
