/* t_snap — mapped-ram snapshots: save and restore (eager into fresh and into dirty memory, lazy
 * by mmap, O_DIRECT), zero pages as holes and pages that turn zero punched out, device sections,
 * live save while writer threads dirty memory (manual tracking, several rounds), the file size
 * bound, the bandwidth cap, an I/O error and cancel leaving the source running and the target
 * path untouched, and the API's state rules. */
#include "guest.h"
#include "migrate/session.h"
#include "snaputil.h"

#define PS 4096u

struct mem {
	uint8_t *a, *b;		/* blocks "ram0" and "ram1" */
	size_t alen, blen;
};

static void mem_alloc(struct mem *m, size_t alen, size_t blen)
{
	m->alen = alen;
	m->blen = blen;
	m->a = t_map(alen);
	m->b = t_map(blen);
}

static void mem_free(struct mem *m)
{
	munmap(m->a, m->alen);
	munmap(m->b, m->blen);
}

static struct mfd_session *new_session(enum mfd_role role, struct mem *m, unsigned flags,
				       unsigned workers, struct dev *d)
{
	struct mfd_session *s = mfd_session_new(role);
	CHECK(s != NULL);
	CHECK_CODE(mfd_session_set(s, MFD_OPT_CHANNELS, workers), 0);
	CHECK_EQ(mfd_ram_block_add(s, "ram0", m->a, m->alen, PS, flags), 0);
	CHECK_EQ(mfd_ram_block_add(s, "ram1", m->b, m->blen, PS, flags), 1);
	if (d)
		CHECK_EQ(mfd_device_add(s, "cpu", 3, 2, &dev_ops, d), 0);
	return s;
}

static int save(const char *path, struct mem *m, struct dev *d, bool verify, bool direct,
		struct mfd_stats *st)
{
	struct mfd_session *s = new_session(MFD_SAVE, m, 0, 3, d);
	struct mfd_error err;
	mfd_error_clear(&err);
	mfd_session_set(s, MFD_OPT_VERIFY, verify);
	mfd_session_set(s, MFD_OPT_DIRECT_IO, direct);
	int rc = mfd_session_open_file(s, path, &err);
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (rc && !(direct && rc == -EINVAL))
		fprintf(stderr, "save: %s\n", err.msg);
	if (st)
		mfd_session_get_stats(s, st);
	mfd_session_free(s);
	return rc;
}

static int restore(const char *path, struct mem *m, unsigned flags, struct dev *d, bool lazy,
		   bool verify, bool direct, struct mfd_stats *st)
{
	struct mfd_session *s = new_session(MFD_RESTORE, m, flags, 2, d);
	struct mfd_error err;
	mfd_error_clear(&err);
	mfd_session_set(s, MFD_OPT_LAZY, lazy);
	mfd_session_set(s, MFD_OPT_VERIFY, verify);
	mfd_session_set(s, MFD_OPT_DIRECT_IO, direct);
	int rc = mfd_session_open_file(s, path, &err);
	if (rc == 0)
		rc = mfd_session_run(s, &err);
	if (rc)
		fprintf(stderr, "restore: %s\n", err.msg);
	if (st)
		mfd_session_get_stats(s, st);
	mfd_session_free(s);
	return rc;
}

static uint64_t nonzero_pages(const uint8_t *p, size_t len)
{
	static const uint8_t z[PS];
	uint64_t n = 0;
	for (size_t off = 0; off < len; off += PS)
		n += memcmp(p + off, z, PS) != 0;
	return n;
}

/* Layout bound: the RAM, the metadata (under 1 MiB here), 1 MiB alignment per block, devices. */
static uint64_t size_bound(const struct mem *m)
{
	return m->alen + m->blen + 3 * (1u << 20) + 64 * 1024;
}

