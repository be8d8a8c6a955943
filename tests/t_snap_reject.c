/* t_snap_reject — every way a snapshot file can be wrong, each with its exact error, through both
 * readers (mfd_snapshot_inspect and a restore's mfd_session_open_file): truncation at every
 * structure, trailing bytes, a missing header or trailer, a flipped bit in every byte of the
 * header, block table, bitmaps, padding, device sections and trailer, another format version,
 * unknown features, fields that are wrong but correctly checksummed (offsets, counts, names,
 * lengths), a block table or device set that does not match the registered ones, and page data
 * changed behind the metadata's back (caught by verify). */
#include "mapped/snapfile.h"
#include "snaputil.h"

#define PS 4096u
#define LEN0 (1u << 20)
#define LEN1 (66u * PS)	/* 66 pages: the last bitmap byte has unused bits */

static uint8_t *mem0, *mem1;
static char good[600], work[600];
static struct mfd__snap_meta lay;	/* the good file's layout */

static struct dev cpu = { .len = 100 }, uart = { .len = 0 };

static void make(const char *path, bool verify)
{
	struct mfd_session *s = mfd_session_new(MFD_SAVE);
	mfd_ram_block_add(s, "ram0", mem0, LEN0, PS, 0);
	mfd_ram_block_add(s, "ram1", mem1, LEN1, PS, 0);
	mfd_device_add(s, "cpu", 0, 2, &dev_ops, &cpu);
	mfd_device_add(s, "uart", 1, 1, &dev_ops, &uart);
	mfd_session_set(s, MFD_OPT_CHANNELS, 2);
	mfd_session_set(s, MFD_OPT_VERIFY, verify);
	struct mfd_error err;
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_open_file(s, path, &err), 0);
	CHECK_CODE(mfd_session_run(s, &err), 0);
	mfd_session_free(s);
}

static void copy_file(const char *from, const char *to)
{
	int a = open(from, O_RDONLY), b = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	struct stat st;
	fstat(a, &st);
	/* Copy the metadata, the devices and the trailer; the pages area keeps its holes. */
	static uint8_t buf[1 << 16];
	for (off_t off = 0; off < st.st_size;) {
		off_t data = lseek(a, off, SEEK_DATA);
		if (data < 0)
			break;
		off_t hole = lseek(a, data, SEEK_HOLE);
		for (off_t p = data; p < hole;) {
			ssize_t n = pread(a, buf, (size_t)MFD_MIN((off_t)sizeof(buf), hole - p), p);
			if (n <= 0 || pwrite(b, buf, (size_t)n, p) != n) {
				perror("copy");
				exit(1);
			}
			p += n;
		}
		off = hole;
	}
	if (ftruncate(b, st.st_size))
		perror("ftruncate");
	close(a);
	close(b);
}

/* ---- the two readers ---------------------------------------------------------------------- */

struct reg {
	const char *name0, *name1;	/* NULL: not registered */
	uint64_t len1;
	uint32_t page_size;
	bool no_cpu, extra_dev, lazy, verify;
	uint32_t cpu_version;
	int64_t device_max;
};

