/* migrate/restore — read a mapped-ram snapshot back into registered memory.
 *
 * Open: the file's metadata is read and validated as a whole (mapped/snapfile.c) before
 * anything is used, its block table is matched against the registered blocks (names, lengths,
 * page sizes) and its device sections against the registered devices, and the page bitmaps are
 * read into memory (bounded by the registered memory: one bit per page).
 *
 * Eager: the pages payload (mapped/ram_file.c) queues one job per span of at least 1 MiB of each
 * block; the pool hands them out and submit blocks on the full queues (no polling).  A worker
 * reads each run of present pages of its span with one positional preadv straight into the block
 * memory (O_DIRECT when asked: the memory and every page in the file are page aligned), and
 * makes absent pages zero (nothing to do in MFD_BLOCK_ZEROED blocks).  Lazy: each block's memory
 * is replaced by a private mapping of its pages area (mmap MAP_PRIVATE | MAP_FIXED at the same
 * address): no page is read until touched; holes read as zero.  Then, in both modes, the device
 * sections are read (checksummed again, bounded by MFD_OPT_DEVICE_MAX_BYTES) and given to their
 * load callbacks, and the memory is ready.  With verify, the memory's digest is compared with
 * the saved one. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/snapshot.h"

#include "payload/ram_batch.h"

static int match_blocks(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->priv;
	const struct mfd__snap_meta *m = &snap->meta;
	if (m->hdr.nblocks != s->ram.n)
		return mfd__err_set(err, MFD_EBLOCKTABLE, -1, "the snapshot has %u blocks, %u are "
				    "registered", m->hdr.nblocks, s->ram.n);
	snap->map = calloc(m->hdr.nblocks, sizeof(*snap->map));
	if (!snap->map)
		return mfd__err_set(err, -ENOMEM, -1, "block map");
	for (uint32_t i = 0; i < m->hdr.nblocks; i++) {
		const struct mfd__snap_block *k = &m->blocks[i];
		int l = mfd__ram_find(&s->ram, k->name);
		if (l < 0)
			return mfd__err_set(err, MFD_EBLOCKTABLE, -1, "block '%s' of the snapshot is not "
					    "registered", k->name);
		const struct mfd__block *b = &s->ram.blocks[l];
		if (b->page_size != k->page_size)
			return mfd__err_set(err, MFD_EPAGESIZE, -1, "block '%s': pages of %u bytes in the "
					    "snapshot, %u registered", k->name, k->page_size,
					    b->page_size);
		if (b->len != k->len)
			return mfd__err_set(err, MFD_EBLOCKTABLE, -1, "block '%s': %llu bytes in the "
					    "snapshot, %llu registered", k->name,
					    (unsigned long long)k->len, (unsigned long long)b->len);
		snap->map[i] = (uint32_t)l;	/* names are unique on both sides: a bijection */
	}
	return 0;
}

static int match_devices(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->priv;
	const struct mfd__snap_meta *m = &snap->meta;
	snap->dev_map = calloc(m->hdr.ndevices ? m->hdr.ndevices : 1, sizeof(*snap->dev_map));
	if (!snap->dev_map)
		return mfd__err_set(err, -ENOMEM, -1, "device map");
	for (uint32_t i = 0; i < m->hdr.ndevices; i++) {
		const struct mfd__snap_dev *d = &m->devs[i];
		struct mfd__device *dev = mfd__devices_find(&s->devices, d->name, d->instance);
		if (!dev)
			return mfd__err_set(err, MFD_EDEVICE, -1, "device %s.%u of the snapshot is not "
					    "registered", d->name, d->instance);
		if (d->version > dev->version)
			return mfd__err_set(err, MFD_EDEVICE, -1, "device %s.%u: state version %u, we "
					    "load up to %u", d->name, d->instance, d->version,
					    dev->version);
		snap->dev_map[i] = (uint32_t)(dev - s->devices.v);
	}
	for (uint32_t i = 0; i < s->devices.n; i++) {
		uint32_t k = 0;
		while (k < m->hdr.ndevices && snap->dev_map[k] != i)
			k++;
		if (k == m->hdr.ndevices)
			return mfd__err_set(err, MFD_EDEVICE, -1, "the snapshot has no state for device "
					    "%s.%u", s->devices.v[i].name, s->devices.v[i].instance);
	}
	return 0;
}

