/* migrate/snapshot — state shared by the save and restore roles (save.c, restore.c).
 *
 * A snapshot session uses the session's channel slots for file channels: chan[0] is the
 * buffered channel that reads and writes the metadata (header, block table, bitmaps, device
 * sections, trailer), chan[1..n] are the workers' page channels, each its own open file
 * description when the file was opened by path (O_DIRECT when asked), so that one worker's I/O
 * never shares flags or readahead state with another's.  Threads are the session's: the run
 * thread and the pool's workers (one per page channel).  struct mfd__snapshot is s->priv:
 * written by the run thread (open, run); what the workers read is in `rf` (mapped/ram_file.h). */
#ifndef MFD_MIGRATE_SNAPSHOT_H
#define MFD_MIGRATE_SNAPSHOT_H

#include <limits.h>
#include "mapped/ram_file.h"
#include "mapped/snapfile.h"
#include "migrate/session.h"

struct mfd__snapshot {
	char path[PATH_MAX];		/* the snapshot's path, or "fd:N" for passed descriptors */
	bool by_fd;			/* descriptors passed (mfd_session_open_fds): written in
					 * place, no temporary file, no rename */
	struct mfd__chan *direct;	/* by_fd: the O_DIRECT channel the workers duplicate */
	char tmp[PATH_MAX];		/* save: the temporary file beside path */
	bool tmp_exists;		/* save: tmp must be unlinked unless renamed */
	/* Save: the layout of every registered block (same index). */
	struct mfd__snap_block *blocks;
	uint64_t meta_len;		/* save: end of header + table + bitmaps */
	uint64_t pages_end;		/* save: where device sections start */
	/* Restore: the validated metadata, and the registered device of each file device. */
	struct mfd__snap_meta meta;
	uint32_t *map;			/* restore: the registered block of each file block */
	uint32_t *dev_map;
	/* The pages payload's context (its `present` bitmaps are allocated here). */
	struct mfd__ram_file rf;
	bool opened;			/* open succeeded: run may start */
};

/* Open's common part: the private state, and the metadata channel from path (opened with
 * path_flags) or from the passed descriptors (checked for `need`, MFD_FILE_NEED_*).  The
 * descriptors are the session's from the call on. */
int mfd__snapshot_begin(struct mfd_session *s, const char *path, int path_flags, int fd,
			int direct_fd, unsigned need, struct mfd_error *err);
/* The workers' page channels (one per MFD_OPT_CHANNELS), with `flags` (O_DIRECT added when
 * asked): the file reopened by path, or the passed descriptor duplicated. */
int mfd__snapshot_open_workers(struct mfd_session *s, const char *path, int flags,
			       struct mfd_error *err);
/* Pages per job: the batch option, at least 1 MiB (large positional transfers). */
uint64_t mfd__snapshot_chunk_pages(const struct mfd_session *s);
/* Register the pages payload (before the workers start). */
int mfd__snapshot_add_payload(struct mfd_session *s, const struct mfd__payload_ops *ops);
void mfd__snapshot_free(struct mfd_session *s);

#endif
