/* t_sparse — never-touched memory is never read, never sent as data, never written.
 *
 * A 2 GiB block of which only some pages were ever written migrates verified: the pages never
 * written go as zero ranges (a handful of packets), the source does not read them (its RSS
 * does not grow) and the destination does not touch them (its RSS grows by the written pages
 * only).  Pages written and zero again still go as zero pages; a guest writing during a live
 * migration is tracked as always, by hand or by userfaultfd (whose markers on untouched pages
 * are told from real swap entries, which hold data).  A save of the same block writes only the written pages and
 * restores equal. */
#include "guest.h"
#include "pair.h"
#include "ram/resident.h"
#include "snaputil.h"

#ifdef MFD_SANITIZE
#define LEN (256ull << 20)	/* the sanitizers check every byte that memcmp and the digest read */
#else
#define LEN (2ull << 30)
#endif
#define PS 4096u

static uint64_t rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t v = 0;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			v = strtoull(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* Write a few scattered stretches (and make some of them zero again). */
static uint64_t touch(uint8_t *m)
{
	uint64_t written = 0, x = 77;
	for (int i = 0; i < 64; i++) {	/* one stretch in each 64th: they never overlap */
		uint64_t span = LEN / PS / 64, pg = (uint64_t)i * span + t_rand(&x) % (span - 32);
		for (int k = 0; k < 32; k++, written++)
			memset(m + (pg + (uint64_t)k) * PS, 0x11 + i, PS);
	}
	memset(m + 5 * PS, 0, PS);	/* touched, then zero again */
	m[LEN - 1] = 0x5a;		/* the very last page */
	return written;
}

enum how { STOPPED, LIVE_MANUAL, LIVE_UFFD };

static void migrate(enum how how)
{
	bool live = how != STOPPED;
	uint8_t *a = t_map(LEN), *b = t_map(LEN);
	madvise(a, LEN, MADV_NOHUGEPAGE);	/* pages, not 2 MiB at a time, are what is counted */
	madvise(b, LEN, MADV_NOHUGEPAGE);
	uint64_t written = touch(a);
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram", a, b, LEN, MFD_BLOCK_ZEROED);
	mfd_session_set(p.src.s, MFD_OPT_VERIFY, 1);
	struct guest g = { .mem = a, .len = 256 * PS, .nthreads = 1, .pages_per_ms = 20 };
	if (how == LIVE_UFFD) {
		int rc = mfd_session_track_uffd(p.src.s);
		if (rc) {
			fprintf(stderr, "uffd tracking unavailable (%d): that case skipped\n", rc);
			pair_free(&p);
			munmap(a, LEN);
			munmap(b, LEN);
			return;
		}
	}
	if (live) {
		if (how == LIVE_MANUAL) {
			CHECK_CODE(mfd_session_track_manual(p.src.s), 0);
			g.mark = p.src.s;
		}
		struct mfd_callbacks cb = guest_callbacks(&g);
		mfd_session_set_callbacks(p.src.s, &cb);
		guest_start(&g);
	}
	uint64_t r0 = rss_kib();
	CHECK_CODE(pair_listen(&p, pair_unix(&p, "t-sparse"), 0), 0);
	uint64_t t0 = t_now_ns();
	pair_run(&p);
	uint64_t ms = (t_now_ns() - t0) / 1000000;
	if (live)
		guest_stop_threads(&g);
	if (p.src.rc || p.dst.rc)
		pair_print(&p, "sparse");
	CHECK_CODE(p.src.rc, 0);
	CHECK_CODE(p.dst.rc, 0);
	uint64_t r1 = rss_kib();
	struct mfd_stats s, d;
	mfd_session_get_stats(p.src.s, &s);
	mfd_session_get_stats(p.dst.s, &d);
	CHECK(s.verified && d.verified);	/* the digest read everything, on both sides */
	CHECK(memcmp(a, b, LEN) == 0);
	CHECK_EQ(s.normal_pages + s.zero_pages, d.normal_pages + d.zero_pages);
	CHECK(s.normal_pages >= written - 1 && s.normal_pages < written + 8 + 100000);
	CHECK(s.zero_pages >= LEN / PS - written - 8 - (live ? 256 : 0));	/* + what the guest wrote */
	/* Before the digests (which read every page), the memory that moved was the written pages:
	 * sources and destination together grew by little more than twice those. */
	fprintf(stderr, "%s: %llu ms, %llu data pages, %llu zero (of %llu), %llu packets; RSS +%llu "
		"MiB (written: %llu MiB each side)\n",
		how == STOPPED ? "stopped" : how == LIVE_MANUAL ? "live, manual" : "live, uffd",
		(unsigned long long)ms, (unsigned long long)s.normal_pages,
		(unsigned long long)s.zero_pages, (unsigned long long)(LEN / PS),
		(unsigned long long)s.packets, (unsigned long long)((r1 - r0) / 1024),
		(unsigned long long)(written * PS >> 20));
	if (!live)
		CHECK(s.packets < 200);	/* the written stretches and a few zero ranges */
	else if (how == LIVE_MANUAL || geteuid() == 0)
		/* and the guest's 256 pages each round: untouched pages were not read (a page read
		 * goes in a RAM packet of at most 512, so 2 GiB of them would be over 1000).  Not
		 * with uffd without root: pagemap then hides what tells its markers from swap
		 * entries, and every marked page counts as data (read, never lost). */
		CHECK(s.packets < 200 + 16 * s.rounds);
	pair_free(&p);
	munmap(a, LEN);
	munmap(b, LEN);
}

/* The destination touches nothing it need not: RSS measured without the verify read. */
static void destination_untouched(void)
{
	uint8_t *a = t_map(LEN), *b = t_map(LEN);
	madvise(a, LEN, MADV_NOHUGEPAGE);
	madvise(b, LEN, MADV_NOHUGEPAGE);
	uint64_t written = touch(a);
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram", a, b, LEN, MFD_BLOCK_ZEROED);
	uint64_t r0 = rss_kib();
	CHECK_CODE(pair_listen(&p, pair_unix(&p, "t-sparse2"), 0), 0);
	pair_run(&p);
	CHECK_CODE(p.src.rc, 0);
	CHECK_CODE(p.dst.rc, 0);
	uint64_t grew = (rss_kib() - r0) / 1024;
	fprintf(stderr, "without verify: RSS +%llu MiB for %llu MiB written\n", (unsigned long long)grew,
		(unsigned long long)(written * PS >> 20));
	CHECK(grew < (written * PS >> 20) + 64);	/* not the 2 GiB the block spans */
	CHECK(memcmp(a, b, LEN) == 0);
	pair_free(&p);
	munmap(a, LEN);
	munmap(b, LEN);
}

static void save_restore(void)
{
	char path[600];
	snap_path(path, sizeof(path), "sparse.snap");
	uint8_t *a = t_map(LEN), *b = t_map(LEN);
	madvise(a, LEN, MADV_NOHUGEPAGE);
	uint64_t written = touch(a);
	struct mfd_error err;
	mfd_error_clear(&err);
	struct mfd_session *s = mfd_session_new(MFD_SAVE);
	mfd_ram_block_add(s, "ram", a, LEN, PS, 0);
	CHECK_CODE(mfd_session_open_file(s, path, &err), 0);
	CHECK_CODE(mfd_session_run(s, &err), 0);
	struct mfd_stats st;
	mfd_session_get_stats(s, &st);
	mfd_session_free(s);
	CHECK_EQ(st.normal_pages + st.zero_pages, LEN / PS);
	CHECK(st.normal_pages < written + 8);
	CHECK(file_alloc(path) < (written + 1024) * PS + (16u << 20));	/* the data, and metadata */
	s = mfd_session_new(MFD_RESTORE);
	mfd_ram_block_add(s, "ram", b, LEN, PS, MFD_BLOCK_ZEROED);
	CHECK_CODE(mfd_session_open_file(s, path, &err), 0);
	CHECK_CODE(mfd_session_run(s, &err), 0);
	mfd_session_free(s);
	CHECK(memcmp(a, b, LEN) == 0);
	unlink(path);
	munmap(a, LEN);
	munmap(b, LEN);
}

/* What a pagemap entry says about a page: present, a swap entry (swapped out: type 0..26; being
 * migrated: 27..30), a uffd-wp marker (type 31, offset 1), nothing, or a swap entry whose details
 * the kernel hides (without CAP_SYS_ADMIN).  Only the marker, and only when markers are to be
 * skipped, and nothing at all say "no data". */
static void pagemap_entries(void)
{
	const uint64_t present = 1ull << 63, swap = 1ull << 62;
	const uint64_t swapped = swap | (1234ull << 5) | 0, migrating = swap | (99ull << 5) | 29;
	const uint64_t marker = swap | (1ull << 5) | 31, hidden = swap;
	for (int skip = 0; skip <= 1; skip++) {
		CHECK(mfd__pagemap_data(present, skip));
		CHECK(mfd__pagemap_data(present | (5ull << 5) | 31, skip));	/* a PFN, not a type */
		CHECK(mfd__pagemap_data(swapped, skip));
		CHECK(mfd__pagemap_data(migrating, skip));
		CHECK(mfd__pagemap_data(hidden, skip));
		CHECK(!mfd__pagemap_data(0, skip));
		CHECK(!mfd__pagemap_data(1ull << 57, skip));	/* uffd-wp bit alone, no entry */
		CHECK_EQ(mfd__pagemap_data(marker, skip), !skip);
	}
}

int main(void)
{
	snap_dir_make("t-sparse");
	destination_untouched();
	pagemap_entries();
	migrate(STOPPED);
	migrate(LIVE_MANUAL);
	migrate(LIVE_UFFD);
	save_restore();
	snap_dir_remove();
	return t_done("t_sparse");
}
