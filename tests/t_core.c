/* t_core — URIs, bitmaps, CRC-32C, digest, zero detection, RAM batches, JSON, error table. */
#include "chan/chan.h"
#include "core/err.h"
#include "core/json.h"
#include "core/util.h"
#include "payload/ram_batch.h"
#include "tutil.h"

static void test_uri(void)
{
	struct mfd__uri u;
	struct mfd_error e;
	mfd_error_clear(&e);
	CHECK_CODE(mfd__uri_parse("tcp:127.0.0.1:4444", &u, &e), 0);
	CHECK(u.kind == MFD_URI_TCP && !strcmp(u.host, "127.0.0.1") && !strcmp(u.port, "4444"));
	CHECK_CODE(mfd__uri_parse("tcp:[::1]:0", &u, &e), 0);
	CHECK(!strcmp(u.host, "::1") && !strcmp(u.port, "0"));
	CHECK_CODE(mfd__uri_parse("tcp:localhost:65535", &u, &e), 0);
	CHECK_CODE(mfd__uri_parse("unix:/tmp/x.sock", &u, &e), 0);
	CHECK(u.kind == MFD_URI_UNIX && !strcmp(u.path, "/tmp/x.sock"));
	CHECK_CODE(mfd__uri_parse("fd:3,4,5", &u, &e), 0);
	CHECK(u.kind == MFD_URI_FD && u.nfds == 3 && u.fds[2] == 5);
	CHECK_CODE(mfd__uri_parse("file:/var/tmp/snap", &u, &e), 0);
	const char *bad[] = { "tcp:::1:80", "tcp:host", "tcp:host:", "tcp:host:99999", "tcp::80",
			      "tcp:[::1]80", "unix:", "fd:", "fd:3,", "fd:x", "fd:-1", "http://x",
			      "tcp:h:12a", NULL };
	for (int i = 0; bad[i]; i++) {
		mfd_error_clear(&e);
		CHECK_CODE(mfd__uri_parse(bad[i], &u, &e), MFD_EURI);
		CHECK(strstr(e.msg, bad[i]) != NULL || !strcmp(bad[i], "unix:") || !strcmp(bad[i], "fd:") ||
		      e.msg[0]);
	}
	char longp[200];
	memset(longp, 'a', sizeof(longp));
	memcpy(longp, "unix:", 5);
	longp[199] = '\0';
	CHECK_CODE(mfd__uri_parse(longp, &u, &e), MFD_EURI);
}

static void test_bitmap(void)
{
	uint64_t map[4] = { 0 };
	mfd__bitmap_set_range(map, 3, 130);
	CHECK_EQ(mfd__bitmap_count(map, 256), 130);
	CHECK_EQ(mfd__bitmap_next_set(map, 256, 0), 3);
	CHECK_EQ(mfd__bitmap_next_clear(map, 256, 3), 133);
	CHECK_EQ(mfd__bitmap_next_set(map, 256, 133), 256);
	CHECK_EQ(mfd__bitmap_next_set(map, 100, 99), 99);
	CHECK_EQ(mfd__bitmap_count(map, 70), 67);
	mfd__bit_clear(map, 64);
	CHECK(!mfd__bit_test(map, 64) && mfd__bit_test(map, 65));
	CHECK_EQ(mfd__bitmap_next_clear(map, 256, 3), 64);
	uint64_t full[2] = { ~0ull, ~0ull };
	CHECK_EQ(mfd__bitmap_next_clear(full, 100, 0), 100);
}

