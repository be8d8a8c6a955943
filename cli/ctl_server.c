/* cli/ctl_server — see ctl_server.h.
 *
 * One thread, one poll loop: the wake pipe (stop), the listening socket, and every client.  A
 * pass reads what clients sent (while their output buffer can take a reply and no complete
 * line is waiting), handles complete lines in order, sends what it can without blocking, then
 * accepts a few new clients.  All state below belongs to the server thread, except lfd, wake
 * and path, which are set before it starts and read-only while it runs, and the event queue,
 * protected by ev_lock (writers: ctl_server_broadcast on any thread; reader: the server thread,
 * woken by a byte in the wake pipe). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "ctl_server.h"

#define ACCEPTS_PER_PASS 4	/* so a flood of connections cannot starve the clients' requests */
#define LISTEN_BACKLOG 64

struct client {
	int fd;				/* -1: the slot is free */
	size_t in_len;
	size_t out_off, out_len;	/* replies not yet sent: out[out_off, out_len) */
	/* Descriptors received, in order; fd_at[i] is the offset in `in` of the last byte of the
	 * read that delivered fds[i]: they belong to the line that byte is in. */
	int fds[CTL_MAX_FDS];
	size_t fd_at[CTL_MAX_FDS];
	unsigned nfds;
	bool fds_lost;			/* some were dropped: refuse the next request */
	bool eof;			/* the client will send nothing more */
	bool closing;			/* close once the output is sent */
	bool subscribed;		/* receives broadcast events */
	uint64_t active_ms;		/* last byte received or sent */
	char in[CTL_MAX_LINE + 1];	/* at most one line and its newline */
	char out[2 * CTL_MAX_REPLY];	/* last: a new client clears everything before it */
};

struct ctl_server {
	int lfd;
	int wake[2];			/* a byte in wake[1]: events queued, or stopping */
	pthread_mutex_t ev_lock;	/* protects the three fields below */
	bool stopping;
	size_t ev_len;
	char ev[CTL_EVENT_QUEUE];	/* lines, each ending with '\n' */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctl_handler_fn handler;
	void *opaque;
	pthread_t thread;
	struct client clients[CTL_MAX_CLIENTS];
	char reply[CTL_MAX_REPLY];
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void drop(struct client *c)
{
	close(c->fd);
	close_fds(c->fds, c->nfds);
	c->fd = -1;
}

static bool line_waiting(const struct client *c)
{
	return memchr(c->in, '\n', c->in_len) != NULL;
}

static size_t out_room(struct client *c)
{
	if (c->out_off) {	/* keep the unsent bytes at the start */
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	return sizeof(c->out) - c->out_len;
}

static bool wants_input(struct client *c)
{
	return !c->eof && !c->closing && !line_waiting(c) && c->in_len < sizeof(c->in) &&
	       out_room(c) >= CTL_MAX_REPLY;
}

static void queue_reply(struct client *c, const char *reply, size_t len)
{
	memcpy(c->out + c->out_len, reply, len);	/* the caller checked out_room */
	c->out_len += len;
	c->out[c->out_len++] = '\n';
}

static void read_client(struct client *c)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { c->in + c->in_len, sizeof(c->in) - c->in_len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			c->eof = c->closing = true;
		return;
	}
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (c->nfds < CTL_MAX_FDS && n > 0) {
				c->fds[c->nfds] = fd;
				c->fd_at[c->nfds++] = c->in_len + (size_t)n - 1;
			} else {
				close(fd);
				c->fds_lost = true;
			}
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		c->fds_lost = true;
	if (n == 0) {
		c->eof = true;	/* the client may still read: a half-closed socket */
		return;
	}
	c->in_len += (size_t)n;
	c->active_ms = now_ms();
}

/* One complete line: the handler's reply (or the server's refusal) goes to the output. */
static void handle_line(struct ctl_server *srv, struct client *c, size_t len, unsigned nfds)
{
	struct ctl_out o = { srv->reply, sizeof(srv->reply) - 1, 0, false };	/* -1: newline */
	if (c->fds_lost) {
		ctl_out_printf(&o, "{\"ok\":false,\"error\":\"descriptors were dropped (at most %d "
			       "with one request): request refused, all its descriptors closed\"}",
			       CTL_MAX_FDS);
		c->fds_lost = false;
	} else {
		bool subscribe = false;
		srv->handler(srv->opaque, c->in, len, c->fds, nfds, &o, &subscribe);
		c->subscribed |= subscribe;
		if (o.truncated) {
			o.len = 0;
			ctl_out_printf(&o, "{\"ok\":false,\"error\":\"the reply would exceed %d "
				       "bytes\"}", CTL_MAX_REPLY);
		}
	}
	close_fds(c->fds, nfds);
	queue_reply(c, o.buf, o.len);
}

/* Handle every complete line the output buffer has room to answer. */
static void pump(struct ctl_server *srv, struct client *c)
{
	char *nl;
	while (!c->closing && (nl = memchr(c->in, '\n', c->in_len)) && out_room(c) >= CTL_MAX_REPLY) {
		size_t len = (size_t)(nl - c->in);
		unsigned k = 0;
		while (k < c->nfds && c->fd_at[k] <= len)
			k++;
		handle_line(srv, c, len, k);
		for (unsigned i = k; i < c->nfds; i++) {
			c->fds[i - k] = c->fds[i];
			c->fd_at[i - k] = c->fd_at[i] - (len + 1);
		}
		c->nfds -= k;
		c->in_len -= len + 1;
		memmove(c->in, nl + 1, c->in_len);
	}
	if (c->closing || line_waiting(c))
		return;
	if (c->in_len == sizeof(c->in) && out_room(c) >= CTL_MAX_REPLY) {
		char msg[96];
		int n = snprintf(msg, sizeof(msg), "{\"ok\":false,\"error\":\"line too long (more than "
				 "%d bytes)\"}", CTL_MAX_LINE);
		queue_reply(c, msg, (size_t)n);
		c->closing = true;
	} else if (c->eof) {
		c->closing = true;	/* a partial last line is dropped */
	}
}

static void flush(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {		/* gone (EPIPE, ECONNRESET): nobody to answer */
			c->out_off = c->out_len = 0;
			c->closing = true;
			return;
		}
		c->out_off += (size_t)n;
		c->active_ms = now_ms();
	}
}

