/* tools/gen_corpus — writes the seed corpora of the fuzz targets (fuzz/corpus/{hello,packet,stream})
 * with the library's own encoders, so the seeds are exactly what a real peer sends.
 *
 * Not part of the default build.  Build and run from the top of the tree after `make lib`:
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc tools/gen_corpus.c build/libmultifd.a -pthread \
 *     -o /tmp/gen_corpus && /tmp/gen_corpus fuzz/corpus
 * Output is deterministic (fixed session id, fixed page contents).  Input formats: fuzz/README.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/util.h"
#include "proto/proto.h"

static const char *outdir;
static unsigned nfiles;

static void die(const char *what)
{
	fprintf(stderr, "gen_corpus: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_file(const char *sub, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", outdir, sub);
	if (mkdir(path, 0755) && errno != EEXIST)
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
	FILE *f = fopen(path, "wb");
	if (!f)
		die(path);
	if (n && fwrite(p, 1, n, f) != n)
		die(path);
	if (fclose(f))
		die(path);
	nfiles++;
}

/* ---- a growable byte buffer ------------------------------------------------------------ */
struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 1024;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			die("realloc");
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void put_u8(struct buf *b, uint8_t v) { put(b, &v, 1); }

static const uint8_t SESSION[MFD_UUID_LEN] = { 0x6d, 0x75, 0x6c, 0x74, 0x69, 0x66, 0x64, 0x2d,
					       0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x30, 0x30, 0x31 };

static struct mfd__hello base_hello(uint16_t id, uint16_t count)
{
	struct mfd__hello h = {
		.version = MFD_PROTO_VERSION,
		.min_version = MFD_PROTO_MIN_VERSION,
		.channel_id = id,
		.channel_count = count,
		.page_size = 4096,
		.features = 0,
		.codec = 0,
		.batch_pages = 512,
	};
	memcpy(h.session, SESSION, MFD_UUID_LEN);
	return h;
}

/* A packet (header + meta) into b. */
static void packet(struct buf *b, uint8_t type, uint64_t seq, const void *meta, uint32_t meta_len,
		   uint32_t data_len)
{
	uint8_t hdr[MFD_PKT_HDR_LEN];
	struct mfd__pkt_hdr h = { .type = type, .seq = seq, .meta_len = meta_len,
				  .data_len = data_len };
	mfd__pkt_hdr_encode(hdr, &h, meta);
	put(b, hdr, sizeof(hdr));
	if (meta_len)
		put(b, meta, meta_len);
}

/* ---- hello corpus ------------------------------------------------------------------------ */
static void gen_hello(void)
{
	uint8_t b[MFD_HELLO_LEN], a[MFD_ACCEPT_LEN];
	struct mfd__hello h = base_hello(0, 2);
	mfd__hello_encode(b, &h);
	write_file("hello", "hello-main", b, sizeof(b));

	h = base_hello(4, 5);
	h.page_size = 65536;
	h.batch_pages = 1024;
	h.features = MFD_FEAT_VERIFY;
	mfd__hello_encode(b, &h);
	write_file("hello", "hello-data-verify-64k", b, sizeof(b));

	h = base_hello(64, 65);	/* the largest channel id */
	mfd__hello_encode(b, &h);
	write_file("hello", "hello-max-channels", b, sizeof(b));

	h = base_hello(2, 2);	/* id == count: the off-by-one QEMU had */
	mfd__hello_encode(b, &h);
	write_file("hello", "bad-hello-chanid-eq-count", b, sizeof(b));

	h = base_hello(0, 2);
	h.version = 3;
	h.min_version = 2;
	mfd__hello_encode(b, &h);
	write_file("hello", "bad-hello-version-2-3", b, sizeof(b));

	h = base_hello(0, 2);
	h.version = 5;	/* speaks 1..5: acceptable */
	mfd__hello_encode(b, &h);
	write_file("hello", "hello-version-1-5", b, sizeof(b));

	h = base_hello(0, 2);
	mfd__hello_encode(b, &h);
	b[50] = 1;	/* reserved byte, checksum fixed */
	mfd__put32(b + 60, mfd__crc32c(0, b, 60));
	write_file("hello", "bad-hello-reserved", b, sizeof(b));

	h = base_hello(0, 2);
	mfd__hello_encode(b, &h);
	b[61] ^= 0x40;
	write_file("hello", "bad-hello-checksum", b, sizeof(b));

	b[0] = 'X';
	write_file("hello", "bad-hello-magic", b, sizeof(b));

	h = base_hello(0, 2);
	mfd__hello_encode(b, &h);
	write_file("hello", "bad-hello-truncated", b, 63);

	struct mfd__accept ac = { .version = MFD_PROTO_VERSION, .status = 0, .features = 0 };
	mfd__accept_encode(a, &ac);
	write_file("hello", "accept-ok", a, sizeof(a));
	ac.features = MFD_FEAT_VERIFY;
	mfd__accept_encode(a, &ac);
	write_file("hello", "accept-ok-verify", a, sizeof(a));
	ac = (struct mfd__accept){ .version = MFD_PROTO_VERSION, .status = MFD_EPAGESIZE };
	mfd__accept_encode(a, &ac);
	write_file("hello", "accept-refused-pagesize", a, sizeof(a));
	ac.status = -ECONNREFUSED;
	mfd__accept_encode(a, &ac);
	write_file("hello", "accept-refused-errno", a, sizeof(a));
	ac.status = 7;
	mfd__accept_encode(a, &ac);
	write_file("hello", "bad-accept-status-positive", a, sizeof(a));
}