static void basic(void)
{
	char path[600];
	snap_path(path, sizeof(path), "basic.snap");
	struct mem src, dst;
	mem_alloc(&src, 8u << 20, (3u << 20) + 5 * PS);	/* ram1 not a multiple of 8 pages */
	t_fill(src.a, src.alen, 11);				/* every fourth page zero */
	t_fill(src.b, src.blen, 12);
	struct dev d = { .len = 2999 };
	for (size_t i = 0; i < d.len; i++)
		d.state[i] = (uint8_t)(i * 7 + 1);
	struct mfd_stats st;
	CHECK_CODE(save(path, &src, &d, true, false, &st), 0);
	uint64_t present = nonzero_pages(src.a, src.alen) + nonzero_pages(src.b, src.blen);
	uint64_t pages = (src.alen + src.blen) / PS;
	CHECK_EQ(st.status, MFD_STATUS_COMPLETED);
	CHECK_EQ(st.normal_pages, present);
	CHECK_EQ(st.normal_pages + st.zero_pages, pages);
	CHECK_EQ(st.rounds, 1);
	CHECK_EQ(st.device_bytes, 2999);
	CHECK(st.verified);
	CHECK_EQ(st.file_bytes, file_size(path));
	CHECK(file_size(path) <= size_bound(&src));
	/* Zero pages are holes: the allocation is about the present pages, not the RAM size. */
	CHECK(file_alloc(path) <= present * PS + (2u << 20));
	CHECK(file_alloc(path) < (src.alen + src.blen) * 9 / 10);
	CHECK_EQ(snap_dir_count(), 1);	/* the temporary file was renamed */

	struct mfd_snapshot_info info;
	struct mfd_error err;
	mfd_error_clear(&err);
	CHECK_CODE(mfd_snapshot_inspect(path, &info, &err), 0);
	CHECK_EQ(info.version, 1);
	CHECK_EQ(info.nblocks, 2);
	CHECK_EQ(info.ndevices, 1);
	CHECK_EQ(info.pages_present, present);
	CHECK_EQ(info.mem_bytes, src.alen + src.blen);
	CHECK_EQ(info.file_bytes, file_size(path));
	CHECK(info.has_digest && info.digest == st.digest);
	CHECK(!info.live && info.rounds == 1);
	CHECK(info.header_ok && info.trailer_ok && info.blocks_ok && info.bitmaps_ok &&
	      info.metadata_ok && info.devices_ok);
	if (info.nblocks == 2 && info.ndevices == 1) {
		CHECK(!strcmp(info.blocks[1].name, "ram1"));
		CHECK_EQ(info.blocks[1].length, src.blen);
		CHECK_EQ(info.blocks[1].pages_present, nonzero_pages(src.b, src.blen));
		CHECK_EQ(info.blocks[0].pages_offset % (1u << 20), 0);
		CHECK(!strcmp(info.devices[0].name, "cpu"));
		CHECK_EQ(info.devices[0].instance, 3);
		CHECK_EQ(info.devices[0].version, 2);
		CHECK_EQ(info.devices[0].length, 2999);
	}
	mfd_snapshot_info_free(&info);

	/* Eager into fresh memory. */
	mem_alloc(&dst, src.alen, src.blen);
	struct dev dd = { 0 };
	CHECK_CODE(restore(path, &dst, MFD_BLOCK_ZEROED, &dd, false, true, false, &st), 0);
	CHECK(!memcmp(src.a, dst.a, src.alen) && !memcmp(src.b, dst.b, src.blen));
	CHECK(st.verified);
	CHECK_EQ(st.normal_pages, present);
	CHECK_EQ(st.normal_pages + st.zero_pages, pages);
	CHECK_EQ(dd.loads, 1);
	CHECK_EQ(dd.loaded_version, 2);
	CHECK(dd.loaded_len == d.len && !memcmp(dd.loaded, d.state, d.len));
	mem_free(&dst);

	/* Eager into memory full of garbage: absent pages must be cleared. */
	mem_alloc(&dst, src.alen, src.blen);
	memset(dst.a, 0xA5, dst.alen);
	memset(dst.b, 0x5A, dst.blen);
	dd.loads = 0;
	CHECK_CODE(restore(path, &dst, 0, &dd, false, false, false, &st), 0);
	CHECK(!memcmp(src.a, dst.a, src.alen) && !memcmp(src.b, dst.b, src.blen));
	CHECK_EQ(dd.loads, 1);
	mem_free(&dst);

	/* Lazy: the memory becomes a private mapping of the file. */
	mem_alloc(&dst, src.alen, src.blen);
	memset(dst.a, 0xA5, dst.alen);
	dd.loads = 0;
	CHECK_CODE(restore(path, &dst, 0, &dd, true, true, false, &st), 0);
	CHECK(!memcmp(src.a, dst.a, src.alen) && !memcmp(src.b, dst.b, src.blen));
	CHECK(st.verified);
	CHECK_EQ(dd.loads, 1);
	CHECK(st.ready_ms < 1000);
	/* Writes go to private copies: the file is not changed. */
	memset(dst.a, 0x77, PS);
	mem_free(&dst);
	mem_alloc(&dst, src.alen, src.blen);
	CHECK_CODE(restore(path, &dst, MFD_BLOCK_ZEROED, NULL, false, true, false, NULL),
		   MFD_EDEVICE);	/* the file has a device nobody registered */
	dd.loads = 0;
	CHECK_CODE(restore(path, &dst, MFD_BLOCK_ZEROED, &dd, false, true, false, &st), 0);
	CHECK(!memcmp(src.a, dst.a, src.alen));
	mem_free(&dst);

	/* Saving to the same path replaces the file by rename: a lazy mapping of the old one
	 * stays intact. */
	mem_alloc(&dst, src.alen, src.blen);
	CHECK_CODE(restore(path, &dst, 0, &dd, true, false, false, NULL), 0);
	t_fill(src.a, src.alen, 99);
	CHECK_CODE(save(path, &src, &d, false, false, NULL), 0);
	t_fill(src.a, src.alen, 11);
	CHECK(!memcmp(src.a, dst.a, src.alen) && !memcmp(src.b, dst.b, src.blen));
	mem_free(&dst);
	mem_free(&src);
	unlink(path);
}

