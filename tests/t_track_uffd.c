/* t_track_uffd — the userfaultfd write-protect tracker, in every mode this kernel offers:
 * async (WP_ASYNC + PAGEMAP_SCAN), sync (fault-handler thread), and sync as on a kernel without
 * WP_UNPOPULATED (never-touched pages read at start).
 *
 * For each mode, over 64 MiB of private anonymous memory (MADV_NOHUGEPAGE, so reports are exact):
 *  - exact reports: a random set of pages written after start() — pages filled before start,
 *    pages only read before start (zero page), never-touched pages — is reported exactly; pages
 *    merely read after start are not; a second sync is empty; rewrites are reported again; a
 *    write spanning pages reports each of them;
 *  - no lost write under concurrency: a writer thread stores into random pages while the main
 *    thread syncs in a loop and copies every reported page into a shadow.  Each write records the
 *    sync epoch it followed; every page must be reported by a later sync, and at the end the
 *    shadow must equal the memory byte for byte;
 *  - stop() leaves every page writable and every value intact; start() after stop() works.
 * Plus: shmem (memfd) blocks are tracked, file-backed and unmapped blocks are refused with the
 * exact error, sync on a bad block or before start fails with the exact error.
 * Skips (77) when userfaultfd is not available (EPERM/ENOSYS). */
#include <fcntl.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include "tutil.h"
#include "core/util.h"
#include "ram/block.h"
#include "ram/track.h"

#define PS 4096u
#define MEM (64u << 20)
#define NPAGES (MEM / PS)
#define WORDS_PER_PAGE (PS / 8)

static uint64_t pattern(uint64_t page, uint64_t word)
{
	return (page * 0x9E3779B97F4A7C15ull) ^ (word * 0xC2B2AE3D27D4EB4Full) ^ 0x5555;
}

/* Compare a tracker bitmap with the expected one; print the first differences. */
static int bitmap_diff(const char *what, const uint64_t *got, const uint64_t *want, uint64_t npages)
{
	int shown = 0, diffs = 0;
	for (uint64_t p = 0; p < npages; p++) {
		bool g = mfd__bit_test(got, p), w = mfd__bit_test(want, p);
		if (g != w) {
			if (shown++ < 8)
				fprintf(stderr, "  %s: page %" PRIu64 ": %s\n", what, p,
					g ? "reported but not written" : "written but not reported");
			diffs++;
		}
	}
	if (diffs)
		fprintf(stderr, "  %s: %d page(s) differ (%" PRIu64 " reported, %" PRIu64 " expected)\n",
			what, diffs, mfd__bitmap_count(got, npages), mfd__bitmap_count(want, npages));
	return diffs;
}

static int new_tracker(struct mfd__tracker **t, struct mfd__ram *ram, unsigned flags,
		       struct mfd_error *err)
{
	mfd_error_clear(err);
	int rc = mfd__tracker_uffd_new_flags(t, ram, flags, err);
	if (rc == -EPERM || rc == -ENOSYS)
		SKIP("userfaultfd unavailable: %s", err->msg);
	return rc;
}

/* ---- the concurrent writer ------------------------------------------------------------------ */

struct hammer {
	uint8_t *mem;
	int stop;			/* atomic: main tells the writer to finish */
	uint64_t epoch;			/* atomic: number of the last sync that returned */
	int64_t *write_epoch;		/* writer-private until joined: epoch seen before the last
					 * write of each page, -1 if never written */
	uint64_t writes;		/* writer-private until joined */
	uint64_t seed;
};

