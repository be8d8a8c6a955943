/* mapped/ram_file — RAM pages as the payload of a mapped-ram snapshot file.
 *
 * Save (MFD_JOB_STORE): a job is a span of at least 1 MiB of a block; the worker examines the
 * span's pages (all of them in the first pass, the dirty ones later), writes each run of
 * consecutive non-zero pages with one positional pwritev at its fixed place in the file, straight
 * from the block memory (O_DIRECT when asked), and makes pages that turned zero read as zero
 * again (a punched hole), clearing their bit.  A page is always written at the same offset, so
 * rewriting it in a later pass replaces it: the file never grows past its layout.
 *
 * Restore (MFD_JOB_LOAD): a job is a span of a file block; the worker reads each run of present
 * pages with one positional preadv straight into the block memory, and makes absent pages zero
 * (nothing to do in MFD_BLOCK_ZEROED blocks).
 *
 * Both do MFD_JOB_DIGEST as the stream's RAM payload does (same digest on both sides). */
#ifndef MFD_MAPPED_RAM_FILE_H
#define MFD_MAPPED_RAM_FILE_H

#include "mapped/snapfile.h"
#include "payload/ram_pages.h"

struct mfd__ram_file {
	struct mfd__ram_xfer *x;	/* the session's RAM transfer state */
	/* Save: the layout of each registered block (same index).  Restore: the file's blocks,
	 * and map[i], the registered block of file block i.  Read-only while jobs run. */
	const struct mfd__snap_block *layout;
	const uint32_t *map;
	uint32_t nfile_blocks;
	/* Per registered block, one bit per page.  Save: pages present in the file, set and
	 * cleared by the workers with atomic bit operations (a pass's jobs never share a page,
	 * but they share words), read by the run thread after the pool's barrier.  Restore: the
	 * file's bitmaps, read-only. */
	uint64_t **present;
	/* Per registered block, the CRC-32C of each page, or NULL without page checksums.  Save:
	 * written by the workers for the pages they write (a pass's jobs never share a page), read
	 * by the run thread after the pool's barrier.  Restore: the file's, read-only; every page
	 * read is checked against it. */
	uint32_t **sums;
	uint64_t chunk_pages;		/* pages per job, read-only */
};

extern const struct mfd__payload_ops mfd__ram_file_save_ops, mfd__ram_file_load_ops;

#endif