static void direct_io(void)
{
	char path[600];
	snap_path(path, sizeof(path), "direct.snap");
	struct mem src, dst;
	mem_alloc(&src, 4u << 20, 1u << 20);
	t_fill(src.a, src.alen, 21);
	t_fill(src.b, src.blen, 22);
	struct dev d = { .len = 100 };
	int rc = save(path, &src, &d, true, true, NULL);
	if (rc == -EINVAL) {
		printf("direct I/O: the file system refuses O_DIRECT, skipped\n");
		mem_free(&src);
		return;
	}
	CHECK_CODE(rc, 0);
	mem_alloc(&dst, src.alen, src.blen);
	struct dev dd = { 0 };
	struct mfd_stats st;
	CHECK_CODE(restore(path, &dst, MFD_BLOCK_ZEROED, &dd, false, true, true, &st), 0);
	CHECK(!memcmp(src.a, dst.a, src.alen) && !memcmp(src.b, dst.b, src.blen));
	CHECK(st.verified);
	CHECK_EQ(dd.loads, 1);
	mem_free(&dst);
	mem_free(&src);
	unlink(path);
}

/* ---- descriptors passed by the embedder -------------------------------------------------- */

static int run_fds(enum mfd_role role, struct mem *m, unsigned flags, struct dev *d, int fd,
		   int dfd, bool lazy, struct mfd_error *err)
{
	struct mfd_session *s = new_session(role, m, flags, 3, d);
	mfd_error_clear(err);
	mfd_session_set(s, MFD_OPT_LAZY, lazy);
	int rc = mfd_session_open_fds(s, fd, dfd, err);
	if (rc == 0)
		rc = mfd_session_run(s, err);
	mfd_session_free(s);
	return rc;
}

