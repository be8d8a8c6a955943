/* chan — generic channel operations and the stream-socket backend. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
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
