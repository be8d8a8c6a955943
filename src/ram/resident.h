/* ram/resident — the pages of a block that may hold data, found without touching any. */
#ifndef MFD_RAM_RESIDENT_H
#define MFD_RAM_RESIDENT_H

#include <stdbool.h>
#include <stdint.h>
#include "ram/block.h"

/* OR into bitmap (one bit per page of b) every page that may hold data: present and not the
 * zero page, or with a swap entry (swapped out, or being migrated by the kernel).  With
 * skip_markers, swap entries that are a tracker's markers on never-touched pages (uffd-wp) do not
 * count.  Pages of anything but private anonymous memory, or when the kernel cannot tell, are all
 * set.  Never fails: when in doubt, a page may hold data.  Returns 0. */
int mfd__ram_populated(const struct mfd__block *b, bool skip_markers, uint64_t *bitmap);

/* May the page of this /proc/self/pagemap entry hold data?  Present, or a swap entry (swapped
 * out, being migrated), but with skip_markers not a uffd-wp marker. */
bool mfd__pagemap_data(uint64_t entry, bool skip_markers);

#endif
