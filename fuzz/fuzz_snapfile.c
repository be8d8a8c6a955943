/* fuzz/fuzz_snapfile — the snapshot file reader, inspect, and a restore of what it accepts.
 *
 * A snapshot file is mostly holes (each pages area starts on a 1 MiB boundary), so an input
 * describes a sparse file instead of holding every byte, as a sequence of records:
 *
 *     u32 skip    little-endian: bytes of zeros (a hole) before the record's data
 *     u16 len     little-endian: data bytes that follow (a record cut short keeps what is there)
 *     u8  data[len]
 *
 * The file is the records' holes and data, in order; it may not exceed 256 MiB (larger skips
 * are cut to fit).
 *
 * The file is built in a memfd and read as a restore and inspect would read it:
 *   1. mfd__snap_read, strict and keep-going: the same verdict (keep-going may only record more);
 *   2. mfd_snapshot_inspect on the same file: the same code;
 *   3. if accepted: every bound the reader promises holds (docs/format.md), every structure
 *      re-encodes to the bytes it came from; and if the memory is small, an eager and a lazy
 *      restore into fresh memory (blocks and devices registered from the file) succeed and give
 *      exactly the file's pages (eager: absent pages zero; lazy: the pages area as it is).
 * A violation aborts, so libFuzzer reports it as a crash. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "core/util.h"
#include "mapped/snapfile.h"

#define FAIL(...)                                                        \
	do {                                                             \
		fprintf(stderr, "fuzz_snapfile: invariant: " __VA_ARGS__); \
		fprintf(stderr, "\n");                                   \
		abort();                                                 \
	} while (0)

#define MAX_FILE (256ull << 20)
#define MAX_RESTORE (8u << 20)

static void check_err(const struct mfd_error *e, int rc)
{
	if (rc >= 0)
		FAIL("reader returned %d", rc);
	if (e->code != rc)
		FAIL("error record %d, returned %d", e->code, rc);
	if (!memchr(e->msg, '\0', sizeof(e->msg)) || !e->msg[0])
		FAIL("error message missing or not terminated");
}

static void same_bytes(int fd, uint64_t off, const uint8_t *want, size_t n, const char *what)
{
	uint8_t got[MFD_SNAP_BLOCK_LEN];
	if (n > sizeof(got) || pread(fd, got, n, (off_t)off) != (ssize_t)n)
		FAIL("%s: cannot read back", what);
	if (memcmp(got, want, n))
		FAIL("%s does not re-encode to its bytes", what);
}

/* The bounds the reader promises, and re-encoding. */
static void check_meta(int fd, const struct mfd__snap_meta *m)
{
	const struct mfd__snap_hdr *h = &m->hdr;
	uint8_t b[MFD_SNAP_BLOCK_LEN];
	if (h->nblocks < 1 || h->nblocks > MFD_MAX_BLOCKS || h->ndevices > MFD_SNAP_MAX_DEVICES)
		FAIL("counts %u %u", h->nblocks, h->ndevices);
	if (h->file_size != m->real_size || h->file_size > MFD_SNAP_MAX_FILE)
		FAIL("file size %llu, real %llu", (unsigned long long)h->file_size,
		     (unsigned long long)m->real_size);
	if (h->devices_offset + h->devices_len + MFD_SNAP_TRAILER_LEN != h->file_size)
		FAIL("device area");
	mfd__snap_hdr_encode(b, h);
	same_bytes(fd, 0, b, MFD_SNAP_HDR_LEN, "header");
	mfd__snap_trailer_encode(b, &m->tr);
	same_bytes(fd, h->file_size - MFD_SNAP_TRAILER_LEN, b, MFD_SNAP_TRAILER_LEN, "trailer");
	uint64_t bitmap_end = MFD_SNAP_HDR_LEN + (uint64_t)h->nblocks * MFD_SNAP_BLOCK_LEN;
	uint64_t pages_end = h->meta_len, mem = 0;
	for (uint32_t i = 0; i < h->nblocks; i++) {
		const struct mfd__snap_block *k = &m->blocks[i];
		if (k->bitmap_offset < bitmap_end || k->bitmap_offset + k->bitmap_len > h->meta_len)
			FAIL("block %u bitmap out of range", i);
		if (k->pages_offset % MFD_SNAP_ALIGN || k->pages_offset < pages_end ||
		    k->pages_offset + k->len > h->devices_offset)
			FAIL("block %u pages out of range", i);
		if (!mfd__is_pow2(k->page_size) || k->page_size < 4096 || k->page_size > 65536 ||
		    k->len % k->page_size || k->npages != k->len / k->page_size ||
		    k->bitmap_len != (k->npages + 7) / 8 || k->present > k->npages)
			FAIL("block %u fields", i);
		bitmap_end = k->bitmap_offset + k->bitmap_len;
		pages_end = k->pages_offset + k->len;
		mem += k->len;
		mfd__snap_block_encode(b, k);
		same_bytes(fd, MFD_SNAP_HDR_LEN + (uint64_t)i * MFD_SNAP_BLOCK_LEN, b,
			   MFD_SNAP_BLOCK_LEN, "block entry");
	}
	if (mem != h->mem_bytes)
		FAIL("memory total");
	uint64_t off = h->devices_offset, total = 0;
	for (uint32_t i = 0; i < h->ndevices; i++) {
		const struct mfd__snap_dev *d = &m->devs[i];
		if (d->offset != off || d->data_len > MFD_SNAP_MAX_DEVICE_LEN)
			FAIL("device %u placement", i);
		mfd__snap_dev_encode(b, d);
		same_bytes(fd, off, b, MFD_SNAP_DEV_HDR_LEN, "device header");
		off += mfd__snap_dev_span(d->data_len);
		total += d->data_len;
	}
	if (off != h->devices_offset + h->devices_len || total != m->device_bytes)
		FAIL("device area walk");
}

