/* migrate/save — write a mapped-ram snapshot, with the guest stopped or running: a precopy
 * driver (rounds.c) whose sink is a file.
 *
 * Data flow: each pass, the pages payload (mapped/ram_file.c) cuts every block into spans of at
 * least 1 MiB, one job each; a worker writes each run of non-zero pages with one positional
 * pwritev at its fixed place in the file, straight from the block memory (O_DIRECT when asked),
 * and punches out pages that turned zero.  A page is always written at the same offset, so the
 * file never grows past the layout fixed at open (RAM size plus metadata).
 *
 * Live (a dirty tracker is set): rounds as in a live migration (convergence, throttling,
 * deadline, bandwidth cap).  No ordering question arises between passes: a pass's jobs all
 * finish (pool barrier) before the next pass's are queued, and each page of a pass is in
 * exactly one job, so the last write of every page is the newest copy.  The switchover stops
 * the guest, takes the final dirty sync, and the run thread writes the device sections while the
 * workers write the last pages.
 *
 * Durability (crash consistency): page data first, then fdatasync; then the metadata (header,
 * block table, bitmaps; the device sections were written meanwhile), fdatasync; then the trailer,
 * fsync; then the temporary file is renamed over the target and the directory synced.  Nothing
 * claims a page before the page is on disk, and a file without its trailer is refused.  On
 * descriptors the embedder passed, the file is written in place and the naming is the embedder's.
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

/* ---- open ------------------------------------------------------------------------------------ */

static int layout(struct mfd_session *s, struct mfd__snapshot *snap, struct mfd_error *err)
{
	snap->blocks = calloc(s->ram.n, sizeof(*snap->blocks));
	snap->rf.present = calloc(s->ram.n, sizeof(*snap->rf.present));
	if (s->opt.page_checksums)
		snap->rf.sums = calloc(s->ram.n, sizeof(*snap->rf.sums));
	if (!snap->blocks || !snap->rf.present || (s->opt.page_checksums && !snap->rf.sums))
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
		snap->rf.present[i] = calloc(mfd__bitmap_words(b->npages), sizeof(uint64_t));
		if (!snap->rf.present[i])
			return mfd__err_set(err, -ENOMEM, -1, "page bitmaps");
		/* 4 bytes a page: 0.1% of the memory, bounded by what the embedder registered. */
		if (snap->rf.sums && !(snap->rf.sums[i] = calloc(b->npages, sizeof(uint32_t))))
			return mfd__err_set(err, -ENOMEM, -1, "page checksums");
	}
	mfd__snap_layout(snap->blocks, s->ram.n, snap->rf.sums != NULL, &snap->meta_len,
			 &snap->pages_end);
	snap->rf.layout = snap->blocks;
	return 0;
}

static int save_open(struct mfd_session *s, const char *path, int fd, int direct_fd,
		     struct mfd_error *err)
{
	int rc = mfd__snapshot_begin(s, path, -1, fd, direct_fd, MFD_FILE_NEED_WRITE, err);
	if (rc)
		return rc;
	struct mfd__snapshot *snap = s->priv;
	if ((rc = layout(s, snap, err)))
		return rc;
	if ((rc = mfd__uuid_generate(s->nego.session_id)))
		return mfd__err_set(err, rc, -1, "snapshot id");
	if (snap->by_fd) {
		/* Written in place: what the file held before must not survive past our end. */
		if ((rc = mfd__chan_file_truncate(s->chan[0], 0)))
			return mfd__err_set(err, rc, -1, "truncating %s", snap->path);
	} else {
		/* The temporary file lives beside the target so that the final rename is atomic.
		 * Saves to this path that died (kill -9) left theirs: they go first. */
		struct mfd__chan *c;
		unsigned stale;
		if ((rc = mfd__file_remove_stale(path, MFD_SNAP_TEMP_SUFFIX, &stale, err)))
			return rc;
		snprintf(snap->tmp, sizeof(snap->tmp), "%s%sXXXXXX", path, MFD_SNAP_TEMP_SUFFIX);
		if ((rc = mfd__chan_file_create_temp(snap->tmp, 0, &c, err)))
			return rc;
		snap->tmp_exists = true;
		mfd__session_add_chan(s, 0, c);
	}
	if ((rc = mfd__snapshot_open_workers(s, snap->tmp, O_RDWR, err)))
		return rc;
	snap->opened = true;
	return 0;
}

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
		MFD_ST_ADD(s, device_bytes, (uint64_t)n);
	}
	free(buf);
	*len = off - start;
	return rc;
}

static int sync_file(struct mfd_session *s, bool data_only, const char *what, struct mfd_error *err)
{
	int rc = mfd__chan_file_sync(s->chan[0], data_only);
	return rc ? mfd__err_set(err, rc, -1, "%s of the snapshot", what) : 0;
}

