/* mapped/ram_file — see ram_file.h. */
#include <errno.h>
#include <string.h>
#include "chan/chan.h"
#include "mapped/ram_file.h"
#include "pool/pool.h"

struct run {
	uint64_t first, count;	/* pages */
};

/* CRC-32C of pages [first, first + count) of a block, several pages at a time. */
static void sum_pages(const struct mfd__block *b, uint64_t first, uint64_t count, uint32_t *out)
{
	uint64_t idx[64];
	for (uint64_t done = 0; done < count;) {
		size_t n = (size_t)MFD_MIN(count - done, (uint64_t)MFD_ARRAY_SIZE(idx));
		for (size_t i = 0; i < n; i++)
			idx[i] = first + done + i;
		mfd__crc32c_pages(b->host, b->page_size, idx, n, out + done);
		done += n;
	}
}

/* ---- save ------------------------------------------------------------------------------------ */

static int write_run(struct mfd__worker *w, const struct mfd__ram_file *f, unsigned bi,
		     const struct run *r)
{
	const struct mfd__block *b = &f->x->ram->blocks[bi];
	uint64_t ps = b->page_size, len = r->count * ps;
	if (mfd__errbox_code(w->errbox))
		return mfd__errbox_code(w->errbox);	/* canceled or failed elsewhere */
	if (mfd__ratelimit_wait(f->x->rate, len, &w->errbox->code))
		return mfd__errbox_code(w->errbox);
	struct iovec v = { b->host + r->first * ps, (size_t)len };
	MFD_GUEST_READS_BEGIN();
	/* A live guest may change a page between its checksum and its write: the tracker then
	 * reports it and a later pass (at the latest the final one, guest stopped) writes both
	 * again, so the file's last copy and its checksum agree. */
	if (f->sums)
		sum_pages(b, r->first, r->count, f->sums[bi] + r->first);
	int rc = mfd__chan_pwritev(w->chan, &v, 1, (int64_t)(f->layout[bi].pages_offset + r->first * ps));
	MFD_GUEST_READS_END();
	if (rc)
		mfd__errbox_set(w->errbox, rc, w->chan_id, "writing %llu pages of block '%s' at page %llu",
				(unsigned long long)r->count, b->name, (unsigned long long)r->first);
	return rc;
}

static int zero_run(struct mfd__worker *w, const struct mfd__ram_file *f, unsigned bi,
		    const struct run *r)
{
	const struct mfd__block *b = &f->x->ram->blocks[bi];
	uint64_t ps = b->page_size;
	if (mfd__errbox_code(w->errbox))
		return mfd__errbox_code(w->errbox);
	int rc = mfd__chan_file_zero(w->chan, (int64_t)(f->layout[bi].pages_offset + r->first * ps),
				     (int64_t)(r->count * ps));
	if (rc)
		mfd__errbox_set(w->errbox, rc, w->chan_id, "punching out %llu pages of block '%s' at "
				"page %llu", (unsigned long long)r->count, b->name,
				(unsigned long long)r->first);
	return rc;
}

/* Extend run r with page p, or write it out (through flush) and start a new one at p. */
static int extend(struct mfd__worker *w, const struct mfd__ram_file *f, unsigned bi, struct run *r,
		  uint64_t p, uint64_t *ios,
		  int (*flush)(struct mfd__worker *, const struct mfd__ram_file *, unsigned,
			       const struct run *))
{
	if (r->count && r->first + r->count == p) {
		r->count++;
		return 0;
	}
	if (r->count) {
		int rc = flush(w, f, bi, r);
		if (rc)
			return rc;
		(*ios)++;
	}
	*r = (struct run){ p, 1 };
	return 0;
}

