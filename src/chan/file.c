/* chan/file — the file backend: positional reads and writes on a seekable file.
 *
 * Snapshot files are written and read by many workers at once, each through its own channel
 * (its own open file description, so O_DIRECT and readahead state are per worker), at offsets
 * fixed by the file layout.  Stream transfers (off < 0) are refused: a file channel has no
 * position of its own. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <dirent.h>
#include <limits.h>
#include <sys/file.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "chan/chan.h"
#include "core/err.h"
#include "core/io.h"
#include "core/util.h"

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

static int file_wait_readable(struct mfd__chan *c, int timeout_ms, int cancel_fd)
{
	(void)c, (void)timeout_ms, (void)cancel_fd;
	return 0;	/* a read of a file never waits for a peer */
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
	.wait_readable = file_wait_readable,
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

static int wrap(int fd, int id, struct mfd__chan **out, struct mfd_error *err)
{
	*out = mfd__chan_file_new(fd, id);
	return *out ? 0 : mfd__err_set(err, -ENOMEM, id, "file channel");
}

int mfd__chan_file_open(const char *path, int flags, int id, struct mfd__chan **out,
			struct mfd_error *err)
{
	int fd = open(path, flags | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		if (e == EINVAL && (flags & O_DIRECT))
			return mfd__err_set(err, -EINVAL, id, "'%s': the file system refuses O_DIRECT",
					    path);
		return mfd__err_set(err, -e, id, "opening '%s'", path);
	}
	return wrap(fd, id, out, err);
}

/* Replace the trailing XXXXXX of tmpl with random letters. */
static int fill_template(char *tmpl)
{
	size_t n = strlen(tmpl);
	if (n < 6 || strcmp(tmpl + n - 6, "XXXXXX"))
		return -EINVAL;
	uint8_t r[MFD_UUID_LEN];
	int rc = mfd__uuid_generate(r);
	if (rc)
		return rc;
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	for (int i = 0; i < 6; i++)
		tmpl[n - 6 + i] = alphabet[r[i] % 32];
	return 0;
}

/* The directory part of path ("." when it has none). */
static void dir_of(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, len, ".");
	else if (slash == path)
		snprintf(dir, len, "/");
	else
		snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

int mfd__chan_file_create_temp(char *tmpl, int id, struct mfd__chan **out, struct mfd_error *err)
{
	char dir[PATH_MAX], proc[64];
	dir_of(tmpl, dir, sizeof(dir));
	/* Locked before it has a name: an unnamed file (O_TMPFILE), locked, then linked under the
	 * template's name.  mfd__file_remove_stale can then never take a file being written for
	 * a leftover, since every such file is locked as long as its writer lives. */
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600), rc;
	if (fd >= 0) {
		flock(fd, LOCK_EX);	/* nobody else can see it yet */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		for (int tries = 0;; tries++) {
			if ((rc = fill_template(tmpl)))
				break;
			if (linkat(AT_FDCWD, proc, AT_FDCWD, tmpl, AT_SYMLINK_FOLLOW) == 0)
				return wrap(fd, id, out, err);
			rc = -errno;
			if (rc != -EEXIST || tries == 100)
				break;
		}
		close(fd);
		if (rc != -ENOENT && rc != -EPERM && rc != -EXDEV)	/* no /proc, or not allowed */
			return mfd__err_set(err, rc, id, "creating '%s'", tmpl);
		memcpy(tmpl + strlen(tmpl) - 6, "XXXXXX", 6);
	}
	/* No O_TMPFILE here: named first, locked at once (a cleaner could see it in between). */
	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return mfd__err_set(err, -errno, id, "creating '%s'", tmpl);
	flock(fd, LOCK_EX | LOCK_NB);
	return wrap(fd, id, out, err);
}

