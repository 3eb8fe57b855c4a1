/*
 * sockread: one read(2) from a socket into the input evbuffer of its
 * socket bufferevent, for the code that reads such a socket itself (the
 * device side in proxy.c, the tls13 adapter).  libevent's own read asks
 * the kernel how many bytes wait (ioctl FIONREAD) before every read: a
 * system call per read more.
 */
#ifndef TLSGATE_SOCKREAD_H
#define TLSGATE_SOCKREAD_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/util.h>

struct evbuffer;

/* The most one read takes (libevent's own reads take as much). */
#define SOCKREAD_MAX 4096

/*
 * Reads from `fd` to the end of `in`, the input of a socket bufferevent:
 * at most SOCKREAD_MAX bytes, and no more than `in` can take before it
 * holds `high` (its read watermark).  Such a bufferevent keeps the end of
 * its input frozen but for its own reads: it is thawed for this one and
 * left frozen.  Returns what read() returned: the count, 0 at end of
 * file, or -1 with errno set (EAGAIN when nothing waits); without reading,
 * -1 with ENOBUFS when `in` holds `high` bytes already, and with ENOMEM
 * when the evbuffer could not make room.
 */
ssize_t sockread(evutil_socket_t fd, struct evbuffer *in, size_t high);

#endif
