/* migrate/save — write a mapped-ram snapshot, with the guest stopped or running.
 *
 * Data flow: the run thread cuts every block into spans of at least 1 MiB and submits one job
 * per span to the pool; a worker examines the span's pages (all of them in the first pass, the
 * dirty ones later), writes each run of consecutive non-zero pages with one positional pwritev
 * at its fixed place in the file, straight from the block memory (O_DIRECT when asked), and
 * makes pages that turned zero read as zero again (a punched hole) and clears their bit.  A page
 * is always written at the same offset, so rewriting it in a later round replaces it: the file
 * never grows past the layout fixed at open (RAM size plus metadata).
 *
 * Live (a dirty tracker is set): rounds as in a live migration.  Each round is one pass of jobs
 * and a pool barrier; the tracker's dirty pages become the next round's set, the convergence
 * controller decides (continue, throttle, switch over, fail at the deadline).  The switchover
 * stops the guest (cb.stop), takes the final dirty sync, writes those pages while the run
 * thread writes the device sections.  No ordering question arises between rounds: a round's
 * jobs all finish (barrier) before the next round's are submitted, and each page of a round is
 * in exactly one job, so the last write of every page is the newest copy.
 *
 * Durability (crash consistency): page data first, then fdatasync; then the metadata (header,
 * block table, bitmaps; the device sections were written meanwhile), fdatasync; then the trailer,
 * fsync; then the temporary file is renamed over the target and the directory synced.  Nothing
 * claims a page before the page is on disk, and a file without its trailer is refused.
 *
 * Failure or cancel: tracking stops, the throttle is lifted, a guest stopped for the switchover
 * is resumed, and the temporary file is removed; the target path is untouched. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "migrate/snapshot.h"
#include "payload/ram_batch.h"

/* ---- open ------------------------------------------------------------------------------------ */

int mfd__save_open(struct mfd_session *s, const char *path, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->snap;
	int rc;
	snap->blocks = calloc(s->ram.n, sizeof(*snap->blocks));
	snap->present = calloc(s->ram.n, sizeof(*snap->present));
	if (!snap->blocks || !snap->present)
		return mfd__err_set(err, -ENOMEM, -1, "snapshot layout");
	for (uint32_t i = 0; i < s->ram.n; i++) {
		const struct mfd__block *b = &s->ram.blocks[i];
		struct mfd__snap_block *k = &snap->blocks[i];
		if (b->len > MFD_SNAP_MAX_BLOCK_LEN)
			return mfd__err_set(err, -EFBIG, -1, "block '%s' is larger than a snapshot "
					    "holds", b->name);
		memcpy(k->name, b->name, sizeof(k->name));
		k->page_size = b->page_size;
		k->len = b->len;
		snap->present[i] = calloc(mfd__bitmap_words(b->npages), sizeof(uint64_t));
		if (!snap->present[i])
			return mfd__err_set(err, -ENOMEM, -1, "page bitmaps");
	}
	mfd__snap_layout(snap->blocks, s->ram.n, &snap->meta_len, &snap->pages_end);
	if ((rc = mfd__uuid_generate(s->session_id)))
		return mfd__err_set(err, rc, -1, "snapshot id");

	int fd;
	if (snap->by_fd) {
		/* Written in place: what the file held before must not survive past our end. */
		if (ftruncate(s->chan[0]->fd, 0) < 0)
			return mfd__err_set(err, -errno, -1, "truncating %s", snap->path);
	} else {
		/* The temporary file lives beside the target so that the final rename is atomic. */
		snprintf(snap->tmp, sizeof(snap->tmp), "%s.XXXXXX", path);
		fd = mkostemp(snap->tmp, O_CLOEXEC);
		if (fd < 0)
			return mfd__err_set(err, -errno, -1, "creating a file beside '%s'", path);
		snap->tmp_exists = true;
		if ((rc = mfd__snapshot_add_chan(s, 0, fd, err)))
			return rc;
	}
	for (unsigned w = 0; w < s->channels; w++) {
		fd = mfd__snapshot_worker_fd(s, O_RDWR | (s->direct_io ? O_DIRECT : 0), err);
		if (fd < 0)
			return fd;
		if ((rc = mfd__snapshot_add_chan(s, w + 1, fd, err)))
			return rc;
	}
	return 0;
}

/* ---- workers ----------------------------------------------------------------------------- */

struct run {
	uint64_t first, count;	/* pages */
};

