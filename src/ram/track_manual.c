/* ram/track_manual — dirty tracking by explicit marking.
 *
 * For embedders that know what they write (a checkpoint tool that owns its heap, a VMM whose
 * devices write guest RAM by hand): they call mfd__tracker_manual_mark() after each write, from
 * any thread.  Each block has one bitmap of atomic words.  mark() sets bits with an atomic OR;
 * sync() takes each word with an atomic exchange against zero and ORs it into the caller's
 * bitmap.  A mark racing with sync() lands either in the word sync() took (reported now) or in
 * the fresh zero word (reported next time); an exchange cannot drop a bit, so nothing is lost.
 *
 * The embedder must mark *after* the write is complete (the copy that follows a sync must see
 * the data); marking before writing would let a sync report the page while the old bytes are
 * still there.  mark() ORs with release and sync() exchanges with acquire, so a thread that
 * copies a page after sync() reported it sees every write the marker finished before marking. */
#include <errno.h>
#include <stdlib.h>
#include "core/err.h"
#include "core/util.h"
#include "ram/track.h"

struct manual {
	struct mfd__tracker t;	/* first member: ops receive &manual->t */
	uint32_t nblocks;	/* blocks registered when the tracker was made; read-only */
	uint64_t **maps;	/* [nblocks] bitmaps, one bit per page; words are atomic */
};

static struct manual *to_manual(struct mfd__tracker *t)
{
	return (struct manual *)t;
}

static int manual_start(struct mfd__tracker *t, struct mfd_error *err)
{
	struct manual *m = to_manual(t);

	/* start() means "every page clean from now on": forget marks made while stopped. */
	for (uint32_t b = 0; b < m->nblocks; b++) {
		size_t words = mfd__bitmap_words(t->ram->blocks[b].npages);
		for (size_t w = 0; w < words; w++)
			__atomic_store_n(&m->maps[b][w], 0, __ATOMIC_RELAXED);
	}
	return 0;
}

static int manual_sync(struct mfd__tracker *t, uint32_t block, uint64_t *bitmap,
		       struct mfd_error *err)
{
	struct manual *m = to_manual(t);

	if (block >= m->nblocks)
		return mfd__err_set(err, MFD_EBLOCK, -1, "manual tracker: no block %u", block);
	size_t words = mfd__bitmap_words(t->ram->blocks[block].npages);
	uint64_t *map = m->maps[block];
	for (size_t w = 0; w < words; w++) {
		/* Cheap load first: most words of a large block are clean, and an exchange on a
		 * clean word would dirty its cache line for nothing. */
		if (!__atomic_load_n(&map[w], __ATOMIC_RELAXED))
			continue;
		bitmap[w] |= __atomic_exchange_n(&map[w], 0, __ATOMIC_ACQ_REL);
	}
	return 0;
}

static void manual_stop(struct mfd__tracker *t)
{
	(void)t;	/* nothing armed: marks made while stopped are dropped by the next start */
}

static void manual_destroy(struct mfd__tracker *t)
{
	struct manual *m = to_manual(t);

	if (m->maps)
		for (uint32_t b = 0; b < m->nblocks; b++)
			free(m->maps[b]);
	free(m->maps);
	free(m);
}

static const struct mfd__tracker_ops manual_ops = {
	.name = "manual",
	.start = manual_start,
	.sync = manual_sync,
	.stop = manual_stop,
	.destroy = manual_destroy,
};

int mfd__tracker_manual_new(struct mfd__tracker **out, const struct mfd__ram *ram,
			    struct mfd_error *err)
{
	struct manual *m = calloc(1, sizeof(*m));
	if (!m)
		return mfd__err_set(err, -ENOMEM, -1, "manual tracker");
	m->t.ops = &manual_ops;
	m->t.ram = ram;
	m->nblocks = ram->n;
	m->maps = calloc(ram->n ? ram->n : 1, sizeof(*m->maps));
	if (!m->maps)
		goto nomem;
	for (uint32_t b = 0; b < ram->n; b++) {
		m->maps[b] = calloc(mfd__bitmap_words(ram->blocks[b].npages), sizeof(uint64_t));
		if (!m->maps[b])
			goto nomem;
	}
	*out = &m->t;
	return 0;

nomem:
	manual_destroy(&m->t);
	return mfd__err_set(err, -ENOMEM, -1, "manual tracker bitmaps");
}

int mfd__tracker_manual_mark(struct mfd__tracker *t, uint32_t block, uint64_t offset, uint64_t len)
{
	if (!t || t->ops != &manual_ops)
		return -EINVAL;
	struct manual *m = to_manual(t);
	if (block >= m->nblocks)
		return -EINVAL;
	const struct mfd__block *b = &t->ram->blocks[block];
	if (offset > b->len || len > b->len - offset)
		return MFD_ERANGE;
	if (len == 0)
		return 0;

	uint64_t first = offset / b->page_size;
	uint64_t last = (offset + len - 1) / b->page_size;	/* inclusive */
	uint64_t *map = m->maps[block];
	/* Whole words at once: a large mark (a device DMA of megabytes) costs one atomic per 64
	 * pages, not one per page. */
	for (uint64_t i = first; i <= last;) {
		uint64_t w = i / 64, lo = i % 64;
		uint64_t hi = MFD_MIN(63, lo + (last - i));
		uint64_t mask = (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) & (~0ull << lo);
		/* Release: orders the caller's completed write before the bit, for a sync() that
		 * acquires it on another thread. */
		__atomic_fetch_or(&map[w], mask, __ATOMIC_RELEASE);
		i = w * 64 + hi + 1;
	}
	return 0;
}