static void *writer_main(void *arg)
{
	struct hammer *h = arg;
	uint64_t rng = h->seed, seq = 1;

	while (!__atomic_load_n(&h->stop, __ATOMIC_RELAXED)) {
		uint64_t r = t_rand(&rng);
		/* Half the writes go to a hot set of 256 pages, so pages are re-dirtied between
		 * syncs; the rest to the first 16 MiB (bounding the copies in slow sanitizer
		 * builds), and one in 64 anywhere. */
		uint64_t p = (r & 1) ? (r >> 8) % 256 : (r & 0x7e) ? (r >> 8) % 4096 : (r >> 8) % NPAGES;
		uint64_t word = 1 + (r >> 40) % (WORDS_PER_PAGE - 1);	/* word 0 is the model's */
		/* Acquire pairs with the release after each sync: the write below happens after
		 * sync number `e` returned, so a later sync must report it. */
		uint64_t e = __atomic_load_n(&h->epoch, __ATOMIC_ACQUIRE);
		uint64_t *w = (uint64_t *)(h->mem + p * PS);
		__atomic_store_n(&w[word], (seq++ << 20) | p, __ATOMIC_RELAXED);
		h->write_epoch[p] = (int64_t)e;
		h->writes++;
	}
	return NULL;
}

static void copy_page(uint8_t *dst, const uint8_t *src)
{
	const uint64_t *s = (const uint64_t *)src;
	uint64_t *d = (uint64_t *)dst;
	for (unsigned i = 0; i < WORDS_PER_PAGE; i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

static void hammer_test(struct mfd__tracker *t, uint8_t *mem, const char *mode)
{
	struct mfd_error err;
	uint64_t *bm = calloc(mfd__bitmap_words(NPAGES), 8);
	uint8_t *shadow = malloc(MEM);
	struct hammer h = { .mem = mem, .seed = 0x1234567 };
	h.write_epoch = malloc(NPAGES * sizeof(int64_t));
	int64_t *last_report = malloc(NPAGES * sizeof(int64_t));
	if (!bm || !shadow || !h.write_epoch || !last_report)
		exit(1);
	for (uint64_t p = 0; p < NPAGES; p++)
		h.write_epoch[p] = last_report[p] = -1;

	/* Everything clean, then the "first pass": copy all of memory. */
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	memcpy(shadow, mem, MEM);

	pthread_t th;
	if (pthread_create(&th, NULL, writer_main, &h))
		exit(1);
	uint64_t t0 = mfd__now_ms(), syncs = 0, reported = 0;
	int rc = 0;
	/* At least 1.5 s and 10 syncs (sanitizer builds are slow), at most 20 s. */
	while (rc == 0 && (mfd__now_ms() - t0 < 1500 || syncs < 10) && mfd__now_ms() - t0 < 20000) {
		memset(bm, 0, mfd__bitmap_words(NPAGES) * 8);
		rc = t->ops->sync(t, 0, bm, &err);
		syncs++;
		for (uint64_t p = mfd__bitmap_next_set(bm, NPAGES, 0); p < NPAGES;
		     p = mfd__bitmap_next_set(bm, NPAGES, p + 1)) {
			copy_page(shadow + p * PS, mem + p * PS);
			last_report[p] = (int64_t)syncs;
			reported++;
		}
		__atomic_store_n(&h.epoch, syncs, __ATOMIC_RELEASE);
	}
	CHECK_CODE(rc, 0);
	__atomic_store_n(&h.stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);

	/* Final sync, as at switchover with the writer stopped. */
	memset(bm, 0, mfd__bitmap_words(NPAGES) * 8);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	syncs++;
	for (uint64_t p = mfd__bitmap_next_set(bm, NPAGES, 0); p < NPAGES;
	     p = mfd__bitmap_next_set(bm, NPAGES, p + 1)) {
		memcpy(shadow + p * PS, mem + p * PS, PS);
		last_report[p] = (int64_t)syncs;
	}

	uint64_t late = 0, pages_written = 0;
	for (uint64_t p = 0; p < NPAGES; p++) {
		if (h.write_epoch[p] < 0)
			continue;
		pages_written++;
		if (last_report[p] <= h.write_epoch[p]) {
			if (late++ < 5)
				fprintf(stderr, "  page %" PRIu64 " written after sync %" PRId64
					" but last reported by sync %" PRId64 "\n", p,
					h.write_epoch[p], last_report[p]);
		}
	}
	CHECK_EQ(late, 0);
	uint64_t differ = 0;
	for (uint64_t p = 0; p < NPAGES; p++)
		if (memcmp(shadow + p * PS, mem + p * PS, PS) && differ++ < 5)
			fprintf(stderr, "  page %" PRIu64 ": shadow copy is stale\n", p);
	CHECK_EQ(differ, 0);
	CHECK(h.writes > 1000);
	CHECK(syncs >= 10);
	printf("  %s: %" PRIu64 " writes to %" PRIu64 " pages, %" PRIu64 " syncs, %" PRIu64
	       " pages reported\n", mode, h.writes, pages_written, syncs, reported);
	free(bm);
	free(shadow);
	free(h.write_epoch);
	free(last_report);
}

/* ---- one mode, end to end --------------------------------------------------------------------- */

static void mode_test(unsigned flags, const char *want_mode)
{
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	uint8_t *mem = t_map(MEM);
	uint64_t *bm = calloc(mfd__bitmap_words(NPAGES), 8);
	uint64_t *want = calloc(mfd__bitmap_words(NPAGES), 8);
	uint64_t *model = calloc(NPAGES, 8);	/* word 0 of each page; 0 = never written */
	if (!bm || !want || !model)
		exit(1);
	CHECK_CODE(madvise(mem, MEM, MADV_NOHUGEPAGE), 0);

	/* Pages p % 7 == 3: never touched.  p % 7 == 5: only read (zero page).  Others: filled. */
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t *w = (uint64_t *)(mem + p * PS);
		if (p % 7 == 3)
			continue;
		if (p % 7 == 5) {
			CHECK_EQ(*(volatile uint64_t *)w, 0);
			continue;
		}
		for (unsigned j = 1; j < WORDS_PER_PAGE; j++)
			w[j] = pattern(p, j);
		w[0] = model[p] = p << 8;
	}

	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "ram0", mem, MEM, PS, 0, &err), 0);
	int rc = new_tracker(&t, &ram, flags, &err);
	CHECK_CODE(rc, 0);
	if (rc) {
		fprintf(stderr, "  %s\n", err.msg);
		exit(1);
	}
	const char *mode = mfd__tracker_uffd_mode(t);
	printf("%s: tracker mode %s\n", want_mode, mode);
	if (!strcmp(want_mode, "async") && strcmp(mode, "async")) {
		printf("  async mode not available on this kernel; testing what it gave\n");
	} else {
		CHECK(!strcmp(mode, want_mode));
	}
	CHECK(mfd__tracker_uffd_mode(NULL) == NULL);

	/* Not started yet. */
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), MFD_ESTATE);

	mfd_error_clear(&err);
	rc = t->ops->start(t, &err);
	CHECK_CODE(rc, 0);
	if (rc) {
		fprintf(stderr, "  %s\n", err.msg);
		exit(1);
	}
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 1, bm, &err), MFD_EBLOCK);

	/* Nothing written yet: nothing reported. */
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 0);

	/* Round 1: a random set of pages of every kind; some never-touched pages only read. */
	uint64_t rng = 42 + flags;
	for (int round = 1; round <= 3; round++) {
		memset(bm, 0, mfd__bitmap_words(NPAGES) * 8);
		memset(want, 0, mfd__bitmap_words(NPAGES) * 8);
		for (int i = 0; i < 600; i++) {
			uint64_t p = t_rand(&rng) % NPAGES;
			uint64_t *w = (uint64_t *)(mem + p * PS);
			w[0] = model[p] = (p << 8) | (uint64_t)round;
			mfd__bit_set(want, p);
		}
		/* Forced coverage of each kind, including the last page. */
		uint64_t kinds[] = { 3 + 7 * (uint64_t)round, 5 + 7 * (uint64_t)round,
				     7 * (uint64_t)round, NPAGES - 1 };
		for (unsigned k = 0; k < MFD_ARRAY_SIZE(kinds); k++) {
			uint64_t p = kinds[k];
			((uint64_t *)(mem + p * PS))[0] = model[p] = (p << 8) | (uint64_t)round;
			mfd__bit_set(want, p);
		}
		/* Reads after start do not count as writes. */
		for (uint64_t p = 3 + 7 * 100; p < NPAGES; p += 7 * 101)
			if (!mfd__bit_test(want, p))
				(void)*(volatile uint64_t *)(mem + p * PS);
		{
			/* A write by the kernel on our behalf: read(2) into tracked memory must
			 * complete (sync mode: the fault is handled like a user one) and count. */
			uint64_t p = 2000 + (uint64_t)round;
			int pfd[2];
			uint64_t v = (p << 8) | (uint64_t)round;
			CHECK_EQ(pipe(pfd), 0);
			CHECK_EQ(write(pfd[1], &v, 8), 8);
			CHECK_EQ(read(pfd[0], mem + p * PS, 8), 8);
			close(pfd[0]);
			close(pfd[1]);
			model[p] = v;
			mfd__bit_set(want, p);
		}
		if (round == 3) {
			/* One write straddling three pages. */
			uint64_t p = 1000;
			memset(mem + p * PS + PS - 8, 0xab, 8 + PS + 8);
			for (uint64_t q = p; q < p + 3; q++)
				mfd__bit_set(want, q);
			model[p + 1] = model[p + 2] = 0xabababababababab;
		}
		mfd_error_clear(&err);
		CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
		char what[64];
		snprintf(what, sizeof(what), "%s round %d", mode, round);
		CHECK_EQ(bitmap_diff(what, bm, want, NPAGES), 0);

		/* Again, with nothing written since. */
		memset(bm, 0, mfd__bitmap_words(NPAGES) * 8);
		CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
		CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 0);
	}

	hammer_test(t, mem, mode);

	/* stop: every page writable again, values intact. */
	uint8_t *before = malloc(MEM);
	if (!before)
		exit(1);
	memcpy(before, mem, MEM);
	t->ops->stop(t);
	t->ops->stop(t);	/* idempotent */
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), MFD_ESTATE);
	uint64_t bad = 0;
	for (uint64_t p = 0; p < NPAGES; p++) {
		volatile uint64_t *w = (volatile uint64_t *)(mem + p * PS);
		w[0] = w[0];	/* a write: would hang or crash if still protected */
		if (w[0] != model[p] && bad++ < 5)
			fprintf(stderr, "  page %" PRIu64 ": word 0 = %" PRIx64 ", want %" PRIx64
				"\n", p, w[0], model[p]);
	}
	CHECK_EQ(bad, 0);
	CHECK(memcmp(before, mem, MEM) == 0);
	free(before);

	/* Restart: clean again, tracks again. */
	mfd_error_clear(&err);
	CHECK_CODE(t->ops->start(t, &err), 0);
	memset(bm, 0, mfd__bitmap_words(NPAGES) * 8);
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 0);
	mem[77 * PS + 5] = 1;
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, NPAGES), 1);
	CHECK(mfd__bit_test(bm, 77));

	mfd__tracker_destroy(t);	/* stops */
	mem[78 * PS] = 1;		/* writable after destroy */
	mfd__ram_free(&ram);
	munmap(mem, MEM);
	free(bm);
	free(want);
	free(model);
}

