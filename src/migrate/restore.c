/* migrate/restore — read a mapped-ram snapshot back into registered memory.
 *
 * Open: the file's metadata is read and validated as a whole (mapped/snapfile.c) before
 * anything is used, its block table is matched against the registered blocks (names, lengths,
 * page sizes) and its device sections against the registered devices, and the page bitmaps are
 * read into memory (bounded by the registered memory: one bit per page).
 *
 * Eager: the run thread submits one job per span of at least 1 MiB of each block; the pool
 * hands them out and submit blocks on the full queues (no polling).  A worker reads each run of
 * present pages of its span with one positional preadv straight into the block memory (O_DIRECT
 * when asked: the memory and every page in the file are page aligned), and makes absent pages
 * zero (nothing to do in MFD_BLOCK_ZEROED blocks).  Lazy: each block's memory is replaced by a
 * private mapping of its pages area (mmap MAP_PRIVATE | MAP_FIXED at the same address): no page
 * is read until touched; holes read as zero.  Then, in both modes, the device sections are read
 * (checksummed again, bounded by MFD_OPT_DEVICE_MAX_BYTES) and given to their load callbacks,
 * and the memory is ready.  With verify, the memory's digest is compared with the saved one. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "migrate/snapshot.h"
#include "payload/ram_batch.h"

static int match_blocks(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->snap;
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
	struct mfd__snapshot *snap = s->snap;
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

int mfd__restore_open(struct mfd_session *s, const char *path, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->snap;
	int rc;
	int fd;
	if (!snap->by_fd) {
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);	/* a FIFO must not block */
		if (fd < 0)
			return mfd__err_set(err, -errno, -1, "opening '%s'", path);
		if ((rc = mfd__snapshot_add_chan(s, 0, fd, err)))
			return rc;
	}
	fd = s->chan[0]->fd;
	struct mfd__snap_limits lim = { .device_max = s->device_max };
	snap->meta_read = true;
	if ((rc = mfd__snap_read(fd, &snap->meta, &lim, 0, err)) || (rc = match_blocks(s, err)) ||
	    (rc = match_devices(s, err)))
		return rc;
	snap->present = calloc(s->ram.n, sizeof(*snap->present));
	if (!snap->present)
		return mfd__err_set(err, -ENOMEM, -1, "page bitmaps");
	for (uint32_t i = 0; i < snap->meta.hdr.nblocks; i++) {
		uint32_t l = snap->map[i];
		snap->present[l] = calloc(mfd__bitmap_words(s->ram.blocks[l].npages), sizeof(uint64_t));
		if (!snap->present[l])
			return mfd__err_set(err, -ENOMEM, -1, "page bitmaps");
		if ((rc = mfd__snap_read_bitmap(fd, &snap->meta.blocks[i], snap->present[l], err)))
			return rc;
	}
	if (s->lazy)
		return 0;	/* the mappings need no channel of their own */
	for (unsigned w = 0; w < s->channels; w++) {
		int dfd = mfd__snapshot_worker_fd(s, O_RDONLY | (s->direct_io ? O_DIRECT : 0), err);
		if (dfd < 0)
			return dfd;
		if ((rc = mfd__snapshot_add_chan(s, w + 1, dfd, err)))
			return rc;
	}
	return 0;
}

/* ---- eager: workers ------------------------------------------------------------------------ */

static int read_run(struct mfd_session *s, struct mfd__chan *c, const struct mfd__job *j,
		    uint64_t first, uint64_t count)
{
	const struct mfd__block *b = &s->ram.blocks[j->block];
	const struct mfd__snap_block *k = &s->snap->meta.blocks[j->tag];
	uint64_t ps = b->page_size;
	if (mfd__errbox_code(&s->errbox))
		return mfd__errbox_code(&s->errbox);	/* canceled or failed elsewhere */
	if (mfd__ratelimit_wait(&s->rate, count * ps, &s->errbox.code))
		return mfd__errbox_code(&s->errbox);
	struct iovec v = { b->host + first * ps, (size_t)(count * ps) };
	int rc = mfd__chan_preadv(c, &v, 1, (int64_t)(k->pages_offset + first * ps));
	if (rc) {
		if (rc == MFD_ECLOSED)
			rc = MFD_ETRUNC;
		mfd__errbox_set(&s->errbox, rc, c->id, "reading %llu pages of block '%s' at page %llu",
				(unsigned long long)count, b->name, (unsigned long long)first);
	}
	return rc;
}

