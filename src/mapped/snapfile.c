/* mapped/snapfile — see snapfile.h; the byte layout is in docs/format.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/err.h"
#include "core/io.h"
#include "mapped/snapfile.h"

#define STREAM_CHUNK (256u * 1024u)

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* ---- encoders ------------------------------------------------------------------------------ */

void mfd__snap_hdr_encode(uint8_t b[MFD_SNAP_HDR_LEN], const struct mfd__snap_hdr *h)
{
	memset(b, 0, MFD_SNAP_HDR_LEN);
	mfd__put32(b, MFD_SNAP_MAGIC);
	mfd__put16(b + 4, h->version);
	mfd__put16(b + 6, MFD_SNAP_HDR_LEN);
	mfd__put64(b + 8, h->features);
	memcpy(b + 16, h->uuid, MFD_UUID_LEN);
	mfd__put32(b + 32, h->nblocks);
	mfd__put32(b + 36, h->ndevices);
	mfd__put64(b + 40, h->file_size);
	mfd__put64(b + 48, h->meta_len);
	mfd__put64(b + 56, h->devices_offset);
	mfd__put64(b + 64, h->devices_len);
	mfd__put64(b + 72, h->mem_bytes);
	mfd__put64(b + 80, h->digest);
	mfd__put64(b + 88, h->created_unix_s);
	mfd__put32(b + 96, h->rounds);
	b[100] = h->live;
	mfd__put32(b + 124, mfd__crc32c(0, b, 124));
}

static void put_name(uint8_t *b, const char *name)
{
	memset(b, 0, MFD_SNAP_NAME_FIELD);
	memcpy(b, name, strlen(name));
}

void mfd__snap_block_encode(uint8_t b[MFD_SNAP_BLOCK_LEN], const struct mfd__snap_block *k)
{
	memset(b, 0, MFD_SNAP_BLOCK_LEN);
	put_name(b, k->name);
	mfd__put16(b + 256, (uint16_t)strlen(k->name));
	mfd__put32(b + 260, k->page_size);
	mfd__put64(b + 264, k->len);
	mfd__put64(b + 272, k->bitmap_offset);
	mfd__put64(b + 280, k->bitmap_len);
	mfd__put64(b + 288, k->pages_offset);
	mfd__put64(b + 296, k->present);
	mfd__put32(b + 304, k->bitmap_crc);
	mfd__put64(b + 308, k->sums_offset);
	mfd__put32(b + 316, mfd__crc32c(0, b, 316));
}

void mfd__snap_dev_encode(uint8_t b[MFD_SNAP_DEV_HDR_LEN], const struct mfd__snap_dev *d)
{
	memset(b, 0, MFD_SNAP_DEV_HDR_LEN);
	mfd__put32(b, MFD_SNAP_DEV_MAGIC);
	mfd__put16(b + 4, (uint16_t)strlen(d->name));
	mfd__put32(b + 8, d->instance);
	mfd__put32(b + 12, d->version);
	mfd__put64(b + 16, d->data_len);
	put_name(b + 24, d->name);
	mfd__put32(b + 280, d->data_crc);
	mfd__put32(b + 284, mfd__crc32c(0, b, 284));
}

void mfd__snap_trailer_encode(uint8_t b[MFD_SNAP_TRAILER_LEN], const struct mfd__snap_trailer *t)
{
	memset(b, 0, MFD_SNAP_TRAILER_LEN);
	mfd__put32(b, MFD_SNAP_TRAILER_MAGIC);
	mfd__put16(b + 4, t->version);
	mfd__put16(b + 6, MFD_SNAP_TRAILER_LEN);
	memcpy(b + 8, t->uuid, MFD_UUID_LEN);
	mfd__put32(b + 24, t->nblocks);
	mfd__put32(b + 28, t->ndevices);
	mfd__put64(b + 32, t->file_size);
	mfd__put64(b + 40, t->devices_offset);
	mfd__put32(b + 48, t->meta_crc);
	mfd__put32(b + 52, t->devices_crc);
	mfd__put32(b + 60, mfd__crc32c(0, b, 60));
}

/* ---- decoders ------------------------------------------------------------------------------ */