/* ---- packet corpus ------------------------------------------------------------------------ */
static void sel_file(const char *name, uint8_t sel, const void *p, size_t n)
{
	struct buf b = { 0 };
	put_u8(&b, sel);
	put(&b, p, n);
	write_file("packet", name, b.p, b.len);
	free(b.p);
}

static uint32_t ram_meta(uint8_t *m, uint32_t block, const uint64_t *normal, uint32_t nn,
			 const uint64_t *zero, uint32_t nz)
{
	static struct mfd__ram_batch bt;
	bt.block_id = block;
	bt.normal = nn;
	bt.zero = nz;
	for (uint32_t i = 0; i < nn; i++)
		bt.offsets[i] = normal[i];
	for (uint32_t i = 0; i < nz; i++)
		bt.offsets[nn + i] = zero[i];
	return mfd__ram_meta_encode(m, &bt);
}

static void gen_packet(void)
{
	static uint8_t m[MFD_PROTO_MAX_META];
	struct buf b = { 0 };
	uint32_t n;

	/* selector 0: whole packets as a receiver reads them */
	uint64_t nrm[] = { 0, 4096 }, zr[] = { 8192, 61440 };
	n = ram_meta(m, 1, nrm, 2, zr, 2);
	packet(&b, MFD_PKT_RAM, 5, m, n, 2 * 4096);
	sel_file("pkt-ram", 0, b.p, b.len);
	b.len = 0;

	struct mfd__block_desc d[3] = {
		{ .name = "ram0", .length = 4096, .page_size = 4096 },
		{ .name = "pc.ram", .length = 64 * 1024, .page_size = 4096 },
		{ .name = "vga.vram", .length = (1ull << 30) + 4096, .page_size = 4096 },
	};
	n = mfd__blocks_encode(m, d, 3);
	packet(&b, MFD_PKT_BLOCKS, 0, m, n, 0);
	sel_file("pkt-blocks", 0, b.p, b.len);
	b.len = 0;

	struct mfd__status_rec st = { .status = 0 };
	mfd__status_encode(m, &st);
	packet(&b, MFD_PKT_BLOCKS_ACK, 0, m, MFD_STATUS_REC_LEN, 0);
	sel_file("pkt-blocks-ack", 0, b.p, b.len);
	b.len = 0;

	st = (struct mfd__status_rec){ .status = 0, .digest = 0x0123456789abcdefull };
	mfd__status_encode(m, &st);
	packet(&b, MFD_PKT_COMMIT, 2, m, MFD_STATUS_REC_LEN, 0);
	sel_file("pkt-commit", 0, b.p, b.len);
	b.len = 0;

	struct mfd__end_rec end = { .normal_pages = 1000, .zero_pages = 24, .digest = 42,
				    .flags = MFD_FEAT_VERIFY };
	mfd__end_encode(m, &end);
	packet(&b, MFD_PKT_END, 1, m, MFD_END_REC_LEN, 0);
	sel_file("pkt-end", 0, b.p, b.len);
	b.len = 0;

	n = mfd__errrec_encode(m, MFD_EBLOCKTABLE, "no block 'ram9' here");
	packet(&b, MFD_PKT_ERROR, 1, m, n, 0);
	sel_file("pkt-error", 0, b.p, b.len);
	b.len = 0;

	mfd__put64(m, 7);
	packet(&b, MFD_PKT_EOS, 7, m, MFD_EOS_REC_LEN, 0);
	sel_file("pkt-eos", 0, b.p, b.len);
	b.len = 0;

	packet(&b, MFD_PKT_SYNC, 3, NULL, 0, 0);
	sel_file("pkt-sync", 0, b.p, b.len);
	b.len = 0;

	packet(&b, MFD_PKT_END, 1, m, 0, 0);
	b.p[4] = 9;	/* unknown type; checksum left stale on purpose (type is checked first) */
	sel_file("bad-pkt-type", 0, b.p, b.len);
	b.len = 0;

	mfd__end_encode(m, &end);
	packet(&b, MFD_PKT_END, 1, m, MFD_END_REC_LEN, 0);
	b.p[40] ^= 1;	/* meta byte changed after the checksum */
	sel_file("bad-pkt-checksum", 0, b.p, b.len);
	b.len = 0;

	packet(&b, MFD_PKT_BLOCKS, 0, NULL, 0, 4096);	/* data on a non-RAM packet */
	sel_file("bad-pkt-data-on-blocks", 0, b.p, b.len);
	b.len = 0;

	packet(&b, MFD_PKT_BLOCKS, 0, NULL, 0, 0);
	mfd__put32(b.p + 16, MFD_PROTO_MAX_META + 1);
	sel_file("bad-pkt-meta-too-long", 0, b.p, b.len);
	b.len = 0;

	struct mfd__device_id dev = { .name = "cpu", .instance = 3, .version = 7 };
	n = mfd__device_meta_encode(m, &dev);
	packet(&b, MFD_PKT_DEVICE, 4, m, n, 1000);
	sel_file("pkt-device", 0, b.p, b.len);
	b.len = 0;

	/* selectors 1 and 2: RAM meta with data_len in front */
	uint8_t dl[4];
	uint64_t last_a[] = { 1ull << 30 }, zero_a[] = { 0, 4096, 8192 };
	n = ram_meta(m, 2, last_a, 1, zero_a, 3);
	mfd__put32(dl, 4096);
	put(&b, dl, 4);
	put(&b, m, n);
	sel_file("ram-a-last-page", 1, b.p, b.len);
	b.len = 0;

	uint64_t many[512];
	for (int i = 0; i < 512; i++)
		many[i] = (uint64_t)i * 4096;
	n = ram_meta(m, 2, NULL, 0, many, 512);
	mfd__put32(dl, 0);
	put(&b, dl, 4);
	put(&b, m, n);
	sel_file("ram-a-512-zero", 1, b.p, b.len);
	b.len = 0;

	uint64_t past[] = { 64 * 1024 };
	n = ram_meta(m, 1, past, 1, NULL, 0);
	mfd__put32(dl, 4096);
	put(&b, dl, 4);
	put(&b, m, n);
	sel_file("bad-ram-a-offset-eq-len", 1, b.p, b.len);
	b.len = 0;

	uint64_t unal[] = { 4096 + 512 };
	n = ram_meta(m, 1, unal, 1, NULL, 0);
	mfd__put32(dl, 4096);
	put(&b, dl, 4);
	put(&b, m, n);
	sel_file("bad-ram-a-unaligned", 1, b.p, b.len);
	b.len = 0;

	n = ram_meta(m, 0, NULL, 0, many, 1);
	mfd__put32(m + 4, 0xffffffffu);	/* normal count that would wrap a naive sum */
	mfd__put32(dl, 0);
	put(&b, dl, 4);
	put(&b, m, n);
	sel_file("bad-ram-a-count-wrap", 1, b.p, b.len);
	b.len = 0;

	uint64_t top_b[] = { 0xFFFFFFFFFFFE0000ull, 65536 * 3 };
	n = ram_meta(m, 2, top_b, 1, top_b + 1, 1);
	mfd__put32(dl, 65536);
	put(&b, dl, 4);
	put(&b, m, n);
	sel_file("ram-b-top-of-u64", 2, b.p, b.len);
	b.len = 0;

	uint64_t over_b[] = { 0xFFFFFFFFFFFF0000ull };
	n = ram_meta(m, 2, over_b, 1, NULL, 0);
	mfd__put32(dl, 65536);
	put(&b, dl, 4);
	put(&b, m, n);
	sel_file("bad-ram-b-offset-eq-len", 2, b.p, b.len);
	b.len = 0;

	/* selector 3: block tables */
	n = mfd__blocks_encode(m, d, 3);
	sel_file("blocks-3", 3, m, n);
	static struct mfd__block_desc many_d[MFD_MAX_BLOCKS];
	for (int i = 0; i < MFD_MAX_BLOCKS; i++) {
		snprintf(many_d[i].name, sizeof(many_d[i].name), "b%d", i);
		many_d[i].length = 65536;
		many_d[i].page_size = 65536;
	}
	memset(many_d[255].name, 'n', MFD_MAX_NAME);	/* longest name */
	many_d[255].name[MFD_MAX_NAME] = '\0';
	n = mfd__blocks_encode(m, many_d, MFD_MAX_BLOCKS);
	sel_file("blocks-256", 3, m, n);
	struct mfd__block_desc dup[2] = { d[1], d[1] };
	n = mfd__blocks_encode(m, dup, 2);
	sel_file("bad-blocks-duplicate", 3, m, n);
	n = mfd__blocks_encode(m, d, 3);
	m[n] = 0;
	sel_file("bad-blocks-trailing", 3, m, n + 1);
	n = mfd__blocks_encode(m, d, 1);
	m[10 + 1] = 0;	/* NUL inside "ram0" */
	sel_file("bad-blocks-nul-name", 3, m, n);

	/* selectors 4..7: status, END, ERROR */
	st = (struct mfd__status_rec){ .status = MFD_EVERIFY, .flags = 0, .digest = 99 };
	mfd__status_encode(m, &st);
	sel_file("status-verify-failed", 4, m, MFD_STATUS_REC_LEN);
	mfd__end_encode(m, &end);
	sel_file("end", 5, m, MFD_END_REC_LEN);
	m[28] = 3;	/* rounds */
	sel_file("end-3-rounds", 5, m, MFD_END_REC_LEN);
	m[24] = 2;	/* an unknown flag */
	sel_file("bad-end-flags", 5, m, MFD_END_REC_LEN);
	n = mfd__errrec_encode(m, -5, "disk \x01\x7f\xff failed\n");
	sel_file("error-unprintable", 6, m, n);
	char longmsg[MFD_ERROR_MSG_MAX];
	memset(longmsg, 'e', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	n = mfd__errrec_encode(m, MFD_ECANCELED, longmsg);
	sel_file("error-255", 7, m, n);
	/* selector 8: DEVICE meta */
	n = mfd__device_meta_encode(m, &dev);
	sel_file("device", 8, m, n);
	memset(dev.name, 'd', MFD_MAX_NAME);
	dev.name[MFD_MAX_NAME] = '\0';
	n = mfd__device_meta_encode(m, &dev);
	sel_file("device-longest-name", 8, m, n);
	n = mfd__device_meta_encode(m, &dev);
	sel_file("bad-device-trailing", 8, m, n + 1);
	free(b.p);
}

/* ---- stream corpus ------------------------------------------------------------------------ */
/* fuzz_stream's destination: blocks "ram0" (64 KiB) and "ram1" (256 KiB) of 4 KiB pages, device
 * "cpu" instance 0 loading versions up to 2, three sockets A, B, C. */
#define PAGE 4096u
#define NBLK 2
#define FIX 4			/* record selector bit: fix up the checksum */
static const char *const blk_name[NBLK] = { "ram0", "ram1" };
static const uint64_t blk_len[NBLK] = { 64 * 1024, 256 * 1024 };
static uint8_t src0[64 * 1024], src1[256 * 1024];
static uint8_t *const blk_mem[NBLK] = { src0, src1 };

/* Record: u8 sel (bits 0-1 socket, bit 2 fix checksum), u16 length, bytes. */
static void record(struct buf *out, uint8_t sel, const void *p, size_t n)
{
	if (n > 0xffff) {
		fprintf(stderr, "gen_corpus: record of %zu bytes\n", n);
		exit(1);
	}
	uint8_t h[3] = { sel, (uint8_t)n, (uint8_t)(n >> 8) };
	put(out, h, 3);
	put(out, p, n);
}

enum fault {
	F_NONE,
	F_HELLO_MAGIC,		/* main hello has a bad magic */
	F_TRUNCATED,		/* source stops after the block table */
	F_SEQ,			/* a RAM packet has seq + 1 */
	F_EOS_COUNT,		/* EOS claims one packet more */
	F_END_TOTALS,		/* END claims one zero page more */
	F_ERROR_RECORD,		/* source sends ERROR instead of END */
	F_BLOCK_NAME,		/* block table names "ramX" */
	F_DIGEST,		/* verify: wrong digest in END */
	F_OFFSET_RANGE,		/* RAM offset == block length */
	F_CHAN_COUNT,		/* hellos announce one channel more than there are sockets */
	F_DUP_CHAN,		/* two sockets say channel 0 */
	F_SESSION,		/* the last data channel has another session id */
	F_PAGE_SIZE,		/* hellos say 64 KiB pages */
	F_CHECKSUM,		/* a RAM packet with a bad checksum (not fixed up) */
	F_RAM_ON_MAIN,		/* a RAM packet (with data) on the main channel instead of END */
	F_EOS_EARLY,		/* EOS before the last RAM packet; END totals count everything */
	F_ROUND_RAM,		/* a round-0 RAM packet says round 1 */
	F_SYNC_META,		/* a SYNC carries 8 bytes of meta */
	F_END_ROUNDS,		/* END says one round more than the SYNCs sent */
	F_SYNC_ONE_CHANNEL,	/* only data channel 1 sends the SYNC markers */
	F_DEV_UNKNOWN,		/* state for device "gpu" */
	F_DEV_VERSION,		/* state of version 3 (destination loads up to 2) */
	F_DEV_TWICE,		/* the state arrives twice */
	F_DEV_MISSING,		/* no device state */
	F_DEV_TOO_BIG,		/* data_len over the destination's 1 MiB bound */
	F_DEV_REFUSED,		/* the load callback refuses it */
	F_DEV_TRUNCATED,	/* the stream ends inside the state */
	F_BLOCK_COUNT,		/* the block table lists one block */
	F_TYPE_ON_DATA,		/* a BLOCKS_ACK packet on a data channel */
	F_DATA_TRUNCATED,	/* a data channel ends inside a RAM packet's page data */
};

struct mig {
	const char *name;
	enum fault fault;
	unsigned ndata;		/* data channels (1 or 2) */
	bool verify;
	bool reversed;		/* block table lists ram1 first */
	int main_sock;		/* socket carrying channel 0; data channels take the next ones */
	uint32_t batch;		/* batch_pages in the hello and the packets */
	bool resend;		/* after the pass, resend some pages as zero pages */
	unsigned rounds;	/* live: SYNC-terminated rounds before the final one */
};

/* Normal pages: ram0 page 1, ram1 pages 0 and 63; everything else is zero.  lean (for the
 * invalid seeds, to keep the corpus small): only ram1 page 0. */
static void fill_source(bool lean)
{
	memset(src0, 0, sizeof(src0));
	memset(src1, 0, sizeof(src1));
	for (uint32_t i = 0; i < PAGE; i++) {
		src1[0 * PAGE + i] = (uint8_t)(i ^ 0x5a);
		if (lean)
			continue;
		src0[1 * PAGE + i] = (uint8_t)(i * 7 + 1);
		src1[63 * PAGE + i] = (uint8_t)(255 - i % 251);
	}
}

/* Per data channel: its socket and next sequence number. */
struct dchan {
	uint8_t sock;
	uint64_t seq;
};

/* One RAM packet of `block` (position `tag` in the source's table) listing normal pages, then
 * zero pages, with the normal pages' data. */
static void ram_packet(struct buf *out, uint8_t sel, uint64_t seq, uint32_t round, uint32_t tag,
		       uint32_t block, const uint64_t *pages, uint32_t n, bool force_zero,
		       uint64_t *nnorm, uint64_t *nzero, enum fault fault)
{
	static struct mfd__ram_batch bt;
	static uint8_t meta[MFD_PROTO_MAX_META];
	struct buf pk = { 0 };
	bt.block_id = tag;
	bt.normal = bt.zero = 0;
	uint64_t zeros[MFD_MAX_BATCH_PAGES];
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = pages[i] * PAGE;
		if (force_zero || mfd__is_zero(blk_mem[block] + off, PAGE))
			zeros[bt.zero++] = off;
		else
			bt.offsets[bt.normal++] = off;
	}
	memcpy(&bt.offsets[bt.normal], zeros, bt.zero * sizeof(zeros[0]));
	if (fault == F_OFFSET_RANGE)
		bt.offsets[bt.normal + bt.zero - 1] = blk_len[block];
	uint32_t ml = mfd__ram_meta_encode(meta, &bt);
	uint8_t hdr[MFD_PKT_HDR_LEN];
	struct mfd__pkt_hdr h = { .type = MFD_PKT_RAM, .seq = seq, .meta_len = ml,
				  .data_len = bt.normal * PAGE, .round = round };
	mfd__pkt_hdr_encode(hdr, &h, meta);
	put(&pk, hdr, sizeof(hdr));
	put(&pk, meta, ml);
	for (uint32_t i = 0; i < bt.normal; i++)
		put(&pk, blk_mem[block] + bt.offsets[i], PAGE);
	if (fault == F_CHECKSUM) {
		pk.p[28] ^= 0xff;
		sel &= (uint8_t)~FIX;
	}
	if (fault == F_DATA_TRUNCATED && bt.normal)
		pk.len -= PAGE / 2;	/* the channel's stream ends inside the page data */
	record(out, sel, pk.p, pk.len);
	*nnorm += bt.normal;
	*nzero += bt.zero;
	free(pk.p);
}