static void test_checksums(void)
{
	/* CRC-32C check value ("123456789" -> 0xE3069283), both implementations, any length. */
	CHECK_EQ(mfd__crc32c(0, "123456789", 9), 0xE3069283u);
	CHECK_EQ(mfd__crc32c_sw(0, "123456789", 9), 0xE3069283u);
	uint8_t buf[300];
	for (int i = 0; i < 300; i++)
		buf[i] = (uint8_t)(i * 37 + 1);
	for (size_t n = 0; n < sizeof(buf); n += 7)
		CHECK_EQ(mfd__crc32c(0, buf, n), mfd__crc32c_sw(0, buf, n));
	/* Incremental equals one-shot. */
	CHECK_EQ(mfd__crc32c(mfd__crc32c(0, buf, 100), buf + 100, 200), mfd__crc32c(0, buf, 300));
	/* Pages at once (interleaved), any count and order, equal one at a time. */
	static uint8_t pages[11 * 4096];
	for (size_t i = 0; i < sizeof(pages); i++)
		pages[i] = (uint8_t)(i * 131 + (i >> 12));
	uint64_t idx[9] = { 3, 0, 10, 7, 7, 1, 2, 9, 5 };
	uint32_t sums[9];
	for (size_t n = 0; n <= 9; n++) {
		memset(sums, 0, sizeof(sums));
		mfd__crc32c_pages(pages, 4096, idx, n, sums);
		for (size_t i = 0; i < n; i++)
			CHECK_EQ(sums[i], mfd__crc32c_sw(0, pages + idx[i] * 4096, 4096));
	}

	/* Digest: deterministic, seed- and content-sensitive. */
	CHECK_EQ(mfd_digest(buf, 300, 1), mfd_digest(buf, 300, 1));
	CHECK(mfd_digest(buf, 300, 1) != mfd_digest(buf, 300, 2));
	uint64_t a = mfd_digest(buf, 300, 0);
	buf[150] ^= 1;
	CHECK(a != mfd_digest(buf, 300, 0));
	CHECK(mfd_digest(buf, 0, 0) != mfd_digest(buf, 1, 0));
}

static void test_zero_and_batches(void)
{
	size_t ps = 4096;
	uint8_t *m = t_map(16 * ps);
	memset(m, 0, 16 * ps);
	for (size_t i = 0; i < 16; i++)
		CHECK(mfd__is_zero(m + i * ps, ps));
	/* A single set byte anywhere, including the very last, makes a page non-zero. */
	size_t where[] = { 0, 1, 8, 63, 64, 255, 256, 2048, 4094, 4095 };
	for (size_t k = 0; k < sizeof(where) / sizeof(where[0]); k++) {
		m[3 * ps + where[k]] = 0x80;
		CHECK(!mfd__is_zero(m + 3 * ps, ps));
		m[3 * ps + where[k]] = 0;
	}
	CHECK(mfd__is_zero(m, 100));
	m[99] = 1;
	CHECK(!mfd__is_zero(m, 100));
	m[99] = 0;

	/* Pages 2, 3, 7, 8, 9 non-zero. */
	for (int p = 0; p < 16; p++)
		if (p == 2 || p == 3 || (p >= 7 && p <= 9))
			memset(m + p * ps, p, ps);
	struct mfd__ram_batch b = { .block_id = 0, .normal = 12 };
	for (int i = 0; i < 12; i++)
		b.offsets[i] = (uint64_t)i * ps;
	mfd__ram_batch_classify(&b, m, (uint32_t)ps, true);
	CHECK_EQ(b.normal, 5);
	CHECK_EQ(b.zero, 7);
	CHECK_EQ(b.offsets[0], 2 * ps);
	CHECK_EQ(b.offsets[4], 9 * ps);
	CHECK_EQ(b.offsets[5], 0);
	struct iovec iov[MFD_MAX_BATCH_PAGES];
	int n = mfd__ram_batch_iov(&b, m, (uint32_t)ps, iov);
	CHECK_EQ(n, 2);	/* 2-3 and 7-9 merge */
	CHECK_EQ(iov[0].iov_len, 2 * ps);
	CHECK_EQ(iov[1].iov_len, 3 * ps);
	CHECK(iov[1].iov_base == m + 7 * ps);

	/* Without zero detection everything is normal. */
	b.normal = 12;
	b.zero = 0;
	for (int i = 0; i < 12; i++)
		b.offsets[i] = (uint64_t)i * ps;
	mfd__ram_batch_classify(&b, m, (uint32_t)ps, false);
	CHECK_EQ(b.normal, 12);

	/* Applying zero pages: with a received map, untouched pages are left alone (not faulted). */
	uint64_t recv[1] = { 0 };
	uint8_t *d = t_map(16 * ps);
	memset(d + 5 * ps, 0xee, ps);	/* page 5 dirty but "never received": must stay (proof) */
	struct mfd__ram_batch z = { .normal = 0, .zero = 2, .offsets = { 5 * ps, 6 * ps } };
	mfd__ram_batch_apply_zero(&z, d, (uint32_t)ps, recv);
	CHECK_EQ(d[5 * ps], 0xee);
	CHECK(mfd__bit_test(recv, 5) && mfd__bit_test(recv, 6));
	mfd__ram_batch_apply_zero(&z, d, (uint32_t)ps, recv);	/* now received before: cleared */
	CHECK_EQ(d[5 * ps], 0);
	memset(d + 6 * ps, 0x11, ps);
	mfd__ram_batch_apply_zero(&z, d, (uint32_t)ps, NULL);	/* no map: always made zero */
	CHECK(mfd__is_zero(d + 6 * ps, ps));
	struct mfd__ram_batch nb = { .normal = 3, .offsets = { 0, 63 * ps, 64 * ps } };
	uint64_t big[2] = { 0 };
	mfd__ram_batch_mark_received(&nb, (uint32_t)ps, big);
	CHECK_EQ(big[0], (1ull << 63) | 1);
	CHECK_EQ(big[1], 1);
	munmap(m, 16 * ps);
	munmap(d, 16 * ps);
}

