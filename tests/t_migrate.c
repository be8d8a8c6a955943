/* t_migrate — end-to-end transfers between an outgoing and an incoming session in one process,
 * over tcp (v4, v6), unix sockets and inherited fds, with several blocks, channel counts and
 * options; destination memory must equal the source byte for byte and the stats must add up.
 * Also: block tables that differ, cancel from another thread. */
#include <sys/un.h>
#include <time.h>
#include "tutil.h"

struct blockdef {
	const char *name;
	size_t len;
};

struct side {
	struct mfd_session *s;
	uint8_t *mem[4];
	struct mfd_error err;
	int rc;
	pthread_t t;
};

static void *run_thread(void *arg)
{
	struct side *d = arg;
	d->rc = mfd_session_run(d->s, &d->err);
	return NULL;
}

struct opts {
	const char *listen;	/* NULL: use socketpairs through fd: URIs */
	int timeout_ms;		/* both sides; 0 = default */
	int dst_timeout_ms;	/* destination only */
	bool src_timeout_none;	/* source: MFD_OPT_TIMEOUT_MS 0 */
	int64_t max_bw;
	unsigned channels;
	unsigned batch;
	bool verify;
	bool zero_detect_off;
	bool reverse_dst_blocks;	/* destination registers blocks in the other order */
};

static int transfer(const struct blockdef *bd, int nb, const struct opts *o, struct mfd_stats *sst,
		    struct mfd_stats *dst_st)
{
	struct side src = { 0 }, dst = { 0 };
	mfd_error_clear(&src.err);
	mfd_error_clear(&dst.err);
	src.s = mfd_session_new(MFD_OUTGOING);
	dst.s = mfd_session_new(MFD_INCOMING);
	CHECK_CODE(mfd_session_set(src.s, MFD_OPT_CHANNELS, o->channels), 0);
	if (o->batch)
		CHECK_CODE(mfd_session_set(src.s, MFD_OPT_BATCH_PAGES, o->batch), 0);
	if (o->verify)
		CHECK_CODE(mfd_session_set(src.s, MFD_OPT_VERIFY, 1), 0);
	if (o->zero_detect_off)
		CHECK_CODE(mfd_session_set(src.s, MFD_OPT_ZERO_DETECT, 0), 0);
	if (o->timeout_ms) {
		CHECK_CODE(mfd_session_set(src.s, MFD_OPT_TIMEOUT_MS, o->timeout_ms), 0);
		CHECK_CODE(mfd_session_set(dst.s, MFD_OPT_TIMEOUT_MS, o->timeout_ms), 0);
	}
	if (o->max_bw)
		CHECK_CODE(mfd_session_set(src.s, MFD_OPT_MAX_BANDWIDTH, o->max_bw), 0);
	if (o->dst_timeout_ms)
		CHECK_CODE(mfd_session_set(dst.s, MFD_OPT_TIMEOUT_MS, o->dst_timeout_ms), 0);
	if (o->src_timeout_none)
		CHECK_CODE(mfd_session_set(src.s, MFD_OPT_TIMEOUT_MS, 0), 0);
	for (int i = 0; i < nb; i++) {
		src.mem[i] = t_map(bd[i].len);
		dst.mem[i] = t_map(bd[i].len);
		t_fill(src.mem[i], bd[i].len, 0x1000 + (uint64_t)i);
		CHECK(mfd_ram_block_add(src.s, bd[i].name, src.mem[i], bd[i].len, 4096, 0) == i);
	}
	for (int k = 0; k < nb; k++) {
		int i = o->reverse_dst_blocks ? nb - 1 - k : k;
		CHECK(mfd_ram_block_add(dst.s, bd[i].name, dst.mem[i], bd[i].len, 4096,
					MFD_BLOCK_ZEROED) == k);
	}
	char uri[512];
	if (o->listen) {
		int rc = mfd_session_listen(dst.s, o->listen, &dst.err);
		if (rc) {
			fprintf(stderr, "listen %s: %s\n", o->listen, dst.err.msg);
			return rc;
		}
		CHECK_CODE(mfd_session_local_uri(dst.s, uri, sizeof(uri)), 0);
	} else {
		char a[256] = "fd:", b[256] = "fd:";
		for (unsigned i = 0; i <= o->channels; i++) {
			int sv[2];
			CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
			snprintf(a + strlen(a), sizeof(a) - strlen(a), "%s%d", i ? "," : "", sv[0]);
			snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s%d", i ? "," : "", sv[1]);
		}
		CHECK_CODE(mfd_session_listen(dst.s, b, &dst.err), 0);
		snprintf(uri, sizeof(uri), "%s", a);
	}
	pthread_create(&dst.t, NULL, run_thread, &dst);
	src.rc = mfd_session_connect(src.s, uri, &src.err);
	if (src.rc == 0)
		src.rc = mfd_session_run(src.s, &src.err);
	if (src.rc)
		mfd_session_cancel(dst.s);
	pthread_join(dst.t, NULL);
	if (src.rc || dst.rc)
		fprintf(stderr, "src: %s\ndst: %s\n", src.err.msg, dst.err.msg);
	CHECK_CODE(src.rc, 0);
	CHECK_CODE(dst.rc, 0);
	for (int i = 0; i < nb; i++) {
		CHECK(memcmp(src.mem[i], dst.mem[i], bd[i].len) == 0);
		munmap(src.mem[i], bd[i].len);
		munmap(dst.mem[i], bd[i].len);
	}
	mfd_session_get_stats(src.s, sst);
	mfd_session_get_stats(dst.s, dst_st);
	mfd_session_free(src.s);
	mfd_session_free(dst.s);
	return src.rc ? src.rc : dst.rc;
}