static void small_packet(struct buf *out, uint8_t sel, uint8_t type, uint64_t seq, uint32_t round,
			 const void *meta, uint32_t ml)
{
	struct buf pk = { 0 };
	uint8_t hdr[MFD_PKT_HDR_LEN];
	struct mfd__pkt_hdr h = { .type = type, .seq = seq, .meta_len = ml, .round = round };
	mfd__pkt_hdr_encode(hdr, &h, meta);
	put(&pk, hdr, sizeof(hdr));
	if (ml)
		put(&pk, meta, ml);
	record(out, sel, pk.p, pk.len);
	free(pk.p);
}

static void device_packet(struct buf *out, uint8_t sel, uint64_t seq, const char *name,
			  uint32_t version, const uint8_t *state, uint32_t len, uint32_t data_len)
{
	uint8_t meta[MFD_MAX_NAME + 10], hdr[MFD_PKT_HDR_LEN];
	struct mfd__device_id id = { .instance = 0, .version = version };
	snprintf(id.name, sizeof(id.name), "%s", name);
	uint32_t ml = mfd__device_meta_encode(meta, &id);
	struct mfd__pkt_hdr h = { .type = MFD_PKT_DEVICE, .seq = seq, .meta_len = ml,
				  .data_len = data_len };
	mfd__pkt_hdr_encode(hdr, &h, meta);
	struct buf pk = { 0 };
	put(&pk, hdr, sizeof(hdr));
	put(&pk, meta, ml);
	put(&pk, state, len);
	record(out, sel, pk.p, pk.len);
	free(pk.p);
}