static void fds(void)
{
	char path[600], other[600];
	snap_path(path, sizeof(path), "fds.snap");
	snap_path(other, sizeof(other), "other.snap");
	struct mem src, dst;
	struct mfd_error err;
	mem_alloc(&src, 2u << 20, 1u << 20);
	t_fill(src.a, src.alen, 31);
	t_fill(src.b, src.blen, 32);
	struct dev d = { .len = 77 }, dd = { 0 };
	/* A file that held something larger: the save truncates it, nothing stale remains. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && ftruncate(fd, 64u << 20) == 0);
	CHECK_CODE(run_fds(MFD_SAVE, &src, 0, &d, fd, -1, false, &err), 0);
	CHECK(file_size(path) < size_bound(&src));
	CHECK_EQ(snap_dir_count(), 1);	/* no temporary file beside it */
	struct mfd_snapshot_info info;
	CHECK_CODE(mfd_snapshot_inspect(path, &info, &err), 0);
	mfd_snapshot_info_free(&info);
	/* Restore from a read-only descriptor, eager and lazy. */
	for (int lazy = 0; lazy < 2; lazy++) {
		mem_alloc(&dst, src.alen, src.blen);
		memset(&dd, 0, sizeof(dd));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		CHECK_CODE(run_fds(MFD_RESTORE, &dst, MFD_BLOCK_ZEROED, &dd, fd, -1, lazy, &err), 0);
		CHECK(!memcmp(src.a, dst.a, src.alen) && !memcmp(src.b, dst.b, src.blen));
		CHECK_EQ(dd.loads, 1);
		mem_free(&dst);
	}
	/* O_DIRECT descriptor beside the buffered one (skipped where the file system refuses). */
	int dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (dfd >= 0) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		CHECK_CODE(run_fds(MFD_SAVE, &src, 0, &d, fd, dfd, false, &err), 0);
		mem_alloc(&dst, src.alen, src.blen);
		memset(&dd, 0, sizeof(dd));
		CHECK_CODE(restore(path, &dst, MFD_BLOCK_ZEROED, &dd, false, false, false, NULL), 0);
		CHECK(!memcmp(src.a, dst.a, src.alen) && !memcmp(src.b, dst.b, src.blen));
		mem_free(&dst);
	}
	/* Refusals, each naming the problem; the session closes what it was given. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK_CODE(run_fds(MFD_SAVE, &src, 0, &d, fd, -1, false, &err), -EBADF);
	CHECK(strstr(err.msg, "read-write") != NULL);
	CHECK(fcntl(fd, F_GETFD) < 0);	/* closed by the session */
	CHECK_CODE(run_fds(MFD_SAVE, &src, 0, &d, -1, -1, false, &err), -EBADF);
	fd = open(path, O_RDWR | O_CLOEXEC);
	dfd = open(path, O_RDWR | O_CLOEXEC);	/* not O_DIRECT */
	CHECK_CODE(run_fds(MFD_SAVE, &src, 0, &d, fd, dfd, false, &err), -EINVAL);
	CHECK(strstr(err.msg, "O_DIRECT") != NULL);
	CHECK(fcntl(dfd, F_GETFD) < 0);
	int ofd = open(other, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	dfd = open(other, O_RDWR | O_DIRECT | O_CLOEXEC);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (dfd >= 0) {
		CHECK_CODE(run_fds(MFD_SAVE, &src, 0, &d, fd, dfd, false, &err), -EINVAL);
		CHECK(strstr(err.msg, "different files") != NULL);
	} else {
		close(fd);
	}
	close(ofd);
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK_CODE(run_fds(MFD_RESTORE, &src, 0, &d, p[0], -1, false, &err), -EINVAL);
	CHECK(strstr(err.msg, "regular file") != NULL);
	close(p[1]);
	mem_free(&src);
	unlink(path);
	unlink(other);
}

/* ---- live saves ------------------------------------------------------------------------------ */

static struct guest *zero_guest;

/* At the switchover (writers parked): zero some pages that earlier rounds wrote, as a guest
 * freeing memory does; the final pass must punch them out. */
static void zero_some_pages(void)
{
	struct guest *g = zero_guest;
	for (size_t p = 0; p < 64; p++) {
		memset(g->mem + p * 2 * PS, 0, PS);
		mfd_session_mark_dirty(g->mark, g->block, p * 2 * PS, PS);
	}
}

struct live_cfg {
	size_t len, dirty_len;
	unsigned writers, min_rounds;
	int64_t max_bw;
	int cancel_after_ms;	/* -1: none */
	bool cancel_in_stop;
	bool zero_at_stop;
	int fail_write_after;	/* > 0: the nth page write fails with -ENOSPC */
};

static int fail_countdown;	/* atomic */

static int fail_hook(void *ctx, int chan, bool writing, size_t len)
{
	if (chan > 0 && writing && __atomic_sub_fetch(&fail_countdown, 1, __ATOMIC_RELAXED) == 0)
		return -ENOSPC;
	return 0;
}

