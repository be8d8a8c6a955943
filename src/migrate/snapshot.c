/* migrate/snapshot — mfd_session_open_file() and what save and restore share. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "migrate/snapshot.h"

MFD_API int mfd_session_open_file(struct mfd_session *s, const char *path, struct mfd_error *err)
{
	if (s->role != MFD_SAVE && s->role != MFD_RESTORE)
		return mfd__err_set(err, MFD_ESTATE, -1, "open_file needs a save or restore session");
	pthread_mutex_lock(&s->lock);
	bool fresh = !s->started && s->nchan == 0 && !s->snap;
	pthread_mutex_unlock(&s->lock);
	if (!fresh)
		return mfd__err_set(err, MFD_ESTATE, -1, "the session already has its file");
	if (!path || !path[0] || strlen(path) >= PATH_MAX - 16)
		return mfd__err_set(err, -EINVAL, -1, "snapshot path empty or too long");
	if (s->ram.n == 0)
		return mfd__err_set(err, -EINVAL, -1, "register RAM blocks before opening the file");
	struct mfd__snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap)
		return mfd__err_set(err, -ENOMEM, -1, "snapshot state");
	memcpy(snap->path, path, strlen(path) + 1);
	s->snap = snap;
	snap->chunk_pages = mfd__snapshot_chunk_pages(s);
	int rc = s->role == MFD_SAVE ? mfd__save_open(s, path, err) : mfd__restore_open(s, path, err);
	if (rc)
		mfd__session_set_status(s, MFD_STATUS_FAILED);
	else
		snap->opened = true;
	return rc;
}

uint64_t mfd__snapshot_chunk_pages(const struct mfd_session *s)
{
	uint64_t ps = s->ram.page_size, min = (1u << 20) / ps;
	return MFD_MAX((uint64_t)s->batch_pages, min);
}

int mfd__snapshot_add_chan(struct mfd_session *s, unsigned id, int fd, struct mfd_error *err)
{
	struct mfd__chan *c = mfd__chan_file_new(fd, (int)id);
	if (!c)
		return mfd__err_set(err, -ENOMEM, (int)id, "file channel");
	c->hook = s->knobs.hook;
	c->hook_ctx = s->knobs.hook_ctx;
	pthread_mutex_lock(&s->lock);
	s->chan[id] = c;
	if (id + 1 > s->nchan)
		s->nchan = id + 1;	/* stats read it; also makes the options read-only */
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void mfd__snapshot_free(struct mfd_session *s)
{
	struct mfd__snapshot *snap = s->snap;
	if (!snap)
		return;
	if (snap->tmp_exists)
		unlink(snap->tmp);	/* a save that did not complete leaves nothing behind */
	if (snap->present)
		for (uint32_t i = 0; i < s->ram.n; i++)
			free(snap->present[i]);
	free(snap->present);
	free(snap->blocks);
	mfd__snap_meta_free(&snap->meta);
	free(snap->map);
	free(snap->dev_map);
	free(snap);
	s->snap = NULL;
}