/* AnonHugePages of this process, in KiB (-1 if unknown). */
static long anon_huge_kb(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "re");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* Transparent huge pages: no written page may be missed; a page reported but not written must
 * share its 2 MiB huge page with a written one. */
static void thp_test(unsigned flags)
{
	const size_t huge = 2u << 20, len = 16u << 20;
	const uint64_t npages = len / PS;
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	uint8_t *raw = t_map(len + huge);
	uint8_t *mem = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
	uint64_t bm[mfd__bitmap_words(len / PS)], want[mfd__bitmap_words(len / PS)];
	bool region_written[len / huge];

	madvise(mem, len, MADV_HUGEPAGE);
	long before = anon_huge_kb();
	memset(mem, 0x11, len / 2);	/* the upper half is never touched before start */
	long thp_kb = anon_huge_kb() - before;
	memset(bm, 0, sizeof(bm));
	memset(want, 0, sizeof(want));
	memset(region_written, 0, sizeof(region_written));

	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "thp", mem, len, PS, 0, &err), 0);
	CHECK_CODE(new_tracker(&t, &ram, flags, &err), 0);
	CHECK_CODE(t->ops->start(t, &err), 0);
	uint64_t rng = 99 + flags;
	for (int i = 0; i < 40; i++) {
		/* Leave regions 0 and 7 untouched. */
		uint64_t p = 512 + t_rand(&rng) % (npages - 1024);
		mem[p * PS + 64] = 0x22;
		mfd__bit_set(want, p);
		region_written[p * PS / huge] = true;
	}
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	uint64_t missed = 0, extra = 0, bad_extra = 0;
	for (uint64_t p = 0; p < npages; p++) {
		bool g = mfd__bit_test(bm, p), w = mfd__bit_test(want, p);
		missed += w && !g;
		if (g && !w) {
			extra++;
			bad_extra += !region_written[p * PS / huge];
		}
	}
	CHECK_EQ(missed, 0);
	CHECK_EQ(bad_extra, 0);
	printf("  THP (%s, %ld KiB huge at fill): %" PRIu64 " written, %" PRIu64
	       " reported, %" PRIu64 " extra within written huge pages\n",
	       mfd__tracker_uffd_mode(t), thp_kb, mfd__bitmap_count(want, npages),
	       mfd__bitmap_count(bm, npages), extra);
	memset(bm, 0, sizeof(bm));
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, npages), 0);
	mfd__tracker_destroy(t);
	for (uint64_t p = 0; p < npages; p++)
		CHECK_EQ(mem[p * PS + 64], mfd__bit_test(want, p) ? 0x22 : p < npages / 2 ? 0x11 : 0);
	mfd__ram_free(&ram);
	munmap(raw, len + huge);
}

