/* core/io — see io.h for the contract. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <limits.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>
#include "core/err.h"
#include "core/io.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

int mfd__io_full(mfd__io_op op, void *ctx, struct iovec *iov, int iovcnt, int64_t off, bool reading,
		 size_t *done)
{
	size_t total = 0;
	int rc = 0;

	/* Skip leading empty entries so "nothing left" is simply iovcnt == 0. */
	while (iovcnt > 0 && iov->iov_len == 0) {
		iov++;
		iovcnt--;
	}
	while (iovcnt > 0) {
		int n = iovcnt < IOV_MAX ? iovcnt : IOV_MAX;
		ssize_t got = op(ctx, iov, n, off);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (got == 0) {
			if (reading)
				rc = total == 0 ? MFD_ECLOSED : MFD_ETRUNC;
			else
				rc = -EIO;
			break;
		}
		total += (size_t)got;
		if (off >= 0)
			off += got;
		/* Consume whole entries, then advance inside the partly transferred one. */
		size_t left = (size_t)got;
		while (iovcnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (left > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
		while (iovcnt > 0 && iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
	}
	if (done)
		*done = total;
	return rc;
}

ssize_t mfd__io_fd_read(void *ctx, const struct iovec *iov, int iovcnt, int64_t off)
{
	int fd = (int)(intptr_t)ctx;
	if (off >= 0)
		return preadv(fd, iov, iovcnt, (off_t)off);
	return readv(fd, iov, iovcnt);
}

/* writev on a pipe whose reader is gone raises SIGPIPE, which would kill an embedder that did
 * not ignore it.  A library must not touch the process's signal dispositions, so the signal is
 * blocked in this thread for the call, and a SIGPIPE that the call made pending is consumed
 * before the mask is restored (unless one was pending already, which is not ours to take). */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt)
{
	sigset_t pipe_set, old, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	bool was_pending = sigismember(&pending, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	ssize_t n = writev(fd, iov, iovcnt);
	int e = errno;
	if (n < 0 && e == EPIPE && !was_pending) {
		struct timespec zero = { 0, 0 };
		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return n;
}

ssize_t mfd__io_fd_write(void *ctx, const struct iovec *iov, int iovcnt, int64_t off)
{
	int fd = (int)(intptr_t)ctx;
	if (off >= 0)
		return pwritev(fd, iov, iovcnt, (off_t)off);
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	if (n < 0 && errno == ENOTSOCK)
		n = writev_nosigpipe(fd, iov, iovcnt);
	return n;
}

int mfd__io_readv_fd(int fd, struct iovec *iov, int iovcnt)
{
	return mfd__io_full(mfd__io_fd_read, (void *)(intptr_t)fd, iov, iovcnt, -1, true, NULL);
}

int mfd__io_writev_fd(int fd, struct iovec *iov, int iovcnt)
{
	return mfd__io_full(mfd__io_fd_write, (void *)(intptr_t)fd, iov, iovcnt, -1, false, NULL);
}

int mfd__io_preadv_fd(int fd, struct iovec *iov, int iovcnt, int64_t off)
{
	return mfd__io_full(mfd__io_fd_read, (void *)(intptr_t)fd, iov, iovcnt, off, true, NULL);
}

int mfd__io_pwritev_fd(int fd, struct iovec *iov, int iovcnt, int64_t off)
{
	return mfd__io_full(mfd__io_fd_write, (void *)(intptr_t)fd, iov, iovcnt, off, false, NULL);
}

int mfd__io_read_fd(int fd, void *buf, size_t len)
{
	struct iovec v = { buf, len };
	return mfd__io_readv_fd(fd, &v, 1);
}

int mfd__io_write_fd(int fd, const void *buf, size_t len)
{
	struct iovec v = { (void *)buf, len };
	return mfd__io_writev_fd(fd, &v, 1);
}
