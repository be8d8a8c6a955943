/* payload/ram_pages — see ram_pages.h. */
#include <errno.h>
#include <string.h>
#include "payload/codec.h"
#include "payload/ram_pages.h"
#include "pool/pool.h"

/* ---- source ---------------------------------------------------------------------------------- */

/* The job's pages into the worker's batch: the whole span, or its dirty pages. */
static uint32_t fill_batch(struct mfd__ram_xfer *x, const struct mfd__job *j, struct mfd__ram_batch *bt)
{
	struct mfd__ram_job r = mfd__ram_job_get(j);
	uint32_t ps = x->ram->blocks[r.block].page_size, n = 0;
	bt->block_id = r.block;
	bt->zero = 0;
	if (j->flags & MFD_RAM_JOB_SPARSE) {
		const uint64_t *map = r.map;
		uint64_t end = r.first + r.count;
		for (uint64_t p = mfd__bitmap_next_set(map, end, r.first); p < end && n < MFD_MAX_BATCH_PAGES;
		     p = mfd__bitmap_next_set(map, end, p + 1))
			bt->offsets[n++] = p * ps;
	} else {
		for (; n < r.count && n < MFD_MAX_BATCH_PAGES; n++)
			bt->offsets[n] = (r.first + n) * ps;
	}
	bt->normal = n;
	return n;
}

static int ram_send(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	struct mfd__ram_xfer *x = p->ctx;
	struct mfd__ram_batch *bt = mfd__worker_state(w, p);
	if (fill_batch(x, j, bt) == 0)
		return 0;	/* a dirty span whose pages were all clean */
	const struct mfd__block *b = &x->ram->blocks[bt->block_id];
	uint32_t ps = b->page_size;
	mfd__ram_batch_classify(bt, b->host, ps, x->zero_detect);
	struct mfd__frame f = { .type = MFD_PKT_RAM, .round = j->round, .meta = w->meta };
	f.meta_len = mfd__ram_meta_encode(w->meta, bt);
	struct iovec *data = w->iov + MFD_FRAME_IOV_HEAD;
	int n = mfd__ram_batch_iov(bt, b->host, ps, data), rc;
	MFD_GUEST_READS_BEGIN();
	rc = w->codec->ops->encode(w->codec, data, n, &data, &n, &f.data_len);
	MFD_GUEST_READS_END();
	if (rc) {
		mfd__errbox_set(w->errbox, rc, w->chan_id, "encoding RAM packet %llu",
				(unsigned long long)w->seq);
		return rc;
	}
	if (mfd__ratelimit_wait(x->rate, MFD_PKT_HDR_LEN + f.meta_len + f.data_len, &w->errbox->code))
		return mfd__errbox_code(w->errbox);
	uint64_t seq = w->seq;
	MFD_GUEST_READS_BEGIN();
	rc = mfd__frame_sendv(w->chan, &w->seq, &f, data - MFD_FRAME_IOV_HEAD, n);
	MFD_GUEST_READS_END();
	if (rc) {
		mfd__errbox_set(w->errbox, rc, w->chan_id, "sending RAM packet %llu",
				(unsigned long long)seq);
		return rc;
	}
	__atomic_fetch_add(&x->normal_pages, bt->normal, __ATOMIC_RELAXED);
	__atomic_fetch_add(&x->zero_pages, bt->zero, __ATOMIC_RELAXED);
	return 0;
}

/* Queue spans of the pages set in map: up to span_pages set pages each (count_set), or spans of
 * span_pages pages that start at a set page (large positional transfers), clean stretches
 * skipped. */
static int plan_sparse(struct mfd__ram_xfer *x, struct mfd__job *j, uint32_t b, const uint64_t *map,
		       struct mfd__pool *pool, uint64_t span_pages, bool count_set)
{
	uint64_t n = x->ram->blocks[b].npages;
	uint64_t pg = mfd__bitmap_next_set(map, n, 0);
	int rc = 0;
	j->flags = MFD_RAM_JOB_SPARSE;
	while (pg < n && rc == 0) {
		uint64_t first = pg, last = pg;
		if (count_set) {
			for (uint64_t k = 0; pg < n && k < span_pages; k++) {
				last = pg;
				pg = mfd__bitmap_next_set(map, n, pg + 1);
			}
		} else {
			last = MFD_MIN(first + span_pages, n) - 1;
			pg = mfd__bitmap_next_set(map, n, last + 1);
		}
		struct mfd__ram_job r = { .block = b, .first = first, .count = last - first + 1,
					  .map = map };
		mfd__ram_job_set(j, &r);
		rc = mfd__pool_submit(pool, j);
	}
	return rc;
}

