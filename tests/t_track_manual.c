/* t_track_manual — the explicit-marking tracker.
 *  - marks of one byte, of ranges crossing page and bitmap-word boundaries, of a whole block whose
 *    page count is not a multiple of 64, are reported exactly, in the right block; a second sync
 *    is empty;
 *  - bad input gets the exact code: unknown block (-EINVAL), range past the end or overflowing
 *    (MFD_ERANGE), a tracker of another kind (-EINVAL); sync of an unknown block (MFD_EBLOCK);
 *  - marks made while stopped are dropped by start();
 *  - two threads write and mark pages while the main thread syncs and copies reported pages into
 *    a shadow: every mark made after sync k is reported by a later sync, and at the end the
 *    shadow equals the memory. */
#include "tutil.h"
#include "core/util.h"
#include "ram/block.h"
#include "ram/track.h"

#define PS 4096u
#define NP0 1024u	/* pages of block 0 */
#define NP1 100u	/* pages of block 1: not a multiple of 64 */
#define MARKERS 2

static int diff(const char *what, const uint64_t *got, const uint64_t *want, uint64_t n)
{
	int d = 0;
	for (uint64_t p = 0; p < n; p++)
		if (mfd__bit_test(got, p) != mfd__bit_test(want, p) && d++ < 8)
			fprintf(stderr, "  %s: page %" PRIu64 " %s\n", what, p,
				mfd__bit_test(got, p) ? "reported, not marked" : "marked, not reported");
	return d;
}

struct shared {
	struct mfd__tracker *t;
	uint8_t *mem;			/* block 0 */
	int stop;			/* atomic */
	uint64_t epoch;			/* atomic: last sync that returned */
};

struct marker {
	struct shared *sh;
	unsigned id;
	int64_t epoch_of[NP0];		/* private until joined: epoch before the last mark */
	uint64_t marks;
	int bad_rc;
};

static void *marker_main(void *arg)
{
	struct marker *m = arg;
	struct shared *sh = m->sh;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (m->id + 1), seq = 1;

	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		uint64_t r = t_rand(&rng);
		uint64_t p = (r >> 8) % NP0;
		uint64_t npages = 1 + (r & 3);	/* 1..4 pages, possibly crossing a word */
		if (p + npages > NP0)
			npages = NP0 - p;
		uint64_t e = __atomic_load_n(&sh->epoch, __ATOMIC_ACQUIRE);
		for (uint64_t q = p; q < p + npages; q++) {
			/* Each marker owns its own words of a page, so the values stay checkable. */
			uint64_t *w = (uint64_t *)(sh->mem + q * PS) + 1 + m->id;
			__atomic_store_n(w, (seq++ << 8) | m->id, __ATOMIC_RELAXED);
			m->epoch_of[q] = (int64_t)e;
		}
		/* A range that starts and ends mid-page. */
		int rc = mfd__tracker_manual_mark(sh->t, 0, p * PS + 100, (npages - 1) * PS + 1);
		if (rc)
			m->bad_rc = rc;
		m->marks++;
	}
	return NULL;
}

static void concurrent_test(struct mfd__tracker *t, uint8_t *mem)
{
	struct mfd_error err;
	struct shared sh = { .t = t, .mem = mem };
	struct marker *mk = calloc(MARKERS, sizeof(*mk));
	uint8_t *shadow = malloc((size_t)NP0 * PS);
	int64_t last_report[NP0];
	uint64_t bm[NP0 / 64];
	if (!mk || !shadow)
		exit(1);
	for (unsigned i = 0; i < NP0; i++)
		last_report[i] = -1;

	memset(bm, 0, sizeof(bm));
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	memcpy(shadow, mem, (size_t)NP0 * PS);
	pthread_t th[MARKERS];
	for (unsigned i = 0; i < MARKERS; i++) {
		mk[i].sh = &sh;
		mk[i].id = i;
		for (unsigned p = 0; p < NP0; p++)
			mk[i].epoch_of[p] = -1;
		if (pthread_create(&th[i], NULL, marker_main, &mk[i]))
			exit(1);
	}
	uint64_t syncs = 0, t0 = mfd__now_ms();
	for (int last = 0; !last;) {
		if (mfd__now_ms() - t0 >= 1000) {
			__atomic_store_n(&sh.stop, 1, __ATOMIC_RELAXED);
			for (unsigned i = 0; i < MARKERS; i++)
				pthread_join(th[i], NULL);
			last = 1;	/* one more sync, with the markers stopped */
		}
		memset(bm, 0, sizeof(bm));
		CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
		syncs++;
		for (uint64_t p = mfd__bitmap_next_set(bm, NP0, 0); p < NP0;
		     p = mfd__bitmap_next_set(bm, NP0, p + 1)) {
			const uint64_t *s = (const uint64_t *)(mem + p * PS);
			uint64_t *d = (uint64_t *)(shadow + p * PS);
			for (unsigned i = 0; i < PS / 8; i++)
				d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
			last_report[p] = (int64_t)syncs;
		}
		__atomic_store_n(&sh.epoch, syncs, __ATOMIC_RELEASE);
	}
	uint64_t late = 0, marks = 0;
	for (unsigned i = 0; i < MARKERS; i++) {
		CHECK_CODE(mk[i].bad_rc, 0);
		marks += mk[i].marks;
		for (unsigned p = 0; p < NP0; p++)
			if (mk[i].epoch_of[p] >= 0 && last_report[p] <= mk[i].epoch_of[p] &&
			    late++ < 5)
				fprintf(stderr, "  page %u marked after sync %" PRId64
					", last reported by %" PRId64 "\n", p, mk[i].epoch_of[p],
					last_report[p]);
	}
	CHECK_EQ(late, 0);
	CHECK(memcmp(shadow, mem, (size_t)NP0 * PS) == 0);
	CHECK(marks > 1000);
	printf("  concurrent: %" PRIu64 " marks by %d threads, %" PRIu64 " syncs\n", marks, MARKERS,
	       syncs);
	free(mk);
	free(shadow);
}