int mfd__snap_hdr_decode(const uint8_t b[MFD_SNAP_HDR_LEN], struct mfd__snap_hdr *h,
			 struct mfd_error *err)
{
	memset(h, 0, sizeof(*h));
	/* Magic and version first: a later version may lay out (and checksum) the rest
	 * differently, so nothing else can be read before the version is known. */
	if (mfd__get32(b) != MFD_SNAP_MAGIC)
		return mfd__err_set(err, MFD_EMAGIC, -1, "not a snapshot file (magic %08x)",
				    mfd__get32(b));
	h->version = mfd__get16(b + 4);
	if (h->version != MFD_SNAP_VERSION)
		return mfd__err_set(err, MFD_EVERSION, -1, "snapshot format version %u, this reader "
				    "knows %u", h->version, MFD_SNAP_VERSION);
	if (mfd__crc32c(0, b, 124) != mfd__get32(b + 124))
		return mfd__err_set(err, MFD_ECHECKSUM, -1, "file header");
	if (mfd__get16(b + 6) != MFD_SNAP_HDR_LEN)
		return mfd__err_set(err, MFD_ELENGTH, -1, "file header of %u bytes", mfd__get16(b + 6));
	if (!all_zero(b + 101, 23))
		return mfd__err_set(err, MFD_EFEATURE, -1, "reserved file header bytes set");
	h->features = mfd__get64(b + 8);
	memcpy(h->uuid, b + 16, MFD_UUID_LEN);
	h->nblocks = mfd__get32(b + 32);
	h->ndevices = mfd__get32(b + 36);
	h->file_size = mfd__get64(b + 40);
	h->meta_len = mfd__get64(b + 48);
	h->devices_offset = mfd__get64(b + 56);
	h->devices_len = mfd__get64(b + 64);
	h->mem_bytes = mfd__get64(b + 72);
	h->digest = mfd__get64(b + 80);
	h->created_unix_s = mfd__get64(b + 88);
	h->rounds = mfd__get32(b + 96);
	h->live = b[100];
	if (h->features & ~MFD_SNAP_FEAT_KNOWN)
		return mfd__err_set(err, MFD_EFEATURE, -1, "unknown snapshot features 0x%llx",
				    (unsigned long long)(h->features & ~MFD_SNAP_FEAT_KNOWN));
	if (h->digest && !(h->features & MFD_SNAP_FEAT_DIGEST))
		return mfd__err_set(err, MFD_EFEATURE, -1, "digest set without the digest feature");
	if (h->live > 1)
		return mfd__err_set(err, MFD_EFEATURE, -1, "live flag %u", h->live);
	if (h->nblocks == 0 || h->nblocks > MFD_MAX_BLOCKS)
		return mfd__err_set(err, MFD_EBLOCKTABLE, -1, "%u blocks (1..%u allowed)", h->nblocks,
				    MFD_MAX_BLOCKS);
	if (h->ndevices > MFD_SNAP_MAX_DEVICES)
		return mfd__err_set(err, MFD_ECOUNT, -1, "%u device sections (at most %u)",
				    h->ndevices, MFD_SNAP_MAX_DEVICES);
	if (h->rounds == 0 || (!h->live && h->rounds != 1))
		return mfd__err_set(err, MFD_ECOUNT, -1, "%u rounds in a %s save", h->rounds,
				    h->live ? "live" : "stopped");
	if (h->mem_bytes == 0 || h->mem_bytes > (uint64_t)MFD_MAX_BLOCKS * MFD_SNAP_MAX_BLOCK_LEN)
		return mfd__err_set(err, MFD_ELENGTH, -1, "memory of %llu bytes",
				    (unsigned long long)h->mem_bytes);
	/* Each bound before any sum, so that no sum below can wrap. */
	if (h->file_size > MFD_SNAP_MAX_FILE || h->meta_len > h->file_size ||
	    h->devices_offset > h->file_size || h->devices_len > h->file_size)
		return mfd__err_set(err, MFD_ERANGE, -1, "file size %llu, metadata %llu, devices at "
				    "%llu (+%llu): out of range", (unsigned long long)h->file_size,
				    (unsigned long long)h->meta_len,
				    (unsigned long long)h->devices_offset,
				    (unsigned long long)h->devices_len);
	if (h->meta_len < MFD_SNAP_HDR_LEN + (uint64_t)h->nblocks * MFD_SNAP_BLOCK_LEN)
		return mfd__err_set(err, MFD_ELENGTH, -1, "metadata of %llu bytes cannot hold %u "
				    "blocks", (unsigned long long)h->meta_len, h->nblocks);
	if (h->meta_len > h->devices_offset)
		return mfd__err_set(err, MFD_ERANGE, -1, "device sections at %llu inside the metadata",
				    (unsigned long long)h->devices_offset);
	if (h->devices_offset % 8)
		return mfd__err_set(err, MFD_EALIGN, -1, "device sections at %llu",
				    (unsigned long long)h->devices_offset);
	if (h->devices_offset + h->devices_len + MFD_SNAP_TRAILER_LEN != h->file_size)
		return mfd__err_set(err, MFD_ELENGTH, -1, "devices at %llu + %llu bytes and a trailer "
				    "do not end at the file size %llu",
				    (unsigned long long)h->devices_offset,
				    (unsigned long long)h->devices_len,
				    (unsigned long long)h->file_size);
	if (h->devices_len < (uint64_t)h->ndevices * MFD_SNAP_DEV_HDR_LEN ||
	    (h->ndevices == 0 && h->devices_len))
		return mfd__err_set(err, MFD_ELENGTH, -1, "%llu bytes for %u device sections",
				    (unsigned long long)h->devices_len, h->ndevices);
	return 0;
}