/* A block page larger than the host page: a write anywhere in a 16 KiB page reports that page. */
static void bigpage_test(unsigned flags)
{
	const uint32_t bps = 16384;
	const size_t len = 4u << 20;
	const uint64_t npages = len / bps;
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	uint8_t *mem = t_map(len);
	uint64_t bm[mfd__bitmap_words(len / 16384)], want[mfd__bitmap_words(len / 16384)];

	madvise(mem, len, MADV_NOHUGEPAGE);
	memset(mem, 1, len / 2);
	memset(bm, 0, sizeof(bm));
	memset(want, 0, sizeof(want));
	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "big", mem, len, bps, 0, &err), 0);
	CHECK_CODE(new_tracker(&t, &ram, flags, &err), 0);
	CHECK_CODE(t->ops->start(t, &err), 0);
	/* host page offsets 0, 1, 2, 3 within block pages 3, 10, 200, 255; two in page 40 */
	uint64_t offs[] = { 3 * 16384, 10 * 16384 + 4096, 200 * 16384 + 8192 + 17,
			    255 * 16384 + 12288 + 4095, 40 * 16384, 40 * 16384 + 12288 };
	for (unsigned i = 0; i < MFD_ARRAY_SIZE(offs); i++) {
		mem[offs[i]] = 9;
		mfd__bit_set(want, offs[i] / bps);
	}
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(bitmap_diff("16 KiB pages", bm, want, npages), 0);
	memset(bm, 0, sizeof(bm));
	CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
	CHECK_EQ(mfd__bitmap_count(bm, npages), 0);
	mfd__tracker_destroy(t);
	mfd__ram_free(&ram);
	munmap(mem, len);
}

