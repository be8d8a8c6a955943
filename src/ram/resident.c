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
 * With a dirty tracker the scan is made twice, before and after the tracker is armed (rounds.c):
 * a page written between the two has a page table entry in the second (present, or a swap or
 * migration entry if the kernel moved it meanwhile), and the tracker reports any later write.
 * A uffd-wp tracker leaves markers on never-touched pages, which look like swap entries to
 * PAGEMAP_SCAN; /proc/self/pagemap names them (swap type SWP_PTE_MARKER, 31, when the caller may
 * see swap details: CAP_SYS_ADMIN; otherwise every swap entry counts as data). */
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

bool mfd__pagemap_data(uint64_t e, bool skip_markers)
{
	if (e >> 63)
		return true;		/* present */
	if (!((e >> 62) & 1))
		return false;		/* no entry: never touched (or dropped by the kernel) */
	/* A swap entry.  A uffd-wp marker has swap type (bits 0-4) SWP_PTE_MARKER, 31, and a
	 * non-zero offset; without CAP_SYS_ADMIN type and offset read 0: counted as data. */
	bool marker = (e & 31) == 31 && ((e & ((1ull << 55) - 1)) >> 5) != 0;
	return !(skip_markers && marker);
}

/* The fallback, and the marker-aware scan: a u64 per host page (bit 63 present, 62 swap entry).
 * The block must be made of whole host pages (-EINVAL otherwise: the caller then counts every
 * page). */
static int scan_pagemap(int fd, const struct mfd__block *b, bool skip_markers, uint64_t *bitmap)
{
	long hp = sysconf(_SC_PAGESIZE);
	if (hp <= 0 || b->page_size % (uint64_t)hp || (uintptr_t)b->host % (uint64_t)hp ||
	    b->len % (uint64_t)hp)
		return -EINVAL;
	uint64_t buf[512], sub = b->page_size / (uint64_t)hp, start = (uintptr_t)b->host / (uint64_t)hp;
	uint64_t n = b->len / (uint64_t)hp;
	for (uint64_t i = 0; i < n;) {
		size_t k = (size_t)MFD_MIN((uint64_t)MFD_ARRAY_SIZE(buf), n - i);
		ssize_t r = pread(fd, buf, k * 8, (off_t)((start + i) * 8));
		if (r != (ssize_t)(k * 8))
			return r < 0 ? -errno : -EIO;
		for (size_t j = 0; j < k; j++)
			if (mfd__pagemap_data(buf[j], skip_markers))
				mfd__bit_set(bitmap, (i + j) / sub);
		i += k;
	}
	return 0;
}

int mfd__ram_populated(const struct mfd__block *b, bool skip_markers, uint64_t *bitmap)
{
	size_t words = mfd__bitmap_words(b->npages);
	if (!private_anonymous((uintptr_t)b->host, (uintptr_t)b->host + b->len))
		goto all;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto all;
	int rc;
	if (skip_markers) {	/* PAGEMAP_SCAN cannot tell a marker from a swap entry */
		rc = scan_pagemap(fd, b, true, bitmap);
	} else {
		rc = scan(fd, b, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, bitmap);
		if (rc == -EINVAL || rc == -ENOTTY || rc == -EOPNOTSUPP)	/* no PAGEMAP_SCAN */
			rc = scan_pagemap(fd, b, false, bitmap);
	}
	close(fd);
	if (rc == 0)
		return 0;
all:
	memset(bitmap, 0xff, words * sizeof(uint64_t));
	if (b->npages % 64)
		bitmap[words - 1] = (1ull << (b->npages % 64)) - 1;
	return 0;
}
