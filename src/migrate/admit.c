/* migrate/admit — the destination's door: which connections become the session's channels.
 *
 * A destination listening on a socket is reachable by anyone who can connect: a port scanner, a
 * stray client, a hostile neighbour.  None of them may end or delay the migration.  So every
 * connection is accepted at once (the kernel's queue never fills up), waits for its 64-byte
 * hello in one poll loop with all the others (no connection holds the rest), and must deliver
 * it within the handshake timeout.  Each hello is checked as it completes and answered.  An
 * accepted connection joins the session it names (a "candidate": the session id, its
 * parameters, the channels that joined so far, and a deadline to complete); the first candidate
 * with every channel becomes the migration, and whatever else is waiting is closed.
 *
 * A connection that closes, stays silent, trickles, sends something that is not a hello we take,
 * or belongs to a candidate that does not complete in time is refused (best effort, with the
 * reason's code in the reply), closed, counted (mfd_stats.rejected_connections), reported to the
 * embedder's log callback, and the destination goes on waiting.  A genuine source whose
 * configuration we refuse (another page size, too many channels) learns why from the reply.
 *
 * Bounds: MAX_PENDING connections wait for their hello at once (the oldest is dropped for a
 * newcomer: a genuine source sends its hello within milliseconds of connecting), MAX_CANDIDATES
 * sessions form at once; memory is a channel and 64 bytes per pending connection.
 *
 * With descriptors passed at listen time (fd:A,B,...) nothing else can connect: a bad or missing
 * hello there fails the session, like any other error.
 *
 * Everything here runs on the run thread; a cancel wakes the wait through the session's
 * cancel descriptor. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "migrate/session.h"

#define MAX_PENDING 128
#define MAX_CANDIDATES 8

struct pending {
	struct mfd__chan *c;
	uint8_t buf[MFD_HELLO_LEN];
	unsigned got;
	uint64_t since_ns, deadline_ns;
};

struct candidate {
	bool used;
	struct mfd__hello h;		/* the first hello: the session and its parameters */
	struct mfd__chan *chan[MFD_MAX_CHANNELS + 1];
	unsigned have;
	uint64_t deadline_ns;
};

struct door {
	struct mfd_session *s;
	struct mfd__listener *l;
	bool passed;			/* only passed descriptors: a refusal fails the session */
	struct pending p[MAX_PENDING];
	unsigned np;
	struct candidate cand[MAX_CANDIDATES];
	struct mfd_error first;		/* passed descriptors: the first refusal */
};