/* Pages are written: make them durable, then the metadata, then the trailer, then the name. */
static int finish_file(struct mfd_session *s, uint32_t passes, uint64_t dev_len, uint32_t dev_crc,
		       struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->priv;
	int rc;
	if ((rc = sync_file(s, true, "fdatasync of the pages", err)))
		return rc;
	struct mfd__snap_hdr h = {
		.version = MFD_SNAP_VERSION,
		.features = (s->opt.verify ? MFD_SNAP_FEAT_DIGEST : 0) |
			    (snap->rf.sums ? MFD_SNAP_FEAT_PAGE_CRC : 0),
		.nblocks = s->ram.n,
		.ndevices = s->devices.n,
		.meta_len = snap->meta_len,
		.devices_offset = snap->pages_end,
		.devices_len = dev_len,
		.file_size = snap->pages_end + dev_len + MFD_SNAP_TRAILER_LEN,
		.mem_bytes = s->ram.total_bytes,
		.digest = s->opt.verify ? __atomic_load_n(&s->ramx.digest, __ATOMIC_RELAXED) : 0,
		.created_unix_s = (uint64_t)time(NULL),
		.rounds = passes,
		.live = s->track.kind != MFD_TRACK_NONE,
	};
	memcpy(h.uuid, s->nego.session_id, MFD_UUID_LEN);
	uint8_t *meta = calloc(1, (size_t)snap->meta_len);
	if (!meta)
		return mfd__err_set(err, -ENOMEM, -1, "metadata of %llu bytes",
				    (unsigned long long)snap->meta_len);
	mfd__snap_hdr_encode(meta, &h);
	for (uint32_t i = 0; i < s->ram.n; i++) {
		struct mfd__snap_block *k = &snap->blocks[i];
		uint8_t *bm = meta + k->bitmap_offset;
		mfd__snap_bitmap_to_file(snap->rf.present[i], k->npages, bm);
		k->present = mfd__bitmap_count(snap->rf.present[i], k->npages);
		k->bitmap_crc = mfd__crc32c(0, bm, (size_t)k->bitmap_len);
		for (uint64_t pg = 0; snap->rf.sums && pg < k->npages; pg++)
			mfd__put32(meta + k->sums_offset + pg * 4, snap->rf.sums[i][pg]);
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
	if ((rc = sync_file(s, true, "fdatasync of the metadata", err)))
		return rc;
	uint8_t tb[MFD_SNAP_TRAILER_LEN];
	mfd__snap_trailer_encode(tb, &t);
	v = (struct iovec){ tb, sizeof(tb) };
	if ((rc = mfd__chan_pwritev(s->chan[0], &v, 1, (int64_t)(h.file_size - sizeof(tb)))))
		return mfd__err_set(err, rc, -1, "writing the trailer");
	if ((rc = sync_file(s, false, "fsync", err)))
		return rc;
	MFD_ST_SET(s, file_bytes, h.file_size);
	if (snap->by_fd)	/* the embedder owns the name and its atomicity */
		return 0;
	if (mfd__session_canceled(s))
		return mfd__err_set(err, MFD_ECANCELED, -1, "before the snapshot replaced '%s'",
				    snap->path);
	if (rename(snap->tmp, snap->path))
		return mfd__err_set(err, -errno, -1, "renaming the snapshot to '%s'", snap->path);
	snap->tmp_exists = false;
	return mfd__file_sync_dir(snap->path, err);
}

/* ---- the sink -------------------------------------------------------------------------------- */

static int file_begin(struct mfd_session *s, struct mfd_error *err)
{
	(void)s, (void)err;
	return 0;	/* the layout was fixed at open */
}

/* Bandwidth in guest bytes handled per second (a zero page costs no write but is handled),
 * which is what the dirty bytes will cost in the final pass. */
static uint64_t bytes_done(struct mfd_session *s)
{
	return (__atomic_load_n(&s->ramx.normal_pages, __ATOMIC_RELAXED) +
		__atomic_load_n(&s->ramx.zero_pages, __ATOMIC_RELAXED)) *
	       s->ram.page_size;
}

static int file_finish(struct mfd_session *s, uint32_t rounds, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->priv;
	uint64_t dev_len = 0;
	uint32_t dev_crc = 0;
	/* Device states go to the file while the workers write the last pages. */
	int rc = write_devices(s, snap->pages_end, &dev_len, &dev_crc, err);
	if (rc == 0)
		rc = mfd__pool_sync(s->pool);
	if (rc == 0 && s->opt.verify)
		rc = mfd__precopy_digest(s);
	if (rc == 0)
		rc = finish_file(s, rounds + 1, dev_len, dev_crc, err);
	if (rc == 0 && s->opt.verify)
		MFD_ST_SET(s, verified, true);
	return rc;
}

static int file_conclude(struct mfd_session *s, int rc)
{
	struct mfd__snapshot *snap = s->priv;
	if (rc == 0)
		rc = mfd__errbox_code(&s->errbox);
	if (rc && snap->tmp_exists) {
		unlink(snap->tmp);
		snap->tmp_exists = false;
	}
	return rc;
}

static const struct mfd__sink_ops file_sink = {
	.verb = "saving",
	.job_verb = MFD_JOB_STORE,
	.begin = file_begin,
	.progress = bytes_done,
	.finish = file_finish,
	.conclude = file_conclude,
};

static int save_run(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->priv;
	if (!snap || !snap->opened)
		return mfd__err_set(err, MFD_ESTATE, -1, "open the snapshot file before run");
	int rc = mfd__snapshot_add_payload(s, &mfd__ram_file_save_ops);
	if (rc)
		return mfd__err_set(err, rc, -1, "payloads");
	return mfd__precopy_run(s, &file_sink);
}

const struct mfd__role_ops mfd__role_save = {
	.name = "save",
	.trackable = true,
	.open = save_open,
	.run = save_run,
	.free = mfd__snapshot_free,
};
