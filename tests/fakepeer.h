/* tests/fakepeer.h — a hand-made source (and the start of a hand-made destination) speaking
 * protocol v1 with the real encoders, for tests that need control over ordering, timing and
 * malformed fields. */
#ifndef MFD_FAKEPEER_H
#define MFD_FAKEPEER_H

#include "chan/chan.h"
#include "core/io.h"
#include "payload/ram_batch.h"
#include "proto/proto.h"
#include "tutil.h"

static const uint8_t FAKE_SESSION[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static inline struct mfd__hello fake_hello(uint16_t id, uint16_t count, uint32_t batch)
{
	struct mfd__hello h = { .version = 1, .min_version = 1, .channel_id = id,
				.channel_count = count, .page_size = 4096, .batch_pages = batch };
	memcpy(h.session, FAKE_SESSION, 16);
	return h;
}

static inline void fake_send_hello(int fd, const struct mfd__hello *h)
{
	uint8_t b[MFD_HELLO_LEN];
	mfd__hello_encode(b, h);
	mfd__io_write_fd(fd, b, sizeof(b));
}

static inline void fake_send_pkt(int fd, uint64_t *seq, uint8_t type, const void *meta,
				 uint32_t meta_len, const void *data, uint32_t data_len)
{
	uint8_t hdr[MFD_PKT_HDR_LEN];
	struct mfd__pkt_hdr h = { .type = type, .seq = (*seq)++, .meta_len = meta_len,
				  .data_len = data_len };
	mfd__pkt_hdr_encode(hdr, &h, meta);
	mfd__io_write_fd(fd, hdr, sizeof(hdr));
	if (meta_len)
		mfd__io_write_fd(fd, meta, meta_len);
	if (data_len)
		mfd__io_write_fd(fd, data, data_len);
}

/* A destination's admission: accept n channels on lfd (a real source connects them in order),
 * each hello answered with its own features.  Returns the features, or -1 when a channel does
 * not come, its hello is bad or out of order. */
static inline int64_t fake_dest_admit(int lfd, int *fds, int n)
{
	uint64_t features = 0;
	for (int i = 0; i < n; i++) {
		fds[i] = mfd__sock_accept(lfd, 5000, -1, NULL);
		uint8_t hb[MFD_HELLO_LEN], ab[MFD_ACCEPT_LEN];
		struct mfd__hello h;
		if (fds[i] < 0 || mfd__io_read_fd(fds[i], hb, sizeof(hb)) ||
		    mfd__hello_decode(hb, sizeof(hb), &h, NULL) || h.channel_id != i)
			return -1;
		struct mfd__accept a = { .version = 1, .features = h.features };
		mfd__accept_encode(ab, &a);
		mfd__io_write_fd(fds[i], ab, sizeof(ab));
		features = h.features;
	}
	return (int64_t)features;
}

/* Then the block table: read the main channel's first packet whole, answer BLOCKS_ACK (ok).
 * Returns 0, or -1 when it is not BLOCKS. */
static inline int fake_dest_accept_blocks(int fd, uint64_t *seq)
{
	static uint8_t skip[MFD_PROTO_MAX_META];
	uint8_t hdr[MFD_PKT_HDR_LEN];
	if (mfd__io_read_fd(fd, hdr, sizeof(hdr)) || mfd__io_read_fd(fd, skip, mfd__get32(hdr + 16)) ||
	    hdr[4] != MFD_PKT_BLOCKS)
		return -1;
	struct mfd__status_rec ok = { 0 };
	uint8_t sm[MFD_STATUS_REC_LEN];
	mfd__status_encode(sm, &ok);
	fake_send_pkt(fd, seq, MFD_PKT_BLOCKS_ACK, sm, sizeof(sm), NULL, 0);
	return 0;
}

static inline void fake_send_blocks(int fd, uint64_t *seq, const struct mfd__block_desc *bd, uint32_t n)
{
	static uint8_t meta[MFD_PROTO_MAX_META];
	uint32_t len = mfd__blocks_encode(meta, bd, n);
	fake_send_pkt(fd, seq, MFD_PKT_BLOCKS, meta, len, NULL, 0);
}

/* RAM packet: `normal` pages with data taken from `mem` at the offsets, then `zero` pages. */
static inline void fake_send_ram(int fd, uint64_t *seq, uint32_t block, uint32_t normal,
				 uint32_t zero, const uint64_t *offs, const uint8_t *mem)
{
	static uint8_t meta[MFD_RAM_META_FIXED + 8 * MFD_MAX_BATCH_PAGES];
	struct mfd__ram_batch b = { .block_id = block, .normal = normal, .zero = zero };
	memcpy(b.offsets, offs, (normal + zero) * sizeof(uint64_t));
	uint32_t ml = mfd__ram_meta_encode(meta, &b);
	uint8_t hdr[MFD_PKT_HDR_LEN];
	struct mfd__pkt_hdr h = { .type = MFD_PKT_RAM, .seq = (*seq)++, .meta_len = ml,
				  .data_len = normal * 4096 };
	mfd__pkt_hdr_encode(hdr, &h, meta);
	mfd__io_write_fd(fd, hdr, sizeof(hdr));
	mfd__io_write_fd(fd, meta, ml);
	for (uint32_t i = 0; i < normal; i++)
		mfd__io_write_fd(fd, mem + offs[i], 4096);
}

static inline void fake_send_eos(int fd, uint64_t *seq)
{
	uint8_t meta[8];
	mfd__put64(meta, *seq);
	fake_send_pkt(fd, seq, MFD_PKT_EOS, meta, 8, NULL, 0);
}

static inline void fake_send_end(int fd, uint64_t *seq, uint64_t normal, uint64_t zero)
{
	struct mfd__end_rec end = { .normal_pages = normal, .zero_pages = zero };
	uint8_t em[MFD_END_REC_LEN];
	mfd__end_encode(em, &end);
	fake_send_pkt(fd, seq, MFD_PKT_END, em, sizeof(em), NULL, 0);
}

#endif
