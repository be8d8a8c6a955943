/* chan — generic channel operations: transfers through the full-I/O loop, the timing rules,
 * shutdown and free.  The backends are sockchan.c (stream sockets, inherited fds) and file.c. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"
#include "core/io.h"
#include "core/util.h"

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

/* ---- timing ------------------------------------------------------------------------------ */

#define PROGRESS_BYTES (64u << 10)

static uint64_t iov_total(const struct iovec *iov, int n)
{
	uint64_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* A transfer begins: reads wait for a first byte (idle rule) unless they continue a unit. */
static void dir_begin(struct mfd__chan_dir *d, uint64_t total, bool waiting_first)
{
	d->begin_ns = mfd__now_ns();
	d->window_ns = waiting_first ? 0 : d->begin_ns;
	d->window_bytes = 0;
	d->left = total;
	d->need = MFD_MIN((uint64_t)PROGRESS_BYTES, total);
}

int mfd__chan_dir_budget(const struct mfd__chan *c, const struct mfd__chan_dir *d)
{
	int ms = d->window_ns ? __atomic_load_n(&c->stall_ms, __ATOMIC_RELAXED)
			      : __atomic_load_n(&c->idle_ms, __ATOMIC_RELAXED);
	if (ms <= 0)
		return -1;
	uint64_t end = (d->window_ns ? d->window_ns : d->begin_ns) + (uint64_t)ms * 1000000u;
	uint64_t now = mfd__now_ns();
	return now >= end ? 0 : (int)((end - now + 999999) / 1000000);
}

void mfd__chan_dir_moved(struct mfd__chan_dir *d, size_t n)
{
	uint64_t now = mfd__now_ns();
	if (!d->window_ns) {	/* the first byte of a read: the stall rule from here */
		d->window_ns = now;
		d->window_bytes = 0;
	}
	d->left -= MFD_MIN((uint64_t)n, d->left);
	d->window_bytes += n;
	if (d->window_bytes >= d->need) {	/* enough progress: a new window */
		d->window_ns = now;
		d->window_bytes = 0;
		d->need = MFD_MIN((uint64_t)PROGRESS_BYTES, d->left);
	}
}

int mfd__chan_set_timeout(struct mfd__chan *c, int idle_ms, int stall_ms)
{
	__atomic_store_n(&c->idle_ms, idle_ms > 0 ? idle_ms : 0, __ATOMIC_RELAXED);
	__atomic_store_n(&c->stall_ms, stall_ms > 0 ? stall_ms : 0, __ATOMIC_RELAXED);
	return c->ops->set_timeout ? c->ops->set_timeout(c) : 0;
}

/* ---- transfers ------------------------------------------------------------------------------ */

int mfd__chan_readv(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	dir_begin(&c->rx, iov_total(iov, iovcnt), true);
	return mfd__io_full(chan_read_op, c, iov, iovcnt, -1, true, NULL);
}

int mfd__chan_readv_more(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	dir_begin(&c->rx, iov_total(iov, iovcnt), false);
	return mfd__io_full(chan_read_op, c, iov, iovcnt, -1, true, NULL);
}

int mfd__chan_writev(struct mfd__chan *c, struct iovec *iov, int iovcnt)
{
	dir_begin(&c->tx, iov_total(iov, iovcnt), false);
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

ssize_t mfd__chan_try_read(struct mfd__chan *c, void *buf, size_t len)
{
	if (!c->ops->try_read)
		return -EOPNOTSUPP;
	ssize_t n = c->ops->try_read(c, buf, len);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	__atomic_fetch_add(&c->bytes_in, (uint64_t)n, __ATOMIC_RELAXED);
	return n;
}

int mfd__chan_wait_readable(struct mfd__chan *c, int timeout_ms, int cancel_fd)
{
	return c->ops->wait_readable(c, timeout_ms, cancel_fd);
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