static int restore_open(struct mfd_session *s, const char *path, int fd, int direct_fd,
			struct mfd_error *err)
{
	/* O_NONBLOCK: a FIFO must not block the open (the reader then refuses it). */
	int rc = mfd__snapshot_begin(s, path, O_RDONLY | O_NONBLOCK, fd, direct_fd, MFD_FILE_NEED_READ,
				     err);
	if (rc)
		return rc;
	struct mfd__snapshot *snap = s->priv;
	struct mfd__snap_limits lim = { .device_max = s->opt.device_max };
	if ((rc = mfd__snap_read(s->chan[0], &snap->meta, &lim, 0, err)) || (rc = match_blocks(s, err)) ||
	    (rc = match_devices(s, err)))
		return rc;
	snap->rf.present = calloc(s->ram.n, sizeof(*snap->rf.present));
	if (!snap->rf.present)
		return mfd__err_set(err, -ENOMEM, -1, "page bitmaps");
	/* An eager restore checks every page it reads against the file's checksums; a lazy one
	 * reads no page (mfd_snapshot_verify scrubs the file instead). */
	bool check = (snap->meta.hdr.features & MFD_SNAP_FEAT_PAGE_CRC) && s->opt.page_checksums &&
		     !s->opt.lazy;
	if (check && !(snap->rf.sums = calloc(s->ram.n, sizeof(*snap->rf.sums))))
		return mfd__err_set(err, -ENOMEM, -1, "page checksums");
	for (uint32_t i = 0; i < snap->meta.hdr.nblocks; i++) {
		uint32_t l = snap->map[i];
		snap->rf.present[l] = calloc(mfd__bitmap_words(s->ram.blocks[l].npages), sizeof(uint64_t));
		if (!snap->rf.present[l])
			return mfd__err_set(err, -ENOMEM, -1, "page bitmaps");
		if ((rc = mfd__snap_read_bitmap(s->chan[0], &snap->meta.blocks[i], snap->rf.present[l],
						err)))
			return rc;
		if (!check)
			continue;
		snap->rf.sums[l] = calloc(s->ram.blocks[l].npages, sizeof(uint32_t));
		if (!snap->rf.sums[l])
			return mfd__err_set(err, -ENOMEM, -1, "page checksums");
		if ((rc = mfd__snap_read_sums(s->chan[0], &snap->meta.blocks[i], snap->rf.sums[l], err)))
			return rc;
	}
	snap->rf.layout = snap->meta.blocks;
	snap->rf.map = snap->map;
	snap->rf.nfile_blocks = snap->meta.hdr.nblocks;
	/* Lazy restores map the file and need no page channels (but a digest gets workers). */
	if (!s->opt.lazy || s->opt.verify)
		rc = mfd__snapshot_open_workers(s, path, O_RDONLY, err);
	if (rc == 0)
		snap->opened = true;
	return rc;
}

/* ---- lazy ---------------------------------------------------------------------------------- */

static int map_lazily(struct mfd_session *s, struct mfd_error *err)
{
	const struct mfd__snapshot *snap = s->priv;
	for (uint32_t i = 0; i < snap->meta.hdr.nblocks; i++) {
		const struct mfd__snap_block *k = &snap->meta.blocks[i];
		const struct mfd__block *b = &s->ram.blocks[snap->map[i]];
		int rc = mfd__chan_file_map(s->chan[0], b->host, (size_t)b->len, k->pages_offset);
		if (rc)
			return mfd__err_set(err, rc, -1, "mapping block '%s' from the snapshot", b->name);
		__atomic_fetch_add(&s->ramx.normal_pages, k->present, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->ramx.zero_pages, k->npages - k->present, __ATOMIC_RELAXED);
	}
	return 0;
}

