/* mapped/inspect — mfd_snapshot_inspect(): the reader's findings as a public structure.
 *
 * The file is read with the validating reader in keep-going mode, so a bad bitmap or device
 * checksum is reported per entry while the rest is still checked; a structural error (a bad
 * header, an offset out of range) stops the walk, and info holds what was read before it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/err.h"
#include <stdio.h>
#include "mapped/snapfile.h"

static int inspect(const char *path, struct mfd_snapshot_info *info, bool verify,
		   struct mfd_error *err);

/* struct mfd_snapshot_info grows at its end (multifd.h, "Growing structures"): the 0.1 struct
 * ended with digest_ok, and the plain names are its entry points (MULTIFD_0.1). */
#define INFO_SIZE_0_1 (offsetof(struct mfd_snapshot_info, digest_ok) + sizeof(bool))

static int inspect_sized(const char *path, struct mfd_snapshot_info *info, size_t info_size,
			 bool verify, struct mfd_error *err)
{
	if (info_size < INFO_SIZE_0_1)
		return mfd__err_set(err, -EINVAL, -1, "struct mfd_snapshot_info of %zu bytes: too small",
				    info_size);
	struct mfd_snapshot_info full;
	int rc = inspect(path, &full, verify, err);
	mfd__struct_out(info, info_size, &full, sizeof(full));	/* blocks, devices: the caller's */
	return rc;
}

MFD_API int mfd_snapshot_inspect_sized(const char *path, struct mfd_snapshot_info *info,
				       size_t info_size, struct mfd_error *err)
{
	return inspect_sized(path, info, info_size, false, err);
}

MFD_API int mfd_snapshot_verify_sized(const char *path, struct mfd_snapshot_info *info,
				      size_t info_size, struct mfd_error *err)
{
	return inspect_sized(path, info, info_size, true, err);
}

MFD_API int (mfd_snapshot_inspect)(const char *path, struct mfd_snapshot_info *info,
				   struct mfd_error *err);
MFD_API int (mfd_snapshot_inspect)(const char *path, struct mfd_snapshot_info *info,
				   struct mfd_error *err)
{
	return inspect_sized(path, info, INFO_SIZE_0_1, false, err);
}

MFD_API int (mfd_snapshot_verify)(const char *path, struct mfd_snapshot_info *info,
				  struct mfd_error *err);
MFD_API int (mfd_snapshot_verify)(const char *path, struct mfd_snapshot_info *info,
				  struct mfd_error *err)
{
	return inspect_sized(path, info, INFO_SIZE_0_1, true, err);
}

/* ---- verify: every present page against its checksum, and the digest -------------------- */

#define WINDOW_PAGES 256	/* pages examined at a time: bounded memory whatever the file */

struct scrub {
	struct mfd__chan *c;
	uint8_t *data;		/* WINDOW_PAGES pages of the largest page size */
	uint8_t *zero;		/* one zero page */
	uint64_t digest;
	uint64_t checked, bad;
	int first;		/* first error */
};

