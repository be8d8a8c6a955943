/* migrate/runtime — the machinery every role shares: channels, payloads, workers and their
 * pool, the failure path, the commit, and the end of a run.
 *
 * The failure path (docs/design.md, "failure semantics"): the first failure is recorded (first
 * error wins), the peer is told with an ERROR record on the main channel (best effort, never
 * blocking), every channel is shut down so that no thread stays blocked in I/O, the stream's
 * barrier is broken and the pool stopped.  After the commit nothing fails any more. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "migrate/session.h"

bool mfd__session_canceled(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	bool c = s->canceled;
	pthread_mutex_unlock(&s->lock);
	return c;
}

void mfd__session_set_status(struct mfd_session *s, int status)
{
	__atomic_store_n(&s->st.status, status, __ATOMIC_RELEASE);
	if (s->cb.event)	/* cb is set before the run, then read-only */
		s->cb.event(s->cb.opaque, MFD_EVENT_STATUS, (uint64_t)status);
}

void mfd__session_round_begin(struct mfd_session *s, uint64_t round, uint64_t bytes)
{
	MFD_ST_SET(s, round_start_pages, __atomic_load_n(&s->ramx.normal_pages, __ATOMIC_RELAXED) +
						 __atomic_load_n(&s->ramx.zero_pages, __ATOMIC_RELAXED));
	MFD_ST_SET(s, round_bytes, bytes);
	MFD_ST_SET(s, rounds, round);
	if (s->cb.event)
		s->cb.event(s->cb.opaque, MFD_EVENT_ROUND, round);
}

bool mfd__session_configurable(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	bool ok = !s->started && s->nchan == 0 && !s->priv;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

void mfd__session_shutdown_all(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i <= MFD_MAX_CHANNELS; i++)
		mfd__chan_shutdown(s->chan[i]);
	pthread_mutex_unlock(&s->lock);
}

void mfd__session_commit(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	s->committed = true;
	pthread_mutex_unlock(&s->lock);
}

bool mfd__session_committed(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	bool c = s->committed;
	pthread_mutex_unlock(&s->lock);
	return c;
}

bool mfd__transport_error(int code)
{
	return code == -EPIPE || code == -ECONNRESET || code == MFD_ECLOSED || code == MFD_ETRUNC ||
	       code == -EIO || code == -ESHUTDOWN || code == -ENOTCONN;
}

