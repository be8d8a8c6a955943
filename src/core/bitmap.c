/* core/bitmap — scans over uint64_t word bitmaps (bit i lives in word i / 64). */
#include "core/util.h"

uint64_t mfd__bitmap_next_set(const uint64_t *map, uint64_t nbits, uint64_t start)
{
	if (start >= nbits)
		return nbits;
	uint64_t w = start / 64;
	uint64_t word = map[w] & (~0ull << (start % 64));
	for (;;) {
		if (word) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(word);
			return i < nbits ? i : nbits;
		}
		if (++w >= mfd__bitmap_words(nbits))
			return nbits;
		word = map[w];
	}
}

uint64_t mfd__bitmap_next_clear(const uint64_t *map, uint64_t nbits, uint64_t start)
{
	if (start >= nbits)
		return nbits;
	uint64_t w = start / 64;
	uint64_t word = ~map[w] & (~0ull << (start % 64));
	for (;;) {
		if (word) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(word);
			return i < nbits ? i : nbits;
		}
		if (++w >= mfd__bitmap_words(nbits))
			return nbits;
		word = ~map[w];
	}
}

uint64_t mfd__bitmap_count(const uint64_t *map, uint64_t nbits)
{
	uint64_t n = 0, full = nbits / 64;
	for (uint64_t w = 0; w < full; w++)
		n += (uint64_t)__builtin_popcountll(map[w]);
	if (nbits % 64)
		n += (uint64_t)__builtin_popcountll(map[full] & ((1ull << (nbits % 64)) - 1));
	return n;
}

void mfd__bitmap_set_range(uint64_t *map, uint64_t start, uint64_t count)
{
	uint64_t i = start, end = start + count;
	while (i < end && (i % 64))
		mfd__bit_set(map, i++);
	while (i + 64 <= end) {
		map[i / 64] = ~0ull;
		i += 64;
	}
	while (i < end)
		mfd__bit_set(map, i++);
}
