/* proto — the multifd wire format, version 1 (docs/format.md has the byte diagrams).
 *
 * Every multi-byte field is little-endian.  Every decoder checks every field against hard
 * bounds before anything uses it, and reports the exact MFD_E* code with a message naming the
 * channel.  Encoders never fail (their inputs come from our own code). */
#ifndef MFD_PROTO_H
#define MFD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/util.h"
#include "multifd.h"

#define MFD_PROTO_VERSION 1
#define MFD_PROTO_MIN_VERSION 1

#define MFD_HELLO_MAGIC 0x4844464Du	/* "MFDH" */
#define MFD_ACCEPT_MAGIC 0x4144464Du	/* "MFDA" */
#define MFD_PACKET_MAGIC 0x5044464Du	/* "MFDP" */

#define MFD_HELLO_LEN 64
#define MFD_ACCEPT_LEN 32
#define MFD_PKT_HDR_LEN 32

#define MFD_PROTO_MAX_META (128u * 1024u)
#define MFD_PROTO_MAX_DATA (MFD_MAX_BATCH_PAGES * MFD_MAX_PAGE_SIZE)

/* Feature bits negotiated in the handshake. */
#define MFD_FEAT_VERIFY 0x1ull	/* END and COMMIT carry digests */
#define MFD_FEAT_DEVICES 0x2ull	/* a DEVICES record follows BLOCKS: the destination checks the
				 * device set before any page moves */
#define MFD_FEAT_ZERO_RANGES 0x4ull	/* ZERO packets: runs of pages that read as zero */
#define MFD_FEAT_ROUND_ACK 0x8ull	/* the destination sends ROUND_ACK(r) once every data
					 * channel's round r has landed */
#define MFD_FEAT_KNOWN (MFD_FEAT_VERIFY | MFD_FEAT_DEVICES | MFD_FEAT_ZERO_RANGES | \
			MFD_FEAT_ROUND_ACK)

/* ---- handshake ------------------------------------------------------------------------- */
struct mfd__hello {
	uint16_t version;		/* highest version the sender speaks */
	uint16_t min_version;		/* lowest it accepts */
	uint8_t session[MFD_UUID_LEN];
	uint16_t channel_id;		/* 0 = main */
	uint16_t channel_count;		/* main + data channels */
	uint32_t page_size;
	uint64_t features;
	uint8_t codec;			/* checked by the receiver against its codec table */
	uint32_t batch_pages;		/* the most pages the sender puts in one packet */
};

struct mfd__accept {
	uint16_t version;		/* chosen version */
	int32_t status;			/* 0, or the MFD_E* code the channel was rejected with */
	uint64_t features;		/* accepted features */
};

void mfd__hello_encode(uint8_t buf[MFD_HELLO_LEN], const struct mfd__hello *h);
/* Decodes and checks magic, checksum, version overlap, bounds.  chan: for messages. */
int mfd__hello_decode(const uint8_t *buf, size_t len, struct mfd__hello *h, struct mfd_error *err);
void mfd__accept_encode(uint8_t buf[MFD_ACCEPT_LEN], const struct mfd__accept *a);
int mfd__accept_decode(const uint8_t *buf, size_t len, struct mfd__accept *a, int chan,
		       struct mfd_error *err);

/* ---- packets ------------------------------------------------------------------------------ */
enum mfd__pkt_type {
	MFD_PKT_RAM = 1,	/* data: a RAM page batch */
	MFD_PKT_SYNC = 2,	/* data: end of a round on this channel */
	MFD_PKT_EOS = 3,	/* data: end of stream on this channel */
	MFD_PKT_ZERO = 4,	/* data: a run of pages that read as zero (never written) */
	MFD_PKT_BLOCKS = 16,	/* main: the RAM block table */
	MFD_PKT_BLOCKS_ACK = 17,	/* main, dest -> src: block table accepted (or not) */
	MFD_PKT_END = 18,	/* main: everything was sent; totals and digest */
	MFD_PKT_COMMIT = 19,	/* main, dest -> src: destination committed (or failed) */
	MFD_PKT_ERROR = 20,	/* main, either way: the sender failed; code and message */
	MFD_PKT_DEVICE = 21,	/* main: one device's state (meta: id; data: the state) */
	MFD_PKT_PING = 22,	/* main, src -> dest: keepalive while the main channel is quiet */
	MFD_PKT_DEVICES = 23,	/* main, src -> dest: the device table (meta: count; data: entries) */
	MFD_PKT_ROUND_ACK = 24,	/* main, dest -> src: round r landed on every data channel */
	/* 0xf0..0xff: private use.  Never sent by multifd itself; free for payloads an embedder
	 * or a test registers on both sides.  The header decoder accepts them (with data); a
	 * receiver that has no payload for the type refuses it (MFD_ETYPE). */
	MFD_PKT_PRIVATE_FIRST = 0xf0,
};

/* Is code one a peer may legitimately report: -errno or one of ours? */
bool mfd__valid_code(int32_t code);

struct mfd__pkt_hdr {
	uint8_t type;
	uint8_t flags;
	uint64_t seq;		/* per channel and direction, from 0, +1 per packet */
	uint32_t meta_len;	/* type-specific metadata after the header (checksummed) */
	uint32_t data_len;	/* payload after the metadata (page data) */
	uint32_t round;		/* precopy round the packet belongs to */
};

