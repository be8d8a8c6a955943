/* fuzz/gen_snapfile — writes the seed corpus of fuzz_snapfile (fuzz/corpus/snapfile) by saving
 * real snapshots with the library and converting each file to the target's sparse input format
 * (records of u32 skip, u16 len, data: runs of 512 zero bytes or more become skips).  Valid
 * files of several shapes, and one invalid variant per major rule, so the fuzzer starts deep in
 * the reader.
 *
 * Not part of the default build.  From the top of the tree, after `make lib`:
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc fuzz/gen_snapfile.c build/libmultifd.a -pthread \
 *     -lm -o /tmp/gen_snapfile
 *   /tmp/gen_snapfile fuzz/corpus/snapfile
 * Deterministic except for the snapshot id and creation time in each header. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/util.h"
#include "mapped/snapfile.h"

static const char *outdir;
static char tmp[256];

static void die(const char *what)
{
	fprintf(stderr, "gen_snapfile: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long dev_save(void *o, void *buf, size_t cap)
{
	size_t n = (size_t)(uintptr_t)o;
	if (cap >= n)
		memset(buf, 0x3c, n);
	return (long)n;
}

static const struct mfd_device_ops ops = { dev_save, NULL };

struct shape {
	const char *name;
	uint32_t page_size;
	uint64_t len[3];	/* bytes per block, 0 ends */
	unsigned ndev;
	size_t dev_len[3];
	bool verify;
	bool zero;		/* all pages zero */
	bool no_sums;		/* saved without page checksums */
};