static void say(struct mfd_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct mfd_session *s, const char *fmt, ...)
{
	if (!s->cb.log)
		return;
	char msg[MFD_ERROR_MSG_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->cb.log(s->cb.opaque, msg);
}

static void reply(struct mfd__chan *c, int status, uint64_t features)
{
	uint8_t b[MFD_ACCEPT_LEN];
	struct mfd__accept a = { .version = MFD_PROTO_VERSION, .status = status, .features = features };
	mfd__accept_encode(b, &a);
	mfd__chan_set_timeout(c, 0, 1000);	/* a peer that does not read cannot hold us */
	(void)mfd__chan_write(c, b, sizeof(b));	/* best effort when refusing */
}

/* Close a connection that will not be a channel: count it, say why, and (passed descriptors)
 * remember the first reason as the session's. */
static void reject(struct door *d, struct mfd__chan *c, bool answer, int code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void reject(struct door *d, struct mfd__chan *c, bool answer, int code, const char *fmt, ...)
{
	char msg[MFD_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (answer)
		reply(c, code, 0);
	mfd__chan_free(c);
	MFD_ST_ADD(d->s, rejected_connections, 1);
	mfd__err_set(&d->first, code, -1, "%s", msg);
	say(d->s, "refused a connection: %s: %s", msg, mfd_strerror(code));
}

static void drop_pending(struct door *d, unsigned i)
{
	d->p[i] = d->p[--d->np];
}

static void add_pending(struct door *d, struct mfd__chan *c, uint64_t now)
{
	if (d->np == MAX_PENDING) {	/* the oldest goes: a source's hello comes at once */
		unsigned oldest = 0;
		for (unsigned i = 1; i < d->np; i++)
			if (d->p[i].since_ns < d->p[oldest].since_ns)
				oldest = i;
		reject(d, d->p[oldest].c, false, -ETIMEDOUT, "no hello after %llu ms, dropped for a "
		       "newer connection", (unsigned long long)((now - d->p[oldest].since_ns) / 1000000));
		drop_pending(d, oldest);
	}
	int t = d->s->opt.timeout_ms;
	d->p[d->np++] = (struct pending){ .c = c, .since_ns = now,
					  .deadline_ns = t ? now + (uint64_t)t * 1000000u : 0 };
}

/* The checks that need no other hello: is this a session we can take at all? */
static int acceptable(struct mfd_session *s, const struct mfd__hello *h, struct mfd_error *err)
{
	if (!mfd__codec_find(h->codec))
		return mfd__err_set(err, MFD_EFEATURE, h->channel_id, "codec %u", h->codec);
	if (h->page_size != s->ram.page_size)
		return mfd__err_set(err, MFD_EPAGESIZE, h->channel_id, "source pages are %u bytes, ours %u",
				    h->page_size, s->ram.page_size);
	if (h->channel_count > s->opt.channels + 1u)
		return mfd__err_set(err, MFD_ECHANCOUNT, h->channel_id,
				    "source uses %u data channels, we accept up to %u",
				    h->channel_count - 1u, s->opt.channels);
	if (h->batch_pages > s->opt.batch_pages)
		return mfd__err_set(err, MFD_EPAGES, h->channel_id,
				    "source batches %u pages, we accept up to %u", h->batch_pages,
				    s->opt.batch_pages);
	return 0;
}

/* A later hello of a forming session must match its first. */
static int same_session(const struct candidate *k, const struct mfd__hello *h, struct mfd_error *err)
{
	if (h->channel_count != k->h.channel_count)
		return mfd__err_set(err, MFD_ECHANCOUNT, h->channel_id, "%u channels, expected %u",
				    h->channel_count, k->h.channel_count);
	if (h->page_size != k->h.page_size || h->features != k->h.features ||
	    h->batch_pages != k->h.batch_pages || h->codec != k->h.codec)
		return mfd__err_set(err, MFD_EFEATURE, h->channel_id,
				    "handshake parameters differ between channels");
	if (k->chan[h->channel_id])
		return mfd__err_set(err, MFD_EDUPCHAN, h->channel_id, "channel %u connected twice",
				    h->channel_id);
	return 0;
}

static struct candidate *find_candidate(struct door *d, const uint8_t *session)
{
	for (unsigned i = 0; i < MAX_CANDIDATES; i++)
		if (d->cand[i].used && !memcmp(d->cand[i].h.session, session, MFD_UUID_LEN))
			return &d->cand[i];
	return NULL;
}

/* A whole hello arrived on c: refuse it, or add c to its session.  Returns the candidate it
 * completed, if it did. */
static struct candidate *hello(struct door *d, struct mfd__chan *c, const uint8_t *b, uint64_t now)
{
	struct mfd_session *s = d->s;
	struct mfd__hello h;
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd__hello_decode(b, MFD_HELLO_LEN, &h, &e);
	if (rc == 0)
		rc = acceptable(s, &h, &e);
	struct candidate *k = rc ? NULL : find_candidate(d, h.session);
	if (rc == 0 && !k && d->passed) {
		/* Passed descriptors are one session's channels: the first hello names it. */
		for (unsigned i = 0; i < MAX_CANDIDATES && rc == 0; i++) {
			if (!d->cand[i].used)
				continue;
			char a[37], x[37];
			mfd__uuid_format(h.session, a);
			mfd__uuid_format(d->cand[i].h.session, x);
			rc = mfd__err_set(&e, MFD_ESESSION, h.channel_id, "session %s, expected %s", a, x);
		}
	}
	if (rc == 0 && k) {
		rc = same_session(k, &h, &e);
	} else if (rc == 0) {
		for (unsigned i = 0; i < MAX_CANDIDATES && !k; i++)
			if (!d->cand[i].used)
				k = &d->cand[i];
		if (!k) {
			rc = mfd__err_set(&e, MFD_ESESSION, h.channel_id, "%d sessions are forming "
					  "already", MAX_CANDIDATES);
		} else {
			int t = s->opt.timeout_ms;
			*k = (struct candidate){ .used = true, .h = h,
						 .deadline_ns = t ? now + (uint64_t)t * 1000000u : 0 };
		}
	}
	if (rc) {
		reject(d, c, true, rc, "%s", e.msg);
		return NULL;
	}
	reply(c, 0, h.features);
	k->chan[h.channel_id] = c;
	k->have++;
	return k->have == k->h.channel_count ? k : NULL;
}

static void drop_candidate(struct door *d, struct candidate *k, int code, const char *why)
{
	char sid[37];
	mfd__uuid_format(k->h.session, sid);
	for (unsigned i = 0; i < k->h.channel_count; i++)
		if (k->chan[i])
			reject(d, k->chan[i], false, code, "session %s: %s (%u of %u channels)", sid, why,
			       k->have, k->h.channel_count);
	memset(k, 0, sizeof(*k));
}

/* The winner: its channels become the session's, its hello the negotiated parameters. */
static void adopt(struct door *d, struct candidate *k)
{
	struct mfd_session *s = d->s;
	memcpy(s->nego.session_id, k->h.session, MFD_UUID_LEN);
	s->nego.features = k->h.features;
	s->nego.batch_pages = k->h.batch_pages;
	s->nego.codec = mfd__codec_find(k->h.codec);
	for (unsigned i = 0; i < k->h.channel_count; i++) {
		mfd__session_add_chan(s, i, k->chan[i]);
		/* The main channel: the source pings it while it is quiet, so silence for the
		 * stall time means the source is gone or stuck, and the session fails (which also
		 * frees the data channels' receivers).  Data channels may idle between rounds, but
		 * a packet under way must progress. */
		mfd__chan_set_timeout(k->chan[i], i == 0 ? s->opt.stall_ms : 0, s->opt.stall_ms);
		k->chan[i] = NULL;
	}
	memset(k, 0, sizeof(*k));
	for (unsigned i = 0; i < MAX_CANDIDATES; i++)
		if (d->cand[i].used)
			drop_candidate(d, &d->cand[i], MFD_ESESSION, "another session was taken");
	while (d->np) {
		reject(d, d->p[0].c, false, MFD_ESESSION, "a session was taken before its hello");
		drop_pending(d, 0);
	}
}

/* Read what the readable pending connections have; hand whole hellos on. */
static struct candidate *read_hellos(struct door *d, const bool *ready, uint64_t now)
{
	struct candidate *done = NULL;
	for (unsigned i = d->np; i-- > 0;) {
		struct pending *p = &d->p[i];
		if (!ready[i] || done)
			continue;
		ssize_t n = mfd__chan_try_read(p->c, p->buf + p->got, MFD_HELLO_LEN - p->got);
		if (n == -EAGAIN)
			continue;
		if (n <= 0) {
			if (n == 0)
				reject(d, p->c, false, p->got ? MFD_ETRUNC : MFD_ECLOSED,
				       "closed after %u bytes of its hello", p->got);
			else
				reject(d, p->c, false, (int)n, "reading a hello");
			drop_pending(d, i);
			continue;
		}
		p->got += (unsigned)n;
		if (p->got < MFD_HELLO_LEN)
			continue;
		struct mfd__chan *c = p->c;
		uint8_t b[MFD_HELLO_LEN];
		memcpy(b, p->buf, sizeof(b));
		drop_pending(d, i);
		done = hello(d, c, b, now);
	}
	return done;
}

/* Drop what missed its deadline; return the time to the next deadline (ms, -1: none). */
static int expire(struct door *d, uint64_t now)
{
	uint64_t next = 0;
	for (unsigned i = d->np; i-- > 0;) {
		struct pending *p = &d->p[i];
		if (p->deadline_ns && now >= p->deadline_ns) {
			reject(d, p->c, p->got == 0 ? false : true, -ETIMEDOUT,
			       "%u bytes of a hello in %d ms", p->got, d->s->opt.timeout_ms);
			drop_pending(d, i);
		} else if (p->deadline_ns && (!next || p->deadline_ns < next)) {
			next = p->deadline_ns;
		}
	}
	for (unsigned i = 0; i < MAX_CANDIDATES; i++) {
		struct candidate *k = &d->cand[i];
		if (!k->used || !k->deadline_ns)
			continue;
		if (now >= k->deadline_ns)
			drop_candidate(d, k, -ETIMEDOUT, "incomplete at the handshake timeout");
		else if (!next || k->deadline_ns < next)
			next = k->deadline_ns;
	}
	return next ? (int)((next - now + 999999) / 1000000) : -1;
}

static void close_all(struct door *d)
{
	while (d->np) {
		mfd__chan_free(d->p[0].c);
		drop_pending(d, 0);
	}
	for (unsigned i = 0; i < MAX_CANDIDATES; i++)
		for (unsigned k = 0; d->cand[i].used && k < d->cand[i].h.channel_count; k++)
			mfd__chan_free(d->cand[i].chan[k]);
}

int mfd__admit_channels(struct mfd_session *s, struct mfd__listener *l, struct mfd_error *err)
{
	struct door *d = calloc(1, sizeof(*d));
	if (!d)
		return mfd__err_set(err, -ENOMEM, -1, "admission state");
	d->s = s;
	d->l = l;
	d->passed = mfd__listener_passed(l);
	mfd_error_clear(&d->first);
	int rc = 0;
	bool ready[MAX_PENDING];
	for (;;) {
		uint64_t now = mfd__now_ns();
		int wait = expire(d, now);
		if (d->passed && d->first.code) {
			rc = d->first.code;
			mfd__err_copy(err, &d->first);
			break;
		}
		bool accept_ready;
		struct mfd__chan *cs[MAX_PENDING];
		for (unsigned i = 0; i < d->np; i++)
			cs[i] = d->p[i].c;
		rc = mfd__listener_wait(l, cs, (int)d->np, wait, s->cancel_fd, &accept_ready, ready);
		if (rc == MFD_ECANCELED || mfd__session_canceled(s)) {
			rc = mfd__err_set(err, MFD_ECANCELED, -1, "waiting for channels");
			break;
		}
		if (rc && rc != -ETIMEDOUT) {
			mfd__err_set(err, rc, -1, "waiting for channels");
			break;
		}
		now = mfd__now_ns();
		struct candidate *done = read_hellos(d, ready, now);
		while (!done && accept_ready) {	/* everything waiting in the kernel's queue */
			struct mfd__chan *c;
			struct mfd_error e;
			mfd_error_clear(&e);
			rc = mfd__listener_try_accept(l, &c, &e);
			if (rc == -EAGAIN || rc == MFD_ECHANCOUNT)
				break;
			if (rc) {	/* out of descriptors, say: pause, or the loop would spin */
				say(s, "accept: %s", e.msg);
				struct timespec pause = { 0, 50 * 1000000 };
				nanosleep(&pause, NULL);
				break;
			}
			add_pending(d, c, now);
		}
		rc = 0;
		if (done) {
			adopt(d, done);
			break;
		}
		if (d->passed && !mfd__listener_remaining(l) && d->np == 0) {
			/* Every passed descriptor said its hello, and no session is complete. */
			rc = d->first.code ? d->first.code
					   : mfd__err_set(&d->first, MFD_ECHANCOUNT, -1,
							  "too few passed descriptors for the source's "
							  "channels");
			mfd__err_copy(err, &d->first);
			break;
		}
	}
	if (rc)
		close_all(d);
	free(d);
	return rc;
}