static void live(const struct live_cfg *c, const char *name, int want_rc)
{
	char path[600];
	snap_path(path, sizeof(path), name);
	/* A previous snapshot at the path: a failed save must leave it as it was. */
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, "old", 3) == 3);
	close(fd);

	uint8_t *mem = t_map(c->len), *b1 = t_map(64 * PS);
	t_fill(mem, c->len, 5);
	t_fill(b1, 64 * PS, 6);
	struct mfd_session *s = mfd_session_new(MFD_SAVE);
	mfd_session_set(s, MFD_OPT_CHANNELS, 2);
	mfd_session_set(s, MFD_OPT_VERIFY, 1);
	mfd_session_set(s, MFD_OPT_BATCH_PAGES, 64);
	if (c->max_bw)
		mfd_session_set(s, MFD_OPT_MAX_BANDWIDTH, c->max_bw);
	CHECK_EQ(mfd_ram_block_add(s, "ram", mem, c->len, PS, 0), 0);
	CHECK_EQ(mfd_ram_block_add(s, "rom", b1, 64 * PS, PS, 0), 1);
	struct dev d = { .len = 64 };
	memset(d.state, 0x42, d.len);
	mfd_device_add(s, "cpu", 0, 1, &dev_ops, &d);
	CHECK_CODE(mfd_session_track_manual(s), 0);
	struct mfd__test_knobs k = { .min_rounds = c->min_rounds };
	if (c->fail_write_after) {
		__atomic_store_n(&fail_countdown, c->fail_write_after, __ATOMIC_RELAXED);
		k.hook = fail_hook;
	}
	mfd__session_set_test_knobs(s, &k);
	struct guest g = { .mem = mem, .len = c->dirty_len, .nthreads = c->writers, .mark = s,
			   .block = 0, .cancel_in_stop = c->cancel_in_stop, .cancel_target = s,
			   .on_stop = c->zero_at_stop ? zero_some_pages : NULL };
	zero_guest = &g;
	struct mfd_callbacks cb = guest_callbacks(&g);
	mfd_session_set_callbacks(s, &cb);
	struct mfd_error err;
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_open_file(s, path, &err), 0);
	guest_start(&g);
	struct canceller cc = { .s = s, .ms = c->cancel_after_ms };
	canceller_start(&cc);
	uint64_t t0 = g_now_us();
	int rc = mfd_session_run(s, &err);
	uint64_t took_ms = (g_now_us() - t0) / 1000;
	canceller_join(&cc);
	struct mfd_stats st;
	mfd_session_get_stats(s, &st);
	fprintf(stderr, "live %s: rc %d (%s) rounds %llu syncs %llu downtime %llu ms, %llu ms, "
		"writes %llu\n", name, rc, err.msg, (unsigned long long)st.rounds,
		(unsigned long long)st.dirty_sync_count, (unsigned long long)st.downtime_ms,
		(unsigned long long)took_ms,
		(unsigned long long)__atomic_load_n(&g.writes, __ATOMIC_RELAXED));
	CHECK_CODE(rc, want_rc);
	if (rc == 0) {
		/* The writers stay parked after a completed save: memory is as at the stop. */
		CHECK_EQ(g.stops, 1);
		CHECK_EQ(g.resumes, 0);
		CHECK(st.rounds >= c->min_rounds);
		CHECK(st.verified);
		CHECK(file_size(path) <= c->len + 64 * PS + 3 * (1u << 20));
		CHECK(file_alloc(path) <= c->len + 64 * PS + 3 * (1u << 20));
		CHECK_EQ(st.file_bytes, file_size(path));
		struct mfd_snapshot_info info;
		CHECK_CODE(mfd_snapshot_inspect(path, &info, &err), 0);
		CHECK(info.live);
		CHECK_EQ(info.rounds, st.rounds);
		if (info.nblocks)
			CHECK_EQ(info.blocks[0].pages_present, nonzero_pages(mem, c->len));
		mfd_snapshot_info_free(&info);

		uint8_t *back = t_map(c->len), *b1back = t_map(64 * PS);
		struct mfd_session *r = mfd_session_new(MFD_RESTORE);
		mfd_ram_block_add(r, "ram", back, c->len, PS, MFD_BLOCK_ZEROED);
		mfd_ram_block_add(r, "rom", b1back, 64 * PS, PS, MFD_BLOCK_ZEROED);
		struct dev dd = { 0 };
		mfd_device_add(r, "cpu", 0, 1, &dev_ops, &dd);
		mfd_session_set(r, MFD_OPT_VERIFY, 1);
		CHECK_CODE(mfd_session_open_file(r, path, &err), 0);
		CHECK_CODE(mfd_session_run(r, &err), 0);
		CHECK(!memcmp(mem, back, c->len));
		CHECK(!memcmp(b1, b1back, 64 * PS));
		CHECK_EQ(dd.loads, 1);
		if (c->zero_at_stop)
			for (size_t p = 0; p < 64; p++)
				CHECK(nonzero_pages(back + p * 2 * PS, PS) == 0);
		mfd_session_free(r);
		munmap(back, c->len);
		munmap(b1back, 64 * PS);
	} else {
		/* The source goes on: writers running again, and the old file untouched. */
		uint64_t before = __atomic_load_n(&g.writes, __ATOMIC_RELAXED);
		usleep(20000);
		CHECK(__atomic_load_n(&g.writes, __ATOMIC_RELAXED) > before);
		CHECK_EQ(g.stops, g.resumes);
		CHECK_EQ(file_size(path), 3);
		CHECK_EQ(st.status, want_rc == MFD_ECANCELED ? MFD_STATUS_CANCELLED : MFD_STATUS_FAILED);
		CHECK_EQ(__atomic_load_n(&g.throttle, __ATOMIC_RELAXED), 0);
	}
	guest_stop_threads(&g);	/* before the session they mark goes */
	mfd_session_free(s);
	CHECK_EQ(snap_dir_count(), 1);	/* no temporary file left behind */
	munmap(mem, c->len);
	munmap(b1, 64 * PS);
	unlink(path);
}

