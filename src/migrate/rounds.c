/* migrate/rounds — the precopy driver, shared by live migration (outgoing.c) and live save
 * (save.c), with and without a dirty tracker.
 *
 * The run: start the workers, let the sink begin (the stream sends its block table), start the
 * tracker, then rounds: every payload queues its jobs for the round (RAM: a full pass, then the
 * pages dirtied since the previous sync), the sink ends the round (the stream's SYNC markers),
 * the pool drains, the tracker's dirty pages become the next round's set and the convergence
 * controller decides: another round (maybe throttling the guest), switchover, or failure.  At
 * switchover the embedder stops the guest, a final sync is merged into the set not yet sent,
 * and the final round is queued; without a tracker the only round is the final one.  The sink
 * then finishes (device states, drain, digest, the stream's END and COMMIT, the file's metadata)
 * and concludes.
 *
 * Whatever happened, the source goes on: tracking stops (memory writable again), the throttle is
 * lifted, and a guest stopped for the switchover is resumed unless the run succeeded. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/session.h"
#include "ram/resident.h"

/* ---- tracking --------------------------------------------------------------------------------- */

static int start_tracking(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__tracking *t = &s->track;
	int rc = 0;
	if (t->kind == MFD_TRACK_UFFD)
		rc = mfd__tracker_uffd_new(&t->tracker, &s->ram, false, err);
	else if (t->kind == MFD_TRACK_KVM)
		rc = mfd__tracker_kvm_new(&t->tracker, &s->ram, t->kvm_fd, t->kvm_slots, t->kvm_nslots,
					  err);
	if (rc)
		return rc;
	t->dirty = calloc(s->ram.n, sizeof(*t->dirty));
	if (!t->dirty)
		return mfd__err_set(err, -ENOMEM, -1, "dirty bitmaps");
	for (uint32_t b = 0; b < s->ram.n; b++) {
		t->dirty[b] = calloc(mfd__bitmap_words(s->ram.blocks[b].npages), sizeof(uint64_t));
		if (!t->dirty[b])
			return mfd__err_set(err, -ENOMEM, -1, "dirty bitmaps");
	}
	s->ramx.dirty = t->dirty;
	return t->tracker->ops->start(t->tracker, err);
}

void mfd__tracking_free(struct mfd_session *s)
{
	struct mfd__tracking *t = &s->track;
	mfd__tracker_destroy(t->tracker);
	if (t->dirty)
		for (uint32_t i = 0; i < s->ram.n; i++)
			free(t->dirty[i]);
	free(t->dirty);
	if (t->populated)
		for (uint32_t i = 0; i < s->ram.n; i++)
			free(t->populated[i]);
	free(t->populated);
	free(t->kvm_slots);
	memset(t, 0, sizeof(*t));
}

/* The pages written since the last sync into the dirty bitmaps (cleared first unless `keep`,
 * which merges a final sync into a set not yet sent); *bytes: the dirty total. */
static int dirty_sync(struct mfd_session *s, bool keep, uint64_t *bytes, struct mfd_error *err)
{
	uint64_t pages = 0;
	for (uint32_t b = 0; b < s->ram.n; b++) {
		const struct mfd__block *blk = &s->ram.blocks[b];
		if (!keep)
			memset(s->track.dirty[b], 0, mfd__bitmap_words(blk->npages) * sizeof(uint64_t));
		int rc = s->track.tracker->ops->sync(s->track.tracker, b, s->track.dirty[b], err);
		if (rc)
			return rc;
		pages += mfd__bitmap_count(s->track.dirty[b], blk->npages);
	}
	MFD_ST_ADD(s, syncs, 1);
	*bytes = pages * s->ram.page_size;
	MFD_ST_SET(s, remaining, *bytes);
	return 0;
}

static void set_throttle(struct mfd_session *s, unsigned pct)
{
	if (MFD_ST_GET(s, throttle) == pct)
		return;
	MFD_ST_SET(s, throttle, pct);
	if (pct > MFD_ST_GET(s, throttle_max))
		MFD_ST_SET(s, throttle_max, pct);
	if (s->cb.throttle)
		s->cb.throttle(s->cb.opaque, pct);
}