/* A NUL-padded name field: len bytes without NUL, then zeros. */
static int get_name(const uint8_t *f, uint16_t len, char *out, int code, const char *what,
		    uint64_t where, struct mfd_error *err)
{
	if (len == 0 || len > MFD_MAX_NAME)
		return mfd__err_set(err, MFD_ELENGTH, -1, "%s %llu: name of %u bytes", what,
				    (unsigned long long)where, len);
	if (memchr(f, '\0', len))
		return mfd__err_set(err, code, -1, "%s %llu: name has a NUL byte", what,
				    (unsigned long long)where);
	if (!all_zero(f + len, MFD_SNAP_NAME_FIELD - len))
		return mfd__err_set(err, code, -1, "%s %llu: bytes after the name", what,
				    (unsigned long long)where);
	memcpy(out, f, len);
	out[len] = '\0';
	return 0;
}

int mfd__snap_block_decode(const uint8_t b[MFD_SNAP_BLOCK_LEN], uint32_t index,
			   struct mfd__snap_block *k, struct mfd_error *err)
{
	int rc;
	memset(k, 0, sizeof(*k));
	if (mfd__crc32c(0, b, 316) != mfd__get32(b + 316))
		return mfd__err_set(err, MFD_ECHECKSUM, -1, "block table entry %u", index);
	if ((rc = get_name(b, mfd__get16(b + 256), k->name, MFD_EBLOCKTABLE, "block", index, err)))
		return rc;
	if (mfd__get16(b + 258))
		return mfd__err_set(err, MFD_EFEATURE, -1, "block '%s': reserved bytes set", k->name);
	k->page_size = mfd__get32(b + 260);
	k->len = mfd__get64(b + 264);
	k->bitmap_offset = mfd__get64(b + 272);
	k->bitmap_len = mfd__get64(b + 280);
	k->pages_offset = mfd__get64(b + 288);
	k->present = mfd__get64(b + 296);
	k->bitmap_crc = mfd__get32(b + 304);
	k->sums_offset = mfd__get64(b + 308);
	if (!mfd__is_pow2(k->page_size) || k->page_size < 4096 || k->page_size > 65536)
		return mfd__err_set(err, MFD_EPAGESIZE, -1, "block '%s': page size %u", k->name,
				    k->page_size);
	if (k->len == 0 || k->len % k->page_size || k->len > MFD_SNAP_MAX_BLOCK_LEN)
		return mfd__err_set(err, MFD_ELENGTH, -1, "block '%s': length %llu", k->name,
				    (unsigned long long)k->len);
	k->npages = k->len / k->page_size;
	if (k->bitmap_len != (k->npages + 7) / 8)
		return mfd__err_set(err, MFD_ELENGTH, -1, "block '%s': bitmap of %llu bytes for %llu "
				    "pages", k->name, (unsigned long long)k->bitmap_len,
				    (unsigned long long)k->npages);
	if (k->bitmap_offset % 8)
		return mfd__err_set(err, MFD_EALIGN, -1, "block '%s': bitmap at %llu", k->name,
				    (unsigned long long)k->bitmap_offset);
	if (k->sums_offset % 8)
		return mfd__err_set(err, MFD_EALIGN, -1, "block '%s': page checksums at %llu", k->name,
				    (unsigned long long)k->sums_offset);
	if (k->pages_offset % MFD_SNAP_ALIGN)
		return mfd__err_set(err, MFD_EALIGN, -1, "block '%s': pages at %llu, not on a 1 MiB "
				    "boundary", k->name, (unsigned long long)k->pages_offset);
	if (k->present > k->npages)
		return mfd__err_set(err, MFD_ECOUNT, -1, "block '%s': %llu pages present of %llu",
				    k->name, (unsigned long long)k->present,
				    (unsigned long long)k->npages);
	return 0;
}

