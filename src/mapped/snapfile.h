/* mapped/snapfile — the mapped-ram snapshot file: layout, encoders, and the validating reader.
 *
 * Layout (docs/format.md, "mapped-ram file format", has the byte diagrams):
 *
 *     0            file header (128 bytes)
 *     128          block table: one 320-byte entry per RAM block
 *     ...          the page bitmaps, one per block, each 8-byte aligned     } metadata,
 *     ...          page checksums (feature bit): per block, a u32 per page  }
 *     meta_len     end of the metadata                                      } [0, meta_len)
 *     pages_offset per block, 1 MiB aligned: page i at pages_offset + i * page_size (holes for
 *                  pages not present)
 *     devices_offset  device sections (288-byte header, state, padding to 8)
 *     file_size-64 trailer (64 bytes), written last
 *
 * Every integer is little-endian; bitmap bit i is bit (i % 8) of byte i / 8.  Each structure
 * carries a CRC-32C; the trailer also carries the CRC of the whole metadata region and of the
 * device area, and repeats the counts and the snapshot id, so that a file whose save did not
 * finish, or that was cut, is recognised (MFD_EINCOMPLETE, MFD_ETRUNC).
 *
 * The reader trusts nothing: every count, length and offset is checked against hard bounds and
 * against the file's real size before anything uses it, and memory is bounded by the counts
 * (bitmaps are streamed, except when the caller asks to keep them, which the restore does only
 * after matching the block table against its own registered memory). */
#ifndef MFD_MAPPED_SNAPFILE_H
#define MFD_MAPPED_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/util.h"
#include "chan/chan.h"
#include "multifd.h"

#define MFD_SNAP_MAGIC 0x5344464Du		/* "MFDS" */
#define MFD_SNAP_DEV_MAGIC 0x4444464Du		/* "MFDD" */
#define MFD_SNAP_TRAILER_MAGIC 0x5444464Du	/* "MFDT" */
#define MFD_SNAP_VERSION 1

#define MFD_SNAP_HDR_LEN 128u
#define MFD_SNAP_BLOCK_LEN 320u
#define MFD_SNAP_DEV_HDR_LEN 288u
#define MFD_SNAP_TRAILER_LEN 64u
#define MFD_SNAP_NAME_FIELD 256u
#define MFD_SNAP_ALIGN (1u << 20)			/* pages areas start on 1 MiB boundaries */
#define MFD_SNAP_MAX_BLOCK_LEN (1ull << 46)		/* 64 TiB per block */
#define MFD_SNAP_MAX_DEVICE_LEN (64ull << 20)		/* one device state */
#define MFD_SNAP_MAX_DEVICES 1024u
#define MFD_SNAP_MAX_FILE (1ull << 62)
/* A save writes PATH.multifd-tmp.XXXXXX and renames it over PATH at the end. */
#define MFD_SNAP_TEMP_SUFFIX ".multifd-tmp."

/* Feature bits: a reader refuses a file with a bit it does not know (MFD_EFEATURE). */
#define MFD_SNAP_FEAT_DIGEST 0x1ull	/* the header's digest field holds the memory digest */
#define MFD_SNAP_FEAT_PAGE_CRC 0x2ull	/* every block has a page checksum area: the CRC-32C of
					 * each present page (0 for absent ones) */
#define MFD_SNAP_FEAT_KNOWN (MFD_SNAP_FEAT_DIGEST | MFD_SNAP_FEAT_PAGE_CRC)

struct mfd__snap_hdr {
	uint16_t version;
	uint64_t features;
	uint8_t uuid[MFD_UUID_LEN];
	uint32_t nblocks;
	uint32_t ndevices;
	uint64_t file_size;
	uint64_t meta_len;		/* [0, meta_len): header, block table, bitmaps */
	uint64_t devices_offset;
	uint64_t devices_len;
	uint64_t mem_bytes;
	uint64_t digest;
	uint64_t created_unix_s;
	uint32_t rounds;
	uint8_t live;
};

struct mfd__snap_block {
	char name[MFD_MAX_NAME + 1];
	uint32_t page_size;
	uint64_t len;
	uint64_t npages;		/* derived: len / page_size */
	uint64_t bitmap_offset;
	uint64_t bitmap_len;		/* bytes: ceil(npages / 8) */
	uint64_t pages_offset;
	uint64_t present;		/* pages with their bit set */
	uint32_t bitmap_crc;
	uint64_t sums_offset;		/* page checksums: npages u32 at this offset (inside the
					 * metadata, after every bitmap); 0 without the feature */
};

struct mfd__snap_dev {
	char name[MFD_MAX_NAME + 1];
	uint32_t instance;
	uint32_t version;
	uint64_t offset;		/* of the section header */
	uint64_t data_len;
	uint32_t data_crc;
};

struct mfd__snap_trailer {
	uint16_t version;
	uint8_t uuid[MFD_UUID_LEN];
	uint32_t nblocks;
	uint32_t ndevices;
	uint64_t file_size;
	uint64_t devices_offset;
	uint32_t meta_crc;
	uint32_t devices_crc;
};

