/* migrate/snapshot — state shared by the save and restore sessions (save.c, restore.c).
 *
 * A snapshot session uses the session's channel slots for file channels: chan[0] is the
 * buffered descriptor that reads and writes the metadata (header, block table, bitmaps, device
 * sections, trailer), chan[1..n] are the workers' page channels, each its own open file
 * description (O_DIRECT when asked), so that one worker's I/O never shares a file position,
 * flags or readahead state with another's.  Threads are the session's: the run thread and the
 * pool's workers (one per page channel). */
#ifndef MFD_MIGRATE_SNAPSHOT_H
#define MFD_MIGRATE_SNAPSHOT_H

#include <limits.h>
#include "mapped/snapfile.h"
#include "migrate/session.h"

/* Guest pages handed to the kernel while the guest may write them: intended races (see
 * core/util.h); defined here too in case util.h does not provide them. */
#ifndef MFD_GUEST_READS_BEGIN
#define MFD_GUEST_READS_BEGIN() ((void)0)
#define MFD_GUEST_READS_END() ((void)0)
#endif

struct mfd__snapshot {
	char path[PATH_MAX];		/* the snapshot's path, or "fd:N" when the embedder passed
					 * descriptors; read-only after open */
	bool by_fd;			/* descriptors passed (mfd_session_open_fds): written in
					 * place, no temporary file, no rename; read-only */
	int direct_fd;			/* by_fd: the O_DIRECT descriptor for page data, or -1;
					 * owned until open moves it into the workers' channels */
	char tmp[PATH_MAX];		/* save: the temporary file beside it; run thread only */
	bool tmp_exists;		/* save: tmp must be unlinked unless renamed; run thread */
	/* Save: the layout of every registered block (same index), set at open, read-only.
	 * Restore: unused (meta.blocks holds the file's table). */
	struct mfd__snap_block *blocks;
	uint64_t meta_len;		/* save: end of header + table + bitmaps */
	uint64_t pages_end;		/* save: where device sections start */
	/* Per registered block, one bit per page.  Save: pages present in the file; set and
	 * cleared by the workers with atomic bit operations (jobs of one round never share a
	 * page, but they share words), read by the run thread after the pool's barrier.
	 * Restore: the file's bitmap, read-only after open. */
	uint64_t **present;
	/* Restore: the validated metadata, the registered block of each file block, and the
	 * registered device of each file device.  Read-only after open. */
	struct mfd__snap_meta meta;
	bool meta_read;
	uint32_t *map;
	uint32_t *dev_map;
	uint64_t chunk_pages;		/* pages per job; read-only after open */
	bool opened;			/* open_file succeeded: run may start */
};

/* Publish a file channel in slot id (takes ownership of fd). */
int mfd__snapshot_add_chan(struct mfd_session *s, unsigned id, int fd, struct mfd_error *err);
/* Pages per job: the batch option, at least 1 MiB (large positional transfers). */
uint64_t mfd__snapshot_chunk_pages(const struct mfd_session *s);

/* A descriptor for worker w's page channel: the file reopened (its own open file description,
 * with `flags`), or, when descriptors were passed, a duplicate of the direct descriptor (or of
 * the metadata one).  Returns the fd or a negative code. */
int mfd__snapshot_worker_fd(struct mfd_session *s, int flags, struct mfd_error *err);

/* Open the file: by path (fd < 0), or on the descriptor fd (already in chan[0]). */
int mfd__save_open(struct mfd_session *s, const char *path, struct mfd_error *err);
int mfd__restore_open(struct mfd_session *s, const char *path, struct mfd_error *err);

#endif