static int restore_open(const char *path, const struct reg *r, bool run, struct mfd_error *err)
{
	struct mfd_session *s = mfd_session_new(MFD_RESTORE);
	/* 64 KiB aligned, so that any page size can be registered */
	uint8_t *ma = t_map(LEN0 + 65536), *mb = t_map(LEN1 + 2 * PS + 65536);
	uint8_t *a = (uint8_t *)(((uintptr_t)ma + 65535) & ~(uintptr_t)65535);
	uint8_t *b = (uint8_t *)(((uintptr_t)mb + 65535) & ~(uintptr_t)65535);
	uint32_t ps = r && r->page_size ? r->page_size : PS;
	mfd_ram_block_add(s, r && r->name0 ? r->name0 : "ram0", a, LEN0, ps, MFD_BLOCK_ZEROED);
	if (!r || r->name1)
		mfd_ram_block_add(s, r && r->name1 ? r->name1 : "ram1", b, r && r->len1 ? r->len1 : LEN1,
				  ps, MFD_BLOCK_ZEROED);
	if (!r || !r->no_cpu)
		mfd_device_add(s, "cpu", 0, r && r->cpu_version ? r->cpu_version : 2, &dev_ops, &cpu);
	mfd_device_add(s, "uart", 1, 1, &dev_ops, &uart);
	if (r && r->extra_dev)
		mfd_device_add(s, "disk", 0, 1, &dev_ops, &cpu);
	if (r && r->device_max)
		mfd_session_set(s, MFD_OPT_DEVICE_MAX_BYTES, r->device_max);
	if (r && r->lazy)
		mfd_session_set(s, MFD_OPT_LAZY, 1);
	if (r && r->verify)
		mfd_session_set(s, MFD_OPT_VERIFY, 1);
	mfd_error_clear(err);
	int rc = mfd_session_open_file(s, path, err);
	if (rc == 0 && run)
		rc = mfd_session_run(s, err);
	if (rc == 0 && run)
		CHECK(!memcmp(a, mem0, LEN0) && !memcmp(b, mem1, LEN1));
	mfd_session_free(s);
	munmap(ma, LEN0 + 65536);
	munmap(mb, LEN1 + 2 * PS + 65536);
	return rc;
}

static int checks;

/* Both readers must refuse the file with `want` (0: accept). */
static void expect(const char *path, int want, const char *what)
{
	struct mfd_snapshot_info info;
	struct mfd_error e1, e2;
	mfd_error_clear(&e1);
	int a = mfd_snapshot_inspect(path, &info, &e1);
	mfd_snapshot_info_free(&info);
	int b = restore_open(path, NULL, false, &e2);
	checks++;
	if (a != want || b != want) {
		fprintf(stderr, "%s: inspect %d (%s), restore %d (%s), want %d (%s)\n", what, a, e1.msg,
			b, e2.msg, want, mfd_strerror(want));
		t_failures++;
		return;
	}
	if (want && (e1.code != want || !e1.msg[0] || e2.code != want)) {
		fprintf(stderr, "%s: error record %d '%s'\n", what, e1.code, e1.msg);
		t_failures++;
	}
}

static void poke(int fd, uint64_t off, const void *p, size_t n)
{
	if (pwrite(fd, p, n, (off_t)off) != (ssize_t)n) {
		perror("pwrite");
		exit(1);
	}
}

static uint8_t peek8(int fd, uint64_t off)
{
	uint8_t v = 0;
	if (pread(fd, &v, 1, (off_t)off) != 1)
		exit(1);
	return v;
}

/* Flip one bit of every byte of [off, off + len), one at a time, expecting code_at(i). */
static void flip_range(const char *what, uint64_t off, uint64_t len, int (*code_at)(uint64_t))
{
	int fd = open(work, O_RDWR);
	for (uint64_t i = 0; i < len; i++) {
		uint8_t v = peek8(fd, off + i), f = v ^ (uint8_t)(1u << (i % 8));
		poke(fd, off + i, &f, 1);
		char msg[128];
		snprintf(msg, sizeof(msg), "%s byte %llu", what, (unsigned long long)i);
		expect(work, code_at(i), msg);
		poke(fd, off + i, &v, 1);
	}
	close(fd);
}

static int code_header(uint64_t i)
{
	return i < 4 ? MFD_EMAGIC : i < 6 ? MFD_EVERSION : MFD_ECHECKSUM;
}
static int code_dev(uint64_t i) { return i < 4 ? MFD_EMAGIC : MFD_ECHECKSUM; }
static int code_checksum(uint64_t i) { return MFD_ECHECKSUM; }

