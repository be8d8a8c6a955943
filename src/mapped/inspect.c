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
#include "mapped/snapfile.h"

MFD_API int mfd_snapshot_inspect(const char *path, struct mfd_snapshot_info *info,
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
	rc = mfd__snap_read(c, &m, NULL, MFD_SNAP_READ_KEEP_GOING, err);
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

MFD_API void mfd_snapshot_info_free(struct mfd_snapshot_info *info)
{
	if (!info)
		return;
	free(info->blocks);
	free(info->devices);
	info->blocks = NULL;
	info->devices = NULL;
	info->nblocks = info->ndevices = 0;
}