/* Encode the header; the checksum covers the header and meta. */
void mfd__pkt_hdr_encode(uint8_t buf[MFD_PKT_HDR_LEN], const struct mfd__pkt_hdr *h,
			 const void *meta);
/* Decode the fixed header: magic, reserved bits, known type, bounds of meta_len/data_len. */
int mfd__pkt_hdr_decode(const uint8_t buf[MFD_PKT_HDR_LEN], struct mfd__pkt_hdr *h, int chan,
			struct mfd_error *err);
/* Check the checksum once the meta has been read. */
int mfd__pkt_check(const uint8_t hdr[MFD_PKT_HDR_LEN], const void *meta, uint32_t meta_len,
		   int chan, struct mfd_error *err);

/* ---- main-channel records ----------------------------------------------------------------- */
struct mfd__block_desc {
	char name[MFD_MAX_NAME + 1];
	uint64_t length;
	uint32_t page_size;
};

/* Block table: u32 count, u32 reserved, then per block u16 name_len, name, u32 page_size,
 * u64 length.  Encode returns the meta length (buffer: MFD_PROTO_MAX_META). */
uint32_t mfd__blocks_encode(uint8_t *meta, const struct mfd__block_desc *b, uint32_t n);
int mfd__blocks_decode(const uint8_t *meta, uint32_t len, struct mfd__block_desc *b, uint32_t *n,
		       struct mfd_error *err);

/* Status records (BLOCKS_ACK, COMMIT): i32 status, u32 flags, u64 digest. */
struct mfd__status_rec {
	int32_t status;
	uint32_t flags;
	uint64_t digest;
};
#define MFD_STATUS_REC_LEN 16
void mfd__status_encode(uint8_t meta[MFD_STATUS_REC_LEN], const struct mfd__status_rec *r);
int mfd__status_decode(const uint8_t *meta, uint32_t len, struct mfd__status_rec *r, int chan,
		       struct mfd_error *err);

/* ROUND_ACK: u32 round, u32 reserved (0). */
#define MFD_ROUND_ACK_LEN 8
void mfd__round_ack_encode(uint8_t meta[MFD_ROUND_ACK_LEN], uint32_t round);
int mfd__round_ack_decode(const uint8_t *meta, uint32_t len, uint32_t *round, struct mfd_error *err);

/* END: u64 normal_pages, u64 zero_pages, u64 digest, u32 flags, u32 rounds (SYNC markers each
 * data channel carried). */
struct mfd__end_rec {
	uint64_t normal_pages;
	uint64_t zero_pages;
	uint64_t digest;
	uint32_t flags;
	uint32_t rounds;
};
#define MFD_END_REC_LEN 32
void mfd__end_encode(uint8_t meta[MFD_END_REC_LEN], const struct mfd__end_rec *r);
int mfd__end_decode(const uint8_t *meta, uint32_t len, struct mfd__end_rec *r, struct mfd_error *err);

/* DEVICE: u16 name_len, name, u32 instance, u32 version; the state is the packet's data. */
struct mfd__device_id {
	char name[MFD_MAX_NAME + 1];
	uint32_t instance;
	uint32_t version;
};
uint32_t mfd__device_meta_encode(uint8_t *meta, const struct mfd__device_id *d);
int mfd__device_meta_decode(const uint8_t *meta, uint32_t len, struct mfd__device_id *d,
			    struct mfd_error *err);

/* DEVICES: meta u32 count, u32 reserved; data: count entries of u16 name_len, name, u32
 * instance, u32 version, u64 fixed_size (0: the state's size varies), u16 config_len, config
 * (printable ASCII: what the state depends on, equal on both sides). */
#define MFD_DEVICE_CONFIG_MAX 255
#define MFD_DEVICES_META_LEN 8
#define MFD_DEVICES_ENTRY_MAX (2 + MFD_MAX_NAME + 4 + 4 + 8 + 2 + MFD_DEVICE_CONFIG_MAX)
#define MFD_DEVICES_MAX 1024
struct mfd__device_desc {
	char name[MFD_MAX_NAME + 1];
	uint32_t instance;
	uint32_t version;
	uint64_t fixed_size;
	char config[MFD_DEVICE_CONFIG_MAX + 1];
};
void mfd__devices_meta_encode(uint8_t meta[MFD_DEVICES_META_LEN], uint32_t count);
int mfd__devices_meta_decode(const uint8_t *meta, uint32_t len, uint32_t data_len, uint32_t *count,
			     struct mfd_error *err);
/* The entries into data (MFD_DEVICES_ENTRY_MAX bytes each at most); returns their length. */
uint32_t mfd__devices_encode(uint8_t *data, const struct mfd__device_desc *d, uint32_t n);
/* count entries from data[0..len): every field checked, no entry twice, nothing left over. */
int mfd__devices_decode(const uint8_t *data, uint32_t len, uint32_t count, struct mfd__device_desc *d,
			struct mfd_error *err);

/* EOS: u64 packets the channel carried before this one. */
#define MFD_EOS_REC_LEN 8

/* ERROR: i32 code, u32 msg_len, msg bytes (<= MFD_ERROR_MSG_MAX - 1). */
uint32_t mfd__errrec_encode(uint8_t *meta, int code, const char *msg);
int mfd__errrec_decode(const uint8_t *meta, uint32_t len, int *code, char *msg, size_t msgcap,
		       int chan, struct mfd_error *err);

#endif