static void flips(void)
{
	copy_file(good, work);
	expect(work, 0, "the copy");
	const struct mfd__snap_hdr *h = &lay.hdr;
	flip_range("header", 0, MFD_SNAP_HDR_LEN, code_header);
	flip_range("block table", MFD_SNAP_HDR_LEN, 2 * MFD_SNAP_BLOCK_LEN, code_checksum);
	/* Bitmaps and the padding around them: the bitmaps' own CRCs, the metadata CRC. */
	uint64_t table_end = MFD_SNAP_HDR_LEN + 2 * MFD_SNAP_BLOCK_LEN;
	flip_range("metadata after the table", table_end, h->meta_len - table_end, code_checksum);
	for (uint32_t d = 0; d < 2; d++) {
		const struct mfd__snap_dev *dv = &lay.devs[d];
		char what[64];
		snprintf(what, sizeof(what), "device %s header", dv->name);
		flip_range(what, dv->offset, MFD_SNAP_DEV_HDR_LEN, code_dev);
		snprintf(what, sizeof(what), "device %s state and padding", dv->name);
		flip_range(what, dv->offset + MFD_SNAP_DEV_HDR_LEN,
			   mfd__snap_dev_span(dv->data_len) - MFD_SNAP_DEV_HDR_LEN, code_checksum);
	}
	flip_range("trailer", h->file_size - MFD_SNAP_TRAILER_LEN, MFD_SNAP_TRAILER_LEN, code_header);
	expect(work, 0, "the copy after the flips");

	/* inspect lists every bad bitmap and device, and carries on past them. */
	int fd = open(work, O_RDWR);
	uint64_t b1 = lay.blocks[1].bitmap_offset, dd = lay.devs[0].offset + MFD_SNAP_DEV_HDR_LEN;
	uint8_t v1 = peek8(fd, b1), v2 = peek8(fd, dd), f1 = v1 ^ 1, f2 = v2 ^ 1;
	poke(fd, b1, &f1, 1);
	poke(fd, dd, &f2, 1);
	struct mfd_snapshot_info info;
	struct mfd_error e;
	mfd_error_clear(&e);
	CHECK_CODE(mfd_snapshot_inspect(work, &info, &e), MFD_ECHECKSUM);
	CHECK(info.header_ok && info.trailer_ok && info.blocks_ok && !info.bitmaps_ok);
	CHECK_EQ(info.nblocks, 2);
	CHECK_EQ(info.ndevices, 2);
	if (info.nblocks == 2 && info.ndevices == 2) {
		CHECK_EQ(info.blocks[0].status, 0);
		CHECK_CODE(info.blocks[1].status, MFD_ECHECKSUM);
		CHECK_CODE(info.devices[0].status, MFD_ECHECKSUM);
		CHECK_EQ(info.devices[1].status, 0);
	}
	mfd_snapshot_info_free(&info);
	poke(fd, b1, &v1, 1);
	poke(fd, dd, &v2, 1);
	close(fd);
}

static void truncations(void)
{
	const struct mfd__snap_hdr *h = &lay.hdr;
	struct { uint64_t size; int code; const char *what; } t[] = {
		{ 0, MFD_EINCOMPLETE, "empty" },
		{ 64, MFD_ETRUNC, "half a header" },
		{ MFD_SNAP_HDR_LEN, MFD_ETRUNC, "the header only" },
		{ h->meta_len, MFD_ETRUNC, "the metadata only" },
		{ lay.blocks[1].pages_offset + 5 * PS + 7, MFD_ETRUNC, "inside the pages" },
		{ h->devices_offset + 10, MFD_ETRUNC, "inside a device section" },
		{ h->file_size - MFD_SNAP_TRAILER_LEN, MFD_EINCOMPLETE, "without the trailer" },
		{ h->file_size - 1, MFD_EINCOMPLETE, "without the last byte" },
		{ h->file_size + 1, MFD_ELENGTH, "one byte too long" },
		{ h->file_size + (1u << 20), MFD_ELENGTH, "a megabyte too long" },
	};
	for (size_t i = 0; i < MFD_ARRAY_SIZE(t); i++) {
		copy_file(good, work);
		CHECK(truncate(work, (off_t)t[i].size) == 0);
		expect(work, t[i].code, t[i].what);
	}
	/* A save that crashed before its metadata: pages, and zeros where the header goes. */
	static const uint8_t zeros[MFD_SNAP_HDR_LEN];
	copy_file(good, work);
	int fd = open(work, O_RDWR);
	poke(fd, 0, zeros, sizeof(zeros));
	close(fd);
	expect(work, MFD_EINCOMPLETE, "no header");
	copy_file(good, work);
	fd = open(work, O_RDWR);
	poke(fd, h->file_size - MFD_SNAP_TRAILER_LEN, zeros, MFD_SNAP_TRAILER_LEN);
	close(fd);
	expect(work, MFD_EINCOMPLETE, "zeroed trailer");
}