/* The runs of pages clear in map, as zero ranges for the payload that sends them. */
static int plan_zero_ranges(struct mfd__ram_xfer *x, const struct mfd__plan *plan, uint32_t b,
			    const uint64_t *map)
{
	uint64_t n = x->ram->blocks[b].npages;
	struct mfd__job j = { .payload = (uint16_t)x->zero_payload, .verb = plan->verb,
			      .round = plan->round };
	int rc = 0;
	for (uint64_t pg = mfd__bitmap_next_clear(map, n, 0); pg < n && rc == 0;) {
		uint64_t end = mfd__bitmap_next_set(map, n, pg);
		struct mfd__ram_job r = { .block = b, .first = pg, .count = end - pg };
		mfd__ram_job_set(&j, &r);
		rc = mfd__pool_submit(plan->pool, &j);
		pg = mfd__bitmap_next_clear(map, n, end);
	}
	return rc;
}

int mfd__ram_plan(struct mfd__ram_xfer *x, uint16_t payload, const struct mfd__plan *plan,
		  uint64_t span_pages, bool count_dirty)
{
	struct mfd__job j = { .payload = payload, .verb = plan->verb, .round = plan->round };
	int rc = 0;
	for (uint32_t b = 0; b < x->ram->n && rc == 0; b++) {
		uint64_t n = x->ram->blocks[b].npages;
		if (plan->round > 0) {	/* later passes: the pages dirtied since the previous */
			rc = plan_sparse(x, &j, b, x->dirty[b], plan->pool, span_pages, count_dirty);
			continue;
		}
		if (x->populated) {	/* the first pass: what may hold data, and zero runs */
			rc = plan_sparse(x, &j, b, x->populated[b], plan->pool, span_pages, count_dirty);
			if (rc == 0 && x->zero_payload >= 0)
				rc = plan_zero_ranges(x, plan, b, x->populated[b]);
			else if (rc == 0)	/* nothing to send for them (a save: holes) */
				__atomic_fetch_add(&x->zero_pages, n - mfd__bitmap_count(x->populated[b], n),
						   __ATOMIC_RELAXED);
			continue;
		}
		j.flags = 0;	/* every page */
		for (uint64_t pg = 0; pg < n && rc == 0; pg += span_pages) {
			struct mfd__ram_job r = { .block = b, .first = pg,
						  .count = MFD_MIN(span_pages, n - pg) };
			mfd__ram_job_set(&j, &r);
			rc = mfd__pool_submit(plan->pool, &j);
		}
	}
	return rc;
}

static int ram_stream_plan(const struct mfd__payload *p, const struct mfd__plan *plan)
{
	struct mfd__ram_xfer *x = p->ctx;
	return mfd__ram_plan(x, p->index, plan, x->batch_pages, true);
}

/* ---- destination ----------------------------------------------------------------------------- */

static int ram_recv(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__pkt_hdr *h,
		    const uint8_t *meta)
{
	struct mfd__ram_xfer *x = p->ctx;
	struct mfd__ram_batch *bt = mfd__worker_state(w, p);
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd__ram_meta_decode(meta, h->meta_len, h->data_len, &x->limits, bt, w->chan_id, &e);
	if (rc == 0 && h->round != w->round)
		rc = mfd__err_set(&e, MFD_EROUND, w->chan_id, "RAM packet %llu of round %u in round %u",
				  (unsigned long long)h->seq, h->round, w->round);
	if (rc) {
		mfd__errbox_setv(w->errbox, &e);
		return rc;
	}
	struct mfd__block *b = &x->ram->blocks[x->map[bt->block_id]];
	uint32_t ps = b->page_size;
	int n = mfd__ram_batch_iov(bt, b->host, ps, w->iov);
	if ((rc = w->codec->ops->decode(w->codec, w->chan, h->data_len, w->iov, n, &e))) {
		mfd__err_set(&e, rc, w->chan_id, "the pages of packet %llu", (unsigned long long)h->seq);
		mfd__errbox_setv(w->errbox, &e);
		return rc;
	}
	mfd__ram_batch_apply_zero(bt, b->host, ps, b->received);
	if (b->received)
		mfd__ram_batch_mark_received(bt, ps, b->received);
	__atomic_fetch_add(&x->normal_pages, bt->normal, __ATOMIC_RELAXED);
	__atomic_fetch_add(&x->zero_pages, bt->zero, __ATOMIC_RELAXED);
	return 0;
}

/* ---- zero ranges ------------------------------------------------------------------------------ */

static int zero_send(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	struct mfd__ram_xfer *x = p->ctx;
	struct mfd__ram_job r = mfd__ram_job_get(j);
	uint8_t meta[MFD_ZERO_META_LEN];
	struct mfd__zero_range z = { .block_id = r.block, .first = r.first, .count = r.count };
	mfd__zero_meta_encode(meta, &z);
	int rc = mfd__frame_send(w->chan, &w->seq, MFD_PKT_ZERO, j->round, meta, sizeof(meta));
	if (rc) {
		mfd__errbox_set(w->errbox, rc, w->chan_id, "sending %llu zero pages of block %u",
				(unsigned long long)r.count, r.block);
		return rc;
	}
	__atomic_fetch_add(&x->zero_pages, r.count, __ATOMIC_RELAXED);
	return 0;
}