/* ---- restore what the reader accepted ------------------------------------------------------- */

static long dev_save(void *o, void *buf, size_t cap)
{
	return 0;
}

static int dev_load(void *o, const void *buf, size_t len, uint32_t version)
{
	(*(unsigned *)o)++;
	return 0;
}

static const struct mfd_device_ops dev_ops = { dev_save, dev_load };

/* bad_pages: verify found pages that do not match their checksums, so an eager restore must
 * refuse the file for that reason (a lazy one reads no page). */
static void restore(int fd, const char *path, const struct mfd__snap_meta *m, bool lazy,
		    bool bad_pages)
{
	const struct mfd__snap_hdr *h = &m->hdr;
	uint8_t *mem[MFD_MAX_BLOCKS] = { 0 };
	unsigned loads = 0;
	struct mfd_session *s = mfd_session_new(MFD_RESTORE);
	if (!s)
		FAIL("session");
	mfd_session_set(s, MFD_OPT_CHANNELS, 2);
	mfd_session_set(s, MFD_OPT_LAZY, lazy);
	mfd_session_set(s, MFD_OPT_DEVICE_MAX_BYTES, 1 << 20);
	for (uint32_t i = 0; i < h->nblocks; i++) {
		const struct mfd__snap_block *k = &m->blocks[i];
		/* page_size-aligned memory: map one page more and align */
		uint8_t *p = mmap(NULL, k->len + k->page_size, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			FAIL("mmap");
		mem[i] = p;
		uint8_t *a = (uint8_t *)(((uintptr_t)p + k->page_size - 1) & ~(uintptr_t)(k->page_size - 1));
		memset(a, 0xEE, k->len);	/* not zeroed: absent pages must be cleared */
		if (mfd_ram_block_add(s, k->name, a, k->len, k->page_size, 0) != (int)i)
			FAIL("block add");
	}
	for (uint32_t i = 0; i < h->ndevices; i++)
		if (mfd_device_add(s, m->devs[i].name, m->devs[i].instance, UINT32_MAX, &dev_ops,
				   &loads) < 0)
			FAIL("device add");
	struct mfd_error e;
	mfd_error_clear(&e);
	int rc = mfd_session_open_file(s, path, &e);
	if (rc == 0)
		rc = mfd_session_run(s, &e);
	if (!lazy && bad_pages) {
		if (rc != MFD_ECHECKSUM)
			FAIL("eager restore of a file with bad pages: %d (%s)", rc, e.msg);
		goto out;
	}
	if (rc)
		FAIL("restore (%s) of an accepted file: %s", lazy ? "lazy" : "eager", e.msg);
	if (loads != h->ndevices)
		FAIL("%u devices loaded of %u", loads, h->ndevices);
	uint8_t *page = malloc(65536), *bm = malloc(MAX_RESTORE / 4096 / 8 + 8);
	for (uint32_t i = 0; i < h->nblocks; i++) {
		const struct mfd__snap_block *k = &m->blocks[i];
		uint8_t *a = (uint8_t *)(((uintptr_t)mem[i] + k->page_size - 1) &
					 ~(uintptr_t)(k->page_size - 1));
		if (pread(fd, bm, k->bitmap_len, (off_t)k->bitmap_offset) != (ssize_t)k->bitmap_len)
			FAIL("bitmap read");
		for (uint64_t p = 0; p < k->npages; p++) {
			bool present = (bm[p / 8] >> (p % 8)) & 1;
			if (pread(fd, page, k->page_size, (off_t)(k->pages_offset + p * k->page_size)) !=
			    (ssize_t)k->page_size)
				FAIL("page read");
			if (!present && !lazy)
				memset(page, 0, k->page_size);
			if (memcmp(page, a + p * k->page_size, k->page_size))
				FAIL("block %u page %llu differs from the file", i, (unsigned long long)p);
		}
	}
	free(page);
	free(bm);
out:
	mfd_session_free(s);
	for (uint32_t i = 0; i < h->nblocks; i++)
		munmap(mem[i], m->blocks[i].len + m->blocks[i].page_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz_snapfile", MFD_CLOEXEC);
	if (fd < 0)
		FAIL("memfd_create: %s", strerror(errno));
	uint64_t off = 0;
	for (size_t p = 0; p + 6 <= size;) {
		uint64_t skip = mfd__get32(data + p);
		size_t len = mfd__get16(data + p + 4);
		p += 6;
		len = MFD_MIN(len, size - p);
		skip = MFD_MIN(skip, MAX_FILE - off);
		off += skip;
		len = (size_t)MFD_MIN((uint64_t)len, MAX_FILE - off);
		if (len && pwrite(fd, data + p, len, (off_t)off) != (ssize_t)len)
			FAIL("building the file: %s", strerror(errno));
		off += len;
		p += len;
	}
	if (ftruncate(fd, (off_t)off))
		FAIL("ftruncate: %s", strerror(errno));
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	struct mfd__snap_meta m, mk;
	struct mfd__snap_limits lim = { .device_max = 1 << 20 };
	struct mfd_error e, ek, ei;
	mfd_error_clear(&e);
	mfd_error_clear(&ek);
	mfd_error_clear(&ei);
	struct mfd__chan *c = mfd__chan_file_new(dup(fd), -1);
	if (!c)
		FAIL("out of memory");
	int rc = mfd__snap_read(c, &m, &lim, 0, &e);
	if (getenv("MFD_FUZZ_VERBOSE"))
		fprintf(stderr, "file of %llu bytes: %d %s\n", (unsigned long long)off, rc, e.msg);
	int rk = mfd__snap_read(c, &mk, &lim, MFD_SNAP_READ_KEEP_GOING, &ek);
	mfd__chan_free(c);
	if (rc)
		check_err(&e, rc);
	if (rk)
		check_err(&ek, rk);
	if ((rc == 0) != (rk == 0))
		FAIL("strict %d, keep-going %d", rc, rk);
	if (rc != rk && rc != MFD_ECHECKSUM && rc != MFD_ERANGE && rc != MFD_ECOUNT)
		FAIL("keep-going changed a structural verdict: %d, %d", rc, rk);
	struct mfd_snapshot_info info;
	int ri = mfd_snapshot_inspect(path, &info, &ei);
	if (ri)
		check_err(&ei, ri);
	/* inspect has no device bound of its own (1 MiB here): only that may change its verdict */
	if (ri != rk && rk != MFD_ELENGTH)
		FAIL("inspect %d, reader %d", ri, rk);
	if (ri == 0 && (info.nblocks != mk.hdr.nblocks || !info.header_ok || !info.devices_ok))
		FAIL("inspect of a valid file incomplete");
	mfd_snapshot_info_free(&info);
	/* verify: inspect's verdict, then every page against its checksum and the digest.  Its
	 * page scrub reads where the (validated) table says: it must never fail otherwise. */
	struct mfd_error ev;
	mfd_error_clear(&ev);
	int rv = mfd_snapshot_verify(path, &info, &ev);
	if (rv)
		check_err(&ev, rv);
	if (ri && rv != ri)
		FAIL("verify %d on a file inspect refused with %d", rv, ri);
	if (ri == 0 && rv && rv != MFD_ECHECKSUM && rv != MFD_EVERIFY)
		FAIL("verify failed with %d (%s) on a file inspect accepted", rv, ev.msg);
	if (rv == 0 && info.page_checksums && info.pages_checked != info.pages_present)
		FAIL("verify checked %llu of %llu pages", (unsigned long long)info.pages_checked,
		     (unsigned long long)info.pages_present);
	mfd_snapshot_info_free(&info);
	if (rc == 0) {
		check_meta(fd, &m);
		uint32_t ps = m.blocks[0].page_size;
		bool same_ps = true;
		for (uint32_t i = 0; i < m.hdr.nblocks; i++)
			same_ps &= m.blocks[i].page_size == ps;
		if (same_ps && m.hdr.mem_bytes <= MAX_RESTORE) {
			restore(fd, path, &m, false, rv == MFD_ECHECKSUM);
			restore(fd, path, &m, true, rv == MFD_ECHECKSUM);
		}
	}
	mfd__snap_meta_free(&m);
	mfd__snap_meta_free(&mk);
	close(fd);
	return 0;
}
