/* fuzz/fuzz_packet — the packet header decoder, its checksum check, and every record decoder.
 *
 * Input: one selector byte, then the bytes handed to the decoder it picks (selector % 12):
 *   0  a whole packet as a receiver sees it: 32-byte header (mfd__pkt_hdr_decode), then the
 *      meta (mfd__pkt_check), then the type's record decoder on the meta, as incoming.c does;
 *   1  RAM meta with limits A (4 KiB pages, 512 pages per batch, three blocks);
 *      the first 4 bytes are data_len (LE), the rest is the meta
 *   2  RAM meta with limits B (64 KiB pages, 1024 pages per batch, blocks up to near 2^64)
 *   3  block table (BLOCKS)        4  status record (BLOCKS_ACK, COMMIT)
 *   5  END record                  6  ERROR record, 256-byte message buffer
 *   7  ERROR record, 8-byte message buffer
 *   8  DEVICE meta
 *   9  DEVICES: 8 bytes of meta, then the entries as the packet's data
 *   10 ZERO meta with limits A    11 ROUND_ACK meta
 *
 * After a successful decode the target checks what the decoder promises (docs/format.md): every
 * bound holds, and the decoded record re-encodes to exactly the bytes read.  A violation
 * aborts, which is how the fuzzer reports a logic bug rather than only memory errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/util.h"
#include "payload/ram_batch.h"
#include "proto/proto.h"

#define FAIL(...)                                                    \
	do {                                                         \
		fprintf(stderr, "fuzz_packet: invariant: " __VA_ARGS__); \
		fprintf(stderr, "\n");                               \
		abort();                                             \
	} while (0)

static const uint64_t lens_a[] = { 4096, 64 * 1024, (1ull << 30) + 4096 };
static const struct mfd__ram_limits limits_a = {
	.nblocks = 3, .page_size = 4096, .max_pages = 512, .block_len = lens_a,
};
static const uint64_t lens_b[] = { 65536, 1ull << 40, 0xFFFFFFFFFFFF0000ull, 3 * 65536 };
static const struct mfd__ram_limits limits_b = {
	.nblocks = 4, .page_size = 65536, .max_pages = 1024, .block_len = lens_b,
};

/* Scratch space, static: the batch alone is 8 KiB and the block table 66 KiB. */
static struct mfd__ram_batch batch;
static struct mfd__block_desc blocks[MFD_MAX_BLOCKS];
static uint8_t reenc[MFD_PROTO_MAX_META];

static void check_err(const struct mfd_error *e, int rc)
{
	if (rc >= 0)
		FAIL("decoder returned %d", rc);
	if (e->code != rc)
		FAIL("error record code %d, returned %d", e->code, rc);
	if (!memchr(e->msg, '\0', sizeof(e->msg)) || !e->msg[0])
		FAIL("error message missing or not terminated");
}

static void ram_meta(const uint8_t *m, uint32_t len, uint32_t data_len,
		     const struct mfd__ram_limits *lim)
{
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd__ram_meta_decode(m, len, data_len, lim, &batch, 1, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	uint32_t n = batch.normal + batch.zero;
	if (batch.block_id >= lim->nblocks)
		FAIL("block %u of %u", batch.block_id, lim->nblocks);
	if (batch.normal > lim->max_pages || batch.zero > lim->max_pages || n == 0 ||
	    n > lim->max_pages)
		FAIL("%u normal + %u zero pages, bound %u", batch.normal, batch.zero, lim->max_pages);
	if (len != MFD_RAM_META_FIXED + 8 * n)
		FAIL("meta of %u bytes for %u pages", len, n);
	if ((uint64_t)data_len != (uint64_t)batch.normal * lim->page_size)
		FAIL("data of %u bytes for %u normal pages", data_len, batch.normal);
	uint64_t blen = lim->block_len[batch.block_id];
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = batch.offsets[i];
		if (off % lim->page_size)
			FAIL("offset 0x%llx not aligned", (unsigned long long)off);
		if (off >= blen || blen - off < lim->page_size)
			FAIL("page at 0x%llx outside block of 0x%llx bytes", (unsigned long long)off,
			     (unsigned long long)blen);
	}
	if (mfd__ram_meta_encode(reenc, &batch) != len || memcmp(reenc, m, len))
		FAIL("accepted RAM meta does not re-encode to its own bytes");
}