static int write_run(struct mfd_session *s, struct mfd__chan *c, unsigned bi, const struct run *r)
{
	const struct mfd__block *b = &s->ram.blocks[bi];
	const struct mfd__snap_block *k = &s->snap->blocks[bi];
	uint64_t ps = b->page_size, len = r->count * ps;
	if (mfd__errbox_code(&s->errbox))
		return mfd__errbox_code(&s->errbox);	/* canceled or failed elsewhere */
	if (mfd__ratelimit_wait(&s->rate, len, &s->errbox.code))
		return mfd__errbox_code(&s->errbox);
	struct iovec v = { b->host + r->first * ps, (size_t)len };
	MFD_GUEST_READS_BEGIN();
	int rc = mfd__chan_pwritev(c, &v, 1, (int64_t)(k->pages_offset + r->first * ps));
	MFD_GUEST_READS_END();
	if (rc)
		mfd__errbox_set(&s->errbox, rc, c->id, "writing %llu pages of block '%s' at page %llu",
				(unsigned long long)r->count, b->name, (unsigned long long)r->first);
	return rc;
}

static int zero_run(struct mfd_session *s, struct mfd__chan *c, unsigned bi, const struct run *r)
{
	const struct mfd__block *b = &s->ram.blocks[bi];
	const struct mfd__snap_block *k = &s->snap->blocks[bi];
	uint64_t ps = b->page_size;
	if (mfd__errbox_code(&s->errbox))
		return mfd__errbox_code(&s->errbox);
	int rc = mfd__chan_file_zero(c, (int64_t)(k->pages_offset + r->first * ps),
				     (int64_t)(r->count * ps));
	if (rc)
		mfd__errbox_set(&s->errbox, rc, c->id, "punching out %llu pages of block '%s' at "
				"page %llu", (unsigned long long)r->count, b->name,
				(unsigned long long)r->first);
	return rc;
}

/* One span: every page (MFD_JOB_RAM) or the dirty ones (MFD_JOB_RAM_DIRTY). */
static int save_span(struct mfd_session *s, unsigned w, const struct mfd__job *j)
{
	struct mfd__wstate *ws = &s->ws[w];
	struct mfd__chan *c = s->chan[w + 1];
	const struct mfd__block *b = &s->ram.blocks[j->block];
	uint64_t *present = s->snap->present[j->block];
	const uint64_t *dirty = j->kind == MFD_JOB_RAM_DIRTY ? s->dirty[j->block] : NULL;
	uint64_t ps = b->page_size, end = j->first + j->count, written = 0, zero = 0, ios = 0;
	struct run data = { 0 }, hole = { 0 };
	int rc = 0;

	for (uint64_t p = dirty ? mfd__bitmap_next_set(dirty, end, j->first) : j->first; p < end;
	     p = dirty ? mfd__bitmap_next_set(dirty, end, p + 1) : p + 1) {
		bool is_zero = s->zero_detect && mfd__is_zero(b->host + p * ps, ps);
		if (!is_zero) {
			if (data.count && data.first + data.count == p) {
				data.count++;
			} else {
				if (data.count && (rc = write_run(s, c, j->block, &data)))
					return rc;
				ios += data.count != 0;
				written += data.count;
				data = (struct run){ p, 1 };
			}
			if (!mfd__bit_test_atomic(present, p))
				mfd__bit_set_atomic(present, p);
			continue;
		}
		zero++;
		if (!mfd__bit_test_atomic(present, p))
			continue;	/* never written: already a hole */
		/* Written in an earlier round and zero now: it must read back as zero. */
		__atomic_fetch_and(&present[p / 64], ~(1ull << (p % 64)), __ATOMIC_RELAXED);
		if (hole.count && hole.first + hole.count == p) {
			hole.count++;
		} else {
			if (hole.count && (rc = zero_run(s, c, j->block, &hole)))
				return rc;
			ios += hole.count != 0;
			hole = (struct run){ p, 1 };
		}
	}
	if (data.count && (rc = write_run(s, c, j->block, &data)))
		return rc;
	if (hole.count && (rc = zero_run(s, c, j->block, &hole)))
		return rc;
	ios += (data.count != 0) + (hole.count != 0);
	written += data.count;
	__atomic_fetch_add(&ws->packets, ios, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ws->normal_pages, written, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ws->zero_pages, zero, __ATOMIC_RELAXED);
	return 0;
}

