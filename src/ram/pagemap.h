/* ram/pagemap — the PAGEMAP_SCAN ioctl (Linux 6.7+) on /proc/self/pagemap, defined here for
 * C libraries whose kernel headers predate it (Debian 12's do). */
#ifndef MFD_RAM_PAGEMAP_H
#define MFD_RAM_PAGEMAP_H

#include <linux/fs.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start;		/* [start, end) of a run of pages with the same categories */
	uint64_t end;
	uint64_t categories;	/* PAGE_IS_* of the run, masked by return_mask */
};

struct pm_scan_arg {
	uint64_t size;		/* sizeof(struct pm_scan_arg) */
	uint64_t flags;		/* PM_SCAN_* */
	uint64_t start;		/* page aligned */
	uint64_t end;
	uint64_t walk_end;	/* out: where the walk stopped (== end when it finished) */
	uint64_t vec;		/* struct page_region array */
	uint64_t vec_len;
	uint64_t max_pages;	/* 0 = no limit */
	uint64_t category_inverted;	/* categories that match when absent */
	uint64_t category_mask;		/* a page must match all of these */
	uint64_t category_anyof_mask;	/* ... and one of these, if any */
	uint64_t return_mask;		/* categories reported in page_region */
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PM_SCAN_WP_MATCHING (1 << 0)	/* write-protect the pages that matched */
#define PM_SCAN_CHECK_WPASYNC (1 << 1)	/* fail (EPERM) on a range without async WP */
#endif

#endif