int mfd__snap_dev_decode(const uint8_t b[MFD_SNAP_DEV_HDR_LEN], uint64_t offset,
			 struct mfd__snap_dev *d, struct mfd_error *err)
{
	int rc;
	memset(d, 0, sizeof(*d));
	if (mfd__get32(b) != MFD_SNAP_DEV_MAGIC)
		return mfd__err_set(err, MFD_EMAGIC, -1, "device section at %llu (magic %08x)",
				    (unsigned long long)offset, mfd__get32(b));
	if (mfd__crc32c(0, b, 284) != mfd__get32(b + 284))
		return mfd__err_set(err, MFD_ECHECKSUM, -1, "device section header at %llu",
				    (unsigned long long)offset);
	if ((rc = get_name(b + 24, mfd__get16(b + 4), d->name, MFD_EDEVICE, "device section at",
			   offset, err)))
		return rc;
	if (mfd__get16(b + 6))
		return mfd__err_set(err, MFD_EFEATURE, -1, "device %s: reserved bytes set", d->name);
	d->offset = offset;
	d->instance = mfd__get32(b + 8);
	d->version = mfd__get32(b + 12);
	d->data_len = mfd__get64(b + 16);
	d->data_crc = mfd__get32(b + 280);
	if (d->data_len > MFD_SNAP_MAX_DEVICE_LEN)
		return mfd__err_set(err, MFD_ELENGTH, -1, "device %s.%u: state of %llu bytes (at most "
				    "%llu)", d->name, d->instance, (unsigned long long)d->data_len,
				    (unsigned long long)MFD_SNAP_MAX_DEVICE_LEN);
	return 0;
}

int mfd__snap_trailer_decode(const uint8_t b[MFD_SNAP_TRAILER_LEN], struct mfd__snap_trailer *t,
			     struct mfd_error *err)
{
	memset(t, 0, sizeof(*t));
	if (mfd__get32(b) != MFD_SNAP_TRAILER_MAGIC)
		return mfd__err_set(err, MFD_EMAGIC, -1, "trailer (magic %08x)", mfd__get32(b));
	t->version = mfd__get16(b + 4);
	if (t->version != MFD_SNAP_VERSION)
		return mfd__err_set(err, MFD_EVERSION, -1, "trailer of format version %u", t->version);
	if (mfd__crc32c(0, b, 60) != mfd__get32(b + 60))
		return mfd__err_set(err, MFD_ECHECKSUM, -1, "trailer");
	if (mfd__get16(b + 6) != MFD_SNAP_TRAILER_LEN)
		return mfd__err_set(err, MFD_ELENGTH, -1, "trailer of %u bytes", mfd__get16(b + 6));
	if (mfd__get32(b + 56))
		return mfd__err_set(err, MFD_EFEATURE, -1, "reserved trailer bytes set");
	memcpy(t->uuid, b + 8, MFD_UUID_LEN);
	t->nblocks = mfd__get32(b + 24);
	t->ndevices = mfd__get32(b + 28);
	t->file_size = mfd__get64(b + 32);
	t->devices_offset = mfd__get64(b + 40);
	t->meta_crc = mfd__get32(b + 48);
	t->devices_crc = mfd__get32(b + 52);
	return 0;
}

/* ---- layout and bitmaps ------------------------------------------------------------------- */

void mfd__snap_layout(struct mfd__snap_block *b, uint32_t n, bool sums, uint64_t *meta_len,
		      uint64_t *pages_end)
{
	uint64_t off = MFD_SNAP_HDR_LEN + (uint64_t)n * MFD_SNAP_BLOCK_LEN;
	for (uint32_t i = 0; i < n; i++) {
		b[i].npages = b[i].len / b[i].page_size;
		b[i].bitmap_len = (b[i].npages + 7) / 8;
		b[i].bitmap_offset = align_up(off, 8);
		off = b[i].bitmap_offset + b[i].bitmap_len;
	}
	for (uint32_t i = 0; i < n; i++) {	/* the checksum areas follow every bitmap */
		b[i].sums_offset = sums ? align_up(off, 8) : 0;
		if (sums)
			off = b[i].sums_offset + b[i].npages * 4;
	}
	*meta_len = off;
	uint64_t p = align_up(off, MFD_SNAP_ALIGN);
	for (uint32_t i = 0; i < n; i++) {
		b[i].pages_offset = p;
		p = align_up(p + b[i].len, MFD_SNAP_ALIGN);
	}
	/* Device sections follow the last block directly (its end is page aligned). */
	*pages_end = n ? b[n - 1].pages_offset + b[n - 1].len : p;
}

void mfd__snap_bitmap_to_file(const uint64_t *words, uint64_t npages, uint8_t *bytes)
{
	uint64_t nbytes = (npages + 7) / 8;
	for (uint64_t i = 0; i < nbytes; i++)
		bytes[i] = (uint8_t)(words[i / 8] >> (8 * (i % 8)));
	if (npages % 8)	/* bits past the last page are zero in the file */
		bytes[nbytes - 1] &= (uint8_t)((1u << (npages % 8)) - 1);
}

void mfd__snap_bitmap_from_file(const uint8_t *bytes, uint64_t npages, uint64_t *words)
{
	uint64_t nbytes = (npages + 7) / 8;
	memset(words, 0, mfd__bitmap_words(npages) * sizeof(uint64_t));
	for (uint64_t i = 0; i < nbytes; i++)
		words[i / 8] |= (uint64_t)bytes[i] << (8 * (i % 8));
}

/* ---- the reader ------------------------------------------------------------------------------ */