/* Encoders: never fail (inputs come from our own code). */
void mfd__snap_hdr_encode(uint8_t buf[MFD_SNAP_HDR_LEN], const struct mfd__snap_hdr *h);
void mfd__snap_block_encode(uint8_t buf[MFD_SNAP_BLOCK_LEN], const struct mfd__snap_block *b);
void mfd__snap_dev_encode(uint8_t buf[MFD_SNAP_DEV_HDR_LEN], const struct mfd__snap_dev *d);
void mfd__snap_trailer_encode(uint8_t buf[MFD_SNAP_TRAILER_LEN], const struct mfd__snap_trailer *t);

/* Decoders of one structure: check magic, version, checksum, reserved bytes and the bounds that
 * need no other context.  Return 0 or the MFD_E* code, with the reason in err. */
int mfd__snap_hdr_decode(const uint8_t buf[MFD_SNAP_HDR_LEN], struct mfd__snap_hdr *h,
			 struct mfd_error *err);
int mfd__snap_block_decode(const uint8_t buf[MFD_SNAP_BLOCK_LEN], uint32_t index,
			   struct mfd__snap_block *b, struct mfd_error *err);
int mfd__snap_dev_decode(const uint8_t buf[MFD_SNAP_DEV_HDR_LEN], uint64_t offset,
			 struct mfd__snap_dev *d, struct mfd_error *err);
int mfd__snap_trailer_decode(const uint8_t buf[MFD_SNAP_TRAILER_LEN], struct mfd__snap_trailer *t,
			     struct mfd_error *err);

/* Writer: place n blocks (name, page_size, len set) in the file: fills bitmap_offset,
 * bitmap_len, pages_offset, npages, and with page checksums sums_offset; returns meta_len in
 * *meta_len and the end of the last pages area (where device sections start) in *pages_end. */
void mfd__snap_layout(struct mfd__snap_block *b, uint32_t n, bool sums, uint64_t *meta_len,
		      uint64_t *pages_end);
/* Bytes a device section with len bytes of state takes (header, state, padding to 8). */
static inline uint64_t mfd__snap_dev_span(uint64_t len)
{
	return MFD_SNAP_DEV_HDR_LEN + ((len + 7) & ~7ull);
}

/* Bitmap conversion between the file (bytes, LSB first) and memory (uint64_t words). */
void mfd__snap_bitmap_to_file(const uint64_t *words, uint64_t npages, uint8_t *bytes);
void mfd__snap_bitmap_from_file(const uint8_t *bytes, uint64_t npages, uint64_t *words);

/* ---- the reader ----------------------------------------------------------------------------- */

#define MFD_SNAP_READ_KEEP_GOING 0x1u	/* inspect: record bitmap and device checksum errors in
					 * block_status / dev_status and keep checking */

struct mfd__snap_meta {
	struct mfd__snap_hdr hdr;
	struct mfd__snap_trailer tr;
	struct mfd__snap_block *blocks;		/* hdr.nblocks entries */
	struct mfd__snap_dev *devs;		/* hdr.ndevices entries */
	int *block_status;			/* per block: 0 or the bitmap's error */
	int *dev_status;			/* per device: 0 or the section's error */
	uint32_t ndevs_read;			/* device sections decoded (devs[0..ndevs_read)) */
	uint64_t device_bytes;			/* sum of data_len */
	uint64_t real_size;			/* st_size of the file */
	/* How far the checks got (inspect reports it). */
	bool header_ok, trailer_ok, blocks_ok, bitmaps_ok, devices_ok, metadata_ok;
};

/* Bounds the caller imposes beyond the format's own. */
struct mfd__snap_limits {
	uint64_t device_max;		/* one device state and their total; 0 = the format's bound */
};

/* Read and validate everything but the page data: header, trailer, block table, bitmaps,
 * metadata checksum, device sections (their data is streamed through the checksum).  Returns 0
 * or the first error; m is filled as far as the checks got and must be freed with
 * mfd__snap_meta_free in every case.  With MFD_SNAP_READ_KEEP_GOING a bad bitmap or device
 * checksum is recorded and the walk goes on (the first such error is still returned). */
int mfd__snap_read(struct mfd__chan *c, struct mfd__snap_meta *m, const struct mfd__snap_limits *lim,
		   unsigned flags, struct mfd_error *err);
void mfd__snap_meta_free(struct mfd__snap_meta *m);

/* Read block b's bitmap into words (mfd__bitmap_words(npages) entries), checking its CRC, the
 * bits past the last page and the present count again (the file may have changed since
 * mfd__snap_read).  0 or an error. */
int mfd__snap_read_bitmap(struct mfd__chan *c, const struct mfd__snap_block *b, uint64_t *words,
			  struct mfd_error *err);
/* Read block b's page checksums into sums (b->npages entries).  The metadata checksum covered
 * them when mfd__snap_read ran.  0 or an error. */
int mfd__snap_read_sums(struct mfd__chan *c, const struct mfd__snap_block *b, uint32_t *sums,
			struct mfd_error *err);
/* Read a device section's state into buf (d->data_len bytes), checking its CRC. */
int mfd__snap_read_dev(struct mfd__chan *c, const struct mfd__snap_dev *d, void *buf, struct mfd_error *err);

#endif
