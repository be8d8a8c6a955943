/* chan/transport — stream channels made from a URI: connecting (outgoing) and listening /
 * accepting (incoming), for every stream scheme (tcp, unix, fd).  A session asks for "channel
 * id of count to this URI" or "the next incoming connection" and never sees a socket. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"

static int wrap_sock(int fd, int id, struct mfd__chan **out, struct mfd_error *err)
{
	*out = mfd__chan_sock_new(fd, id);
	return *out ? 0 : mfd__err_set(err, -ENOMEM, id, "channel");
}

int mfd__chan_connect(const struct mfd__uri *u, unsigned id, unsigned count, int timeout_ms,
		      int cancel_fd, struct mfd__chan **out, struct mfd_error *err)
{
	*out = NULL;
	if (u->kind == MFD_URI_FILE)
		return mfd__err_set(err, MFD_EURI, -1, "file:%s: file channels are not streams",
				    u->path);
	if (u->kind == MFD_URI_FD) {
		if (u->nfds != (int)count)
			return mfd__err_set(err, MFD_EURI, -1, "%d fds for %u channels (main + %u data)",
					    u->nfds, count, count - 1);
		return wrap_sock(u->fds[id], (int)id, out, err);
	}
	int fd = mfd__sock_connect(u, timeout_ms, cancel_fd, err);
	if (fd < 0)
		return fd;
	return wrap_sock(fd, (int)id, out, err);
}

/* ---- listeners ------------------------------------------------------------------------- */

struct mfd__listener {
	int fd;				/* listening socket, or -1 with passed descriptors */
	char unix_path[MFD_URI_PATH_MAX];	/* a unix socket we created (unlinked on free) */
	struct mfd__uri passed;		/* fd:A,B,...: connected sockets; -1 once handed out */
	int next;			/* next passed descriptor to hand out */
};

int mfd__listener_open(const struct mfd__uri *u, struct mfd__listener **out, struct mfd_error *err)
{
	*out = NULL;
	if (u->kind == MFD_URI_FILE)
		return mfd__err_set(err, MFD_EURI, -1, "file:%s: file channels are not streams",
				    u->path);
	struct mfd__listener *l = calloc(1, sizeof(*l));
	if (!l)
		return mfd__err_set(err, -ENOMEM, -1, "listener");
	l->fd = -1;
	if (u->kind == MFD_URI_FD) {
		if (u->nfds == 1 && mfd__sock_is_listening(u->fds[0]))
			l->fd = u->fds[0];
		else
			l->passed = *u;	/* connected sockets, one per channel */
		*out = l;
		return 0;
	}
	/* A deep queue: a burst of strangers is accepted (and dropped) before it can crowd out
	 * the source's channels. */
	l->fd = mfd__sock_listen(u, SOMAXCONN, err);
	if (l->fd < 0) {
		int rc = l->fd;
		free(l);
		return rc;
	}
	if (u->kind == MFD_URI_UNIX)
		memcpy(l->unix_path, u->path, strlen(u->path) + 1);
	/* Ours: never block in accept (a connection reset between poll and accept would). */
	int fl = fcntl(l->fd, F_GETFL);
	if (fl >= 0)
		fcntl(l->fd, F_SETFL, fl | O_NONBLOCK);
	*out = l;
	return 0;
}

int mfd__listener_accept(struct mfd__listener *l, int timeout_ms, int cancel_fd,
			 struct mfd__chan **out, struct mfd_error *err)
{
	*out = NULL;
	if (l->fd < 0) {
		if (l->next >= l->passed.nfds)
			return mfd__err_set(err, MFD_ECHANCOUNT, -1, "all %d passed fds are in use",
					    l->passed.nfds);
		int fd = l->passed.fds[l->next];
		l->passed.fds[l->next++] = -1;	/* owned by the channel from here */
		return wrap_sock(fd, -1, out, err);
	}
	int fd = mfd__sock_accept(l->fd, timeout_ms, cancel_fd, err);
	if (fd < 0)
		return fd;
	return wrap_sock(fd, -1, out, err);
}

bool mfd__listener_passed(const struct mfd__listener *l)
{
	return l->fd < 0;
}

int mfd__listener_try_accept(struct mfd__listener *l, struct mfd__chan **out, struct mfd_error *err)
{
	*out = NULL;
	if (l->fd < 0)
		return mfd__listener_accept(l, 0, -1, out, err);
	for (;;) {
		/* The listening socket may be blocking (and, passed as fd:N, its flags are not
		 * ours to change): ask first. */
		struct pollfd pf = { .fd = l->fd, .events = POLLIN };
		int k = poll(&pf, 1, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k == 0 ? -EAGAIN : mfd__err_set(err, -errno, -1, "accept");
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -EAGAIN;
			return mfd__err_set(err, -errno, -1, "accept");
		}
		/* Blocking from here, like every channel: its transfers bound themselves. */
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
		mfd__sock_tune(fd, ss.ss_family);
		return wrap_sock(fd, -1, out, err);
	}
}

int mfd__listener_wait(struct mfd__listener *l, struct mfd__chan *const *cs, int n, int timeout_ms,
		       int cancel_fd, bool *accept_ready, bool *ready)
{
	struct pollfd p[2 + MFD_LISTENER_MAX_WAIT];
	int np = 0, first = 0;
	if (n > MFD_LISTENER_MAX_WAIT)
		return -EINVAL;
	*accept_ready = l->fd < 0 && l->next < l->passed.nfds;
	for (int i = 0; i < n; i++)
		ready[i] = false;
	if (l->fd >= 0)
		p[np++] = (struct pollfd){ .fd = l->fd, .events = POLLIN };
	if (cancel_fd >= 0)
		p[np++] = (struct pollfd){ .fd = cancel_fd, .events = POLLIN };
	first = np;
	for (int i = 0; i < n; i++)
		p[np++] = (struct pollfd){ .fd = cs[i]->fd, .events = POLLIN };
	if (*accept_ready)
		timeout_ms = 0;	/* a passed descriptor is there now */
	for (;;) {
		int k = poll(p, (nfds_t)np, timeout_ms < 0 ? -1 : timeout_ms);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (cancel_fd >= 0 && p[l->fd >= 0 ? 1 : 0].revents)
			return MFD_ECANCELED;
		if (l->fd >= 0 && p[0].revents)
			*accept_ready = true;
		for (int i = 0; i < n; i++)
			ready[i] = p[first + i].revents != 0;	/* data, end, or an error: read it */
		return k == 0 && !*accept_ready ? -ETIMEDOUT : 0;
	}
}

int mfd__listener_remaining(const struct mfd__listener *l)
{
	return l->fd < 0 ? l->passed.nfds - l->next : 0;
}

int mfd__listener_local_uri(const struct mfd__listener *l, char *buf, size_t len)
{
	if (!l || l->fd < 0)
		return MFD_ESTATE;
	return mfd__sock_local_uri(l->fd, buf, len);
}

void mfd__listener_free(struct mfd__listener *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	if (l->unix_path[0])
		unlink(l->unix_path);
	for (int i = l->next; i < l->passed.nfds; i++)
		if (l->passed.fds[i] >= 0)
			close(l->passed.fds[i]);
	free(l);
}
