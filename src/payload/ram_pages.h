/* payload/ram_pages — RAM pages as a payload: the first entry of every session's payload table.
 *
 * Stream (outgoing / incoming): a job is a span of a block's pages (every page of the span in
 * round 0, the dirty ones later); the worker detects zero pages, encodes the RAM meta (block,
 * page offsets), runs the data through the codec and sends one RAM packet, the data straight
 * from guest memory.  The destination validates every offset against the block table and reads
 * the data straight into its memory; zero pages are applied without touching pages that are
 * still zero (MFD_BLOCK_ZEROED).  Digest jobs (verify) hash pages on both sides the same way.
 *
 * The context below is the session's RAM transfer state.  Fields are set by the run thread
 * before the pool starts and are read-only while jobs run, except where said. */
#ifndef MFD_PAYLOAD_RAM_PAGES_H
#define MFD_PAYLOAD_RAM_PAGES_H

#include "core/sync.h"
#include "payload/payload.h"
#include "payload/ram_batch.h"
#include "ram/block.h"

struct mfd__ram_xfer {
	struct mfd__ram *ram;		/* the session's blocks */
	struct mfd__errbox *errbox;	/* the session's */
	struct mfd__ratelimit *rate;	/* source: the session's bandwidth cap (its own lock) */
	bool zero_detect;		/* source: send zero pages as offsets only */
	uint32_t batch_pages;		/* pages per job and packet (negotiated) */
	/* Source, live: per block, the pages of the round being sent.  Written by the run thread
	 * between pool barriers, read by workers during a round: the pool's lock orders the two. */
	uint64_t **dirty;
	/* Source, first pass: per block, the pages that may hold data (ram/resident.h; the others
	 * go as zero ranges, or are skipped by a save), or NULL: all.  Written by the run thread
	 * before the first pass, read by workers during it. */
	uint64_t **populated;
	/* The payload that sends zero ranges (MFD_FEAT_ZERO_RANGES negotiated), or -1. */
	int zero_payload;
	/* Destination: source block id -> local block index, and what RAM packets are checked
	 * against (set when the block table is accepted). */
	const uint32_t *map;
	struct mfd__ram_limits limits;
	/* Atomic (stats): pages moved, with data and as zero. */
	uint64_t normal_pages, zero_pages;
	/* Atomic: sum of the page digests of the last digest pass. */
	uint64_t digest;
};

/* Set the transfer's configuration.  The counters are left alone: stats readers on other
 * threads read them (atomically) at any time, so a plain struct assignment would race. */
static inline void mfd__ram_xfer_setup(struct mfd__ram_xfer *x, struct mfd__ram *ram,
				       struct mfd__errbox *errbox, struct mfd__ratelimit *rate,
				       bool zero_detect, uint32_t batch_pages)
{
	x->ram = ram;
	x->errbox = errbox;
	x->rate = rate;
	x->zero_detect = zero_detect;
	x->batch_pages = batch_pages;
	x->zero_payload = -1;
}

/* A RAM job's arguments (in struct mfd__job.args). */
struct mfd__ram_job {
	uint32_t block;		/* local block index */
	uint32_t tag;		/* digest: the block's position in the source's table;
				 * restore: the file's block index */
	uint64_t first;		/* pages [first, first + count) */
	uint64_t count;
	const uint64_t *map;	/* MFD_RAM_JOB_SPARSE: the bitmap saying which (the block's
				 * dirty or populated bitmap, alive for the round) */
};
#define MFD_RAM_JOB_SPARSE 0x1	/* job flag: only the span's pages set in map */

static inline struct mfd__ram_job mfd__ram_job_get(const struct mfd__job *j)
{
	struct mfd__ram_job r;
	memcpy(&r, j->args, sizeof(r));
	return r;
}

static inline void mfd__ram_job_set(struct mfd__job *j, const struct mfd__ram_job *r)
{
	_Static_assert(sizeof(*r) <= sizeof(j->args), "RAM job arguments");
	memcpy(j->args, r, sizeof(*r));
}

extern const struct mfd__payload_ops mfd__ram_pages_ops, mfd__ram_zero_ops;

/* Queue the jobs of one pass for payload `payload`: every page of every block (round 0) or the
 * pages set in x->dirty, in spans of up to span_pages pages (for dirty spans: up to span_pages
 * set bits when count_dirty, else span_pages pages). */
int mfd__ram_plan(struct mfd__ram_xfer *x, uint16_t payload, const struct mfd__plan *plan,
		  uint64_t span_pages, bool count_dirty);

/* Digest: hash every page of the blocks order[0..n) (order[k] is the local block at position k
 * of the source's table) with the pool, and wait; the total lands in x->digest.  Both sides
 * compute it the same way.  The payload p names must do MFD_JOB_DIGEST by calling
 * mfd__ram_digest_span(x, job). */
int mfd__ram_digest(struct mfd__ram_xfer *x, const struct mfd__payload *p, struct mfd__pool *pool,
		    const uint32_t *order, uint32_t n);
int mfd__ram_digest_span(struct mfd__ram_xfer *x, const struct mfd__job *j);

#endif