static void live_saves(void)
{
	/* Writers keep dirtying 4 MiB of 16 MiB through at least 6 rounds. */
	struct live_cfg c = { .len = 16u << 20, .dirty_len = 4u << 20, .writers = 2,
			      .min_rounds = 6, .cancel_after_ms = -1 };
	live(&c, "live.snap", 0);
	/* Pages written in earlier rounds and zero at the stop read back as zero. */
	c.zero_at_stop = true;
	c.min_rounds = 3;
	live(&c, "zeroed.snap", 0);
	c.zero_at_stop = false;
	/* The bandwidth cap: 16 MiB of random data at 32 MiB/s takes about half a second. */
	struct live_cfg bw = { .len = 16u << 20, .dirty_len = 64 * PS, .writers = 1,
			       .min_rounds = 2, .max_bw = 32 << 20, .cancel_after_ms = -1 };
	uint64_t t0 = g_now_us();
	live(&bw, "capped.snap", 0);
	CHECK(g_now_us() - t0 >= 350000);
	/* Cancel while iterating, at the switchover, and a write error. */
	c.min_rounds = 1000000;
	c.cancel_after_ms = 80;
	live(&c, "cancel.snap", MFD_ECANCELED);
	c.cancel_after_ms = -1;
	c.min_rounds = 2;
	c.cancel_in_stop = true;
	live(&c, "cancel-stop.snap", MFD_ECANCELED);
	c.cancel_in_stop = false;
	c.fail_write_after = 40;
	live(&c, "enospc.snap", -ENOSPC);
}

/* ---- API rules -------------------------------------------------------------------------- */

static void api(void)
{
	char path[600];
	snap_path(path, sizeof(path), "api.snap");
	struct mem m;
	mem_alloc(&m, 1u << 20, 1u << 20);
	struct mfd_error err;
	mfd_error_clear(&err);
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	CHECK_CODE(mfd_session_open_file(s, path, &err), MFD_ESTATE);
	mfd_session_free(s);
	s = mfd_session_new(MFD_SAVE);
	CHECK_CODE(mfd_session_set(s, MFD_OPT_LAZY, 1), -EINVAL);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_open_file(s, path, &err), -EINVAL);	/* no blocks */
	mfd_ram_block_add(s, "ram0", m.a, m.alen, PS, 0);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_connect(s, "unix:/nonexistent", &err), MFD_ESTATE);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_open_file(s, path, &err), 0);
	CHECK_CODE(mfd_session_set(s, MFD_OPT_CHANNELS, 2), MFD_ESTATE);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_open_file(s, path, &err), MFD_ESTATE);
	mfd_session_free(s);	/* never ran: nothing is left */
	CHECK_EQ(snap_dir_count(), 0);
	s = mfd_session_new(MFD_SAVE);
	mfd_ram_block_add(s, "ram0", m.a, m.alen, PS, 0);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_run(s, &err), MFD_ESTATE);	/* no file */
	mfd_session_free(s);
	s = mfd_session_new(MFD_RESTORE);
	mfd_ram_block_add(s, "ram0", m.a, m.alen, PS, 0);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_open_file(s, path, &err), -ENOENT);
	mfd_session_free(s);
	/* Canceled before it ran. */
	s = mfd_session_new(MFD_SAVE);
	mfd_ram_block_add(s, "ram0", m.a, m.alen, PS, 0);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_open_file(s, path, &err), 0);
	mfd_session_cancel(s);
	CHECK_CODE(mfd_session_run(s, &err), MFD_ECANCELED);
	mfd_session_free(s);
	CHECK_EQ(snap_dir_count(), 0);
	mem_free(&m);
}

int main(void)
{
	snap_dir_make("t-snap");
	uint64_t t = g_now_us();
	api();
	basic();
	fprintf(stderr, "  basic (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	t = g_now_us();
	direct_io();
	fds();
	fprintf(stderr, "  direct, fds (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	t = g_now_us();
	live_saves();
	fprintf(stderr, "  live (%.1f s)\n", (double)(g_now_us() - t) / 1e6);
	snap_dir_remove();
	return t_done("t_snap");
}
