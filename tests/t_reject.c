/* t_reject — a hand-made source speaks raw protocol to a real incoming session; every malformed
 * field must be rejected with its exact error code, and the session must end (never hang). */
#include "fakepeer.h"
#include "pair.h"

#define NCH 3		/* main + 2 data channels */
#define LEN_A (1u << 20)
#define LEN_B (64u << 10)
#define BATCH 16

/* A real destination on socketpairs; the test is its source, writing d.p.src_fd[] by hand (the
 * pair's source session stays unused). */
struct dest {
	struct pair p;
	uint8_t *a, *b;
};

static void dest_start(struct dest *d)
{
	pair_new(&d->p);
	d->a = t_map(LEN_A);
	d->b = t_map(LEN_B);
	CHECK(mfd_ram_block_add(d->p.dst.s, "a", d->a, LEN_A, 4096, MFD_BLOCK_ZEROED) == 0);
	CHECK(mfd_ram_block_add(d->p.dst.s, "b", d->b, LEN_B, 4096, 0) == 1);
	mfd_session_set(d->p.dst.s, MFD_OPT_TIMEOUT_MS, 2000);
	CHECK_CODE(pair_listen(&d->p, NULL, NCH - 1), 0);
}

/* Wait for the session to end by itself (our ends stay open, so it must find the fault on its
 * own), then close our ends and return its code. */
static int dest_finish(struct dest *d)
{
	pair_join(&d->p);
	for (int i = 0; i < NCH; i++)
		if (d->p.src_fd[i] >= 0)
			close(d->p.src_fd[i]);
	struct mfd_stats st;
	mfd_session_get_stats(d->p.dst.s, &st);
	if (d->p.dst.rc)
		CHECK_EQ(st.status, MFD_STATUS_FAILED);
	int rc = d->p.dst.rc;
	pair_free(&d->p);
	munmap(d->a, LEN_A);
	munmap(d->b, LEN_B);
	return rc;
}

static struct mfd__hello hello(uint16_t id)
{
	return fake_hello(id, NCH, BATCH);
}

static void send_raw(int fd, const void *p, size_t n)
{
	mfd__io_write_fd(fd, p, n);
}

/* A hello for channel 0 encoded whole, then byte `at` XORed with `mask`. */
static void send_bad_hello(struct dest *d, size_t at, uint8_t mask)
{
	uint8_t b[MFD_HELLO_LEN];
	struct mfd__hello h = hello(0);
	mfd__hello_encode(b, &h);
	b[at] ^= mask;
	send_raw(d->p.src_fd[0], b, sizeof(b));
}

static uint64_t seqs[NCH];

static void send_pkt(struct dest *d, int ch, uint8_t type, const void *meta, uint32_t meta_len,
		     const void *data, uint32_t data_len)
{
	fake_send_pkt(d->p.src_fd[ch], &seqs[ch], type, meta, meta_len, data, data_len);
}

/* Handshake every channel and send a block table: the right one, or with block "b" named
 * `name1`. */
static void send_table(struct dest *d, const char *name1)
{
	memset(seqs, 0, sizeof(seqs));
	for (int i = 0; i < NCH; i++) {
		struct mfd__hello h = hello((uint16_t)i);
		fake_send_hello(d->p.src_fd[i], &h);
	}
	struct mfd__block_desc bd[2] = { { "a", LEN_A, 4096 }, { "", LEN_B, 4096 } };
	snprintf(bd[1].name, sizeof(bd[1].name), "%s", name1);
	fake_send_blocks(d->p.src_fd[0], &seqs[0], bd, 2);
}

/* Where the cases after the handshake start. */
static void setup(struct dest *d)
{
	send_table(d, "b");
}

/* A RAM packet with its meta made by hand: the counts, offsets and data length need not agree
 * (at most 64 offsets go out). */
static void send_ram(struct dest *d, int ch, uint32_t block, uint32_t normal, uint32_t zero,
		     const uint64_t *offs, uint32_t data_len)
{
	static uint8_t page[64 * 4096];
	uint8_t meta[16 + 8 * 64];
	mfd__put32(meta, block);
	mfd__put32(meta + 4, normal);
	mfd__put32(meta + 8, zero);
	mfd__put32(meta + 12, 0);
	for (uint32_t i = 0; i < normal + zero && i < 64; i++)
		mfd__put64(meta + 16 + 8 * i, offs[i]);
	uint32_t ml = 16 + 8 * ((normal + zero) < 64 ? (normal + zero) : 64);
	send_pkt(d, ch, MFD_PKT_RAM, meta, ml, page, data_len);
}