/* shmem (memfd) block: tracked like anonymous memory. */
static void shmem_test(unsigned flags)
{
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;
	size_t len = 4u << 20;
	uint64_t npages = len / PS;
	int fd = memfd_create("t_track_uffd", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_CODE(ftruncate(fd, (off_t)len), 0);
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(mem != MAP_FAILED);
	memset(mem, 1, len / 2);	/* half populated, half holes */
	uint64_t bm[mfd__bitmap_words(len / PS)], want[mfd__bitmap_words(len / PS)];
	memset(bm, 0, sizeof(bm));
	memset(want, 0, sizeof(want));

	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "shm", mem, len, PS, 0, &err), 0);
	int rc = new_tracker(&t, &ram, flags, &err);
	CHECK_CODE(rc, 0);
	if (rc == 0) {
		rc = t->ops->start(t, &err);
		CHECK_CODE(rc, 0);
		if (rc)
			fprintf(stderr, "  shmem start: %s\n", err.msg);
	}
	if (rc == 0) {
		uint64_t pages[] = { 0, 1, 17, npages / 2 - 1, npages / 2, npages / 2 + 9, npages - 1 };
		for (unsigned i = 0; i < MFD_ARRAY_SIZE(pages); i++) {
			mem[pages[i] * PS + 100] = 7;
			mfd__bit_set(want, pages[i]);
		}
		CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
		CHECK_EQ(bitmap_diff("shmem", bm, want, npages), 0);
		memset(bm, 0, sizeof(bm));
		CHECK_CODE(t->ops->sync(t, 0, bm, &err), 0);
		CHECK_EQ(mfd__bitmap_count(bm, npages), 0);
	}
	mfd__tracker_destroy(t);
	mem[5] = 2;
	munmap(mem, len);
	close(fd);
	mfd__ram_free(&ram);
}

