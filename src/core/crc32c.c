/* core/crc32c — CRC-32C (Castagnoli), for header checksums.  Uses the SSE4.2 crc32
 * instruction when the CPU has it (chosen at run time), else a byte-wise table. */
#include <pthread.h>
#include "core/util.h"
#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static bool use_hw;	/* set once by table_init */

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)c;
	while (len--)
		crc = _mm_crc32_u8(crc, *p++);
	return crc;
}
#endif

uint32_t mfd__crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	pthread_once(&table_once, table_init);
	crc = ~crc;
#if defined(__x86_64__)
	if (use_hw)
		return ~crc_hw(crc, p, len);
#endif
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
/* Four independent pages at once: the crc32 instruction has a latency of three cycles and a
 * throughput of one, so four interleaved streams keep it busy where one stream waits. */
__attribute__((target("sse4.2"))) static void crc_hw_x4(const uint8_t *const p[4], size_t len,
							 uint32_t out[4])
{
	uint64_t c0 = 0xffffffffu, c1 = c0, c2 = c0, c3 = c0;
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v0, v1, v2, v3;
		memcpy(&v0, p[0] + i, 8);
		memcpy(&v1, p[1] + i, 8);
		memcpy(&v2, p[2] + i, 8);
		memcpy(&v3, p[3] + i, 8);
		c0 = _mm_crc32_u64(c0, v0);
		c1 = _mm_crc32_u64(c1, v1);
		c2 = _mm_crc32_u64(c2, v2);
		c3 = _mm_crc32_u64(c3, v3);
	}
	out[0] = ~(uint32_t)c0;
	out[1] = ~(uint32_t)c1;
	out[2] = ~(uint32_t)c2;
	out[3] = ~(uint32_t)c3;
}
#endif

void mfd__crc32c_pages(const uint8_t *base, size_t page_size, const uint64_t *pages, size_t n,
		       uint32_t *out)
{
	size_t i = 0;
	pthread_once(&table_once, table_init);
#if defined(__x86_64__)
	if (use_hw && page_size % 8 == 0) {
		for (; i + 4 <= n; i += 4) {
			const uint8_t *p[4] = { base + pages[i] * page_size, base + pages[i + 1] * page_size,
						base + pages[i + 2] * page_size,
						base + pages[i + 3] * page_size };
			crc_hw_x4(p, page_size, out + i);
		}
	}
#endif
	for (; i < n; i++)
		out[i] = mfd__crc32c(0, base + pages[i] * page_size, page_size);
}

/* The table path, for tests that compare both implementations. */
uint32_t mfd__crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	pthread_once(&table_once, table_init);
	crc = ~crc;
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}
