/* tests/pair.h — a source/destination session pair in one process: the destination runs in a
 * thread, the source in the caller's.  The tests configure both sessions between pair_new()
 * and pair_listen(), then pair_run() connects and runs the source, cancels the destination if
 * the source failed, and joins it.
 *
 *     struct pair p;
 *     pair_new(&p);
 *     mfd_ram_block_add(p.src.s, ...);  mfd_ram_block_add(p.dst.s, ...);
 *     pair_listen(&p, pair_unix(&p, "name"), 0);   // or NULL: socketpairs through fd: URIs
 *     pair_run(&p);
 *     ... p.src.rc, p.dst.rc, p.src.err.msg ...
 *     pair_free(&p); */
#ifndef MFD_TEST_PAIR_H
#define MFD_TEST_PAIR_H

#include "tutil.h"

struct pair_side {
	struct mfd_session *s;
	struct mfd_error err;
	int rc;
	pthread_t t;
	bool running;		/* a thread runs it */
};

struct pair {
	struct pair_side src, dst;
	char uri[512];		/* what the source connects to */
	char path[108];		/* a unix socket path made by pair_unix */
};

static inline void *pair_thread(void *arg)
{
	struct pair_side *d = arg;
	d->rc = mfd_session_run(d->s, &d->err);
	return NULL;
}

static inline void pair_new(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	p->src.s = mfd_session_new(MFD_OUTGOING);
	p->dst.s = mfd_session_new(MFD_INCOMING);
	if (!p->src.s || !p->dst.s) {
		fprintf(stderr, "pair_new: out of memory\n");
		exit(1);
	}
}

/* A unix: URI private to this process and this name (tests may run concurrently). */
static inline const char *pair_unix(struct pair *p, const char *name)
{
	snprintf(p->path, sizeof(p->path), "/tmp/mfd-%s-%d.sock", name, (int)getpid());
	unlink(p->path);	/* a leftover of a killed run with a recycled pid */
	static char uri[128];
	snprintf(uri, sizeof(uri), "unix:%s", p->path);
	return uri;
}

/* The destination listens on `listen` (its resolved address becomes p->uri), or with listen
 * NULL on socketpairs for main + `channels` data channels, passed by fd: URIs; then its run
 * starts in a thread.  Returns the listen result (its reason in p->dst.err). */
static inline int pair_listen(struct pair *p, const char *listen, unsigned channels)
{
	int rc;
	if (listen) {
		if ((rc = mfd_session_listen(p->dst.s, listen, &p->dst.err)))
			return rc;
		CHECK_CODE(mfd_session_local_uri(p->dst.s, p->uri, sizeof(p->uri)), 0);
	} else {
		char b[512] = "fd:";
		snprintf(p->uri, sizeof(p->uri), "fd:");
		for (unsigned i = 0; i <= channels; i++) {
			int sv[2];
			CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
			snprintf(p->uri + strlen(p->uri), sizeof(p->uri) - strlen(p->uri), "%s%d",
				 i ? "," : "", sv[0]);
			snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s%d", i ? "," : "", sv[1]);
		}
		if ((rc = mfd_session_listen(p->dst.s, b, &p->dst.err)))
			return rc;
	}
	pthread_create(&p->dst.t, NULL, pair_thread, &p->dst);
	p->dst.running = true;
	return 0;
}

/* Join the destination's thread (once). */
static inline void pair_join(struct pair *p)
{
	if (p->dst.running)
		pthread_join(p->dst.t, NULL);
	p->dst.running = false;
}

/* Connect and run the source; a source that failed cancels the destination (which may still
 * wait for channels); then the destination is joined.  Returns the source's result. */
static inline int pair_run(struct pair *p)
{
	p->src.rc = mfd_session_connect(p->src.s, p->uri, &p->src.err);
	if (p->src.rc == 0)
		p->src.rc = mfd_session_run(p->src.s, &p->src.err);
	if (p->src.rc)
		mfd_session_cancel(p->dst.s);
	pair_join(p);
	return p->src.rc;
}

/* Print both sides' errors (for a failing check's context). */
static inline void pair_print(const struct pair *p, const char *what)
{
	fprintf(stderr, "%s: source %d (%s), destination %d (%s)\n", what, p->src.rc, p->src.err.msg,
		p->dst.rc, p->dst.err.msg);
}

static inline void pair_free(struct pair *p)
{
	pair_join(p);
	mfd_session_free(p->src.s);
	mfd_session_free(p->dst.s);
	if (p->path[0])
		unlink(p->path);
	p->src.s = p->dst.s = NULL;
}

#endif