static void block_table(const uint8_t *m, uint32_t len)
{
	struct mfd_error e;
	uint32_t n = 0xdeadbeef;
	mfd_error_clear(&e);
	int rc = mfd__blocks_decode(m, len, blocks, &n, &e);
	if (rc) {
		check_err(&e, rc);
		if (n != 0xdeadbeef)
			FAIL("count written on failure");
		return;
	}
	if (n == 0 || n > MFD_MAX_BLOCKS)
		FAIL("%u blocks", n);
	for (uint32_t i = 0; i < n; i++) {
		size_t nl = strnlen(blocks[i].name, sizeof(blocks[i].name));
		if (nl == 0 || nl > MFD_MAX_NAME)
			FAIL("block %u name of %zu bytes", i, nl);
		if (!mfd__is_pow2(blocks[i].page_size) || blocks[i].page_size < MFD_MIN_PAGE_SIZE ||
		    blocks[i].page_size > MFD_MAX_PAGE_SIZE)
			FAIL("block %u page size %u", i, blocks[i].page_size);
		if (blocks[i].length == 0 || blocks[i].length % blocks[i].page_size)
			FAIL("block %u length %llu", i, (unsigned long long)blocks[i].length);
		for (uint32_t k = 0; k < i; k++)
			if (!strcmp(blocks[i].name, blocks[k].name))
				FAIL("block name '%s' twice", blocks[i].name);
	}
	if (mfd__blocks_encode(reenc, blocks, n) != len || memcmp(reenc, m, len))
		FAIL("accepted block table does not re-encode to its own bytes");
}

