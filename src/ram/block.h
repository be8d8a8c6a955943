/* ram/block — the registry of RAM blocks of a session. */
#ifndef MFD_RAM_BLOCK_H
#define MFD_RAM_BLOCK_H

#include <stdint.h>
#include "multifd.h"

struct mfd__block {
	char name[MFD_MAX_NAME + 1];
	uint8_t *host;		/* owned by the embedder */
	uint64_t len;
	uint32_t page_size;
	unsigned flags;		/* MFD_BLOCK_* */
	uint64_t npages;
	uint64_t *received;	/* incoming, MFD_BLOCK_ZEROED: pages written so far (atomic bits) */
};

struct mfd__ram {
	struct mfd__block *blocks;	/* set before the session starts, then read-only */
	uint32_t n;
	uint32_t cap;
	uint32_t page_size;		/* common to every block */
	uint64_t total_bytes;
};

int mfd__ram_add(struct mfd__ram *r, const char *name, void *host, uint64_t len,
		 uint32_t page_size, unsigned flags, struct mfd_error *err);
int mfd__ram_find(const struct mfd__ram *r, const char *name);	/* index or -1 */
/* Allocate the received bitmaps of MFD_BLOCK_ZEROED blocks (incoming). */
int mfd__ram_alloc_received(struct mfd__ram *r);
void mfd__ram_free(struct mfd__ram *r);

#endif