static void accept_clients(struct ctl_server *srv)
{
	for (int i = 0; i < ACCEPTS_PER_PASS; i++) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct client *slot = NULL, *idlest = NULL;
		for (int k = 0; k < CTL_MAX_CLIENTS && !slot; k++) {
			struct client *c = &srv->clients[k];
			if (c->fd < 0)
				slot = c;
			else if (!idlest || c->active_ms < idlest->active_ms)
				idlest = c;
		}
		if (!slot) {	/* full: the client idle the longest makes room */
			drop(idlest);
			slot = idlest;
		}
		memset(slot, 0, offsetof(struct client, out));
		slot->fd = fd;
		slot->active_ms = now_ms();
	}
}

/* Hand the queued events to every subscriber.  Returns whether the server is stopping. */
static bool take_events(struct ctl_server *srv)
{
	static char batch[CTL_EVENT_QUEUE];	/* the server thread's only */
	char drain[64];
	while (read(srv->wake[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&srv->ev_lock);
	bool stopping = srv->stopping;
	size_t len = srv->ev_len;
	memcpy(batch, srv->ev, len);
	srv->ev_len = 0;
	pthread_mutex_unlock(&srv->ev_lock);
	for (int k = 0; k < CTL_MAX_CLIENTS && len; k++) {
		struct client *c = &srv->clients[k];
		if (c->fd < 0 || !c->subscribed || c->closing)
			continue;
		if (out_room(c) < len) {	/* it stopped reading: it does not hold up the rest */
			c->closing = true;
			continue;
		}
		memcpy(c->out + c->out_len, batch, len);
		c->out_len += len;
	}
	return stopping;
}

void ctl_server_broadcast(struct ctl_server *srv, const char *line, size_t len)
{
	if (!srv || len + 1 > CTL_MAX_REPLY)
		return;
	pthread_mutex_lock(&srv->ev_lock);
	if (!srv->stopping && srv->ev_len + len + 1 <= sizeof(srv->ev)) {
		memcpy(srv->ev + srv->ev_len, line, len);
		srv->ev[srv->ev_len + len] = '\n';
		srv->ev_len += len + 1;
	}
	pthread_mutex_unlock(&srv->ev_lock);
	ssize_t w = write(srv->wake[1], "e", 1);	/* a full pipe already wakes the thread */
	(void)w;
}

static void *server_thread(void *arg)
{
	struct ctl_server *srv = arg;
	struct pollfd p[2 + CTL_MAX_CLIENTS];
	struct client *of[2 + CTL_MAX_CLIENTS];
	for (;;) {
		nfds_t n = 2;
		p[0] = (struct pollfd){ .fd = srv->wake[0], .events = POLLIN };
		p[1] = (struct pollfd){ .fd = srv->lfd, .events = POLLIN };
		for (int k = 0; k < CTL_MAX_CLIENTS; k++) {
			struct client *c = &srv->clients[k];
			if (c->fd < 0)
				continue;
			short ev = wants_input(c) ? POLLIN : 0;
			if (c->out_off < c->out_len)
				ev |= POLLOUT;
			of[n] = c;
			p[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		if (poll(p, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents && take_events(srv))
			break;
		for (nfds_t i = 2; i < n; i++) {
			struct client *c = of[i];
			if (p[i].revents & POLLIN)
				read_client(c);
			pump(srv, c);
			flush(c);
			pump(srv, c);	/* lines that waited for room in the output */
			flush(c);
			bool gone = (p[i].revents & (POLLHUP | POLLERR)) && !(p[i].revents & POLLIN);
			if (gone || (c->closing && c->out_off == c->out_len))
				drop(c);
		}
		if (p[1].revents & POLLIN)
			accept_clients(srv);
	}
	for (int k = 0; k < CTL_MAX_CLIENTS; k++)
		if (srv->clients[k].fd >= 0)
			drop(&srv->clients[k]);
	return NULL;
}

int ctl_server_start(struct ctl_server **out, const char *path, ctl_handler_fn handler,
		     void *opaque, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int rc;
	*out = NULL;
	if (strlen(path) >= sizeof(sun.sun_path))
		return snprintf(err, errlen, "control socket %s: path too long", path), -ENAMETOOLONG;
	struct ctl_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	for (int k = 0; k < CTL_MAX_CLIENTS; k++)
		srv->clients[k].fd = -1;
	srv->handler = handler;
	srv->opaque = opaque;
	snprintf(srv->path, sizeof(srv->path), "%s", path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	pthread_mutex_init(&srv->ev_lock, NULL);
	if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK)) {
		rc = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto err_free;
	}
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);	/* a stale socket from an earlier run (nothing else is removed) */
	srv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (srv->lfd < 0 || bind(srv->lfd, (struct sockaddr *)&sun, sizeof(sun)) ||
	    listen(srv->lfd, LISTEN_BACKLOG)) {
		rc = -errno;
		snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
		goto err_socket;
	}
	rc = pthread_create(&srv->thread, NULL, server_thread, srv);
	if (rc) {
		snprintf(err, errlen, "cannot start the control thread: %s", strerror(rc));
		rc = -rc;
		unlink(path);
		goto err_socket;
	}
	*out = srv;
	return 0;

err_socket:
	if (srv->lfd >= 0)
		close(srv->lfd);
	close(srv->wake[0]);
	close(srv->wake[1]);
err_free:
	pthread_mutex_destroy(&srv->ev_lock);
	free(srv);
	return rc;
}

void ctl_server_stop(struct ctl_server *srv)
{
	if (!srv)
		return;
	pthread_mutex_lock(&srv->ev_lock);
	bool first = !srv->stopping;
	srv->stopping = true;
	pthread_mutex_unlock(&srv->ev_lock);
	if (!first)
		return;
	ssize_t w = write(srv->wake[1], "x", 1);
	(void)w;
	pthread_join(srv->thread, NULL);
	close(srv->lfd);
	unlink(srv->path);
}

void ctl_server_free(struct ctl_server *srv)
{
	if (!srv)
		return;
	ctl_server_stop(srv);
	close(srv->wake[0]);
	close(srv->wake[1]);
	pthread_mutex_destroy(&srv->ev_lock);
	free(srv);
}