static int read_at(struct mfd__chan *c, void *buf, size_t len, uint64_t off, const char *what,
		   struct mfd_error *err)
{
	struct iovec v = { buf, len };
	int rc = mfd__chan_preadv(c, &v, 1, (int64_t)off);
	if (rc == MFD_ECLOSED || rc == MFD_ETRUNC)
		return mfd__err_set(err, MFD_ETRUNC, -1, "file ends inside %s", what);
	if (rc)
		return mfd__err_set(err, rc, -1, "reading %s", what);
	return 0;
}

/* Stream [off, off + len) through the CRCs (either may be NULL) and, if bits is set, count the
 * set bits and convert into words (a bitmap that starts at byte 0 of words). */
struct stream {
	struct mfd__chan *c;
	uint8_t *buf;		/* STREAM_CHUNK bytes */
};

static int stream_range(struct stream *st, uint64_t off, uint64_t len, uint32_t *crc1,
			uint32_t *crc2, uint64_t *bits, uint64_t *words, uint8_t *last_byte,
			const char *what, struct mfd_error *err)
{
	uint64_t done = 0;
	while (done < len) {
		size_t n = (size_t)MFD_MIN((uint64_t)STREAM_CHUNK, len - done);
		int rc = read_at(st->c, st->buf, n, off + done, what, err);
		if (rc)
			return rc;
		if (crc1)
			*crc1 = mfd__crc32c(*crc1, st->buf, n);
		if (crc2)
			*crc2 = mfd__crc32c(*crc2, st->buf, n);
		if (bits)
			for (size_t i = 0; i < n; i++)
				*bits += (uint64_t)__builtin_popcount(st->buf[i]);
		if (words)
			for (size_t i = 0; i < n; i++) {
				uint64_t k = done + i;
				words[k / 8] |= (uint64_t)st->buf[i] << (8 * (k % 8));
			}
		if (last_byte)
			*last_byte = st->buf[n - 1];
		done += n;
	}
	return 0;
}

/* Check one bitmap as it streams by; meta_crc (may be NULL) also takes its bytes. */
static int check_bitmap(struct stream *st, const struct mfd__snap_block *k, uint32_t *meta_crc,
			uint64_t *words, struct mfd_error *err)
{
	uint32_t crc = 0;
	uint64_t bits = 0;
	uint8_t last = 0;
	char what[MFD_MAX_NAME + 32];
	snprintf(what, sizeof(what), "the bitmap of block '%s'", k->name);
	if (words)
		memset(words, 0, mfd__bitmap_words(k->npages) * sizeof(uint64_t));
	int rc = stream_range(st, k->bitmap_offset, k->bitmap_len, meta_crc, &crc, &bits, words,
			      &last, what, err);
	if (rc)
		return rc;
	if (crc != k->bitmap_crc)
		return mfd__err_set(err, MFD_ECHECKSUM, -1, "block '%s': bitmap", k->name);
	if (k->npages % 8 && (last >> (k->npages % 8)))
		return mfd__err_set(err, MFD_ERANGE, -1, "block '%s': bitmap bits set past its last "
				    "page", k->name);
	if (bits != k->present)
		return mfd__err_set(err, MFD_ECOUNT, -1, "block '%s': bitmap has %llu pages, its "
				    "entry says %llu", k->name, (unsigned long long)bits,
				    (unsigned long long)k->present);
	return 0;
}

