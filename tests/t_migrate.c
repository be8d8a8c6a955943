/* t_migrate — end-to-end transfers between an outgoing and an incoming session in one process,
 * over tcp (v4, v6), unix sockets and inherited fds, with several blocks, channel counts and
 * options; destination memory must equal the source byte for byte and the stats must add up.
 * Also: block tables that differ, cancel from another thread. */
#include "pair.h"

struct blockdef {
	const char *name;
	size_t len;
};

struct opts {
	const char *listen;	/* NULL: use socketpairs through fd: URIs */
	bool unix_socket;	/* listen on a unix socket of this process instead */
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
	struct pair p;
	uint8_t *src_mem[4], *dst_mem[4];
	pair_new(&p);
	CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_CHANNELS, o->channels), 0);
	if (o->batch)
		CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_BATCH_PAGES, o->batch), 0);
	if (o->verify)
		CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_VERIFY, 1), 0);
	if (o->zero_detect_off)
		CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_ZERO_DETECT, 0), 0);
	if (o->timeout_ms) {
		CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_TIMEOUT_MS, o->timeout_ms), 0);
		CHECK_CODE(mfd_session_set(p.dst.s, MFD_OPT_TIMEOUT_MS, o->timeout_ms), 0);
	}
	if (o->max_bw)
		CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_MAX_BANDWIDTH, o->max_bw), 0);
	if (o->dst_timeout_ms)
		CHECK_CODE(mfd_session_set(p.dst.s, MFD_OPT_TIMEOUT_MS, o->dst_timeout_ms), 0);
	if (o->src_timeout_none)
		CHECK_CODE(mfd_session_set(p.src.s, MFD_OPT_TIMEOUT_MS, 0), 0);
	for (int i = 0; i < nb; i++) {
		src_mem[i] = t_map(bd[i].len);
		dst_mem[i] = t_map(bd[i].len);
		t_fill(src_mem[i], bd[i].len, 0x1000 + (uint64_t)i);
		CHECK(mfd_ram_block_add(p.src.s, bd[i].name, src_mem[i], bd[i].len, 4096, 0) == i);
	}
	for (int k = 0; k < nb; k++) {
		int i = o->reverse_dst_blocks ? nb - 1 - k : k;
		CHECK(mfd_ram_block_add(p.dst.s, bd[i].name, dst_mem[i], bd[i].len, 4096,
					MFD_BLOCK_ZEROED) == k);
	}
	const char *listen = o->unix_socket ? pair_unix(&p, "t-migrate") : o->listen;
	int rc = pair_listen(&p, listen, o->channels);
	if (rc && listen) {
		fprintf(stderr, "listen %s: %s\n", listen, p.dst.err.msg);
	} else {
		CHECK_CODE(rc, 0);	/* socketpairs */
		pair_run(&p);
		if (p.src.rc || p.dst.rc)
			pair_print(&p, "transfer");
		CHECK_CODE(p.src.rc, 0);
		CHECK_CODE(p.dst.rc, 0);
		for (int i = 0; i < nb; i++)
			CHECK(memcmp(src_mem[i], dst_mem[i], bd[i].len) == 0);
		mfd_session_get_stats(p.src.s, sst);
		mfd_session_get_stats(p.dst.s, dst_st);
		rc = p.src.rc ? p.src.rc : p.dst.rc;
	}
	for (int i = 0; i < nb; i++) {
		munmap(src_mem[i], bd[i].len);
		munmap(dst_mem[i], bd[i].len);
	}
	pair_free(&p);
	return rc;
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
	struct pair p;
	pair_new(&p);
	mfd_ram_block_add(p.src.s, "ram0", a, len, 4096, 0);
	mfd_ram_block_add(p.dst.s, "ram0", b, 2 * len, 4096, 0);	/* different length */
	CHECK_CODE(pair_listen(&p, "tcp:127.0.0.1:0", 0), 0);
	CHECK_CODE(pair_connect(&p), 0);
	p.src.rc = mfd_session_run(p.src.s, &p.src.err);
	pair_join(&p);
	CHECK_CODE(p.dst.rc, MFD_EBLOCKTABLE);
	CHECK_CODE(p.src.rc, MFD_EBLOCKTABLE);
	CHECK(strstr(p.src.err.msg, "ram0") != NULL);	/* the destination's reason travelled */
	CHECK(strstr(p.dst.err.msg, "ram0") != NULL);
	struct mfd_stats st;
	mfd_session_get_stats(p.src.s, &st);
	CHECK_EQ(st.status, MFD_STATUS_FAILED);
	pair_free(&p);
	munmap(a, len);
	munmap(b, 2 * len);
}