/* Memory the tracker must refuse, with the exact error. */
static void refuse_test(void)
{
	struct mfd_error err;
	struct mfd__ram ram = { 0 };
	struct mfd__tracker *t = NULL;

	/* A block with an unmapped page in the middle. */
	uint8_t *mem = t_map(16 * PS);
	munmap(mem + 8 * PS, PS);
	mfd_error_clear(&err);
	CHECK_EQ(mfd__ram_add(&ram, "holey", mem, 16 * PS, PS, 0, &err), 0);
	CHECK_CODE(new_tracker(&t, &ram, 0, &err), -EFAULT);
	CHECK(strstr(err.msg, "holey") != NULL);
	munmap(mem, 16 * PS);
	mfd__ram_free(&ram);

	/* A regular file (not tmpfs): the build directory, else the working directory. */
	const char *dir = getenv("MFD_BUILD");
	char path[4096];
	snprintf(path, sizeof(path), "%s/t_track_uffd.file.%d", dir ? dir : ".", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct statfs sf;
	if (fd < 0 || fstatfs(fd, &sf) || sf.f_type == TMPFS_MAGIC) {
		printf("  file-backed refusal not checked (no non-tmpfs directory)\n");
	} else {
		CHECK_CODE(ftruncate(fd, 16 * PS), 0);
		mem = mmap(NULL, 16 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(mem != MAP_FAILED);
		mfd_error_clear(&err);
		CHECK_EQ(mfd__ram_add(&ram, "filed", mem, 16 * PS, PS, 0, &err), 0);
		CHECK_CODE(new_tracker(&t, &ram, 0, &err), -EINVAL);
		CHECK(strstr(err.msg, "t_track_uffd.file") != NULL);
		printf("  refused: %s\n", err.msg);
		munmap(mem, 16 * PS);
		mfd__ram_free(&ram);
	}
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	mode_test(0, "async");
	mode_test(MFD__UFFD_FORCE_SYNC, "sync");
	mode_test(MFD__UFFD_FORCE_SYNC | MFD__UFFD_NO_UNPOPULATED, "sync");
	thp_test(0);
	thp_test(MFD__UFFD_FORCE_SYNC);
	thp_test(MFD__UFFD_FORCE_SYNC | MFD__UFFD_NO_UNPOPULATED);
	bigpage_test(0);
	bigpage_test(MFD__UFFD_FORCE_SYNC);
	shmem_test(0);
	shmem_test(MFD__UFFD_FORCE_SYNC);
	refuse_test();
	return t_done("t_track_uffd");
}