static void check_stats(const struct blockdef *bd, int nb, const struct opts *o,
			const struct mfd_stats *s, const struct mfd_stats *d)
{
	uint64_t pages = 0, mem = 0;
	for (int i = 0; i < nb; i++) {
		pages += bd[i].len / 4096;
		mem += bd[i].len;
	}
	CHECK_EQ(s->status, MFD_STATUS_COMPLETED);
	CHECK_EQ(d->status, MFD_STATUS_COMPLETED);
	CHECK_EQ(s->mem_bytes, mem);
	CHECK_EQ(s->normal_pages + s->zero_pages, pages);
	CHECK_EQ(d->normal_pages, s->normal_pages);
	CHECK_EQ(d->zero_pages, s->zero_pages);
	if (o->zero_detect_off)
		CHECK_EQ(s->zero_pages, 0);
	else
		CHECK(s->zero_pages >= pages / 4 - nb);	/* t_fill zeroes every fourth page */
	CHECK_EQ(s->channels, o->channels);
	CHECK(s->wire_bytes >= s->normal_pages * 4096);
	CHECK_EQ(s->wire_bytes, d->wire_bytes);	/* both count every byte on every channel */
	uint64_t bytes = 0, packets = 0;
	for (unsigned i = 0; i <= s->channels; i++) {
		bytes += s->chan[i].bytes;
		packets += s->chan[i].packets;
		CHECK_EQ(s->chan[i].bytes, d->chan[i].bytes);
		CHECK_EQ(s->chan[i].packets, d->chan[i].packets);
	}
	CHECK_EQ(bytes, s->wire_bytes);
	CHECK_EQ(packets, s->packets);
	CHECK_EQ(s->verified, o->verify);
	CHECK_EQ(d->verified, o->verify);
	if (o->verify)
		CHECK_EQ(s->digest, d->digest);
	char json[4096];
	int n = mfd_stats_json(s, json, sizeof(json));
	CHECK(n > 0 && (size_t)n < sizeof(json));
	CHECK(strstr(json, "\"status\":\"completed\"") != NULL);
}

static void run_case(const char *label, const struct blockdef *bd, int nb, const struct opts *o)
{
	struct mfd_stats s, d;
	fprintf(stderr, "case %s\n", label);
	if (transfer(bd, nb, o, &s, &d) == 0)
		check_stats(bd, nb, o, &s, &d);
}

static void test_block_table_mismatch(void)
{
	size_t len = 1 << 20;
	uint8_t *a = t_map(len), *b = t_map(2 * len);
	struct side src = { 0 }, dst = { 0 };
	src.s = mfd_session_new(MFD_OUTGOING);
	dst.s = mfd_session_new(MFD_INCOMING);
	mfd_ram_block_add(src.s, "ram0", a, len, 4096, 0);
	mfd_ram_block_add(dst.s, "ram0", b, 2 * len, 4096, 0);	/* different length */
	char uri[256];
	CHECK_CODE(mfd_session_listen(dst.s, "tcp:127.0.0.1:0", &dst.err), 0);
	mfd_session_local_uri(dst.s, uri, sizeof(uri));
	pthread_create(&dst.t, NULL, run_thread, &dst);
	src.rc = mfd_session_connect(src.s, uri, &src.err);
	CHECK_CODE(src.rc, 0);
	src.rc = mfd_session_run(src.s, &src.err);
	pthread_join(dst.t, NULL);
	CHECK_CODE(dst.rc, MFD_EBLOCKTABLE);
	CHECK_CODE(src.rc, MFD_EBLOCKTABLE);
	CHECK(strstr(src.err.msg, "ram0") != NULL);	/* the destination's reason travelled */
	CHECK(strstr(dst.err.msg, "ram0") != NULL);
	struct mfd_stats st;
	mfd_session_get_stats(src.s, &st);
	CHECK_EQ(st.status, MFD_STATUS_FAILED);
	mfd_session_free(src.s);
	mfd_session_free(dst.s);
	munmap(a, len);
	munmap(b, 2 * len);
}

