/* payload/ram_batch — a batch of pages of one RAM block: what a RAM packet carries.
 *
 * Source side: the migration thread fills `offsets` with page offsets to send; a worker calls
 * mfd__ram_batch_classify() which detects all-zero pages and reorders the list as normal pages
 * first, then zero pages (sent as offsets only), and mfd__ram_batch_iov() which describes the
 * normal pages' data straight from source memory, merging neighbouring pages into one entry.
 * Destination side: the decoded batch is turned into iovecs straight into destination memory
 * by the same mfd__ram_batch_iov(), and zero pages are applied by mfd__ram_batch_apply_zero(). */
#ifndef MFD_PAYLOAD_RAM_BATCH_H
#define MFD_PAYLOAD_RAM_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "multifd.h"

struct mfd__ram_batch {
	uint32_t block_id;
	uint32_t normal;			/* pages with data: offsets[0 .. normal) */
	uint32_t zero;				/* zero pages: offsets[normal .. normal+zero) */
	uint64_t offsets[MFD_MAX_BATCH_PAGES];	/* byte offsets within the block */
};

static inline uint32_t mfd__ram_batch_pages(const struct mfd__ram_batch *b)
{
	return b->normal + b->zero;
}

/* Is the buffer all zero?  Word-at-a-time with an early exit; len a multiple of 64. */
bool mfd__is_zero(const void *buf, size_t len);

/* Partition the batch's pages (all initially listed as `normal`) into normal then zero pages,
 * keeping the relative order of each group.  host: the block's base address. */
void mfd__ram_batch_classify(struct mfd__ram_batch *b, const uint8_t *host, uint32_t page_size,
			     bool zero_detect);

/* Describe the data of the normal pages as iovecs over host memory, merging pages that are
 * adjacent in both the list and memory.  Returns the number of entries (<= b->normal). */
int mfd__ram_batch_iov(const struct mfd__ram_batch *b, uint8_t *host, uint32_t page_size,
		       struct iovec *iov);

/* Destination: make every zero page of the batch read as zero.  If `received` is non-NULL the
 * block started all-zero: a page never received before is already zero and is not touched
 * (so it is never faulted in); its bit is set.  Otherwise a page is cleared only if it is not
 * already zero. */
void mfd__ram_batch_apply_zero(const struct mfd__ram_batch *b, uint8_t *host, uint32_t page_size,
			       uint64_t *received);

/* ---- the RAM packet's meta (docs/format.md, "RAM") ---------------------------------------- */
#define MFD_RAM_META_FIXED 16u

/* What a receiver knows to validate RAM packets: set when the block table is accepted. */
struct mfd__ram_limits {
	uint32_t nblocks;
	uint32_t page_size;
	uint32_t max_pages;		/* negotiated batch bound */
	const uint64_t *block_len;	/* nblocks lengths in bytes */
};

/* u32 block, u32 normal, u32 zero, u32 reserved, u64 offsets[normal + zero].  Encode returns the
 * meta length; decode checks every field against lim (and data_len against the normal pages)
 * and reports the exact MFD_E* code naming channel chan. */
uint32_t mfd__ram_meta_encode(uint8_t *meta, const struct mfd__ram_batch *b);
int mfd__ram_meta_decode(const uint8_t *meta, uint32_t meta_len, uint32_t data_len,
			 const struct mfd__ram_limits *lim, struct mfd__ram_batch *b, int chan,
			 struct mfd_error *err);

/* ZERO meta: u32 block, u32 reserved, u64 first page, u64 pages: [first, first + pages) of the
 * block read as zero. */
#define MFD_ZERO_META_LEN 24u
struct mfd__zero_range {
	uint32_t block_id;
	uint64_t first;
	uint64_t count;
};
void mfd__zero_meta_encode(uint8_t meta[MFD_ZERO_META_LEN], const struct mfd__zero_range *z);
int mfd__zero_meta_decode(const uint8_t *meta, uint32_t meta_len, const struct mfd__ram_limits *lim,
			  struct mfd__zero_range *z, int chan, struct mfd_error *err);

/* Destination: mark the normal pages of the batch received (atomic; channels share words). */
void mfd__ram_batch_mark_received(const struct mfd__ram_batch *b, uint32_t page_size,
				  uint64_t *received);

#endif