int mfd__file_remove_stale(const char *path, const char *suffix, unsigned *removed,
			   struct mfd_error *err)
{
	char dir[PATH_MAX], prefix[PATH_MAX];
	const char *slash = strrchr(path, '/');
	dir_of(path, dir, sizeof(dir));
	snprintf(prefix, sizeof(prefix), "%s%s", slash ? slash + 1 : path, suffix);
	size_t plen = strlen(prefix);
	*removed = 0;
	DIR *d = opendir(dir);
	if (!d)
		return mfd__err_set(err, -errno, -1, "listing '%s'", dir);
	int dfd = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, plen))
			continue;
		int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct stat a, b;
		/* Ours (same user), a regular file, and not locked by a writer that still lives:
		 * a leftover of a save that died.  Still the file its name says when removed. */
		if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && a.st_uid == geteuid() &&
		    flock(fd, LOCK_EX | LOCK_NB) == 0 &&
		    fstatat(dfd, e->d_name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino && unlinkat(dfd, e->d_name, 0) == 0)
			(*removed)++;
		close(fd);
	}
	closedir(d);
	return 0;
}

int mfd__chan_file_adopt(int fd, unsigned need, const char *which, int id, struct mfd__chan **out,
			 struct mfd_error *err)
{
	struct stat st;
	int fl, rc;
	if (fd < 0)
		return mfd__err_set(err, -EBADF, id, "%s descriptor %d", which, fd);
	if (fstat(fd, &st) < 0 || (fl = fcntl(fd, F_GETFL)) < 0) {
		rc = mfd__err_set(err, -errno, id, "%s descriptor %d", which, fd);
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = mfd__err_set(err, -EINVAL, id, "%s descriptor %d is not a regular file", which, fd);
		goto close_fd;
	}
	int acc = fl & O_ACCMODE;
	if ((need & MFD_FILE_NEED_READ) && acc == O_WRONLY) {
		rc = mfd__err_set(err, -EBADF, id, "%s descriptor %d is write-only", which, fd);
		goto close_fd;
	}
	if ((need & MFD_FILE_NEED_WRITE) && acc != O_RDWR) {
		rc = mfd__err_set(err, -EBADF, id, "%s descriptor %d is not open read-write", which, fd);
		goto close_fd;
	}
	if ((need & MFD_FILE_NEED_DIRECT) && !(fl & O_DIRECT)) {
		rc = mfd__err_set(err, -EINVAL, id, "%s descriptor %d is not open with O_DIRECT", which,
				  fd);
		goto close_fd;
	}
	return wrap(fd, id, out, err);
close_fd:
	close(fd);
	return rc;
}

bool mfd__chan_file_same(struct mfd__chan *a, struct mfd__chan *b)
{
	struct stat x, y;
	return fstat(a->fd, &x) == 0 && fstat(b->fd, &y) == 0 && x.st_dev == y.st_dev &&
	       x.st_ino == y.st_ino;
}

int mfd__chan_file_reopen(struct mfd__chan *c, const char *path, int flags, int id,
			  struct mfd__chan **out, struct mfd_error *err)
{
	if (!path) {
		int nfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
		if (nfd < 0)
			return mfd__err_set(err, -errno, id, "duplicating a file descriptor");
		return wrap(nfd, id, out, err);
	}
	int rc = mfd__chan_file_open(path, flags, id, out, err);
	if (rc)
		return rc;
	if (!mfd__chan_file_same(c, *out)) {
		mfd__chan_free(*out);
		*out = NULL;
		return mfd__err_set(err, -ESTALE, id, "'%s' was replaced while being opened", path);
	}
	return 0;
}

int mfd__chan_file_sync(struct mfd__chan *c, bool data_only)
{
	return (data_only ? fdatasync(c->fd) : fsync(c->fd)) ? -errno : 0;
}

int mfd__chan_file_size(struct mfd__chan *c, uint64_t *size)
{
	struct stat st;
	if (fstat(c->fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	return 0;
}

int mfd__chan_file_truncate(struct mfd__chan *c, uint64_t len)
{
	return ftruncate(c->fd, (off_t)len) ? -errno : 0;
}

int mfd__chan_file_map(struct mfd__chan *c, void *addr, size_t len, uint64_t off)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, c->fd, (off_t)off);
	return p == MAP_FAILED ? -errno : 0;
}

int mfd__file_sync_dir(const char *path, struct mfd_error *err)
{
	char dir[PATH_MAX];
	dir_of(path, dir, sizeof(dir));
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