static int save_job(void *owner, unsigned w, void *job)
{
	struct mfd_session *s = owner;
	const struct mfd__job *j = job;
	switch (j->kind) {
	case MFD_JOB_RAM:
	case MFD_JOB_RAM_DIRTY:
		return save_span(s, w, j);
	case MFD_JOB_DIGEST:
		return mfd__job_digest(s, j);
	}
	return -EINVAL;
}

/* ---- rounds ------------------------------------------------------------------------------ */

static int submit_full_pass(struct mfd_session *s)
{
	uint64_t chunk = s->snap->chunk_pages;
	int rc = 0;
	for (uint32_t b = 0; b < s->ram.n && rc == 0; b++) {
		uint64_t n = s->ram.blocks[b].npages;
		for (uint64_t p = 0; p < n && rc == 0; p += chunk) {
			struct mfd__job j = { .kind = MFD_JOB_RAM, .block = b, .first = p,
					      .count = MFD_MIN(chunk, n - p) };
			rc = mfd__pool_submit(s->pool, &j);
		}
	}
	return rc;
}

/* Spans of the dirty bitmaps: at most chunk pages of the block each, skipping clean spans. */
static int submit_dirty(struct mfd_session *s)
{
	uint64_t chunk = s->snap->chunk_pages;
	int rc = 0;
	for (uint32_t b = 0; b < s->ram.n && rc == 0; b++) {
		const uint64_t *map = s->dirty[b];
		uint64_t n = s->ram.blocks[b].npages;
		for (uint64_t p = mfd__bitmap_next_set(map, n, 0); p < n && rc == 0;) {
			uint64_t count = MFD_MIN(chunk, n - p);
			struct mfd__job j = { .kind = MFD_JOB_RAM_DIRTY, .block = b, .first = p,
					      .count = count };
			rc = mfd__pool_submit(s->pool, &j);
			p = mfd__bitmap_next_set(map, n, p + count);
		}
	}
	return rc;
}

/* Bandwidth in guest bytes handled per second (a zero page costs no write but is handled),
 * which is what the dirty bytes will cost in the final pass. */
static uint64_t bytes_done(struct mfd_session *s)
{
	uint64_t n = 0;
	for (unsigned w = 0; w < s->nws; w++)
		n += __atomic_load_n(&s->ws[w].normal_pages, __ATOMIC_RELAXED) +
		     __atomic_load_n(&s->ws[w].zero_pages, __ATOMIC_RELAXED);
	return n * s->ram.page_size;
}

/* A pass over the file: a round needs no markers (a pool barrier ends it, and each page is in
 * one job per pass, so the last write of a page is its newest copy). */
static int submit_pass(struct mfd_session *s, uint32_t r)
{
	return r == 0 ? submit_full_pass(s) : submit_dirty(s);
}

static const struct mfd__rounds_ops file_rounds = {
	.submit = submit_pass,
	.progress = bytes_done,
	.verb = "saving",
};

/* ---- the metadata ------------------------------------------------------------------------- */

/* Device sections, one after another from `off`, by the run thread (while workers may still
 * be writing pages elsewhere in the file).  *crc: CRC-32C of the whole device area. */
static int write_devices(struct mfd_session *s, uint64_t off, uint64_t *len, uint32_t *crc,
			 struct mfd_error *err)
{
	static const uint8_t pad[8];
	uint8_t *buf = NULL, hdr[MFD_SNAP_DEV_HDR_LEN];
	size_t cap = 0;
	uint64_t start = off;
	int rc = 0;
	for (uint32_t i = 0; i < s->devices.n && rc == 0; i++) {
		const struct mfd__device *d = &s->devices.v[i];
		long n = mfd__device_save(d, &buf, &cap, MFD_SNAP_MAX_DEVICE_LEN, err);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		struct mfd__snap_dev sd = { .instance = d->instance, .version = d->version,
					    .data_len = (uint64_t)n,
					    .data_crc = mfd__crc32c(0, buf, (size_t)n) };
		memcpy(sd.name, d->name, sizeof(sd.name));
		mfd__snap_dev_encode(hdr, &sd);
		size_t padlen = (size_t)(mfd__snap_dev_span((uint64_t)n) - MFD_SNAP_DEV_HDR_LEN - n);
		*crc = mfd__crc32c(*crc, hdr, sizeof(hdr));
		*crc = mfd__crc32c(*crc, buf, (size_t)n);
		*crc = mfd__crc32c(*crc, pad, padlen);
		struct iovec iov[3] = { { hdr, sizeof(hdr) }, { buf, (size_t)n }, { (void *)pad, padlen } };
		if ((rc = mfd__chan_pwritev(s->chan[0], iov, 3, (int64_t)off)))
			mfd__err_set(err, rc, -1, "writing device %s.%u", d->name, d->instance);
		off += mfd__snap_dev_span((uint64_t)n);
		__atomic_fetch_add(&s->st_device_bytes, (uint64_t)n, __ATOMIC_RELAXED);
	}
	free(buf);
	*len = off - start;
	return rc;
}