/* Pages of one block that a live round re-sends: a fixed, round-dependent choice. */
static uint32_t dirty_pages(uint32_t blk, unsigned round, uint64_t *pages)
{
	uint32_t n = 0;
	uint64_t np = blk_len[blk] / PAGE;
	for (uint64_t p = round % 3; p < np; p += 5 + round)
		pages[n++] = p;
	return n;
}

static void gen_migration(const struct mig *g)
{
	struct buf out = { 0 };
	uint8_t b[MFD_HELLO_LEN];
	static uint8_t meta[MFD_PROTO_MAX_META];
	const uint8_t ms = (uint8_t)(g->main_sock | FIX);
	struct dchan dc[2];
	uint16_t count = (uint16_t)(1 + g->ndata + (g->fault == F_CHAN_COUNT ? 1 : 0));
	uint64_t mseq = 0, nnorm = 0, nzero = 0;
	unsigned next = 0;	/* data channel for the next RAM packet (round robin) */

	fill_source(g->fault != F_NONE);
	/* Data channels on the other sockets, in order (the destination reads A, B, C in turn, so
	 * with one data channel socket C stays unused). */
	for (unsigned i = 0, sock = 0; i < g->ndata; sock++) {
		if (sock == (unsigned)g->main_sock)
			continue;
		dc[i].sock = (uint8_t)(sock | FIX);
		dc[i].seq = 0;
		i++;
	}

	/* Hellos, main first (the destination takes the sockets in order A, B, C anyway). */
	struct mfd__hello h = base_hello(0, count);
	h.batch_pages = g->batch;
	h.features = g->verify ? MFD_FEAT_VERIFY : 0;
	if (g->fault == F_PAGE_SIZE)
		h.page_size = 65536;
	mfd__hello_encode(b, &h);
	if (g->fault == F_HELLO_MAGIC)
		b[1] ^= 0x20;
	record(&out, ms, b, sizeof(b));
	for (unsigned i = 0; i < g->ndata; i++) {
		h.channel_id = (uint16_t)(g->fault == F_DUP_CHAN && i == g->ndata - 1 ? 0 : 1 + i);
		if (g->fault == F_SESSION && i == g->ndata - 1)
			h.session[15] ^= 1;
		mfd__hello_encode(b, &h);
		record(&out, dc[i].sock, b, sizeof(b));
	}

	/* Block table, in the source's order. */
	uint32_t order[NBLK] = { 0, 1 };
	if (g->reversed) {
		order[0] = 1;
		order[1] = 0;
	}
	struct mfd__block_desc d[NBLK];
	memset(d, 0, sizeof(d));
	for (uint32_t k = 0; k < NBLK; k++) {
		snprintf(d[k].name, sizeof(d[k].name), "%s", blk_name[order[k]]);
		d[k].length = blk_len[order[k]];
		d[k].page_size = PAGE;
	}
	if (g->fault == F_BLOCK_NAME)
		d[1].name[3] = 'X';
	uint32_t n = mfd__blocks_encode(meta, d, g->fault == F_BLOCK_COUNT ? 1 : NBLK);
	small_packet(&out, ms, MFD_PKT_BLOCKS, mseq++, 0, meta, n);
	if (g->fault == F_TRUNCATED)
		goto done;

	/* Round 0: every page of every block, in batches, round robin over the data channels. */
	uint32_t total_pkts = 0;
	for (uint32_t k = 0; k < NBLK; k++)
		total_pkts += (uint32_t)((blk_len[order[k]] / PAGE + g->batch - 1) / g->batch);
	uint32_t pkt_no = 0;
	bool eos_sent = false;
	struct dchan *dtrunc = NULL;	/* F_DATA_TRUNCATED: the channel that ends early */
	for (uint32_t k = 0; k < NBLK; k++) {
		uint32_t blk = order[k];
		uint64_t np = blk_len[blk] / PAGE;
		for (uint64_t first = 0; first < np; first += g->batch) {
			uint64_t pages[MFD_MAX_BATCH_PAGES];
			uint32_t cnt = (uint32_t)MFD_MIN(g->batch, np - first);
			for (uint32_t i = 0; i < cnt; i++)
				pages[i] = first + i;
			struct dchan *c = &dc[next];
			next = (next + 1) % g->ndata;
			if (g->fault == F_EOS_EARLY && pkt_no == total_pkts - 1) {
				mfd__put64(meta, c->seq);
				small_packet(&out, c->sock, MFD_PKT_EOS, c->seq, 0, meta, MFD_EOS_REC_LEN);
				c->seq++;
				eos_sent = true;
			}
			if (g->fault == F_TYPE_ON_DATA && pkt_no == 2) {
				struct mfd__status_rec st = { 0 };
				mfd__status_encode(meta, &st);
				small_packet(&out, c->sock, MFD_PKT_BLOCKS_ACK, c->seq++, 0, meta,
					     MFD_STATUS_REC_LEN);
			}
			uint64_t seq = c->seq++;
			if (g->fault == F_SEQ && pkt_no == 1)
				seq++;
			uint32_t round = g->fault == F_ROUND_RAM && pkt_no == 1 ? 1 : 0;
			bool last = pkt_no == total_pkts - 1;
			enum fault f = last ? g->fault : F_NONE;
			if (g->fault == F_DATA_TRUNCATED && k == 1 && first == 0)
				f = g->fault;	/* ram1 page 0: the one normal page of a lean seed */
			ram_packet(&out, c->sock, seq, round, k, blk, pages, cnt, false, &nnorm, &nzero, f);
			if (f == F_DATA_TRUNCATED)
				dtrunc = c;
			pkt_no++;
		}
	}
	/* Live: end each round with SYNC on every data channel, then re-send "dirty" pages. */
	unsigned rounds_sent = 0;
	for (unsigned r = 0; r < g->rounds; r++) {
		for (unsigned i = 0; i < g->ndata; i++) {
			if (g->fault == F_SYNC_ONE_CHANNEL && i > 0)
				continue;
			uint32_t ml = g->fault == F_SYNC_META ? 8 : 0;
			memset(meta, 0, 8);
			small_packet(&out, dc[i].sock, MFD_PKT_SYNC, dc[i].seq++, r, meta, ml);
		}
		rounds_sent++;
		/* The guest "writes" between rounds: change a normal page, zero another. */
		src1[63 * PAGE + r] ^= 0xff;	/* (in a lean seed this makes the page normal) */
		if (r == 1)
			memset(src0 + PAGE, 0, PAGE);
		for (uint32_t k = 0; k < NBLK; k++) {
			uint64_t pages[MFD_MAX_BATCH_PAGES];
			uint32_t blk = order[k];
			uint32_t cnt = dirty_pages(blk, r + 1, pages);
			if (blk == 1)
				pages[cnt++] = 63;
			if (blk == 0 && r == 1)
				pages[cnt++] = 1;
			for (uint32_t first = 0; first < cnt; first += g->batch) {
				struct dchan *c = &dc[next];
				next = (next + 1) % g->ndata;
				if (g->fault == F_SYNC_ONE_CHANNEL)
					c = &dc[0];	/* channel 2 just ends (EOS) after round 0 */
				ram_packet(&out, c->sock, c->seq++, r + 1, k, blk, pages + first,
					   MFD_MIN(g->batch, cnt - first), false, &nnorm, &nzero, F_NONE);
			}
		}
	}
	uint32_t final_round = rounds_sent;
	if (g->resend) {
		/* ram0 page 1 again, as a zero page (data over data: cleared), and ram0 page 3 again
		 * as zero (already zero: nothing to write). */
		uint32_t k0 = g->reversed ? 1 : 0;
		uint64_t pages[2] = { 1, 3 };
		ram_packet(&out, dc[0].sock, dc[0].seq++, final_round, k0, 0, pages, 2, true, &nnorm,
			   &nzero, F_NONE);
		memset(src0 + PAGE, 0, PAGE);
	}

	/* Device state on the main channel, before EOS and END (as the source sends it). */
	static const uint8_t cpu_state[48] = { 0x01, 0x02, 0x03, 'r', 'i', 'p' };
	static const uint8_t refused_state[8] = { 0xEE };
	switch (g->fault) {
	case F_DEV_MISSING:
		break;
	case F_DEV_UNKNOWN:
		device_packet(&out, ms, mseq++, "gpu", 2, cpu_state, sizeof(cpu_state),
			      sizeof(cpu_state));
		break;
	case F_DEV_VERSION:
		device_packet(&out, ms, mseq++, "cpu", 3, cpu_state, sizeof(cpu_state),
			      sizeof(cpu_state));
		break;
	case F_DEV_TWICE:
		device_packet(&out, ms, mseq++, "cpu", 2, cpu_state, sizeof(cpu_state),
			      sizeof(cpu_state));
		device_packet(&out, ms, mseq++, "cpu", 2, cpu_state, sizeof(cpu_state),
			      sizeof(cpu_state));
		break;
	case F_DEV_TOO_BIG:
		device_packet(&out, ms, mseq++, "cpu", 2, cpu_state, sizeof(cpu_state),
			      (1u << 20) + 1);
		break;
	case F_DEV_REFUSED:
		device_packet(&out, ms, mseq++, "cpu", 2, refused_state, sizeof(refused_state),
			      sizeof(refused_state));
		break;
	case F_DEV_TRUNCATED:	/* the main channel ends inside the state */
		device_packet(&out, ms, mseq++, "cpu", 2, cpu_state, 16, 100);
		break;
	default:
		device_packet(&out, ms, mseq++, "cpu", 1, cpu_state, sizeof(cpu_state),
			      sizeof(cpu_state));
		break;
	}

	/* EOS on every data channel: the number of packets the channel carried before it. */
	for (unsigned i = 0; i < g->ndata && !eos_sent; i++) {
		if (&dc[i] == dtrunc)
			continue;
		mfd__put64(meta, dc[i].seq + (g->fault == F_EOS_COUNT && i == 0 ? 1 : 0));
		small_packet(&out, dc[i].sock, MFD_PKT_EOS, dc[i].seq, 0, meta, MFD_EOS_REC_LEN);
		dc[i].seq++;
	}
	if (eos_sent) {	/* F_EOS_EARLY: the other channels end normally */
		for (unsigned i = 0; i < g->ndata; i++) {
			if (&dc[i] == &dc[(total_pkts - 1) % g->ndata])
				continue;
			mfd__put64(meta, dc[i].seq);
			small_packet(&out, dc[i].sock, MFD_PKT_EOS, dc[i].seq, 0, meta, MFD_EOS_REC_LEN);
			dc[i].seq++;
		}
	}

	/* END (or the source's ERROR, or a stray RAM packet) on the main channel. */
	if (g->fault == F_DEV_TRUNCATED) {
		/* nothing more on the main channel */
	} else if (g->fault == F_ERROR_RECORD) {
		n = mfd__errrec_encode(meta, -EIO, "source: guest memory read failed");
		small_packet(&out, ms, MFD_PKT_ERROR, mseq++, 0, meta, n);
	} else if (g->fault == F_RAM_ON_MAIN) {
		uint64_t one = 1;	/* a normal page: data on the main channel */
		ram_packet(&out, ms, mseq++, 0, 0, 0, &one, 1, false, &nnorm, &nzero, F_NONE);
	} else {
		struct mfd__end_rec end = { .normal_pages = nnorm, .zero_pages = nzero,
					    .rounds = final_round };
		if (g->fault == F_END_TOTALS)
			end.zero_pages++;
		if (g->fault == F_END_ROUNDS)
			end.rounds++;
		if (g->verify) {
			uint64_t sum = 0;
			for (uint32_t k = 0; k < NBLK; k++) {
				uint32_t blk = order[k];
				for (uint64_t i = 0; i < blk_len[blk] / PAGE; i++)
					sum += mfd_digest(blk_mem[blk] + i * PAGE, PAGE,
							  (uint64_t)k * 0x100000000ull + i);
			}
			end.digest = sum + (g->fault == F_DIGEST ? 1 : 0);
			end.flags = MFD_FEAT_VERIFY;
		}
		mfd__end_encode(meta, &end);
		small_packet(&out, ms, MFD_PKT_END, mseq++, 0, meta, MFD_END_REC_LEN);
	}
done:
	write_file("stream", g->name, out.p, out.len);
	free(out.p);
}