static int scrub_block(struct scrub *sc, const struct mfd__snap_block *k, uint32_t tag, bool sums,
		       bool digest, struct mfd_error *err)
{
	uint8_t bits[WINDOW_PAGES / 8], raw[WINDOW_PAGES * 4];
	uint64_t ps = k->page_size;
	char what[MFD_MAX_NAME + 48];
	snprintf(what, sizeof(what), "block '%s'", k->name);
	for (uint64_t w = 0; w < k->npages; w += WINDOW_PAGES) {
		uint64_t n = MFD_MIN((uint64_t)WINDOW_PAGES, k->npages - w);
		struct iovec v = { bits, (size_t)((n + 7) / 8) };
		int rc = mfd__chan_preadv(sc->c, &v, 1, (int64_t)(k->bitmap_offset + w / 8));
		if (rc == 0 && sums) {
			v = (struct iovec){ raw, (size_t)(n * 4) };
			rc = mfd__chan_preadv(sc->c, &v, 1, (int64_t)(k->sums_offset + w * 4));
		}
		for (uint64_t i = 0; rc == 0 && i < n;) {	/* runs of present pages */
			if (!(bits[i / 8] >> (i % 8) & 1)) {
				if (digest)
					sc->digest += mfd_digest(sc->zero, ps, (uint64_t)tag << 32 | (w + i));
				i++;
				continue;
			}
			uint64_t r = i;
			while (r < n && (bits[r / 8] >> (r % 8) & 1))
				r++;
			v = (struct iovec){ sc->data, (size_t)((r - i) * ps) };
			rc = mfd__chan_preadv(sc->c, &v, 1, (int64_t)(k->pages_offset + (w + i) * ps));
			for (uint64_t p = i; rc == 0 && p < r; p++) {
				const uint8_t *pg = sc->data + (p - i) * ps;
				if (digest)
					sc->digest += mfd_digest(pg, ps, (uint64_t)tag << 32 | (w + p));
				if (!sums)
					continue;
				sc->checked++;
				if (mfd__crc32c(0, pg, ps) == mfd__get32(raw + p * 4))
					continue;
				sc->bad++;
				int e = mfd__err_set(err, MFD_ECHECKSUM, -1, "block '%s' page %llu (file "
						     "offset %llu): the page does not match its "
						     "checksum", k->name, (unsigned long long)(w + p),
						     (unsigned long long)(k->pages_offset + (w + p) * ps));
				if (!sc->first)
					sc->first = e;
			}
			i = r;
		}
		if (rc == MFD_ECLOSED || rc == MFD_ETRUNC)
			return mfd__err_set(err, MFD_ETRUNC, -1, "file ends inside %s", what);
		if (rc)
			return mfd__err_set(err, rc, -1, "reading %s", what);
	}
	return 0;
}

/* After a clean inspection: read every present page (the metadata is known good, so every
 * offset below is in the file). */
static int scrub(struct mfd__chan *c, const struct mfd__snap_meta *m, struct mfd_snapshot_info *info,
		 struct mfd_error *err)
{
	bool sums = m->hdr.features & MFD_SNAP_FEAT_PAGE_CRC;
	bool digest = m->hdr.features & MFD_SNAP_FEAT_DIGEST;
	if (!sums && !digest)
		return 0;	/* nothing to check the pages against */
	struct scrub sc = { .c = c, .data = malloc((size_t)WINDOW_PAGES * MFD_MAX_PAGE_SIZE),
			    .zero = calloc(1, MFD_MAX_PAGE_SIZE) };
	int rc = 0;
	if (!sc.data || !sc.zero)
		rc = mfd__err_set(err, -ENOMEM, -1, "verify buffers");
	for (uint32_t i = 0; rc == 0 && i < m->hdr.nblocks; i++)
		rc = scrub_block(&sc, &m->blocks[i], i, sums, digest, err);
	free(sc.data);
	free(sc.zero);
	info->pages_checked = sc.checked;
	info->pages_bad = sc.bad;
	if (rc)
		return rc;
	info->pages_ok = sums && sc.bad == 0;
	if (digest) {
		info->digest_ok = sc.digest == m->hdr.digest;
		if (!info->digest_ok && !sc.first)
			return mfd__err_set(err, MFD_EVERIFY, -1, "the pages' digest %016llx differs from "
					    "the saved %016llx", (unsigned long long)sc.digest,
					    (unsigned long long)m->hdr.digest);
	}
	return sc.first;
}