static int store_span(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	const struct mfd__ram_file *f = p->ctx;
	struct mfd__ram_job rj = mfd__ram_job_get(j);
	const struct mfd__block *b = &f->x->ram->blocks[rj.block];
	uint64_t *present = f->present[rj.block];
	const uint64_t *dirty = (j->flags & MFD_RAM_JOB_SPARSE) ? rj.map : NULL;
	uint64_t ps = b->page_size, end = rj.first + rj.count, written = 0, zero = 0, ios = 0;
	struct run data = { 0 }, hole = { 0 };
	int rc = 0;

	for (uint64_t pg = dirty ? mfd__bitmap_next_set(dirty, end, rj.first) : rj.first; pg < end;
	     pg = dirty ? mfd__bitmap_next_set(dirty, end, pg + 1) : pg + 1) {
		bool is_zero = f->x->zero_detect && mfd__is_zero(b->host + pg * ps, ps);
		if (!is_zero) {
			if ((rc = extend(w, f, rj.block, &data, pg, &ios, write_run)))
				return rc;
			written++;
			if (!mfd__bit_test_atomic(present, pg))
				mfd__bit_set_atomic(present, pg);
			continue;
		}
		zero++;
		if (!mfd__bit_test_atomic(present, pg))
			continue;	/* never written: already a hole */
		/* Written in an earlier pass and zero now: it must read back as zero. */
		__atomic_fetch_and(&present[pg / 64], ~(1ull << (pg % 64)), __ATOMIC_RELAXED);
		if (f->sums)
			f->sums[rj.block][pg] = 0;	/* absent pages have none */
		if ((rc = extend(w, f, rj.block, &hole, pg, &ios, zero_run)))
			return rc;
	}
	if (data.count && (rc = write_run(w, f, rj.block, &data)))
		return rc;
	if (hole.count && (rc = zero_run(w, f, rj.block, &hole)))
		return rc;
	ios += (data.count != 0) + (hole.count != 0);
	__atomic_fetch_add(&w->chan->packets_out, ios, __ATOMIC_RELAXED);	/* I/Os, for stats */
	__atomic_fetch_add(&f->x->normal_pages, written, __ATOMIC_RELAXED);
	__atomic_fetch_add(&f->x->zero_pages, zero, __ATOMIC_RELAXED);
	return 0;
}

static int save_plan(const struct mfd__payload *p, const struct mfd__plan *plan)
{
	const struct mfd__ram_file *f = p->ctx;
	/* A pass needs no markers: the pool's barrier ends it, and each page is in one job per
	 * pass, so the last write of a page is its newest copy.  Spans count pages, not dirty
	 * ones: large positional transfers. */
	return mfd__ram_plan(f->x, p->index, plan, f->chunk_pages, false);
}

/* ---- restore ---------------------------------------------------------------------------------- */

static int read_run(struct mfd__worker *w, const struct mfd__ram_file *f, const struct mfd__ram_job *rj,
		    uint64_t first, uint64_t count)
{
	const struct mfd__block *b = &f->x->ram->blocks[rj->block];
	uint64_t ps = b->page_size;
	if (mfd__errbox_code(w->errbox))
		return mfd__errbox_code(w->errbox);	/* canceled or failed elsewhere */
	if (mfd__ratelimit_wait(f->x->rate, count * ps, &w->errbox->code))
		return mfd__errbox_code(w->errbox);
	uint64_t off = f->layout[rj->tag].pages_offset + first * ps;
	struct iovec v = { b->host + first * ps, (size_t)(count * ps) };
	int rc = mfd__chan_preadv(w->chan, &v, 1, (int64_t)off);
	if (rc) {
		if (rc == MFD_ECLOSED)
			rc = MFD_ETRUNC;
		mfd__errbox_set(w->errbox, rc, w->chan_id, "reading %llu pages of block '%s' at page %llu",
				(unsigned long long)count, b->name, (unsigned long long)first);
		return rc;
	}
	if (!f->sums)
		return 0;
	uint32_t got[64];
	const uint32_t *want = f->sums[rj->block];
	for (uint64_t done = 0; done < count;) {
		uint64_t n = MFD_MIN(count - done, (uint64_t)MFD_ARRAY_SIZE(got));
		sum_pages(b, first + done, n, got);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t pg = first + done + i;
			if (got[i] != want[pg]) {
				mfd__errbox_set(w->errbox, MFD_ECHECKSUM, w->chan_id,
						"block '%s' page %llu (file offset %llu): the page does "
						"not match its checksum, the file is corrupt", b->name,
						(unsigned long long)pg,
						(unsigned long long)(off + (pg - first) * ps));
				return MFD_ECHECKSUM;
			}
		}
		done += n;
	}
	return 0;
}

