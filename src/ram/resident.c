/* ram/resident — which pages of a block may hold data, found without touching any of them.
 *
 * A page of private anonymous memory that was never written has no page table entry (or maps
 * the shared zero page): it reads as zero, and reading it would only map the zero page.  Such
 * pages need neither reading nor sending: a migration sends them as zero ranges (the
 * destination does not touch them either), a save leaves them holes.  PAGEMAP_SCAN (Linux 6.7)
 * reports runs of pages by category in one call per range; /proc/self/pagemap (a u64 per page)
 * is the fallback.  Anything but private anonymous memory (a file or shmem mapping, whose pages
 * may be in the page cache without being in our page tables) counts as all populated, as does
 * any failure: this is an optimisation, never a reason to lose a byte.
 *
 * With a dirty tracker the scan is made twice, before and after the tracker is armed (see
 * mfd__ram_populated): a page written between the two is present in the second, and the
 * tracker reports any later write. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/util.h"
#include "ram/block.h"
#include "ram/pagemap.h"
#include "ram/resident.h"

/* Is [start, end) covered by private anonymous mappings only?  /proc/self/maps lines:
 * "lo-hi perms offset dev inode path"; private anonymous is 'p' with inode 0 and either no path
 * or a bracketed one ([heap], [anon:...]). */
static bool private_anonymous(uintptr_t start, uintptr_t end)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return false;
	char line[512];
	uintptr_t covered = start;
	bool ok = true;
	while (ok && covered < end && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, inode;
		char perms[8], path[256] = "";
		if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %255s", &lo, &hi, perms, &inode, path) < 4)
			continue;
		if (hi <= covered || lo >= end)
			continue;
		if (lo > covered)	/* a hole: not ours to judge */
			ok = false;
		else if (perms[3] != 'p' || inode != 0 || (path[0] && path[0] != '['))
			ok = false;
		covered = hi;
	}
	fclose(f);
	return ok && covered >= end;
}

#define VEC 256

/* Set the bits of the pages in runs of the wanted categories (not mapping the zero page). */
static int scan(int fd, const struct mfd__block *b, uint64_t want, uint64_t *bitmap)
{
	struct page_region vec[VEC];
	uint64_t start = (uintptr_t)b->host, end = start + b->len, cur = start;
	while (cur < end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.start = cur,
			.end = end,
			.vec = (uint64_t)(uintptr_t)vec,
			.vec_len = VEC,
			.category_anyof_mask = want,
			.return_mask = want | PAGE_IS_PFNZERO,
		};
		long n = ioctl(fd, PAGEMAP_SCAN, &arg);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (long i = 0; i < n; i++) {
			if (vec[i].categories == (PAGE_IS_PRESENT | PAGE_IS_PFNZERO))
				continue;	/* the shared zero page: reads as zero */
			uint64_t first = (vec[i].start - start) / b->page_size;
			uint64_t last = MFD_MIN((vec[i].end - start + b->page_size - 1) / b->page_size,
						b->npages);
			if (last > first)
				mfd__bitmap_set_range(bitmap, first, last - first);
		}
		if (arg.walk_end <= cur)
			return -EIO;
		cur = arg.walk_end;
	}
	return 0;
}

/* The fallback: a u64 per 4 KiB page (bit 63 present, 62 swapped). */
static int scan_pagemap(int fd, const struct mfd__block *b, bool with_swapped, uint64_t *bitmap)
{
	uint64_t buf[512], sub = b->page_size / 4096, start = (uintptr_t)b->host / 4096;
	uint64_t n = b->len / 4096;
	for (uint64_t i = 0; i < n;) {
		size_t k = (size_t)MFD_MIN((uint64_t)MFD_ARRAY_SIZE(buf), n - i);
		ssize_t r = pread(fd, buf, k * 8, (off_t)((start + i) * 8));
		if (r != (ssize_t)(k * 8))
			return r < 0 ? -errno : -EIO;
		for (size_t j = 0; j < k; j++)
			if ((buf[j] >> 63) || (with_swapped && ((buf[j] >> 62) & 1)))
				mfd__bit_set(bitmap, (i + j) / sub);
		i += k;
	}
	return 0;
}

int mfd__ram_populated(const struct mfd__block *b, bool present_only, uint64_t *bitmap)
{
	size_t words = mfd__bitmap_words(b->npages);
	if (!private_anonymous((uintptr_t)b->host, (uintptr_t)b->host + b->len))
		goto all;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto all;
	uint64_t want = PAGE_IS_PRESENT | (present_only ? 0 : PAGE_IS_SWAPPED);
	int rc = scan(fd, b, want, bitmap);
	if (rc == -EINVAL || rc == -ENOTTY || rc == -EOPNOTSUPP)	/* no PAGEMAP_SCAN */
		rc = scan_pagemap(fd, b, !present_only, bitmap);
	close(fd);
	if (rc == 0)
		return 0;
all:
	memset(bitmap, 0xff, words * sizeof(uint64_t));
	if (b->npages % 64)
		bitmap[words - 1] = (1ull << (b->npages % 64)) - 1;
	return 0;
}
