/* core/util — small inline helpers: little-endian access, bitmaps, clock, alignment. */
#ifndef MFD_CORE_UTIL_H
#define MFD_CORE_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MFD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MFD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MFD_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Little-endian loads and stores; compile to plain moves on x86. */
static inline void mfd__put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void mfd__put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void mfd__put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t mfd__get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t mfd__get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t mfd__get64(const uint8_t *p)
{
	return (uint64_t)mfd__get32(p) | (uint64_t)mfd__get32(p + 4) << 32;
}

static inline bool mfd__is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

/* Growing public structs (multifd.h, "Growing structures"): the caller's struct has
 * `theirs` bytes, ours has `ours`.  Out: fill the caller's part, zero what we do not know.
 * In: take the caller's part, zero ours beyond it; -E2BIG when the caller set a member we do
 * not know, which we would silently ignore otherwise. */
static inline void mfd__struct_out(void *dst, size_t theirs, const void *src, size_t ours)
{
	memcpy(dst, src, theirs < ours ? theirs : ours);
	if (theirs > ours)
		memset((char *)dst + ours, 0, theirs - ours);
}
static inline int mfd__struct_in(void *dst, size_t ours, const void *src, size_t theirs)
{
	for (size_t i = ours; i < theirs; i++)
		if (((const char *)src)[i])
			return -E2BIG;
	memset(dst, 0, ours);
	memcpy(dst, src, theirs < ours ? theirs : ours);
	return 0;
}

/* Monotonic clock. */
static inline uint64_t mfd__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t mfd__now_ms(void) { return mfd__now_ns() / 1000000ull; }

/* CPU time the calling thread has used. */
static inline uint64_t mfd__thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- bitmaps: arrays of uint64_t words, bit i of word i/64 -------------------------------- */
#define MFD_BITS_PER_WORD 64
static inline size_t mfd__bitmap_words(uint64_t nbits) { return (size_t)((nbits + 63) / 64); }
static inline bool mfd__bit_test(const uint64_t *map, uint64_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}
static inline void mfd__bit_set(uint64_t *map, uint64_t i) { map[i / 64] |= 1ull << (i % 64); }
static inline void mfd__bit_clear(uint64_t *map, uint64_t i) { map[i / 64] &= ~(1ull << (i % 64)); }
static inline void mfd__bit_set_atomic(uint64_t *map, uint64_t i)
{
	__atomic_fetch_or(&map[i / 64], 1ull << (i % 64), __ATOMIC_RELAXED);
}
static inline bool mfd__bit_test_atomic(const uint64_t *map, uint64_t i)
{
	return (__atomic_load_n(&map[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}
/* Index of the first set bit at or after start, or nbits if none. */
uint64_t mfd__bitmap_next_set(const uint64_t *map, uint64_t nbits, uint64_t start);
/* Index of the first clear bit at or after start, or nbits if none. */
uint64_t mfd__bitmap_next_clear(const uint64_t *map, uint64_t nbits, uint64_t start);
uint64_t mfd__bitmap_count(const uint64_t *map, uint64_t nbits);
void mfd__bitmap_set_range(uint64_t *map, uint64_t start, uint64_t count);

/* ---- intended races ---------------------------------------------------------------------
 * A live migration reads guest memory while the guest writes it; the dirty tracker makes that
 * safe (a page written during or after the read is sent again).  Under ThreadSanitizer these
 * bracket the places that hand guest pages to the kernel, so only those reads are exempt. */
#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define MFD_GUEST_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define MFD_GUEST_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define MFD_GUEST_READS_BEGIN() ((void)0)
#define MFD_GUEST_READS_END() ((void)0)
#endif

/* ---- uuid ------------------------------------------------------------------------------ */
#define MFD_UUID_LEN 16
int mfd__uuid_generate(uint8_t out[MFD_UUID_LEN]);
void mfd__uuid_format(const uint8_t id[MFD_UUID_LEN], char out[37]);

/* ---- checksums and digest ------------------------------------------------------------ */
uint32_t mfd__crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t mfd__crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* out[i] = mfd__crc32c(0, page pages[i] of base, page_size), for n pages, several at a time. */
void mfd__crc32c_pages(const uint8_t *base, size_t page_size, const uint64_t *pages, size_t n,
		       uint32_t *out);

#endif