static int load_span(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	const struct mfd__ram_file *f = p->ctx;
	struct mfd__ram_job rj = mfd__ram_job_get(j);
	const struct mfd__block *b = &f->x->ram->blocks[rj.block];
	const uint64_t *map = f->present[rj.block];
	uint64_t ps = b->page_size, end = rj.first + rj.count, normal = 0, zero = 0, ios = 0;
	int rc;
	for (uint64_t pg = rj.first; pg < end;) {
		uint64_t q = mfd__bitmap_next_set(map, end, pg);
		/* Absent pages read as zero: already so in a fresh (MFD_BLOCK_ZEROED) block. */
		if (!(b->flags & MFD_BLOCK_ZEROED))
			for (uint64_t z = pg; z < q; z++)
				if (!mfd__is_zero(b->host + z * ps, ps))
					memset(b->host + z * ps, 0, ps);
		zero += q - pg;
		if (q >= end)
			break;
		uint64_t r = mfd__bitmap_next_clear(map, end, q);
		if ((rc = read_run(w, f, &rj, q, r - q)))
			return rc;
		normal += r - q;
		ios++;
		pg = r;
	}
	__atomic_fetch_add(&w->chan->packets_in, ios, __ATOMIC_RELAXED);	/* I/Os, for stats */
	__atomic_fetch_add(&f->x->normal_pages, normal, __ATOMIC_RELAXED);
	__atomic_fetch_add(&f->x->zero_pages, zero, __ATOMIC_RELAXED);
	return 0;
}

static int load_plan(const struct mfd__payload *p, const struct mfd__plan *plan)
{
	const struct mfd__ram_file *f = p->ctx;
	struct mfd__job j = { .payload = p->index, .verb = plan->verb };
	int rc = 0;
	for (uint32_t i = 0; i < f->nfile_blocks && rc == 0; i++) {
		uint32_t l = f->map[i];
		const struct mfd__block *b = &f->x->ram->blocks[l];
		const uint64_t *map = f->present[l];
		for (uint64_t pg = 0; pg < b->npages && rc == 0; pg += f->chunk_pages) {
			uint64_t n = MFD_MIN(f->chunk_pages, b->npages - pg);
			/* A span with nothing to read nor to clear needs no job. */
			if ((b->flags & MFD_BLOCK_ZEROED) && mfd__bitmap_next_set(map, pg + n, pg) >= pg + n) {
				__atomic_fetch_add(&f->x->zero_pages, n, __ATOMIC_RELAXED);
				continue;
			}
			struct mfd__ram_job r = { .block = l, .tag = i, .first = pg, .count = n };
			mfd__ram_job_set(&j, &r);
			rc = mfd__pool_submit(plan->pool, &j);
		}
	}
	return rc;
}

/* ---- both ------------------------------------------------------------------------------------- */

static int digest_span(struct mfd__worker *w, const struct mfd__payload *p, const struct mfd__job *j)
{
	(void)w;
	const struct mfd__ram_file *f = p->ctx;
	return mfd__ram_digest_span(f->x, j);
}

const struct mfd__payload_ops mfd__ram_file_save_ops = {
	.name = "ram-file",
	.job = { [MFD_JOB_STORE] = store_span, [MFD_JOB_DIGEST] = digest_span },
	.plan = save_plan,
};

const struct mfd__payload_ops mfd__ram_file_load_ops = {
	.name = "ram-file",
	.job = { [MFD_JOB_LOAD] = load_span, [MFD_JOB_DIGEST] = digest_span },
	.plan = load_plan,
};