static void save(const struct shape *sh)
{
	struct mfd_session *s = mfd_session_new(MFD_SAVE);
	mfd_session_set(s, MFD_OPT_CHANNELS, 2);
	mfd_session_set(s, MFD_OPT_VERIFY, sh->verify);
	mfd_session_set(s, MFD_OPT_PAGE_CHECKSUMS, !sh->no_sums);
	uint8_t *mem[3] = { 0 };
	for (int i = 0; i < 3 && sh->len[i]; i++) {
		mem[i] = mmap(NULL, sh->len[i] + 65536, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint8_t *a = (uint8_t *)(((uintptr_t)mem[i] + 65535) & ~(uintptr_t)65535);
		for (uint64_t p = 0; !sh->zero && p < sh->len[i] / sh->page_size; p++)
			if (p % 3 != 2)	/* every third page zero: a hole */
				memset(a + p * sh->page_size, (int)(p % 250 + i + 1), 64);	/* and zeros */
		char name[16];
		snprintf(name, sizeof(name), "ram%d", i);
		mfd_ram_block_add(s, name, a, sh->len[i], sh->page_size, 0);
	}
	for (unsigned d = 0; d < sh->ndev; d++)
		mfd_device_add(s, d ? "uart" : "cpu", d, 1, &ops, (void *)(uintptr_t)sh->dev_len[d]);
	struct mfd_error err;
	mfd_error_clear(&err);
	if (mfd_session_open_file(s, tmp, &err) || mfd_session_run(s, &err)) {
		fprintf(stderr, "gen_snapfile: %s\n", err.msg);
		exit(1);
	}
	mfd_session_free(s);
	for (int i = 0; i < 3 && sh->len[i]; i++)
		munmap(mem[i], sh->len[i] + 65536);
}

static uint8_t *load(size_t *len)
{
	struct stat st;
	int fd = open(tmp, O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		die(tmp);
	uint8_t *b = malloc((size_t)st.st_size);
	if (!b || pread(fd, b, (size_t)st.st_size, 0) != st.st_size)
		die("read");
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* File bytes -> fuzz input: zero runs of 512 bytes or more become holes. */
static void emit(const char *name, const uint8_t *f, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	FILE *o = fopen(path, "wb");
	if (!o)
		die(path);
	size_t i = 0;
	while (i < len) {
		size_t z = i;
		while (z < len && f[z] == 0)
			z++;
		size_t skip = z - i < 512 ? 0 : z - i;	/* short zero runs stay data */
		size_t d = i + skip, e = d;
		/* data until the next long zero run, the end, or 65535 bytes */
		while (e < len && e - d < 65535) {
			if (f[e] == 0) {
				size_t r = e;
				while (r < len && f[r] == 0 && r - e < 512)
					r++;
				if (r - e >= 512 || r == len)
					break;
				e = r;
				continue;
			}
			e++;
		}
		if (e > d + 65535)
			e = d + 65535;
		uint8_t h[6];
		mfd__put32(h, (uint32_t)skip);
		mfd__put16(h + 4, (uint16_t)(e - d));
		if (fwrite(h, 1, 6, o) != 6 || (e > d && fwrite(f + d, 1, e - d, o) != e - d))
			die(path);
		i = e;
		if (skip == 0 && e == d) {	/* a trailing zero run under 512 bytes */
			mfd__put32(h, (uint32_t)(len - i));
			mfd__put16(h + 4, 0);
			if (fwrite(h, 1, 6, o) != 6)
				die(path);
			i = len;
		}
	}
	if (fclose(o))
		die(path);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_snapfile DIR\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) && errno != EEXIST)
		die(outdir);
	snprintf(tmp, sizeof(tmp), "/tmp/gen_snapfile-%d.snap", getpid());
	static const struct shape shapes[] = {
		{ "one-block", 4096, { 4 * 4096 }, 0, { 0 }, false, false },
		{ "two-blocks-two-devices", 4096, { 16 * 4096, 13 * 4096 }, 2, { 100, 0 }, true, false },
		{ "three-blocks-64k", 65536, { 65536, 3 * 65536, 2 * 65536 }, 1, { 9 }, false, false },
		{ "all-zero", 4096, { 9 * 4096 }, 1, { 8 }, true, true },
		{ "no-page-checksums", 4096, { 12 * 4096, 5 * 4096 }, 1, { 40 }, true, false, true },
	};
	size_t len;
	uint8_t *f = NULL;
	for (size_t i = 0; i < MFD_ARRAY_SIZE(shapes); i++) {
		save(&shapes[i]);
		free(f);
		f = load(&len);
		emit(shapes[i].name, f, len);
	}
	/* Invalid variants of the last two-block file. */
	save(&shapes[1]);
	free(f);
	f = load(&len);
	struct mfd__snap_hdr h;
	struct mfd_error e;
	mfd_error_clear(&e);
	if (mfd__snap_hdr_decode(f, &h, &e))
		die("decode");
	uint8_t *g = malloc(len + 1);
	memcpy(g, f, len);
	emit("bad-truncated", g, len - 1);
	memcpy(g, f, len);
	g[len] = 0;
	emit("bad-trailing-byte", g, len + 1);
	memcpy(g, f, len);
	g[0] ^= 1;
	emit("bad-magic", g, len);
	memcpy(g, f, len);
	g[40] ^= 1;
	emit("bad-header-checksum", g, len);
	memcpy(g, f, len);
	g[MFD_SNAP_HDR_LEN + 3] ^= 1;
	emit("bad-block-checksum", g, len);
	memcpy(g, f, len);
	g[h.meta_len - 1] ^= 1;
	emit("bad-bitmap", g, len);
	memcpy(g, f, len);
	g[h.devices_offset + MFD_SNAP_DEV_HDR_LEN + 5] ^= 1;
	emit("bad-device-state", g, len);
	memcpy(g, f, len);
	g[len - 10] ^= 1;
	emit("bad-trailer-checksum", g, len);
	memcpy(g, f, len);
	memset(g, 0, MFD_SNAP_HDR_LEN);
	emit("bad-no-header", g, len);
	memcpy(g, f, len);
	mfd__put16(g + 4, 2);
	mfd__put32(g + 124, mfd__crc32c(0, g, 124));
	emit("bad-version-2", g, len);
	emit("bad-no-trailer", f, len - MFD_SNAP_TRAILER_LEN);
	free(g);
	free(f);
	unlink(tmp);
	printf("gen_snapfile: wrote the corpus to %s\n", outdir);
	return 0;
}