static int read_blocks(struct mfd__chan *c, struct mfd__snap_meta *m, uint32_t *table_crc,
		       struct mfd_error *err)
{
	const struct mfd__snap_hdr *h = &m->hdr;
	size_t tlen = (size_t)h->nblocks * MFD_SNAP_BLOCK_LEN;
	uint8_t *t = malloc(tlen);
	int rc;
	if (!t)
		return mfd__err_set(err, -ENOMEM, -1, "block table");
	if ((rc = read_at(c, t, tlen, MFD_SNAP_HDR_LEN, "the block table", err)))
		goto out;
	*table_crc = mfd__crc32c(*table_crc, t, tlen);
	uint64_t bitmap_end = MFD_SNAP_HDR_LEN + tlen, pages_end = h->meta_len, mem = 0;
	for (uint32_t i = 0; i < h->nblocks; i++) {
		struct mfd__snap_block *k = &m->blocks[i];
		if ((rc = mfd__snap_block_decode(t + (size_t)i * MFD_SNAP_BLOCK_LEN, i, k, err)))
			goto out;
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(m->blocks[j].name, k->name)) {
				rc = mfd__err_set(err, MFD_EBLOCKTABLE, -1, "block '%s' listed twice",
						  k->name);
				goto out;
			}
		/* Bitmaps in block order inside the metadata, pages areas in block order between the
		 * metadata and the device sections: no two structures can overlap. */
		if (k->bitmap_offset < bitmap_end || k->bitmap_offset > h->meta_len ||
		    k->bitmap_len > h->meta_len - k->bitmap_offset) {
			rc = mfd__err_set(err, MFD_ERANGE, -1, "block '%s': bitmap at %llu (+%llu) "
					  "outside [%llu, %llu)", k->name,
					  (unsigned long long)k->bitmap_offset,
					  (unsigned long long)k->bitmap_len,
					  (unsigned long long)bitmap_end,
					  (unsigned long long)h->meta_len);
			goto out;
		}
		bitmap_end = k->bitmap_offset + k->bitmap_len;
		if (k->pages_offset < pages_end || k->pages_offset > h->devices_offset ||
		    k->len > h->devices_offset - k->pages_offset) {
			rc = mfd__err_set(err, MFD_ERANGE, -1, "block '%s': pages at %llu (+%llu) "
					  "outside [%llu, %llu)", k->name,
					  (unsigned long long)k->pages_offset,
					  (unsigned long long)k->len, (unsigned long long)pages_end,
					  (unsigned long long)h->devices_offset);
			goto out;
		}
		pages_end = k->pages_offset + k->len;
		mem += k->len;
	}
	/* Page checksums: after every bitmap, in block order, inside the metadata. */
	bool sums = h->features & MFD_SNAP_FEAT_PAGE_CRC;
	for (uint32_t i = 0; rc == 0 && i < h->nblocks; i++) {
		const struct mfd__snap_block *k = &m->blocks[i];
		if (!sums && k->sums_offset) {
			rc = mfd__err_set(err, MFD_EFEATURE, -1, "block '%s': page checksums without the "
					  "feature", k->name);
		} else if (sums && (k->sums_offset < bitmap_end || k->sums_offset > h->meta_len ||
				    k->npages > (h->meta_len - k->sums_offset) / 4)) {
			rc = mfd__err_set(err, MFD_ERANGE, -1, "block '%s': page checksums at %llu (+%llu) "
					  "outside [%llu, %llu)", k->name,
					  (unsigned long long)k->sums_offset,
					  (unsigned long long)k->npages * 4,
					  (unsigned long long)bitmap_end,
					  (unsigned long long)h->meta_len);
		} else if (sums) {
			bitmap_end = k->sums_offset + k->npages * 4;
		}
	}
	if (rc)
		goto out;
	if (mem != h->mem_bytes)
		rc = mfd__err_set(err, MFD_ECOUNT, -1, "blocks hold %llu bytes, the header says %llu",
				  (unsigned long long)mem, (unsigned long long)h->mem_bytes);
out:
	free(t);
	return rc;
}

static void keep_first(int *first, int rc)
{
	if (*first == 0)
		*first = rc;
}

static int read_devices(struct stream *st, struct mfd__snap_meta *m,
			const struct mfd__snap_limits *lim, unsigned flags, struct mfd_error *err)
{
	const struct mfd__snap_hdr *h = &m->hdr;
	uint64_t off = h->devices_offset, end = h->devices_offset + h->devices_len;
	uint64_t max = lim && lim->device_max ? lim->device_max : UINT64_MAX;
	uint32_t area_crc = 0;
	int rc = 0, first = 0;	/* first: a checksum error recorded in keep-going mode */
	for (uint32_t i = 0; i < h->ndevices; i++) {
		uint8_t b[MFD_SNAP_DEV_HDR_LEN];
		struct mfd__snap_dev *d = &m->devs[i];
		if (end - off < MFD_SNAP_DEV_HDR_LEN) {
			rc = mfd__err_set(err, MFD_ELENGTH, -1, "device section %u of %u does not fit "
					  "in the device area", i + 1, h->ndevices);
			goto out;
		}
		if ((rc = read_at(st->c, b, sizeof(b), off, "a device section", err)))
			goto out;
		area_crc = mfd__crc32c(area_crc, b, sizeof(b));
		if ((rc = mfd__snap_dev_decode(b, off, d, err)))
			goto out;
		for (uint32_t j = 0; j < i; j++)
			if (m->devs[j].instance == d->instance && !strcmp(m->devs[j].name, d->name)) {
				rc = mfd__err_set(err, MFD_EDEVICE, -1, "device %s.%u saved twice",
						  d->name, d->instance);
				goto out;
			}
		uint64_t span = mfd__snap_dev_span(d->data_len);
		if (span > end - off) {
			rc = mfd__err_set(err, MFD_ELENGTH, -1, "device %s.%u: %llu bytes of state run "
					  "past the device area", d->name, d->instance,
					  (unsigned long long)d->data_len);
			goto out;
		}
		if (d->data_len > max || m->device_bytes + d->data_len > max) {
			rc = mfd__err_set(err, MFD_ELENGTH, -1, "device %s.%u: %llu bytes over the "
					  "%llu-byte bound", d->name, d->instance,
					  (unsigned long long)d->data_len, (unsigned long long)max);
			goto out;
		}
		m->device_bytes += d->data_len;
		m->ndevs_read = i + 1;
		uint32_t crc = 0;
		char what[MFD_MAX_NAME + 32];
		snprintf(what, sizeof(what), "the state of device %s.%u", d->name, d->instance);
		uint64_t data = off + MFD_SNAP_DEV_HDR_LEN;
		if ((rc = stream_range(st, data, d->data_len, &area_crc, &crc, NULL, NULL, NULL, what,
				       err)) ||
		    (rc = stream_range(st, data + d->data_len, span - MFD_SNAP_DEV_HDR_LEN - d->data_len,
				       &area_crc, NULL, NULL, NULL, NULL, what, err)))
			goto out;
		if (crc != d->data_crc) {
			rc = mfd__err_set(err, MFD_ECHECKSUM, -1, "device %s.%u: state", d->name,
					  d->instance);
			m->dev_status[i] = rc;
			if (!(flags & MFD_SNAP_READ_KEEP_GOING))
				goto out;
			keep_first(&first, rc);
			rc = 0;
		}
		off += span;
	}
	if (off != end)
		rc = mfd__err_set(err, MFD_ELENGTH, -1, "%llu bytes after the last device section",
				  (unsigned long long)(end - off));
	else if (!first && area_crc != m->tr.devices_crc)
		rc = mfd__err_set(err, MFD_ECHECKSUM, -1, "device area");
out:
	/* After a recorded checksum error, that first error stays the verdict. */
	return first ? first : rc;
}