/* ---- fields that are wrong but checksummed ----------------------------------------------- */

/* Recompute every checksum of the file from what its header and table now say. */
static void reseal(int fd)
{
	uint8_t hb[MFD_SNAP_HDR_LEN], tb[MFD_SNAP_TRAILER_LEN];
	CHECK(pread(fd, hb, sizeof(hb), 0) == (ssize_t)sizeof(hb));
	uint32_t nb = mfd__get32(hb + 32), nd = mfd__get32(hb + 36);
	uint64_t fsz = mfd__get64(hb + 40), meta_len = mfd__get64(hb + 48);
	uint64_t doff = mfd__get64(hb + 56), dlen = mfd__get64(hb + 64);
	nb = MFD_MIN(nb, 2u);
	for (uint32_t i = 0; i < nb; i++) {
		uint8_t e[MFD_SNAP_BLOCK_LEN];
		uint64_t eo = MFD_SNAP_HDR_LEN + (uint64_t)i * MFD_SNAP_BLOCK_LEN;
		CHECK(pread(fd, e, sizeof(e), (off_t)eo) == (ssize_t)sizeof(e));
		uint64_t bo = mfd__get64(e + 272), bl = mfd__get64(e + 280);
		if (bl < (1u << 20)) {
			uint8_t *bm = calloc(1, bl + 1);
			if (pread(fd, bm, bl, (off_t)bo) >= 0)
				mfd__put32(e + 304, mfd__crc32c(0, bm, bl));
			free(bm);
		}
		mfd__put32(e + 316, mfd__crc32c(0, e, 316));
		poke(fd, eo, e, sizeof(e));
	}
	mfd__put32(hb + 124, mfd__crc32c(0, hb, 124));
	poke(fd, 0, hb, sizeof(hb));
	uint8_t *buf = calloc(1, meta_len < (4u << 20) ? meta_len + dlen + 1 : 1);
	/* The trailer where the file really ends: the header may now say something else. */
	struct stat st;
	fstat(fd, &st);
	uint64_t toff = (uint64_t)st.st_size - MFD_SNAP_TRAILER_LEN;
	(void)fsz;
	if (pread(fd, tb, sizeof(tb), (off_t)toff) != (ssize_t)sizeof(tb))
		memset(tb, 0, sizeof(tb));
	if (meta_len < (4u << 20) && pread(fd, buf, meta_len, 0) == (ssize_t)meta_len)
		mfd__put32(tb + 48, mfd__crc32c(0, buf, meta_len));
	if (dlen < (4u << 20) && pread(fd, buf, dlen, (off_t)doff) == (ssize_t)dlen)
		mfd__put32(tb + 52, mfd__crc32c(0, buf, dlen));
	mfd__put32(tb + 60, mfd__crc32c(0, tb, 60));
	poke(fd, toff, tb, sizeof(tb));
	free(buf);
	(void)nd;
}

struct edit {
	const char *what;
	int code;
	uint64_t off;		/* where to write */
	int width;		/* 1, 2, 4 or 8 bytes, little-endian; 0: add `value` to the u64 there */
	uint64_t value;
	bool plus;		/* add value to what is there */
};