static int inspect(const char *path, struct mfd_snapshot_info *info, bool verify,
		   struct mfd_error *err)
{
	struct mfd__snap_meta m;
	memset(info, 0, sizeof(*info));
	if (!path)
		return mfd__err_set(err, -EINVAL, -1, "no path");
	struct mfd__chan *c;
	/* O_NONBLOCK: a FIFO must not block the open. */
	int rc = mfd__chan_file_open(path, O_RDONLY | O_NONBLOCK, -1, &c, err);
	if (rc)
		return rc;
	struct mfd_error e;
	mfd_error_clear(&e);
	rc = mfd__snap_read(c, &m, NULL, MFD_SNAP_READ_KEEP_GOING, &e);
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (rc == MFD_EINCOMPLETE && strstr(base, MFD_SNAP_TEMP_SUFFIX))
		mfd__err_set(err, rc, -1, "'%s' is the temporary file of a save that did not finish "
			     "(%s)", path, e.msg);
	else
		mfd__err_copy(err, &e);
	info->page_checksums = m.header_ok && (m.hdr.features & MFD_SNAP_FEAT_PAGE_CRC);
	if (rc == 0 && verify)
		rc = scrub(c, &m, info, err);
	mfd__chan_free(c);

	const struct mfd__snap_hdr *h = &m.hdr;
	info->header_ok = m.header_ok;
	info->trailer_ok = m.trailer_ok;
	info->blocks_ok = m.blocks_ok;
	info->bitmaps_ok = m.bitmaps_ok;
	info->metadata_ok = m.metadata_ok;
	info->devices_ok = m.devices_ok;
	if (m.header_ok) {
		info->version = h->version;
		info->features = h->features;
		mfd__uuid_format(h->uuid, info->uuid);
		info->created_unix_s = h->created_unix_s;
		info->live = h->live != 0;
		info->rounds = h->rounds;
		info->has_digest = (h->features & MFD_SNAP_FEAT_DIGEST) != 0;
		info->digest = h->digest;
		info->file_bytes = h->file_size;
		info->mem_bytes = h->mem_bytes;
	}
	if (m.blocks_ok) {
		info->blocks = calloc(h->nblocks, sizeof(*info->blocks));
		if (!info->blocks) {
			rc = rc ? rc : mfd__err_set(err, -ENOMEM, -1, "inspect");
			goto out;
		}
		info->nblocks = h->nblocks;
		for (uint32_t i = 0; i < h->nblocks; i++) {
			const struct mfd__snap_block *k = &m.blocks[i];
			struct mfd_snapshot_block *o = &info->blocks[i];
			memcpy(o->name, k->name, sizeof(o->name));
			o->length = k->len;
			o->page_size = k->page_size;
			o->pages_present = k->present;
			o->bitmap_offset = k->bitmap_offset;
			o->pages_offset = k->pages_offset;
			o->status = m.block_status[i];
			info->pages_present += k->present;
		}
	}
	if (m.ndevs_read) {
		info->devices = calloc(m.ndevs_read, sizeof(*info->devices));
		if (!info->devices) {
			rc = rc ? rc : mfd__err_set(err, -ENOMEM, -1, "inspect");
			goto out;
		}
		info->ndevices = m.ndevs_read;
		for (uint32_t i = 0; i < m.ndevs_read; i++) {
			const struct mfd__snap_dev *d = &m.devs[i];
			struct mfd_snapshot_device *o = &info->devices[i];
			memcpy(o->name, d->name, sizeof(o->name));
			o->instance = d->instance;
			o->version = d->version;
			o->offset = d->offset;
			o->length = d->data_len;
			o->status = m.dev_status[i];
			info->device_bytes += d->data_len;
		}
	}
out:
	mfd__snap_meta_free(&m);
	return rc;
}

/* It touches only members of the 0.1 struct, so every size is served alike. */
MFD_API void mfd_snapshot_info_free_sized(struct mfd_snapshot_info *info, size_t info_size)
{
	if (!info || info_size < INFO_SIZE_0_1)
		return;
	free(info->blocks);
	free(info->devices);
	info->blocks = NULL;
	info->devices = NULL;
	info->nblocks = info->ndevices = 0;
}

MFD_API void (mfd_snapshot_info_free)(struct mfd_snapshot_info *info);
MFD_API void (mfd_snapshot_info_free)(struct mfd_snapshot_info *info)
{
	mfd_snapshot_info_free_sized(info, INFO_SIZE_0_1);
}