static void test_destination_limits(void)
{
	size_t len = 1 << 20;
	uint8_t *a = t_map(len), *b = t_map(len);
	for (int k = 0; k < 2; k++) {
		struct side src = { 0 }, dst = { 0 };
		src.s = mfd_session_new(MFD_OUTGOING);
		dst.s = mfd_session_new(MFD_INCOMING);
		mfd_ram_block_add(src.s, "ram0", a, len, 4096, 0);
		mfd_ram_block_add(dst.s, "ram0", b, len, 4096, 0);
		if (k == 0) {
			mfd_session_set(src.s, MFD_OPT_CHANNELS, 8);
			mfd_session_set(dst.s, MFD_OPT_CHANNELS, 4);
		} else {
			mfd_session_set(src.s, MFD_OPT_BATCH_PAGES, 256);
			mfd_session_set(dst.s, MFD_OPT_BATCH_PAGES, 64);
		}
		char uri[256];
		mfd_session_listen(dst.s, "tcp:127.0.0.1:0", &dst.err);
		mfd_session_local_uri(dst.s, uri, sizeof(uri));
		pthread_create(&dst.t, NULL, run_thread, &dst);
		src.rc = mfd_session_connect(src.s, uri, &src.err);
		pthread_join(dst.t, NULL);
		CHECK_CODE(dst.rc, k == 0 ? MFD_ECHANCOUNT : MFD_EPAGES);
		CHECK_CODE(src.rc, k == 0 ? MFD_ECHANCOUNT : MFD_EPAGES);	/* the refusal's code */
		mfd_session_free(src.s);
		mfd_session_free(dst.s);
	}
	munmap(a, len);
	munmap(b, len);
}

/* run() after a connect that failed must refuse, not touch channels that do not exist. */
static void test_run_after_failed_connect(void)
{
	size_t len = 1 << 20;
	uint8_t *a = t_map(len);
	struct mfd_session *s = mfd_session_new(MFD_OUTGOING);
	mfd_ram_block_add(s, "ram0", a, len, 4096, 0);
	struct mfd_error err;
	mfd_error_clear(&err);
	CHECK(mfd_session_connect(s, "unix:/nonexistent/mfd.sock", &err) < 0);
	mfd_error_clear(&err);
	CHECK_CODE(mfd_session_run(s, &err), MFD_ESTATE);
	mfd_session_free(s);
	munmap(a, len);
}

/* A client that connects and says nothing must not keep a cancel from ending the session, even
 * with no timeout at all. */
struct silent_ctx {
	struct mfd_session *s;
};

static void *cancel_after_200ms(void *arg)
{
	usleep(200000);
	mfd_session_cancel(((struct silent_ctx *)arg)->s);
	return NULL;
}

