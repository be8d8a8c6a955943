/* ram/block — RAM block registry: names, memory, page size. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "core/err.h"
#include "core/util.h"
#include "ram/block.h"

int mfd__ram_add(struct mfd__ram *r, const char *name, void *host, uint64_t len,
		 uint32_t page_size, unsigned flags, struct mfd_error *err)
{
	size_t nl = name ? strlen(name) : 0;
	if (nl == 0 || nl > MFD_MAX_NAME)
		return mfd__err_set(err, -EINVAL, -1, "block name must be 1..%d bytes", MFD_MAX_NAME);
	if (!mfd__is_pow2(page_size) || page_size < MFD_MIN_PAGE_SIZE || page_size > MFD_MAX_PAGE_SIZE)
		return mfd__err_set(err, MFD_EPAGESIZE, -1, "block '%s': page size %u", name, page_size);
	if (r->n && page_size != r->page_size)
		return mfd__err_set(err, MFD_EPAGESIZE, -1,
				    "block '%s': page size %u differs from the session's %u", name,
				    page_size, r->page_size);
	if (!host || len == 0 || len % page_size || ((uintptr_t)host % page_size))
		return mfd__err_set(err, -EINVAL, -1,
				    "block '%s': memory must be page aligned, length a page multiple",
				    name);
	if (flags & ~MFD_BLOCK_ZEROED)
		return mfd__err_set(err, -EINVAL, -1, "block '%s': unknown flags 0x%x", name, flags);
	if (mfd__ram_find(r, name) >= 0)
		return mfd__err_set(err, -EEXIST, -1, "block '%s' registered twice", name);
	if (r->n >= MFD_MAX_BLOCKS)
		return mfd__err_set(err, -ENOSPC, -1, "more than %d blocks", MFD_MAX_BLOCKS);
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? r->cap * 2 : 8;
		struct mfd__block *nb = realloc(r->blocks, cap * sizeof(*nb));
		if (!nb)
			return mfd__err_set(err, -ENOMEM, -1, "block table");
		r->blocks = nb;
		r->cap = cap;
	}
	struct mfd__block *b = &r->blocks[r->n];
	memset(b, 0, sizeof(*b));
	memcpy(b->name, name, nl + 1);
	b->host = host;
	b->len = len;
	b->page_size = page_size;
	b->flags = flags;
	b->npages = len / page_size;
	r->page_size = page_size;
	r->total_bytes += len;
	return (int)r->n++;
}

int mfd__ram_find(const struct mfd__ram *r, const char *name)
{
	for (uint32_t i = 0; i < r->n; i++)
		if (!strcmp(r->blocks[i].name, name))
			return (int)i;
	return -1;
}

int mfd__ram_alloc_received(struct mfd__ram *r)
{
	for (uint32_t i = 0; i < r->n; i++) {
		struct mfd__block *b = &r->blocks[i];
		if (!(b->flags & MFD_BLOCK_ZEROED) || b->received)
			continue;
		b->received = calloc(mfd__bitmap_words(b->npages), sizeof(uint64_t));
		if (!b->received)
			return -ENOMEM;
	}
	return 0;
}

void mfd__ram_free(struct mfd__ram *r)
{
	for (uint32_t i = 0; i < r->n; i++)
		free(r->blocks[i].received);
	free(r->blocks);
	memset(r, 0, sizeof(*r));
}