/* End of stream on every data channel, then END with these totals. */
static void send_end(struct dest *d, uint64_t normal, uint64_t zero)
{
	for (int ch = 1; ch < NCH; ch++)
		fake_send_eos(d->p.src_fd[ch], &seqs[ch]);
	fake_send_end(d->p.src_fd[0], &seqs[0], normal, zero);
}

/* The observed code when it is one of two acceptable ones, else the first (for the message). */
static int last_rc;
static char last_msg[MFD_ERROR_MSG_MAX];
static int rc_or(int a, int b) { return last_rc == b ? b : a; }

#define EXPECT(label, code, ...)                                                          \
	do {                                                                               \
		struct dest d;                                                             \
		fprintf(stderr, "case %s\n", label);                                       \
		dest_start(&d);                                                            \
		__VA_ARGS__;                                                               \
		int _rc = last_rc = dest_finish(&d);                                       \
		snprintf(last_msg, sizeof(last_msg), "%s", d.p.dst.err.msg);               \
		CHECK_CODE(_rc, code);                                                     \
		if (_rc != (code))                                                         \
			fprintf(stderr, "  message: %s\n", d.p.dst.err.msg);               \
	} while (0)

int main(void)
{
	uint64_t offs[64];

	/* ---- handshake ---- */
	EXPECT("bad magic", MFD_EMAGIC, { send_bad_hello(&d, 0, 0xff); });
	EXPECT("unknown version", MFD_EVERSION, {
		struct mfd__hello h = hello(0);
		h.version = 7;
		h.min_version = 7;
		fake_send_hello(d.p.src_fd[0], &h);
	});
	EXPECT("hello checksum", MFD_ECHECKSUM, { send_bad_hello(&d, 30, 1); });
	EXPECT("wrong session id", MFD_ESESSION, {
		struct mfd__hello h = hello(0);
		fake_send_hello(d.p.src_fd[0], &h);
		h = hello(1);
		h.session[5] ^= 0x40;
		fake_send_hello(d.p.src_fd[1], &h);
	});
	EXPECT("channel id >= count", MFD_ECHANID, {
		struct mfd__hello h = hello(NCH);
		fake_send_hello(d.p.src_fd[0], &h);
	});
	EXPECT("duplicate channel", MFD_EDUPCHAN, {
		struct mfd__hello h = hello(1);
		fake_send_hello(d.p.src_fd[0], &h);
		fake_send_hello(d.p.src_fd[1], &h);
	});
	EXPECT("channel count differs", MFD_ECHANCOUNT, {
		struct mfd__hello h = hello(0);
		fake_send_hello(d.p.src_fd[0], &h);
		h = hello(1);
		h.channel_count = NCH + 1;
		fake_send_hello(d.p.src_fd[1], &h);
	});
	EXPECT("page size", MFD_EPAGESIZE, {
		struct mfd__hello h = hello(0);
		h.page_size = 8192;
		fake_send_hello(d.p.src_fd[0], &h);
	});
	EXPECT("batch bound in hello", MFD_EPAGES, {
		struct mfd__hello h = hello(0);
		h.batch_pages = MFD_MAX_BATCH_PAGES + 1;
		fake_send_hello(d.p.src_fd[0], &h);
	});
	EXPECT("unknown feature", MFD_EFEATURE, {
		struct mfd__hello h = hello(0);
		h.features = 1ull << 40;
		fake_send_hello(d.p.src_fd[0], &h);
	});
	EXPECT("unknown codec", MFD_EFEATURE, {
		struct mfd__hello h = hello(0);
		h.codec = 7;	/* the codec table has only none (0) */
		fake_send_hello(d.p.src_fd[0], &h);
	});
	EXPECT("codec differs between channels", MFD_EFEATURE, {
		struct mfd__hello h = hello(0);
		fake_send_hello(d.p.src_fd[0], &h);
		h = hello(1);
		h.codec = 7;
		fake_send_hello(d.p.src_fd[1], &h);
	});
	EXPECT("truncated hello", MFD_ETRUNC, {
		uint8_t b[MFD_HELLO_LEN];
		struct mfd__hello h = hello(0);
		mfd__hello_encode(b, &h);
		send_raw(d.p.src_fd[0], b, 40);
		shutdown(d.p.src_fd[0], SHUT_WR);
	});

	/* ---- block table ---- */
	EXPECT("block table mismatch", MFD_EBLOCKTABLE, { send_table(&d, "c"); });

	/* ---- RAM packets ---- */
	offs[0] = 0;
	EXPECT("unknown block", MFD_EBLOCK, { setup(&d); send_ram(&d, 1, 2, 1, 0, offs, 4096); });
	offs[0] = LEN_A;
	EXPECT("offset out of range", MFD_ERANGE, { setup(&d); send_ram(&d, 1, 0, 1, 0, offs, 4096); });
	offs[0] = LEN_B;	/* in range of block a, not of block b */
	EXPECT("offset out of range (small block)", MFD_ERANGE,
	       { setup(&d); send_ram(&d, 2, 1, 0, 1, offs, 0); });
	offs[0] = UINT64_MAX & ~4095ull;
	EXPECT("offset near 2^64", MFD_ERANGE, { setup(&d); send_ram(&d, 1, 0, 0, 1, offs, 0); });
	offs[0] = 4095;
	EXPECT("unaligned offset", MFD_EALIGN, { setup(&d); send_ram(&d, 1, 0, 1, 0, offs, 4096); });
	for (int i = 0; i < 64; i++)
		offs[i] = (uint64_t)i * 4096;
	EXPECT("page count over the bound", MFD_EPAGES,
	       { setup(&d); send_ram(&d, 1, 0, BATCH + 1, 0, offs, (BATCH + 1) * 4096); });
	EXPECT("page counts wrapping", MFD_EPAGES,
	       { setup(&d); send_ram(&d, 1, 0, 0xffffffffu, 2, offs, 0); });
	EXPECT("empty RAM packet", MFD_EPAGES, { setup(&d); send_ram(&d, 1, 0, 0, 0, offs, 0); });
	EXPECT("data length mismatch", MFD_ELENGTH,
	       { setup(&d); send_ram(&d, 1, 0, 2, 0, offs, 4096); });
	EXPECT("meta length mismatch", MFD_ELENGTH, {
		setup(&d);
		uint8_t meta[16 + 16];
		mfd__put32(meta, 0);
		mfd__put32(meta + 4, 3);	/* says 3 pages, carries 2 offsets */
		mfd__put32(meta + 8, 0);
		mfd__put32(meta + 12, 0);
		mfd__put64(meta + 16, 0);
		mfd__put64(meta + 24, 4096);
		static uint8_t data[3 * 4096];
		send_pkt(&d, 1, MFD_PKT_RAM, meta, sizeof(meta), data, sizeof(data));
	});
	EXPECT("header checksum", MFD_ECHECKSUM, {
		setup(&d);
		uint8_t hdr[MFD_PKT_HDR_LEN];
		struct mfd__pkt_hdr h = { .type = MFD_PKT_EOS, .seq = 0, .meta_len = 8 };
		uint8_t meta[8] = { 0 };
		mfd__pkt_hdr_encode(hdr, &h, meta);
		meta[0] = 1;	/* meta changed after the checksum */
		send_raw(d.p.src_fd[1], hdr, sizeof(hdr));
		send_raw(d.p.src_fd[1], meta, 8);
	});
	EXPECT("packet magic", MFD_EMAGIC, {
		setup(&d);
		uint8_t junk[MFD_PKT_HDR_LEN];
		memset(junk, 0x41, sizeof(junk));
		send_raw(d.p.src_fd[2], junk, sizeof(junk));
	});
	EXPECT("unknown packet type", MFD_ETYPE, {
		setup(&d);
		send_pkt(&d, 1, 99, NULL, 0, NULL, 0);
	});
	EXPECT("main-channel packet on a data channel", MFD_ETYPE, {
		setup(&d);
		uint8_t meta[MFD_END_REC_LEN] = { 0 };
		send_pkt(&d, 1, MFD_PKT_END, meta, sizeof(meta), NULL, 0);
	});
	EXPECT("sequence gap", MFD_ESEQ, {
		setup(&d);
		offs[0] = 0;
		seqs[1] = 5;
		send_ram(&d, 1, 0, 0, 1, offs, 0);
	});
	EXPECT("meta over the hard bound", MFD_ELENGTH, {
		setup(&d);
		uint8_t hdr[MFD_PKT_HDR_LEN];
		struct mfd__pkt_hdr h = { .type = MFD_PKT_RAM, .meta_len = MFD_PROTO_MAX_META + 1 };
		static uint8_t big[MFD_PROTO_MAX_META + 1];
		mfd__pkt_hdr_encode(hdr, &h, big);
		send_raw(d.p.src_fd[1], hdr, sizeof(hdr));
	});
	EXPECT("truncated header", MFD_ETRUNC, {
		setup(&d);
		uint8_t hdr[MFD_PKT_HDR_LEN];
		struct mfd__pkt_hdr h = { .type = MFD_PKT_EOS, .meta_len = 8 };
		mfd__pkt_hdr_encode(hdr, &h, "\0\0\0\0\0\0\0\0");
		send_raw(d.p.src_fd[1], hdr, 20);
		shutdown(d.p.src_fd[1], SHUT_WR);
	});
	EXPECT("truncated page data", MFD_ETRUNC, {
		setup(&d);
		offs[0] = 0;
		offs[1] = 4096;
		uint8_t meta[16 + 16];
		mfd__put32(meta, 0);
		mfd__put32(meta + 4, 2);
		mfd__put32(meta + 8, 0);
		mfd__put32(meta + 12, 0);
		mfd__put64(meta + 16, 0);
		mfd__put64(meta + 24, 4096);
		uint8_t hdr[MFD_PKT_HDR_LEN];
		struct mfd__pkt_hdr h = { .type = MFD_PKT_RAM, .seq = 0, .meta_len = 32,
					  .data_len = 8192 };
		mfd__pkt_hdr_encode(hdr, &h, meta);
		static uint8_t data[5000];
		send_raw(d.p.src_fd[1], hdr, sizeof(hdr));
		send_raw(d.p.src_fd[1], meta, sizeof(meta));
		send_raw(d.p.src_fd[1], data, sizeof(data));
		shutdown(d.p.src_fd[1], SHUT_WR);
	});
	EXPECT("end-of-stream count", MFD_ECOUNT, {
		setup(&d);
		uint8_t meta[8];
		mfd__put64(meta, 3);	/* claims 3 packets before it; there were none */
		send_pkt(&d, 1, MFD_PKT_EOS, meta, 8, NULL, 0);
	});
	EXPECT("END totals", MFD_ECOUNT, {
		setup(&d);
		offs[0] = 0;
		send_ram(&d, 1, 0, 1, 0, offs, 4096);
		send_end(&d, 2, 0);
	});
	EXPECT("source reports an error", MFD_ECANCELED, {
		setup(&d);
		uint8_t meta[300];
		uint32_t n = mfd__errrec_encode(meta, MFD_ECANCELED, "operator\x01 said stop");
		send_pkt(&d, 0, MFD_PKT_ERROR, meta, n, NULL, 0);
	});
	/* A vanished peer reads as end of stream, or as a reset when it left our replies unread. */
	EXPECT("source vanishes mid-stream", rc_or(MFD_ECLOSED, -ECONNRESET), {
		setup(&d);
		uint8_t acks[MFD_ACCEPT_LEN + MFD_PKT_HDR_LEN + MFD_STATUS_REC_LEN];
		CHECK_CODE(mfd__io_read_fd(d.p.src_fd[0], acks, sizeof(acks)), 0);	/* table accepted */
		offs[0] = 0;
		send_ram(&d, 1, 0, 1, 0, offs, 4096);
		for (int i = 0; i < NCH; i++) {
			close(d.p.src_fd[i]);
			d.p.src_fd[i] = -1;
		}
	});

	/* A source that stays connected but says nothing: the main channel's silence times out. */
	EXPECT("silent source", -ETIMEDOUT, { setup(&d); });
	CHECK(strstr(last_msg, "source silent") != NULL);

	/* A complete, valid hand-made stream is accepted (so the cases above fail for their reason). */
	EXPECT("valid stream", 0, {
		setup(&d);
		for (int i = 0; i < 3; i++)
			offs[i] = (uint64_t)i * 4096;
		send_ram(&d, 1, 0, 2, 1, offs, 2 * 4096);
		offs[0] = LEN_B - 4096;
		send_ram(&d, 2, 1, 1, 0, offs, 4096);
		send_end(&d, 3, 1);
		/* Wait for COMMIT before closing our ends. */
		uint8_t buf[MFD_ACCEPT_LEN + 2 * (MFD_PKT_HDR_LEN + MFD_STATUS_REC_LEN)];
		CHECK_CODE(mfd__io_read_fd(d.p.src_fd[0], buf, sizeof(buf)), 0);
		CHECK_EQ(buf[MFD_ACCEPT_LEN + MFD_PKT_HDR_LEN + MFD_STATUS_REC_LEN + 4], MFD_PKT_COMMIT);
	});
	return t_done("t_reject");
}