/* Which pages may hold data (ram/resident.c): the others are neither read nor sent.  Scanned
 * before the tracker is armed, and with a tracker once more after: a page written in between has
 * a page table entry there (present, or a swap or migration entry), and the tracker reports any
 * later write.  The second scan skips the markers a uffd-wp tracker leaves on untouched pages. */
static int populated_scan(struct mfd_session *s, bool again, struct mfd_error *err)
{
	struct mfd__ram_xfer *x = &s->ramx;
	if (!s->opt.zero_detect)
		return 0;	/* every page is to be sent with its data */
	if (!again) {
		s->track.populated = calloc(s->ram.n, sizeof(*s->track.populated));
		if (!s->track.populated)
			return mfd__err_set(err, -ENOMEM, -1, "populated-page bitmaps");
		for (uint32_t b = 0; b < s->ram.n; b++) {
			s->track.populated[b] = calloc(mfd__bitmap_words(s->ram.blocks[b].npages), 8);
			if (!s->track.populated[b])
				return mfd__err_set(err, -ENOMEM, -1, "populated-page bitmaps");
		}
	}
	for (uint32_t b = 0; b < s->ram.n; b++)
		mfd__ram_populated(&s->ram.blocks[b],
				   again && s->track.tracker->ops->marks_untouched,
				   s->track.populated[b]);
	x->populated = s->track.populated;
	return 0;
}

/* ---- rounds ------------------------------------------------------------------------------------ */

/* Every payload queues its jobs for round r. */
static int plan_round(struct mfd_session *s, const struct mfd__sink_ops *sink, uint32_t r,
		      bool final)
{
	struct mfd__plan plan = { .pool = s->pool, .verb = sink->job_verb, .round = r, .final = final };
	int rc = 0;
	for (unsigned i = 0; i < s->payloads.n && rc == 0; i++)
		if (s->payloads.v[i].ops->plan)
			rc = s->payloads.v[i].ops->plan(&s->payloads.v[i], &plan);
	return rc;
}

/* Iterate rounds until the convergence controller says switch over (0) or fail (< 0).  *round:
 * the rounds done, i.e. the round whose pages the dirty bitmaps now hold (not yet sent). */
static int precopy(struct mfd_session *s, const struct mfd__sink_ops *sink, uint32_t *round,
		   struct mfd_error *err)
{
	struct mfd__converge conv;
	mfd__converge_init(&conv, &s->opt.conv);
	uint64_t t_round = mfd__now_ns(), t_sync = t_round, done0 = sink->progress(s);
	uint64_t round_bytes = s->ram.total_bytes;	/* the first round is a full pass */
	int rc;
	for (uint32_t r = 0;; r++) {
		mfd__session_round_begin(s, (uint64_t)r + 1, round_bytes);
		rc = plan_round(s, sink, r, false);
		if (rc == 0 && sink->end_round)
			rc = sink->end_round(s, r);
		if (rc == 0)
			rc = mfd__pool_sync(s->pool);
		if (rc)
			return rc;
		*round = r + 1;
		uint64_t now = mfd__now_ns(), done = sink->progress(s), dirty;
		if ((rc = dirty_sync(s, false, &dirty, err)))
			return rc;
		struct mfd__round info = {
			.sent_bytes = done - done0,
			.send_ns = now - t_round,
			.dirty_bytes = dirty,
			.since_sync_ns = mfd__now_ns() - t_sync,
			.elapsed_ms = (mfd__now_ns() - MFD_ST_GET(s, t_start_ns)) / 1000000,
		};
		t_sync = mfd__now_ns();
		/* The limit in force now: an operator may change it while we run. */
		conv.cfg.downtime_ms = __atomic_load_n(&s->downtime_ms, __ATOMIC_RELAXED);
		enum mfd__decision d = mfd__converge_step(&conv, &info);
		MFD_ST_SET(s, bandwidth, conv.bandwidth_bps);
		MFD_ST_SET(s, dirty_rate, conv.dirty_rate_bps);
		MFD_ST_SET(s, expected_dt, MFD_MIN(conv.expected_downtime_ms, 1ull << 40));
		MFD_ST_SET(s, eta_ms, conv.eta_ms);
		set_throttle(s, conv.throttle_pct);
		if (r + 1 < s->opt.knobs.min_rounds)
			d = MFD_DECIDE_CONTINUE;
		if (d == MFD_DECIDE_SWITCHOVER)
			return 0;
		if (d == MFD_DECIDE_FAIL)
			return mfd__err_set(err, MFD_ECONVERGE, -1,
					    "%llu ms: %llu bytes dirty at %llu B/s, %s %llu B/s",
					    (unsigned long long)info.elapsed_ms, (unsigned long long)dirty,
					    (unsigned long long)conv.dirty_rate_bps, sink->verb,
					    (unsigned long long)conv.bandwidth_bps);
		if (mfd__session_canceled(s))
			return MFD_ECANCELED;
		t_round = mfd__now_ns();
		done0 = sink->progress(s);
		round_bytes = dirty;
	}
}

