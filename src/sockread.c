/*
 * sockread: a socket bufferevent's read, without the ioctl (sockread.h).
 */
#include <errno.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "sockread.h"

ssize_t
sockread(evutil_socket_t fd, struct evbuffer *in, size_t high)
{
	struct evbuffer_iovec v;
	size_t len = evbuffer_get_length(in), max;
	ssize_t n;
	int saved;

	if (len >= high) {
		errno = ENOBUFS;
		return -1;
	}
	max = high - len < SOCKREAD_MAX ? high - len : SOCKREAD_MAX;
	evbuffer_unfreeze(in, 0);
	if (evbuffer_reserve_space(in, (ev_ssize_t)max, &v, 1) < 1) {
		evbuffer_freeze(in, 0);
		errno = ENOMEM;
		return -1;
	}
	if (v.iov_len > max)
		v.iov_len = max;
	do
		n = read(fd, v.iov_base, v.iov_len);
	while (n == -1 && errno == EINTR);
	saved = errno;
	v.iov_len = n > 0 ? (size_t)n : 0;
	evbuffer_commit_space(in, &v, 1);
	evbuffer_freeze(in, 0);
	errno = saved;
	return n;
}