static int sync_fd(int fd, bool data_only, const char *what, struct mfd_error *err)
{
	if ((data_only ? fdatasync(fd) : fsync(fd)) == 0)
		return 0;
	return mfd__err_set(err, -errno, -1, "%s of the snapshot", what);
}

static int sync_dir(const char *path, struct mfd_error *err)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return mfd__err_set(err, -errno, -1, "opening directory '%s'", dir);
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	/* Some file systems refuse fsync on a directory; the rename is then as durable as they
	 * make it. */
	if (rc && rc != -EINVAL && rc != -EROFS)
		return mfd__err_set(err, rc, -1, "syncing directory '%s'", dir);
	return 0;
}

/* Pages are written: make them durable, then the metadata, then the trailer, then the name. */
static int finish_file(struct mfd_session *s, uint32_t rounds, bool live, uint64_t dev_len,
		       uint32_t dev_crc, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->snap;
	int fd = s->chan[0]->fd, rc;
	if ((rc = sync_fd(fd, true, "fdatasync of the pages", err)))
		return rc;
	struct mfd__snap_hdr h = {
		.version = MFD_SNAP_VERSION,
		.features = s->verify ? MFD_SNAP_FEAT_DIGEST : 0,
		.nblocks = s->ram.n,
		.ndevices = s->devices.n,
		.meta_len = snap->meta_len,
		.devices_offset = snap->pages_end,
		.devices_len = dev_len,
		.file_size = snap->pages_end + dev_len + MFD_SNAP_TRAILER_LEN,
		.mem_bytes = s->ram.total_bytes,
		.digest = s->verify ? __atomic_load_n(&s->digest, __ATOMIC_RELAXED) : 0,
		.created_unix_s = (uint64_t)time(NULL),
		.rounds = rounds,
		.live = live,
	};
	memcpy(h.uuid, s->session_id, MFD_UUID_LEN);
	uint8_t *meta = calloc(1, (size_t)snap->meta_len);
	if (!meta)
		return mfd__err_set(err, -ENOMEM, -1, "metadata of %llu bytes",
				    (unsigned long long)snap->meta_len);
	mfd__snap_hdr_encode(meta, &h);
	for (uint32_t i = 0; i < s->ram.n; i++) {
		struct mfd__snap_block *k = &snap->blocks[i];
		uint8_t *bm = meta + k->bitmap_offset;
		mfd__snap_bitmap_to_file(snap->present[i], k->npages, bm);
		k->present = mfd__bitmap_count(snap->present[i], k->npages);
		k->bitmap_crc = mfd__crc32c(0, bm, (size_t)k->bitmap_len);
		mfd__snap_block_encode(meta + MFD_SNAP_HDR_LEN + (size_t)i * MFD_SNAP_BLOCK_LEN, k);
	}
	struct mfd__snap_trailer t = {
		.version = MFD_SNAP_VERSION,
		.nblocks = h.nblocks,
		.ndevices = h.ndevices,
		.file_size = h.file_size,
		.devices_offset = h.devices_offset,
		.meta_crc = mfd__crc32c(0, meta, (size_t)snap->meta_len),
		.devices_crc = dev_crc,
	};
	memcpy(t.uuid, h.uuid, MFD_UUID_LEN);
	struct iovec v = { meta, (size_t)snap->meta_len };
	rc = mfd__chan_pwritev(s->chan[0], &v, 1, 0);
	free(meta);
	if (rc)
		return mfd__err_set(err, rc, -1, "writing the metadata");
	if ((rc = sync_fd(fd, true, "fdatasync of the metadata", err)))
		return rc;
	uint8_t tb[MFD_SNAP_TRAILER_LEN];
	mfd__snap_trailer_encode(tb, &t);
	v = (struct iovec){ tb, sizeof(tb) };
	if ((rc = mfd__chan_pwritev(s->chan[0], &v, 1, (int64_t)(h.file_size - sizeof(tb)))))
		return mfd__err_set(err, rc, -1, "writing the trailer");
	if ((rc = sync_fd(fd, false, "fsync", err)))
		return rc;
	if (snap->by_fd) {	/* the embedder owns the name and its atomicity */
		__atomic_store_n(&s->st_file_bytes, h.file_size, __ATOMIC_RELAXED);
		return 0;
	}
	if (mfd__session_canceled(s))
		return mfd__err_set(err, MFD_ECANCELED, -1, "before the snapshot replaced '%s'",
				    snap->path);
	if (rename(snap->tmp, snap->path))
		return mfd__err_set(err, -errno, -1, "renaming the snapshot to '%s'", snap->path);
	snap->tmp_exists = false;
	__atomic_store_n(&s->st_file_bytes, h.file_size, __ATOMIC_RELAXED);
	return sync_dir(snap->path, err);
}