static void status_rec(const uint8_t *m, uint32_t len)
{
	struct mfd_error e;
	struct mfd__status_rec r;
	mfd_error_clear(&e);
	int rc = mfd__status_decode(m, len, &r, 0, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (len != MFD_STATUS_REC_LEN || r.status > 0)
		FAIL("status record of %u bytes, status %d", len, r.status);
	mfd__status_encode(reenc, &r);
	if (memcmp(reenc, m, MFD_STATUS_REC_LEN))
		FAIL("accepted status record does not re-encode to its own bytes");
}

static void round_ack(const uint8_t *m, uint32_t len)
{
	struct mfd_error e;
	uint32_t r;
	mfd_error_clear(&e);
	int rc = mfd__round_ack_decode(m, len, &r, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (len != MFD_ROUND_ACK_LEN)
		FAIL("round acknowledgement of %u bytes", len);
	mfd__round_ack_encode(reenc, r);
	if (memcmp(reenc, m, MFD_ROUND_ACK_LEN))
		FAIL("accepted round acknowledgement does not re-encode to its own bytes");
}

static void end_rec(const uint8_t *m, uint32_t len)
{
	struct mfd_error e;
	struct mfd__end_rec r;
	mfd_error_clear(&e);
	int rc = mfd__end_decode(m, len, &r, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (len != MFD_END_REC_LEN)
		FAIL("end record of %u bytes", len);
	if (r.flags & ~(uint32_t)MFD_FEAT_KNOWN)
		FAIL("end record flags 0x%x", r.flags);
	mfd__end_encode(reenc, &r);
	if (memcmp(reenc, m, MFD_END_REC_LEN))
		FAIL("accepted end record does not re-encode to its own bytes");
}

static void device_meta(const uint8_t *m, uint32_t len)
{
	struct mfd_error e;
	static struct mfd__device_id d;
	mfd_error_clear(&e);
	int rc = mfd__device_meta_decode(m, len, &d, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	size_t nl = strnlen(d.name, sizeof(d.name));
	if (nl == 0 || nl > MFD_MAX_NAME)
		FAIL("device name of %zu bytes", nl);
	if (len != 10 + nl)
		FAIL("device meta of %u bytes for a %zu-byte name", len, nl);
	if (mfd__device_meta_encode(reenc, &d) != len || memcmp(reenc, m, len))
		FAIL("accepted device meta does not re-encode to its own bytes");
}

static void error_rec(const uint8_t *m, uint32_t len, size_t cap)
{
	struct mfd_error e;
	char msg[MFD_ERROR_MSG_MAX + 16];
	int code = 12345;
	mfd_error_clear(&e);
	memset(msg, 'X', sizeof(msg));
	int rc = mfd__errrec_decode(m, len, &code, msg, cap, 0, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (code >= 0)
		FAIL("error record code %d", code);
	uint32_t n = mfd__get32(m + 4);
	if (n > MFD_ERROR_MSG_MAX - 1 || len != 8 + n)
		FAIL("error record of %u bytes with a %u-byte message", len, n);
	size_t k = strnlen(msg, cap);
	if (k == cap)
		FAIL("message not NUL-terminated within %zu bytes", cap);
	if (k != (n < cap - 1 ? n : cap - 1))
		FAIL("message of %zu bytes from %u (cap %zu)", k, n, cap);
	for (size_t i = 0; i < k; i++)
		if (msg[i] < 0x20 || msg[i] > 0x7e)
			FAIL("unprintable byte 0x%02x in message", (unsigned char)msg[i]);
	for (size_t i = cap; i < sizeof(msg); i++)
		if (msg[i] != 'X')
			FAIL("message written past its %zu-byte buffer", cap);
}

static void zero_meta(const uint8_t *m, uint32_t len, const struct mfd__ram_limits *lim)
{
	struct mfd_error e;
	struct mfd__zero_range z;
	mfd_error_clear(&e);
	int rc = mfd__zero_meta_decode(m, len, lim, &z, 1, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (z.block_id >= lim->nblocks)
		FAIL("zero range in block %u of %u", z.block_id, lim->nblocks);
	uint64_t pages = lim->block_len[z.block_id] / lim->page_size;
	if (z.count == 0 || z.first >= pages || z.count > pages - z.first)
		FAIL("zero range %llu + %llu of %llu pages", (unsigned long long)z.first,
		     (unsigned long long)z.count, (unsigned long long)pages);
	uint8_t again[MFD_ZERO_META_LEN];
	mfd__zero_meta_encode(again, &z);
	if (memcmp(again, m, MFD_ZERO_META_LEN))
		FAIL("accepted ZERO meta does not re-encode to its own bytes");
}

static struct mfd__device_desc devs[MFD_DEVICES_MAX];
static uint8_t devs_reenc[MFD_DEVICES_MAX * MFD_DEVICES_ENTRY_MAX];

static void device_table(const uint8_t *meta, const uint8_t *data, uint32_t data_len)
{
	struct mfd_error e;
	uint32_t n;
	mfd_error_clear(&e);
	int rc = mfd__devices_meta_decode(meta, MFD_DEVICES_META_LEN, data_len, &n, &e);
	if (rc == 0)
		rc = mfd__devices_decode(data, data_len, n, devs, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (n > MFD_DEVICES_MAX || (uint64_t)data_len > (uint64_t)n * MFD_DEVICES_ENTRY_MAX)
		FAIL("%u devices in %u bytes accepted", n, data_len);
	for (uint32_t i = 0; i < n; i++) {
		size_t nl = strnlen(devs[i].name, sizeof(devs[i].name));
		size_t cl = strnlen(devs[i].config, sizeof(devs[i].config));
		if (nl == 0 || nl > MFD_MAX_NAME || cl > MFD_DEVICE_CONFIG_MAX)
			FAIL("device %u: name of %zu, config of %zu bytes", i, nl, cl);
		for (size_t k = 0; k < cl; k++)
			if (devs[i].config[k] < 0x20 || devs[i].config[k] > 0x7e)
				FAIL("device %u: unprintable configuration", i);
		for (uint32_t k = 0; k < i; k++)
			if (devs[k].instance == devs[i].instance && !strcmp(devs[k].name, devs[i].name))
				FAIL("device %s.%u twice", devs[i].name, devs[i].instance);
	}
	if (mfd__devices_encode(devs_reenc, devs, n) != data_len || memcmp(devs_reenc, data, data_len))
		FAIL("accepted device table does not re-encode to its own bytes");
}

/* The receiver's path for one packet (incoming.c recv_loop / mfd__recv_packet). */
static void packet(const uint8_t *p, size_t size)
{
	struct mfd__pkt_hdr h;
	struct mfd_error e;
	mfd_error_clear(&e);
	if (size < MFD_PKT_HDR_LEN)
		return;
	int rc = mfd__pkt_hdr_decode(p, &h, 2, &e);
	if (rc) {
		check_err(&e, rc);
		return;
	}
	if (h.meta_len > MFD_PROTO_MAX_META || h.data_len > MFD_PROTO_MAX_DATA)
		FAIL("meta %u / data %u over the bounds", h.meta_len, h.data_len);
	/* Data only where a type carries it: RAM, DEVICE(S), and the private-use types (whose
	 * payload, if the receiver has one, checks its own). */
	if (h.type != MFD_PKT_RAM && h.type != MFD_PKT_DEVICE && h.type != MFD_PKT_DEVICES &&
	    h.type < MFD_PKT_PRIVATE_FIRST && h.data_len)
		FAIL("data on packet type %u", h.type);
	if (h.flags || mfd__get16(p + 6))
		FAIL("flags or reserved header bytes accepted");
	const uint8_t *meta = p + MFD_PKT_HDR_LEN;
	if (h.meta_len > size - MFD_PKT_HDR_LEN)
		return;		/* the stream would end inside the meta */
	mfd_error_clear(&e);
	if ((rc = mfd__pkt_check(p, meta, h.meta_len, 2, &e))) {
		check_err(&e, rc);
		return;
	}
	uint8_t again[MFD_PKT_HDR_LEN];
	mfd__pkt_hdr_encode(again, &h, meta);
	if (memcmp(again, p, MFD_PKT_HDR_LEN))
		FAIL("accepted header does not re-encode to its own bytes");
	switch (h.type) {
	case MFD_PKT_RAM:
		ram_meta(meta, h.meta_len, h.data_len, &limits_a);
		break;
	case MFD_PKT_BLOCKS:
		block_table(meta, h.meta_len);
		break;
	case MFD_PKT_BLOCKS_ACK:
	case MFD_PKT_COMMIT:
		status_rec(meta, h.meta_len);
		break;
	case MFD_PKT_END:
		end_rec(meta, h.meta_len);
		break;
	case MFD_PKT_ROUND_ACK:
		round_ack(meta, h.meta_len);
		break;
	case MFD_PKT_ERROR:
		error_rec(meta, h.meta_len, MFD_ERROR_MSG_MAX);
		break;
	case MFD_PKT_DEVICE:
		device_meta(meta, h.meta_len);
		break;
	case MFD_PKT_ZERO:
		zero_meta(meta, h.meta_len, &limits_a);
		break;
	case MFD_PKT_DEVICES:
		if (h.meta_len == MFD_DEVICES_META_LEN && h.data_len <= size - MFD_PKT_HDR_LEN - h.meta_len)
			device_table(meta, meta + h.meta_len, h.data_len);
		break;
	default:	/* SYNC, EOS: checked by the session (meta length, count) */
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0] % 12;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	/* Record decoders take a u32 length; the header bounds meta at 128 KiB anyway. */
	uint32_t len = n > MFD_PROTO_MAX_META ? MFD_PROTO_MAX_META : (uint32_t)n;
	switch (sel) {
	case 0:
		packet(p, n);
		break;
	case 1:
	case 2:
		if (n < 4)
			break;
		ram_meta(p + 4, len - 4, mfd__get32(p), sel == 1 ? &limits_a : &limits_b);
		break;
	case 3:
		block_table(p, len);
		break;
	case 4:
		status_rec(p, len);
		break;
	case 5:
		end_rec(p, len);
		break;
	case 6:
		error_rec(p, len, MFD_ERROR_MSG_MAX);
		break;
	case 7:
		error_rec(p, len, 8);
		break;
	case 8:
		device_meta(p, len);
		break;
	case 10:
		zero_meta(p, len, &limits_a);
		break;
	case 11:
		round_ack(p, len);
		break;
	case 9:
		if (n >= MFD_DEVICES_META_LEN)
			device_table(p, p + MFD_DEVICES_META_LEN, (uint32_t)(n - MFD_DEVICES_META_LEN));
		break;
	}
	return 0;
}
