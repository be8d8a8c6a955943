/* chan/sockchan — the stream-socket backend (tcp, unix, socketpairs; pipes passed as fd: work
 * too).
 *
 * Transfers block in the kernel, so the fast path is one readv or sendmsg per call.  The timing
 * rules of mfd__chan_set_timeout are enforced around it: the socket's SO_RCVTIMEO / SO_SNDTIMEO
 * is a short slice, so a blocked call returns every slice and the budget is checked again
 * (a non-socket is polled for the same slice instead).  Nothing costs anything while data
 * flows; a silent peer, a black hole or a trickle is found within the stall time plus a slice.
 * On TCP, TCP_USER_TIMEOUT makes the kernel give up on data the peer never acknowledges (a link
 * that went down) in the same time. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"
#include "core/io.h"
#include "core/util.h"

struct sock {
	struct mfd__chan c;	/* first: the generic code frees it as a struct mfd__chan */
	bool is_socket;		/* set at creation, then read-only */
	bool tcp;		/* set at creation, then read-only */
	int slice_ms;		/* atomic: how often a blocked call wakes to check its budget */
};

/* Wait until fd is ready for events (a non-socket: no kernel timeout to rely on). */
static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n = poll(&p, 1, ms);
	if (n < 0)
		return -1;
	if (n == 0) {
		errno = EAGAIN;
		return -1;
	}
	return 0;
}

/* One call that moves bytes, re-checking the budget whenever a slice passes without any. */
static ssize_t transfer(struct mfd__chan *c, const struct iovec *iov, int iovcnt, bool writing)
{
	struct sock *k = (struct sock *)c;
	struct mfd__chan_dir *d = writing ? &c->tx : &c->rx;
	for (;;) {
		int budget = mfd__chan_dir_budget(c, d);
		if (budget == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		ssize_t n;
		if (!k->is_socket) {
			int slice = __atomic_load_n(&k->slice_ms, __ATOMIC_RELAXED);
			if (budget > 0 && wait_fd(c->fd, writing ? POLLOUT : POLLIN,
						  slice ? MFD_MIN(slice, budget) : budget) < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				return -1;
			}
			n = writing ? mfd__io_fd_write((void *)(intptr_t)c->fd, iov, iovcnt, -1)
				    : readv(c->fd, iov, iovcnt);
		} else if (writing) {
			struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
			n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		} else {
			n = readv(c->fd, iov, iovcnt);
		}
		if (n > 0) {
			mfd__chan_dir_moved(d, (size_t)n);
			return n;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			continue;	/* a slice passed: check the budget again */
		return n;
	}
}

static ssize_t sock_readv(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off)
{
	(void)off;
	return transfer(c, iov, iovcnt, false);
}

static ssize_t sock_writev(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off)
{
	(void)off;
	return transfer(c, iov, iovcnt, true);
}

static ssize_t sock_try_writev(struct mfd__chan *c, const struct iovec *iov, int iovcnt)
{
	if (!((struct sock *)c)->is_socket) {
		/* a pipe: nothing non-blocking to try without changing its flags, which the peer
		 * may share */
		errno = EAGAIN;
		return -1;
	}
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	return sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static ssize_t sock_try_read(struct mfd__chan *c, void *buf, size_t len)
{
	if (!((struct sock *)c)->is_socket) {
		if (wait_fd(c->fd, POLLIN, 0) < 0)
			return -1;	/* EAGAIN when nothing is there */
		return read(c->fd, buf, len);
	}
	return recv(c->fd, buf, len, MSG_DONTWAIT);
}

static int sock_wait_readable(struct mfd__chan *c, int timeout_ms, int cancel_fd)
{
	return mfd__wait_readable(c->fd, timeout_ms, cancel_fd);
}

static int sock_set_timeout(struct mfd__chan *c)
{
	struct sock *k = (struct sock *)c;
	int idle = __atomic_load_n(&c->idle_ms, __ATOMIC_RELAXED);
	int stall = __atomic_load_n(&c->stall_ms, __ATOMIC_RELAXED);
	int bound = idle && stall ? MFD_MIN(idle, stall) : (idle ? idle : stall);
	/* A slice of an eighth of the shortest bound (20..250 ms): a rule is enforced within that
	 * much of its time, and an idle channel wakes a few times a second at most. */
	int slice = bound ? MFD_MAX(20, MFD_MIN(250, bound / 8)) : 0;
	__atomic_store_n(&k->slice_ms, slice, __ATOMIC_RELAXED);
	if (!k->is_socket)
		return 0;
	struct timeval tv = { .tv_sec = slice / 1000, .tv_usec = (slice % 1000) * 1000 };
	if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	if (k->tcp) {
		/* Unacknowledged data for longer than the stall time: the link is gone.  The slice
		 * on top lets the transfer's own check (which names the rule) normally come first. */
		unsigned ut = stall ? (unsigned)(stall + slice) : 0;
		if (setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut)) < 0)
			return -errno;
	}
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
	.try_read = sock_try_read,
	.wait_readable = sock_wait_readable,
	.set_timeout = sock_set_timeout,
	.shutdown = sock_shutdown,
	.close = sock_close,
};

struct mfd__chan *mfd__chan_sock_new(int fd, int id)
{
	struct sock *k = calloc(1, sizeof(*k));
	if (!k) {
		close(fd);
		return NULL;
	}
	int type = 0, proto = 0;
	socklen_t l = sizeof(type);
	k->is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	l = sizeof(proto);
	k->tcp = k->is_socket && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		 (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) && type == SOCK_STREAM &&
		 getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) == 0 && proto == IPPROTO_TCP;
	k->c.ops = &sock_ops;
	k->c.fd = fd;
	k->c.id = id;
	return &k->c;
}
