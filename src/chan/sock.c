/* chan/sock — connecting, listening and accepting stream sockets (tcp v4/v6, unix). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"
#include "core/util.h"

int mfd__wait_readable(int fd, int timeout_ms, int cancel_fd)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = cancel_fd, .events = POLLIN } };
	uint64_t deadline = timeout_ms > 0 ? mfd__now_ms() + (uint64_t)timeout_ms : 0;
	for (;;) {
		int wait = -1;
		if (deadline) {
			uint64_t now = mfd__now_ms();
			if (now >= deadline)
				return -ETIMEDOUT;
			wait = (int)(deadline - now);
		}
		int n = poll(p, cancel_fd >= 0 ? 2 : 1, wait);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ETIMEDOUT;
		if (cancel_fd >= 0 && p[1].revents)
			return MFD_ECANCELED;
		if (p[0].revents)
			return 0;
	}
}

static int wait_writable(int fd, int timeout_ms, int cancel_fd)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLOUT }, { .fd = cancel_fd, .events = POLLIN } };
	for (;;) {
		int n = poll(p, cancel_fd >= 0 ? 2 : 1, timeout_ms > 0 ? timeout_ms : -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		if (cancel_fd >= 0 && p[1].revents)
			return MFD_ECANCELED;
		return 0;
	}
}

void mfd__sock_tune(int fd, int family)
{
	int one = 1;
	if (family == AF_INET || family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int set_blocking(int fd, bool blocking)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	fl = blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

/* Connect one socket with a deadline.  Returns 0 or -errno. */
static int connect_timed(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms, int cancel_fd)
{
	int rc = set_blocking(fd, false);
	if (rc)
		return rc;
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS && errno != EAGAIN)
			return -errno;
		rc = wait_writable(fd, timeout_ms, cancel_fd);
		if (rc)
			return rc;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return -errno;
		if (soerr)
			return -soerr;
	}
	return set_blocking(fd, true);
}

static int unix_addr(const struct mfd__uri *u, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	size_t n = strlen(u->path);
	if (n >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memcpy(sun->sun_path, u->path, n + 1);
	return 0;
}

int mfd__sock_connect(const struct mfd__uri *u, int timeout_ms, int cancel_fd, struct mfd_error *err)
{
	int fd, rc;
	if (u->kind == MFD_URI_UNIX) {
		struct sockaddr_un sun;
		if ((rc = unix_addr(u, &sun)))
			return mfd__err_set(err, rc, -1, "unix:%s", u->path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return mfd__err_set(err, -errno, -1, "socket");
		rc = connect_timed(fd, (struct sockaddr *)&sun, sizeof(sun), timeout_ms, cancel_fd);
		if (rc) {
			close(fd);
			return mfd__err_set(err, rc, -1, "connect to unix:%s", u->path);
		}
		return fd;
	}
	if (u->kind != MFD_URI_TCP)
		return mfd__err_set(err, MFD_EURI, -1, "connect needs a tcp: or unix: URI");

	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC }, *res = NULL;
	int gai = getaddrinfo(u->host, u->port, &hints, &res);
	if (gai)
		return mfd__err_set(err, -EHOSTUNREACH, -1, "resolve %s: %s", u->host, gai_strerror(gai));
	rc = -ECONNREFUSED;
	fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		rc = connect_timed(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms, cancel_fd);
		if (rc == 0) {
			mfd__sock_tune(fd, ai->ai_family);
			break;
		}
		close(fd);
		fd = -1;
		if (rc == MFD_ECANCELED)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return mfd__err_set(err, rc, -1, "connect to tcp:%s:%s", u->host, u->port);
	return fd;
}

int mfd__sock_listen(const struct mfd__uri *u, int backlog, struct mfd_error *err)
{
	int fd, rc, one = 1;
	if (u->kind == MFD_URI_UNIX) {
		struct sockaddr_un sun;
		if ((rc = unix_addr(u, &sun)))
			return mfd__err_set(err, rc, -1, "unix:%s", u->path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return mfd__err_set(err, -errno, -1, "socket");
		if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, backlog) < 0) {
			rc = -errno;
			close(fd);
			return mfd__err_set(err, rc, -1, "listen on unix:%s", u->path);
		}
		return fd;
	}
	if (u->kind != MFD_URI_TCP)
		return mfd__err_set(err, MFD_EURI, -1, "listen needs a tcp: or unix: URI");
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res = NULL;
	int gai = getaddrinfo(u->host, u->port, &hints, &res);
	if (gai)
		return mfd__err_set(err, -EADDRNOTAVAIL, -1, "resolve %s: %s", u->host, gai_strerror(gai));
	rc = -EADDRNOTAVAIL;
	fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return mfd__err_set(err, rc, -1, "listen on tcp:%s:%s", u->host, u->port);
	return fd;
}

int mfd__sock_accept(int lfd, int timeout_ms, int cancel_fd, struct mfd_error *err)
{
	for (;;) {
		int rc = mfd__wait_readable(lfd, timeout_ms, cancel_fd);
		if (rc == MFD_ECANCELED)
			return mfd__err_set(err, rc, -1, "waiting for channels");
		if (rc)
			return mfd__err_set(err, rc, -1, "waiting for channels to connect");
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			return mfd__err_set(err, -errno, -1, "accept");
		}
		mfd__sock_tune(fd, ss.ss_family);
		return fd;
	}
}

bool mfd__sock_is_listening(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v;
}

int mfd__sock_local_uri(int lfd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	int n;
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_UNIX) {
		n = snprintf(buf, len, "unix:%s", ((struct sockaddr_un *)&ss)->sun_path);
	} else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		n = snprintf(buf, len, "tcp:%s:%u", host, ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		n = snprintf(buf, len, "tcp:[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		return -EAFNOSUPPORT;
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}