int main(void)
{
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	uint8_t *m0 = t_map((size_t)NP0 * PS), *m1 = t_map((size_t)NP1 * PS);
	uint64_t bm0[NP0 / 64], want0[NP0 / 64], bm1[2], want1[2];

	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "b0", m0, (uint64_t)NP0 * PS, PS, 0, &err), 0);
	CHECK_EQ(mfd__ram_add(&ram, "b1", m1, (uint64_t)NP1 * PS, PS, 0, &err), 1);
	CHECK_CODE(mfd__tracker_manual_new(&t, &ram, &err), 0);
	CHECK(!strcmp(t->ops->name, "manual"));
	CHECK_CODE(t->ops->start(t, &err), 0);

	memset(want0, 0, sizeof(want0));
	memset(want1, 0, sizeof(want1));
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, 0, 1), 0);			/* page 0 */
	mfd__bit_set(want0, 0);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, 2 * PS - 1, 2), 0);		/* pages 1, 2 */
	mfd__bit_set(want0, 1);
	mfd__bit_set(want0, 2);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, 60 * PS + 1, 10 * PS), 0);	/* 60..70 */
	for (unsigned p = 60; p <= 70; p++)
		mfd__bit_set(want0, p);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, 100 * PS, 200 * PS), 0);	/* 100..299 */
	for (unsigned p = 100; p < 300; p++)
		mfd__bit_set(want0, p);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, (NP0 - 1) * PS + 5, PS - 5), 0); /* last */
	mfd__bit_set(want0, NP0 - 1);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, 500 * PS, 0), 0);		/* empty */
	CHECK_CODE(mfd__tracker_manual_mark(t, 1, 0, (uint64_t)NP1 * PS), 0);	/* all of b1 */
	for (unsigned p = 0; p < NP1; p++)
		mfd__bit_set(want1, p);

	/* Bad input: nothing may be marked by these. */
	CHECK_CODE(mfd__tracker_manual_mark(t, 2, 0, 1), -EINVAL);
	CHECK_CODE(mfd__tracker_manual_mark(t, UINT32_MAX, 0, 1), -EINVAL);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, (uint64_t)NP0 * PS, 1), MFD_ERANGE);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, (uint64_t)NP0 * PS - 1, 2), MFD_ERANGE);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, 5 * PS, UINT64_MAX), MFD_ERANGE);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, UINT64_MAX, 2), MFD_ERANGE);
	CHECK_CODE(mfd__tracker_manual_mark(t, 1, (uint64_t)NP1 * PS, 0), 0);	/* empty at end */
	CHECK_CODE(mfd__tracker_manual_mark(NULL, 0, 0, 1), -EINVAL);

	memset(bm0, 0, sizeof(bm0));
	memset(bm1, 0, sizeof(bm1));
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 0, bm0, &err), 0);
	CHECK_CODE(t->ops->sync(t, 1, bm1, &err), 0);
	CHECK_EQ(diff("b0", bm0, want0, NP0), 0);
	CHECK_EQ(diff("b1", bm1, want1, NP1), 0);
	CHECK_EQ(bm1[1] >> (NP1 - 64), 0);	/* nothing past the block's last page */
	CHECK_CODE(t->ops->sync(t, 2, bm1, &err), MFD_EBLOCK);

	/* Everything taken: the next sync is empty. */
	memset(bm0, 0, sizeof(bm0));
	memset(bm1, 0, sizeof(bm1));
	CHECK_CODE(t->ops->sync(t, 0, bm0, &err), 0);
	CHECK_CODE(t->ops->sync(t, 1, bm1, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm0, NP0) + mfd__bitmap_count(bm1, NP1), 0);

	/* Marks while stopped are dropped by start. */
	t->ops->stop(t);
	t->ops->stop(t);
	CHECK_CODE(mfd__tracker_manual_mark(t, 0, 0, PS), 0);
	CHECK_CODE(t->ops->start(t, &err), 0);
	CHECK_CODE(t->ops->sync(t, 0, bm0, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm0, NP0), 0);

	/* A manual mark on a tracker of another kind is refused. */
	struct mfd__tracker *other = NULL;
	if (mfd__tracker_uffd_new(&other, &ram, true, &err) == 0) {
		CHECK_CODE(mfd__tracker_manual_mark(other, 0, 0, 1), -EINVAL);
		mfd__tracker_destroy(other);
	}

	concurrent_test(t, m0);

	mfd__tracker_destroy(t);
	mfd__tracker_destroy(NULL);
	mfd__ram_free(&ram);
	munmap(m0, (size_t)NP0 * PS);
	munmap(m1, (size_t)NP1 * PS);
	return t_done("t_track_manual");
}
