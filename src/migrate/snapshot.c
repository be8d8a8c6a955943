/* migrate/snapshot — what the save and restore roles share: opening the file (by path or on
 * passed descriptors), the workers' page channels, the pages payload, and freeing.  See
 * snapshot.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "migrate/snapshot.h"

uint64_t mfd__snapshot_chunk_pages(const struct mfd_session *s)
{
	uint64_t ps = s->ram.page_size, min = (1u << 20) / ps;
	return MFD_MAX((uint64_t)s->opt.batch_pages, min);
}

static int adopt_fds(struct mfd_session *s, struct mfd__snapshot *snap, int fd, int direct_fd,
		     unsigned need, struct mfd_error *err)
{
	struct mfd__chan *c, *d = NULL;
	int rc = mfd__chan_file_adopt(fd, need, "snapshot", 0, &c, err);
	if (rc) {
		if (direct_fd >= 0)
			close(direct_fd);
		return rc;
	}
	mfd__session_add_chan(s, 0, c);
	if (direct_fd < 0) {
		if (s->opt.direct_io)
			return mfd__err_set(err, -EINVAL, -1, "direct I/O needs a second descriptor opened "
					    "with O_DIRECT");
		return 0;
	}
	if ((rc = mfd__chan_file_adopt(direct_fd, need | MFD_FILE_NEED_DIRECT, "direct", -1, &d, err)))
		return rc;
	snap->direct = d;
	if (!mfd__chan_file_same(c, d))
		return mfd__err_set(err, -EINVAL, -1, "descriptors %d and %d are different files", fd,
				    direct_fd);
	s->opt.direct_io = true;	/* page data goes through the direct descriptor */
	return 0;
}

int mfd__snapshot_begin(struct mfd_session *s, const char *path, int path_flags, int fd,
			int direct_fd, unsigned need, struct mfd_error *err)
{
	struct mfd__snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap) {
		if (!path) {
			close(fd);
			if (direct_fd >= 0)
				close(direct_fd);
		}
		return mfd__err_set(err, -ENOMEM, -1, "snapshot state");
	}
	pthread_mutex_lock(&s->lock);
	s->priv = snap;	/* from now on the options are fixed */
	pthread_mutex_unlock(&s->lock);
	snap->rf.chunk_pages = mfd__snapshot_chunk_pages(s);
	if (!path) {
		snap->by_fd = true;
		snprintf(snap->path, sizeof(snap->path), "fd:%d", fd);
		return adopt_fds(s, snap, fd, direct_fd, need, err);
	}
	if (strlen(path) >= sizeof(snap->path) - 32)	/* room for the temporary's suffix */
		return mfd__err_set(err, -ENAMETOOLONG, -1, "snapshot path too long");
	memcpy(snap->path, path, strlen(path) + 1);
	if (path_flags < 0)
		return 0;	/* the role makes the file itself */
	struct mfd__chan *c;
	int rc = mfd__chan_file_open(path, path_flags, 0, &c, err);
	if (rc == 0)
		mfd__session_add_chan(s, 0, c);
	return rc;
}

int mfd__snapshot_open_workers(struct mfd_session *s, const char *path, int flags,
			       struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->priv;
	struct mfd__chan *src = snap->direct ? snap->direct : s->chan[0];
	if (s->opt.direct_io)
		flags |= O_DIRECT;
	for (unsigned w = 0; w < s->opt.channels; w++) {
		struct mfd__chan *c;
		/* Passed descriptors cannot be reopened by name (the process may have no access to
		 * the path): the workers share the open file description, which positional I/O
		 * allows. */
		int rc = mfd__chan_file_reopen(src, snap->by_fd ? NULL : path, flags, (int)w + 1, &c, err);
		if (rc)
			return rc;
		mfd__session_add_chan(s, w + 1, c);
	}
	mfd__chan_free(snap->direct);	/* duplicated into every worker's channel */
	snap->direct = NULL;
	return 0;
}

int mfd__snapshot_add_payload(struct mfd_session *s, const struct mfd__payload_ops *ops)
{
	struct mfd__snapshot *snap = s->priv;
	mfd__ram_xfer_setup(&s->ramx, &s->ram, &s->errbox, &s->rate, s->opt.zero_detect,
			    s->opt.batch_pages);
	snap->rf.x = &s->ramx;
	int rc = mfd__session_add_payload(s, ops, &snap->rf);
	if (rc < 0)
		return rc;
	s->ram_payload = (uint16_t)rc;
	return 0;
}

void mfd__snapshot_free(struct mfd_session *s)
{
	struct mfd__snapshot *snap = s->priv;
	if (!snap)
		return;
	if (snap->tmp_exists)
		unlink(snap->tmp);	/* a save that did not complete leaves nothing behind */
	mfd__chan_free(snap->direct);
	for (uint32_t i = 0; i < s->ram.n; i++) {
		if (snap->rf.present)
			free(snap->rf.present[i]);
		if (snap->rf.sums)
			free(snap->rf.sums[i]);
	}
	free(snap->rf.present);
	free(snap->rf.sums);
	free(snap->blocks);
	mfd__snap_meta_free(&snap->meta);
	free(snap->map);
	free(snap->dev_map);
	free(snap);
	s->priv = NULL;
}