int mfd__snap_read(struct mfd__chan *c, struct mfd__snap_meta *m, const struct mfd__snap_limits *lim,
		   unsigned flags, struct mfd_error *err)
{
	uint8_t hb[MFD_SNAP_HDR_LEN], tb[MFD_SNAP_TRAILER_LEN];
	struct stream st = { .c = c };
	int rc, first = 0;
	memset(m, 0, sizeof(*m));
	if ((rc = mfd__chan_file_size(c, &m->real_size)))
		return mfd__err_set(err, rc, -1, rc == -EINVAL ? "not a regular file" : "stat");
	if (m->real_size < MFD_SNAP_HDR_LEN)
		return mfd__err_set(err, m->real_size ? MFD_ETRUNC : MFD_EINCOMPLETE, -1,
				    "file of %llu bytes has no header",
				    (unsigned long long)m->real_size);
	if ((rc = read_at(c, hb, sizeof(hb), 0, "the file header", err)))
		return rc;
	/* The header is written at the end of a save: zeros mean the save did not get there. */
	if (all_zero(hb, sizeof(hb)))
		return mfd__err_set(err, MFD_EINCOMPLETE, -1, "no file header");
	if ((rc = mfd__snap_hdr_decode(hb, &m->hdr, err)))
		return rc;
	m->header_ok = true;
	const struct mfd__snap_hdr *h = &m->hdr;
	if (m->real_size < h->file_size) {
		if (m->real_size >= h->devices_offset + h->devices_len)
			return mfd__err_set(err, MFD_EINCOMPLETE, -1, "no trailer (file of %llu bytes, "
					    "%llu expected)", (unsigned long long)m->real_size,
					    (unsigned long long)h->file_size);
		return mfd__err_set(err, MFD_ETRUNC, -1, "file of %llu bytes, its header says %llu",
				    (unsigned long long)m->real_size,
				    (unsigned long long)h->file_size);
	}
	if (m->real_size > h->file_size)
		return mfd__err_set(err, MFD_ELENGTH, -1, "%llu bytes after the trailer",
				    (unsigned long long)(m->real_size - h->file_size));
	if ((rc = read_at(c, tb, sizeof(tb), h->file_size - MFD_SNAP_TRAILER_LEN, "the trailer",
			  err)))
		return rc;
	if (all_zero(tb, sizeof(tb)))
		return mfd__err_set(err, MFD_EINCOMPLETE, -1, "no trailer");
	if ((rc = mfd__snap_trailer_decode(tb, &m->tr, err)))
		return rc;
	if (memcmp(m->tr.uuid, h->uuid, MFD_UUID_LEN))
		return mfd__err_set(err, MFD_ESESSION, -1, "the trailer belongs to another snapshot");
	if (m->tr.nblocks != h->nblocks || m->tr.ndevices != h->ndevices)
		return mfd__err_set(err, MFD_ECOUNT, -1, "trailer counts %u blocks and %u devices, the "
				    "header %u and %u", m->tr.nblocks, m->tr.ndevices, h->nblocks,
				    h->ndevices);
	if (m->tr.file_size != h->file_size || m->tr.devices_offset != h->devices_offset)
		return mfd__err_set(err, MFD_ELENGTH, -1, "trailer and header disagree on the layout");
	m->trailer_ok = true;

	m->blocks = calloc(h->nblocks, sizeof(*m->blocks));
	m->block_status = calloc(h->nblocks, sizeof(*m->block_status));
	m->devs = calloc(h->ndevices ? h->ndevices : 1, sizeof(*m->devs));
	m->dev_status = calloc(h->ndevices ? h->ndevices : 1, sizeof(*m->dev_status));
	st.buf = malloc(STREAM_CHUNK);
	if (!m->blocks || !m->block_status || !m->devs || !m->dev_status || !st.buf) {
		rc = mfd__err_set(err, -ENOMEM, -1, "snapshot tables");
		goto out;
	}
	uint32_t meta_crc = mfd__crc32c(0, hb, sizeof(hb));
	if ((rc = read_blocks(c, m, &meta_crc, err)))
		goto out;
	m->blocks_ok = true;

	/* One pass over the rest of the metadata: the gaps (padding) and each bitmap. */
	uint64_t pos = MFD_SNAP_HDR_LEN + (uint64_t)h->nblocks * MFD_SNAP_BLOCK_LEN;
	for (uint32_t i = 0; i < h->nblocks; i++) {
		const struct mfd__snap_block *k = &m->blocks[i];
		if ((rc = stream_range(&st, pos, k->bitmap_offset - pos, &meta_crc, NULL, NULL, NULL,
				       NULL, "the metadata", err)))
			goto out;
		rc = check_bitmap(&st, k, &meta_crc, NULL, err);
		if (rc == MFD_ECHECKSUM || rc == MFD_ERANGE || rc == MFD_ECOUNT) {
			m->block_status[i] = rc;
			if (!(flags & MFD_SNAP_READ_KEEP_GOING))
				goto out;
			keep_first(&first, rc);
			rc = 0;
		} else if (rc) {
			goto out;
		}
		pos = k->bitmap_offset + k->bitmap_len;
	}
	if ((rc = stream_range(&st, pos, h->meta_len - pos, &meta_crc, NULL, NULL, NULL, NULL,
			       "the metadata", err)))
		goto out;
	m->bitmaps_ok = first == 0;
	if (first == 0) {
		if (meta_crc != m->tr.meta_crc) {
			rc = mfd__err_set(err, MFD_ECHECKSUM, -1, "metadata (header, block table, "
					  "bitmaps) differs from what the trailer recorded");
			goto out;
		}
		m->metadata_ok = true;
	}
	rc = read_devices(&st, m, lim, flags, err);
	if (rc == 0)
		m->devices_ok = true;
	if (first)
		rc = first;
out:
	free(st.buf);
	return rc;
}

