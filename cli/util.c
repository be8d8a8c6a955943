/* cli/util — helpers shared by the subcommands: sizes, memory, fills, digests. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "cli.h"

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	uint64_t mult = 1;
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	case 't': case 'T': mult = 1ull << 40; end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'B' || *end == 'b')	/* accept 2GiB, 2GB */
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end || v * (double)mult > 1e15)
		return -1;
	*out = (uint64_t)(v * (double)mult);
	return 0;
}

int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

void *cli_alloc_mem(uint64_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_HUGEPAGE);	/* as VMMs do for guest RAM; fewer faults */
	return p;
}

/* Fault in every page of [p, p + len) now, as a VMM preallocating guest RAM does (QEMU's
 * prealloc=on); the memory stays zero.  A kernel without MADV_POPULATE_WRITE (before 5.14:
 * EINVAL) gets one write per page.  Returns 0 or -errno: ENOMEM when the memory is not there
 * (the caller says so, instead of being killed writing to it). */
int cli_prealloc(void *p, uint64_t len)
{
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
	if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	for (uint64_t o = 0; o < len; o += 4096)
		((volatile uint8_t *)p)[o] = 0;
	return 0;
}

void cli_free_mem(void *p, uint64_t len)
{
	if (p)
		munmap(p, len);
}

double cli_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct span {
	uint8_t *base;
	uint64_t first, count;	/* pages */
	uint32_t page_size;
	const char *fill;
	uint64_t seed;
	uint64_t digest;
	pthread_t t;
};

void cli_fill_words(uint64_t *w, size_t nwords, uint64_t pg, const char *fill, uint64_t seed)
{
	if (!strcmp(fill, "zero")) {
		memset(w, 0, nwords * sizeof(*w));
	} else if (!strcmp(fill, "pattern")) {
		/* Every fourth page zero; the others hold their index and word number. */
		for (size_t i = 0; i < nwords; i++)
			w[i] = pg % 4 == 3 ? 0 : (pg << 20) | i | 0x5a00000000000000ull;
	} else {
		/* A generator per page (xorshift64* seeded by splitmix64 of the page number), so
		 * any page's contents can be computed again on its own. */
		uint64_t x = seed + (pg + 1) * 0x9E3779B97F4A7C15ull;
		x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
		x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
		x ^= x >> 31;
		x |= 1;
		for (size_t i = 0; i < nwords; i++) {
			x ^= x >> 12;
			x ^= x << 25;
			x ^= x >> 27;
			w[i] = x * 0x2545F4914F6CDD1Dull;
		}
	}
}

static void *fill_span(void *arg)
{
	struct span *sp = arg;
	uint64_t ps = sp->page_size;
	for (uint64_t pg = sp->first; pg < sp->first + sp->count; pg++)
		cli_fill_words((uint64_t *)(sp->base + pg * ps), ps / 8, pg, sp->fill, sp->seed);
	return NULL;
}

static void *digest_span(void *arg)
{
	struct span *sp = arg;
	uint64_t sum = 0;
	for (uint64_t pg = sp->first; pg < sp->first + sp->count; pg++)
		sum += mfd_digest(sp->base + pg * sp->page_size, sp->page_size, pg);
	sp->digest = sum;
	return NULL;
}

static int run_spans(void *p, uint64_t len, uint32_t ps, unsigned n, const char *fill, uint64_t seed,
		     void *(*fn)(void *), uint64_t *digest)
{
	if (n == 0 || n > 64)
		n = 2;
	struct span sp[64];
	uint64_t pages = len / ps, per = (pages + n - 1) / n;
	unsigned started = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t first = i * per;
		sp[i] = (struct span){ .base = p, .first = first, .page_size = ps, .fill = fill,
				       .seed = seed,
				       .count = first >= pages ? 0 : (pages - first < per ? pages - first : per) };
		if (pthread_create(&sp[i].t, NULL, fn, &sp[i]))
			fn(&sp[i]);
		else
			started |= 1u << i;
	}
	uint64_t sum = 0;
	for (unsigned i = 0; i < n; i++) {
		if (started & (1u << i))
			pthread_join(sp[i].t, NULL);
		sum += sp[i].digest;
	}
	if (digest)
		*digest = sum;
	return 0;
}

int cli_fill(void *p, uint64_t len, const char *fill, unsigned nthreads, uint64_t seed)
{
	if (strcmp(fill, "random") && strcmp(fill, "zero") && strcmp(fill, "pattern"))
		return -1;
	return run_spans(p, len, 4096, nthreads, fill, seed, fill_span, NULL);
}

uint64_t cli_digest(const void *p, uint64_t len, uint32_t page_size, unsigned nthreads)
{
	uint64_t d = 0;
	run_spans((void *)p, len, page_size, nthreads, "", 0, digest_span, &d);
	return d;
}

const char *cli_file_strerror(int code)
{
	/* The library shares MFD_ETRUNC between streams and files and names it for the stream. */
	return code == MFD_ETRUNC ? "file truncated" : mfd_strerror(code);
}

void cli_file_errmsg(const struct mfd_error *err, int code, char *out, size_t cap)
{
	const char *msg = err->code ? err->msg : "", *lib = mfd_strerror(code);
	size_t ml = strlen(msg), ll = strlen(lib);
	if (!ml) {
		snprintf(out, cap, "%s", cli_file_strerror(code));
		return;
	}
	/* The library ends its messages with ": <its name for the code>". */
	if (ml >= ll + 2 && !strcmp(msg + ml - ll, lib) && !strncmp(msg + ml - ll - 2, ": ", 2))
		snprintf(out, cap, "%.*s: %s", (int)(ml - ll - 2), msg, cli_file_strerror(code));
	else
		snprintf(out, cap, "%s", msg);
}
