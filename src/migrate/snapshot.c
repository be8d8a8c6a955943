/* migrate/snapshot — mfd_session_open_file() and what save and restore share. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "migrate/snapshot.h"

/* What both ways of opening check and set up; the role's open does the rest. */
static int open_begin(struct mfd_session *s, const char *what, struct mfd_error *err)
{
	if (s->role != MFD_SAVE && s->role != MFD_RESTORE)
		return mfd__err_set(err, MFD_ESTATE, -1, "open_file needs a save or restore session");
	pthread_mutex_lock(&s->lock);
	bool fresh = !s->started && s->nchan == 0 && !s->snap;
	pthread_mutex_unlock(&s->lock);
	if (!fresh)
		return mfd__err_set(err, MFD_ESTATE, -1, "the session already has its file");
	if (!what || !what[0] || strlen(what) >= PATH_MAX - 16)
		return mfd__err_set(err, -EINVAL, -1, "snapshot path empty or too long");
	if (s->ram.n == 0)
		return mfd__err_set(err, -EINVAL, -1, "register RAM blocks before opening the file");
	struct mfd__snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap)
		return mfd__err_set(err, -ENOMEM, -1, "snapshot state");
	memcpy(snap->path, what, strlen(what) + 1);
	snap->direct_fd = -1;
	snap->chunk_pages = mfd__snapshot_chunk_pages(s);
	s->snap = snap;
	return 0;
}

static int open_end(struct mfd_session *s, int rc)
{
	if (rc)
		mfd__session_set_status(s, MFD_STATUS_FAILED);
	else
		s->snap->opened = true;
	return rc;
}

MFD_API int mfd_session_open_file(struct mfd_session *s, const char *path, struct mfd_error *err)
{
	int rc = open_begin(s, path, err);
	if (rc)
		return rc;
	rc = s->role == MFD_SAVE ? mfd__save_open(s, path, err) : mfd__restore_open(s, path, err);
	return open_end(s, rc);
}

/* Is fd an open regular file, and with which status flags? */
static int check_fd(int fd, const char *which, int *flags, struct stat *st, struct mfd_error *err)
{
	if (fd < 0)
		return mfd__err_set(err, -EBADF, -1, "%s descriptor %d", which, fd);
	if (fstat(fd, st) < 0)
		return mfd__err_set(err, -errno, -1, "%s descriptor %d", which, fd);
	if (!S_ISREG(st->st_mode))
		return mfd__err_set(err, -EINVAL, -1, "%s descriptor %d is not a regular file", which, fd);
	if ((*flags = fcntl(fd, F_GETFL)) < 0)
		return mfd__err_set(err, -errno, -1, "%s descriptor %d", which, fd);
	return 0;
}

MFD_API int mfd_session_open_fds(struct mfd_session *s, int fd, int direct_fd, struct mfd_error *err)
{
	char what[64];
	struct stat a, b;
	int fl = 0, dfl = 0, rc;
	snprintf(what, sizeof(what), "fd:%d", fd);
	if ((rc = open_begin(s, what, err)))
		goto close_fds;
	struct mfd__snapshot *snap = s->snap;
	snap->by_fd = true;
	bool saving = s->role == MFD_SAVE;
	if ((rc = check_fd(fd, "snapshot", &fl, &a, err)))
		goto close_fds;
	if (saving && (fl & O_ACCMODE) != O_RDWR) {
		rc = mfd__err_set(err, -EBADF, -1, "snapshot descriptor %d is not open read-write", fd);
		goto close_fds;
	}
	if (!saving && (fl & O_ACCMODE) == O_WRONLY) {
		rc = mfd__err_set(err, -EBADF, -1, "snapshot descriptor %d is write-only", fd);
		goto close_fds;
	}
	if (direct_fd >= 0) {
		if ((rc = check_fd(direct_fd, "direct", &dfl, &b, err)))
			goto close_fds;
		if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
			rc = mfd__err_set(err, -EINVAL, -1, "descriptors %d and %d are different files",
					  fd, direct_fd);
			goto close_fds;
		}
		if (!(dfl & O_DIRECT)) {
			rc = mfd__err_set(err, -EINVAL, -1, "descriptor %d is not open with O_DIRECT",
					  direct_fd);
			goto close_fds;
		}
		if (saving && (dfl & O_ACCMODE) == O_RDONLY) {
			rc = mfd__err_set(err, -EBADF, -1, "direct descriptor %d is read-only", direct_fd);
			goto close_fds;
		}
		s->direct_io = true;	/* page data goes through the direct descriptor */
	} else if (s->direct_io) {
		rc = mfd__err_set(err, -EINVAL, -1, "direct I/O needs a second descriptor opened with "
				  "O_DIRECT");
		goto close_fds;
	}
	snap->direct_fd = direct_fd;
	direct_fd = -1;	/* owned by snap now */
	rc = mfd__snapshot_add_chan(s, 0, fd, err);	/* owns fd, even when it fails */
	fd = -1;
	if (rc == 0)
		rc = saving ? mfd__save_open(s, NULL, err) : mfd__restore_open(s, NULL, err);
	return open_end(s, rc);
close_fds:
	if (fd >= 0)
		close(fd);
	if (direct_fd >= 0)
		close(direct_fd);
	if (s->snap && s->snap->by_fd)
		mfd__session_set_status(s, MFD_STATUS_FAILED);
	return rc;
}

int mfd__snapshot_worker_fd(struct mfd_session *s, int flags, struct mfd_error *err)
{
	struct mfd__snapshot *snap = s->snap;
	if (!snap->by_fd)
		return mfd__file_reopen(snap->tmp_exists ? snap->tmp : snap->path, s->chan[0]->fd,
					flags, err);
	/* Passed descriptors cannot be reopened by name (the process may have no access to the
	 * path): workers share the open file description, which positional I/O allows. */
	int src = snap->direct_fd >= 0 ? snap->direct_fd : s->chan[0]->fd;
	int nfd = fcntl(src, F_DUPFD_CLOEXEC, 0);
	if (nfd < 0)
		return mfd__err_set(err, -errno, -1, "duplicating descriptor %d", src);
	return nfd;
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
		unlink(snap->tmp);
	if (snap->direct_fd >= 0)
		close(snap->direct_fd);	/* a save that did not complete leaves nothing behind */
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