static void edits(void)
{
	const struct mfd__snap_hdr *h = &lay.hdr;
	uint64_t e0 = MFD_SNAP_HDR_LEN, e1 = MFD_SNAP_HDR_LEN + MFD_SNAP_BLOCK_LEN;
	uint64_t tr = h->file_size - MFD_SNAP_TRAILER_LEN, d0 = lay.devs[0].offset;
	uint64_t d1 = lay.devs[1].offset;
	const struct edit t[] = {
		{ "header: format version 2", MFD_EVERSION, 4, 2, 2, false },
		{ "header: unknown feature", MFD_EFEATURE, 8, 8, 0x80, false },
		{ "header: reserved byte", MFD_EFEATURE, 110, 1, 1, false },
		{ "header: no blocks", MFD_EBLOCKTABLE, 32, 4, 0, false },
		{ "header: 257 blocks", MFD_EBLOCKTABLE, 32, 4, 257, false },
		{ "header: 1025 devices", MFD_ECOUNT, 36, 4, 1025, false },
		{ "header: 3 devices", MFD_ELENGTH, 36, 4, 3, false },
		{ "header: file size + 4096", MFD_ELENGTH, 40, 8, 4096, true },
		{ "header: file size 2^63", MFD_ERANGE, 40, 8, 1ull << 63, false },
		{ "header: metadata too short for its table", MFD_ELENGTH, 48, 8, 200, false },
		{ "header: devices inside the metadata", MFD_ERANGE, 56, 8, 256, false },
		{ "header: devices unaligned", MFD_EALIGN, 56, 8, 4, true },
		{ "header: memory size", MFD_ECOUNT, 72, 8, 4096, true },
		{ "header: digest without the feature", MFD_EFEATURE, 8, 8, 0, false },
		{ "header: no rounds", MFD_ECOUNT, 96, 4, 0, false },
		{ "header: live flag 2", MFD_EFEATURE, 100, 1, 2, false },
		{ "block 0: name with a NUL", MFD_EBLOCKTABLE, e0 + 1, 1, 0, false },
		{ "block 0: bytes after the name", MFD_EBLOCKTABLE, e0 + 200, 1, 'x', false },
		{ "block 0: name of 0 bytes", MFD_ELENGTH, e0 + 256, 2, 0, false },
		{ "block 1: named like block 0", MFD_EBLOCKTABLE, e1 + 3, 1, '0', false },
		{ "block 0: reserved bytes", MFD_EFEATURE, e0 + 258, 1, 1, false },
		{ "header: page checksums without the feature", MFD_EFEATURE, 8, 8,
		  MFD_SNAP_FEAT_DIGEST, false },
		{ "block 0: page checksums unaligned", MFD_EALIGN, e0 + 308, 8, 4, true },
		{ "block 0: page checksums over the bitmaps", MFD_ERANGE, e0 + 308, 8,
		  lay.blocks[0].bitmap_offset, false },
		{ "block 1: page checksums over block 0's", MFD_ERANGE, e1 + 308, 8,
		  lay.blocks[0].sums_offset, false },
		{ "block 1: page checksums past the metadata", MFD_ERANGE, e1 + 308, 8,
		  (h->meta_len + 7) & ~7ull, false },
		{ "block 0: page size 3000", MFD_EPAGESIZE, e0 + 260, 4, 3000, false },
		{ "block 0: page size 128 KiB", MFD_EPAGESIZE, e0 + 260, 4, 131072, false },
		{ "block 0: length not a page multiple", MFD_ELENGTH, e0 + 264, 8, 100, true },
		{ "block 0: length 0", MFD_ELENGTH, e0 + 264, 8, 0, false },
		{ "block 0: bitmap length", MFD_ELENGTH, e0 + 280, 8, 1, true },
		{ "block 0: bitmap unaligned", MFD_EALIGN, e0 + 272, 8, 4, true },
		{ "block 1: bitmap over block 0's", MFD_ERANGE, e1 + 272, 8, lay.blocks[0].bitmap_offset, false },
		{ "block 1: bitmap past the metadata", MFD_ERANGE, e1 + 272, 8,
		  (h->meta_len + 7) & ~7ull, false },
		{ "block 0: pages not on 1 MiB", MFD_EALIGN, e0 + 288, 8, PS, true },
		{ "block 1: pages over block 0's", MFD_ERANGE, e1 + 288, 8, lay.blocks[0].pages_offset, false },
		{ "block 0: pages inside the metadata", MFD_ERANGE, e0 + 288, 8, 0, false },
		{ "block 1: pages past the devices", MFD_ERANGE, e1 + 288, 8, 1u << 20, true },
		{ "block 0: more pages present than it has", MFD_ECOUNT, e0 + 296, 8, 257, false },
		{ "block 0: present count off by one", MFD_ECOUNT, e0 + 296, 8, 1, true },
		{ "block 1: bit past the last page", MFD_ERANGE,
		  lay.blocks[1].bitmap_offset + lay.blocks[1].bitmap_len - 1, 1, 0x80, false },
		{ "device 0: name of 300 bytes", MFD_ELENGTH, d0 + 4, 2, 300, false },
		{ "device 0: name with a NUL", MFD_EDEVICE, d0 + 25, 1, 0, false },
		{ "device 0: reserved bytes", MFD_EFEATURE, d0 + 6, 2, 1, false },
		{ "device 0: state past the area", MFD_ELENGTH, d0 + 16, 8, 4096, false },
		{ "device 0: state over the bound", MFD_ELENGTH, d0 + 16, 8, (64ull << 20) + 1, false },
		{ "device 1: named like device 0", MFD_EDEVICE, d1 + 24, 4,
		  'c' | 'p' << 8 | 'u' << 16, false },
		{ "trailer: format version 2", MFD_EVERSION, tr + 4, 2, 2, false },
		{ "trailer: another snapshot", MFD_ESESSION, tr + 8, 1, 0x55, false },
		{ "trailer: block count", MFD_ECOUNT, tr + 24, 4, 3, false },
		{ "trailer: device count", MFD_ECOUNT, tr + 28, 4, 1, false },
		{ "trailer: devices offset", MFD_ELENGTH, tr + 40, 8, 8, true },
		{ "trailer: reserved bytes", MFD_EFEATURE, tr + 56, 4, 1, false },
	};
	for (size_t i = 0; i < MFD_ARRAY_SIZE(t); i++) {
		copy_file(good, work);
		int fd = open(work, O_RDWR);
		uint8_t b[8];
		CHECK(pread(fd, b, 8, (off_t)t[i].off) == 8 || t[i].width < 8);
		uint64_t v = t[i].plus ? mfd__get64(b) + t[i].value : t[i].value;
		if (t[i].width == 1 && !strcmp(t[i].what, "block 1: bit past the last page"))
			v = b[0] | 0x80;
		for (int k = 0; k < t[i].width; k++)
			b[k] = (uint8_t)(v >> (8 * k));
		poke(fd, t[i].off, b, (size_t)t[i].width);
		if (!strcmp(t[i].what, "device 1: named like device 0")) {
			/* also the name length, and the instance */
			uint8_t l[2] = { 3, 0 }, inst[4] = { 0 };
			poke(fd, d1 + 4, l, 2);
			poke(fd, d1 + 8, inst, 4);
			static const uint8_t z[4];
			poke(fd, d1 + 27, z, 1);
		}
		if (!strcmp(t[i].what, "block 1: bit past the last page")) {
			uint8_t c[8];	/* keep the present count right: only the range is wrong */
			CHECK(pread(fd, c, 8, (off_t)(e1 + 296)) == 8);
			mfd__put64(c, mfd__get64(c) + 1);
			poke(fd, e1 + 296, c, 8);
		}
		/* Recompute the device section's own checksum where a test edits it. */
		for (uint32_t d = 0; d < 2; d++) {
			uint64_t o = lay.devs[d].offset;
			if (t[i].off >= o && t[i].off < o + MFD_SNAP_DEV_HDR_LEN) {
				uint8_t dh[MFD_SNAP_DEV_HDR_LEN];
				CHECK(pread(fd, dh, sizeof(dh), (off_t)o) == (ssize_t)sizeof(dh));
				mfd__put32(dh + 284, mfd__crc32c(0, dh, 284));
				poke(fd, o, dh, sizeof(dh));
			}
		}
		reseal(fd);
		close(fd);
		expect(work, t[i].code, t[i].what);
	}
}