void mfd__snap_meta_free(struct mfd__snap_meta *m)
{
	if (!m)
		return;
	free(m->blocks);
	free(m->devs);
	free(m->block_status);
	free(m->dev_status);
	m->blocks = NULL;
	m->devs = NULL;
	m->block_status = m->dev_status = NULL;
}

int mfd__snap_read_bitmap(struct mfd__chan *c, const struct mfd__snap_block *b, uint64_t *words,
			  struct mfd_error *err)
{
	struct stream st = { .c = c, .buf = malloc(STREAM_CHUNK) };
	if (!st.buf)
		return mfd__err_set(err, -ENOMEM, -1, "bitmap buffer");
	int rc = check_bitmap(&st, b, NULL, words, err);
	free(st.buf);
	return rc;
}

int mfd__snap_read_sums(struct mfd__chan *c, const struct mfd__snap_block *b, uint32_t *sums,
			struct mfd_error *err)
{
	char what[MFD_MAX_NAME + 48];
	snprintf(what, sizeof(what), "the page checksums of block '%s'", b->name);
	uint64_t done = 0, n = b->npages * 4;
	uint8_t buf[16384];
	while (done < n) {
		size_t k = (size_t)MFD_MIN((uint64_t)sizeof(buf), n - done);
		int rc = read_at(c, buf, k, b->sums_offset + done, what, err);
		if (rc)
			return rc;
		for (size_t i = 0; i < k; i += 4)
			sums[(done + i) / 4] = mfd__get32(buf + i);
		done += k;
	}
	return 0;
}

int mfd__snap_read_dev(struct mfd__chan *c, const struct mfd__snap_dev *d, void *buf,
		       struct mfd_error *err)
{
	char what[MFD_MAX_NAME + 32];
	snprintf(what, sizeof(what), "the state of device %s.%u", d->name, d->instance);
	int rc = read_at(c, buf, (size_t)d->data_len, d->offset + MFD_SNAP_DEV_HDR_LEN, what, err);
	if (rc)
		return rc;
	if (mfd__crc32c(0, buf, (size_t)d->data_len) != d->data_crc)
		return mfd__err_set(err, MFD_ECHECKSUM, -1, "device %s.%u: state", d->name,
				    d->instance);
	return 0;
}