static int restore_span(struct mfd_session *s, unsigned w, const struct mfd__job *j)
{
	struct mfd__wstate *ws = &s->ws[w];
	struct mfd__chan *c = s->chan[w + 1];
	const struct mfd__block *b = &s->ram.blocks[j->block];
	const uint64_t *map = s->snap->present[j->block];
	uint64_t ps = b->page_size, end = j->first + j->count, normal = 0, zero = 0, ios = 0;
	int rc;
	for (uint64_t p = j->first; p < end;) {
		uint64_t q = mfd__bitmap_next_set(map, end, p);
		/* Absent pages read as zero: already so in a fresh (MFD_BLOCK_ZEROED) block. */
		if (!(b->flags & MFD_BLOCK_ZEROED))
			for (uint64_t z = p; z < q; z++)
				if (!mfd__is_zero(b->host + z * ps, ps))
					memset(b->host + z * ps, 0, ps);
		zero += q - p;
		if (q >= end)
			break;
		uint64_t r = mfd__bitmap_next_clear(map, end, q);
		if ((rc = read_run(s, c, j, q, r - q)))
			return rc;
		normal += r - q;
		ios++;
		p = r;
	}
	__atomic_fetch_add(&ws->packets, ios, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ws->normal_pages, normal, __ATOMIC_RELAXED);
	__atomic_fetch_add(&ws->zero_pages, zero, __ATOMIC_RELAXED);
	return 0;
}

static int restore_job(void *owner, unsigned w, void *job)
{
	struct mfd_session *s = owner;
	const struct mfd__job *j = job;
	switch (j->kind) {
	case MFD_JOB_RAM:
		return restore_span(s, w, j);
	case MFD_JOB_DIGEST:
		return mfd__job_digest(s, j);
	}
	return -EINVAL;
}

static int read_eagerly(struct mfd_session *s)
{
	const struct mfd__snapshot *snap = s->snap;
	int rc = 0;
	for (uint32_t i = 0; i < snap->meta.hdr.nblocks && rc == 0; i++) {
		uint32_t l = snap->map[i];
		const struct mfd__block *b = &s->ram.blocks[l];
		const uint64_t *map = snap->present[l];
		for (uint64_t p = 0; p < b->npages && rc == 0; p += snap->chunk_pages) {
			uint64_t n = MFD_MIN(snap->chunk_pages, b->npages - p);
			/* A span with nothing to read nor to clear needs no job. */
			if ((b->flags & MFD_BLOCK_ZEROED) && mfd__bitmap_next_set(map, p + n, p) >= p + n) {
				__atomic_fetch_add(&s->ws[0].zero_pages, n, __ATOMIC_RELAXED);
				continue;
			}
			struct mfd__job j = { .kind = MFD_JOB_RAM, .block = l, .tag = i, .first = p,
					      .count = n };
			rc = mfd__pool_submit(s->pool, &j);
		}
	}
	return rc ? rc : mfd__pool_sync(s->pool);
}

/* ---- lazy ---------------------------------------------------------------------------------- */

static int map_lazily(struct mfd_session *s, struct mfd_error *err)
{
	const struct mfd__snapshot *snap = s->snap;
	for (uint32_t i = 0; i < snap->meta.hdr.nblocks; i++) {
		const struct mfd__snap_block *k = &snap->meta.blocks[i];
		const struct mfd__block *b = &s->ram.blocks[snap->map[i]];
		void *p = mmap(b->host, b->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
			       s->chan[0]->fd, (off_t)k->pages_offset);
		if (p == MAP_FAILED)
			return mfd__err_set(err, -errno, -1, "mapping block '%s' from the snapshot",
					    b->name);
		__atomic_fetch_add(&s->ws[0].normal_pages, k->present, __ATOMIC_RELAXED);
		__atomic_fetch_add(&s->ws[0].zero_pages, k->npages - k->present, __ATOMIC_RELAXED);
	}
	return 0;
}

