/* chan/file — the file backend: positional reads and writes on a seekable file.
 *
 * Snapshot files are written and read by many workers at once, each through its own channel
 * (its own open file description, so O_DIRECT and readahead state are per worker), at offsets
 * fixed by the file layout.  Stream transfers (off < 0) are refused: a file channel has no
 * position of its own. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"
#include "core/io.h"

static ssize_t file_readv(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off)
{
	if (off < 0) {
		errno = ESPIPE;
		return -1;
	}
	return mfd__io_fd_read((void *)(intptr_t)c->fd, iov, iovcnt, off);
}

static ssize_t file_writev(struct mfd__chan *c, const struct iovec *iov, int iovcnt, int64_t off)
{
	if (off < 0) {
		errno = ESPIPE;
		return -1;
	}
	return mfd__io_fd_write((void *)(intptr_t)c->fd, iov, iovcnt, off);
}

static void file_shutdown(struct mfd__chan *c)
{
	(void)c;	/* nothing blocks for long on a local file; callers poll for cancel */
}

static void file_close(struct mfd__chan *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static const struct mfd__chan_ops file_ops = {
	.name = "file",
	.readv = file_readv,
	.writev = file_writev,
	.shutdown = file_shutdown,
	.close = file_close,
};

struct mfd__chan *mfd__chan_file_new(int fd, int id)
{
	struct mfd__chan *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->ops = &file_ops;
	c->fd = fd;
	c->id = id;
	return c;
}

/* Zeros for file systems that cannot punch holes; aligned so O_DIRECT accepts them. */
static const uint8_t zero_buf[65536] __attribute__((aligned(4096)));

int mfd__chan_file_zero(struct mfd__chan *c, int64_t off, int64_t len)
{
	if (fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	while (len > 0) {
		size_t n = len > (int64_t)sizeof(zero_buf) ? sizeof(zero_buf) : (size_t)len;
		struct iovec v = { (void *)zero_buf, n };
		int rc = mfd__chan_pwritev(c, &v, 1, off);
		if (rc)
			return rc;
		off += (int64_t)n;
		len -= (int64_t)n;
	}
	return 0;
}

int mfd__file_reopen(const char *path, int fd, int flags, struct mfd_error *err)
{
	int nfd = open(path, flags | O_CLOEXEC);
	if (nfd < 0) {
		int e = errno;
		if (e == EINVAL && (flags & O_DIRECT))
			return mfd__err_set(err, -EINVAL, -1, "'%s': the file system refuses O_DIRECT",
					    path);
		return mfd__err_set(err, -e, -1, "opening '%s'", path);
	}
	struct stat a, b;
	if (fstat(fd, &a) || fstat(nfd, &b)) {
		int e = errno;
		close(nfd);
		return mfd__err_set(err, -e, -1, "stat '%s'", path);
	}
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(nfd);
		return mfd__err_set(err, -ESTALE, -1, "'%s' was replaced while being opened", path);
	}
	return nfd;
}
