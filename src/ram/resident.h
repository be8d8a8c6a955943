/* ram/resident — the pages of a block that may hold data, found without touching any. */
#ifndef MFD_RAM_RESIDENT_H
#define MFD_RAM_RESIDENT_H

#include <stdbool.h>
#include <stdint.h>
#include "ram/block.h"

/* OR into bitmap (one bit per page of b) every page that may hold data: present and not the
 * zero page, or swapped out (unless present_only).  Pages of anything but private anonymous
 * memory, or when the kernel cannot tell, are all set.  Never fails: when in doubt, a page may
 * hold data.  Returns 0. */
int mfd__ram_populated(const struct mfd__block *b, bool present_only, uint64_t *bitmap);

#endif