/* ---- devices and the run ------------------------------------------------------------------ */

static int load_devices(struct mfd_session *s, struct mfd_error *err)
{
	const struct mfd__snapshot *snap = s->priv;
	int rc = 0;
	for (uint32_t i = 0; i < snap->meta.hdr.ndevices && rc == 0; i++) {
		const struct mfd__snap_dev *d = &snap->meta.devs[i];
		struct mfd__device *dev = &s->devices.v[snap->dev_map[i]];
		uint8_t *buf = malloc(d->data_len ? (size_t)d->data_len : 1);
		if (!buf)
			return mfd__err_set(err, -ENOMEM, -1, "device %s.%u state", d->name, d->instance);
		rc = mfd__snap_read_dev(s->chan[0], d, buf, err);
		if (rc == 0) {
			rc = dev->ops.load ? dev->ops.load(dev->opaque, buf, (size_t)d->data_len, d->version)
					   : MFD_EDEVICE;
			if (rc)
				rc = mfd__err_set(err, rc < 0 ? rc : MFD_EDEVICE, -1, "device %s.%u refused "
						  "its state", d->name, d->instance);
			else
				MFD_ST_ADD(s, device_bytes, d->data_len);
		}
		free(buf);
	}
	return rc;
}

static int read_eagerly(struct mfd_session *s)
{
	struct mfd__plan plan = { .pool = s->pool, .verb = MFD_JOB_LOAD, .final = true };
	const struct mfd__payload *p = &s->payloads.v[s->ram_payload];
	int rc = p->ops->plan(p, &plan);
	return rc ? rc : mfd__pool_sync(s->pool);
}

static int restore_run(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->priv;
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc;
	if (!snap || !snap->opened)
		return mfd__err_set(err, MFD_ESTATE, -1, "open the snapshot file before run");
	MFD_ST_SET(s, file_bytes, snap->meta.hdr.file_size);
	if ((rc = mfd__snapshot_add_payload(s, &mfd__ram_file_load_ops))) {
		mfd__err_set(&e, rc, -1, "payloads");
		goto out;
	}
	if (s->nchan > 1 && (rc = mfd__session_start_workers(s, s->nchan - 1, &e)))
		goto out;
	MFD_ST_SET(s, t_setup_ns, mfd__now_ns());
	mfd__session_set_status(s, MFD_STATUS_ACTIVE);
	rc = s->opt.lazy ? map_lazily(s, &e) : read_eagerly(s);
	if (rc == 0)
		rc = load_devices(s, &e);
	if (rc)
		goto out;
	MFD_ST_SET(s, ready_ms, (mfd__now_ns() - MFD_ST_GET(s, t_start_ns)) / 1000000);
	MFD_ST_SET(s, rounds, snap->meta.hdr.rounds);
	if (s->opt.verify) {
		if (!(snap->meta.hdr.features & MFD_SNAP_FEAT_DIGEST)) {
			rc = mfd__err_set(&e, MFD_EFEATURE, -1, "the snapshot has no digest (saved "
					  "without verify)");
			goto out;
		}
		if ((rc = mfd__ram_digest(&s->ramx, &s->payloads.v[s->ram_payload], s->pool, snap->map,
					  snap->meta.hdr.nblocks)))
			goto out;
		uint64_t d = __atomic_load_n(&s->ramx.digest, __ATOMIC_RELAXED);
		if (d != snap->meta.hdr.digest) {
			rc = mfd__err_set(&e, MFD_EVERIFY, -1, "saved digest %016llx, restored %016llx",
					  (unsigned long long)snap->meta.hdr.digest,
					  (unsigned long long)d);
			goto out;
		}
		MFD_ST_SET(s, verified, true);
	}
out:
	if (e.code)
		mfd__errbox_setv(&s->errbox, &e);
	return rc;
}

const struct mfd__role_ops mfd__role_restore = {
	.name = "restore",
	.open = restore_open,
	.run = restore_run,
	.free = mfd__snapshot_free,
};
