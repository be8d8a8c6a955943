/* tests/pair.h — a source/destination session pair in one process: the destination runs in a
 * thread, the source in the caller's.  The tests configure both sessions between pair_new()
 * and pair_listen(), then pair_run() connects and runs the source, cancels the destination if
 * the source failed, and joins it.
 *
 *     struct pair p;
 *     pair_new(&p);
 *     pair_block_add(&p, "ram", src_mem, dst_mem, len, MFD_BLOCK_ZEROED);
 *     ... more blocks, options on p.src.s and p.dst.s ...
 *     pair_listen(&p, pair_unix(&p, "name"), 0);   // or NULL: socketpairs through fd: URIs
 *     pair_run(&p);
 *     ... p.src.rc, p.dst.rc, p.src.err.msg ...
 *     pair_free(&p);
 *
 * Tests that need another order take the steps one by one: pair_bind (listen, the destination
 * not started), pair_side_start / pair_side_join (run either side in a thread), pair_connect and
 * pair_source (the source's connect; connect and run, nothing cancelled), pair_dial (a raw
 * connection for a hand-made source, which leaves p.src unused), pair_fork_destination (the
 * destination in a child process that a test can kill). */
#ifndef MFD_TEST_PAIR_H
#define MFD_TEST_PAIR_H

#include "chan/chan.h"
#include "core/io.h"
#include "tutil.h"

struct pair_side {
	struct mfd_session *s;
	struct mfd_error err;
	int rc;
	uint64_t done_ns;	/* t_now_ns() when a thread's run returned */
	pthread_t t;
	bool running;		/* a thread runs it; rc, err, done_ns are read after the join */
};

struct pair {
	struct pair_side src, dst;
	char uri[512];		/* what the source connects to */
	int src_fd[MFD_MAX_CHANNELS + 1];	/* pair_bind(NULL): the source's ends, main first */
	char unix_uri[120];	/* unix:PATH made by pair_unix; PATH removed by pair_free */
};

static inline void *pair_thread(void *arg)
{
	struct pair_side *d = arg;
	d->rc = mfd_session_run(d->s, &d->err);
	d->done_ns = t_now_ns();
	return NULL;
}

static inline void pair_new(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	for (unsigned i = 0; i <= MFD_MAX_CHANNELS; i++)
		p->src_fd[i] = -1;
	mfd_error_clear(&p->src.err);
	mfd_error_clear(&p->dst.err);
	p->src.s = mfd_session_new(MFD_OUTGOING);
	p->dst.s = mfd_session_new(MFD_INCOMING);
	if (!p->src.s || !p->dst.s) {
		fprintf(stderr, "pair_new: out of memory\n");
		exit(1);
	}
}

/* The same block on both sides, 4 KiB pages: `src` on the source, `dst` on the destination
 * with `dst_flags` (MFD_BLOCK_ZEROED: fresh memory).  Returns the source's block index. */
static inline int pair_block_add(struct pair *p, const char *name, uint8_t *src, uint8_t *dst,
				 size_t len, unsigned dst_flags)
{
	int rc = mfd_ram_block_add(p->src.s, name, src, len, 4096, 0);
	CHECK_EQ(mfd_ram_block_add(p->dst.s, name, dst, len, 4096, dst_flags), rc);
	return rc;
}

/* A unix: URI private to this process and this name (tests may run concurrently, also from
 * other checkouts).  The same name gives the same address again. */
static inline const char *pair_unix(struct pair *p, const char *name)
{
	snprintf(p->unix_uri, sizeof(p->unix_uri), "unix:/tmp/mfd-%s-%d.sock", name, (int)getpid());
	unlink(p->unix_uri + 5);	/* a leftover of a killed run with a recycled pid */
	return p->unix_uri;
}

/* The destination listens on `listen` (its resolved address becomes p->uri), or with listen
 * NULL on socketpairs for main + `channels` data channels, passed by fd: URIs (the source's ends
 * also in p->src_fd: the source session takes them at connect, a hand-made source writes them
 * and closes them).  Its run is not started.  Returns the listen result (reason in p->dst.err). */