static void test_json_and_errors(void)
{
	char buf[64];
	struct mfd__json j;
	mfd__json_init(&j, buf, sizeof(buf));
	mfd__json_begin(&j, NULL);
	mfd__json_str(&j, "s", "a\"b\\c\n");
	mfd__json_u64(&j, "n", 42);
	mfd__json_bool(&j, "t", true);
	mfd__json_end(&j);
	size_t n = mfd__json_finish(&j);
	CHECK(!strcmp(buf, "{\"s\":\"a\\\"b\\\\c\\u000a\",\"n\":42,\"t\":true}"));
	CHECK_EQ(n, strlen(buf));
	char tiny[8];
	mfd__json_init(&j, tiny, sizeof(tiny));
	mfd__json_begin(&j, NULL);
	mfd__json_str(&j, "key", "value");
	mfd__json_end(&j);
	CHECK_EQ(mfd__json_finish(&j), 15);
	CHECK_EQ(strlen(tiny), 7);

	for (int c = MFD_EMAGIC; c > MFD_ELAST; c--)
		CHECK(strcmp(mfd_strerror(c), "unknown error") != 0);
	CHECK(!strcmp(mfd_strerror(0), "success"));
	CHECK(strstr(mfd_strerror(-ECONNRESET), "reset") != NULL);
	CHECK(!strcmp(mfd_strerror(MFD_ELAST), "unknown error"));
	CHECK(!strcmp(mfd_strerror(5), "unknown error"));

	struct mfd_error e;
	mfd_error_clear(&e);
	mfd__err_set(&e, MFD_EMAGIC, 3, "first %d", 1);
	mfd__err_set(&e, MFD_ETRUNC, 1, "second");
	CHECK_CODE(e.code, MFD_EMAGIC);
	CHECK_EQ(e.channel, 3);
	CHECK(!strcmp(e.msg, "channel 3: first 1: bad magic number"));
}

int main(void)
{
	test_uri();
	test_bitmap();
	test_checksums();
	test_zero_and_batches();
	test_json_and_errors();
	return t_done("t_core");
}
