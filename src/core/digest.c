/* core/digest — a fast 64-bit non-cryptographic digest for verify modes.
 *
 * Four independent multiply-rotate lanes over 32-byte stripes (the construction of the xxHash64
 * family), then a final avalanche.  It detects corruption and misplaced pages; it is no defence
 * against an adversary, which is TLS's job. */
#include "core/util.h"
#include "multifd.h"

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t round1(uint64_t acc, uint64_t v) { return rotl(acc + v * P2, 31) * P1; }
static inline uint64_t merge(uint64_t h, uint64_t acc) { return (h ^ round1(0, acc)) * P1 + P4; }
static inline uint64_t ld64(const uint8_t *p)
{
	return mfd__get64(p);	/* little-endian on every host, so peers of any endianness agree */
}

MFD_API uint64_t mfd_digest(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf, *end = p + len;
	uint64_t h;
	if (len >= 32) {
		uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
		const uint8_t *limit = end - 32;
		do {
			a = round1(a, ld64(p));
			b = round1(b, ld64(p + 8));
			c = round1(c, ld64(p + 16));
			d = round1(d, ld64(p + 24));
			p += 32;
		} while (p <= limit);
		h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
		h = merge(h, a);
		h = merge(h, b);
		h = merge(h, c);
		h = merge(h, d);
	} else {
		h = seed + P5;
	}
	h += (uint64_t)len;
	while (p + 8 <= end) {
		h ^= round1(0, ld64(p));
		h = rotl(h, 27) * P1 + P4;
		p += 8;
	}
	while (p < end) {
		h ^= (*p++) * P5;
		h = rotl(h, 11) * P1;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}