static void gen_stream(void)
{
	/* name, fault, data channels, verify, reversed, main socket, batch, resend, live rounds */
	static const struct mig migs[] = {
		{ "mig-basic", F_NONE, 2, false, false, 0, 32, false, 0 },
		{ "mig-verify", F_NONE, 2, true, false, 0, 64, false, 0 },
		{ "mig-one-data-channel-main-on-b", F_NONE, 1, false, false, 1, 32, false, 0 },
		{ "mig-reversed-main-on-c-resend", F_NONE, 2, false, true, 2, 16, true, 0 },
		{ "mig-verify-one-channel-batch-512", F_NONE, 1, true, true, 0, 512, false, 0 },
		{ "mig-live-3-rounds-verify", F_NONE, 2, true, false, 0, 32, false, 3 },
		{ "mig-live-1-round-one-channel-main-on-b", F_NONE, 1, false, true, 1, 64, false, 1 },
		{ "bad-hello-magic", F_HELLO_MAGIC, 2, false, false, 0, 32, false, 0 },
		{ "bad-truncated-after-blocks", F_TRUNCATED, 2, false, false, 0, 32, false, 0 },
		{ "bad-data-seq", F_SEQ, 2, false, false, 0, 32, false, 0 },
		{ "bad-eos-count", F_EOS_COUNT, 2, false, false, 0, 32, false, 0 },
		{ "bad-end-totals", F_END_TOTALS, 2, false, false, 0, 32, false, 0 },
		{ "bad-source-error", F_ERROR_RECORD, 2, false, false, 0, 32, false, 0 },
		{ "bad-block-name", F_BLOCK_NAME, 2, false, false, 0, 32, false, 0 },
		{ "bad-digest", F_DIGEST, 2, true, false, 0, 32, false, 0 },
		{ "bad-offset-range", F_OFFSET_RANGE, 2, false, false, 0, 32, false, 0 },
		{ "bad-chan-count", F_CHAN_COUNT, 2, false, false, 0, 32, false, 0 },
		{ "bad-dup-chan", F_DUP_CHAN, 2, false, false, 0, 32, false, 0 },
		{ "bad-session-id", F_SESSION, 2, false, false, 1, 32, false, 0 },
		{ "bad-page-size", F_PAGE_SIZE, 2, false, false, 0, 32, false, 0 },
		{ "bad-ram-checksum", F_CHECKSUM, 2, false, false, 0, 32, false, 0 },
		{ "bad-ram-on-main", F_RAM_ON_MAIN, 2, false, false, 0, 32, false, 0 },
		{ "bad-eos-early", F_EOS_EARLY, 2, false, false, 0, 32, false, 0 },
		{ "bad-round-ram", F_ROUND_RAM, 2, false, false, 0, 32, false, 1 },
		{ "bad-sync-meta", F_SYNC_META, 2, false, false, 0, 32, false, 1 },
		{ "bad-end-rounds", F_END_ROUNDS, 2, false, false, 0, 32, false, 2 },
		{ "bad-sync-one-channel", F_SYNC_ONE_CHANNEL, 2, false, false, 0, 32, false, 2 },
		{ "bad-dev-unknown", F_DEV_UNKNOWN, 2, false, false, 0, 32, false, 0 },
		{ "bad-dev-version", F_DEV_VERSION, 2, false, false, 0, 32, false, 0 },
		{ "bad-dev-twice", F_DEV_TWICE, 2, false, false, 0, 32, false, 0 },
		{ "bad-dev-missing", F_DEV_MISSING, 1, false, false, 0, 32, false, 0 },
		{ "bad-dev-too-big", F_DEV_TOO_BIG, 2, false, false, 0, 32, false, 0 },
		{ "bad-dev-refused", F_DEV_REFUSED, 2, false, false, 0, 32, false, 0 },
		{ "bad-dev-truncated", F_DEV_TRUNCATED, 2, false, false, 0, 32, false, 0 },
		{ "bad-block-count", F_BLOCK_COUNT, 2, false, false, 0, 32, false, 0 },
		{ "bad-type-on-data", F_TYPE_ON_DATA, 2, false, false, 0, 32, false, 0 },
		{ "bad-data-truncated", F_DATA_TRUNCATED, 1, false, false, 0, 32, false, 0 },
	};
	for (size_t i = 0; i < MFD_ARRAY_SIZE(migs); i++)
		gen_migration(&migs[i]);
	write_file("stream", "empty", NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR   (normally fuzz/corpus)\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) && errno != EEXIST)
		die(outdir);
	gen_hello();
	gen_packet();
	gen_stream();
	printf("gen_corpus: wrote %u files under %s\n", nfiles, outdir);
	return 0;
}