/* Make [first, first + count) of b read as zero, touching only pages that may not. */
static void apply_zero_range(struct mfd__block *b, uint64_t first, uint64_t count)
{
	uint64_t ps = b->page_size, end = first + count;
	for (uint64_t pg = first; pg < end;) {
		uint64_t word = pg / 64, lo = pg % 64, hi = MFD_MIN(64, lo + (end - pg));
		uint64_t mask = (hi - lo == 64 ? ~0ull : ((1ull << (hi - lo)) - 1) << lo);
		/* A fresh block: pages never received are still zero and stay untouched; a page
		 * received before (a hostile or odd source) is cleared.  Otherwise: clear what is
		 * not zero. */
		uint64_t written = b->received ? __atomic_fetch_or(&b->received[word], mask,
								   __ATOMIC_RELAXED) & mask : mask;
		for (uint64_t k = lo; written && k < hi; k++) {
			if (!((written >> k) & 1))
				continue;
			uint8_t *page = b->host + (word * 64 + k) * ps;
			if (!mfd__is_zero(page, ps))
				memset(page, 0, ps);
		}
		pg = word * 64 + hi;
	}
}

static int zero_recv(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__pkt_hdr *h,
		     const uint8_t *meta)
{
	struct mfd__ram_xfer *x = p->ctx;
	struct mfd__zero_range z;
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd__zero_meta_decode(meta, h->meta_len, &x->limits, &z, w->chan_id, &e);
	if (rc == 0 && h->round != w->round)
		rc = mfd__err_set(&e, MFD_EROUND, w->chan_id, "ZERO packet %llu of round %u in round %u",
				  (unsigned long long)h->seq, h->round, w->round);
	if (rc) {
		mfd__errbox_setv(w->errbox, &e);
		return rc;
	}
	apply_zero_range(&x->ram->blocks[x->map[z.block_id]], z.first, z.count);
	__atomic_fetch_add(&x->zero_pages, z.count, __ATOMIC_RELAXED);
	return 0;
}

/* ---- digest ---------------------------------------------------------------------------------- */

#define DIGEST_CHUNK_PAGES 512

int mfd__ram_digest_span(struct mfd__ram_xfer *x, const struct mfd__job *j)
{
	struct mfd__ram_job r = mfd__ram_job_get(j);
	const struct mfd__block *b = &x->ram->blocks[r.block];
	uint64_t sum = 0, ps = b->page_size;
	/* Seeds tie each page digest to its position, so a page landing at the wrong offset or in
	 * the wrong block changes the total.  The seed uses the block's position in the source's
	 * table (r.tag), which both sides know, not the local index. */
	for (uint64_t i = r.first; i < r.first + r.count; i++)
		sum += mfd_digest(b->host + i * ps, ps, (uint64_t)r.tag * 0x100000000ull + i);
	__atomic_fetch_add(&x->digest, sum, __ATOMIC_RELAXED);
	return 0;
}

static int ram_digest_job(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	(void)w;
	return mfd__ram_digest_span(p->ctx, j);
}

int mfd__ram_digest(struct mfd__ram_xfer *x, const struct mfd__payload *p, struct mfd__pool *pool,
		    const uint32_t *order, uint32_t n)
{
	__atomic_store_n(&x->digest, 0, __ATOMIC_RELAXED);
	struct mfd__job j = { .payload = p->index, .verb = MFD_JOB_DIGEST };
	for (uint32_t k = 0; k < n; k++) {
		const struct mfd__block *b = &x->ram->blocks[order[k]];
		for (uint64_t pg = 0; pg < b->npages; pg += DIGEST_CHUNK_PAGES) {
			struct mfd__ram_job r = { .block = order[k], .tag = k, .first = pg,
						  .count = MFD_MIN(DIGEST_CHUNK_PAGES, b->npages - pg) };
			mfd__ram_job_set(&j, &r);
			int rc = mfd__pool_submit(pool, &j);
			if (rc)
				return rc;
		}
	}
	return mfd__pool_sync(pool);
}

const struct mfd__payload_ops mfd__ram_pages_ops = {
	.name = "ram",
	.pkt_type = MFD_PKT_RAM,
	.worker_state_size = sizeof(struct mfd__ram_batch),
	.job = { [MFD_JOB_SEND] = ram_send, [MFD_JOB_DIGEST] = ram_digest_job },
	.recv = ram_recv,
	.plan = ram_stream_plan,
};

const struct mfd__payload_ops mfd__ram_zero_ops = {
	.name = "ram-zero",
	.pkt_type = MFD_PKT_ZERO,
	.job = { [MFD_JOB_SEND] = zero_send },
	.recv = zero_recv,
};