/* ---- the registered side does not match ---------------------------------------------------- */

static void mismatches(void)
{
	struct mfd_error e;
	struct { struct reg r; int code; const char *what; } t[] = {
		{ { .name0 = "ram0", .name1 = "ramX" }, MFD_EBLOCKTABLE, "a block of another name" },
		{ { .name0 = "ram0", .name1 = "ram1", .len1 = LEN1 - PS }, MFD_EBLOCKTABLE,
		  "a block one page shorter" },
		{ { .name0 = "ram0", .name1 = "ram1", .len1 = LEN1 + 2 * PS }, MFD_EBLOCKTABLE,
		  "a block longer" },
		{ { .name0 = "ram0", .name1 = "ram1", .page_size = 8192 }, MFD_EPAGESIZE,
		  "other page size" },
		{ { .name0 = "ram0" }, MFD_EBLOCKTABLE, "one block registered" },
		{ { .name0 = "ram0", .name1 = "ram1", .no_cpu = true }, MFD_EDEVICE,
		  "a device in the file is not registered" },
		{ { .name0 = "ram0", .name1 = "ram1", .extra_dev = true }, MFD_EDEVICE,
		  "a registered device is not in the file" },
		{ { .name0 = "ram0", .name1 = "ram1", .cpu_version = 1 }, MFD_EDEVICE,
		  "device state too new" },
		{ { .name0 = "ram0", .name1 = "ram1", .device_max = 99 }, MFD_ELENGTH,
		  "device state over the bound" },
	};
	for (size_t i = 0; i < MFD_ARRAY_SIZE(t); i++) {
		int rc = restore_open(good, &t[i].r, false, &e);
		checks++;
		if (rc != t[i].code) {
			fprintf(stderr, "%s: %d (%s), want %s\n", t[i].what, rc, e.msg,
				mfd_strerror(t[i].code));
			t_failures++;
		}
	}
	struct reg ok = { .name0 = "ram0", .name1 = "ram1", .verify = true };
	CHECK_CODE(restore_open(good, &ok, true, &e), 0);
	ok.lazy = true;
	CHECK_CODE(restore_open(good, &ok, true, &e), 0);
	/* A refusing load callback: its code. */
	cpu.refuse = -EBADMSG;
	CHECK_CODE(restore_open(good, &ok, true, &e), -EBADMSG);
	cpu.refuse = 0;
	/* Page data changed behind the metadata's back: an eager restore finds the page by its
	 * checksum (and names it); a lazy one reads no page, and verify catches it. */
	copy_file(good, work);
	int fd = open(work, O_RDWR);
	uint64_t off = lay.blocks[0].pages_offset + 2 * PS + 17;	/* a present page */
	uint8_t v = peek8(fd, off) ^ 0x40;
	poke(fd, off, &v, 1);
	close(fd);
	ok.lazy = false;
	ok.verify = false;
	CHECK_CODE(restore_open(work, &ok, false, &e), 0);	/* open reads no page */
	CHECK_CODE(restore_open(work, &ok, true, &e), MFD_ECHECKSUM);
	CHECK(strstr(e.msg, "block 'ram0' page 2 ") != NULL);
	ok.verify = true;
	CHECK_CODE(restore_open(work, &ok, true, &e), MFD_ECHECKSUM);
	ok.lazy = true;
	CHECK_CODE(restore_open(work, &ok, true, &e), MFD_EVERIFY);
	/* verify needs a saved digest */
	char nodigest[600];
	snap_path(nodigest, sizeof(nodigest), "nodigest.snap");
	make(nodigest, false);
	ok.lazy = false;
	CHECK_CODE(restore_open(nodigest, &ok, true, &e), MFD_EFEATURE);
	ok.verify = false;
	CHECK_CODE(restore_open(nodigest, &ok, true, &e), 0);
}

int main(void)
{
	snap_dir_make("t-snap-reject");
	snap_path(good, sizeof(good), "good.snap");
	snap_path(work, sizeof(work), "work.snap");
	mem0 = t_map(LEN0);
	mem1 = t_map(LEN1);
	t_fill(mem0, LEN0, 31);
	t_fill(mem1, LEN1, 32);
	memset(cpu.state, 0xC5, cpu.len);
	make(good, true);
	struct mfd_error e;
	mfd_error_clear(&e);
	struct mfd__chan *c = mfd__chan_file_new(open(good, O_RDONLY), -1);
	CHECK_CODE(mfd__snap_read(c, &lay, NULL, 0, &e), 0);
	mfd__chan_free(c);
	if (lay.hdr.ndevices != 2 || lay.hdr.nblocks != 2) {
		fprintf(stderr, "bad good file: %s\n", e.msg);
		return 1;
	}
	expect(good, 0, "the good file");
	flips();
	truncations();
	edits();
	mismatches();
	printf("%d files checked\n", checks);
	mfd__snap_meta_free(&lay);
	snap_dir_remove();
	return t_done("t_snap_reject");
}