void mfd__session_peer_error(struct mfd_session *s, const struct mfd_error *e)
{
	pthread_mutex_lock(&s->errbox.lock);
	if (s->errbox.err.code == 0 || mfd__transport_error(s->errbox.err.code)) {
		s->errbox.err = *e;
		__atomic_store_n(&s->errbox.code, e->code, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&s->errbox.lock);
}

int mfd__session_send_main_buf(struct mfd_session *s, uint8_t type, const void *meta,
			       uint32_t len, const void *data, uint32_t data_len)
{
	pthread_mutex_lock(&s->main_tx_lock);
	int rc = mfd__frame_send_buf(s->chan[0], &s->main_tx_seq, type, 0, meta, len, data, data_len);
	pthread_mutex_unlock(&s->main_tx_lock);
	return rc;
}

int mfd__session_send_main(struct mfd_session *s, uint8_t type, const void *meta, uint32_t len)
{
	return mfd__session_send_main_buf(s, type, meta, len, NULL, 0);
}

/* First failure: tell the peer why (best effort: the main channel may be the thing that broke),
 * then shut every channel down so no thread stays blocked in I/O. */
static void stop_on_failure(struct mfd_session *s)
{
	pthread_mutex_lock(&s->lock);
	bool first = !s->stopping;
	s->stopping = true;
	bool tell = first && s->main_ready && s->chan[0];
	pthread_mutex_unlock(&s->lock);
	/* Never blocking: a failure must not wait on a peer that stopped reading (cancel would
	 * hang), and if another thread is mid-write on the main channel the record cannot go in
	 * between. */
	if (tell && pthread_mutex_trylock(&s->main_tx_lock) == 0) {
		struct mfd_error e;
		mfd__errbox_get(&s->errbox, &e);
		mfd__frame_try_send_error(s->chan[0], &s->main_tx_seq, e.code ? e.code : MFD_EREJECTED,
					  e.msg);
		pthread_mutex_unlock(&s->main_tx_lock);
	}
	mfd__session_shutdown_all(s);
	mfd__stream_abort(s);
}

int mfd__session_fail(struct mfd_session *s, int code, int chan, const char *fmt, ...)
{
	if (mfd__session_committed(s))	/* the migration is done: what fails now is teardown */
		return code;
	char msg[MFD_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mfd__errbox_set(&s->errbox, code, chan, "%s", msg);
	stop_on_failure(s);
	/* Under the lock, so the run thread cannot destroy the pool meanwhile (finish() takes it
	 * away under the same lock).  Lock order: s->lock, then the pool's. */
	pthread_mutex_lock(&s->lock);
	if (s->pool)
		mfd__pool_stop(s->pool, code);
	pthread_mutex_unlock(&s->lock);
	return code;
}

int mfd__session_fail_err(struct mfd_session *s, const struct mfd_error *e)
{
	if (!e->code)
		return 0;
	mfd__errbox_setv(&s->errbox, e);
	return mfd__session_fail(s, e->code, e->channel, "%s", e->msg);
}

void mfd__session_add_chan(struct mfd_session *s, unsigned id, struct mfd__chan *c)
{
	c->id = (int)id;
	c->hook = s->opt.knobs.hook;
	c->hook_ctx = s->opt.knobs.hook_ctx;
	pthread_mutex_lock(&s->lock);
	s->chan[id] = c;
	if (id + 1 > s->nchan)
		s->nchan = id + 1;	/* stats read it; it also makes the options read-only */
	bool canceled = s->canceled;
	pthread_mutex_unlock(&s->lock);
	if (canceled)
		mfd__chan_shutdown(c);
}

int mfd__session_add_payload(struct mfd_session *s, const struct mfd__payload_ops *ops, void *ctx)
{
	if (s->pool)
		return MFD_ESTATE;	/* workers size their state from the table */
	return mfd__payloads_add(&s->payloads, ops, ctx);
}

/* ---- workers ------------------------------------------------------------------------------- */

/* The pool's job function for every role: the payload table decides. */
static int worker_job(void *owner, unsigned index, void *job)
{
	struct mfd_session *s = owner;
	return mfd__payload_run(&s->payloads, &s->workers[index], job);
}

static void worker_drop(void *owner, void *job)
{
	struct mfd_session *s = owner;
	mfd__payload_drop(&s->payloads, job);
}

static void pool_on_fail(void *owner)
{
	stop_on_failure(owner);
}

static int init_worker(struct mfd_session *s, struct mfd__worker *w, unsigned i)
{
	w->index = i;
	w->chan = s->chan[i + 1];
	w->chan_id = (int)i + 1;
	w->errbox = &s->errbox;
	w->meta = malloc(MFD_PROTO_MAX_META);
	w->iov = malloc(MFD_WORKER_IOVS * sizeof(struct iovec));
	w->state = calloc(s->payloads.n ? s->payloads.n : 1, sizeof(void *));
	if (!w->meta || !w->iov || !w->state)
		return -ENOMEM;
	for (unsigned k = 0; k < s->payloads.n; k++) {
		size_t n = s->payloads.v[k].ops->worker_state_size;
		if (n && !(w->state[k] = calloc(1, n)))
			return -ENOMEM;
	}
	if (s->nego.codec)
		return s->nego.codec->create(&w->codec, (size_t)s->nego.batch_pages * s->ram.page_size);
	return 0;
}

int mfd__session_start_workers(struct mfd_session *s, unsigned n, struct mfd_error *err)
{
	struct mfd__worker *ws = calloc(n, sizeof(*ws));
	if (!ws)
		return mfd__err_set(err, -ENOMEM, -1, "workers");
	/* Published first, so that free() releases whatever init allocated. */
	pthread_mutex_lock(&s->lock);
	s->workers = ws;
	s->nworkers = n;
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < n; i++) {
		int rc = init_worker(s, &ws[i], i);
		if (rc)
			return mfd__err_set(err, rc, -1, "worker %u", i);
	}
	struct mfd__pool_cfg cfg = {
		.workers = n,
		.job_size = sizeof(struct mfd__job),
		.queue_depth = s->opt.queue_depth,
		.fn = worker_job,
		.drop = worker_drop,
		.owner = s,
		.on_fail = pool_on_fail,
		.errbox = &s->errbox,
		.cpu_ns = &s->st.cpu_ns,
	};
	struct mfd__pool *p;
	int rc = mfd__pool_create(&p, &cfg);
	if (rc)
		return mfd__err_set(err, rc, -1, "starting %u workers", n);
	pthread_mutex_lock(&s->lock);
	s->pool = p;
	bool canceled = s->canceled;
	pthread_mutex_unlock(&s->lock);
	if (canceled)
		mfd__pool_fail(p, MFD_ECANCELED);
	return 0;
}

/* ---- the end of a run ------------------------------------------------------------------------ */

int mfd__session_finish(struct mfd_session *s, int rc, struct mfd_error *err)
{
	/* Stop and join the workers before reporting, so nothing runs after run() returns. */
	bool committed = mfd__session_committed(s);
	if (committed)
		rc = 0;	/* errors after the commit (teardown, a late cancel) change nothing */
	else if (rc == 0 && mfd__errbox_code(&s->errbox))
		rc = mfd__errbox_code(&s->errbox);
	if (rc)
		mfd__session_fail(s, rc, -1, "%s", s->role->name);
	pthread_mutex_lock(&s->lock);
	struct mfd__pool *pool = s->pool;
	s->pool = NULL;	/* unpublished first: mfd__session_fail uses it under the lock */
	pthread_mutex_unlock(&s->lock);
	mfd__pool_destroy(pool);
	MFD_ST_SET(s, t_end_ns, mfd__now_ns());
	if (rc) {
		struct mfd_error e;
		mfd__errbox_get(&s->errbox, &e);
		mfd__err_copy(err, &e);
		if (e.code)
			rc = e.code;	/* the first error is the cause; later ones are its echoes */
		/* "cancelled" only when this side was canceled; a peer's cancel is a failure here. */
		mfd__session_set_status(s, mfd__session_canceled(s) ? MFD_STATUS_CANCELLED
							      : MFD_STATUS_FAILED);
		return rc;
	}
	mfd__session_set_status(s, MFD_STATUS_COMPLETED);
	return 0;
}