/* ---- the run ------------------------------------------------------------------------------- */

int mfd__save_run(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->snap;
	struct mfd_error e;
	mfd_error_clear(&e);
	bool live = s->track_kind != MFD_TRACK_NONE, stopped = false;
	uint64_t t_stop = 0, dev_len = 0;
	uint32_t rounds = 1, dev_crc = 0;
	int rc;
	if (!snap || !snap->opened)
		return mfd__err_set(err, MFD_ESTATE, -1, "open the snapshot file before run");
	unsigned nw = s->nchan - 1;
	if ((rc = mfd__session_alloc_workers(s, nw)) ||
	    (rc = mfd__session_start_pool(s, nw, save_job))) {
		mfd__err_set(&e, rc, -1, "starting workers");
		goto out;
	}
	if (live && (rc = mfd__rounds_start_tracking(s, &e)))
		goto out;
	__atomic_store_n(&s->t_setup_ns, mfd__now_ns(), __ATOMIC_RELAXED);
	mfd__session_set_status(s, MFD_STATUS_ACTIVE);

	if (live) {
		if ((rc = mfd__rounds_precopy(s, &file_rounds, &rounds, &e)))
			goto out;
		if ((rc = mfd__rounds_stop(s, &t_stop, &stopped, &e)))
			goto out;
		rounds++;
		__atomic_store_n(&s->st_rounds, (uint64_t)rounds, __ATOMIC_RELAXED);
		rc = submit_dirty(s);
	} else {
		__atomic_store_n(&s->st_rounds, 1, __ATOMIC_RELAXED);
		rc = submit_full_pass(s);
	}
	/* Device states go to the file while the workers write the last pages. */
	if (rc == 0)
		rc = write_devices(s, snap->pages_end, &dev_len, &dev_crc, &e);
	if (rc == 0)
		rc = mfd__pool_sync(s->pool);
	if (rc == 0 && s->verify) {
		uint32_t *order = malloc(s->ram.n * sizeof(*order));
		if (!order) {
			rc = mfd__err_set(&e, -ENOMEM, -1, "digest");
		} else {
			for (uint32_t i = 0; i < s->ram.n; i++)
				order[i] = i;
			rc = mfd__session_digest(s, order, s->ram.n);
			free(order);
		}
	}
	if (rc == 0)
		rc = finish_file(s, rounds, live, dev_len, dev_crc, &e);
	if (rc == 0 && s->verify)
		__atomic_store_n(&s->verified, true, __ATOMIC_RELAXED);
out:
	if (e.code)
		mfd__errbox_setv(&s->errbox, &e);
	if (rc)
		mfd__session_fail(s, rc, -1, "snapshot save");
	if (rc == 0)
		rc = mfd__errbox_code(&s->errbox);
	if (stopped && rc == 0)
		__atomic_store_n(&s->st_downtime_ms, (mfd__now_ns() - t_stop) / 1000000,
				 __ATOMIC_RELAXED);
	/* Whatever happened, the guest goes on: tracking off, throttle lifted, resumed if this
	 * save stopped it and failed. */
	if (s->tracker)
		s->tracker->ops->stop(s->tracker);
	mfd__rounds_set_throttle(s, 0);
	if (stopped && rc && s->cb.resume)
		s->cb.resume(s->cb.opaque);
	if (rc && snap->tmp_exists) {
		unlink(snap->tmp);
		snap->tmp_exists = false;
	}
	return rc;
}