/* ---- devices and the run ------------------------------------------------------------------ */

static int load_devices(struct mfd_session *s, struct mfd_error *err)
{
	const struct mfd__snapshot *snap = s->snap;
	int rc = 0;
	for (uint32_t i = 0; i < snap->meta.hdr.ndevices && rc == 0; i++) {
		const struct mfd__snap_dev *d = &snap->meta.devs[i];
		struct mfd__device *dev = &s->devices.v[snap->dev_map[i]];
		uint8_t *buf = malloc(d->data_len ? (size_t)d->data_len : 1);
		if (!buf)
			return mfd__err_set(err, -ENOMEM, -1, "device %s.%u state", d->name, d->instance);
		rc = mfd__snap_read_dev(s->chan[0]->fd, d, buf, err);
		if (rc == 0) {
			rc = dev->ops.load ? dev->ops.load(dev->opaque, buf, (size_t)d->data_len, d->version)
					   : MFD_EDEVICE;
			if (rc)
				rc = mfd__err_set(err, rc < 0 ? rc : MFD_EDEVICE, -1, "device %s.%u refused "
						  "its state", d->name, d->instance);
			else
				__atomic_fetch_add(&s->st_device_bytes, d->data_len, __ATOMIC_RELAXED);
		}
		free(buf);
	}
	return rc;
}

int mfd__restore_run(struct mfd_session *s, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->snap;
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc;
	if (!snap || !snap->opened)
		return mfd__err_set(err, MFD_ESTATE, -1, "open the snapshot file before run");
	unsigned nw = s->nchan - 1;
	__atomic_store_n(&s->st_file_bytes, snap->meta.hdr.file_size, __ATOMIC_RELAXED);
	/* Lazy restores have no page channel; one worker state still holds the page counts. */
	if ((rc = mfd__session_alloc_workers(s, nw ? nw : 1))) {
		mfd__err_set(&e, rc, -1, "worker state");
		goto out;
	}
	if (nw && (rc = mfd__session_start_pool(s, nw, restore_job))) {
		mfd__err_set(&e, rc, -1, "starting workers");
		goto out;
	}
	__atomic_store_n(&s->t_setup_ns, mfd__now_ns(), __ATOMIC_RELAXED);
	mfd__session_set_status(s, MFD_STATUS_ACTIVE);
	rc = s->lazy ? map_lazily(s, &e) : read_eagerly(s);
	if (rc == 0)
		rc = load_devices(s, &e);
	if (rc)
		goto out;
	__atomic_store_n(&s->st_ready_ms, (mfd__now_ns() - s->t_start_ns) / 1000000,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&s->st_rounds, snap->meta.hdr.rounds, __ATOMIC_RELAXED);
	if (s->verify) {
		if (!(snap->meta.hdr.features & MFD_SNAP_FEAT_DIGEST)) {
			rc = mfd__err_set(&e, MFD_EFEATURE, -1, "the snapshot has no digest (saved "
					  "without verify)");
			goto out;
		}
		/* Lazy restores have no workers yet: the digest gets its own. */
		if (!s->pool && (rc = mfd__session_start_pool(s, s->channels, restore_job))) {
			mfd__err_set(&e, rc, -1, "starting workers");
			goto out;
		}
		if ((rc = mfd__session_digest(s, snap->map, snap->meta.hdr.nblocks)))
			goto out;
		uint64_t d = __atomic_load_n(&s->digest, __ATOMIC_RELAXED);
		if (d != snap->meta.hdr.digest) {
			rc = mfd__err_set(&e, MFD_EVERIFY, -1, "saved digest %016llx, restored %016llx",
					  (unsigned long long)snap->meta.hdr.digest,
					  (unsigned long long)d);
			goto out;
		}
		__atomic_store_n(&s->verified, true, __ATOMIC_RELAXED);
	}
out:
	if (e.code)
		mfd__errbox_setv(&s->errbox, &e);
	if (rc)
		mfd__session_fail(s, rc, -1, "snapshot restore");
	return rc;
}
