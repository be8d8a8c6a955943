/* chan — generic channel operations and the stream-socket backend. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"
#include "core/io.h"

/* Adapter from the core full-I/O loop to a channel's ops, running the test hook first. */
static ssize_t chan_read_op(void *ctx, const struct iovec *iov, int iovcnt, int64_t off)
{
	struct mfd__chan *c = ctx;
	if (c->hook) {
		int rc = c->hook(c->hook_ctx, c->id, false, iov[0].iov_len);
		if (rc < 0) {
			errno = -rc;
			return -1;
		}
	}
	ssize_t n = c->ops->readv(c, iov, iovcnt, off);
	if (n > 0)
		__atomic_fetch_add(&c->bytes_in, (uint64_t)n, __ATOMIC_RELAXED);
	return n;
}

static ssize_t chan_write_op(void *ctx, const struct iovec *iov, int iovcnt, int64_t off)
{
	struct mfd__chan *c = ctx;
	if (c->hook) {
		int rc = c->hook(c->hook_ctx, c->id, true, iov[0].iov_len);
		if (rc < 0) {
			errno = -rc;
			return -1;
		}
	}
	ssize_t n = c->ops->writev(c, iov, iovcnt, off);
	if (n > 0)
		__atomic_fetch_add(&c->bytes_out, (uint64_t)n, __ATOMIC_RELAXED);
	return n;
}

int mfd__chan_readv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	return mfd__io_full(chan_read_op, c, iov, iovcnt, -1, true, NULL);
}

int mfd__chan_writev(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	return mfd__io_full(chan_write_op, c, iov, iovcnt, -1, false, NULL);
}

int mfd__chan_preadv(struct mfd__chan *c, struct iovec *iov, int iovcnt, int64_t off)
{
	return mfd__io_full(chan_read_op, c, iov, iovcnt, off, true, NULL);
}

int mfd__chan_pwritev(struct mfd__chan *c, struct iovec *iov, int iovcnt, int64_t off)
{
	return mfd__io_full(chan_write_op, c, iov, iovcnt, off, false, NULL);
}

int mfd__chan_read(struct mfd__chan *c, void *buf, size_t len)
{
	struct iovec v = { buf, len };
	return mfd__chan_readv(c, &v, 1);
}

int mfd__chan_write(struct mfd__chan *c, const void *buf, size_t len)
{
	struct iovec v = { (void *)buf, len };
	return mfd__chan_writev(c, &v, 1);
}

ssize_t mfd__chan_try_writev(struct mfd__chan *c, const struct iovec *iov, int iovcnt)
{
	if (!c->ops->try_writev)
		return -EOPNOTSUPP;
	ssize_t n = c->ops->try_writev(c, iov, iovcnt);
	if (n < 0)
		return -errno;
	__atomic_fetch_add(&c->bytes_out, (uint64_t)n, __ATOMIC_RELAXED);
	return n;
}

int mfd__chan_wait_readable(struct mfd__chan *c, int timeout_ms, int cancel_fd)
{
	return c->ops->wait_readable(c, timeout_ms, cancel_fd);
}

int mfd__chan_set_timeout(struct mfd__chan *c, int recv_ms, int send_ms)
{
	return c->ops->set_timeout ? c->ops->set_timeout(c, recv_ms, send_ms) : 0;
}

void mfd__chan_shutdown(struct mfd__chan *c)
{
	if (c)
		c->ops->shutdown(c);
}

void mfd__chan_free(struct mfd__chan *c)
{
	if (!c)
		return;
	c->ops->close(c);
	free(c);
}

/* ---- stream sockets and inherited fds ----------------------------------------------------- */

/* A socket timeout (SO_RCVTIMEO / SO_SNDTIMEO) surfaces as EAGAIN: report it as a timeout. */
static ssize_t timed_out_as_etimedout(ssize_t n)
{
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		errno = ETIMEDOUT;
	return n;
}

static ssize_t sock_readv(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off)
{
	return timed_out_as_etimedout(mfd__io_fd_read((void *)(intptr_t)c->fd, iov, iovcnt, -1));
}

static ssize_t sock_writev(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off)
{
	return timed_out_as_etimedout(mfd__io_fd_write((void *)(intptr_t)c->fd, iov, iovcnt, -1));
}

static ssize_t sock_try_writev(struct mfd__chan *c, const struct iovec *iov, int iovcnt)
{
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && errno == ENOTSOCK)	/* a pipe: nothing non-blocking to try without
					 * changing its flags, which the peer may share */
		errno = EAGAIN;
	return n;
}

static int sock_wait_readable(struct mfd__chan *c, int timeout_ms, int cancel_fd)
{
	return mfd__wait_readable(c->fd, timeout_ms, cancel_fd);
}

static int sock_set_timeout(struct mfd__chan *c, int recv_ms, int send_ms)
{
	struct timeval r = { .tv_sec = recv_ms / 1000, .tv_usec = (recv_ms % 1000) * 1000 };
	struct timeval s = { .tv_sec = send_ms / 1000, .tv_usec = (send_ms % 1000) * 1000 };
	/* A pipe or other non-socket has no timeouts: accepted as it is. */
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r)) < 0 && errno != ENOTSOCK)
		return -errno;
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof(s)) < 0 && errno != ENOTSOCK)
		return -errno;
	return 0;
}

static void sock_shutdown(struct mfd__chan *c)
{
	/* Wakes any thread blocked in read or write on this socket; harmless on non-sockets. */
	shutdown(c->fd, SHUT_RDWR);
}

static void sock_close(struct mfd__chan *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static const struct mfd__chan_ops sock_ops = {
	.name = "socket",
	.readv = sock_readv,
	.writev = sock_writev,
	.try_writev = sock_try_writev,
	.wait_readable = sock_wait_readable,
	.set_timeout = sock_set_timeout,
	.shutdown = sock_shutdown,
	.close = sock_close,
};

struct mfd__chan *mfd__chan_sock_new(int fd, int id)
{
	struct mfd__chan *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->ops = &sock_ops;
	c->fd = fd;
	c->id = id;
	return c;
}