/* Switchover: stop the guest (*stopped once it is, so failure paths resume it) and merge the
 * final dirty sync into the set still to send (*bytes: its size). */
static int stop_guest(struct mfd_session *s, uint64_t *t_stop_ns, bool *stopped, uint64_t *bytes,
		      struct mfd_error *err)
{
	mfd__session_set_status(s, MFD_STATUS_SWITCHOVER);
	*t_stop_ns = mfd__now_ns();
	int rc;
	if (s->cb.stop && (rc = s->cb.stop(s->cb.opaque)))
		return mfd__err_set(err, rc < 0 ? rc : -EIO, -1, "the embedder's stop callback failed");
	*stopped = true;
	return dirty_sync(s, true, bytes, err);
}

/* ---- the run ------------------------------------------------------------------------------------ */

int mfd__precopy_run(struct mfd_session *s, const struct mfd__sink_ops *sink)
{
	struct mfd_error e;
	mfd_error_clear(&e);
	bool live = s->track.kind != MFD_TRACK_NONE, stopped = false;
	uint64_t t_stop = 0, final_bytes = s->ram.total_bytes;
	uint32_t round = 0;
	int rc;
	if ((rc = mfd__session_start_workers(s, s->nchan - 1, &e)) || (rc = sink->begin(s, &e)))
		goto out;
	if ((rc = populated_scan(s, false, &e)))
		goto out;
	if (live && ((rc = start_tracking(s, &e)) || (rc = populated_scan(s, true, &e))))
		goto out;
	MFD_ST_SET(s, t_setup_ns, mfd__now_ns());
	mfd__session_set_status(s, MFD_STATUS_ACTIVE);
	if (live) {
		if ((rc = precopy(s, sink, &round, &e)) ||
		    (sink->settle && (rc = sink->settle(s, round))) ||
		    (rc = stop_guest(s, &t_stop, &stopped, &final_bytes, &e)))
			goto out;
	}
	mfd__session_round_begin(s, (uint64_t)round + 1, final_bytes);
	if ((rc = plan_round(s, sink, round, true)) == 0)
		rc = sink->finish(s, round, &e);
out:
	if (rc) {
		if (e.code)
			mfd__errbox_setv(&s->errbox, &e);
		mfd__session_fail(s, rc, -1, "%s", s->role->name);
	}
	rc = sink->conclude(s, rc);
	if (stopped && rc == 0)	/* stored before the status that publishes it (finish) */
		MFD_ST_SET(s, downtime_ms, (mfd__now_ns() - t_stop) / 1000000);
	/* Whatever happened, the guest goes on: tracking off, throttle lifted, and resumed if
	 * this run stopped it and failed. */
	if (s->track.tracker)
		s->track.tracker->ops->stop(s->track.tracker);
	set_throttle(s, 0);
	if (stopped && rc && s->cb.resume)
		s->cb.resume(s->cb.opaque);
	return rc;	/* the error's details are in the errbox: finish() reports them */
}

int mfd__precopy_digest(struct mfd_session *s)
{
	uint32_t *order = malloc(s->ram.n * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->ram.n; i++)
		order[i] = i;
	int rc = mfd__ram_digest(&s->ramx, &s->payloads.v[s->ram_payload], s->pool, order, s->ram.n);
	free(order);
	return rc;
}