static void test_cancel_silent_client(void)
{
	size_t len = 1 << 20;
	uint8_t *b = t_map(len);
	struct side dst = { .s = mfd_session_new(MFD_INCOMING) };
	mfd_error_clear(&dst.err);
	mfd_ram_block_add(dst.s, "ram0", b, len, 4096, 0);
	mfd_session_set(dst.s, MFD_OPT_TIMEOUT_MS, 0);
	char uri[256];
	mfd_session_listen(dst.s, "unix:/tmp/mfd-t-migrate-silent.sock", &dst.err);
	mfd_session_local_uri(dst.s, uri, sizeof(uri));
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", uri + 5);
	CHECK(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);	/* and then silence */
	struct silent_ctx c = { dst.s };
	pthread_t t;
	pthread_create(&t, NULL, cancel_after_200ms, &c);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_CODE(mfd_session_run(dst.s, &dst.err), MFD_ECANCELED);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(t, NULL);
	CHECK((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
	close(fd);
	mfd_session_free(dst.s);
	munmap(b, len);
}

struct canceler {
	struct mfd_session *s;
	int delay_ms;
};

static void *cancel_later(void *arg)
{
	struct canceler *c = arg;
	usleep((useconds_t)c->delay_ms * 1000);
	mfd_session_cancel(c->s);
	mfd_session_cancel(c->s);	/* twice is fine */
	return NULL;
}

static void test_cancel(int delay_ms)
{
	size_t len = 256u << 20;
	uint8_t *a = t_map(len), *b = t_map(len);
	t_fill(a, len, 99);
	memcpy(b, a, 4096);	/* sentinel: source memory is never written */
	struct side src = { 0 }, dst = { 0 };
	src.s = mfd_session_new(MFD_OUTGOING);
	dst.s = mfd_session_new(MFD_INCOMING);
	mfd_ram_block_add(src.s, "ram0", a, len, 4096, 0);
	mfd_ram_block_add(dst.s, "ram0", b, len, 4096, MFD_BLOCK_ZEROED);
	char uri[256];
	mfd_session_listen(dst.s, "unix:/tmp/mfd-t-migrate-cancel.sock", &dst.err);
	mfd_session_local_uri(dst.s, uri, sizeof(uri));
	pthread_create(&dst.t, NULL, run_thread, &dst);
	struct canceler c = { src.s, delay_ms };
	pthread_t ct;
	pthread_create(&ct, NULL, cancel_later, &c);
	src.rc = mfd_session_connect(src.s, uri, &src.err);
	if (src.rc == 0)
		src.rc = mfd_session_run(src.s, &src.err);
	pthread_join(ct, NULL);
	pthread_join(dst.t, NULL);
	/* The transfer may legitimately finish before the cancel lands on a fast machine. */
	if (src.rc) {
		CHECK_CODE(src.rc, MFD_ECANCELED);
		CHECK(dst.rc != 0);
		struct mfd_stats st;
		mfd_session_get_stats(src.s, &st);
		CHECK_EQ(st.status, MFD_STATUS_CANCELLED);
	}
	uint8_t *ref = t_map(len);
	t_fill(ref, len, 99);
	CHECK(memcmp(a, ref, len) == 0);	/* the source is intact */
	munmap(ref, len);
	mfd_session_free(src.s);
	mfd_session_free(dst.s);
	munmap(a, len);
	munmap(b, len);
}

int main(void)
{
	struct blockdef one[] = { { "ram0", 8u << 20 } };
	struct blockdef many[] = { { "pc.ram", 6u << 20 }, { "vga", 256u << 10 },
				   { "rom", 4096 }, { "high", 3u << 20 } };
	run_case("tcp4 4ch", one, 1, &(struct opts){ .listen = "tcp:127.0.0.1:0", .channels = 4 });
	run_case("unix 1ch verify", many, 4,
		 &(struct opts){ .listen = "unix:/tmp/mfd-t-migrate.sock", .channels = 1, .verify = true });
	run_case("fd 3ch batch7", many, 4, &(struct opts){ .channels = 3, .batch = 7 });
	run_case("tcp4 8ch reversed blocks verify", many, 4,
		 &(struct opts){ .listen = "tcp:127.0.0.1:0", .channels = 8, .verify = true,
				 .reverse_dst_blocks = true });
	run_case("tcp4 2ch no zero detect", one, 1,
		 &(struct opts){ .listen = "tcp:127.0.0.1:0", .channels = 2, .zero_detect_off = true,
				 .batch = 1024 });
	int s6 = socket(AF_INET6, SOCK_STREAM, 0);
	if (s6 >= 0) {
		close(s6);
		run_case("tcp6 4ch", one, 1, &(struct opts){ .listen = "tcp:[::1]:0", .channels = 4 });
	}
	/* 24 MiB at 16 MiB/s with a 300 ms timeout: the main channel is quiet for 1.5 s and only
	 * the source's pings keep the destination from giving up. */
	struct blockdef mid[] = { { "ram0", 24u << 20 } };
	run_case("pings keep a slow migration alive", mid, 1,
		 &(struct opts){ .listen = "tcp:127.0.0.1:0", .channels = 2, .timeout_ms = 300,
				 .max_bw = 16 << 20 });
	/* The source pings the destination often enough whatever its own timeout (here none). */
	run_case("source without timeout, destination with 1 s", mid, 1,
		 &(struct opts){ .listen = "tcp:127.0.0.1:0", .channels = 2, .dst_timeout_ms = 1000,
				 .src_timeout_none = true, .max_bw = 16 << 20 });
	/* The destination bounds what it accepts by its own configuration. */
	test_destination_limits();
	test_run_after_failed_connect();
	test_cancel_silent_client();
	test_block_table_mismatch();
	test_cancel(0);
	test_cancel(5);
	test_cancel(30);
	return t_done("t_migrate");
}