static inline int pair_bind(struct pair *p, const char *listen, unsigned channels)
{
	if (listen) {
		int rc = mfd_session_listen(p->dst.s, listen, &p->dst.err);
		if (rc == 0)
			CHECK_CODE(mfd_session_local_uri(p->dst.s, p->uri, sizeof(p->uri)), 0);
		return rc;
	}
	char b[512] = "fd:";
	snprintf(p->uri, sizeof(p->uri), "fd:");
	for (unsigned i = 0; i <= channels && i <= MFD_MAX_CHANNELS; i++) {
		int sv[2];
		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		p->src_fd[i] = sv[0];
		snprintf(p->uri + strlen(p->uri), sizeof(p->uri) - strlen(p->uri), "%s%d",
			 i ? "," : "", sv[0]);
		snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s%d", i ? "," : "", sv[1]);
	}
	return mfd_session_listen(p->dst.s, b, &p->dst.err);
}

/* Run one side in a thread of its own. */
static inline void pair_side_start(struct pair_side *d)
{
	pthread_create(&d->t, NULL, pair_thread, d);
	d->running = true;
}

/* Join a side's thread (once; nothing if none runs). */
static inline void pair_side_join(struct pair_side *d)
{
	if (d->running)
		pthread_join(d->t, NULL);
	d->running = false;
}

/* pair_bind, then the destination's run starts in a thread.  Returns the listen result. */
static inline int pair_listen(struct pair *p, const char *listen, unsigned channels)
{
	int rc = pair_bind(p, listen, channels);
	if (rc == 0)
		pair_side_start(&p->dst);
	return rc;
}

/* Join the destination's thread (once). */
static inline void pair_join(struct pair *p)
{
	pair_side_join(&p->dst);
}

/* Connect the source to p->uri.  Returns (and keeps in p->src.rc) the result. */
static inline int pair_connect(struct pair *p)
{
	return p->src.rc = mfd_session_connect(p->src.s, p->uri, &p->src.err);
}

/* Connect and, if that worked, run the source in the caller's thread; the destination is left
 * alone (the test joins it).  Returns the source's result. */
static inline int pair_source(struct pair *p)
{
	if (pair_connect(p) == 0)
		p->src.rc = mfd_session_run(p->src.s, &p->src.err);
	return p->src.rc;
}

/* Connect and run the source; a source that failed cancels the destination (which may still
 * wait for channels); then the destination is joined.  Returns the source's result. */
static inline int pair_run(struct pair *p)
{
	if (pair_source(p))
		mfd_session_cancel(p->dst.s);
	pair_join(p);
	return p->src.rc;
}

/* A raw connection to the destination's address for a hand-made source: a socket, or a
 * negative code. */
static inline int pair_dial(const struct pair *p)
{
	struct mfd__uri u;
	int rc = mfd__uri_parse(p->uri, &u, NULL);
	return rc ? rc : mfd__sock_connect(&u, 2000, -1, NULL);
}

/* The destination in a child process: it registers `len` fresh bytes as block "ram", listens
 * on tcp:127.0.0.1:0, passes its address back through a pipe (into p->uri) and runs until it
 * ends or is killed.  Call it before starting threads.  Returns the child's pid. */
static inline pid_t pair_fork_destination(struct pair *p, size_t len)
{
	int fds[2];
	CHECK(pipe(fds) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		uint8_t *m = t_map(len);
		mfd_ram_block_add(p->dst.s, "ram", m, len, 4096, MFD_BLOCK_ZEROED);
		mfd_session_listen(p->dst.s, "tcp:127.0.0.1:0", NULL);
		mfd_session_local_uri(p->dst.s, p->uri, sizeof(p->uri));
		mfd__io_write_fd(fds[1], p->uri, sizeof(p->uri));
		mfd_session_run(p->dst.s, NULL);
		_exit(0);
	}
	close(fds[1]);
	CHECK_CODE(mfd__io_read_fd(fds[0], p->uri, sizeof(p->uri)), 0);
	close(fds[0]);
	return pid;
}

/* Print both sides' errors (for a failing check's context). */
static inline void pair_print(const struct pair *p, const char *what)
{
	fprintf(stderr, "%s: source %d (%s), destination %d (%s)\n", what, p->src.rc, p->src.err.msg,
		p->dst.rc, p->dst.err.msg);
}

static inline void pair_free(struct pair *p)
{
	pair_side_join(&p->src);
	pair_side_join(&p->dst);
	mfd_session_free(p->src.s);
	mfd_session_free(p->dst.s);
	if (p->unix_uri[0])
		unlink(p->unix_uri + 5);
	p->src.s = p->dst.s = NULL;
}

#endif
