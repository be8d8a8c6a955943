/* migrate/rounds — the precopy machinery shared by live migration (outgoing.c) and live save
 * (save.c): start the dirty tracker, iterate rounds (a full pass, then the pages dirtied since
 * the previous sync), consult the convergence controller after each, apply its throttle, and stop
 * at its decision.  What a round sends and how progress is counted are the caller's ops. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/session.h"

int mfd__rounds_start_tracking(struct mfd_session *s, struct mfd_error *err)
{
	int rc = 0;
	if (s->track_kind == MFD_TRACK_UFFD)
		rc = mfd__tracker_uffd_new(&s->tracker, &s->ram, false, err);
	else if (s->track_kind == MFD_TRACK_KVM)
		rc = mfd__tracker_kvm_new(&s->tracker, &s->ram, s->kvm_fd, s->kvm_slots, s->kvm_nslots,
					  err);
	if (rc)
		return rc;
	s->dirty = calloc(s->ram.n, sizeof(*s->dirty));
	if (!s->dirty)
		return mfd__err_set(err, -ENOMEM, -1, "dirty bitmaps");
	for (uint32_t b = 0; b < s->ram.n; b++) {
		s->dirty[b] = calloc(mfd__bitmap_words(s->ram.blocks[b].npages), sizeof(uint64_t));
		if (!s->dirty[b])
			return mfd__err_set(err, -ENOMEM, -1, "dirty bitmaps");
	}
	return s->tracker->ops->start(s->tracker, err);
}

int mfd__rounds_dirty_sync(struct mfd_session *s, bool keep, uint64_t *bytes, struct mfd_error *err)
{
	uint64_t pages = 0;
	for (uint32_t b = 0; b < s->ram.n; b++) {
		const struct mfd__block *blk = &s->ram.blocks[b];
		if (!keep)
			memset(s->dirty[b], 0, mfd__bitmap_words(blk->npages) * sizeof(uint64_t));
		int rc = s->tracker->ops->sync(s->tracker, b, s->dirty[b], err);
		if (rc)
			return rc;
		pages += mfd__bitmap_count(s->dirty[b], blk->npages);
	}
	__atomic_fetch_add(&s->st_syncs, 1, __ATOMIC_RELAXED);
	*bytes = pages * s->ram.page_size;
	__atomic_store_n(&s->st_remaining, *bytes, __ATOMIC_RELAXED);
	return 0;
}

void mfd__rounds_set_throttle(struct mfd_session *s, unsigned pct)
{
	if (__atomic_load_n(&s->st_throttle, __ATOMIC_RELAXED) == pct)
		return;
	__atomic_store_n(&s->st_throttle, pct, __ATOMIC_RELAXED);
	if (pct > __atomic_load_n(&s->st_throttle_max, __ATOMIC_RELAXED))
		__atomic_store_n(&s->st_throttle_max, pct, __ATOMIC_RELAXED);
	if (s->cb.throttle)
		s->cb.throttle(s->cb.opaque, pct);
}

int mfd__rounds_precopy(struct mfd_session *s, const struct mfd__rounds_ops *ops, uint32_t *round,
			struct mfd_error *err)
{
	struct mfd__converge conv;
	mfd__converge_init(&conv, &s->conv_cfg);
	uint64_t t_round = mfd__now_ns(), t_sync = t_round, done0 = ops->progress(s);
	int rc;
	for (uint32_t r = 0;; r++) {
		__atomic_store_n(&s->st_rounds, (uint64_t)r + 1, __ATOMIC_RELAXED);
		rc = ops->submit(s, r);
		if (rc == 0)
			rc = mfd__pool_sync(s->pool);
		if (rc)
			return rc;
		*round = r + 1;
		uint64_t now = mfd__now_ns(), done = ops->progress(s), dirty;
		if ((rc = mfd__rounds_dirty_sync(s, false, &dirty, err)))
			return rc;
		struct mfd__round info = {
			.sent_bytes = done - done0,
			.send_ns = now - t_round,
			.dirty_bytes = dirty,
			.since_sync_ns = mfd__now_ns() - t_sync,
			.elapsed_ms = (mfd__now_ns() - __atomic_load_n(&s->t_start_ns, __ATOMIC_RELAXED)) /
				      1000000,
		};
		t_sync = mfd__now_ns();
		enum mfd__decision d = mfd__converge_step(&conv, &info);
		__atomic_store_n(&s->st_bandwidth, conv.bandwidth_bps, __ATOMIC_RELAXED);
		__atomic_store_n(&s->st_dirty_rate, conv.dirty_rate_bps, __ATOMIC_RELAXED);
		__atomic_store_n(&s->st_expected_dt, MFD_MIN(conv.expected_downtime_ms, 1ull << 40),
				 __ATOMIC_RELAXED);
		__atomic_store_n(&s->st_eta_ms, conv.eta_ms, __ATOMIC_RELAXED);
		mfd__rounds_set_throttle(s, conv.throttle_pct);
		if (r + 1 < s->knobs.min_rounds)
			d = MFD_DECIDE_CONTINUE;
		if (d == MFD_DECIDE_SWITCHOVER)
			return 0;
		if (d == MFD_DECIDE_FAIL)
			return mfd__err_set(err, MFD_ECONVERGE, -1,
					    "%llu ms: %llu bytes dirty at %llu B/s, %s %llu B/s",
					    (unsigned long long)info.elapsed_ms, (unsigned long long)dirty,
					    (unsigned long long)conv.dirty_rate_bps, ops->verb,
					    (unsigned long long)conv.bandwidth_bps);
		if (mfd__session_canceled(s))
			return MFD_ECANCELED;
		t_round = mfd__now_ns();
		done0 = ops->progress(s);
	}
}

int mfd__rounds_stop(struct mfd_session *s, uint64_t *t_stop_ns, bool *stopped,
		     struct mfd_error *err)
{
	mfd__session_set_status(s, MFD_STATUS_SWITCHOVER);
	*t_stop_ns = mfd__now_ns();
	int rc;
	if (s->cb.stop && (rc = s->cb.stop(s->cb.opaque)))
		return mfd__err_set(err, rc < 0 ? rc : -EIO, -1, "the embedder's stop callback failed");
	*stopped = true;
	uint64_t dirty;
	return mfd__rounds_dirty_sync(s, true, &dirty, err);
}