static void test_destination_limits(void)
{
	size_t len = 1 << 20;
	uint8_t *a = t_map(len), *b = t_map(len);
	for (int k = 0; k < 2; k++) {
		struct pair p;
		pair_new(&p);
		pair_block_add(&p, "ram0", a, b, len, 0);
		if (k == 0) {
			mfd_session_set(p.src.s, MFD_OPT_CHANNELS, 8);
			mfd_session_set(p.dst.s, MFD_OPT_CHANNELS, 4);
		} else {
			mfd_session_set(p.src.s, MFD_OPT_BATCH_PAGES, 256);
			mfd_session_set(p.dst.s, MFD_OPT_BATCH_PAGES, 64);
		}
		pair_listen(&p, "tcp:127.0.0.1:0", 0);
		pair_connect(&p);
		CHECK_CODE(p.src.rc, k == 0 ? MFD_ECHANCOUNT : MFD_EPAGES);	/* the refusal's code */
		/* A listening destination refuses the connections it cannot serve, counts them,
		 * and goes on waiting for a source it can (until canceled). */
		struct mfd_stats st;
		for (int i = 0; i < 200; i++) {
			mfd_session_get_stats(p.dst.s, &st);
			if (st.rejected_connections)
				break;
			usleep(5000);
		}
		CHECK(st.rejected_connections >= 1);
		CHECK_EQ(st.status, MFD_STATUS_SETUP);
		mfd_session_cancel(p.dst.s);
		pair_join(&p);
		CHECK_CODE(p.dst.rc, MFD_ECANCELED);
		pair_free(&p);
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
static void test_cancel_silent_client(void)
{
	size_t len = 1 << 20;
	uint8_t *b = t_map(len);
	struct pair p;
	pair_new(&p);
	mfd_ram_block_add(p.dst.s, "ram0", b, len, 4096, 0);
	mfd_session_set(p.dst.s, MFD_OPT_TIMEOUT_MS, 0);
	pair_bind(&p, pair_unix(&p, "t-migrate-silent"), 0);
	int fd = pair_dial(&p);
	CHECK(fd >= 0);	/* and then silence */
	struct canceller c = { .s = p.dst.s, .ms = 200 };
	canceller_start(&c);
	uint64_t t0 = t_now_ns();
	CHECK_CODE(mfd_session_run(p.dst.s, &p.dst.err), MFD_ECANCELED);
	uint64_t t1 = t_now_ns();
	canceller_join(&c);
	CHECK((t1 - t0) / 1000000 < 2000);
	close(fd);
	pair_free(&p);
	munmap(b, len);
}

static void test_cancel(int delay_ms)
{
	size_t len = 256u << 20;
	uint8_t *a = t_map(len), *b = t_map(len);
	t_fill(a, len, 99);
	memcpy(b, a, 4096);	/* sentinel: source memory is never written */
	struct pair p;
	pair_new(&p);
	pair_block_add(&p, "ram0", a, b, len, MFD_BLOCK_ZEROED);
	pair_listen(&p, pair_unix(&p, "t-migrate-cancel"), 0);
	struct canceller c = { .s = p.src.s, .ms = delay_ms, .twice = true };
	canceller_start(&c);
	pair_source(&p);
	canceller_join(&c);
	/* A source canceled before all its channels were in never became the destination's
	 * session: a listening destination goes on waiting for one, until canceled too. */
	if (p.src.rc)
		mfd_session_cancel(p.dst.s);
	pair_join(&p);
	/* The transfer may legitimately finish before the cancel lands on a fast machine. */
	if (p.src.rc) {
		CHECK_CODE(p.src.rc, MFD_ECANCELED);
		CHECK(p.dst.rc != 0);
		struct mfd_stats st;
		mfd_session_get_stats(p.src.s, &st);
		CHECK_EQ(st.status, MFD_STATUS_CANCELLED);
	}
	uint8_t *ref = t_map(len);
	t_fill(ref, len, 99);
	CHECK(memcmp(a, ref, len) == 0);	/* the source is intact */
	munmap(ref, len);
	pair_free(&p);
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
		 &(struct opts){ .unix_socket = true, .channels = 1, .verify = true });
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
